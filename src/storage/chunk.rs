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
//!
//! That is chunk version 1, still read. Sealing now writes chunk version 2, whose blocks are
//! columnar (see `columns`): the same header fields, with timestamps, lengths, metadata, lines
//! and field summaries in sections compressed apart. [`BlockRef`] and [`DecodedBlock`] read
//! both, so callers do not care which they have.

use crate::storage::bloom::Bloom;
use crate::storage::codec::{put_ivarint, put_lp_bytes, put_uvarint, Reader};
use crate::storage::columns::{self, Columns, Summarizer};
use crate::storage::compress::{compress_parts, zstd_decompress};
pub use crate::storage::compress::{metadata_pairs, metadata_to_vec, ChunkError, MAX_BLOCK_RAW};

pub const CHUNK_VERSION: u8 = 1;
/// Chunks of columnar blocks.
pub const CHUNK_VERSION_COLUMNS: u8 = 2;
pub const ENCODING_ZSTD: u8 = 1;
pub const CHUNK_HEADER_LEN: usize = 8;
pub const BLOCK_HEADER_LEN: usize = 32;
/// Structured metadata of an entry that has none.
pub const NO_METADATA: &[(&str, &str)] = &[];

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

    /// The order of entries by timestamp (stable): empty when they already are.
    fn sort_order(&self) -> Vec<u32> {
        if self.ts.windows(2).all(|w| w[0] <= w[1]) {
            return Vec::new();
        }
        let mut o: Vec<u32> = (0..self.len() as u32).collect();
        o.sort_by_key(|&i| self.ts[i as usize]);
        o
    }

    /// Sorts by timestamp (stable), encodes and compresses into a columnar block (see
    /// `columns`), with its filter section: a Bloom filter of its lines' tokens and the edge
    /// keys of their wordy runs, its metadata values, and whether a line has a backslash.
    pub fn seal(&self, level: i32) -> Block {
        let n = self.len();
        let order = self.sort_order();
        let at = |k: usize| {
            if order.is_empty() {
                k
            } else {
                order[k] as usize
            }
        };
        let (time, lengths, metadata) = columns::encode_entries(
            (0..n).map(|k| self.ts[at(k)]),
            (0..n).map(|k| self.line(at(k)).len()),
            (0..n).map(|k| self.metadata_raw(at(k))),
        );
        let mut sorted_lines = Vec::new();
        let lines: &[u8] = if order.is_empty() {
            &self.lines
        } else {
            sorted_lines.reserve(self.lines.len());
            for k in 0..n {
                sorted_lines.extend_from_slice(self.line(at(k)));
            }
            &sorted_lines
        };
        let mut hashes: Vec<u64> = Vec::new();
        // Wordy runs seen: their edge keys are taken once per block.
        let mut runs = crate::storage::index::RunSet::default();
        let (fields, values) = SUMMARIZER.with(|cell| {
            let mut sum = cell.borrow_mut();
            sum.start_block();
            for k in 0..n {
                let line = self.line(k);
                crate::storage::index::line_filter_keys(line, &mut runs, &mut hashes);
                if memchr::memchr(b'\\', line).is_some() {
                    hashes.push(crate::storage::index::escape_key());
                }
                for (_, v) in metadata_pairs(self.metadata_raw(k)) {
                    hashes.push(crate::storage::index::hash(v.as_bytes()));
                }
                sum.line(line, self.metadata_raw(k));
            }
            // Lines were observed in arrival order; the block keeps them in `order`.
            let mut rank = vec![0u32; order.len()];
            for (k, &i) in order.iter().enumerate() {
                rank[i as usize] = k as u32;
            }
            (sum.finish(), sum.values(n, &rank))
        });
        let filter = Bloom::from_hashes(&mut hashes).encode();
        let (min_ts, max_ts) = self.min_max_ts().unwrap_or((0, 0));
        let (bytes, raw_len) = columns::write_block(
            n as u32,
            min_ts,
            max_ts,
            &[
                (columns::KIND_TIME, &time[..]),
                (columns::KIND_LENGTHS, &lengths),
                (columns::KIND_METADATA, &metadata),
                (columns::KIND_LINES, lines),
                (columns::KIND_FIELDS, &fields),
                (columns::KIND_FILTER, &filter),
            ]
            .into_iter()
            .chain(values.as_deref().map(|v| (columns::KIND_VALUES, v)))
            .collect::<Vec<_>>(),
            level,
        );
        Block {
            bytes,
            n_entries: n as u32,
            raw_len: raw_len.min(u32::MAX as u64) as u32,
            min_ts,
            max_ts,
            columnar: true,
        }
    }

    /// Encodes a version 1 block (the format before columns), for the tests that read it.
    pub fn seal_v1(&self, level: i32) -> Block {
        let n = self.len();
        let order = self.sort_order();
        let sorted = order.is_empty();
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
            columnar: false,
        }
    }
}

