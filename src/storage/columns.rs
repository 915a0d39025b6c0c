//! Columnar blocks (chunk version 2, segment format v3). A block keeps apart what queries
//! read apart: timestamps, line lengths, structured metadata, the lines, and a summary of
//! the fields `| json` and `| logfmt` find in them. Each section is compressed on its own, so
//! `count_over_time` reads timestamps and metadata without touching the lines, and a label
//! filter skips a whole block when the summary proves that no line can pass.
//!
//! ```text
//! block   := n_entries u32 | body_len u32 | crc32c(header without crc ++ table) u32 |
//!            n_sections u16 | reserved u16 | min_ts i64 | max_ts i64     (header: 32 bytes, LE)
//!            table: { kind u8 | codec u8 | reserved u16 | stored_len u32 | raw_len u32 |
//!                     crc32c(stored bytes) u32 } * n_sections              (16 bytes each)
//!            section bytes, in table order                       (body_len = table + sections)
//! codec   := 0 stored as is | 1 zstd
//! section kinds (raw bytes, before the codec):
//!   1 time      first ts iv | (delta[i] - delta[i-1]) iv * (n-1)      (delta-of-delta, sorted)
//!   2 lengths   line_len uv * n
//!   3 metadata  n_distinct uv | { encoded metadata lp } * n_distinct |
//!               (n_distinct > 1:) distinct index uv * n
//!   4 lines     lines concatenated, in timestamp order
//!   5 fields    n_parsers u8 | { parser u8 (1 json, 2 logfmt, 3 metadata) | errors uv | complete u8 |
//!                 n_fields uv | { name lp | present uv | numeric uv | min f64 | max f64 |
//!                 n_values u8 (255: more than MAX_VALUES) | value lp * n_values }* }*
//!   6 filter    a Bloom filter (`bloom`), always stored as is: the hashes of every line's tokens
//!               (`index::for_each_token`), the prefix and suffix keys of its wordy runs
//!               (`index::edge_keys`), every structured metadata value, and `index::escape_key`
//!               when a line has a backslash
//!   7 values    n_columns u8 | { parser u8 | name lp | scale u8 | n_values uv |
//!                 (n_values < n:) bitmap, ceil(n / 8) bytes, bit i (LSB first) set when line i
//!                 has a value | n_values values, in line order:
//!                 scale <= 6: m iv, the value being m / 10^scale; 255: f64 LE
//!               | parser u8 | name lp | 254 u8 | k u8 | value lp * k | code u8 * n
//!               | parser u8 | "" lp | 253 u8 | bitmap, ceil(n / 8) bytes }*
//!               (254: a dictionary column, code 0: no value, else value number `code`; 253:
//!               the lines the parser failed on, written with its dictionary columns)
//!               (optional: only when some field has a column; see "Value columns")
//! ```
//! (uv: unsigned varint, iv: zigzag varint, lp: uv length then bytes)
//!
//! Entries keep the order of version 1 blocks: sorted by timestamp, ties in arrival order. The
//! line a user pushed is stored as is, so it comes back byte for byte whatever its shape.
//!
//! **Why these choices** (measured on the shared workload: 1,000,000 lines of ~300 bytes, 60
//! streams). The lines are 97% of a block's raw bytes and nearly all of its compressed bytes:
//! at zstd level 1 they take 49.3 MB, at 3 51.0, at 6 46.4, at 9 44.3; 256 KB, 1 MB and 4 MB
//! blocks differ by under 2% at every level, so blocks stay at `chunk_block_size` (256 KB), the
//! unit a needle query decompresses. Lines use `ingester.chunk_compression_level` (1 by
//! default: level 9 costs about five times the CPU on the push path). Timestamps, lengths and
//! metadata are small and repetitive; they take zstd only when it makes them smaller. Most of
//! what stays is the random IDs each line carries (about 28 bytes of entropy a line, repeated
//! across the streams a request touches, which per-stream blocks cannot share).
//!
//! **Field summaries.** For each parser, every name it extracts from any line of the block
//! (up to [`MAX_FIELDS`]; past that `complete` is 0 and the summary says nothing about other
//! names), with: in how many lines it is present, how many of those values convert to a finite
//! float and their min and max, and its distinct values when there are at most
//! [`MAX_VALUES`] of at most [`MAX_VALUE_LEN`] bytes. The summary is computed by running the
//! query engine's own `| json` and `| logfmt` stages over each line with no stream labels, so
//! what it says is what those stages give; `query` decides when that is what a query sees.
//!
//! **Value columns.** For each parser, each field whose every value in the block converts to a
//! finite float (up to [`MAX_VALUE_COLUMNS`] per parser) keeps that float per line, so that
//! `| logfmt | unwrap duration_ms` reads it instead of the lines (`query::values`). A line the
//! parser failed on has no value; of a name given twice, the last value counts (as in the
//! labels builder). Each column takes the smallest decimal scale that gives back every value
//! bit for bit (`7.5` is 75 at scale 1), else raw floats. Each field with at most
//! [`MAX_VALUES`] distinct values (the summary lists them) gets a dictionary column too: a byte
//! per line, so that `| json | level="error"` in a count reads it instead of the lines. It
//! keeps the value of a line the parser failed on too (before the failure), and the lines it
//! failed on are a bitmap beside it: a count without `__error__=""` must see them. Fields
//! named like identifiers
//! (`..id`) get none: nobody unwraps them, and their random digits are the costliest to keep.
//! Measured on the shared workload: the columns (duration_ms and status, twice: JSON and
//! logfmt lines) add about 3% to the stored bytes, and the p95 `unwrap` query reads a tenth
//! of what it read.

use std::collections::HashMap;

use crate::logql::go;
use crate::pipeline::labels_builder::normalize_label;
use crate::pipeline::stages::json::{object_each, push_lossy_spaces, unescape_string, ValueType};
use crate::pipeline::stages::logfmt::Decoder;
use crate::pipeline::stages::sanitize_key_bytes;
use crate::storage::bloom::BloomView;
use crate::storage::codec::{put_ivarint, put_lp_bytes, put_uvarint, Reader};
use crate::storage::compress::{
    compress_parts, metadata_pairs, zstd_decompress, ChunkError, MAX_BLOCK_RAW,
};

pub const KIND_TIME: u8 = 1;
pub const KIND_LENGTHS: u8 = 2;
pub const KIND_METADATA: u8 = 3;
pub const KIND_LINES: u8 = 4;
pub const KIND_FIELDS: u8 = 5;
pub const KIND_FILTER: u8 = 6;
pub const KIND_VALUES: u8 = 7;
const KINDS: usize = 8;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

