//! Chunks and blocks: how a stream's entries are stored. The head builds a [`HeadBlock`] in
//! memory; once it holds `chunk_block_size` bytes it is sealed (sorted by timestamp, encoded,
//! zstd-compressed, checksummed) into a block. A chunk is the sequence of one stream's blocks;
//! `segment` stores chunks and their time ranges. Nothing here knows about HTTP or tenants.
//!
//! ```text
//! chunk  := version u8 = 1 | encoding u8 = 1 (zstd) | reserved u16 | n_blocks u32 LE | block*
//! block  := n_entries u32 | raw_len u32 | comp_len u32 | crc32c(zstd bytes) u32 |
//!           min_ts i64 | max_ts i64 | zstd bytes [comp_len]              (header: 32 bytes, LE)
//! raw (what zstd holds):
//!   n uvarint | first ts ivarint | (ts[i] - ts[i-1]) uvarint * (n-1) |
//!   line_len uvarint * n | { n_md uvarint | { name lp | value lp }* } * n | lines concatenated
//! ```
//! Entries inside a block are sorted by timestamp (ties keep arrival order). Lines come last so
//! a decoded block hands out borrowed `&[u8]` lines from one buffer.

use thiserror::Error;

use crate::storage::codec::{put_ivarint, put_lp_bytes, put_uvarint, Reader, Truncated};

pub const CHUNK_VERSION: u8 = 1;
pub const ENCODING_ZSTD: u8 = 1;
pub const CHUNK_HEADER_LEN: usize = 8;
pub const BLOCK_HEADER_LEN: usize = 32;
/// No block decompresses to more than this; a header claiming more is damage.
pub const MAX_BLOCK_RAW: usize = 64 << 20;
/// Structured metadata of an entry that has none.
pub const NO_METADATA: &[(&str, &str)] = &[];

#[derive(Debug, Error, PartialEq)]
pub enum ChunkError {
    #[error("block checksum mismatch at byte {0}")]
    Checksum(usize),
    #[error("malformed chunk: {0}")]
    Malformed(String),
    #[error("decompression failed: {0}")]
    Zstd(String),
}

impl From<Truncated> for ChunkError {
    fn from(t: Truncated) -> Self {
        ChunkError::Malformed(t.to_string())
    }
}

/// Entries of one stream in arrival order, not yet compressed.
#[derive(Debug, Default, Clone)]
pub struct HeadBlock {
    ts: Vec<i64>,
    line_ends: Vec<u32>,
    lines: Vec<u8>,
    md_ends: Vec<u32>,
    md: Vec<u8>,
}

impl HeadBlock {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
    /// Uncompressed bytes held (lines and metadata).
    pub fn size(&self) -> usize {
        self.lines.len() + self.md.len()
    }

    pub fn push<K: AsRef<str>, V: AsRef<str>>(&mut self, ts: i64, line: &str, metadata: &[(K, V)]) {
        self.ts.push(ts);
        self.lines.extend_from_slice(line.as_bytes());
        self.line_ends.push(self.lines.len() as u32);
        put_uvarint(&mut self.md, metadata.len() as u64);
        for (k, v) in metadata {
            put_lp_bytes(&mut self.md, k.as_ref().as_bytes());
            put_lp_bytes(&mut self.md, v.as_ref().as_bytes());
        }
        self.md_ends.push(self.md.len() as u32);
    }

    /// Appends an entry read back from a block: its line bytes and encoded metadata as they are.
    pub fn push_raw(&mut self, ts: i64, line: &[u8], metadata_raw: &[u8]) {
        self.ts.push(ts);
        self.lines.extend_from_slice(line);
        self.line_ends.push(self.lines.len() as u32);
        if metadata_raw.is_empty() {
            put_uvarint(&mut self.md, 0);
        } else {
            self.md.extend_from_slice(metadata_raw);
        }
        self.md_ends.push(self.md.len() as u32);
    }

    /// An empty block with room for as much as `other` holds.
    pub fn with_capacity_like(other: &HeadBlock) -> HeadBlock {
        HeadBlock {
            ts: Vec::with_capacity(other.ts.len()),
            line_ends: Vec::with_capacity(other.line_ends.len()),
            lines: Vec::with_capacity(other.lines.len() + other.lines.len() / 8),
            md_ends: Vec::with_capacity(other.md_ends.len()),
            md: Vec::with_capacity(other.md.len()),
        }
    }

