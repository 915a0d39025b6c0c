//! The compactor: every `compactor.compaction_interval` it rewrites each tenant's segments into
//! one segment per time partition (`compactor.partition_period`, by chunk start), merging each
//! stream's chunks in timestamp order, re-cutting them to full size, recompressing at
//! `compactor.zstd_level`, and leaving out expired entries and lines of delete requests.
//!
//! A partition is rewritten when it holds chunks of several segments, of a segment that also
//! spans other partitions or still holds replaced chunks, or chunks that retention or a delete
//! request touches. One partition
//! is one atomic step (see the lineage in `segment`):
//!
//! ```text
//! write <seq>.seg.tmp                                  (failpoint compact-before-publish)
//! fsync → rename → fsync dir                           (failpoint compact-after-publish)
//! hide the replaced chunks in memory (queries switch)   (failpoint compact-before-delete)
//! delete inputs whose chunks are all replaced → fsync dir
//! ```
//! A crash before the rename leaves the inputs; after it, start-up hides the inputs' replaced
//! chunks and deletes the inputs that are wholly replaced. Queries that hold an input keep its
//! mapping until they finish. Before a partition is written the free space is checked against
//! its input size, so compaction never needs more free disk than one partition; when short it
//! stops, reports, and tries again at the next interval.
//!
//! Neighbours: `store` (tenants, segments, WAL position), `retention` (what to drop),
//! `segment` and `chunk` (formats).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::chunk::{chunk_blocks, encode_chunk, Block, BlockRef, DecodedBlock, HeadBlock};
use crate::failpoint;
use crate::files;
use crate::labels::Labels;
use crate::retention::{Drops, StreamDrops};
use crate::segment::{
    ChunkMeta, Lineage, Replaced, SegmentError, SegmentReader, SegmentStream, SegmentWriter,
};
use crate::store::{now_ns, Store, Tenant};

#[derive(Debug, Error)]
pub enum CompactError {
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("damaged data in {path} at byte {offset}: {reason}; its partition is left as it is")]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("not enough free disk to compact: {need} bytes needed, {free} free; retrying at the next interval")]
    DiskShort { need: u64, free: u64 },
}

/// What one compaction pass did.
#[derive(Debug, Default, Clone)]
pub struct CompactionReport {
    pub partitions: usize,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub entries_read: u64,
    /// Entries left out, by why: past retention, named by a delete request, an exact duplicate.
    pub entries_expired: u64,
    pub entries_deleted: u64,
    pub entries_duplicate: u64,
    pub segments_deleted: usize,
    pub failures: Vec<String>,
    pub disk_short: bool,
}

impl CompactionReport {
    /// Entries left out for any reason.
    pub fn entries_dropped(&self) -> u64 {
        self.entries_expired + self.entries_deleted + self.entries_duplicate
    }

    fn add(&mut self, o: CompactionReport) {
        self.partitions += o.partitions;
        self.input_bytes += o.input_bytes;
        self.output_bytes += o.output_bytes;
        self.entries_read += o.entries_read;
        self.entries_expired += o.entries_expired;
        self.entries_deleted += o.entries_deleted;
        self.entries_duplicate += o.entries_duplicate;
        self.segments_deleted += o.segments_deleted;
        self.failures.extend(o.failures);
        self.disk_short |= o.disk_short;
    }
}

