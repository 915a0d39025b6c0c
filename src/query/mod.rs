//! Query execution over a tenant's segments and head: resolve label matchers on each segment's
//! label index, prune chunks and blocks by time, decompress block by block, apply line filters
//! on raw bytes, and keep the `limit` entries nearest the query's starting edge. Also the
//! metadata reads behind `/labels`, `/label/NAME/values` and `/series`. In: a tenant's storage
//! snapshot and a parsed query; out: streams of entries or samples. Uses `logql` for the AST
//! and `pipeline` per entry; knows nothing of HTTP. Beside it: `metric` (range and vector
//! aggregations), `correlate`, `usage` (stats and volume), `detected` (labels and fields), and
//! `skip`: the streams and blocks a pipeline lets a scan leave out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

use crate::labels::Labels;
use crate::logql::{labels_match, MatchOp, Matcher};
use crate::pipeline::{self, labels_builder};
use crate::storage::chunk::{chunk_blocks, DecodedBlock, HeadBlock};
use crate::storage::head::SlotState;
use crate::storage::retention::{Drops, StreamDrops};
use crate::storage::segment::SegmentReader;
use crate::storage::store::Tenant;

pub mod correlate;
pub mod detected;
pub mod guard;
pub mod metric;
pub mod multi_tenant;
pub mod skip;
pub mod usage;
pub mod values;

#[cfg(test)]
mod column_paths_tests;
#[cfg(test)]
mod dedupe_tests;

#[derive(Debug, Error)]
pub enum QueryError {
    /// The client went away or `query_timeout` passed.
    #[error("query stopped")]
    Stopped,
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    BadRegex(String),
    #[error("{0}")]
    Storage(String),
    /// A query guard (`limits_config.max_query_*`) refused or stopped the query.
    #[error("{0}")]
    Limit(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A log query: selector, line filters, `[start, end)` in Unix ns, limit and direction.
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub pipeline: Vec<crate::logql::Stage>,
    pub start: i64,
    pub end: i64,
    pub limit: usize,
    pub direction: Direction,
}

/// One entry of a result.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultEntry {
    pub ts: i64,
    pub line: String,
    /// The entry's labels split by origin (for the `categorize-labels` encoding).
    pub categorized: labels_builder::CategorizedLabels,
}

/// Entries grouped by their labels: stream labels plus structured metadata and parsed labels,
/// as Loki shows them (or only the stream labels with `categorize-labels`).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamResult {
    pub labels: Labels,
    pub entries: Vec<ResultEntry>,
}

/// Stops a query: set when its client goes away, its time is up or it went past a limit of
/// [`guard`]; checked between blocks, so a stopped query stops using CPU within one block's
/// work. It also carries the query's limits (see [`guard`]).
#[derive(Debug, Default, Clone)]
pub struct Cancel {
    flag: Arc<std::sync::atomic::AtomicBool>,
    deadline: Option<Instant>,
    budget: Arc<guard::Budget>,
    /// Read every block whole: no search index, no skipping, no column-only reads. The answer
    /// is the same; tests compare the two.
    pub(crate) plain_reads: bool,
}

impl Cancel {
    pub fn with_timeout(timeout: std::time::Duration) -> Cancel {
        Cancel {
            flag: Arc::default(),
            deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
            budget: Arc::default(),
            plain_reads: false,
        }
    }
    /// The same query, reading every block whole (see `plain_reads`).
    pub fn with_plain_reads(mut self) -> Cancel {
        self.plain_reads = true;
        self
    }
    pub fn cancel(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Relaxed)
            || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
    pub fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Work counters for `stats.summary`.
#[derive(Debug, Default, Clone)]
pub struct QueryStats {
    /// Set by the caller; when it fires, scans stop and `stopped` is set.
    pub cancel: Cancel,
    pub stopped: bool,
    pub bytes_processed: u64,
    pub lines_processed: u64,
    /// Of the lines processed, those read from the head's unsealed blocks (not decompressed).
    pub head_lines: u64,
    pub head_bytes: u64,
    /// Compressed size of the blocks decompressed.
    pub compressed_bytes: u64,
    /// Lines that passed the whole pipeline (Loki's post-filter lines).
    pub post_filter_lines: u64,
    /// Entries dropped as duplicates of a kept one (same stream, timestamp and line).
    pub duplicates: u64,
    pub chunks: u64,
    pub exec_secs: f64,
    /// Damage met while reading (blocks that failed their checksum and were skipped).
    pub warnings: Vec<String>,
}

impl QueryStats {
    /// Reports a damaged chunk or block: the query goes on without it.
    fn damaged(&mut self, file: &std::path::Path, offset: u64, e: &dyn std::fmt::Display) {
        tracing::error!(file = %file.display(), offset, error = %e, "damaged block skipped by a query");
        self.warnings.push(format!(
            "damaged data skipped: {} at byte {offset}: {e}",
            file.display()
        ));
    }
}

/// Streams of a segment that the matchers select, using the label index.
pub fn matching_streams(seg: &SegmentReader, matchers: &[Matcher]) -> Vec<u32> {
    let mut best: Option<Vec<u32>> = None;
    for m in matchers.iter().filter(|m| !m.matches("")) {
        let p = match m.op {
            MatchOp::Eq => seg.postings(&m.name, |v| v == m.value),
            _ => seg.postings(&m.name, |v| m.matches(v)),
        };
        if best.as_ref().is_none_or(|b| p.len() < b.len()) {
            best = Some(p);
        }
    }
    let candidates = best.unwrap_or_else(|| (0..seg.streams.len() as u32).collect());
    candidates
        .into_iter()
        .filter(|&i| labels_match(matchers, |n| seg.streams[i as usize].labels.get(n)))
        .collect()
}

/// What a query reads from one tenant, taken under its locks and read without them.
pub struct Snapshot {
    pub segments: Vec<Arc<SegmentReader>>,
    pub head: Vec<HeadStream>,
    /// Expired and deleted entries, left out of every read.
    pub drops: Arc<Drops>,
    pub now: i64,
    /// Per segment (by sequence number), the only blocks worth reading, from its search
    /// index ([`Snapshot::narrow`]); segments not listed are read whole.
    pub narrowed: HashMap<u64, crate::storage::index::Candidates>,
    /// Streams and blocks the pipeline lets a scan skip ([`Snapshot::narrow`]).
    pub skip: skip::Skip,
}

impl Snapshot {
    /// Narrows the segment reads to the blocks whose index says they may hold entries that
    /// pass `stages` (see `index::probe_for`); segments without an index stay whole.
    pub fn narrow(&mut self, stages: &[crate::logql::Stage]) {
        self.narrow_with(|idx| crate::storage::index::probe_for(stages, &idx.meta.fields));
        self.skip = skip::Skip::for_pipeline(stages);
    }

