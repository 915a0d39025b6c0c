//! The search index of one segment: which blocks hold a correlation ID, and which hold a
//! token, so that a needle query reads a few blocks instead of every one. Built with tantivy
//! into `<seq>.idx/` next to the segment (see `files`), one tantivy document per block:
//!
//! ```text
//!   chunk  u64 fast      the chunk's byte offset in the segment file (its identity)
//!   block  u64 fast      the block's position in the chunk
//!   id     u64 indexed   xxh3 of each value of a correlation field (`index.fields`) that
//!                        `| json` or `| logfmt` would give an entry of the block, or that its
//!                        structured metadata or stream labels carry under that name
//!   tok    u64 indexed   xxh3 of each token of each line: a run of 4 to 64 ASCII letters,
//!                        digits or non-ASCII bytes (`index.tokens`), except tokens that are
//!                        also an ID value of the block (trace and span IDs): a token is
//!                        looked up in both fields
//! ```
//! plus `sawmill-index.json`: format version, the fields and whether tokens were indexed,
//! the number of chunks, and the chunks left out (damaged), which queries always read.
//!
//! Hashes only ever add candidates (a collision reads one block more), so a query gives the
//! same answer with the index as without; `query` checks every entry of a candidate block.
//! The index is written to `<seq>.idx.tmp/` and renamed when complete; a missing or damaged
//! one is rebuilt by the indexer thread (`Store::start_indexer`), and queries read every block
//! of a segment until its index is there.

pub mod builder;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use tantivy::collector::DocSetCollector;
use tantivy::query::{BooleanQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, FAST, INDEXED};
use tantivy::{Index, IndexReader, Term};
use thiserror::Error;

use crate::logql::{
    LabelFilterExpr, LabelParserExpr, LineFilterExpr, LineFilterOp, LineFilterValue, MatchOp, Stage,
};
use crate::pipeline::fields::field_names;

pub(super) const FORMAT_VERSION: u32 = 3;
pub(super) const META_FILE: &str = "sawmill-index.json";
pub const MIN_TOKEN: usize = 4;
pub const MAX_TOKEN: usize = 64;

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("index {path}: {source}")]
    Tantivy {
        path: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error("index {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("index {path} is damaged: {what}; it will be rebuilt")]
    Damaged { path: PathBuf, what: String },
}

/// What `sawmill-index.json` records.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IndexMeta {
    pub version: u32,
    /// Normalized field names whose values are in `id`.
    pub fields: Vec<String>,
    pub tokens: bool,
    /// Terms are the top `id_bits` / `tok_bits` bits of the hashes: about two postings per
    /// term, which keeps the term dictionary small (see `bucket_bits`).
    pub id_bits: u32,
    pub tok_bits: u32,
    pub chunks: usize,
    /// Offsets of chunks that could not be read when the index was built.
    pub unindexed: Vec<u64>,
}

/// The schema's fields.
#[derive(Clone, Copy)]
pub(super) struct Fields {
    chunk: Field,
    block: Field,
    id: Field,
    tok: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let f = Fields {
        chunk: b.add_u64_field("chunk", FAST),
        block: b.add_u64_field("block", FAST),
        id: b.add_u64_field("id", INDEXED),
        tok: b.add_u64_field("tok", INDEXED),
    };
    (b.build(), f)
}

pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Bits of hash kept as the term: about a quarter as many terms as postings. High-entropy
/// values (trace and span IDs) are mostly unique, so exact terms would cost a dictionary
/// entry each; a bucket costs a few blocks read in vain (the query checks every entry), and
/// far fewer when a probe has several terms.
pub(super) fn bucket_bits(postings: usize) -> u32 {
    ((postings / 4).max(1).next_power_of_two().trailing_zeros()).clamp(8, 32)
}

pub(super) fn bucket(h: u64, bits: u32) -> u64 {
    h >> (64 - bits)
}

/// Letters, digits and non-ASCII bytes, as a table (the tokenizer reads every byte).
const TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b >= 0x80;
        i += 1;
    }
    t
};

fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTE[b as usize]
}

/// Calls `f(start, end)` for every maximal run of token bytes in `bytes`, of 4 to 64 bytes.
fn for_each_run(bytes: &[u8], f: impl FnMut(usize, usize)) {
    for_each_run_within(bytes, MAX_TOKEN, f)
}

/// Calls `f(start, end)` for every maximal run of token bytes in `bytes`, of 4 to `max` bytes.
fn for_each_run_within(bytes: &[u8], max: usize, mut f: impl FnMut(usize, usize)) {
    let mut start: Option<usize> = None;
    let mut close = |s: usize, e: usize| {
        if (MIN_TOKEN..=max).contains(&(e - s)) {
            f(s, e);
        }
    };
    for (i, &b) in bytes.iter().enumerate() {
        if is_token_byte(b) {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            close(s, i);
        }
    }
    if let Some(s) = start {
        close(s, bytes.len());
    }
}

/// Calls `f` with every token of `line` that the index keeps (4 to 64 bytes).
pub fn for_each_token(line: &[u8], mut f: impl FnMut(&[u8])) {
    for_each_run(line, |s, e| f(&line[s..e]));
}

/// The hashes of runs already seen (see [`line_filter_keys`]). The keys are `xxh3` hashes
/// already, so the set uses them as they are.
pub type RunSet = std::collections::HashSet<u64, std::hash::BuildHasherDefault<AsIs>>;

/// A hasher for keys that are hashes already (see [`RunSet`]).
#[derive(Default)]
pub struct AsIs(u64);

impl std::hash::Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The filter keys of one line, in one pass over it: the hash of every token (as
/// [`for_each_token`]), and the [`edge_keys`] of every wordy run (as [`for_each_wordy_run`])
/// whose hash is not yet in `seen`: a block repeats its words on every line, and takes their
/// keys once. (Two distinct runs of one block with one 64-bit hash would lose the second's
/// edge keys: about one chance in 10^13 for a block of a few thousand words.)
pub fn line_filter_keys(line: &[u8], seen: &mut RunSet, out: &mut Vec<u64>) {
    for_each_run_within(line, usize::MAX, |s, e| {
        let run = &line[s..e];
        let h = hash(run);
        if run.len() <= MAX_TOKEN {
            out.push(h);
        }
        if is_wordy(run) && seen.insert(h) {
            edge_keys(run, out);
        }
    });
}

/// Prefix and suffix keys are taken at these lengths (at most `EDGE_LENGTHS`' last).
const EDGE_LENGTHS: [usize; 3] = [4, 6, 8];
const PREFIX_SEED: u64 = 0x7072_6566_6978;
const SUFFIX_SEED: u64 = 0x7375_6666_6978;

/// Whether a run has two bytes or more that are not hex digits. Random IDs are hex runs and
/// timestamps digits with a letter or two (`17T00`, `003600777Z`): leaving them out keeps the
/// edge keys to the block's vocabulary (words, paths, names). A run that contains a wordy
/// run is wordy, which is what `literal_keys` relies on.
fn is_wordy(run: &[u8]) -> bool {
    run.iter()
        .filter(|b| !b.is_ascii_hexdigit())
        .nth(1)
        .is_some()
}

/// Calls `f` with every wordy run of token bytes in `line` of 4 bytes or more, of any length:
/// the runs whose prefix and suffix keys a block filter holds (see [`edge_keys`]).
pub fn for_each_wordy_run<'a>(line: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    for_each_run_within(line, usize::MAX, |s, e| {
        if is_wordy(&line[s..e]) {
            f(&line[s..e])
        }
    });
}

/// The prefix and suffix keys of one run: its first and last 4, 6 and 8 bytes (those it has).
pub fn edge_keys(run: &[u8], out: &mut Vec<u64>) {
    for n in EDGE_LENGTHS.into_iter().filter(|n| *n <= run.len()) {
        out.push(prefix_key(&run[..n]));
        out.push(suffix_key(&run[run.len() - n..]));
    }
}