impl Store {
    /// One compaction pass over every tenant (one pass at a time). A tenant's failure is
    /// reported and the other tenants are still compacted.
    pub fn compact(&self) -> CompactionReport {
        let _one_at_a_time = self.compact_lock.lock();
        let started = Instant::now();
        let now = now_ns();
        let mut total = CompactionReport::default();
        for tenant in self.tenants() {
            let mut r = CompactionReport::default();
            if let Err(e) = self.compact_tenant(&tenant, now, &mut r) {
                tracing::error!(tenant = %tenant.name, error = %e, "compaction failed; the tenant's data is left as it was");
                self.metrics.inc(
                    "sawmill_compactor_failures_total",
                    &[("tenant", &tenant.name)],
                    1,
                );
                r.disk_short |= matches!(e, CompactError::DiskShort { .. });
                r.failures.push(format!("tenant {}: {e}", tenant.name));
            }
            if let Err(e) = self.update_delete_status(&tenant) {
                r.failures.push(format!("tenant {}: {e}", tenant.name));
            }
            let t = [("tenant", tenant.name.as_str())];
            self.metrics.inc(
                "sawmill_compactor_partitions_total",
                &t,
                r.partitions as u64,
            );
            self.metrics
                .inc("sawmill_compactor_input_bytes_total", &t, r.input_bytes);
            self.metrics
                .inc("sawmill_compactor_output_bytes_total", &t, r.output_bytes);
            for (reason, n) in [
                ("retention", r.entries_expired),
                ("delete", r.entries_deleted),
                ("duplicate", r.entries_duplicate),
            ] {
                self.metrics.inc(
                    "sawmill_compactor_entries_dropped_total",
                    &[("tenant", tenant.name.as_str()), ("reason", reason)],
                    n,
                );
            }
            self.metrics.inc(
                "sawmill_compactor_segments_deleted_total",
                &t,
                r.segments_deleted as u64,
            );
            total.add(r);
        }
        if total.disk_short {
            self.metrics
                .inc("sawmill_compactor_disk_short_total", &[], 1);
        }
        self.metrics.inc("sawmill_compactor_runs_total", &[], 1);
        self.metrics.observe(
            "sawmill_compactor_duration_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        total
    }

    fn compact_tenant(
        &self,
        tenant: &Tenant,
        now: i64,
        report: &mut CompactionReport,
    ) -> Result<(), CompactError> {
        let period = (self.cfg.compactor.partition_period.as_nanos() as i64).max(1);
        let drops = tenant.drops();
        let through = self.deletes_due(tenant, now);
        let live: Vec<Arc<SegmentReader>> = tenant.segments.read().clone();
        let mut parts: BTreeMap<i64, BTreeSet<usize>> = BTreeMap::new();
        let mut spans: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); live.len()];
        for (i, seg) in live.iter().enumerate() {
            for c in &seg.chunks {
                let p = c.min_ts.div_euclid(period);
                parts.entry(p).or_default().insert(i);
                spans[i].insert(p);
            }
        }
        for (p, segs) in &parts {
            let from = p.saturating_mul(period);
            let to = from.saturating_add(period);
            // Several segments, a segment that spans other partitions, a file that still holds
            // replaced chunks (a pass cut short), or data that retention or a delete removes.
            let dirty = segs.len() > 1
                || segs
                    .iter()
                    .any(|&i| spans[i].len() > 1 || live[i].hidden_chunks > 0)
                || segs.iter().any(|&i| {
                    let seg = &live[i];
                    seg.chunks
                        .iter()
                        .filter(|c| c.min_ts >= from && c.min_ts < to)
                        .any(|c| {
                            drops
                                .for_stream(
                                    &seg.streams[c.stream as usize].labels,
                                    now,
                                    seg.lineage.deletes_applied_through,
                                    through,
                                )
                                .touches(c.min_ts, c.max_ts)
                        })
                });
            if !dirty {
                continue;
            }
            let inputs: Vec<Arc<SegmentReader>> = segs.iter().map(|&i| live[i].clone()).collect();
            let res = self.compact_partition(
                tenant, &live, &inputs, from, to, &drops, now, through, report,
            );
            match res {
                // A damaged chunk keeps its partition as it is; the others are still compacted.
                Err(e @ CompactError::Damaged { .. }) => {
                    tracing::error!(tenant = %tenant.name, error = %e, "partition not compacted");
                    self.metrics.inc(
                        "sawmill_compactor_failures_total",
                        &[("tenant", &tenant.name)],
                        1,
                    );
                    report.failures.push(format!("tenant {}: {e}", tenant.name));
                }
                other => other?,
            }
        }
        self.drop_empty_segments(tenant, report)?;
        Ok(())
    }

    /// The highest delete request number whose cancel period is over (they are numbered in the
    /// order they were made, so those due form a prefix).
    fn deletes_due(&self, tenant: &Tenant, now: i64) -> u64 {
        let cancel = self.cfg.compactor.delete_request_cancel_period;
        let now_ms = now / 1_000_000;
        let deletes = tenant.deletes.lock();
        let mut reqs: Vec<_> = deletes.requests.iter().collect();
        reqs.sort_by_key(|r| r.seq);
        let mut through = 0;
        for r in reqs {
            if r.created_at_ms + cancel.as_millis() as i64 > now_ms {
                break;
            }
            through = r.seq;
        }
        through
    }

    #[allow(clippy::too_many_arguments)]
    fn compact_partition(
        &self,
        tenant: &Tenant,
        live: &[Arc<SegmentReader>],
        inputs: &[Arc<SegmentReader>],
        from: i64,
        to: i64,
        drops: &Drops,
        now: i64,
        through: u64,
        report: &mut CompactionReport,
    ) -> Result<(), CompactError> {
        // Each stream's chunks in this partition, and what the inputs record of the stream.
        let mut streams: BTreeMap<Labels, (SegmentStream, Vec<(usize, ChunkMeta)>)> =
            BTreeMap::new();
        let mut need = 0u64;
        for (i, seg) in inputs.iter().enumerate() {
            for c in seg
                .chunks
                .iter()
                .filter(|c| c.min_ts >= from && c.min_ts < to)
            {
                need += c.len;
                let s = &seg.streams[c.stream as usize];
                let e = streams
                    .entry(s.labels.clone())
                    .or_insert_with(|| (s.clone(), Vec::new()));
                e.0.max_ts = e.0.max_ts.max(s.max_ts);
                e.0.flushed_pos = e.0.flushed_pos.max(s.flushed_pos);
                e.1.push((i, *c));
            }
        }
        let dir = files::segments_dir(self.data_dir(), &tenant.name);
        let free = files::free_bytes(&dir).map_err(|source| SegmentError::Io {
            path: dir.clone(),
            source,
        })?;
        if free < need {
            return Err(CompactError::DiskShort { need, free });
        }
        let live_seqs: BTreeSet<u64> = live.iter().map(|s| s.seq).collect();
        let mut replaces: BTreeSet<Replaced> = inputs
            .iter()
            .map(|s| Replaced {
                seq: s.seq,
                from,
                to,
            })
            .collect();
        for s in inputs {
            replaces.extend(
                s.lineage
                    .replaces
                    .iter()
                    .filter(|r| live_seqs.contains(&r.seq)),
            );
        }
        let oldest_wal = self.wal().map_or(0, |w| w.oldest_seq());
        let seq = self.allocate_segment_seq();
        let path = files::segment_file(&dir, seq);
        let mut w = SegmentWriter::create(&path)?;
        w.set_lineage(Lineage {
            replaces: replaces.into_iter().collect(),
            deletes_applied_through: through,
        });
        let comp = &self.cfg.compactor;
        let mut sink = ChunkSink {
            block_size: comp.block_size.max(1) as usize,
            target: comp.chunk_target_size.max(1) as usize,
            level: self.cfg.compactor.zstd_level,
            head: HeadBlock::default(),
            blocks: Vec::new(),
            blocks_raw: 0,
            stream: None,
        };
        // Counted here, added to the report once the partition is published.
        let mut stats = CompactionReport::default();
        let res = (|| {
            for (labels, (meta, chunks)) in &streams {
                let sd = drops.for_stream(labels, now, 0, through);
                sink.stream = None;
                let refs: Vec<(&SegmentReader, &ChunkMeta)> =
                    chunks.iter().map(|(i, c)| (&*inputs[*i], c)).collect();
                merge_stream(&refs, &sd, &mut stats, |ts, line, md| {
                    sink.push(&mut w, meta, ts, line, md)
                })?;
                sink.finish_chunk(&mut w, meta)?;
                // A stream whose entries all went still records its WAL position while the WAL
                // holds records of it, so that replay does not bring them back.
                if sink.stream.is_none() && meta.flushed_pos.seq >= oldest_wal {
                    w.add_stream(meta.clone());
                }
            }
            Ok::<(), CompactError>(())
        })();
        if let Err(e) = res {
            w.abort();
            return Err(e);
        }
        failpoint::hit("compact-before-publish");
        if let Err(source) = failpoint::io_error("compact-write-error") {
            w.abort();
            return Err(SegmentError::Io { path, source }.into());
        }
        let bytes = w.finish(&path)?;
        failpoint::hit("compact-after-publish");
        let output = Arc::new(SegmentReader::open(&path)?);
        report.add(stats);
        report.partitions += 1;
        report.input_bytes += need;
        report.output_bytes += bytes;
        let replaced = output.lineage.replaces.clone();
        let gone = {
            let mut segs = tenant.segments.write();
            let mut gone = Vec::new();
            for s in segs.iter_mut() {
                if replaced.iter().any(|r| r.seq == s.seq) {
                    let hidden = Arc::new(s.without(&replaced));
                    if hidden.is_replaced() {
                        gone.push(hidden.path().to_path_buf());
                    }
                    *s = hidden;
                }
            }
            segs.retain(|s| !s.is_replaced());
            segs.push(output);
            gone
        };
        failpoint::hit("compact-before-delete");
        for (i, p) in gone.iter().enumerate() {
            if i == 1 {
                failpoint::hit("compact-between-deletes");
            }
            match crate::segment::remove(p) {
                Ok(()) => report.segments_deleted += 1,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot delete a replaced segment; start-up will")
                }
            }
        }
        if !gone.is_empty() {
            let _ = files::sync_dir(&dir);
        }
        Ok(())
    }

    /// Deletes compacted segments left with no chunks (everything in them expired or deleted)
    /// once nothing they replace is still on disk and the WAL no longer holds their streams.
    fn drop_empty_segments(
        &self,
        tenant: &Tenant,
        report: &mut CompactionReport,
    ) -> Result<(), CompactError> {
        let oldest_wal = self.wal().map_or(0, |w| w.oldest_seq());
        let gone: Vec<PathBuf> = {
            let mut segs = tenant.segments.write();
            let seqs: BTreeSet<u64> = segs.iter().map(|s| s.seq).collect();
            let removable = |s: &SegmentReader| {
                s.chunks.is_empty()
                    && s.lineage
                        .replaces
                        .iter()
                        .all(|r| r.seq == s.seq || !seqs.contains(&r.seq))
                    && s.streams.iter().all(|st| st.flushed_pos.seq < oldest_wal)
            };
            let gone = segs
                .iter()
                .filter(|s| removable(s))
                .map(|s| s.path().to_path_buf())
                .collect();
            segs.retain(|s| !removable(s));
            gone
        };
        for p in &gone {
            if crate::segment::remove(p).is_ok() {
                report.segments_deleted += 1;
            }
        }
        if let Some(dir) = gone.first().and_then(|p| p.parent()) {
            let _ = files::sync_dir(dir);
        }
        Ok(())
    }

    /// Marks delete requests processed once no segment holds data they still have to remove.
    fn update_delete_status(&self, tenant: &Tenant) -> Result<(), crate::retention::DeleteError> {
        let drops = tenant.drops();
        let through = self.deletes_due(tenant, now_ns());
        let segs = tenant.segments.read().clone();
        let mut done = Vec::new();
        for d in drops.deletes.iter().filter(|d| d.seq <= through) {
            let pending = segs.iter().any(|s| {
                s.lineage.deletes_applied_through < d.seq
                    && s.chunks.iter().any(|c| {
                        c.min_ts <= d.end_ns
                            && c.max_ts >= d.start_ns
                            && crate::query::labels_match(
                                &d.matchers,
                                &s.streams[c.stream as usize].labels,
                            )
                    })
            });
            if !pending {
                done.push(d.seq);
            }
        }
        if done.is_empty() {
            return Ok(());
        }
        tenant.deletes.lock().mark_processed(&done)
    }

    /// Runs [`Store::compact`] every `compactor.compaction_interval` on a dedicated thread.
    pub fn start_compactor(self: &Arc<Self>) {
        let store = Arc::downgrade(self);
        let interval = self
            .cfg
            .compactor
            .compaction_interval
            .max(Duration::from_millis(100));
        std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(s) = store.upgrade() else { return };
                if !s.is_ready() {
                    continue;
                }
                let r = s.compact();
                if r.partitions > 0 || !r.failures.is_empty() {
                    tracing::info!(
                        partitions = r.partitions,
                        input_bytes = r.input_bytes,
                        output_bytes = r.output_bytes,
                        entries_dropped = r.entries_dropped(),
                        segments_deleted = r.segments_deleted,
                        failures = r.failures.len(),
                        "compaction pass"
                    );
                }
            })
            .expect("bug: cannot spawn compactor thread");
    }
}

