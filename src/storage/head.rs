//! The head: each tenant's streams in memory, between the WAL and segment files. A stream has an
//! open [`HeadBlock`], the sealed blocks of its current chunk, and chunks already cut and waiting
//! for the flusher. The head enforces the out-of-order window (`too_far_behind`) and drops exact
//! duplicates; what it accepts in one push can be rolled back if the WAL write fails, so nothing
//! is visible that was not logged. Sealing (zstd) happens outside the tenant lock: a sealed block
//! starts as its raw [`HeadBlock`] and is swapped for the compressed [`Block`] by whoever seals it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::ingest::validate::{Rejection, TOO_FAR_BEHIND};
use crate::labels::Labels;
use crate::model::Entry;
use crate::storage::chunk::{Block, HeadBlock};
use crate::storage::wal::WalPos;

/// A block of the current or a cut chunk: raw until sealed, then compressed.
pub struct BlockSlot(RwLock<SlotState>);

#[derive(Clone)]
pub enum SlotState {
    Raw(Arc<HeadBlock>),
    Sealed(Arc<Block>),
}

impl BlockSlot {
    pub fn raw(h: HeadBlock) -> Arc<BlockSlot> {
        Arc::new(BlockSlot(RwLock::new(SlotState::Raw(Arc::new(h)))))
    }
    pub fn state(&self) -> SlotState {
        self.0.read().clone()
    }
    /// Compresses the block if nobody has yet (see `chunk::HeadBlock::seal`); returns the
    /// sealed block.
    pub fn seal(&self, level: i32) -> Arc<Block> {
        let raw = match self.state() {
            SlotState::Sealed(b) => return b,
            SlotState::Raw(r) => r,
        };
        let block = Arc::new(raw.seal(level));
        let mut st = self.0.write();
        match &*st {
            SlotState::Sealed(b) => b.clone(),
            SlotState::Raw(_) => {
                *st = SlotState::Sealed(block.clone());
                block
            }
        }
    }
    pub fn is_sealed(&self) -> bool {
        matches!(*self.0.read(), SlotState::Sealed(_))
    }
}

/// A chunk cut from a stream's head, waiting to be written to a segment.
pub struct CutChunk {
    pub blocks: Vec<Arc<BlockSlot>>,
    pub min_ts: i64,
    pub max_ts: i64,
    pub n_entries: u32,
    pub raw_bytes: u64,
    /// WAL position of the first and last records that contributed to it.
    pub first_pos: WalPos,
    pub through_pos: WalPos,
}

pub struct StreamHead {
    pub labels: Labels,
    pub labels_text: String,
    /// Highest timestamp ever accepted (segments included).
    pub newest_ts: i64,
    pub open: HeadBlock,
    /// Sealed blocks of the current chunk.
    pub blocks: Vec<Arc<BlockSlot>>,
    blocks_raw: u64,
    chunk_min_ts: i64,
    chunk_max_ts: i64,
    chunk_entries: u32,
    chunk_first_pos: Option<WalPos>,
    chunk_started: Instant,
    last_append: Instant,
    pub cut: Vec<Arc<CutChunk>>,
    pub last_pos: WalPos,
    pub flushed_pos: WalPos,
}

impl StreamHead {
    pub fn new(labels: Labels, newest_ts: i64, flushed_pos: WalPos) -> StreamHead {
        let now = Instant::now();
        StreamHead {
            labels_text: labels.to_string(),
            labels,
            newest_ts,
            open: HeadBlock::default(),
            blocks: Vec::new(),
            blocks_raw: 0,
            chunk_min_ts: i64::MAX,
            chunk_max_ts: i64::MIN,
            chunk_entries: 0,
            chunk_first_pos: None,
            chunk_started: now,
            last_append: now,
            cut: Vec::new(),
            last_pos: flushed_pos,
            flushed_pos,
        }
    }

    /// The oldest WAL position whose data is still only in memory.
    pub fn first_unflushed_pos(&self) -> Option<WalPos> {
        self.cut
            .first()
            .map(|c| c.first_pos)
            .or(self.chunk_first_pos)
    }