    /// Drops entries from `n` on (undoes pushes whose WAL write failed).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        self.ts.truncate(n);
        self.line_ends.truncate(n);
        self.lines
            .truncate(self.line_ends.last().copied().unwrap_or(0) as usize);
        self.md_ends.truncate(n);
        self.md
            .truncate(self.md_ends.last().copied().unwrap_or(0) as usize);
    }

    pub fn ts(&self, i: usize) -> i64 {
        self.ts[i]
    }
    pub fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.line_ends[i - 1] as usize
        };
        &self.lines[start..self.line_ends[i] as usize]
    }
    /// The encoded metadata of entry `i` (`n uvarint | {name lp | value lp}*`).
    pub fn metadata_raw(&self, i: usize) -> &[u8] {
        let start = if i == 0 {
            0
        } else {
            self.md_ends[i - 1] as usize
        };
        &self.md[start..self.md_ends[i] as usize]
    }

    pub fn min_max_ts(&self) -> Option<(i64, i64)> {
        Some((*self.ts.iter().min()?, *self.ts.iter().max()?))
    }

    /// Sorts by timestamp (stable), encodes and compresses into a block. Lines already in
    /// timestamp order (the common case) go to zstd straight from the head's buffer.
    pub fn seal(&self, level: i32) -> Block {
        let n = self.len();
        let sorted = self.ts.windows(2).all(|w| w[0] <= w[1]);
        let order: Vec<u32> = if sorted {
            Vec::new()
        } else {
            let mut o: Vec<u32> = (0..n as u32).collect();
            o.sort_by_key(|&i| self.ts[i as usize]);
            o
        };
        let at = |k: usize| if sorted { k } else { order[k] as usize };
        let mut head = Vec::with_capacity(n * 4 + self.md.len() + 16);
        put_uvarint(&mut head, n as u64);
        let mut prev = 0i64;
        for k in 0..n {
            let ts = self.ts[at(k)];
            if k == 0 {
                put_ivarint(&mut head, ts);
            } else {
                put_uvarint(&mut head, ts.wrapping_sub(prev) as u64);
            }
            prev = ts;
        }
        for k in 0..n {
            put_uvarint(&mut head, self.line(at(k)).len() as u64);
        }
        for k in 0..n {
            head.extend_from_slice(self.metadata_raw(at(k)));
        }
        let mut sorted_lines = Vec::new();
        let lines: &[u8] = if sorted {
            &self.lines
        } else {
            sorted_lines.reserve(self.lines.len());
            for k in 0..n {
                sorted_lines.extend_from_slice(self.line(at(k)));
            }
            &sorted_lines
        };
        let raw_len = head.len() + lines.len();
        let comp = compress_parts(&[&head, lines], level);
        let (min_ts, max_ts) = self.min_max_ts().unwrap_or((0, 0));
        let mut bytes = Vec::with_capacity(BLOCK_HEADER_LEN + comp.len());
        bytes.extend_from_slice(&(n as u32).to_le_bytes());
        bytes.extend_from_slice(&(raw_len as u32).to_le_bytes());
        bytes.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&comp).to_le_bytes());
        bytes.extend_from_slice(&min_ts.to_le_bytes());
        bytes.extend_from_slice(&max_ts.to_le_bytes());
        bytes.extend_from_slice(&comp);
        Block {
            bytes,
            n_entries: n as u32,
            raw_len: raw_len as u32,
            min_ts,
            max_ts,
        }
    }
}

thread_local! {
    /// One zstd context per thread, reused: creating one per block costs its tables' setup.
    static CCTX: std::cell::RefCell<Option<(i32, zstd::zstd_safe::CCtx<'static>)>> = const { std::cell::RefCell::new(None) };
}

/// Compresses the concatenation of `parts` as one zstd frame.
fn compress_parts(parts: &[&[u8]], level: i32) -> Vec<u8> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
    use zstd::zstd_safe::{CParameter, InBuffer, OutBuffer};
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::compress_bound(total));
    CCTX.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut cctx = zstd::zstd_safe::CCtx::create();
            cctx.set_parameter(CParameter::CompressionLevel(level))
                .expect("bug: valid zstd level");
            *cell = Some((level, cctx));
        }
        let (_, cctx) = cell.as_mut().expect("bug: context just set");
        cctx.set_pledged_src_size(Some(total as u64))
            .expect("bug: pledged size at frame start");
        let mut output = OutBuffer::around(&mut out);
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let mut input = InBuffer::around(part);
            loop {
                let directive = if last {
                    EndDirective::ZSTD_e_end
                } else {
                    EndDirective::ZSTD_e_continue
                };
                let remaining = cctx
                    .compress_stream2(&mut output, &mut input, directive)
                    .expect("bug: zstd compression into a bound-sized buffer");
                let done = if last {
                    remaining == 0
                } else {
                    input.pos() == part.len()
                };
                if done {
                    break;
                }
            }
        }
    });
    out
}

