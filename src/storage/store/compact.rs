//! Compaction of a store: the pass that runs every `compactor.compaction_interval`, picks the
//! partitions to rewrite, writes each through the merge in `storage::compactor`, publishes
//! it atomically and deletes what it replaced. The steps and the crash guarantees are drawn in
//! `storage::compactor`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::failpoint;
use crate::labels::Labels;
use crate::model::now_ns;
use crate::storage::files;
use crate::storage::retention::Drops;
use crate::storage::segment::{
    ChunkMeta, Lineage, Replaced, SegmentError, SegmentReader, SegmentStream, SegmentWriter,
};
use crate::storage::store::{Store, Tenant};

use crate::storage::compactor::{merge_stream, ChunkSink, CompactError, CompactionReport};

impl Store {
    /// Deletes the segments `gone` that a compacted segment replaced entirely (one that cannot
    /// go is left to start-up, which finds it replaced).
    fn delete_replaced(
        &self,
        tenant: &str,
        gone: &[(u64, PathBuf)],
        report: &mut CompactionReport,
    ) {
        if let Some(r) = self.remote() {
            // The catalog no longer lists them (`publish_segment`): only the objects remain.
            let seqs: Vec<u64> = gone.iter().map(|g| g.0).collect();
            self.delete_objects(r, tenant, &seqs);
            report.segments_deleted += seqs.len();
            return;
        }
        match self.remove_segments(tenant, gone) {
            Ok(n) => report.segments_deleted += n,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "cannot delete replaced segments; start-up will")
            }
        }
    }

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
            if let Some(remote) = self.remote() {
                // Under the flush lock: an upload of this node's waiting for its commit is
                // not swept away.
                let _no_flush = self.flush_lock.lock();
                match self.sweep_unlisted(remote, &tenant.name) {
                    Ok(n) => r.segments_deleted += n,
                    Err(e) => r.failures.push(format!("tenant {}: {e}", tenant.name)),
                }
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

    /// Rewrites the partition `[from, to)` of `inputs` into one new segment, in the order the
    /// crash guarantees need: gather the partition's chunks, check the disk has room, write
    /// the new segment (recording what it replaces), publish it in place of its inputs, then
    /// delete the segments it replaced entirely.
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
        let (streams, need) = partition_streams(inputs, from, to);
        let dir = self.new_segment_dir(&tenant.name);
        check_free_space(&dir, need)?;
        std::fs::create_dir_all(&dir).map_err(|source| SegmentError::Io {
            path: dir.clone(),
            source,
        })?;
        let replaces = lineage_replaces(live, inputs, from, to);
        let oldest_wal = self.wal().map_or(0, |w| w.oldest_seq());
        let seq = self.allocate_segment_seq();
        let path = files::segment_file(&dir, seq);
        let mut w = SegmentWriter::create(&path)?;
        let replaces: Vec<Replaced> = replaces.into_iter().collect();
        // The inputs the new segment hides entirely: with a bucket, the catalog drops them in
        // the same commit that adds it.
        let replaced_whole: Vec<u64> = live
            .iter()
            .filter(|s| s.without(&replaces).is_replaced())
            .map(|s| s.seq)
            .collect();
        w.set_lineage(Lineage {
            replaces,
            deletes_applied_through: through,
        });
        // Counted here, added to the report once the partition is published.
        let mut stats = CompactionReport::default();
        let deletes = (drops, now, through);
        let written =
            self.write_partition(&mut w, &streams, inputs, deletes, oldest_wal, &mut stats);
        if let Err(e) = written {
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
        let output = Arc::new(self.publish_segment(&tenant.name, &path, seq, &replaced_whole)?);
        report.add(stats);
        report.partitions += 1;
        report.input_bytes += need;
        report.output_bytes += bytes;
        let gone = publish(tenant, output);
        failpoint::hit("compact-before-delete");
        self.delete_replaced(&tenant.name, &gone, report);
        Ok(())
    }

    /// Merges each stream's chunks of the partition into `w`, applying the deletes
    /// `(drops, now, through)`; the caller aborts `w` on an error.
    fn write_partition(
        &self,
        w: &mut SegmentWriter,
        streams: &PartitionStreams,
        inputs: &[Arc<SegmentReader>],
        (drops, now, through): (&Drops, i64, u64),
        oldest_wal: u64,
        stats: &mut CompactionReport,
    ) -> Result<(), CompactError> {
        let comp = &self.cfg.compactor;
        let mut sink = ChunkSink::new(
            comp.block_size.max(1) as usize,
            comp.chunk_target_size.max(1) as usize,
            comp.zstd_level,
        );
        for (labels, (meta, chunks)) in streams {
            let sd = drops.for_stream(labels, now, 0, through);
            sink.start_stream();
            let refs: Vec<(&SegmentReader, &ChunkMeta)> =
                chunks.iter().map(|(i, c)| (&*inputs[*i], c)).collect();
            merge_stream(&refs, &sd, stats, |ts, line, md| {
                sink.push(w, meta, ts, line, md)
            })?;
            sink.finish_chunk(w, meta)?;
            // A stream whose entries all went still records its WAL position while the WAL
            // holds records of it, so that replay does not bring them back.
            if !sink.stream_started() && meta.flushed_pos.seq >= oldest_wal {
                w.add_stream(meta.clone());
            }
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
        let gone: Vec<(u64, PathBuf)> = {
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
                .map(|s| (s.seq, s.path().to_path_buf()))
                .collect();
            segs.retain(|s| !removable(s));
            gone
        };
        report.segments_deleted += self.remove_segments(&tenant.name, &gone)?;
        Ok(())
    }

    /// Marks delete requests processed once no segment holds data they still have to remove.
    fn update_delete_status(
        &self,
        tenant: &Tenant,
    ) -> Result<(), crate::storage::retention::DeleteError> {
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
                            && crate::logql::labels_match(&d.matchers, |n| {
                                s.streams[c.stream as usize].labels.get(n)
                            })
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

/// Each stream's chunks in a partition (as input index and chunk), with what the inputs
/// record of the stream.
type PartitionStreams = BTreeMap<Labels, (SegmentStream, Vec<(usize, ChunkMeta)>)>;

/// The chunks of `inputs` starting in `[from, to)`, by stream, and their bytes.
fn partition_streams(inputs: &[Arc<SegmentReader>], from: i64, to: i64) -> (PartitionStreams, u64) {
    let mut streams = PartitionStreams::new();
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
    (streams, need)
}

/// Refuses to start a partition when `dir`'s file system has less than `need` bytes free.
fn check_free_space(dir: &Path, need: u64) -> Result<(), CompactError> {
    let free = files::free_bytes(dir).map_err(|source| SegmentError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if free < need {
        return Err(CompactError::DiskShort { need, free });
    }
    Ok(())
}

/// What the new segment replaces: the partition of each input, and what the inputs replaced
/// that is still on disk (`live`).
fn lineage_replaces(
    live: &[Arc<SegmentReader>],
    inputs: &[Arc<SegmentReader>],
    from: i64,
    to: i64,
) -> BTreeSet<Replaced> {
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
    replaces
}

/// Puts `output` into the tenant's segment list, hiding what it replaces in the segments it
/// replaces; returns the files of the segments it replaced entirely.
fn publish(tenant: &Tenant, output: Arc<SegmentReader>) -> Vec<(u64, PathBuf)> {
    let replaced = output.lineage.replaces.clone();
    let mut segs = tenant.segments.write();
    let mut gone = Vec::new();
    for s in segs.iter_mut() {
        if replaced.iter().any(|r| r.seq == s.seq) {
            let hidden = Arc::new(s.without(&replaced));
            if hidden.is_replaced() {
                gone.push((hidden.seq, hidden.path().to_path_buf()));
            }
            *s = hidden;
        }
    }
    segs.retain(|s| !s.is_replaced());
    segs.push(output);
    gone
}