    /// Bytes of entries this stream holds in memory: the open block, raw and sealed blocks of
    /// the current chunk, and cut chunks waiting for the flusher.
    pub fn memory_bytes(&self) -> usize {
        let slot = |b: &Arc<BlockSlot>| match b.state() {
            SlotState::Raw(h) => h.size(),
            SlotState::Sealed(s) => s.bytes.len(),
        };
        self.open.size()
            + self.blocks.iter().map(slot).sum::<usize>()
            + self
                .cut
                .iter()
                .flat_map(|c| c.blocks.iter())
                .map(slot)
                .sum::<usize>()
    }

    pub fn has_data(&self) -> bool {
        !self.open.is_empty() || !self.blocks.is_empty() || !self.cut.is_empty()
    }

    /// An exact duplicate (same timestamp and line) of an entry still in the open block; only
    /// entries not newer than the newest can be one.
    fn is_duplicate(&self, e: &Entry) -> bool {
        e.ts <= self.newest_ts
            && (0..self.open.len())
                .rev()
                .any(|i| self.open.ts(i) == e.ts && self.open.line(i) == e.line.as_bytes())
    }

    /// Appends without checks (WAL replay: these entries were accepted before).
    pub fn append_unchecked<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        ts: i64,
        line: &str,
        metadata: &[(K, V)],
    ) {
        self.open.push(ts, line, metadata);
        self.newest_ts = self.newest_ts.max(ts);
        self.chunk_min_ts = self.chunk_min_ts.min(ts);
        self.chunk_max_ts = self.chunk_max_ts.max(ts);
        self.chunk_entries += 1;
    }

    /// Records that the record at `pos` touched this stream.
    pub fn logged_at(&mut self, pos: WalPos) {
        let now = Instant::now();
        self.last_pos = pos;
        self.last_append = now;
        if self.chunk_first_pos.is_none() {
            self.chunk_first_pos = Some(pos);
            self.chunk_started = now;
        }
    }

    /// Seals the open block once it reaches `block_size`; cuts the chunk once it reaches
    /// `target`. Returns blocks that need compressing.
    pub fn maybe_cut(&mut self, block_size: u64, target: u64, out: &mut Vec<Arc<BlockSlot>>) {
        if self.open.size() as u64 >= block_size {
            self.seal_open(out);
        }
        if self.blocks_raw >= target {
            self.cut_chunk(out);
        }
    }

    /// Seals the open block when the stream has received nothing for `idle` and the block
    /// holds at least `min_size` bytes: a stream that stopped or pauses gets its block's
    /// filter and field summaries now, instead of leaving raw lines every query must parse.
    /// Smaller blocks wait (sealing them would cost more than reading them).
    pub fn seal_if_idle(
        &mut self,
        now: Instant,
        idle: Duration,
        min_size: u64,
        out: &mut Vec<Arc<BlockSlot>>,
    ) {
        if self.open.size() as u64 >= min_size.max(1)
            && now.saturating_duration_since(self.last_append) >= idle
        {
            self.seal_open(out);
        }
    }

    fn seal_open(&mut self, out: &mut Vec<Arc<BlockSlot>>) {
        if self.open.is_empty() {
            return;
        }
        // A stream that filled a block will likely fill the next: size it up front.
        let next = HeadBlock::with_capacity_like(&self.open);
        let open = std::mem::replace(&mut self.open, next);
        self.blocks_raw += open.size() as u64;
        let slot = BlockSlot::raw(open);
        out.push(slot.clone());
        self.blocks.push(slot);
    }

    /// Cuts the current chunk (sealing the open block first).
    pub fn cut_chunk(&mut self, out: &mut Vec<Arc<BlockSlot>>) {
        self.seal_open(out);
        if self.blocks.is_empty() {
            return;
        }
        let Some(first_pos) = self.chunk_first_pos.take() else {
            panic!("bug: a chunk with data has no WAL position");
        };
        self.cut.push(Arc::new(CutChunk {
            blocks: std::mem::take(&mut self.blocks),
            min_ts: self.chunk_min_ts,
            max_ts: self.chunk_max_ts,
            n_entries: self.chunk_entries,
            raw_bytes: self.blocks_raw,
            first_pos,
            through_pos: self.last_pos,
        }));
        self.blocks_raw = 0;
        self.chunk_min_ts = i64::MAX;
        self.chunk_max_ts = i64::MIN;
        self.chunk_entries = 0;
    }

    /// True when the current chunk is older than `max_age` or idle longer than `idle`.
    pub fn chunk_due(&self, now: Instant, max_age: Duration, idle: Duration) -> bool {
        self.chunk_first_pos.is_some()
            && (now.duration_since(self.chunk_started) >= max_age
                || now.duration_since(self.last_append) >= idle)
    }
}