thread_local! {
    /// One summarizer per thread, reused: its parsers compile once.
    static SUMMARIZER: std::cell::RefCell<Summarizer> = std::cell::RefCell::new(Summarizer::default());
}

/// A sealed block: its encoded bytes (header included) and what the header says.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub bytes: Vec<u8>,
    pub n_entries: u32,
    pub raw_len: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    /// A columnar block (chunk version 2), else version 1.
    pub columnar: bool,
}

/// Writes a chunk made of `blocks`: version 2 when they are columnar, else version 1 (all
/// blocks of a chunk have one format).
pub fn encode_chunk<'a>(blocks: impl ExactSizeIterator<Item = &'a Block>, out: &mut Vec<u8>) {
    let blocks: Vec<&Block> = blocks.collect();
    let columnar = blocks.first().is_none_or(|b| b.columnar);
    out.push(if columnar {
        CHUNK_VERSION_COLUMNS
    } else {
        CHUNK_VERSION
    });
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
    /// The stored bytes after the header (version 1: the zstd frame; columnar: table and
    /// sections).
    pub comp: &'a [u8],
    pub offset: usize,
    /// The sections of a columnar block; `None` for version 1.
    pub columns: Option<Columns<'a>>,
}

impl<'a> BlockRef<'a> {
    /// The block's field summaries (none for version 1 blocks).
    pub fn summaries(&self) -> Result<Vec<columns::ParserSummary>, ChunkError> {
        match &self.columns {
            Some(c) => c.summaries(),
            None => Ok(Vec::new()),
        }
    }
}

/// Lists the blocks of an encoded chunk without decompressing them.
pub fn chunk_blocks(chunk: &[u8]) -> Result<Vec<BlockRef<'_>>, ChunkError> {
    let mut r = Reader::new(chunk);
    let version = r.u8()?;
    let encoding = r.u8()?;
    let columnar = match (version, encoding) {
        (CHUNK_VERSION, ENCODING_ZSTD) => false,
        (CHUNK_VERSION_COLUMNS, ENCODING_ZSTD) => true,
        _ => {
            return Err(ChunkError::Malformed(format!(
                "unknown chunk version {version} encoding {encoding}"
            )))
        }
    };
    r.u16()?;
    let n = r.u32()?;
    let mut out = Vec::with_capacity((n as usize).min(4096));
    for _ in 0..n {
        out.push(block_ref(&mut r, columnar)?);
    }
    Ok(out)
}

/// Reads one block (header and bytes) at the reader's position, columnar or version 1.
pub fn block_ref<'a>(r: &mut Reader<'a>, columnar: bool) -> Result<BlockRef<'a>, ChunkError> {
    let offset = r.pos();
    if columnar {
        let p = columns::parse(r)?;
        return Ok(BlockRef {
            n_entries: p.n_entries,
            raw_len: p.raw_len.min(u32::MAX as u64) as u32,
            min_ts: p.min_ts,
            max_ts: p.max_ts,
            crc: p.crc,
            comp: &p.bytes[columns::HEADER_LEN..],
            offset,
            columns: Some(p.columns),
        });
    }
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
        columns: None,
    })
}

/// A decompressed block: entries by index, lines borrowed from one buffer.
#[derive(Debug, Default)]
pub struct DecodedBlock {
    raw: Vec<u8>,
    ts: Vec<i64>,
    lines: Vec<(u32, u32)>,
    md: Vec<(u32, u32)>,
    /// Line lengths, when only counts were decoded (no lines).
    lens: Vec<u32>,
    scratch: Vec<u8>,
    md_sets: Vec<(u32, u32)>,
    md_index: Vec<u32>,
    /// One field's values, after [`Self::decode_values`].
    values: Vec<f64>,
    /// The values section, decompressed (see `columns`, section 7).
    section: Vec<u8>,
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
    /// Line `i`'s length; after [`Self::decode_counts`] too.
    pub fn line_len(&self, i: usize) -> usize {
        match self.lines.get(i) {
            Some((s, e)) => (e - s) as usize,
            None => self.lens[i] as usize,
        }
    }
    pub fn metadata_raw(&self, i: usize) -> &[u8] {
        let (s, e) = self.md[i];
        &self.raw[s as usize..e as usize]
    }