fn prefix_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, PREFIX_SEED)
}

fn suffix_key(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, SUFFIX_SEED)
}

/// The longest edge length a key exists for that fits in `len` bytes.
fn edge_len(len: usize) -> Option<usize> {
    EDGE_LENGTHS.into_iter().rev().find(|n| *n <= len)
}

/// The keys a block filter must hold for a block to have a line containing `literal`: its
/// whole tokens (see [`whole_tokens`]), and for the runs at its edges, which may continue in
/// the line, a suffix key (left edge) or a prefix key (right edge) when the run is wordy (a
/// line run that ends or starts with it is then wordy too, so its keys were taken).
pub fn literal_keys(literal: &[u8]) -> Vec<u64> {
    let mut out = whole_tokens(literal);
    for_each_run_within(literal, usize::MAX, |s, e| {
        let run = &literal[s..e];
        let (left, right) = (s == 0, e == literal.len());
        if left == right || !is_wordy(run) {
            return;
        }
        if let Some(n) = edge_len(run.len()) {
            out.push(if left {
                suffix_key(&run[run.len() - n..])
            } else {
                prefix_key(&run[..n])
            });
        }
    });
    out
}

/// The key a block filter holds when a line of the block has a backslash: a value that
/// `| json` or `| logfmt` unescaped may then differ from the bytes of the line.
pub fn escape_key() -> u64 {
    hash(b"\\")
}

/// The keys a block filter holds when one of its lines has a field of value `value` that
/// `| json` or `| logfmt` read from the line and no line of the block has a backslash: the
/// value then stands in the line as is, between separators (quotes, `=`, `:`, `,`, spaces),
/// so each of its runs of 4 to 64 token bytes is a whole token of the line. `None` when the
/// value has a replacement character (invalid UTF-8 in the line, read lossily).
pub fn value_keys(value: &str) -> Option<Vec<u64>> {
    if value.contains('\u{fffd}') {
        return None;
    }
    let mut out = Vec::new();
    for_each_token(value.as_bytes(), |t| out.push(hash(t)));
    Some(out)
}

/// The tokens a line containing `literal` must have whole: those with a separator on both
/// sides inside the literal (a token at either edge may continue in the line).
pub fn whole_tokens(literal: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    for_each_run(literal, |s, e| {
        if s > 0 && e < literal.len() {
            out.push(hash(&literal[s..e]));
        }
    });
    out
}

/// The literal of a `|= "literal"` filter with a single value: every line it passes contains
/// the literal (the filters the index and block filters answer).
pub fn contains_literal(f: &LineFilterExpr) -> Option<&str> {
    match f.values.as_slice() {
        [LineFilterValue::Literal(lit)] if f.op == LineFilterOp::Contains => Some(lit),
        _ => None,
    }
}

/// What a query needs every entry it returns to have: all of these tokens in its line, and
/// all of these correlation values (hashes, from the named fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Probe {
    pub tokens: Vec<u64>,
    pub ids: Vec<u64>,
    /// The (normalized) fields the `ids` come from: an index without one of them cannot say.
    pub id_fields: Vec<String>,
}

impl Probe {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.ids.is_empty()
    }

    /// A probe for every entry carrying `id` in any of `fields` (the correlate API).
    pub fn correlation(id: &str, fields: &[String]) -> Probe {
        Probe {
            tokens: Vec::new(),
            ids: vec![hash(id.as_bytes())],
            id_fields: field_names(fields),
        }
    }
}