/// Undo information for one stream touched by a push.
struct Undo {
    labels: Labels,
    created: bool,
    open_len: usize,
    newest_ts: i64,
    chunk: (i64, i64, u32),
}

/// One tenant's streams.
#[derive(Default)]
pub struct TenantHead {
    pub streams: HashMap<Labels, StreamHead>,
    /// What segments know of streams not (yet) in memory: newest timestamp and flushed position.
    pub known: HashMap<Labels, (i64, WalPos)>,
}

/// The outcome of applying one push to a tenant head.
pub struct Applied {
    undo: Vec<Undo>,
    /// Per touched stream: labels and the indexes of its accepted entries.
    pub accepted: Vec<(Labels, Vec<usize>)>,
    pub rejections: Vec<Rejection>,
}

impl Applied {
    pub fn all_accepted(&self, total: usize) -> bool {
        self.accepted.iter().map(|(_, v)| v.len()).sum::<usize>() == total
    }
}

impl TenantHead {
    /// Records what a segment holds of a stream: its newest timestamp and flushed position.
    pub fn remember(&mut self, s: &crate::storage::segment::SegmentStream) {
        let k = self
            .known
            .entry(s.labels.clone())
            .or_insert((i64::MIN, WalPos::default()));
        k.0 = k.0.max(s.max_ts);
        k.1 = k.1.max(s.flushed_pos);
    }

    fn stream_mut(&mut self, labels: &Labels) -> (&mut StreamHead, bool) {
        let created = !self.streams.contains_key(labels);
        if created {
            let (newest, flushed) = self
                .known
                .get(labels)
                .copied()
                .unwrap_or((i64::MIN, WalPos::default()));
            self.streams.insert(
                labels.clone(),
                StreamHead::new(labels.clone(), newest, flushed),
            );
        }
        (
            self.streams
                .get_mut(labels)
                .expect("bug: stream just inserted"),
            created,
        )
    }