/// A sealed block: its encoded bytes (header included) and what the header says.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub bytes: Vec<u8>,
    pub n_entries: u32,
    pub raw_len: u32,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Writes a chunk made of `blocks`.
pub fn encode_chunk<'a>(blocks: impl ExactSizeIterator<Item = &'a Block>, out: &mut Vec<u8>) {
    out.push(CHUNK_VERSION);
    out.push(ENCODING_ZSTD);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
    for b in blocks {
        out.extend_from_slice(&b.bytes);
    }
}

/// A block header read from a chunk, with its compressed bytes still borrowed.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef<'a> {
    pub n_entries: u32,
    pub raw_len: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub crc: u32,
    pub comp: &'a [u8],
    pub offset: usize,
}

/// Lists the blocks of an encoded chunk without decompressing them.
pub fn chunk_blocks(chunk: &[u8]) -> Result<Vec<BlockRef<'_>>, ChunkError> {
    let mut r = Reader::new(chunk);
    let version = r.u8()?;
    let encoding = r.u8()?;
    if version != CHUNK_VERSION || encoding != ENCODING_ZSTD {
        return Err(ChunkError::Malformed(format!(
            "unknown chunk version {version} encoding {encoding}"
        )));
    }
    r.u16()?;
    let n = r.u32()?;
    let mut out = Vec::with_capacity((n as usize).min(4096));
    for _ in 0..n {
        out.push(block_ref(&mut r)?);
    }
    Ok(out)
}

/// Reads one block (header and bytes) at the reader's position.
pub fn block_ref<'a>(r: &mut Reader<'a>) -> Result<BlockRef<'a>, ChunkError> {
    let offset = r.pos();
    let n_entries = r.u32()?;
    let raw_len = r.u32()?;
    let comp_len = r.u32()?;
    let crc = r.u32()?;
    let min_ts = r.i64()?;
    let max_ts = r.i64()?;
    let comp = r.bytes(comp_len as usize)?;
    Ok(BlockRef {
        n_entries,
        raw_len,
        min_ts,
        max_ts,
        crc,
        comp,
        offset,
    })
}

/// A decompressed block: entries by index, lines borrowed from one buffer.
#[derive(Debug, Default)]
pub struct DecodedBlock {
    raw: Vec<u8>,
    ts: Vec<i64>,
    lines: Vec<(u32, u32)>,
    md: Vec<(u32, u32)>,
}

impl DecodedBlock {
    pub fn len(&self) -> usize {
        self.ts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }
    pub fn ts(&self, i: usize) -> i64 {
        self.ts[i]
    }
    pub fn line(&self, i: usize) -> &[u8] {
        let (s, e) = self.lines[i];
        &self.raw[s as usize..e as usize]
    }
    pub fn metadata_raw(&self, i: usize) -> &[u8] {
        let (s, e) = self.md[i];
        &self.raw[s as usize..e as usize]
    }

    /// Checks, decompresses and indexes a block, reusing this value's buffers.
    pub fn decode_from(&mut self, b: &BlockRef<'_>) -> Result<(), ChunkError> {
        if crc32c::crc32c(b.comp) != b.crc {
            return Err(ChunkError::Checksum(b.offset));
        }
        if b.raw_len as usize > MAX_BLOCK_RAW {
            return Err(ChunkError::Malformed(format!(
                "block claims {} raw bytes",
                b.raw_len
            )));
        }
        // One decompression context per thread, reused; the output goes into the buffer's spare
        // capacity (no zero-filling of the whole block first).
        thread_local! {
            static DCTX: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
                std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
        }
        self.raw.clear();
        self.raw.reserve(b.raw_len as usize);
        let got = DCTX
            .with(|d| d.borrow_mut().decompress(&mut self.raw, b.comp))
            .map_err(|code| ChunkError::Zstd(zstd::zstd_safe::get_error_name(code).to_string()))?;
        if got != b.raw_len as usize {
            return Err(ChunkError::Malformed(format!(
                "block decompressed to {got} bytes, header says {}",
                b.raw_len
            )));
        }
        self.index()
    }