pub const HEADER_LEN: usize = 32;
pub const TABLE_ENTRY_LEN: usize = 16;

pub const PARSER_JSON: u8 = 1;
pub const PARSER_LOGFMT: u8 = 2;
/// Not a parser: the structured metadata names (normalized) and values of the block.
pub const PARSER_METADATA: u8 = 3;
/// Names summarized per parser and block.
pub const MAX_FIELDS: usize = 64;
/// Distinct values kept per field.
pub const MAX_VALUES: usize = 16;
pub const MAX_VALUE_LEN: usize = 64;
const MANY_VALUES: u8 = 255;
/// Value columns kept per parser and block.
pub const MAX_VALUE_COLUMNS: usize = 8;
/// A value column's scale meaning "raw f64 bits".
const RAW_FLOATS: u8 = 255;
/// Distinct values of a field with a dictionary column: levels, methods, not messages
/// (which cost more bytes than they save reads). A field whose values are all numbers has a
/// value column instead.
pub const MAX_DICTIONARY: usize = 8;
/// A column's scale byte meaning "a dictionary column" (see the layout).
const DICTIONARY: u8 = 254;
/// A column's scale byte meaning "the lines the parser failed on" (see the layout).
const ERRORS: u8 = 253;
/// Decimal scales tried for a value column: value = m / 10^scale.
const SCALES: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// One section of a block, still in its stored form.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    codec: u8,
    raw_len: u32,
    crc: u32,
    stored: &'a [u8],
    /// Offset of the stored bytes from the block's start.
    offset: usize,
}

impl<'a> Section<'a> {
    /// The section's raw bytes: borrowed when stored as is, else decompressed into `buf`.
    pub fn read<'s>(&'s self, buf: &'s mut Vec<u8>) -> Result<&'s [u8], ChunkError> {
        self.verify()?;
        match self.codec {
            CODEC_RAW => Ok(self.stored),
            CODEC_ZSTD => {
                zstd_decompress(self.stored, self.raw_len as usize, buf)?;
                Ok(&buf[..])
            }
            c => Err(ChunkError::Malformed(format!("unknown section codec {c}"))),
        }
    }

    /// Checks the stored bytes against their checksum.
    pub fn verify(&self) -> Result<(), ChunkError> {
        if crc32c::crc32c(self.stored) != self.crc {
            return Err(ChunkError::Checksum(self.offset));
        }
        Ok(())
    }

    /// The section's raw bytes, into `out` (cleared first).
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<(), ChunkError> {
        if self.codec == CODEC_RAW {
            self.verify()?;
            out.clear();
            out.extend_from_slice(self.stored);
            return Ok(());
        }
        self.read(out).map(|_| ())
    }

    pub fn stored_len(&self) -> usize {
        self.stored.len()
    }

    /// Where the stored bytes start, from the block's start.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

/// The sections of a block, by kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Columns<'a> {
    sections: [Option<Section<'a>>; KINDS],
}

impl<'a> Columns<'a> {
    pub fn get(&self, kind: u8) -> Result<&Section<'a>, ChunkError> {
        self.sections
            .get(kind as usize)
            .and_then(|s| s.as_ref())
            .ok_or_else(|| ChunkError::Malformed(format!("block has no section {kind}")))
    }

    /// The block's filter, read in place; `None` when it has none, or a damaged one (which
    /// then decides nothing: the block is read, and its other sections checked).
    pub fn filter(&self) -> Option<BloomView<'a>> {
        let s = *self.get(KIND_FILTER).ok()?;
        if s.codec != CODEC_RAW || s.verify().is_err() {
            return None;
        }
        BloomView::parse(s.stored)
    }

    /// The block's field summaries (empty when it has none).
    pub fn summaries(&self) -> Result<Vec<ParserSummary>, ChunkError> {
        let Ok(s) = self.get(KIND_FIELDS) else {
            return Ok(Vec::new());
        };
        let mut buf = Vec::new();
        decode_summaries(s.read(&mut buf)?)
    }
}

/// What a block's header and table say, with its sections borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Parsed<'a> {
    pub n_entries: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub crc: u32,
    /// Sum of the sections' raw lengths.
    pub raw_len: u64,
    /// The whole block, header included.
    pub bytes: &'a [u8],
    pub columns: Columns<'a>,
}

/// Reads one block at the reader's position; checks the header and table, not the sections.
pub fn parse<'a>(r: &mut Reader<'a>) -> Result<Parsed<'a>, ChunkError> {
    let start = r.pos();
    let header = r.bytes(HEADER_LEN)?;
    let mut h = Reader::new(header);
    let n_entries = h.u32()?;
    let body_len = h.u32()? as usize;
    let crc = h.u32()?;
    let n_sections = h.u16()? as usize;
    h.u16()?;
    let min_ts = h.i64()?;
    let max_ts = h.i64()?;
    let body = r.bytes(body_len)?;
    let table_len = n_sections
        .checked_mul(TABLE_ENTRY_LEN)
        .filter(|t| *t <= body.len())
        .ok_or_else(|| ChunkError::Malformed(format!("block claims {n_sections} sections")))?;
    let table = &body[..table_len];
    let mut digest = crc32c::crc32c(&header[..8]);
    digest = crc32c::crc32c_append(digest, &header[12..]);
    digest = crc32c::crc32c_append(digest, table);
    if digest != crc {
        return Err(ChunkError::Checksum(start));
    }
    let mut t = Reader::new(table);
    let mut data = Reader::new(&body[table_len..]);
    let mut columns = Columns::default();
    let mut raw_len = 0u64;
    for _ in 0..n_sections {
        let kind = t.u8()?;
        let codec = t.u8()?;
        t.u16()?;
        let stored_len = t.u32()? as usize;
        let raw = t.u32()?;
        let scrc = t.u32()?;
        let offset = HEADER_LEN + table_len + data.pos();
        let stored = data.bytes(stored_len)?;
        if raw as usize > MAX_BLOCK_RAW {
            return Err(ChunkError::Malformed(format!(
                "section claims {raw} raw bytes"
            )));
        }
        raw_len += raw as u64;
        // Unknown kinds are skipped: a later version may add sections.
        if let Some(slot) = columns.sections.get_mut(kind as usize) {
            *slot = Some(Section {
                codec,
                raw_len: raw,
                crc: scrc,
                stored,
                offset,
            });
        }
    }
    Ok(Parsed {
        n_entries,
        min_ts,
        max_ts,
        crc,
        raw_len,
        bytes: r.since(start),
        columns,
    })
}