    /// Applies validated streams: checks the out-of-order window and duplicates, appends the
    /// rest. Call [`TenantHead::commit`] after the WAL write, or [`TenantHead::rollback`].
    pub fn apply(
        &mut self,
        streams: &[crate::ingest::ValidStream],
        window: Duration,
        max_streams: usize,
    ) -> Applied {
        let mut applied = Applied {
            undo: Vec::new(),
            accepted: Vec::new(),
            rejections: Vec::new(),
        };
        let window = window.as_nanos() as i64;
        for s in streams {
            if max_streams > 0
                && !self.streams.contains_key(&s.labels)
                && self.streams.len() >= max_streams
            {
                applied.rejections.push(Rejection {
                    reason: crate::ingest::validate::STREAM_LIMIT,
                    message: format!(
                        "Maximum active stream limit exceeded, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: 'stream {}' (limits_config.max_global_streams_per_user {})",
                        s.labels, max_streams
                    ),
                    lines: s.entries.len(),
                    bytes: s.entries.iter().map(Entry::size).sum(),
                });
                continue;
            }
            let (st, created) = self.stream_mut(&s.labels);
            applied.undo.push(Undo {
                labels: s.labels.clone(),
                created,
                open_len: st.open.len(),
                newest_ts: st.newest_ts,
                chunk: (st.chunk_min_ts, st.chunk_max_ts, st.chunk_entries),
            });
            let mut idx = Vec::with_capacity(s.entries.len());
            let mut ignored = 0usize;
            for (i, e) in s.entries.iter().enumerate() {
                let cutoff = st.newest_ts.saturating_sub(window);
                if st.newest_ts != i64::MIN && e.ts < cutoff {
                    ignored += 1;
                    if ignored <= 10 {
                        applied.rejections.push(Rejection {
                            reason: TOO_FAR_BEHIND,
                            message: format!(
                                "entry with timestamp {} ignored, reason: 'entry too far behind, entry timestamp is: {}, oldest acceptable timestamp is: {}' for stream: {}",
                                fmt_ts(e.ts), fmt_ts(e.ts), fmt_ts(cutoff), st.labels_text
                            ),
                            lines: 1,
                            bytes: e.size(),
                        });
                    } else {
                        applied.rejections.push(Rejection {
                            reason: TOO_FAR_BEHIND,
                            message: String::new(),
                            lines: 1,
                            bytes: e.size(),
                        });
                    }
                    continue;
                }
                if st.is_duplicate(e) {
                    continue;
                }
                st.append_unchecked(e.ts, &e.line, &e.metadata);
                idx.push(i);
            }
            if ignored > 10 {
                applied.rejections.push(Rejection {
                    reason: TOO_FAR_BEHIND,
                    message: format!(
                        "total ignored: {ignored} out of {} for stream: {}",
                        s.entries.len(),
                        st.labels_text
                    ),
                    lines: 0,
                    bytes: 0,
                });
            }
            applied.accepted.push((s.labels.clone(), idx));
        }
        applied
    }

    /// Undoes an [`Applied`] whose WAL write failed.
    pub fn rollback(&mut self, applied: Applied) {
        for u in applied.undo.into_iter().rev() {
            if u.created {
                self.streams.remove(&u.labels);
                continue;
            }
            if let Some(st) = self.streams.get_mut(&u.labels) {
                st.open.truncate(u.open_len);
                st.newest_ts = u.newest_ts;
                (st.chunk_min_ts, st.chunk_max_ts, st.chunk_entries) = u.chunk;
            }
        }
    }

    /// Records the WAL position of a logged push and cuts what is due; returns blocks to seal.
    pub fn commit(
        &mut self,
        applied: &Applied,
        pos: WalPos,
        block_size: u64,
        target: u64,
    ) -> Vec<Arc<BlockSlot>> {
        let mut out = Vec::new();
        for (labels, idx) in &applied.accepted {
            if idx.is_empty() {
                continue;
            }
            if let Some(st) = self.streams.get_mut(labels) {
                st.logged_at(pos);
                st.maybe_cut(block_size, target, &mut out);
            }
        }
        out
    }
}