    /// Narrows every indexed segment with one probe.
    pub fn narrow_by(&mut self, probe: &crate::storage::index::Probe) {
        self.narrow_with(|_| Some(probe.clone()));
    }

    /// Narrows each indexed segment with the probe `probe_of` gives for its index.
    fn narrow_with(
        &mut self,
        probe_of: impl Fn(&crate::storage::index::SegmentIndex) -> Option<crate::storage::index::Probe>,
    ) {
        for seg in &self.segments {
            let Some(idx) = seg.search.get() else {
                continue;
            };
            let Some(probe) = probe_of(idx) else {
                continue;
            };
            match idx.candidates(&probe) {
                Ok(Some(c)) => {
                    self.narrowed.insert(seg.seq, c);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "index not used; reading the whole segment"),
            }
        }
    }
}

pub struct HeadStream {
    pub labels: Labels,
    pub slots: Vec<SlotState>,
    pub open: Option<HeadBlock>,
}

pub fn snapshot(tenant: &Tenant, matchers: &[Matcher], start: i64, end: i64) -> Snapshot {
    let head = tenant.head.lock();
    let segments = tenant.segments.read().clone();
    let mut out = Vec::new();
    for st in head.streams.values() {
        if !st.has_data() || !labels_match(matchers, |n| st.labels.get(n)) {
            continue;
        }
        let slots: Vec<SlotState> = st
            .cut
            .iter()
            .flat_map(|c| c.blocks.iter())
            .chain(st.blocks.iter())
            .map(|s| s.state())
            .collect();
        let open = st
            .open
            .min_max_ts()
            .filter(|(lo, hi)| *hi >= start && *lo < end)
            .map(|_| st.open.clone());
        out.push(HeadStream {
            labels: st.labels.clone(),
            slots,
            open,
        });
    }
    Snapshot {
        segments,
        head: out,
        drops: tenant.drops(),
        now: crate::model::now_ns(),
        narrowed: HashMap::new(),
        skip: skip::Skip::default(),
    }
}

/// Orders entries so that the heap's top is the worst kept one.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Key(i64, u64);

struct TopN {
    limit: usize,
    forward: bool,
    heap_fwd: BinaryHeap<(Key, usize)>,
    heap_bwd: BinaryHeap<(Reverse<Key>, usize)>,
    /// Kept entries with the hash of the stream they were read from.
    items: Vec<Option<(u64, ResultEntry)>>,
    seq: u64,
    /// Slots of kept entries by (stream hash, timestamp), to drop duplicates.
    by_ts: HashMap<(u64, i64), Vec<usize>>,
    /// Entries dropped as duplicates.
    duplicates: u64,
}

impl TopN {
    fn new(limit: usize, forward: bool) -> TopN {
        TopN {
            limit,
            forward,
            heap_fwd: BinaryHeap::new(),
            heap_bwd: BinaryHeap::new(),
            items: Vec::new(),
            seq: 0,
            by_ts: HashMap::new(),
            duplicates: 0,
        }
    }

    /// Would an entry at `ts` be kept?
    fn wants(&self, ts: i64) -> bool {
        if self.limit == 0 {
            return false;
        }
        if self.forward {
            self.heap_fwd.len() < self.limit || self.heap_fwd.peek().is_some_and(|(k, _)| ts < k.0)
        } else {
            self.heap_bwd.len() < self.limit
                || self.heap_bwd.peek().is_some_and(|(k, _)| ts > k.0 .0)
        }
    }