/// Encodes the time, lengths and metadata sections of entries given in block order.
pub fn encode_entries<'a>(
    ts: impl Iterator<Item = i64>,
    lens: impl Iterator<Item = usize>,
    metadata: impl Iterator<Item = &'a [u8]>,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut time = Vec::new();
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for (k, t) in ts.enumerate() {
        if k == 0 {
            put_ivarint(&mut time, t);
        } else {
            let d = t.wrapping_sub(prev);
            put_ivarint(&mut time, d.wrapping_sub(prev_delta));
            prev_delta = d;
        }
        prev = t;
    }
    let mut lengths = Vec::new();
    for l in lens {
        put_uvarint(&mut lengths, l as u64);
    }
    let mut distinct: Vec<&[u8]> = Vec::new();
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    let mut index: Vec<usize> = Vec::new();
    for md in metadata {
        // Consecutive entries nearly always share their set: try the last one first.
        let i = match index.last() {
            Some(&last) if distinct[last] == md => last,
            _ => *seen.entry(md).or_insert_with(|| {
                distinct.push(md);
                distinct.len() - 1
            }),
        };
        index.push(i);
    }
    let mut metadata = Vec::new();
    put_uvarint(&mut metadata, distinct.len() as u64);
    for d in &distinct {
        put_lp_bytes(&mut metadata, d);
    }
    if distinct.len() > 1 {
        for i in index {
            put_uvarint(&mut metadata, i as u64);
        }
    }
    (time, lengths, metadata)
}

/// Writes a block from its raw sections; `lines` is compressed at `level`, the others only
/// when zstd makes them smaller.
pub fn write_block(
    n: u32,
    min_ts: i64,
    max_ts: i64,
    sections: &[(u8, &[u8])],
    level: i32,
) -> (Vec<u8>, u64) {
    let mut table = Vec::with_capacity(sections.len() * TABLE_ENTRY_LEN);
    let mut data: Vec<u8> = Vec::new();
    let mut raw_total = 0u64;
    for (kind, raw) in sections {
        raw_total += raw.len() as u64;
        let (codec, stored) = if *kind == KIND_LINES {
            (CODEC_ZSTD, compress_parts(&[raw], level))
        } else if *kind == KIND_FILTER {
            // Random bits; read in place by queries.
            (CODEC_RAW, raw.to_vec())
        } else if raw.len() > 64 {
            let z = compress_parts(&[raw], level.max(3));
            if z.len() < raw.len() {
                (CODEC_ZSTD, z)
            } else {
                (CODEC_RAW, raw.to_vec())
            }
        } else {
            (CODEC_RAW, raw.to_vec())
        };
        table.push(*kind);
        table.push(codec);
        table.extend_from_slice(&[0, 0]);
        table.extend_from_slice(&(stored.len() as u32).to_le_bytes());
        table.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        table.extend_from_slice(&crc32c::crc32c(&stored).to_le_bytes());
        data.extend_from_slice(&stored);
    }
    let body_len = table.len() + data.len();
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(sections.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&min_ts.to_le_bytes());
    out.extend_from_slice(&max_ts.to_le_bytes());
    let mut digest = crc32c::crc32c(&out[..8]);
    digest = crc32c::crc32c_append(digest, &out[12..]);
    digest = crc32c::crc32c_append(digest, &table);
    out[8..12].copy_from_slice(&digest.to_le_bytes());
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    (out, raw_total)
}

/// Reads the time section into `out`.
pub fn decode_time(raw: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), ChunkError> {
    out.clear();
    let mut r = Reader::new(raw);
    let (mut prev, mut delta) = (0i64, 0i64);
    for k in 0..n {
        if k == 0 {
            prev = r.ivarint()?;
        } else {
            delta = delta.wrapping_add(r.ivarint()?);
            prev = prev.wrapping_add(delta);
        }
        out.push(prev);
    }
    Ok(())
}

/// Reads the lengths section into `out`.
pub fn decode_lengths(raw: &[u8], n: usize, out: &mut Vec<u32>) -> Result<(), ChunkError> {
    out.clear();
    let mut r = Reader::new(raw);
    for _ in 0..n {
        let l = r.uvarint()?;
        out.push(u32::try_from(l).map_err(|_| ChunkError::Malformed("line length".into()))?);
    }
    Ok(())
}

/// Reads the metadata section: the distinct encoded sets (as ranges of `raw`) and each
/// entry's set.
pub fn decode_metadata(
    raw: &[u8],
    n: usize,
    distinct: &mut Vec<(u32, u32)>,
    index: &mut Vec<u32>,
) -> Result<(), ChunkError> {
    distinct.clear();
    index.clear();
    let mut r = Reader::new(raw);
    let k = r.uvarint()? as usize;
    if k > n.max(1) {
        return Err(ChunkError::Malformed(format!(
            "{k} metadata sets for {n} entries"
        )));
    }
    for _ in 0..k {
        let len = r.uvarint()? as usize;
        let start = r.pos();
        r.bytes(len)?;
        distinct.push((start as u32, r.pos() as u32));
    }
    if k > 1 {
        for _ in 0..n {
            let i = r.uvarint()?;
            if i as usize >= k {
                return Err(ChunkError::Malformed(format!("metadata set {i} of {k}")));
            }
            index.push(i as u32);
        }
    } else {
        if k == 0 && n > 0 {
            return Err(ChunkError::Malformed(
                "entries without a metadata set".into(),
            ));
        }
        index.resize(n, 0);
    }
    Ok(())
}

/// What one parser found in a block's lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ParserSummary {
    pub parser: u8,
    /// Lines the parser set `__error__` on.
    pub errors: u64,
    /// Whether every name any line gave is listed.
    pub complete: bool,
    pub fields: Vec<FieldSummary>,
}

