//! Segment files: immutable, memory-mapped files holding the chunks of one tenant's streams, with
//! a footer that lists the streams, each chunk's time range and place, and an inverted label
//! index (name → value → streams) used to resolve `=`, `!=`, `=~`, `!~` matchers. Written to a
//! temporary name, fsynced, renamed, then opened with memmap2. A segment that is too short or
//! fails a checksum is reported and skipped; every read is bounds-checked against the file's
//! length at open, so a damaged file never makes a read go past its end.
//!
//! Version 2 adds the segment's lineage, which makes compaction atomic without a separate
//! manifest: a compacted segment lists the `(segment, time range)` pairs it replaces. A
//! segment's chunks starting in a replaced range are hidden from the moment the replacing
//! segment is renamed into place (at start-up too, see `store`), and a segment whose chunks are
//! all hidden is deleted. A crash leaves either the inputs visible or the output, never both.
//!
//! ```text
//! segment := header | chunk* | footer | trailer
//! header  := "SAWMSEG1" (8) | version u8 (1 to 4) | reserved [u8; 7]                 16 bytes
//! chunk   := see `chunk` (version 3 segments are written with columnar chunks, version 2
//!            of `chunk`; version 4 with columnar blocks that all carry a filter section, so
//!            that they need no search index; each chunk says its own version, so any
//!            segment may hold either)
//! footer  := n_streams uv | { fingerprint u64 LE | labels lp | max_ts iv |
//!                              flushed_wal_seq uv | flushed_wal_offset uv }*
//!            n_chunks uv  | { stream uv | min_ts iv | max_ts iv | offset uv | len uv |
//!                              n_entries uv | raw_bytes uv }*
//!            n_names uv   | { name lp | n_values uv | { value lp | n uv | stream-delta uv * n }* }*
//!            (version 2:) n_replaced uv | { segment seq uv | from_ts iv | to_ts iv }*
//!                         deletes_applied_through uv
//! trailer := footer_offset u64 | footer_len u64 | crc32c(footer) u32 | reserved u32 |
//!            "SAWMSEGF" (8)                                                            32 bytes
//! (uv: unsigned varint, iv: zigzag varint, lp: uv length then bytes)
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;
use thiserror::Error;

use crate::labels::Labels;
use crate::storage::bucket::cache::{range_name, ReadCache};
use crate::storage::bucket::Bucket;
use crate::storage::codec::{put_ivarint, put_lp_bytes, put_uvarint, Reader, Truncated};
use crate::storage::files;
use crate::storage::wal::WalPos;

pub const SEGMENT_MAGIC: &[u8; 8] = b"SAWMSEG1";
pub const FOOTER_MAGIC: &[u8; 8] = b"SAWMSEGF";
/// Version 3: the footer of version 2; chunks written since are columnar. Version 4: the
/// same, and every block has a filter section (`columns`).
pub const SEGMENT_VERSION: u8 = 4;
pub const HEADER_LEN: usize = 16;
pub const TRAILER_LEN: usize = 32;

#[derive(Debug, Error)]
pub enum SegmentError {
    #[error("segment {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("segment {key} cannot be read from the bucket: {reason}")]
    Unavailable { key: String, reason: String },
    #[error("segment {path} is damaged at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// A stream as a segment records it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentStream {
    pub labels: Labels,
    pub fingerprint: u64,
    /// Newest timestamp this stream had accepted when the segment was written.
    pub max_ts: i64,
    /// Every WAL record at or before this position that touched this stream is in a segment.
    pub flushed_pos: WalPos,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkMeta {
    pub stream: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub offset: u64,
    pub len: u64,
    pub n_entries: u32,
    pub raw_bytes: u64,
}

/// name → value → sorted stream indexes.
pub type LabelIndex = BTreeMap<String, BTreeMap<String, Vec<u32>>>;

/// The chunks of segment `seq` whose `min_ts` lies in `[from, to)`, replaced by a compacted segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replaced {
    pub seq: u64,
    pub from: i64,
    pub to: i64,
}

impl Replaced {
    pub fn covers(&self, seq: u64, min_ts: i64) -> bool {
        self.seq == seq && min_ts >= self.from && min_ts < self.to
    }
}

/// Where a segment's data came from: what it replaces, and the delete requests already applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lineage {
    pub replaces: Vec<Replaced>,
    /// Delete requests numbered up to this one were applied when the segment was written.
    pub deletes_applied_through: u64,
}