    /// Keeps `e`, read from the stream whose labels hash to `stream`, unless it duplicates a
    /// kept entry. As Loki's merging iterator does, an entry with the timestamp and the line
    /// (after the pipeline) of an entry of the same stream already kept is dropped, whatever
    /// labels the pipeline gave either: it counts neither in the result nor in the limit.
    /// Returns the memory given back: a dropped duplicate's, or that of the entry that made
    /// room for `e`.
    fn push_from(&mut self, stream: u64, e: ResultEntry) -> usize {
        let same_ts = self.by_ts.entry((stream, e.ts)).or_default();
        if same_ts
            .iter()
            .any(|s| matches!(&self.items[*s], Some((_, k)) if k.line == e.line))
        {
            self.duplicates += 1;
            return entry_bytes(&e);
        }
        self.seq += 1;
        let key = Key(e.ts, self.seq);
        let slot = self.items.len();
        same_ts.push(slot);
        self.items.push(Some((stream, e)));
        let evicted = if self.forward {
            self.heap_fwd.push((key, slot));
            (self.heap_fwd.len() > self.limit)
                .then(|| self.heap_fwd.pop().expect("bug: heap not empty").1)
        } else {
            self.heap_bwd.push((Reverse(key), slot));
            (self.heap_bwd.len() > self.limit)
                .then(|| self.heap_bwd.pop().expect("bug: heap not empty").1)
        };
        let Some(s) = evicted else { return 0 };
        let Some((h, old)) = self.items[s].take() else {
            return 0;
        };
        if let Some(slots) = self.by_ts.get_mut(&(h, old.ts)) {
            slots.retain(|x| *x != s);
            if slots.is_empty() {
                self.by_ts.remove(&(h, old.ts));
            }
        }
        entry_bytes(&old)
    }
}

/// Memory an entry of a result takes, roughly: its line, its labels and their bookkeeping.
fn entry_bytes(e: &ResultEntry) -> usize {
    let c = &e.categorized;
    let labels: usize = c
        .stream
        .iter()
        .chain(&c.structured_metadata)
        .chain(&c.parsed)
        .map(|(k, v)| k.len() + v.len() + 48)
        .sum();
    e.line.len() + labels + 96
}

/// Receives the entries a [`scan`] finds, stream by stream.
pub trait EntryVisitor {
    /// Whether a block spanning `[min_ts, max_ts]` can still contribute (lets a limited log
    /// query skip blocks that cannot make its top `limit`).
    fn wants(&self, _min_ts: i64, _max_ts: i64) -> bool {
        true
    }
    /// The order the visitor wants chunks in: `Some(true)` newest first, `Some(false)` oldest
    /// first, `None` any (storage order).
    fn newest_first(&self) -> Option<bool> {
        None
    }
    /// The entries that follow belong to this stream.
    fn stream(&mut self, labels: &Labels);
    /// An entry that passed the time range and every line filter.
    fn entry(&mut self, ts: i64, line: &[u8], metadata: &[u8]);
    /// Whether the visitor needs only each entry's timestamp, line length and metadata (then
    /// columnar blocks are read without their lines, and entries come through
    /// [`Self::counted`]). Only for a pipeline with no stages: no line filter runs.
    fn counts_only(&self) -> bool {
        false
    }
    /// An entry of a block read without its lines (see [`Self::counts_only`]).
    fn counted(&mut self, _ts: i64, _line_len: usize, _metadata: &[u8]) {}
    /// A value column the visitor can take its samples from instead of lines, in the blocks
    /// the column answers for (see [`values::ValueColumn`]). Only for a pipeline with no line
    /// filter.
    fn value_column(&self) -> Option<Arc<values::ValueColumn>> {
        None
    }
    /// An entry's value, read from the column [`Self::value_column`] names.
    fn valued(&mut self, _ts: i64, _value: f64) {}
}

/// One of `of` disjoint shares of a scan's work, so that parts can run on several cores.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub index: usize,
    pub of: usize,
}

impl Part {
    pub const ALL: Part = Part { index: 0, of: 1 };
}

/// How many parts a query is split into: one per core.
pub fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

impl QueryStats {
    /// Adds the counters of a part run on another thread.
    pub fn merge(&mut self, other: QueryStats) {
        self.bytes_processed += other.bytes_processed;
        self.lines_processed += other.lines_processed;
        self.head_lines += other.head_lines;
        self.head_bytes += other.head_bytes;
        self.compressed_bytes += other.compressed_bytes;
        self.post_filter_lines += other.post_filter_lines;
        self.duplicates += other.duplicates;
        self.chunks += other.chunks;
        self.warnings.extend(other.warnings);
        self.stopped |= other.stopped;
    }
}

/// A series' labels, as sample collectors key them.
type SeriesKey = Vec<(String, String)>;
/// A series' `(timestamp, value)` samples.
type Samples = Vec<(i64, f64)>;

/// Entries between two checks of a query's [`Cancel`] inside a block.
const CHECK_EVERY: usize = 256;

/// One unit of scan work: a chunk of a segment, or a stream's data in the head.
enum Work<'a> {
    /// A chunk, and the only blocks to read of it (`None`: all).
    Chunk(
        &'a SegmentReader,
        &'a crate::storage::segment::ChunkMeta,
        Option<&'a [u32]>,
    ),
    Head(&'a HeadStream),
}