fn fmt_ts(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::ValidStream;

    const HOUR: i64 = 3_600_000_000_000;

    fn stream(entries: &[(i64, &str)]) -> Vec<ValidStream> {
        vec![ValidStream {
            labels: Labels::parse(r#"{app="a"}"#).unwrap(),
            entries: entries
                .iter()
                .map(|(ts, l)| Entry {
                    ts: *ts,
                    line: l.to_string(),
                    metadata: vec![],
                })
                .collect(),
        }]
    }

    fn accepted(a: &Applied) -> usize {
        a.accepted.iter().map(|(_, v)| v.len()).sum()
    }

    #[test]
    fn out_of_order_window_and_duplicates() {
        let mut t = TenantHead::default();
        let w = Duration::from_secs(3600);
        let a = t.apply(
            &stream(&[(10 * HOUR, "x"), (10 * HOUR, "x"), (10 * HOUR, "y")]),
            w,
            0,
        );
        assert_eq!(accepted(&a), 2, "exact duplicate dropped silently");
        assert!(a.rejections.is_empty());
        t.commit(&a, WalPos { seq: 1, offset: 16 }, 1 << 20, 1 << 22);
        let b = t.apply(
            &stream(&[
                (9 * HOUR + 1, "in window"),
                (9 * HOUR - 1, "too old"),
                (10 * HOUR, "y"),
            ]),
            w,
            0,
        );
        assert_eq!(accepted(&b), 1);
        assert_eq!(b.rejections.len(), 1);
        assert_eq!(b.rejections[0].reason, TOO_FAR_BEHIND);
    }

    #[test]
    fn rollback_restores_everything() {
        let mut t = TenantHead::default();
        let w = Duration::from_secs(3600);
        let a = t.apply(&stream(&[(HOUR, "a")]), w, 0);
        t.commit(&a, WalPos { seq: 1, offset: 16 }, 1 << 20, 1 << 22);
        let b = t.apply(&stream(&[(2 * HOUR, "b"), (2 * HOUR + 1, "c")]), w, 0);
        t.rollback(b);
        let st = t.streams.values().next().unwrap();
        assert_eq!(st.open.len(), 1);
        assert_eq!(st.newest_ts, HOUR);
        let mut t2 = TenantHead::default();
        let c = t2.apply(&stream(&[(HOUR, "a")]), w, 0);
        t2.rollback(c);
        assert!(t2.streams.is_empty());
    }

    #[test]
    fn stream_limit() {
        let mut t = TenantHead::default();
        let a = t.apply(&stream(&[(HOUR, "a")]), Duration::from_secs(3600), 1);
        assert_eq!(accepted(&a), 1);
        let other = vec![ValidStream {
            labels: Labels::parse(r#"{app="b"}"#).unwrap(),
            entries: stream(&[(HOUR, "b")])[0].entries.clone(),
        }];
        let b = t.apply(&other, Duration::from_secs(3600), 1);
        assert_eq!(
            b.rejections[0].reason,
            crate::ingest::validate::STREAM_LIMIT
        );
    }

    #[test]
    fn an_idle_stream_seals_its_open_block_once_it_is_big_enough() {
        let labels = crate::labels::Labels::parse(r#"{app="a"}"#).unwrap();
        let mut st = StreamHead::new(labels, 0, WalPos::default());
        st.open
            .push(1, &"x".repeat(100), crate::storage::chunk::NO_METADATA);
        st.logged_at(WalPos::default());
        let mut out = Vec::new();
        let now = Instant::now();
        st.seal_if_idle(now, Duration::from_secs(1), 64, &mut out);
        assert!(out.is_empty(), "not idle yet");
        let later = now + Duration::from_secs(2);
        st.seal_if_idle(later, Duration::from_secs(1), 1000, &mut out);
        assert!(out.is_empty(), "too small to seal");
        st.seal_if_idle(later, Duration::from_secs(1), 64, &mut out);
        assert_eq!(out.len(), 1);
        assert!(st.open.is_empty() && st.blocks.len() == 1);
    }

    #[test]
    fn blocks_seal_and_chunks_cut_in_order() {
        let mut t = TenantHead::default();
        let mut to_seal = Vec::new();
        for i in 0..100 {
            let a = t.apply(
                &stream(&[(HOUR + i, &"z".repeat(100))]),
                Duration::from_secs(3600),
                0,
            );
            to_seal.extend(t.commit(
                &a,
                WalPos {
                    seq: 1,
                    offset: 16 + i as u64,
                },
                1000,
                3000,
            ));
        }
        let st = t.streams.values().next().unwrap();
        assert!(!st.cut.is_empty());
        assert_eq!(st.cut[0].first_pos, WalPos { seq: 1, offset: 16 });
        for w in st.cut.windows(2) {
            assert!(w[0].through_pos < w[1].first_pos);
        }
        for s in to_seal {
            s.seal(1);
        }
        assert!(st
            .cut
            .iter()
            .all(|c| c.blocks.iter().all(|b| b.is_sealed())));
    }
}