pub struct SegmentWriter {
    tmp: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    streams: Vec<SegmentStream>,
    chunks: Vec<ChunkMeta>,
    lineage: Lineage,
}

impl SegmentWriter {
    pub fn create(final_path: &Path) -> Result<SegmentWriter, SegmentError> {
        let tmp = PathBuf::from(format!("{}{}", final_path.display(), files::TMP_SUFFIX));
        let io = |source| SegmentError::Io {
            path: tmp.clone(),
            source,
        };
        let file = File::create(&tmp).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(SEGMENT_MAGIC);
        header[8] = SEGMENT_VERSION;
        out.write_all(&header).map_err(io)?;
        Ok(SegmentWriter {
            tmp,
            out,
            offset: HEADER_LEN as u64,
            streams: Vec::new(),
            chunks: Vec::new(),
            lineage: Lineage::default(),
        })
    }

    pub fn set_lineage(&mut self, lineage: Lineage) {
        self.lineage = lineage;
    }

    /// Bytes of chunk data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.offset - HEADER_LEN as u64
    }

    pub fn add_stream(&mut self, s: SegmentStream) -> u32 {
        self.streams.push(s);
        (self.streams.len() - 1) as u32
    }

    /// Appends an encoded chunk of stream `stream`.
    pub fn add_chunk(
        &mut self,
        stream: u32,
        chunk: &[u8],
        min_ts: i64,
        max_ts: i64,
        n_entries: u32,
        raw_bytes: u64,
    ) -> Result<(), SegmentError> {
        self.out
            .write_all(chunk)
            .map_err(|source| SegmentError::Io {
                path: self.tmp.clone(),
                source,
            })?;
        self.chunks.push(ChunkMeta {
            stream,
            min_ts,
            max_ts,
            offset: self.offset,
            len: chunk.len() as u64,
            n_entries,
            raw_bytes,
        });
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// Writes the footer, fsyncs, renames into place and fsyncs the directory.
    pub fn finish(mut self, final_path: &Path) -> Result<u64, SegmentError> {
        let footer = encode_footer(&self.streams, &self.chunks, &self.lineage);
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&self.offset.to_le_bytes());
        trailer.extend_from_slice(&(footer.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&crc32c::crc32c(&footer).to_le_bytes());
        trailer.extend_from_slice(&0u32.to_le_bytes());
        trailer.extend_from_slice(FOOTER_MAGIC);
        let tmp = self.tmp.clone();
        let io = |source| SegmentError::Io {
            path: tmp.clone(),
            source,
        };
        self.out.write_all(&footer).map_err(io)?;
        self.out.write_all(&trailer).map_err(io)?;
        let file = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, final_path).map_err(io)?;
        if let Some(dir) = final_path.parent() {
            files::sync_dir(dir).map_err(io)?;
        }
        Ok(self.offset + footer.len() as u64 + TRAILER_LEN as u64)
    }

    /// Drops the temporary file.
    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