    /// Checks, decompresses and indexes a block, reusing this value's buffers.
    pub fn decode_from(&mut self, b: &BlockRef<'_>) -> Result<(), ChunkError> {
        if let Some(c) = &b.columns {
            return self.decode_columns(b, c, true);
        }
        if crc32c::crc32c(b.comp) != b.crc {
            return Err(ChunkError::Checksum(b.offset));
        }
        let mut raw = std::mem::take(&mut self.raw);
        let done = zstd_decompress(b.comp, b.raw_len as usize, &mut raw);
        self.raw = raw;
        done?;
        self.lens.clear();
        self.index()
    }

    /// Decodes timestamps, line lengths and metadata, not lines: what counting needs.
    /// [`Self::line`] must not be called after it; [`Self::line_len`] may. A version 1 block
    /// is decoded whole.
    pub fn decode_counts(&mut self, b: &BlockRef<'_>) -> Result<(), ChunkError> {
        match &b.columns {
            Some(c) => self.decode_columns(b, c, false),
            None => self.decode_from(b),
        }
    }

    /// Decodes timestamps, line lengths and the value column of one parser's field (see
    /// `columns::decode_value_column`), not lines nor metadata: what an `unwrap` that the
    /// column answers needs. False when the block has no such column (a version 1 block,
    /// or values that do not all convert). [`Self::value`] gives line i's value.
    pub fn decode_values(
        &mut self,
        b: &BlockRef<'_>,
        field: (u8, &str),
    ) -> Result<bool, ChunkError> {
        let Some(c) = self.load_values_section(b)? else {
            return Ok(false);
        };
        let n = b.n_entries as usize;
        if !columns::decode_value_column(&self.section, n, field, &mut self.values)? {
            return Ok(false);
        }
        self.decode_columns(b, &c, false)?;
        Ok(true)
    }

    /// Decodes timestamps, line lengths and metadata (not lines); the dictionary column of each
    /// of `words` given by `parser` into `dicts` (see `columns::decode_dictionary`), then the
    /// parser's error column (empty when it failed on no line); and the value column of each
    /// of `numbers` into `values`. False when the block lacks one of the fields' columns.
    pub fn decode_filter_columns(
        &mut self,
        b: &BlockRef<'_>,
        parser: u8,
        (words, numbers): (&[&str], &[&str]),
        dicts: &mut Vec<columns::Dictionary>,
        values: &mut Vec<Vec<f64>>,
    ) -> Result<bool, ChunkError> {
        let Some(c) = self.load_values_section(b)? else {
            return Ok(false);
        };
        let n = b.n_entries as usize;
        let raw = &self.section;
        dicts.resize_with(words.len() + 1, Default::default);
        for (f, d) in words.iter().chain([&""]).zip(dicts.iter_mut()) {
            if !columns::decode_dictionary(raw, n, (parser, f), d)? {
                if f.is_empty() {
                    d.codes.clear();
                } else {
                    return Ok(false);
                }
            }
        }
        values.resize_with(numbers.len(), Vec::new);
        for (f, v) in numbers.iter().zip(values.iter_mut()) {
            if !columns::decode_value_column(raw, n, (parser, f), v)? {
                return Ok(false);
            }
        }
        self.decode_columns(b, &c, false)?;
        Ok(true)
    }