impl ParserSummary {
    pub fn field(&self, name: &str) -> Option<&FieldSummary> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FieldSummary {
    pub name: String,
    /// Lines that have the field.
    pub present: u64,
    /// Of those, values that convert to a finite float (Go's `ParseFloat`); equal to
    /// `present` exactly when every value converts (counting stops at the first that does not).
    pub numeric: u64,
    pub min: f64,
    pub max: f64,
    /// Every distinct value, when there are few and short ones.
    pub values: Option<Vec<String>>,
}

fn decode_summaries(raw: &[u8]) -> Result<Vec<ParserSummary>, ChunkError> {
    let mut r = Reader::new(raw);
    let n = r.u8()?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let parser = r.u8()?;
        let errors = r.uvarint()?;
        let complete = r.u8()? == 1;
        let nf = r.uvarint()? as usize;
        if nf > MAX_FIELDS {
            return Err(ChunkError::Malformed(format!("{nf} summarized fields")));
        }
        let mut fields = Vec::with_capacity(nf);
        for _ in 0..nf {
            let name = r.lp_str()?.to_string();
            let present = r.uvarint()?;
            let numeric = r.uvarint()?;
            let min = f64::from_bits(r.u64()?);
            let max = f64::from_bits(r.u64()?);
            let nv = r.u8()?;
            let values = if nv == MANY_VALUES {
                None
            } else {
                let mut v = Vec::with_capacity(nv as usize);
                for _ in 0..nv {
                    v.push(r.lp_str()?.to_string());
                }
                Some(v)
            };
            fields.push(FieldSummary {
                name,
                present,
                numeric,
                min,
                max,
                values,
            });
        }
        out.push(ParserSummary {
            parser,
            errors,
            complete,
            fields,
        });
    }
    Ok(out)
}

struct FieldAcc {
    present: u64,
    numeric: u64,
    min: f64,
    max: f64,
    values: Option<Vec<String>>,
    /// Hashes of `values`, compared before the strings.
    hashes: Vec<u64>,
    /// The line that last gave this field (a name given twice counts once).
    last_line: u64,
    /// Each line's value as a float, while every value converts: (line, value), the line
    /// counted from 0 in the order observed; lines the parser set `__error__` on are left
    /// out. The source of the block's value columns.
    column: Option<Vec<(u32, f64)>>,
    /// While `values` lists every distinct value: (line, 1 + the value's place in `values`),
    /// lines the parser failed on left out. The source of the block's dictionary columns.
    dict: Vec<(u32, u8)>,
}

/// The fields of one parser in a block, in first-seen order. Lines of one stream mostly list
/// the same fields in the same order, so the field after the last one found is tried first.
#[derive(Default)]
struct Fields {
    items: Vec<(String, FieldAcc)>,
    next: usize,
    /// The item of each top-level key slot of [`LineFields`] (`NO_SLOT` until known), so a
    /// name found once per block is not compared again.
    by_slot: Vec<u32>,
}

impl Fields {
    fn clear(&mut self) {
        self.items.clear();
        self.next = 0;
        self.by_slot.clear();
    }

    /// The item of `name`, given by key slot `slot` (or `NO_SLOT`).
    fn find_slot(&mut self, slot: u32, name: &str) -> Option<usize> {
        if let Some(&i) = self.by_slot.get(slot as usize) {
            if i != NO_SLOT {
                self.next = i as usize + 1;
                return Some(i as usize);
            }
        }
        let i = self.find(name)?;
        self.remember(slot, i);
        Some(i)
    }

    fn remember(&mut self, slot: u32, item: usize) {
        if slot == NO_SLOT {
            return;
        }
        let slot = slot as usize;
        if self.by_slot.len() <= slot {
            self.by_slot.resize(slot + 1, NO_SLOT);
        }
        self.by_slot[slot] = item as u32;
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn find(&mut self, name: &str) -> Option<usize> {
        let i = match self.items.get(self.next) {
            Some((n, _)) if n == name => self.next,
            _ => self.items.iter().position(|(n, _)| n == name)?,
        };
        self.next = i + 1;
        Some(i)
    }
}

/// No top-level key slot: the name is spelled out.
const NO_SLOT: u32 = u32::MAX;

/// One field a line gave: a top-level key's slot in [`LineFields::keys`] (whose sanitized name
/// it has), or `NO_SLOT` and the name itself.
#[derive(Default)]
struct Pair {
    slot: u32,
    name: String,
    value: String,
}

/// The fields one line gave, in order, in reused buffers.
#[derive(Default)]
struct LineFields {
    pairs: Vec<Pair>,
    len: usize,
    /// The name of the field being added: `slot`, else `name`.
    slot: u32,
    name: String,
    scratch: Vec<u8>,
    /// Top-level keys already sanitized, with the position to try first.
    keys: Vec<(Vec<u8>, String)>,
    next_key: usize,
}

impl LineFields {
    /// The next field is top-level key `key` (sanitized once per block).
    fn top_level_name(&mut self, key: &[u8]) {
        let i = match self.keys.get(self.next_key) {
            Some((k, _)) if k == key => Some(self.next_key),
            _ => self.keys.iter().position(|(k, _)| k == key),
        };
        let i = match i {
            Some(i) => i,
            None => {
                let mut name = String::new();
                sanitize_key_bytes(key, true, &mut name);
                if self.keys.len() >= 4 * MAX_FIELDS {
                    self.next_key = 0;
                    self.slot = NO_SLOT;
                    self.name = name;
                    return;
                }
                self.keys.push((key.to_vec(), name));
                self.keys.len() - 1
            }
        };
        self.next_key = i + 1;
        self.slot = i as u32;
    }

    /// The next field's name is spelled out: set it in the returned buffer.
    fn spelled_name(&mut self) -> &mut String {
        self.slot = NO_SLOT;
        self.name.clear();
        &mut self.name
    }