fn encode_footer(streams: &[SegmentStream], chunks: &[ChunkMeta], lineage: &Lineage) -> Vec<u8> {
    let mut f = Vec::with_capacity(streams.len() * 96 + chunks.len() * 24);
    put_uvarint(&mut f, streams.len() as u64);
    let mut index = LabelIndex::new();
    for (i, s) in streams.iter().enumerate() {
        f.extend_from_slice(&s.fingerprint.to_le_bytes());
        put_lp_bytes(&mut f, s.labels.to_string().as_bytes());
        put_ivarint(&mut f, s.max_ts);
        put_uvarint(&mut f, s.flushed_pos.seq);
        put_uvarint(&mut f, s.flushed_pos.offset);
        for (n, v) in s.labels.pairs() {
            index
                .entry(n.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .push(i as u32);
        }
    }
    put_uvarint(&mut f, chunks.len() as u64);
    for c in chunks {
        put_uvarint(&mut f, c.stream as u64);
        put_ivarint(&mut f, c.min_ts);
        put_ivarint(&mut f, c.max_ts);
        put_uvarint(&mut f, c.offset);
        put_uvarint(&mut f, c.len);
        put_uvarint(&mut f, c.n_entries as u64);
        put_uvarint(&mut f, c.raw_bytes);
    }
    put_uvarint(&mut f, index.len() as u64);
    for (name, values) in &index {
        put_lp_bytes(&mut f, name.as_bytes());
        put_uvarint(&mut f, values.len() as u64);
        for (value, postings) in values {
            put_lp_bytes(&mut f, value.as_bytes());
            put_uvarint(&mut f, postings.len() as u64);
            let mut prev = 0u32;
            for &p in postings {
                put_uvarint(&mut f, (p - prev) as u64);
                prev = p;
            }
        }
    }
    put_uvarint(&mut f, lineage.replaces.len() as u64);
    for r in &lineage.replaces {
        put_uvarint(&mut f, r.seq);
        put_ivarint(&mut f, r.from);
        put_ivarint(&mut f, r.to);
    }
    put_uvarint(&mut f, lineage.deletes_applied_through);
    f
}

/// An open segment: the mapped file and its decoded footer.
///
/// Queries hold it in an `Arc`: a segment deleted by compaction stays mapped (and readable)
/// until the last query using it drops it.
pub struct SegmentReader {
    path: PathBuf,
    source: Source,
    pub seq: u64,
    pub streams: Vec<SegmentStream>,
    /// The visible chunks: those not hidden by a compacted segment that replaced them.
    pub chunks: Vec<ChunkMeta>,
    pub index: LabelIndex,
    pub min_ts: i64,
    pub max_ts: i64,
    pub lineage: Lineage,
    /// The format version of the file.
    pub version: u8,
    /// Chunks of the file hidden because a compacted segment replaced them.
    pub hidden_chunks: usize,
    /// The search index, once built or opened (`index`); shared by the copies `without`
    /// makes, so that one attached later serves them all.
    pub search: Arc<std::sync::OnceLock<Arc<crate::storage::index::SegmentIndex>>>,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentReader({})", self.path.display())
    }
}

impl SegmentReader {
    pub fn open(path: &Path) -> Result<SegmentReader, SegmentError> {
        let io = |source| SegmentError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        // SAFETY: segment files are immutable once renamed into place; nothing in Sawmill writes
        // to or truncates them while they are mapped, and every access is bounds-checked below.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(files::segment_seq)
            .unwrap_or(0);
        let len = map.len() as u64;
        let read = |r: std::ops::Range<u64>| {
            Ok(Bytes::copy_from_slice(
                &map[r.start as usize..r.end as usize],
            ))
        };
        let footer = read_footer(path, len, read)?;
        Ok(SegmentReader::with_footer(
            path,
            Source::Mapped(Arc::new(map)),
            seq,
            footer,
        ))
    }

    /// Opens segment `seq` of `key` in a bucket (`len` bytes, from the catalog): reads its
    /// header, trailer and footer with ranged GETs through `cache`, and its chunks the same
    /// way when a query reads them.
    pub fn open_remote(
        bucket: Arc<Bucket>,
        cache: Arc<ReadCache>,
        key: &str,
        seq: u64,
        len: u64,
    ) -> Result<SegmentReader, SegmentError> {
        let remote = Arc::new(RemoteObject {
            bucket,
            cache,
            key: key.to_string(),
            len,
        });
        let path = PathBuf::from(key);
        let footer = read_footer(&path, len, |r| remote.read(r))?;
        Ok(SegmentReader::with_footer(
            &path,
            Source::Remote(remote),
            seq,
            footer,
        ))
    }

    fn with_footer(path: &Path, source: Source, seq: u64, f: CheckedFooter) -> SegmentReader {
        let (streams, chunks, index, lineage) = f.footer;
        let (min_ts, max_ts) = time_range(&chunks);
        SegmentReader {
            path: path.to_path_buf(),
            source,
            seq,
            streams,
            chunks,
            index,
            min_ts,
            max_ts,
            lineage,
            version: f.version,
            hidden_chunks: 0,
            search: Arc::default(),
        }
    }

    /// The same file with the chunks that `replaced` covers hidden (`self` is left as it is, for
    /// the queries still reading it).
    pub fn without(&self, replaced: &[Replaced]) -> SegmentReader {
        let before = self.chunks.len();
        let chunks: Vec<ChunkMeta> = self
            .chunks
            .iter()
            .filter(|c| !replaced.iter().any(|r| r.covers(self.seq, c.min_ts)))
            .copied()
            .collect();
        let (min_ts, max_ts) = time_range(&chunks);
        SegmentReader {
            path: self.path.clone(),
            source: self.source.clone(),
            seq: self.seq,
            streams: self.streams.clone(),
            hidden_chunks: self.hidden_chunks + (before - chunks.len()),
            chunks,
            index: self.index.clone(),
            min_ts,
            max_ts,
            lineage: self.lineage.clone(),
            version: self.version,
            search: self.search.clone(),
        }
    }