    /// Reads a columnar block's values section into `self.section`; the block's columns, or
    /// `None` when it has no such section.
    fn load_values_section<'a>(
        &mut self,
        b: &BlockRef<'a>,
    ) -> Result<Option<Columns<'a>>, ChunkError> {
        let Some(c) = b.columns else {
            return Ok(None);
        };
        let Ok(s) = c.get(columns::KIND_VALUES) else {
            return Ok(None);
        };
        s.read_into(&mut self.section)?;
        Ok(Some(c))
    }

    /// Line i's value after [`Self::decode_values`] (NaN: none).
    pub fn value(&self, i: usize) -> f64 {
        self.values[i]
    }

    fn decode_columns(
        &mut self,
        b: &BlockRef<'_>,
        c: &Columns<'_>,
        with_lines: bool,
    ) -> Result<(), ChunkError> {
        let n = b.n_entries as usize;
        if n > MAX_BLOCK_RAW {
            return Err(ChunkError::Malformed(format!("block claims {n} entries")));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = (|| {
            let time = c.get(columns::KIND_TIME)?.read(&mut scratch)?;
            columns::decode_time(time, n, &mut self.ts)?;
            let lens = c.get(columns::KIND_LENGTHS)?.read(&mut scratch)?;
            columns::decode_lengths(lens, n, &mut self.lens)?;
            self.raw.clear();
            self.lines.clear();
            if with_lines {
                c.get(columns::KIND_LINES)?.read_into(&mut self.raw)?;
                // A whole read vouches for every section, as a version 1 block's checksum does.
                for kind in [
                    columns::KIND_FIELDS,
                    columns::KIND_FILTER,
                    columns::KIND_VALUES,
                ] {
                    if let Ok(f) = c.get(kind) {
                        f.verify()?;
                    }
                }
                let mut at = 0u32;
                for &l in &self.lens {
                    let end = at
                        .checked_add(l)
                        .filter(|e| *e as usize <= self.raw.len())
                        .ok_or_else(|| {
                            ChunkError::Malformed("line lengths past the lines".into())
                        })?;
                    self.lines.push((at, end));
                    at = end;
                }
            }
            let base = self.raw.len() as u32;
            let md = c.get(columns::KIND_METADATA)?.read(&mut scratch)?;
            columns::decode_metadata(md, n, &mut self.md_sets, &mut self.md_index)?;
            self.raw.extend_from_slice(md);
            self.md.clear();
            for &i in &self.md_index {
                let (s, e) = self.md_sets[i as usize];
                self.md.push((base + s, base + e));
            }
            Ok(())
        })();
        self.scratch = scratch;
        if r.is_err() {
            self.ts.clear();
            self.lines.clear();
            self.md.clear();
        }
        r
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
    fn value_columns_follow_the_block_order() {
        // Out of order, with the value in the line (`n=<i>`), and a line without it.
        let mut h = HeadBlock::default();
        for i in 0..500usize {
            let ts = 1_000_000 + ((i * 7919) % 500) as i64 * 10;
            let line = if i % 7 == 0 {
                format!("x=1 msg=\"no n {i}\"")
            } else {
                format!("n={i}.5 x=1")
            };
            h.push::<&str, &str>(ts, &line, &[]);
        }
        let mut chunk = Vec::new();
        encode_chunk([h.seal(1)].iter(), &mut chunk);
        let r = chunk_blocks(&chunk).unwrap().remove(0);
        let (mut full, mut values) = (DecodedBlock::default(), DecodedBlock::default());
        full.decode_from(&r).unwrap();
        // The last lookup leaves `n`'s values in place.
        for (parser, field, found) in [
            (columns::PARSER_LOGFMT, "n", true),
            (columns::PARSER_LOGFMT, "m", false),
            (columns::PARSER_JSON, "n", false),
            (columns::PARSER_LOGFMT, "n", true),
        ] {
            assert_eq!(
                values.decode_values(&r, (parser, field)),
                Ok(found),
                "{field}"
            );
        }
        for i in 0..full.len() {
            assert_eq!(full.ts(i), values.ts(i));
            let line = std::str::from_utf8(full.line(i)).unwrap();
            let want = line
                .strip_prefix("n=")
                .map(|v| v.split(' ').next().unwrap().parse::<f64>().unwrap());
            let got = Some(values.value(i)).filter(|v| !v.is_nan());
            assert_eq!(got, want, "{line}");
        }
    }

    /// Every entry of a chunk, as `(ts, line, metadata)`.
    #[allow(clippy::type_complexity)]
    fn read_all(chunk: &[u8]) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>, ChunkError> {
        let mut out = Vec::new();
        let mut d = DecodedBlock::default();
        for r in chunk_blocks(chunk)? {
            d.decode_from(&r)?;
            for i in 0..d.len() {
                out.push((d.ts(i), d.line(i).to_vec(), d.metadata_raw(i).to_vec()));
            }
        }
        Ok(out)
    }

    #[test]
    fn counts_read_what_the_whole_block_reads() {
        for b in [head(700).seal(1), head(700).seal_v1(1)] {
            let mut chunk = Vec::new();
            encode_chunk([b].iter(), &mut chunk);
            let r = chunk_blocks(&chunk).unwrap().remove(0);
            let (mut full, mut counts) = (DecodedBlock::default(), DecodedBlock::default());
            full.decode_from(&r).unwrap();
            counts.decode_counts(&r).unwrap();
            assert_eq!(full.len(), counts.len());
            for i in 0..full.len() {
                assert_eq!(full.ts(i), counts.ts(i));
                assert_eq!(full.line(i).len(), counts.line_len(i));
                assert_eq!(full.metadata_raw(i), counts.metadata_raw(i));
            }
        }
    }

    /// A flipped byte anywhere in a chunk is an error or changes nothing: never a panic, never
    /// a different entry. Columnar blocks checksum their header, table and every section, so
    /// for them every flip is an error.
    #[test]
    fn damage_is_an_error_never_a_panic() {
        for columnar in [true, false] {
            let h = head(200);
            let b = if columnar { h.seal(1) } else { h.seal_v1(1) };
            let mut chunk = Vec::new();
            encode_chunk([b].iter(), &mut chunk);
            let good = read_all(&chunk).unwrap();
            for i in 0..chunk.len() {
                let mut bad = chunk.clone();
                bad[i] ^= 0x5a;
                match read_all(&bad) {
                    Err(_) => {}
                    Ok(got) => {
                        assert!(!columnar || (2..4).contains(&i), "flip at {i} not seen");
                        assert_eq!(got, good, "flip at {i} changed an entry");
                    }
                }
                if let Ok(refs) = chunk_blocks(&bad) {
                    for r in &refs {
                        let _ = DecodedBlock::default().decode_counts(r);
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

    mod odd_lines {
        use proptest::prelude::*;

        use super::super::*;
        use crate::storage::columns::tests::odd_line;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// Every line comes back byte for byte, with its timestamp and metadata, and the
        /// summaries decode.
        #[test]
        fn lines_come_back_byte_for_byte(
            lines in prop::collection::vec((odd_line(), -5i64..5, any::<bool>()), 1..120)
        ) {
            let mut h = HeadBlock::default();
            let mut want = Vec::new();
            for (i, (line, jitter, md)) in lines.iter().enumerate() {
                let ts = 1_000 + i as i64 * 3 + jitter;
                let metadata = if *md { vec![("trace_id", line.as_str())] } else { vec![] };
                h.push(ts, line, &metadata);
                want.push((ts, line.clone(), h.metadata_raw(i).to_vec()));
            }
            want.sort_by_key(|w| w.0);
            let b = h.seal(1);
            let mut chunk = Vec::new();
            encode_chunk([b].iter(), &mut chunk);
            let r = chunk_blocks(&chunk).unwrap().remove(0);
            let mut d = DecodedBlock::default();
            d.decode_from(&r).unwrap();
            prop_assert_eq!(d.len(), want.len());
            for (i, (ts, line, md)) in want.iter().enumerate() {
                prop_assert_eq!(d.ts(i), *ts);
                prop_assert_eq!(d.line(i), line.as_bytes());
                prop_assert_eq!(d.metadata_raw(i), &md[..]);
            }
            // The filter holds the keys of every substring of every line.
            let filter = r.columns.unwrap().filter().unwrap();
            for (_, line, _) in &want {
                let l = line.as_bytes();
                for a in (0..l.len()).step_by(3) {
                    for e in (a + 1..=l.len()).step_by(5) {
                        for k in crate::storage::index::literal_keys(&l[a..e]) {
                            prop_assert!(filter.may_contain(k), "{:?}", &line[a..e]);
                        }
                    }
                }
            }
            let summaries = r.summaries().unwrap();
            prop_assert_eq!(summaries.len(), 3);
            for p in &summaries {
                prop_assert!(p.errors <= want.len() as u64);
                for f in &p.fields {
                    prop_assert!(f.numeric <= f.present && f.present <= want.len() as u64);
                    if f.numeric > 0 {
                        prop_assert!(f.min <= f.max);
                    }
                }
            }
        }
        }
    }
}