    /// The next field's name.
    fn name(&self) -> &str {
        if self.slot == NO_SLOT {
            &self.name
        } else {
            &self.keys[self.slot as usize].1
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The next field's value buffer (empty), and a scratch buffer; [`Self::set`] adds it.
    fn value(&mut self) -> (&mut String, &mut Vec<u8>) {
        if self.pairs.len() == self.len {
            self.pairs.push(Pair::default());
        }
        let v = &mut self.pairs[self.len].value;
        v.clear();
        (v, &mut self.scratch)
    }

    /// Adds the next field with the value written by [`Self::value`] (a name given again is
    /// added again; see [`record`]).
    fn set(&mut self) {
        if self.pairs.len() == self.len {
            self.pairs.push(Pair::default());
        }
        let p = &mut self.pairs[self.len];
        p.slot = self.slot;
        if self.slot == NO_SLOT {
            p.name.clear();
            p.name.push_str(&self.name);
        }
        self.len += 1;
    }

    /// (slot, name, value) of each field.
    fn fields(&self) -> impl Iterator<Item = (u32, &str, &str)> {
        self.pairs[..self.len].iter().map(|p| {
            let name = if p.slot == NO_SLOT {
                p.name.as_str()
            } else {
                self.keys[p.slot as usize].1.as_str()
            };
            (p.slot, name, p.value.as_str())
        })
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields().map(|(_, n, v)| (n, v))
    }
}

/// The labels `| json` (no arguments) gives a line, with no stream labels: the same walk as
/// the stage's, without a labels builder. Nested objects flatten to `a_b`; arrays and nulls
/// give nothing; an error keeps the labels found before it.
fn json_fields(data: &[u8], prefix: &mut String, out: &mut LineFields) -> Result<(), &'static str> {
    object_each(data, &mut |key: &[u8],
                            value: &[u8],
                            ty|
     -> Result<(), &'static str> {
        match ty {
            ValueType::String | ValueType::Number | ValueType::Boolean => {
                if prefix.is_empty() {
                    out.top_level_name(key);
                } else {
                    let name = out.spelled_name();
                    name.push_str(prefix);
                    name.push('_');
                    sanitize_key_bytes(key, false, name);
                }
                let (text, scratch) = out.value();
                if ty == ValueType::String {
                    unescape_string(value, scratch, text);
                } else {
                    text.push_str(&String::from_utf8_lossy(value));
                }
                out.set();
                Ok(())
            }
            ValueType::Object => {
                let saved = prefix.len();
                let at_start = prefix.is_empty();
                if !at_start {
                    prefix.push('_');
                }
                sanitize_key_bytes(key, at_start, prefix);
                let r = json_fields(value, prefix, out);
                prefix.truncate(saved);
                r
            }
            ValueType::Array | ValueType::Null => Ok(()),
        }
    })
}

/// The labels `| logfmt` (no flags, no arguments) gives a line: never an error; empty names
/// and empty values are left out. (A name given twice: see [`record`].)
fn logfmt_fields(line: &[u8], out: &mut LineFields) {
    // Without '=' every key has an empty value, and empty values are left out.
    if memchr::memchr(b'=', line).is_none() {
        return;
    }
    let mut dec = Decoder::new(line);
    while !dec.eol() {
        if !dec.scan_keyval() {
            continue;
        }
        if dec.value().is_empty() {
            continue;
        }
        out.top_level_name(dec.key());
        if out.name().is_empty() {
            continue;
        }
        push_lossy_spaces(dec.value(), out.value().0);
        out.set();
    }
}

struct ParserAcc {
    parser: u8,
    /// Lines observed in this block.
    lines: u64,
    errors: u64,
    /// The lines (counted from 0 as observed) the parser failed on.
    error_lines: Vec<u32>,
    complete: bool,
    fields: Fields,
}

impl ParserAcc {
    fn new(parser: u8) -> ParserAcc {
        ParserAcc {
            parser,
            lines: 0,
            errors: 0,
            error_lines: Vec::new(),
            complete: true,
            fields: Fields::default(),
        }
    }

    fn reset(&mut self) {
        self.lines = 0;
        self.errors = 0;
        self.error_lines.clear();
        self.complete = true;
        self.fields.clear();
    }

    /// Counts the fields of one line.
    fn observe(&mut self, line: &LineFields, error: bool) {
        if error {
            self.errors += 1;
            self.error_lines.push(self.lines as u32);
        }
        self.lines += 1;
        for (slot, name, value) in line.fields() {
            if name.as_bytes().first() == Some(&b'_') && name.starts_with("__error") {
                continue;
            }
            record(
                &mut self.fields,
                &mut self.complete,
                (self.lines, error),
                (slot, name),
                value,
            );
        }
    }

    /// Appends the value columns of this parser's fields to `out` (see [`Summarizer::values`]);
    /// returns how many.
    fn encode_values(&self, n: usize, rank: &[u32], out: &mut Vec<u8>) -> usize {
        let mut written = 0;
        for (name, f) in &self.fields.items {
            let Some(col) = &f.column else { continue };
            if written == MAX_VALUE_COLUMNS
                || f.numeric != f.present
                || col.is_empty()
                || is_identifier(name)
            {
                continue;
            }
            let mut dense = vec![f64::NAN; n];
            for &(line, v) in col {
                let at = in_block(rank, line);
                if let Some(d) = dense.get_mut(at) {
                    *d = v;
                }
            }
            out.push(self.parser);
            put_lp_bytes(out, name.as_bytes());
            encode_value_column(&dense, out);
            written += 1;
        }
        let mut dicts = 0;
        for (name, f) in &self.fields.items {
            let Some(values) = &f.values else { continue };
            // A number has its value column (see `encode_values`' first loop).
            let numeric =
                f.column.as_ref().is_some_and(|c| !c.is_empty()) && f.numeric == f.present;
            if dicts == MAX_VALUE_COLUMNS
                || f.dict.is_empty()
                || values.len() > MAX_DICTIONARY
                || numeric
                || is_identifier(name)
            {
                continue;
            }
            let mut codes = vec![0u8; n];
            for &(line, c) in &f.dict {
                let at = in_block(rank, line);
                if let Some(d) = codes.get_mut(at) {
                    *d = c;
                }
            }
            out.push(self.parser);
            put_lp_bytes(out, name.as_bytes());
            out.push(DICTIONARY);
            out.push(values.len() as u8);
            for v in values {
                put_lp_bytes(out, v.as_bytes());
            }
            out.extend_from_slice(&codes);
            dicts += 1;
            written += 1;
        }
        if dicts > 0 && !self.error_lines.is_empty() {
            let mut bits = vec![0u8; n.div_ceil(8)];
            for &line in &self.error_lines {
                let at = in_block(rank, line);
                if let Some(b) = bits.get_mut(at / 8) {
                    *b |= 1 << (at % 8);
                }
            }
            out.push(self.parser);
            put_lp_bytes(out, b"");
            out.push(ERRORS);
            out.extend_from_slice(&bits);
            written += 1;
        }
        written
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.parser);
        put_uvarint(out, self.errors);
        out.push(self.complete as u8);
        put_uvarint(out, self.fields.len() as u64);
        let mut sorted: Vec<&(String, FieldAcc)> = self.fields.items.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, f) in sorted {
            put_lp_bytes(out, name.as_bytes());
            put_uvarint(out, f.present);
            put_uvarint(out, f.numeric);
            out.extend_from_slice(&f.min.to_bits().to_le_bytes());
            out.extend_from_slice(&f.max.to_bits().to_le_bytes());
            match &f.values {
                Some(vs) => {
                    out.push(vs.len() as u8);
                    for v in vs {
                        put_lp_bytes(out, v.as_bytes());
                    }
                }
                None => out.push(MANY_VALUES),
            }
        }
    }
}