/// What of a log pipeline the index can answer: `|= "literal"` filters on the original line,
/// and `name="value"` label filters on a correlation field where the label can only come
/// from the stream, structured metadata, or a plain `| json` or `| logfmt` (the sources the
/// index reads), not from another parser or `label_format`. `None` when nothing.
pub fn probe_for(stages: &[Stage], fields: &[String]) -> Option<Probe> {
    let fields = field_names(fields);
    let mut p = Probe::default();
    let mut line_changed = false;
    let mut labels_unsafe = false;
    for s in stages {
        match s {
            Stage::LineFilter(f) => {
                if let Some(lit) = contains_literal(f).filter(|_| !line_changed) {
                    p.tokens.extend(whole_tokens(lit.as_bytes()));
                }
            }
            Stage::LabelParser(LabelParserExpr::Json { expressions })
            | Stage::LabelParser(LabelParserExpr::Logfmt { expressions, .. })
                if expressions.is_empty() => {}
            Stage::LabelParser(_) | Stage::LabelFormat(_) => labels_unsafe = true,
            Stage::LineFormat(_) | Stage::Decolorize => line_changed = true,
            Stage::DropLabels(_) | Stage::KeepLabels(_) => {}
            Stage::LabelFilter(f) => {
                if !labels_unsafe {
                    equalities(f, &mut |name, value| {
                        if !value.is_empty() && fields.iter().any(|x| x == name) {
                            p.ids.push(hash(value.as_bytes()));
                            p.id_fields.push(name.to_string());
                        }
                    });
                }
            }
        }
    }
    (!p.is_empty()).then_some(p)
}

/// The `name="value"` conditions every entry passing `f` meets (its `and` chain).
fn equalities(f: &LabelFilterExpr, out: &mut dyn FnMut(&str, &str)) {
    match f {
        LabelFilterExpr::String(m) if m.op == MatchOp::Eq => out(&m.name, &m.value),
        LabelFilterExpr::And(a, b) => {
            equalities(a, out);
            equalities(b, out);
        }
        _ => {}
    }
}

/// An opened index of one segment.
pub struct SegmentIndex {
    reader: IndexReader,
    fields: Fields,
    pub meta: IndexMeta,
    pub path: PathBuf,
    /// Bytes on disk.
    pub bytes: u64,
}

impl std::fmt::Debug for SegmentIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SegmentIndex({})", self.path.display())
    }
}

/// Blocks that may hold what a probe asks for, by chunk offset.
#[derive(Debug, Default)]
pub struct Candidates {
    blocks: HashMap<u64, Vec<u32>>,
    unindexed: HashSet<u64>,
}

impl Candidates {
    /// `None`: the chunk has nothing to read; `Some(None)`: read all its blocks;
    /// `Some(Some(list))`: read only these (sorted).
    pub fn for_chunk(&self, offset: u64) -> Option<Option<&[u32]>> {
        if self.unindexed.contains(&offset) {
            return Some(None);
        }
        self.blocks.get(&offset).map(|b| Some(&b[..]))
    }
}