/// Builds a stream's output chunks: blocks of `block_size`, chunks of `target` raw bytes.
struct ChunkSink {
    block_size: usize,
    target: usize,
    level: i32,
    head: HeadBlock,
    blocks: Vec<Block>,
    blocks_raw: usize,
    /// The stream's index in the output, once it has a chunk.
    stream: Option<u32>,
}

impl ChunkSink {
    fn push(
        &mut self,
        w: &mut SegmentWriter,
        meta: &SegmentStream,
        ts: i64,
        line: &[u8],
        md: &[u8],
    ) -> Result<(), CompactError> {
        self.head.push_raw(ts, line, md);
        if self.head.size() >= self.block_size {
            self.seal_block();
            if self.blocks_raw >= self.target {
                self.finish_chunk(w, meta)?;
            }
        }
        Ok(())
    }

    fn seal_block(&mut self) {
        if self.head.is_empty() {
            return;
        }
        self.blocks_raw += self.head.size();
        self.blocks.push(self.head.seal(self.level));
        self.head = HeadBlock::with_capacity_like(&self.head);
    }

    fn finish_chunk(
        &mut self,
        w: &mut SegmentWriter,
        meta: &SegmentStream,
    ) -> Result<(), CompactError> {
        self.seal_block();
        if self.blocks.is_empty() {
            return Ok(());
        }
        let idx = *self
            .stream
            .get_or_insert_with(|| w.add_stream(meta.clone()));
        let mut buf =
            Vec::with_capacity(self.blocks.iter().map(|b| b.bytes.len()).sum::<usize>() + 8);
        encode_chunk(self.blocks.iter(), &mut buf);
        let min_ts = self.blocks.iter().map(|b| b.min_ts).min().unwrap_or(0);
        let max_ts = self.blocks.iter().map(|b| b.max_ts).max().unwrap_or(0);
        let n: u32 = self.blocks.iter().map(|b| b.n_entries).sum();
        w.add_chunk(idx, &buf, min_ts, max_ts, n, self.blocks_raw as u64)?;
        self.blocks.clear();
        self.blocks_raw = 0;
        Ok(())
    }
}