/// Counts one value of field `name` in line number `line`. `numeric` counts the values that
/// convert only while all of them do (a summary is used only when all do), so a field of IDs
/// stops converting early. A name a line gives twice (the labels builder keeps the last
/// value) counts once in `present`, and both values count in the range and the distinct
/// values: a wider summary, which skips less, never wrongly.
fn record(
    fields: &mut Fields,
    complete: &mut bool,
    (line, error): (u64, bool),
    (slot, name): (u32, &str),
    value: &str,
) {
    let i = match fields.find_slot(slot, name) {
        Some(i) => i,
        None if fields.len() >= MAX_FIELDS => {
            *complete = false;
            return;
        }
        None => {
            fields.items.push((
                name.to_string(),
                FieldAcc {
                    present: 0,
                    numeric: 0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    values: Some(Vec::new()),
                    hashes: Vec::new(),
                    last_line: 0,
                    column: Some(Vec::new()),
                    dict: Vec::new(),
                },
            ));
            fields.next = fields.items.len();
            fields.remember(slot, fields.items.len() - 1);
            fields.items.len() - 1
        }
    };
    let acc = &mut fields.items[i].1;
    let again = acc.last_line == line;
    acc.last_line = line;
    if acc.numeric == acc.present {
        match go::parse_float(value) {
            (f, None) if f.is_finite() => {
                acc.min = acc.min.min(f);
                acc.max = acc.max.max(f);
                if !again {
                    acc.numeric += 1;
                }
                if let (Some(col), false) = (&mut acc.column, error) {
                    // The labels builder keeps the last value of a name given twice.
                    match col.last_mut() {
                        Some((l, v)) if again && *l as u64 == line - 1 => *v = f,
                        _ => col.push(((line - 1) as u32, f)),
                    }
                }
            }
            // One value that does not convert: not every value of the field does.
            _ if again => {
                acc.numeric = 0;
                acc.column = None;
            }
            _ => acc.column = None,
        }
    }
    if !again {
        acc.present += 1;
    }
    if let Some(vs) = &mut acc.values {
        let h = crate::storage::index::hash(value.as_bytes());
        let at = acc
            .hashes
            .iter()
            .zip(vs.iter())
            .position(|(k, v)| *k == h && v == value);
        let at = match at {
            Some(i) => Some(i),
            None if vs.len() >= MAX_VALUES || value.len() > MAX_VALUE_LEN => {
                acc.values = None;
                acc.hashes = Vec::new();
                acc.dict = Vec::new();
                None
            }
            None => {
                vs.push(value.to_string());
                acc.hashes.push(h);
                Some(vs.len() - 1)
            }
        };
        // Lines the parser failed on keep their value here: the block's error bitmap tells
        // them apart.
        if let Some(i) = at {
            let code = (i + 1) as u8;
            // The labels builder keeps the last value of a name given twice.
            match acc.dict.last_mut() {
                Some((l, c)) if again && *l as u64 == line - 1 => *c = code,
                _ => acc.dict.push(((line - 1) as u32, code)),
            }
        }
    }
}

/// Where the line observed `line`th stands in the block (`rank` empty: the same place).
fn in_block(rank: &[u32], line: u32) -> usize {
    rank.get(line as usize)
        .map_or(line as usize, |&r| r as usize)
}

/// Whether a field names an identifier (`id`, `user_id`, `requestId`, `pid`): numbers nobody
/// unwraps, and the costliest column to keep (random digits do not compress).
fn is_identifier(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2 && b[b.len() - 2..].eq_ignore_ascii_case(b"id")
}

/// Encodes one value column: `dense[i]` is line i's value, NaN for none.
fn encode_value_column(dense: &[f64], out: &mut Vec<u8>) {
    let present = dense.iter().filter(|v| !v.is_nan()).count();
    // The smallest decimal scale that gives back every value bit for bit, if any.
    let scale = (0..SCALES.len()).find(|&k| {
        dense.iter().filter(|v| !v.is_nan()).all(|&v| {
            let m = (v * SCALES[k]).round();
            m.abs() < (1u64 << 62) as f64
                && ((m as i64) as f64 / SCALES[k]).to_bits() == v.to_bits()
        })
    });
    out.push(scale.map_or(RAW_FLOATS, |k| k as u8));
    put_uvarint(out, present as u64);
    if present < dense.len() {
        let mut bits = vec![0u8; dense.len().div_ceil(8)];
        for (i, v) in dense.iter().enumerate() {
            if !v.is_nan() {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        out.extend_from_slice(&bits);
    }
    for &v in dense.iter().filter(|v| !v.is_nan()) {
        match scale {
            Some(k) => put_ivarint(out, (v * SCALES[k]).round() as i64),
            None => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        }
    }
}

/// Walks a values section of a block of `n` lines to the first column `want(parser, name,
/// scale)` accepts, skipping the others; its scale byte and a reader at its body.
fn find_column<'a>(
    raw: &'a [u8],
    n: usize,
    want: impl Fn(u8, &[u8], u8) -> bool,
) -> Result<Option<(u8, Reader<'a>)>, ChunkError> {
    let mut r = Reader::new(raw);
    let columns = r.u8()?;
    for _ in 0..columns {
        let p = r.u8()?;
        let name = r.lp_bytes()?;
        let scale = r.u8()?;
        if want(p, name, scale) {
            return Ok(Some((scale, r)));
        }
        skip_column(&mut r, n, scale)?;
    }
    Ok(None)
}

/// Skips a column's body (after its scale byte), whatever its kind.
fn skip_column(r: &mut Reader<'_>, n: usize, scale: u8) -> Result<(), ChunkError> {
    match scale {
        ERRORS => {
            r.bytes(n.div_ceil(8))?;
        }
        DICTIONARY => {
            let k = r.u8()?;
            for _ in 0..k {
                r.lp_bytes()?;
            }
            r.bytes(n)?;
        }
        _ => {
            let (present, _) = number_header(r, n, scale)?;
            if scale == RAW_FLOATS {
                r.bytes(present * 8)?;
            } else {
                for _ in 0..present {
                    r.ivarint()?;
                }
            }
        }
    }
    Ok(())
}

/// A value column's count of values and its bitmap (`None`: every line has one).
fn number_header<'a>(
    r: &mut Reader<'a>,
    n: usize,
    scale: u8,
) -> Result<(usize, Option<&'a [u8]>), ChunkError> {
    let present = r.uvarint()? as usize;
    if present > n || (scale != RAW_FLOATS && scale as usize >= SCALES.len()) {
        return Err(ChunkError::Malformed(format!(
            "value column of {present} values at scale {scale} in {n} lines"
        )));
    }
    let bitmap = if present < n {
        Some(r.bytes(n.div_ceil(8))?)
    } else {
        None
    };
    Ok((present, bitmap))
}