impl SegmentIndex {
    /// Opens and checks the index of a segment (checksums, format, chunk count).
    pub fn open(dir: &Path, chunks: usize) -> Result<SegmentIndex, IndexError> {
        let tv = |source| IndexError::Tantivy {
            path: dir.to_path_buf(),
            source,
        };
        let damaged = |what: String| IndexError::Damaged {
            path: dir.to_path_buf(),
            what,
        };
        let text = std::fs::read(dir.join(META_FILE)).map_err(|source| IndexError::Io {
            path: dir.join(META_FILE),
            source,
        })?;
        let meta: IndexMeta =
            serde_json::from_slice(&text).map_err(|e| damaged(format!("{META_FILE}: {e}")))?;
        if meta.version != FORMAT_VERSION {
            return Err(damaged(format!("format version {}", meta.version)));
        }
        if meta.chunks != chunks {
            return Err(damaged(format!(
                "made for {} chunks, the segment has {chunks}",
                meta.chunks
            )));
        }
        let index = Index::open_in_dir(dir).map_err(tv)?;
        let bad = index.validate_checksum().map_err(tv)?;
        if !bad.is_empty() {
            return Err(damaged(format!("checksum mismatch in {bad:?}")));
        }
        let (_, fields) = schema();
        let reader = index.reader().map_err(tv)?;
        let bytes = std::fs::read_dir(dir)
            .map_err(|source| IndexError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        Ok(SegmentIndex {
            reader,
            fields,
            meta,
            path: dir.to_path_buf(),
            bytes,
        })
    }

    /// The blocks that may hold what `p` asks for; `None` when this index cannot narrow it
    /// (tokens not indexed, a field it does not have).
    pub fn candidates(&self, p: &Probe) -> Result<Option<Candidates>, IndexError> {
        let tv = |source| IndexError::Tantivy {
            path: self.path.clone(),
            source,
        };
        let mut clauses: Vec<Box<dyn Query>> = Vec::new();
        let term = |field, value| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_u64(field, value),
                IndexRecordOption::Basic,
            ))
        };
        if self.meta.tokens {
            for t in &p.tokens {
                // In `tok`, or in `id` when the token is also an ID value of the block.
                clauses.push(Box::new(BooleanQuery::union(vec![
                    term(self.fields.tok, bucket(*t, self.meta.tok_bits)),
                    term(self.fields.id, bucket(*t, self.meta.id_bits)),
                ])));
            }
        }
        if p.id_fields.iter().all(|f| self.meta.fields.contains(f)) {
            for h in &p.ids {
                clauses.push(term(self.fields.id, bucket(*h, self.meta.id_bits)));
            }
        }
        if clauses.is_empty() {
            return Ok(None);
        }
        let query = BooleanQuery::intersection(clauses);
        let searcher = self.reader.searcher();
        let docs = searcher.search(&query, &DocSetCollector).map_err(tv)?;
        let mut out = Candidates {
            blocks: HashMap::new(),
            unindexed: self.meta.unindexed.iter().copied().collect(),
        };
        let mut columns = HashMap::new();
        for d in docs {
            let cols = match columns.entry(d.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let ff = searcher.segment_reader(d.segment_ord).fast_fields();
                    e.insert((ff.u64("chunk").map_err(tv)?, ff.u64("block").map_err(tv)?))
                }
            };
            if let (Some(c), Some(b)) = (cols.0.first(d.doc_id), cols.1.first(d.doc_id)) {
                out.blocks.entry(c).or_default().push(b as u32);
            }
        }
        for v in out.blocks.values_mut() {
            v.sort_unstable();
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::pipeline::fields::FieldExtractor;

    fn tokens(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        for_each_token(line.as_bytes(), |t| {
            out.push(String::from_utf8_lossy(t).into_owned())
        });
        out
    }

    #[test]
    fn tokens_are_runs_of_4_to_64_letters_and_digits() {
        assert_eq!(
            tokens("GET /api/v1/users 200 took=12ms req-0001f3a2-0f3a"),
            ["users", "took", "12ms", "0001f3a2", "0f3a"]
        );
        assert_eq!(tokens(&"x".repeat(65)), Vec::<String>::new());
        assert_eq!(tokens("héllo wörld"), ["héllo", "wörld"]);
    }

    #[test]
    fn whole_tokens_need_a_separator_on_both_sides() {
        let h = |s: &str| hash(s.as_bytes());
        assert_eq!(whole_tokens(b"req-0001f3a2-0f3a"), [h("0001f3a2")]);
        assert_eq!(whole_tokens(b"0001f3a2"), Vec::<u64>::new());
        assert_eq!(
            whole_tokens(b" error: disk full "),
            [h("error"), h("disk"), h("full")]
        );
        assert_eq!(whole_tokens(b"abc def"), Vec::<u64>::new());
    }

    #[test]
    fn literal_keys_take_the_edges_of_words_and_never_of_hex_runs() {
        let keys_of_line = |line: &str| {
            let mut out = Vec::new();
            for_each_token(line.as_bytes(), |t| out.push(hash(t)));
            for_each_wordy_run(line.as_bytes(), |r| edge_keys(r, &mut out));
            out
        };
        let held = keys_of_line("msg=\"xupstream timeouts\" id=3ceb3ffd-0001");
        for lit in [
            "upstream timeout",
            "upstream timeouts\"",
            "m timeo",
            "d=3ceb3ffd-0001",
        ] {
            let keys = literal_keys(lit.as_bytes());
            assert!(!keys.is_empty(), "{lit}");
            assert!(keys.iter().all(|k| held.contains(k)), "{lit}");
        }
        assert_eq!(
            literal_keys(b"upstream timeout"),
            [suffix_key(b"upstream"), prefix_key(b"timeou")]
        );
        // One run touching both edges may sit inside a longer one; hex runs are not wordy.
        assert!(literal_keys(b"timeout").is_empty());
        assert!(literal_keys(b"3ceb3ffd-0001").is_empty());
        assert!(!keys_of_line("upstream").contains(&suffix_key(b"pstream")));
        assert!(literal_keys(b"no timeout")
            .iter()
            .any(|k| !keys_of_line("no time out").contains(k)));
    }

    #[track_caller]
    fn probe(q: &str, want_tokens: &[&str], want_ids: &[&str]) {
        let stages = match crate::logql::parse_expr(q).unwrap() {
            crate::logql::Expr::Log(l) => l.pipeline,
            _ => unreachable!(),
        };
        let fields: Vec<String> = crate::config::IndexConfig::default().fields;
        let got = probe_for(&stages, &fields).unwrap_or_default();
        let h = |s: &&str| hash(s.as_bytes());
        assert_eq!(
            got.tokens,
            want_tokens.iter().map(h).collect::<Vec<_>>(),
            "{q}"
        );
        assert_eq!(got.ids, want_ids.iter().map(h).collect::<Vec<_>>(), "{q}");
    }

    #[test]
    fn what_the_index_can_answer() {
        probe(r#"{a="b"} |= "req-0001f3a2-0f3a""#, &["0001f3a2"], &[]);
        probe(r#"{a="b"} | json | request_id="r1""#, &[], &["r1"]);
        probe(
            r#"{a="b"} | logfmt | trace_id="t1" and status="500""#,
            &[],
            &["t1"],
        );
        probe(r#"{a="b"} | json | X_Request_ID="h1""#, &[], &["h1"]);
        // Not answerable: negative or alternative filters, a changed line, a label that
        // another stage could set, a field that is not a correlation field.
        probe(r#"{a="b"} != " oops-1234 ""#, &[], &[]);
        probe(r#"{a="b"} |= " oops-1234 " or "x""#, &[], &[]);
        probe(
            r#"{a="b"} | line_format "{{.x}}" |= " oops-1234 ""#,
            &[],
            &[],
        );
        probe(
            r#"{a="b"} | regexp "(?P<request_id>.*)" | request_id="r1""#,
            &[],
            &[],
        );
        probe(
            r#"{a="b"} | json | label_format request_id=x | request_id="r1""#,
            &[],
            &[],
        );
        probe(
            r#"{a="b"} | json | request_id="r1" or request_id="r2""#,
            &[],
            &[],
        );
        probe(r#"{a="b"} | request_id="r1""#, &[], &["r1"]);
        probe(r#"{a="b"} | json | user="u1""#, &[], &[]);
    }

    #[test]
    fn fields_come_out_as_the_parsers_name_them() {
        let mut x = FieldExtractor::new(&crate::config::IndexConfig::default().fields);
        x.set_stream(&Labels::parse(r#"{app="api"}"#).unwrap());
        let mut got = Vec::new();
        let mut each = |line: &str, md: &[(String, String)]| {
            got.clear();
            x.each(line.as_bytes(), md, &mut |i, v| {
                got.push((i, v.to_string()))
            });
            got.sort();
            got.dedup();
            got.clone()
        };
        assert_eq!(
            each(r#"{"request_id":"r1","trace_id":7}"#, &[]),
            [(0, "r1".into()), (4, "7".into())]
        );
        assert_eq!(each("msg=hi X-Request-ID=h1", &[]), [(7, "h1".into())]);
        assert_eq!(
            each("plain line", &[("span_id".into(), "s1".into())]),
            [(6, "s1".into())]
        );
        assert!(each(r#"{"nested":{"request_id":"r1"}}"#, &[]).is_empty());
    }
}