    /// Every chunk hidden: the file holds nothing any query may see.
    pub fn is_replaced(&self) -> bool {
        self.chunks.is_empty() && self.hidden_chunks > 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_len(&self) -> u64 {
        match &self.source {
            Source::Mapped(map) => map.len() as u64,
            Source::Remote(r) => r.len,
        }
    }

    /// The object key of a segment in a bucket.
    pub fn remote_key(&self) -> Option<&str> {
        match &self.source {
            Source::Mapped(_) => None,
            Source::Remote(r) => Some(&r.key),
        }
    }

    /// The encoded bytes of a chunk (bounds were checked at open): from the mapped file, or
    /// from the bucket (one ranged GET, through the read cache).
    pub fn chunk_bytes(&self, c: &ChunkMeta) -> Result<ChunkData<'_>, SegmentError> {
        match &self.source {
            Source::Mapped(map) => Ok(ChunkData::Mapped(
                &map[c.offset as usize..(c.offset + c.len) as usize],
            )),
            Source::Remote(r) => r.read(c.offset..c.offset + c.len).map(ChunkData::Fetched),
        }
    }

    /// Takes a chunk's pages out of this process's resident memory once a query has read it:
    /// they stay in the kernel's page cache, and a later read maps them again. Without it a
    /// query over all the data would leave all of it resident, so that memory would grow
    /// with the data instead of staying bounded by the configuration.
    pub fn release(&self, c: &ChunkMeta) {
        let Source::Mapped(map) = &self.source else {
            return;
        };
        // SAFETY: a shared, read-only mapping of a file nothing writes to once it is renamed
        // into place (see `open`): after MADV_DONTNEED the next access reads the same bytes
        // from the page cache. Slices borrowed from the map stay valid.
        let _ = unsafe {
            map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                c.offset as usize,
                c.len as usize,
            )
        };
    }

    /// Streams having label `name` with a value for which `pred` holds.
    pub fn postings(&self, name: &str, pred: impl Fn(&str) -> bool) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .index
            .get(name)
            .map(|vals| {
                vals.iter()
                    .filter(|(v, _)| pred(v))
                    .flat_map(|(_, p)| p.iter().copied())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Where a segment's bytes are.
#[derive(Clone)]
enum Source {
    Mapped(Arc<Mmap>),
    Remote(Arc<RemoteObject>),
}

/// A segment in a bucket.
struct RemoteObject {
    bucket: Arc<Bucket>,
    cache: Arc<ReadCache>,
    key: String,
    len: u64,
}

impl RemoteObject {
    fn read(&self, range: std::ops::Range<u64>) -> Result<Bytes, SegmentError> {
        let want = range.end - range.start;
        let name = range_name(&self.key, &range);
        let data = self
            .cache
            .get_or_fetch(&name, || self.bucket.get_range(&self.key, range))
            .map_err(|e| SegmentError::Unavailable {
                key: self.key.clone(),
                reason: e.to_string(),
            })?;
        if data.len() as u64 != want {
            return Err(SegmentError::Unavailable {
                key: self.key.clone(),
                reason: format!("asked for {want} bytes, got {}", data.len()),
            });
        }
        Ok(data)
    }
}

/// A chunk's bytes: borrowed from a mapped file, or fetched from a bucket.
pub enum ChunkData<'a> {
    Mapped(&'a [u8]),
    Fetched(Bytes),
}

impl std::ops::Deref for ChunkData<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ChunkData::Mapped(b) => b,
            ChunkData::Fetched(b) => b,
        }
    }
}

struct CheckedFooter {
    version: u8,
    footer: Footer,
}