/// One block being read during a merge.
struct Cursor {
    block: DecodedBlock,
    at: usize,
}

/// Calls `emit` with a stream's entries from `chunks` in timestamp order (ties: input order),
/// leaving out dropped entries and exact duplicates. Blocks are sorted runs; a block is
/// decompressed only when the merge reaches its first timestamp, so memory holds just the
/// blocks that overlap in time.
fn merge_stream(
    chunks: &[(&SegmentReader, &ChunkMeta)],
    drops: &StreamDrops<'_>,
    stats: &mut CompactionReport,
    mut emit: impl FnMut(i64, &[u8], &[u8]) -> Result<(), CompactError>,
) -> Result<(), CompactError> {
    let mut pending: Vec<(BlockRef<'_>, &SegmentReader, u64)> = Vec::new();
    for (seg, c) in chunks {
        let blocks = chunk_blocks(seg.chunk_bytes(c)).map_err(|e| CompactError::Damaged {
            path: seg.path().to_path_buf(),
            offset: c.offset,
            reason: e.to_string(),
        })?;
        pending.extend(blocks.into_iter().map(|b| (b, *seg, c.offset)));
    }
    // Stable: equal start times keep input order (older segments first).
    pending.sort_by_key(|(b, _, _)| b.min_ts);
    let mut next = 0usize;
    let mut cursors: Vec<Cursor> = Vec::new();
    let mut free: Vec<DecodedBlock> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let mut last: Option<(i64, Vec<u8>, Vec<u8>)> = None;
    loop {
        let head_ts = heap.peek().map(|Reverse((ts, _))| *ts);
        if next < pending.len() && head_ts.is_none_or(|t| pending[next].0.min_ts <= t) {
            let (b, seg, chunk_off) = &pending[next];
            let mut block = free.pop().unwrap_or_default();
            block.decode_from(b).map_err(|e| CompactError::Damaged {
                path: seg.path().to_path_buf(),
                offset: chunk_off + b.offset as u64,
                reason: e.to_string(),
            })?;
            if !block.is_empty() {
                heap.push(Reverse((block.ts(0), cursors.len())));
                cursors.push(Cursor { block, at: 0 });
            }
            next += 1;
            continue;
        }
        let Some(Reverse((ts, ci))) = heap.pop() else {
            break;
        };
        let c = &mut cursors[ci];
        let (line, md) = (c.block.line(c.at), c.block.metadata_raw(c.at));
        stats.entries_read += 1;
        let dup = last
            .as_ref()
            .is_some_and(|(t, l, m)| *t == ts && l == line && m == md);
        if dup {
            stats.entries_duplicate += 1;
        } else if ts < drops.cutoff {
            stats.entries_expired += 1;
        } else if drops.drops(ts, line) {
            stats.entries_deleted += 1;
        } else {
            emit(ts, line, md)?;
            let l = last.get_or_insert_with(|| (0, Vec::new(), Vec::new()));
            l.0 = ts;
            l.1.clear();
            l.1.extend_from_slice(line);
            l.2.clear();
            l.2.extend_from_slice(md);
        }
        c.at += 1;
        if c.at < c.block.len() {
            heap.push(Reverse((c.block.ts(c.at), ci)));
        } else {
            free.push(std::mem::take(&mut c.block));
        }
    }
    Ok(())
}