/// Reads the column of `field` given by `parser` from a values section of a block of `n`
/// lines into `out` (line i's value, NaN for none). False when the section has no such column.
pub fn decode_value_column(
    raw: &[u8],
    n: usize,
    (parser, field): (u8, &str),
    out: &mut Vec<f64>,
) -> Result<bool, ChunkError> {
    let numbers = |scale: u8| scale != DICTIONARY && scale != ERRORS;
    let Some((scale, mut r)) = find_column(raw, n, |p, name, scale| {
        p == parser && name == field.as_bytes() && numbers(scale)
    })?
    else {
        return Ok(false);
    };
    let (present, bitmap) = number_header(&mut r, n, scale)?;
    out.clear();
    out.reserve(n);
    let mut next = || -> Result<f64, ChunkError> {
        Ok(if scale == RAW_FLOATS {
            f64::from_bits(r.u64()?)
        } else {
            r.ivarint()? as f64 / SCALES[scale as usize]
        })
    };
    let mut taken = 0;
    for i in 0..n {
        let has = bitmap.is_none_or(|b| b[i / 8] & (1 << (i % 8)) != 0);
        if has && taken < present {
            taken += 1;
            out.push(next()?);
        } else {
            out.push(f64::NAN);
        }
    }
    if taken != present {
        return Err(ChunkError::Malformed(
            "value column bitmap and count differ".into(),
        ));
    }
    Ok(true)
}

/// A dictionary column: line i has `values[codes[i] - 1]`, or nothing when `codes[i]` is 0.
/// Asked for the field named "" it is the parser's error column: `codes[i]` is 1 when the
/// parser failed on line i (no such column: it failed on none).
#[derive(Debug, Default)]
pub struct Dictionary {
    pub values: Vec<String>,
    pub codes: Vec<u8>,
}

/// Reads the dictionary column of `field` given by `parser` from a values section of a block
/// of `n` lines into `out`. False when the section has no such column.
pub fn decode_dictionary(
    raw: &[u8],
    n: usize,
    (parser, field): (u8, &str),
    out: &mut Dictionary,
) -> Result<bool, ChunkError> {
    let Some((scale, mut r)) = find_column(raw, n, |p, name, scale| {
        p == parser
            && if field.is_empty() {
                scale == ERRORS
            } else {
                scale == DICTIONARY && name == field.as_bytes()
            }
    })?
    else {
        return Ok(false);
    };
    out.values.clear();
    out.codes.clear();
    if scale == ERRORS {
        let bits = r.bytes(n.div_ceil(8))?;
        out.codes
            .extend((0..n).map(|i| (bits[i / 8] >> (i % 8)) & 1));
        return Ok(true);
    }
    let k = r.u8()?;
    for _ in 0..k {
        out.values
            .push(String::from_utf8_lossy(r.lp_bytes()?).into_owned());
    }
    out.codes.extend_from_slice(r.bytes(n)?);
    if out.codes.iter().any(|&c| c > k) {
        return Err(ChunkError::Malformed(format!(
            "dictionary code past its {k} values"
        )));
    }
    Ok(true)
}

/// Builds the fields section of blocks, one line at a time; also hands every field value to a
/// callback (the head's filter keeps their hashes).
pub struct Summarizer {
    parsers: [ParserAcc; 3],
    line: LineFields,
    prefix: String,
}

impl Default for Summarizer {
    fn default() -> Self {
        Summarizer {
            parsers: [
                ParserAcc::new(PARSER_JSON),
                ParserAcc::new(PARSER_LOGFMT),
                ParserAcc::new(PARSER_METADATA),
            ],
            line: LineFields::default(),
            prefix: String::new(),
        }
    }
}

impl Summarizer {
    pub fn start_block(&mut self) {
        for p in &mut self.parsers {
            p.reset();
        }
        self.line.keys.clear();
    }

    /// One entry: its line and its encoded structured metadata.
    pub fn line(&mut self, line: &[u8], metadata: &[u8]) {
        self.line.clear();
        self.prefix.clear();
        let error = json_fields(line, &mut self.prefix, &mut self.line).is_err();
        self.parsers[0].observe(&self.line, error);
        self.line.clear();
        logfmt_fields(line, &mut self.line);
        self.parsers[1].observe(&self.line, false);
        self.line.clear();
        for (k, v) in metadata_pairs(metadata) {
            normalize_label(k, self.line.spelled_name());
            self.line.value().0.push_str(v);
            self.line.set();
        }
        self.parsers[2].observe(&self.line, false);
    }

    /// The values section of the block observed since [`Self::start_block`], or `None` when
    /// no field has a column. `n` lines were observed; the one observed `i`th is line
    /// `rank[i]` of the block (`rank` empty: the same).
    pub fn values(&self, n: usize, rank: &[u32]) -> Option<Vec<u8>> {
        let mut out = vec![0u8];
        let mut columns = 0;
        for p in &self.parsers[..2] {
            columns += p.encode_values(n, rank, &mut out);
        }
        if columns == 0 {
            return None;
        }
        out[0] = columns as u8;
        Some(out)
    }