/// Reads and checks a segment's header, trailer and footer through `read` (a byte range of
/// a `len`-byte segment); every chunk reference is checked to lie inside the file.
fn read_footer(
    path: &Path,
    len: u64,
    read: impl Fn(std::ops::Range<u64>) -> Result<Bytes, SegmentError>,
) -> Result<CheckedFooter, SegmentError> {
    let corrupt = |offset: u64, reason: &str| SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    };
    if len < (HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(corrupt(len, "file too short"));
    }
    let header = read(0..HEADER_LEN as u64)?;
    let version = header[8];
    if &header[..8] != SEGMENT_MAGIC || !(1..=SEGMENT_VERSION).contains(&version) {
        return Err(corrupt(0, "bad magic or version"));
    }
    let data_end = len - TRAILER_LEN as u64;
    let t = read(data_end..len)?;
    if &t[24..32] != FOOTER_MAGIC {
        return Err(corrupt(len - 8, "bad footer magic (file cut short?)"));
    }
    let footer_off = u64::from_le_bytes(t[0..8].try_into().unwrap());
    let footer_len = u64::from_le_bytes(t[8..16].try_into().unwrap());
    let crc = u32::from_le_bytes(t[16..20].try_into().unwrap());
    if footer_off < HEADER_LEN as u64 || footer_off.checked_add(footer_len) != Some(data_end) {
        return Err(corrupt(data_end, "footer position out of range"));
    }
    let footer = read(footer_off..data_end)?;
    if crc32c::crc32c(&footer) != crc {
        return Err(corrupt(footer_off, "footer checksum mismatch"));
    }
    let (streams, chunks, index, lineage) = decode_footer(&footer, version)
        .map_err(|Truncated(at)| corrupt(footer_off + at as u64, "malformed footer"))?;
    for c in &chunks {
        if c.stream as usize >= streams.len()
            || c.offset < HEADER_LEN as u64
            || c.offset.checked_add(c.len).is_none_or(|e| e > footer_off)
        {
            return Err(corrupt(footer_off, "chunk reference out of range"));
        }
    }
    for postings in index.values().flat_map(|v| v.values()) {
        if postings.iter().any(|p| *p as usize >= streams.len()) {
            return Err(corrupt(
                footer_off,
                "label index references a missing stream",
            ));
        }
    }
    Ok(CheckedFooter {
        version,
        footer: (streams, chunks, index, lineage),
    })
}

fn time_range(chunks: &[ChunkMeta]) -> (i64, i64) {
    let min_ts = chunks.iter().map(|c| c.min_ts).min().unwrap_or(0);
    let max_ts = chunks.iter().map(|c| c.max_ts).max().unwrap_or(0);
    (min_ts, max_ts)
}

type Footer = (Vec<SegmentStream>, Vec<ChunkMeta>, LabelIndex, Lineage);

fn decode_footer(f: &[u8], version: u8) -> Result<Footer, Truncated> {
    let mut r = Reader::new(f);
    let n = r.uvarint()? as usize;
    let mut streams = Vec::with_capacity(n.min(f.len()));
    for _ in 0..n {
        let fingerprint = r.u64()?;
        let at = r.pos();
        let labels = Labels::parse(r.lp_str()?).map_err(|_| Truncated(at))?;
        let max_ts = r.ivarint()?;
        let flushed_pos = WalPos {
            seq: r.uvarint()?,
            offset: r.uvarint()?,
        };
        streams.push(SegmentStream {
            labels,
            fingerprint,
            max_ts,
            flushed_pos,
        });
    }
    let n = r.uvarint()? as usize;
    let mut chunks = Vec::with_capacity(n.min(f.len()));
    for _ in 0..n {
        chunks.push(ChunkMeta {
            stream: u32::try_from(r.uvarint()?).map_err(|_| Truncated(r.pos()))?,
            min_ts: r.ivarint()?,
            max_ts: r.ivarint()?,
            offset: r.uvarint()?,
            len: r.uvarint()?,
            n_entries: r.uvarint()? as u32,
            raw_bytes: r.uvarint()?,
        });
    }
    let mut index = LabelIndex::new();
    let names = r.uvarint()?;
    for _ in 0..names {
        let name = r.lp_str()?.to_string();
        let nv = r.uvarint()?;
        let values = index.entry(name).or_default();
        for _ in 0..nv {
            let value = r.lp_str()?.to_string();
            let np = r.uvarint()? as usize;
            let mut postings = Vec::with_capacity(np.min(r.remaining()));
            let mut prev = 0u64;
            for _ in 0..np {
                prev = prev.checked_add(r.uvarint()?).ok_or(Truncated(r.pos()))?;
                postings.push(u32::try_from(prev).map_err(|_| Truncated(r.pos()))?);
            }
            values.insert(value, postings);
        }
    }
    let mut lineage = Lineage::default();
    if version >= 2 {
        let n = r.uvarint()? as usize;
        lineage.replaces.reserve(n.min(r.remaining()));
        for _ in 0..n {
            lineage.replaces.push(Replaced {
                seq: r.uvarint()?,
                from: r.ivarint()?,
                to: r.ivarint()?,
            });
        }
        lineage.deletes_applied_through = r.uvarint()?;
    }
    Ok((streams, chunks, index, lineage))
}