/// Visits every entry of the snapshot's streams with `start <= ts < end` that passes the line
/// filters, decompressing block by block and skipping damaged blocks (reported in `stats`).
/// Chunks and head streams are visited in the order the visitor asks for (newest first for a
/// backward log query), so that a limited query stops reading as soon as nothing left can
/// make its top `limit`; they are dealt round-robin to the parts.
#[allow(clippy::too_many_arguments)]
pub fn scan(
    snap: &Snapshot,
    matchers: &[Matcher],
    keep_line: &dyn Fn(&[u8]) -> bool,
    start: i64,
    end: i64,
    part: Part,
    stats: &mut QueryStats,
    v: &mut dyn EntryVisitor,
) {
    let mut block = DecodedBlock::default();
    // Within a block, the pipeline's work per entry can be heavy: the query is checked every
    // CHECK_EVERY entries too, so that a stopped query stops within milliseconds.
    let stop_at = |i: usize, stats: &mut QueryStats| {
        if i % CHECK_EVERY == CHECK_EVERY - 1 && stats.cancel.is_cancelled() {
            stats.stopped = true;
        }
        stats.stopped
    };
    let each = |ts: i64,
                line: &[u8],
                md: &[u8],
                (drops, pre): (&StreamDrops, Option<&skip::Prefilter>),
                stats: &mut QueryStats,
                v: &mut dyn EntryVisitor| {
        if ts < start || ts >= end {
            return;
        }
        stats.lines_processed += 1;
        stats.bytes_processed += line.len() as u64;
        if keep_line(line)
            && pre.is_none_or(|p| p.may_pass(line, md))
            && (drops.is_noop() || !drops.drops(ts, line))
        {
            v.entry(ts, line, md);
        }
    };
    // Entries of a block read without lines (the visitor counts; no line filter runs).
    let counts_only = v.counts_only() && !stats.cancel.plain_reads;
    let each_counted =
        |block: &DecodedBlock, stats: &mut QueryStats, v: &mut dyn EntryVisitor| -> bool {
            for i in 0..block.len() {
                let ts = block.ts(i);
                if ts >= start && ts < end {
                    stats.lines_processed += 1;
                    stats.bytes_processed += block.line_len(i) as u64;
                    v.counted(ts, block.line_len(i), block.metadata_raw(i));
                }
                if stop_at(i, stats) {
                    return true;
                }
            }
            false
        };
    // Reads one block of a stream: leaves it out when its time, the visitor, the pipeline's
    // skips or its filter allow; decodes what the visitor needs; visits its entries. True
    // when the scan must stop.
    let mut dicts: Vec<crate::storage::columns::Dictionary> = Vec::new();
    let mut numbers: Vec<Vec<f64>> = Vec::new();
    let mut read_block = |b: &crate::storage::chunk::BlockRef<'_>,
                          labels: &Labels,
                          (drops, pre): (&StreamDrops, Option<&skip::Prefilter>),
                          damaged_at: (&std::path::Path, u64),
                          block: &mut DecodedBlock,
                          stats: &mut QueryStats,
                          v: &mut dyn EntryVisitor|
     -> bool {
        let (dicts, numbers) = (&mut dicts, &mut numbers);
        if b.max_ts < start || b.min_ts >= end || !v.wants(b.min_ts, b.max_ts) {
            return false;
        }
        if !snap.skip.is_empty() && snap.skip.skips_block(b, labels) {
            return false;
        }
        if stats.cancel.is_cancelled() {
            stats.stopped = true;
            return true;
        }
        if let Some(col) = v
            .value_column()
            .filter(|_| drops.is_noop() && b.columns.is_some())
            .filter(|c| b.summaries().is_ok_and(|s| c.answers(&s, labels)))
        {
            let columns = (&mut *dicts, &mut *numbers);
            match values::read_columns(&col, b, block, columns, (start, end), stats, v, &stop_at) {
                Ok(Some(stop)) => return stop,
                // No column for the field here, or the lines must say it: they are read.
                Ok(None) => {}
                Err(e) => {
                    stats.damaged(damaged_at.0, damaged_at.1 + b.offset as u64, &e);
                    return false;
                }
            }
        }
        let counting = counts_only && drops.is_noop() && b.columns.is_some();
        let decoded = if counting {
            block.decode_counts(b)
        } else {
            block.decode_from(b)
        };
        if let Err(e) = decoded {
            stats.damaged(damaged_at.0, damaged_at.1 + b.offset as u64, &e);
            return false;
        }
        stats.compressed_bytes += b.comp.len() as u64;
        if counting {
            return each_counted(block, stats, v);
        }
        for i in 0..block.len() {
            let (ts, line, md) = (block.ts(i), block.line(i), block.metadata_raw(i));
            each(ts, line, md, (drops, pre), stats, v);
            if stop_at(i, stats) {
                return true;
            }
        }
        false
    };
    // Visits the entries of a head block not yet compressed. True when the scan must stop.
    let read_raw = |h: &HeadBlock,
                    ctx: (&StreamDrops, Option<&skip::Prefilter>),
                    stats: &mut QueryStats,
                    v: &mut dyn EntryVisitor|
     -> bool {
        let (lines, bytes) = (stats.lines_processed, stats.bytes_processed);
        for i in 0..h.len() {
            each(h.ts(i), h.line(i), h.metadata_raw(i), ctx, stats, v);
            if stop_at(i, stats) {
                return true;
            }
        }
        stats.head_lines += stats.lines_processed - lines;
        stats.head_bytes += stats.bytes_processed - bytes;
        false
    };
    // (min_ts, max_ts, work), in the same order in every part.
    let mut work: Vec<(i64, i64, Work)> = Vec::new();
    for seg in &snap.segments {
        if seg.max_ts < start || seg.min_ts >= end {
            continue;
        }
        let mut ids = matching_streams(seg, matchers);
        if !snap.skip.is_empty() {
            ids.retain(|&i| !snap.skip.skips_stream(&seg.streams[i as usize].labels));
        }
        let narrowed = snap.narrowed.get(&seg.seq);
        for c in seg
            .chunks
            .iter()
            .filter(|c| ids.binary_search(&c.stream).is_ok())
        {
            if c.max_ts >= start && c.min_ts < end {
                let blocks = match narrowed.map(|n| n.for_chunk(c.offset)) {
                    None => None,
                    Some(None) => continue,
                    Some(Some(only)) => only,
                };
                work.push((c.min_ts, c.max_ts, Work::Chunk(seg, c, blocks)));
            }
        }
    }
    for hs in snap
        .head
        .iter()
        .filter(|hs| snap.skip.is_empty() || !snap.skip.skips_stream(&hs.labels))
    {
        let mut range: Option<(i64, i64)> = None;
        let mut widen = |lo: i64, hi: i64| {
            range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        };
        for slot in &hs.slots {
            match slot {
                SlotState::Raw(h) => h.min_max_ts().into_iter().for_each(|(a, b)| widen(a, b)),
                SlotState::Sealed(b) => widen(b.min_ts, b.max_ts),
            }
        }
        if let Some((a, b)) = hs.open.as_ref().and_then(|h| h.min_max_ts()) {
            widen(a, b);
        }
        if let Some((lo, hi)) = range {
            work.push((lo, hi, Work::Head(hs)));
        }
    }
    let newest_first = v.newest_first();
    match newest_first {
        Some(true) => work.sort_by_key(|w| Reverse(w.1)),
        Some(false) => work.sort_by_key(|w| w.0),
        None => {}
    }
    let backward = newest_first == Some(true);
    for (i, (min_ts, max_ts, w)) in work.into_iter().enumerate() {
        if i % part.of != part.index || !v.wants(min_ts, max_ts) {
            continue;
        }
        if stats.cancel.is_cancelled() {
            stats.stopped = true;
            return;
        }
        match w {
            Work::Chunk(seg, c, only) => {
                let labels = &seg.streams[c.stream as usize].labels;
                let drops = snap.drops.for_stream(
                    labels,
                    snap.now,
                    seg.lineage.deletes_applied_through,
                    u64::MAX,
                );
                if c.max_ts < drops.cutoff {
                    continue;
                }
                let pre = snap.skip.prefilter(labels);
                stats.chunks += 1;
                v.stream(labels);
                let data = match seg.chunk_bytes(c) {
                    Ok(d) => d,
                    Err(e) => {
                        // Not damage: the bucket did not answer. An answer without this
                        // chunk would be wrong, so the query fails.
                        stats.cancel.fail(e.to_string());
                        stats.stopped = true;
                        return;
                    }
                };
                let mut blocks = match chunk_blocks(&data) {
                    Ok(b) => b,
                    Err(e) => {
                        stats.damaged(seg.path(), c.offset, &e);
                        continue;
                    }
                };
                if backward {
                    blocks.reverse();
                }
                let n = blocks.len();
                for (k, b) in blocks.into_iter().enumerate() {
                    let ordinal = if backward { n - 1 - k } else { k } as u32;
                    if only.is_some_and(|o| o.binary_search(&ordinal).is_err()) {
                        continue;
                    }
                    let at = (seg.path(), c.offset);
                    let ctx = (&drops, pre.as_ref());
                    if read_block(&b, labels, ctx, at, &mut block, stats, v) {
                        seg.release(c);
                        return;
                    }
                }
                seg.release(c);
            }
            Work::Head(hs) => {
                v.stream(&hs.labels);
                let drops = snap.drops.for_stream(&hs.labels, snap.now, 0, u64::MAX);
                let pre = snap.skip.prefilter(&hs.labels);
                let ctx = (&drops, pre.as_ref());
                for slot in &hs.slots {
                    let stop = match slot {
                        SlotState::Raw(h) => read_raw(h, ctx, stats, v),
                        SlotState::Sealed(b) => {
                            let mut r = crate::storage::codec::Reader::new(&b.bytes);
                            match crate::storage::chunk::block_ref(&mut r, b.columnar) {
                                Ok(br) => {
                                    let at = (std::path::Path::new("head"), 0);
                                    read_block(&br, &hs.labels, ctx, at, &mut block, stats, v)
                                }
                                Err(e) => {
                                    stats.damaged(std::path::Path::new("head"), 0, &e);
                                    false
                                }
                            }
                        }
                    };
                    if stop {
                        return;
                    }
                }
                if hs.open.as_ref().is_some_and(|h| read_raw(h, ctx, stats, v)) {
                    return;
                }
            }
        }
    }
}