    fn index(&mut self) -> Result<(), ChunkError> {
        self.ts.clear();
        self.lines.clear();
        self.md.clear();
        let mut r = Reader::new(&self.raw);
        let n = r.uvarint()? as usize;
        if n > self.raw.len() {
            return Err(ChunkError::Malformed(format!("block claims {n} entries")));
        }
        let mut prev = 0i64;
        for k in 0..n {
            prev = if k == 0 {
                r.ivarint()?
            } else {
                prev.wrapping_add(r.uvarint()? as i64)
            };
            self.ts.push(prev);
        }
        let mut lens = Vec::with_capacity(n);
        for _ in 0..n {
            lens.push(r.uvarint()? as usize);
        }
        for _ in 0..n {
            let start = r.pos();
            let pairs = r.uvarint()?;
            for _ in 0..pairs {
                r.lp_bytes()?;
                r.lp_bytes()?;
            }
            self.md.push((start as u32, r.pos() as u32));
        }
        for len in lens {
            let start = r.pos();
            r.bytes(len)?;
            self.lines.push((start as u32, r.pos() as u32));
        }
        Ok(())
    }
}

/// Iterates the `(name, value)` pairs of encoded metadata.
pub fn metadata_pairs(raw: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let mut r = Reader::new(raw);
    let n = r.uvarint().unwrap_or(0);
    (0..n).map_while(move |_| {
        let k = r.lp_str().ok()?;
        let v = r.lp_str().ok()?;
        Some((k, v))
    })
}

pub fn metadata_to_vec(raw: &[u8]) -> Vec<(String, String)> {
    metadata_pairs(raw)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(n: usize) -> HeadBlock {
        let mut h = HeadBlock::default();
        for i in 0..n {
            // Arrives slightly out of order.
            let ts = 1_000_000 + ((i * 7919) % n) as i64 * 10;
            let md = if i % 3 == 0 {
                vec![("trace_id".to_string(), format!("t{i}"))]
            } else {
                vec![]
            };
            h.push(ts, &format!("level=info msg=\"hello {i}\" ünï"), &md);
        }
        h
    }

    #[test]
    fn block_round_trip_sorted() {
        let h = head(1000);
        let b = h.seal(3);
        let mut chunk = Vec::new();
        encode_chunk([b.clone()].iter(), &mut chunk);
        let refs = chunk_blocks(&chunk).unwrap();
        assert_eq!(refs.len(), 1);
        let mut d = DecodedBlock::default();
        d.decode_from(&refs[0]).unwrap();
        assert_eq!(d.len(), 1000);
        #[allow(clippy::type_complexity)]
        let mut want: Vec<(i64, Vec<u8>, Vec<(String, String)>)> = (0..1000)
            .map(|i| {
                (
                    h.ts(i),
                    h.line(i).to_vec(),
                    metadata_to_vec(h.metadata_raw(i)),
                )
            })
            .collect();
        want.sort_by_key(|w| w.0);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(d.ts(i), w.0);
            assert_eq!(d.line(i), &w.1[..]);
            assert_eq!(metadata_to_vec(d.metadata_raw(i)), w.2);
        }
        assert_eq!((refs[0].min_ts, refs[0].max_ts), h.min_max_ts().unwrap());
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let b = head(200).seal(1);
        let mut chunk = Vec::new();
        encode_chunk([b].iter(), &mut chunk);
        for i in 0..chunk.len() {
            let mut bad = chunk.clone();
            bad[i] ^= 0x5a;
            if let Ok(refs) = chunk_blocks(&bad) {
                let mut d = DecodedBlock::default();
                for r in refs {
                    let _ = d.decode_from(&r);
                }
            }
            for cut in [i, chunk.len() / 2] {
                let _ = chunk_blocks(&chunk[..cut]);
            }
        }
        let mut flipped = chunk.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let refs = chunk_blocks(&flipped).unwrap();
        assert!(matches!(
            DecodedBlock::default().decode_from(&refs[0]),
            Err(ChunkError::Checksum(_))
        ));
    }
}