/// Lists segment files of a directory in sequence order, removing leftover temporary files.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(files::TMP_SUFFIX) {
            let _ = std::fs::remove_file(e.path());
            let _ = std::fs::remove_dir_all(e.path());
        } else if let Some(seq) = files::segment_seq(name) {
            out.push((seq, e.path()));
        } else if name.ends_with(&format!(".{}", files::INDEX_EXT))
            && !e.path().with_extension(files::SEGMENT_EXT).exists()
        {
            // The index of a segment deleted before its index was.
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes a segment file, then its search index.
pub fn remove(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    match std::fs::remove_dir_all(files::index_dir(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::{chunk_blocks, encode_chunk, DecodedBlock, HeadBlock};

    fn write_segment(dir: &Path) -> PathBuf {
        let path = files::segment_file(dir, 1);
        let mut w = SegmentWriter::create(&path).unwrap();
        for (i, app) in ["api", "db", "web"].iter().enumerate() {
            let labels = Labels::parse(&format!("{{app=\"{app}\", env=\"prod\"}}")).unwrap();
            let s = w.add_stream(SegmentStream {
                fingerprint: labels.fingerprint(),
                labels,
                max_ts: 100 + i as i64,
                flushed_pos: WalPos { seq: 3, offset: 99 },
            });
            let mut h = HeadBlock::default();
            for t in 0..50 {
                h.push(
                    t,
                    &format!("{app} line {t}"),
                    crate::storage::chunk::NO_METADATA,
                );
            }
            let b = h.seal(1);
            let mut c = Vec::new();
            encode_chunk([b].iter(), &mut c);
            w.add_chunk(s, &c, 0, 49, 50, 1000).unwrap();
        }
        w.finish(&path).unwrap();
        path
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path());
        let r = SegmentReader::open(&path).unwrap();
        assert_eq!(r.streams.len(), 3);
        assert_eq!(r.chunks.len(), 3);
        assert_eq!(r.postings("app", |v| v == "db"), vec![1]);
        assert_eq!(r.postings("env", |v| v == "prod"), vec![0, 1, 2]);
        assert_eq!(r.streams[2].flushed_pos, WalPos { seq: 3, offset: 99 });
        let data = r.chunk_bytes(&r.chunks[1]).unwrap();
        let blocks = chunk_blocks(&data).unwrap();
        let mut d = DecodedBlock::default();
        d.decode_from(&blocks[0]).unwrap();
        assert_eq!(d.line(0), b"db line 0");
    }

    #[test]
    fn replaced_chunks_are_hidden_and_a_deleted_file_stays_readable_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path());
        let r = std::sync::Arc::new(SegmentReader::open(&path).unwrap());
        let hide = [Replaced {
            seq: r.seq,
            from: 0,
            to: 50,
        }];
        let other = [Replaced {
            seq: r.seq + 1,
            from: 0,
            to: 50,
        }];
        assert_eq!(r.without(&other).chunks.len(), 3, "another segment's range");
        let hidden = r.without(&hide);
        assert!(hidden.chunks.is_empty() && hidden.is_replaced());
        // A query holding the reader keeps reading after compaction deleted the file.
        std::fs::remove_file(&path).unwrap();
        let data = r.chunk_bytes(&r.chunks[2]).unwrap();
        let blocks = chunk_blocks(&data).unwrap();
        let mut d = DecodedBlock::default();
        d.decode_from(&blocks[0]).unwrap();
        assert_eq!(d.line(49), b"web line 49");
    }

    #[test]
    fn every_flipped_byte_or_cut_is_an_error_or_a_valid_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path());
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.seg");
        for i in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[i] ^= 0xff;
            std::fs::write(&bad, &b).unwrap();
            if let Ok(r) = SegmentReader::open(&bad) {
                // Damage inside chunk data is caught by the block checksums.
                for c in &r.chunks {
                    if let Ok(blocks) = chunk_blocks(&r.chunk_bytes(c).unwrap()) {
                        for blk in blocks {
                            let _ = DecodedBlock::default().decode_from(&blk);
                        }
                    }
                }
            }
            std::fs::write(&bad, &good[..i]).unwrap();
            assert!(
                SegmentReader::open(&bad).is_err(),
                "cut at {i} must be reported"
            );
        }
    }
}