    /// The fields section of the block observed since [`Self::start_block`].
    pub fn finish(&self) -> Vec<u8> {
        let mut out = vec![self.parsers.len() as u8];
        for p in &self.parsers {
            p.encode(&mut out);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::{json_fields, logfmt_fields, LineFields};

    /// Lines of odd shapes: JSON with any key order, whitespace, escapes, duplicate keys,
    /// numbers as strings and nesting; logfmt; broken JSON; arbitrary text.
    pub(crate) fn odd_line() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("status".to_string()),
            Just("level".to_string()),
            Just("a-b".to_string()),
            Just("ünï".to_string()),
            "[a-z_]{1,6}",
        ];
        let value = prop_oneof![
            any::<i32>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
            "[ -~]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("\"500\"".to_string()),
            Just("\"\\u00e9\\n\\\"q\\\"\"".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            Just("{\"n\":{\"m\":1}}".to_string()),
            Just("[1,2]".to_string()),
        ];
        let pair = (key, value, "[ \t]{0,2}");
        let json = prop::collection::vec(pair, 0..6).prop_map(|pairs| {
            let body: Vec<String> = pairs
                .into_iter()
                .map(|(k, v, ws)| format!("{ws}{}{ws}:{ws}{v}", serde_json::to_string(&k).unwrap()))
                .collect();
            format!("{{{}}}", body.join(","))
        });
        let logfmt =
            prop::collection::vec(("[a-z]{1,5}", "[a-z0-9.\"= ]{0,8}"), 0..6).prop_map(|kv| {
                kv.into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        prop_oneof![
            json.clone(),
            json.prop_map(|j| j.chars().take(j.chars().count() / 2).collect()),
            logfmt,
            any::<String>(),
            Just(String::new()),
        ]
    }

    /// The labels and error the query engine's own stage gives a line (the reference).
    fn by_pipeline(
        p: &mut crate::pipeline::Pipeline,
        line: &[u8],
    ) -> (Vec<(String, String)>, bool) {
        use crate::pipeline::labels_builder::{LabelCategory, LabelsBuilder};
        let mut b = LabelsBuilder::new();
        b.start_entry::<&str, &str>(&[]);
        let _ = p.process(0, line, &mut b);
        let mut out = Vec::new();
        b.for_each(|n, v, c| {
            if c == LabelCategory::Parsed && !n.starts_with("__error") {
                out.push((n.to_string(), v.to_string()));
            }
        });
        out.sort();
        (out, b.has_err())
    }

    /// The pairs a line gave, the last value of a name winning (as the labels builder does).
    fn by_summarizer(line: &LineFields) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (n, v) in line.iter().filter(|(n, _)| !n.starts_with("__error")) {
            out.retain(|(m, _)| m != n);
            out.push((n.to_string(), v.to_string()));
        }
        out.sort();
        out
    }

    #[test]
    fn value_columns_give_back_every_value_bit_for_bit() {
        let cases: Vec<Vec<f64>> = vec![
            vec![1.0, 250.0, -3.0],
            vec![7.5, 29.1, 0.1, f64::NAN, 1e-6],
            vec![0.30000000000000004, 1.0],
            vec![-0.0, 2.0],
            vec![1e300, f64::NAN, f64::NAN],
            vec![9_007_199_254_740_993.0, 1.5],
        ];
        for dense in cases {
            let mut out = vec![1u8, super::PARSER_LOGFMT];
            super::put_lp_bytes(&mut out, b"f");
            super::encode_value_column(&dense, &mut out);
            let mut got = Vec::new();
            let found = super::decode_value_column(
                &out,
                dense.len(),
                (super::PARSER_LOGFMT, "f"),
                &mut got,
            );
            assert_eq!(found, Ok(true));
            let bits = |v: &[f64]| {
                v.iter()
                    .map(|x| if x.is_nan() { u64::MAX } else { x.to_bits() })
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&got), bits(&dense), "{dense:?}");
            assert_eq!(
                super::decode_value_column(&out, dense.len(), (super::PARSER_JSON, "f"), &mut got),
                Ok(false)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// A value column holds, for each line, what `| parser | unwrap field` gives it: the
        /// field's value as a float, or nothing when the line lacks it or the parser failed.
        #[test]
        fn value_columns_hold_what_unwrap_reads(
            lines in prop::collection::vec(odd_line(), 1..40)
        ) {
            let mut sum = super::Summarizer::default();
            sum.start_block();
            for line in &lines {
                sum.line(line.as_bytes(), &[]);
            }
            let Some(values) = sum.values(lines.len(), &[]) else { return Ok(()) };
            let summaries = super::decode_summaries(&sum.finish()).unwrap();
            let mut pipelines = [
                (super::PARSER_JSON, crate::pipeline::fields::json_pipeline(None)),
                (super::PARSER_LOGFMT, crate::pipeline::fields::logfmt_pipeline(None)),
            ];
            let mut columns = 0;
            for (parser, pipeline) in &mut pipelines {
                let summary = summaries.iter().find(|s| s.parser == *parser).unwrap();
                for f in &summary.fields {
                    let n = lines.len();
                    let mut dict = super::Dictionary::default();
                    if super::decode_dictionary(&values, n, (*parser, &f.name), &mut dict).unwrap() {
                        columns += 1;
                        for (line, &code) in lines.iter().zip(&dict.codes) {
                            let (pairs, _) = by_pipeline(pipeline, line.as_bytes());
                            let want = pairs
                                .iter()
                                .find(|(name, _)| *name == f.name)
                                .map(|(_, v)| v.clone());
                            let got = (code > 0).then(|| dict.values[code as usize - 1].clone());
                            prop_assert_eq!(got, want, "{} of {:?}", f.name, line);
                        }
                        // The lines the parser failed on, beside the dictionary columns.
                        let mut failed = super::Dictionary::default();
                        let any = super::decode_dictionary(&values, n, (*parser, ""), &mut failed).unwrap();
                        for (i, line) in lines.iter().enumerate() {
                            let (_, err) = by_pipeline(pipeline, line.as_bytes());
                            prop_assert_eq!(any && failed.codes[i] == 1, err, "error of {:?}", line);
                        }
                    }
                    let mut col = Vec::new();
                    if !super::decode_value_column(&values, n, (*parser, &f.name), &mut col).unwrap() {
                        continue;
                    }
                    columns += 1;
                    for (line, got) in lines.iter().zip(&col) {
                        let (pairs, err) = by_pipeline(pipeline, line.as_bytes());
                        let want = match pairs.iter().find(|(name, _)| *name == f.name) {
                            Some((_, v)) if !err => crate::logql::go::parse_float(v).0,
                            _ => f64::NAN,
                        };
                        prop_assert_eq!(got.to_bits(), want.to_bits(), "{} of {:?}", f.name, line);
                    }
                }
            }
            prop_assert!(columns > 0);
        }

        /// The summarizer's own walk finds exactly what `| json` and `| logfmt` find.
        #[test]
        fn summarizer_sees_what_the_parsers_see(
            lines in prop::collection::vec(odd_line(), 1..40)
        ) {
            let mut json = crate::pipeline::fields::json_pipeline(None);
            let mut logfmt = crate::pipeline::fields::logfmt_pipeline(None);
            let mut lf = LineFields::default();
            let mut prefix = String::new();
            for line in &lines {
                lf.clear();
                prefix.clear();
                let err = json_fields(line.as_bytes(), &mut prefix, &mut lf).is_err();
                prop_assert_eq!((by_summarizer(&lf), err), by_pipeline(&mut json, line.as_bytes()), "json of {:?}", line);
                lf.clear();
                logfmt_fields(line.as_bytes(), &mut lf);
                prop_assert_eq!((by_summarizer(&lf), false), by_pipeline(&mut logfmt, line.as_bytes()), "logfmt of {:?}", line);
            }
        }

    }
}