/// Runs the pipeline and keeps the `limit` entries nearest the query's starting edge.
struct LogCollector {
    top: TopN,
    /// Hash of the labels of the stream being read.
    stream_hash: u64,
    /// Entries that passed the whole pipeline.
    post_filter_lines: u64,
    pipeline: pipeline::Pipeline,
    builder: labels_builder::LabelsBuilder,
    md: Vec<(String, String)>,
    mem: guard::MemoryMeter,
}

impl EntryVisitor for LogCollector {
    fn wants(&self, min_ts: i64, max_ts: i64) -> bool {
        self.top.wants(min_ts) || self.top.wants(max_ts)
    }
    fn newest_first(&self) -> Option<bool> {
        Some(!self.top.forward)
    }
    fn stream(&mut self, labels: &Labels) {
        self.builder.set_stream(labels.pairs());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(labels, &mut h);
        self.stream_hash = std::hash::Hasher::finish(&h);
    }
    fn entry(&mut self, ts: i64, line: &[u8], md: &[u8]) {
        if !self.top.wants(ts) {
            return;
        }
        self.md.clear();
        self.md.extend(
            crate::storage::chunk::metadata_pairs(md).map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.builder.start_entry(&self.md);
        let Some(out) = self
            .pipeline
            .process_after_line_filters(ts, line, &mut self.builder)
        else {
            return;
        };
        self.post_filter_lines += 1;
        let line = String::from_utf8_lossy(out).into_owned();
        let categorized = self.builder.categorized();
        let e = ResultEntry {
            ts,
            line,
            categorized,
        };
        self.mem.add(entry_bytes(&e));
        let freed = self.top.push_from(self.stream_hash, e);
        self.mem.sub(freed);
    }
}

/// Runs a log query against one tenant. With `categorize`, entries are grouped by their
/// stream labels only (structured metadata and parsed labels travel with each entry).
pub fn select_logs(
    tenant: &Tenant,
    q: &LogQuery,
    categorize: bool,
    cancel: Cancel,
) -> Result<(Vec<StreamResult>, QueryStats), QueryError> {
    let started = Instant::now();
    // Compiled here to report a bad pipeline; each part compiles its own (they keep state).
    pipeline::Pipeline::new(&q.pipeline).map_err(|e| QueryError::Unsupported(e.to_string()))?;
    let mut snap = snapshot(tenant, &q.matchers, q.start, q.end);
    if !cancel.plain_reads {
        snap.narrow(&q.pipeline);
    }
    cancel.check_bytes_read(guard::estimate_bytes(&snap, &q.matchers, q.start, q.end))?;
    let mut stats = QueryStats {
        cancel,
        ..QueryStats::default()
    };
    let parts = stats.cancel.parts();
    let forward = q.direction == Direction::Forward;
    // Part threads log under the request's span (its request ID).
    let span = tracing::Span::current();
    let results: Vec<(TopN, QueryStats)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..parts)
            .map(|index| {
                let (snap, cancel) = (&snap, stats.cancel.clone());
                let span = span.clone();
                sc.spawn(move || {
                    let _in = span.enter();
                    let pipeline = pipeline::Pipeline::new(&q.pipeline)
                        .expect("bug: pipeline compiled once already");
                    let filter = pipeline::Pipeline::new(&q.pipeline)
                        .expect("bug: pipeline compiled once already");
                    let mut c = LogCollector {
                        top: TopN::new(q.limit, forward),
                        stream_hash: 0,
                        post_filter_lines: 0,
                        pipeline,
                        builder: labels_builder::LabelsBuilder::new(),
                        md: Vec::new(),
                        mem: guard::MemoryMeter::new(cancel.clone()),
                    };
                    let mut stats = QueryStats {
                        cancel,
                        ..QueryStats::default()
                    };
                    scan(
                        snap,
                        &q.matchers,
                        &|line| filter.filter_line(line),
                        q.start,
                        q.end,
                        Part { index, of: parts },
                        &mut stats,
                        &mut c,
                    );
                    stats.post_filter_lines += c.post_filter_lines;
                    stats.duplicates += c.top.duplicates;
                    (c.top, stats)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bug: query part panicked"))
            .collect()
    });
    // The parts' tops merged into one.
    let mut top = TopN::new(q.limit, forward);
    for (part_top, part_stats) in results {
        stats.merge(part_stats);
        for (sid, e) in part_top.items.into_iter().flatten() {
            if top.wants(e.ts) {
                top.push_from(sid, e);
            }
        }
    }
    stats.duplicates += top.duplicates;
    if stats.stopped || stats.cancel.limit_hit().is_some() {
        return Err(stats.cancel.stopped_error());
    }
    let mut grouped: BTreeMap<Labels, Vec<ResultEntry>> = BTreeMap::new();
    for (_, e) in top.items.into_iter().flatten() {
        let c = &e.categorized;
        let labels = if categorize {
            Labels::from_pairs(c.stream.clone())
        } else {
            Labels::from_pairs(
                c.stream
                    .iter()
                    .chain(&c.structured_metadata)
                    .chain(&c.parsed)
                    .cloned()
                    .collect(),
            )
        };
        grouped.entry(labels).or_default().push(e);
    }
    let mut out: Vec<StreamResult> = grouped
        .into_iter()
        .map(|(labels, mut entries)| {
            match q.direction {
                Direction::Forward => entries.sort_by_key(|e| e.ts),
                Direction::Backward => entries.sort_by_key(|e| Reverse(e.ts)),
            }
            StreamResult { labels, entries }
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    stats.exec_secs = started.elapsed().as_secs_f64();
    Ok((out, stats))
}

/// Label sets of the streams that have data in `[start, end]` and match every matcher group
/// (any group, when several are given, as `/series` does).
pub fn series(tenant: &Tenant, groups: &[Vec<Matcher>], start: i64, end: i64) -> Vec<Labels> {
    let mut out = BTreeSet::new();
    let any =
        |l: &Labels| groups.is_empty() || groups.iter().any(|g| labels_match(g, |n| l.get(n)));
    // Head first, then segments, under the head lock: a flush moving data between them is
    // either wholly before or wholly after this read.
    let drops = tenant.drops();
    let now = crate::model::now_ns();
    let cutoff = |l: &Labels| drops.for_stream(l, now, 0, 0).cutoff;
    let head = tenant.head.lock();
    for st in head.streams.values() {
        if st.has_data() && st.newest_ts >= start.max(cutoff(&st.labels)) && any(&st.labels) {
            out.insert(st.labels.clone());
        }
    }
    let segments = tenant.segments.read().clone();
    drop(head);
    for seg in segments.iter() {
        if seg.max_ts < start || seg.min_ts > end {
            continue;
        }
        let mut has = vec![false; seg.streams.len()];
        for c in &seg.chunks {
            if c.max_ts >= start && c.min_ts <= end {
                has[c.stream as usize] = true;
            }
        }
        if !drops.is_empty() {
            for (i, s) in seg.streams.iter().enumerate() {
                if has[i] {
                    let from = start.max(cutoff(&s.labels));
                    has[i] = seg
                        .chunks
                        .iter()
                        .any(|c| c.stream as usize == i && c.max_ts >= from && c.min_ts <= end);
                }
            }
        }
        for (i, s) in seg.streams.iter().enumerate() {
            if has[i] && any(&s.labels) {
                out.insert(s.labels.clone());
            }
        }
    }
    out.into_iter().collect()
}

/// Label names of matching streams.
pub fn label_names(tenant: &Tenant, matchers: &[Matcher], start: i64, end: i64) -> Vec<String> {
    let groups = if matchers.is_empty() {
        vec![]
    } else {
        vec![matchers.to_vec()]
    };
    let names: BTreeSet<String> = series(tenant, &groups, start, end)
        .iter()
        .flat_map(|l| l.pairs().iter().map(|(n, _)| n.clone()))
        .collect();
    names.into_iter().collect()
}

/// Values of one label over matching streams.
pub fn label_values(
    tenant: &Tenant,
    name: &str,
    matchers: &[Matcher],
    start: i64,
    end: i64,
) -> Vec<String> {
    let groups = if matchers.is_empty() {
        vec![]
    } else {
        vec![matchers.to_vec()]
    };
    let values: BTreeSet<String> = series(tenant, &groups, start, end)
        .iter()
        .filter_map(|l| l.get(name).map(str::to_string))
        .collect();
    values.into_iter().collect()
}

/// Samples for metric queries: each entry through the range's pipeline and sample extractor
/// (count, bytes or an unwrapped label), labelled as Loki labels series.
pub struct LogSampleSource {
    pub tenant: Option<Arc<Tenant>>,
    pub stats: QueryStats,
}

struct SampleCollector {
    extractor: pipeline::SampleExtractor,
    /// Loki evaluates `avg_over_time` as `sum_over_time / count_over_time` of the same range,
    /// and that count sees the entries the unwrap skips: an entry whose pipeline set
    /// `__error__` fails the query even when it has no value to unwrap. Matched on purpose.
    count_errors_before_unwrap: bool,
    builder: labels_builder::LabelsBuilder,
    md: Vec<(String, String)>,
    series: Vec<(SeriesKey, Samples)>,
    index: HashMap<SeriesKey, usize>,
    /// The series of the current stream's entries whose series labels the pipeline left
    /// alone.
    stream_slot: Option<usize>,
    /// Entries that passed the whole pipeline (and gave a sample).
    post_filter_lines: u64,
    mem: guard::MemoryMeter,
    /// `Some(bytes)` when the pipeline has no stages and the value is a count (or the line's
    /// length): see [`pipeline::SampleExtractor::plain_count`].
    plain: Option<bool>,
    /// The series of the last structured metadata seen in the current stream (plain
    /// pipelines): consecutive entries nearly always share it.
    md_slot: Option<(Vec<u8>, usize)>,
    /// Plain pipelines' samples are moved onto this grid and added up (see `metric::Grid`):
    /// a series keeps a sample per step bucket and stream, not one per entry.
    grid: Option<metric::Grid>,
    /// The column an unwrap reads where it can (see [`values::ValueColumn`]).
    column: Option<Arc<values::ValueColumn>>,
    /// The series of the current stream's values read from `column`.
    column_slot: Option<usize>,
}

impl SampleCollector {
    /// A sample of a plain pipeline: the series follows from the stream and `md` alone.
    fn plain_sample(&mut self, ts: i64, line_len: usize, md: &[u8], bytes: bool) {
        let slot = match &self.md_slot {
            Some((m, slot)) if m == md => *slot,
            _ => {
                self.md.clear();
                self.md.extend(
                    crate::storage::chunk::metadata_pairs(md)
                        .map(|(k, v)| (k.to_string(), v.to_string())),
                );
                self.builder.start_entry(&self.md);
                let key = self.extractor.series_labels(&self.builder);
                let slot = self.slot(key);
                self.md_slot = Some((md.to_vec(), slot));
                slot
            }
        };
        self.post_filter_lines += 1;
        let v = if bytes { line_len as f64 } else { 1.0 };
        self.push_sample(slot, ts, v);
    }

    /// Adds a sample to series `slot`: onto the grid when there is one (see `metric::Grid`),
    /// added to the last sample of the same step bucket.
    fn push_sample(&mut self, slot: usize, ts: i64, v: f64) {
        let samples = &mut self.series[slot].1;
        if let Some(g) = self.grid {
            let at = g.bucket_end(ts);
            match samples.last_mut() {
                Some((t, sum)) if *t == at => *sum += v,
                _ => {
                    samples.push((at, v));
                    self.mem.add(std::mem::size_of::<(i64, f64)>());
                }
            }
            return;
        }
        samples.push((ts, v));
        self.mem.add(std::mem::size_of::<(i64, f64)>());
    }

    fn slot(&mut self, key: Vec<(String, String)>) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        self.mem.add(
            key.iter()
                .map(|(k, v)| 2 * (k.len() + v.len() + 48))
                .sum::<usize>()
                + 64,
        );
        self.series.push((key.clone(), Vec::new()));
        self.index.insert(key, self.series.len() - 1);
        self.series.len() - 1
    }

    fn add(&mut self, ts: i64, v: f64) {
        self.post_filter_lines += 1;
        let slot = if self.extractor.series_is_stream(&self.builder) {
            match self.stream_slot {
                Some(i) => i,
                None => {
                    let key = self.extractor.series_labels(&self.builder);
                    let i = self.slot(key);
                    self.stream_slot = Some(i);
                    i
                }
            }
        } else {
            let key = self.extractor.series_labels(&self.builder);
            self.slot(key)
        };
        self.series[slot].1.push((ts, v));
        self.mem.add(std::mem::size_of::<(i64, f64)>());
    }
}

impl EntryVisitor for SampleCollector {
    fn stream(&mut self, labels: &Labels) {
        self.builder.set_stream(labels.pairs());
        self.stream_slot = None;
        self.md_slot = None;
        self.column_slot = None;
    }
    fn counts_only(&self) -> bool {
        self.plain.is_some() && !self.count_errors_before_unwrap
    }
    fn counted(&mut self, ts: i64, line_len: usize, md: &[u8]) {
        let bytes = self.plain.unwrap_or(false);
        self.plain_sample(ts, line_len, md, bytes);
    }
    fn value_column(&self) -> Option<Arc<values::ValueColumn>> {
        self.column.clone()
    }
    fn valued(&mut self, ts: i64, value: f64) {
        // The series follows from the stream alone: `ValueColumn::answers` checked that no
        // line nor metadata gives a label of it.
        let slot = match self.column_slot {
            Some(i) => i,
            None => {
                self.builder.start_entry::<&str, &str>(&[]);
                let key = self.extractor.series_labels(&self.builder);
                let i = self.slot(key);
                self.column_slot = Some(i);
                i
            }
        };
        self.post_filter_lines += 1;
        self.push_sample(slot, ts, value);
    }
    fn entry(&mut self, ts: i64, line: &[u8], md: &[u8]) {
        if let (Some(bytes), false) = (self.plain, self.count_errors_before_unwrap) {
            self.plain_sample(ts, line.len(), md, bytes);
            return;
        }
        self.md.clear();
        self.md.extend(
            crate::storage::chunk::metadata_pairs(md).map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self.builder.start_entry(&self.md);
        if let Some(v) = self.extractor.process(ts, line, &mut self.builder) {
            self.add(ts, v);
        } else if self.count_errors_before_unwrap
            && self.extractor.passed_pipeline()
            && self.builder.has_err()
        {
            let slot = self.slot(self.builder.labels());
            self.series[slot].1.push((ts, f64::NAN));
            self.mem.add(std::mem::size_of::<(i64, f64)>());
        }
    }
}

impl metric::SampleSource for LogSampleSource {
    fn samples(
        &mut self,
        agg: &crate::logql::RangeAggregationExpr,
        from: i64,
        to: i64,
        grid: Option<metric::Grid>,
    ) -> Result<Vec<metric::SampleSeries>, metric::EvalError> {
        use crate::logql::RangeOp;
        let log = &agg.range.log;
        let bytes = matches!(agg.op, RangeOp::BytesOverTime | RangeOp::BytesRate);
        let grouping = match agg.op {
            RangeOp::AbsentOverTime => pipeline::SampleGrouping {
                no_labels: true,
                ..Default::default()
            },
            _ => pipeline::SampleGrouping::from_grouping(agg.grouping.as_ref()),
        };
        let bad = |e: pipeline::PipelineError| metric::EvalError::BadQuery(e.to_string());
        // Compiled here to report a bad pipeline; each part compiles its own (they keep state).
        pipeline::SampleExtractor::new(
            &log.pipeline,
            agg.range.unwrap.as_ref(),
            bytes,
            grouping.clone(),
        )
        .map_err(bad)?;
        let Some(tenant) = &self.tenant else {
            return Ok(Vec::new());
        };
        // Samples in (from, to] are entries with from < ts <= to, i.e. [from + 1, to + 1).
        let mut snap = snapshot(tenant, &log.selector.matchers, from + 1, to + 1);
        if !self.stats.cancel.plain_reads {
            snap.narrow(&log.pipeline);
        }
        let estimate = guard::estimate_bytes(&snap, &log.selector.matchers, from + 1, to + 1);
        if let Err(e) = self.stats.cancel.check_bytes_read(estimate) {
            return Err(metric::EvalError::Source(e.to_string()));
        }
        let count_errors_before_unwrap =
            agg.op == RangeOp::AvgOverTime && agg.range.unwrap.is_some();
        let parts = self.stats.cancel.parts();
        // Part threads log under the request's span (its request ID).
        let span = tracing::Span::current();
        let results: Vec<(Vec<(SeriesKey, Samples)>, QueryStats, bool)> =
            std::thread::scope(|sc| {
                let handles: Vec<_> = (0..parts)
                    .map(|index| {
                        let (snap, cancel, grouping) =
                            (&snap, self.stats.cancel.clone(), grouping.clone());
                        let span = span.clone();
                        sc.spawn(move || {
                            let _in = span.enter();
                            let extractor = pipeline::SampleExtractor::new(
                                &log.pipeline,
                                agg.range.unwrap.as_ref(),
                                bytes,
                                grouping,
                            )
                            .expect("bug: pipeline compiled once already");
                            let filter = pipeline::Pipeline::new(&log.pipeline)
                                .expect("bug: pipeline compiled once already");
                            let plain = extractor.plain_count();
                            let column = values::ValueColumn::for_range(agg)
                                .filter(|_| !cancel.plain_reads)
                                .map(Arc::new);
                            // Counts are added up per step bucket (see `metric::Grid`); the
                            // line path's samples of a count keep their own times, which the
                            // same windows hold.
                            let counting = plain.is_some()
                                || column.as_ref().is_some_and(|c| {
                                    matches!(c.read(), values::Read::Count { .. })
                                });
                            let mut c = SampleCollector {
                                grid: grid.filter(|_| counting && !cancel.plain_reads),
                                column,
                                column_slot: None,
                                plain,
                                md_slot: None,
                                extractor,
                                count_errors_before_unwrap,
                                builder: labels_builder::LabelsBuilder::new(),
                                md: Vec::new(),
                                series: Vec::new(),
                                index: HashMap::new(),
                                stream_slot: None,
                                post_filter_lines: 0,
                                mem: guard::MemoryMeter::new(cancel.clone()),
                            };
                            let mut stats = QueryStats {
                                cancel,
                                ..QueryStats::default()
                            };
                            scan(
                                snap,
                                &log.selector.matchers,
                                &|line| filter.filter_line(line),
                                from + 1,
                                to + 1,
                                Part { index, of: parts },
                                &mut stats,
                                &mut c,
                            );
                            stats.post_filter_lines += c.post_filter_lines;
                            (c.series, stats, c.grid.is_some())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("bug: query part panicked"))
                    .collect()
            });
        let mut merged: HashMap<SeriesKey, Samples> = HashMap::new();
        let mut weighted = false;
        for (series, stats, on_grid) in results {
            weighted |= on_grid;
            self.stats.merge(stats);
            for (labels, samples) in series {
                // The first part's samples are moved, not copied: an unwrap can bring
                // millions.
                match merged.entry(labels) {
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(samples);
                    }
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        e.get_mut().extend(samples)
                    }
                }
            }
        }
        if self.stats.stopped || self.stats.cancel.limit_hit().is_some() {
            return Err(metric::EvalError::Source("query stopped".into()));
        }
        let mut out = Vec::with_capacity(merged.len());
        // In label order: the error names the same series every time, and sums over series
        // add in the same order.
        let mut merged: Vec<(Labels, Samples)> = merged
            .into_iter()
            .map(|(l, s)| (Labels::from_pairs(l), s))
            .collect();
        merged.sort_by(|a, b| a.0.cmp(&b.0));
        for (labels, mut samples) in merged {
            if let Some(err) = labels.get(labels_builder::ERROR_LABEL) {
                return Err(metric::EvalError::BadQuery(format!(
                    "pipeline error: '{err}' for series: '{labels}'.\nUse a label filter to intentionally skip this error. (e.g | __error__!=\"{err}\").\nTo skip all potential errors you can match empty errors.(e.g __error__=\"\")\nThe label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )"
                )));
            }
            samples.sort_by_key(|s| s.0);
            out.push(metric::SampleSeries {
                labels,
                samples,
                weighted,
            });
        }
        Ok(out)
    }
}

/// A metric query over one tenant's data (`None`: a tenant with no data, an empty result),
/// stopped by `cancel`. The query API and the ruler both run metric queries through this, so a
/// rule evaluated at `t` sees what `/loki/api/v1/query?time=t` answers.
pub fn run_metric(
    tenant: Option<Arc<Tenant>>,
    expr: &crate::logql::SampleExpr,
    params: &metric::EvalParams,
    cancel: Cancel,
) -> Result<(metric::MetricResult, QueryStats), QueryError> {
    let mut source = LogSampleSource {
        tenant,
        stats: QueryStats {
            cancel: cancel.clone(),
            ..QueryStats::default()
        },
    };
    let result = metric::evaluate(expr, params, &mut source).map_err(|e| match e {
        metric::EvalError::Source(_) if cancel.limit_hit().is_some() || cancel.is_cancelled() => {
            cancel.stopped_error()
        }
        metric::EvalError::Source(m) => QueryError::Storage(m),
        other => QueryError::Unsupported(other.to_string()),
    })?;
    Ok((result, source.stats))
}
