//! The store: owns the WAL, every tenant's head and segment files, and the background flusher.
//! Push path: validated streams → [`TenantHead::apply`] → WAL append (or rollback) → commit →
//! seal full blocks. Start: open segments (skipping damaged ones), replay the WAL past what
//! segments already hold, then answer ready. Flush: cut chunks that are full, old or idle, write
//! them to a new segment per tenant, then delete WAL files nothing in memory still needs.

mod compact;
mod indexer;
pub mod remote;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use thiserror::Error;

use crate::config::Config;
use crate::ingest::rate::{rate_limited_message, RateLimiter};
use crate::ingest::validate::{Rejection, Validated, RATE_LIMITED};
use crate::model::now_ns;
use crate::storage::chunk::encode_chunk;
use crate::storage::files;
use crate::storage::head::{BlockSlot, CutChunk, TenantHead};
use crate::storage::retention::{DeleteRequests, Drops};
use crate::storage::segment::{
    list_segments, Replaced, SegmentError, SegmentReader, SegmentStream, SegmentWriter,
};
use crate::storage::wal::{self, Wal, WalError, WalPos};
use crate::telemetry::Metrics;

/// How long a stream receives nothing before the flusher seals its open block.
const IDLE_SEAL: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum PushError {
    #[error("not ready: replaying the write-ahead log")]
    NotReady,
    #[error("{0}")]
    RateLimited(String),
    #[error("{0}")]
    DiskShort(String),
    #[error("{0}")]
    Wal(#[from] WalError),
}

/// What happened to a push that was (at least partly) logged.
pub struct PushOutcome {
    /// Wait for this WAL write counter before acknowledging (`fsync: always`).
    pub wal_written: Option<u64>,
    pub rejections: Vec<Rejection>,
}

pub struct Tenant {
    pub name: String,
    pub head: Mutex<TenantHead>,
    pub segments: RwLock<Vec<Arc<SegmentReader>>>,
    pub deletes: Mutex<DeleteRequests>,
    drops: RwLock<Arc<Drops>>,
}

impl Tenant {
    /// What this tenant's readers must leave out now (retention and delete requests).
    pub fn drops(&self) -> Arc<Drops> {
        self.drops.read().clone()
    }
}

pub struct Store {
    /// The configuration the server started with; limits come from [`Store::limits_for`],
    /// which follows reloads.
    pub cfg: Arc<Config>,
    live: RwLock<Arc<Config>>,
    config_path: Mutex<Option<PathBuf>>,
    pub(crate) compact_lock: Mutex<()>,
    /// When free space was last found short (pushes are refused until it returns).
    disk_check: Mutex<Option<(Instant, bool)>>,
    data: PathBuf,
    wal: OnceLock<Arc<Wal>>,
    /// With a bucket (`common.storage`): where segments live; set at start.
    remote: OnceLock<remote::Remote>,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    rate: RateLimiter,
    stream_rate: crate::ingest::stream_rate::StreamRateLimiter,
    ready: AtomicBool,
    next_segment: AtomicU64,
    pub(crate) flush_lock: Mutex<()>,
    last_flush: Mutex<Option<Instant>>,
    pub metrics: Metrics,
    /// Live tails, handed every accepted entry.
    pub tails: Arc<crate::storage::tail::TailHub>,
    /// The pattern miner, handed every accepted entry (`pattern_ingester`).
    pub patterns: crate::patterns::PatternIngester,
}

/// What start-up found.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub damaged_segments: Vec<String>,
    pub wal_records: usize,
    pub wal_entries: usize,
    pub wal_problems: Vec<String>,
    pub took: Duration,
}

impl Store {
    pub fn new(cfg: Arc<Config>) -> Arc<Store> {
        let cfg_patterns = cfg.pattern_ingester.clone();
        Arc::new(Store {
            data: cfg.data_dir().to_path_buf(),
            live: RwLock::new(cfg.clone()),
            config_path: Mutex::new(None),
            compact_lock: Mutex::new(()),
            disk_check: Mutex::new(None),
            cfg,
            wal: OnceLock::new(),
            remote: OnceLock::new(),
            tenants: RwLock::new(HashMap::new()),
            rate: RateLimiter::default(),
            stream_rate: crate::ingest::stream_rate::StreamRateLimiter::default(),
            ready: AtomicBool::new(false),
            next_segment: AtomicU64::new(1),
            flush_lock: Mutex::new(()),
            last_flush: Mutex::new(None),
            metrics: Metrics::default(),
            tails: Arc::default(),
            patterns: crate::patterns::PatternIngester::new(cfg_patterns),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The limits of a tenant under the current (possibly reloaded) configuration.
    pub fn limits_for(&self, tenant: &str) -> crate::config::Limits {
        self.live.read().limits_for(tenant)
    }

    /// The configuration as it stands: the one started with, with reloaded limits.
    pub fn live_config(&self) -> Arc<Config> {
        self.live.read().clone()
    }

    /// The file `reload` reads.
    pub fn set_config_path(&self, path: Option<PathBuf>) {
        *self.config_path.lock() = path;
    }

    /// Re-reads the config file and applies what can change while running: `limits_config`
    /// and `overrides` (retention among them). Other sections keep their values until restart.
    pub fn reload(&self) -> Result<String, crate::config::ConfigError> {
        let Some(path) = self.config_path.lock().clone() else {
            return Ok(
                "no config file given at start (embedded defaults): nothing to reload".into(),
            );
        };
        let new = Config::from_file(&path)?;
        let mut live = (*self.cfg).clone();
        live.limits_config = new.limits_config;
        live.overrides = new.overrides;
        *self.live.write() = Arc::new(live);
        for t in self.tenants() {
            self.refresh_drops(&t);
        }
        self.metrics.inc("sawmill_config_reloads_total", &[], 1);
        tracing::info!(file = %path.display(), "configuration reloaded (limits_config, overrides)");
        Ok(format!(
            "reloaded limits_config and overrides from {}",
            path.display()
        ))
    }

    /// Rebuilds a tenant's drops from its limits and delete requests.
    pub fn refresh_drops(&self, tenant: &Tenant) {
        let limits = self.limits_for(&tenant.name);
        let d = Drops::new(&limits, &tenant.deletes.lock().requests);
        *tenant.drops.write() = Arc::new(d);
    }

    /// Adds a delete request for a tenant; queries hide its lines from now on.
    pub fn add_delete(
        &self,
        tenant: &str,
        query: &str,
        start_ns: i64,
        end_ns: i64,
    ) -> Result<crate::storage::retention::DeleteRequest, crate::storage::retention::DeleteError>
    {
        let t = self.tenant(tenant);
        let now_ms = now_ns() / 1_000_000;
        let r = t.deletes.lock().add(query, start_ns, end_ns, now_ms)?;
        self.refresh_drops(&t);
        Ok(r)
    }

    /// Cancels a tenant's delete request that compaction has not processed.
    pub fn cancel_delete(
        &self,
        tenant: &str,
        id: &str,
        force: bool,
    ) -> Result<(), crate::storage::retention::DeleteError> {
        let t = self.tenant(tenant);
        t.deletes.lock().cancel(id, force)?;
        self.refresh_drops(&t);
        Ok(())
    }

    /// A new segment number.
    pub(crate) fn allocate_segment_seq(&self) -> u64 {
        self.next_segment.fetch_add(1, Ordering::AcqRel)
    }

    /// The number the next segment will get.
    pub(crate) fn next_segment_seq(&self) -> u64 {
        self.next_segment.load(Ordering::Acquire)
    }

    /// The bucket segments live in, if any (known once `recover` started).
    pub fn remote(&self) -> Option<&remote::Remote> {
        self.remote.get()
    }

    /// Where a tenant's new segment files are written: its segment directory, or with a
    /// bucket the upload directory.
    pub(crate) fn new_segment_dir(&self, tenant: &str) -> PathBuf {
        match self.remote() {
            Some(_) => files::upload_dir(&self.data, tenant),
            None => files::segments_dir(&self.data, tenant),
        }
    }

    /// Opens a segment file just written at `path`; with a bucket, uploads it first and
    /// commits it to the catalog in place of the segments `replaces_whole`.
    pub(crate) fn publish_segment(
        &self,
        tenant: &str,
        path: &Path,
        seq: u64,
        replaces_whole: &[u64],
    ) -> Result<SegmentReader, SegmentError> {
        match self.remote() {
            Some(r) => self.upload_segment(r, tenant, path, seq, replaces_whole),
            None => SegmentReader::open(path),
        }
    }

    /// Removes segments no longer needed (compacted away, or empty): their files, or with a
    /// bucket their catalog entries and then their objects.
    pub(crate) fn remove_segments(
        &self,
        tenant: &str,
        gone: &[(u64, PathBuf)],
    ) -> Result<usize, SegmentError> {
        if let Some(r) = self.remote() {
            let seqs: Vec<u64> = gone.iter().map(|g| g.0).collect();
            self.forget_segments(r, tenant, &seqs)?;
            return Ok(seqs.len());
        }
        let mut removed = 0;
        for (i, (_, p)) in gone.iter().enumerate() {
            if i == 1 {
                crate::failpoint::hit("compact-between-deletes");
            }
            match crate::storage::segment::remove(p) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "cannot delete a segment; start-up will")
                }
            }
        }
        if let Some(dir) = gone.first().and_then(|g| g.1.parent()) {
            let _ = files::sync_dir(dir);
        }
        Ok(removed)
    }

    /// Whether the data directory's filesystem has `storage.min_free_bytes` free. Checked at
    /// most every 100 ms while space is fine, on every push while it is short.
    fn disk_short(&self) -> Option<String> {
        let min = self.cfg.storage.min_free_bytes;
        if min == 0 {
            return None;
        }
        let mut last = self.disk_check.lock();
        if let Some((at, false)) = *last {
            if at.elapsed() < Duration::from_millis(100) {
                return None;
            }
        }
        let free = files::free_bytes(&self.data).unwrap_or(u64::MAX);
        let short = free < min;
        *last = Some((Instant::now(), short));
        short.then(|| {
            format!("not enough free disk space: {free} bytes free, storage.min_free_bytes is {min}; pushes resume when space returns")
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.get()
    }

    /// Opens segments, replays the WAL, opens the WAL for writing and marks the store ready.
    pub fn recover(&self) -> std::io::Result<RecoveryReport> {
        let started = Instant::now();
        let mut report = RecoveryReport::default();
        std::fs::create_dir_all(files::tenants_dir(&self.data))?;
        if let Some(r) = remote::Remote::start(&self.cfg)? {
            let _ = self.remote.set(r);
        }
        let mut max_seq = 0u64;
        let mut max_wal_seq = 0u64;
        let mut names: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(files::tenants_dir(&self.data))? {
            let entry = entry?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(crate::model::tenant::tenant_from_dir_name)
            {
                names.push(name);
            }
        }
        if let Some(r) = self.remote() {
            names.extend(
                crate::storage::bucket::catalog::tenants(&r.bucket)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            );
            let _ = std::fs::remove_dir_all(self.data.join(files::UPLOAD_DIR));
        }
        names.sort();
        names.dedup();
        let mut own_seqs = Vec::new();
        for name in names {
            let tenant = self.tenant(&name);
            let opened = match self.remote() {
                Some(r) => {
                    let listing = crate::storage::bucket::catalog::latest(&r.bucket, &name)
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let mut opened = Vec::new();
                    for e in &listing.segments {
                        own_seqs.push(e.seq);
                        match r.open(&name, e.seq, e.bytes) {
                            Ok(seg) => opened.push(seg),
                            // A bucket that stops answering: start fails rather than hide data.
                            Err(e @ SegmentError::Unavailable { .. }) => {
                                return Err(std::io::Error::other(e.to_string()))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "skipping damaged segment");
                                self.metrics.inc("sawmill_segment_damaged_total", &[], 1);
                                report.damaged_segments.push(e.to_string());
                            }
                        }
                    }
                    opened
                }
                None => {
                    let dir = files::segments_dir(&self.data, &name);
                    let mut opened = Vec::new();
                    for (seq, path) in list_segments(&dir)? {
                        max_seq = max_seq.max(seq);
                        match SegmentReader::open(&path) {
                            Ok(r) => opened.push(r),
                            Err(e) => {
                                tracing::error!(error = %e, "skipping damaged segment");
                                self.metrics.inc("sawmill_segment_damaged_total", &[], 1);
                                report.damaged_segments.push(e.to_string());
                            }
                        }
                    }
                    opened
                }
            };
            let mut head = tenant.head.lock();
            for r in &opened {
                for s in &r.streams {
                    if self.remote().is_some() {
                        // The flushed positions come from `wal/flushed.json` (see `remote`).
                        head.remember(&SegmentStream {
                            flushed_pos: WalPos::default(),
                            ..s.clone()
                        });
                    } else {
                        head.remember(s);
                        max_wal_seq = max_wal_seq.max(s.flushed_pos.seq);
                    }
                }
            }
            // Compacted segments hide what they replaced; inputs wholly replaced are the
            // leftovers of a compaction interrupted before it deleted them.
            let replaced: Vec<Replaced> = opened
                .iter()
                .flat_map(|r| r.lineage.replaces.iter().copied())
                .collect();
            max_seq = max_seq.max(replaced.iter().map(|r| r.seq).max().unwrap_or(0));
            own_seqs.extend(replaced.iter().map(|r| r.seq));
            let mut segs = tenant.segments.write();
            let mut leftovers = Vec::new();
            for r in opened {
                let r = if replaced.iter().any(|x| x.seq == r.seq) {
                    r.without(&replaced)
                } else {
                    r
                };
                if r.is_replaced() {
                    tracing::info!(file = %r.path().display(), "removing a segment replaced by compaction");
                    leftovers.push((r.seq, r.path().to_path_buf()));
                    continue;
                }
                report.segments += 1;
                segs.push(Arc::new(r));
            }
            drop(segs);
            drop(head);
            if let Err(e) = self.remove_segments(&name, &leftovers) {
                tracing::warn!(tenant = %name, error = %e, "cannot remove segments replaced by compaction; a later start will");
            }
            match DeleteRequests::load(&files::deletes_file(&self.data, &name)) {
                Ok(d) => *tenant.deletes.lock() = d,
                Err(e) => {
                    // Without its delete requests, deleted lines would show again: fail start.
                    return Err(std::io::Error::other(e.to_string()));
                }
            }
            self.refresh_drops(&tenant);
        }
        if let Some(r) = self.remote() {
            max_seq = r.seq_base + r.next_counter(own_seqs.into_iter()) - 1;
            max_wal_seq = max_wal_seq.max(self.load_flushed()?);
        }
        self.next_segment.store(max_seq + 1, Ordering::Release);
        self.replay_wal(&mut report)?;
        let wal_files = wal::list_files(&files::wal_dir(&self.data))?;
        max_wal_seq = max_wal_seq.max(wal_files.last().map(|(s, _)| *s).unwrap_or(0));
        let ing = &self.cfg.ingester;
        let w = Wal::open(
            &self.data,
            ing.wal.fsync,
            ing.wal.fsync_interval,
            ing.wal.segment_size,
            max_wal_seq,
        )?;
        let _ = self.wal.set(w);
        report.took = started.elapsed();
        self.ready.store(true, Ordering::Release);
        Ok(report)
    }

    fn replay_wal(&self, report: &mut RecoveryReport) -> std::io::Result<()> {
        let ing = &self.cfg.ingester;
        let files = wal::list_files(&files::wal_dir(&self.data))?;
        let last = files.len().saturating_sub(1);
        let sealer = Sealer::start(ing.zstd_level);
        for (i, (seq, path)) in files.iter().enumerate() {
            let file = std::fs::File::open(path)?;
            // SAFETY: WAL files being replayed are not written by anyone (the writer starts a
            // new file after replay), and every read below is bounds-checked.
            let data = unsafe { memmap2::Mmap::map(&file)? };
            let _ = data.advise(memmap2::Advice::Sequential);
            let recs = wal::read_records(path, &data);
            for p in &recs.problems {
                let msg = match p {
                    wal::WalProblem::Torn { file, offset } => {
                        tracing::warn!(file = %file.display(), offset, "wal ends in a torn record; cut off");
                        format!("torn record in {} at offset {offset}", file.display())
                    }
                    wal::WalProblem::Corrupt {
                        file,
                        offset,
                        reason,
                    } => {
                        tracing::error!(file = %file.display(), offset, reason, "wal damaged; the rest of the file is kept");
                        self.metrics.inc("sawmill_wal_corruptions_total", &[], 1);
                        format!(
                            "corrupt record in {} at offset {offset}: {reason}",
                            file.display()
                        )
                    }
                };
                report.wal_problems.push(msg);
            }
            // A torn tail of the last file is cut off (after reading, never under the map's reads).
            let cut_to =
                (i == last && recs.valid_end > 0 && (recs.valid_end as usize) < data.len())
                    .then_some(recs.valid_end);
            for (offset, payload) in recs.records {
                let pos = WalPos { seq: *seq, offset };
                let rec = match wal::view_entries(payload) {
                    Ok(r) => r,
                    Err(e) => {
                        report.wal_problems.push(format!(
                            "undecodable record in {} at offset {offset}: {e}",
                            path.display()
                        ));
                        continue;
                    }
                };
                report.wal_records += 1;
                let tenant = self.tenant(rec.tenant);
                let mut head = tenant.head.lock();
                for (labels_text, entries) in &rec.streams {
                    let Ok(labels) = crate::labels::Labels::parse(labels_text) else {
                        report.wal_problems.push(format!(
                            "bad labels in {} at offset {offset}",
                            path.display()
                        ));
                        continue;
                    };
                    let flushed = head.known.get(&labels).map(|k| k.1).unwrap_or_default();
                    if pos <= flushed {
                        continue;
                    }
                    if !head.streams.contains_key(&labels) {
                        let (newest, fp) = head
                            .known
                            .get(&labels)
                            .copied()
                            .unwrap_or((i64::MIN, WalPos::default()));
                        head.streams.insert(
                            labels.clone(),
                            crate::storage::head::StreamHead::new(labels.clone(), newest, fp),
                        );
                    }
                    let st = head
                        .streams
                        .get_mut(&labels)
                        .expect("bug: stream just inserted");
                    for e in entries {
                        st.append_unchecked(e.ts, e.line, &e.metadata);
                    }
                    report.wal_entries += entries.len();
                    st.logged_at(pos);
                    let mut out = Vec::new();
                    st.maybe_cut(ing.chunk_block_size, ing.chunk_target_size, &mut out);
                    for s in out {
                        sealer.submit(s);
                    }
                }
            }
            drop(data);
            if let Some(len) = cut_to {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
                    let _ = f.set_len(len);
                }
            }
        }
        sealer.finish();
        Ok(())
    }

    /// The tenant, created on first use.
    pub fn tenant(&self, name: &str) -> Arc<Tenant> {
        if let Some(t) = self.tenants.read().get(name) {
            return t.clone();
        }
        self.tenants
            .write()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Tenant {
                    name: name.to_string(),
                    head: Mutex::new(TenantHead::default()),
                    segments: RwLock::new(Vec::new()),
                    deletes: Mutex::new(DeleteRequests::empty(&files::deletes_file(
                        &self.data, name,
                    ))),
                    drops: RwLock::new(Arc::new(Drops::new(&self.limits_for(name), &[]))),
                })
            })
            .clone()
    }

    pub fn existing_tenant(&self, name: &str) -> Option<Arc<Tenant>> {
        self.tenants.read().get(name).cloned()
    }

    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.tenants.read().values().cloned().collect()
    }

    /// Logs and applies validated streams. Blocking: call from a blocking thread.
    pub fn push(&self, tenant_id: &str, mut v: Validated) -> Result<PushOutcome, PushError> {
        if !self.is_ready() {
            return Err(PushError::NotReady);
        }
        let Some(wal) = self.wal.get() else {
            return Err(PushError::NotReady);
        };
        let limits = self.limits_for(tenant_id);
        let bytes = v.accepted_bytes();
        let mut rejections = v.rejections;
        let total: usize = v.streams.iter().map(|s| s.entries.len()).sum();
        if total == 0 {
            return Ok(PushOutcome {
                wal_written: None,
                rejections,
            });
        }
        if let Some(msg) = self.disk_short() {
            self.metrics
                .inc("sawmill_push_disk_short_total", &[("tenant", tenant_id)], 1);
            return Err(PushError::DiskShort(msg));
        }
        if !self.rate.allow(tenant_id, bytes, &limits) {
            self.metrics.inc(
                "sawmill_discarded_samples_total",
                &[("reason", RATE_LIMITED), ("tenant", tenant_id)],
                total as u64,
            );
            self.metrics.inc(
                "sawmill_discarded_bytes_total",
                &[("reason", RATE_LIMITED), ("tenant", tenant_id)],
                bytes as u64,
            );
            return Err(PushError::RateLimited(rate_limited_message(
                tenant_id, &limits, total, bytes,
            )));
        }
        rejections.extend(self.stream_rate.apply(tenant_id, &mut v.streams, &limits));
        let total: usize = v.streams.iter().map(|s| s.entries.len()).sum();
        if total == 0 {
            self.count_rejections(tenant_id, &rejections);
            return Ok(PushOutcome {
                wal_written: None,
                rejections,
            });
        }
        let mut payload = wal::framed_buffer(bytes + total * 16 + 256);
        let texts: Vec<String> = v.streams.iter().map(|s| s.labels.to_string()).collect();
        wal::encode_entries(
            tenant_id,
            v.streams
                .iter()
                .zip(&texts)
                .map(|(s, t)| (t.as_str(), s.entries.iter())),
            &mut payload,
        );
        let ing = &self.cfg.ingester;
        let tenant = self.tenant(tenant_id);
        let mut head = tenant.head.lock();
        let applied = head.apply(
            &v.streams,
            limits.out_of_order_time_window,
            limits.max_global_streams_per_user,
        );
        let accepted: usize = applied.accepted.iter().map(|(_, i)| i.len()).sum();
        rejections.extend(applied.rejections.iter().cloned());
        if accepted == 0 {
            head.rollback(applied);
            drop(head);
            self.count_rejections(tenant_id, &rejections);
            return Ok(PushOutcome {
                wal_written: None,
                rejections,
            });
        }
        if !applied.all_accepted(total) {
            wal::reset_framed(&mut payload);
            let by_labels: HashMap<&crate::labels::Labels, (&str, &[crate::model::Entry])> = v
                .streams
                .iter()
                .zip(&texts)
                .map(|(s, t)| (&s.labels, (t.as_str(), &s.entries[..])))
                .collect();
            let parts: Vec<(&str, Vec<&crate::model::Entry>)> = applied
                .accepted
                .iter()
                .filter(|(_, idx)| !idx.is_empty())
                .map(|(l, idx)| {
                    let (t, entries) = by_labels[l];
                    (t, idx.iter().map(|i| &entries[*i]).collect())
                })
                .collect();
            wal::encode_entries(
                tenant_id,
                parts.iter().map(|(t, e)| (*t, e.iter().copied())),
                &mut payload,
            );
        }
        let (pos, written) = match wal.append_framed(&mut payload) {
            Ok(r) => r,
            Err(e) => {
                head.rollback(applied);
                self.metrics.inc("sawmill_wal_write_failures_total", &[], 1);
                return Err(e.into());
            }
        };
        let to_seal = head.commit(&applied, pos, ing.chunk_block_size, ing.chunk_target_size);
        drop(head);
        self.tails.publish(tenant_id, &v.streams, &applied.accepted);
        let skipped = self
            .patterns
            .observe(tenant_id, &v.streams, &applied.accepted);
        if skipped > 0 {
            self.metrics.inc(
                "sawmill_pattern_lines_dropped_total",
                &[("tenant", tenant_id)],
                skipped,
            );
        }
        for slot in to_seal {
            slot.seal(ing.zstd_level);
        }
        self.metrics.inc(
            "sawmill_distributor_lines_received_total",
            &[("tenant", tenant_id)],
            accepted as u64,
        );
        let accepted_bytes: usize = v
            .streams
            .iter()
            .map(|s| s.entries.iter().map(|e| e.size()).sum::<usize>())
            .sum::<usize>();
        self.metrics.inc(
            "sawmill_distributor_bytes_received_total",
            &[("tenant", tenant_id)],
            accepted_bytes as u64,
        );
        self.count_rejections(tenant_id, &rejections);
        Ok(PushOutcome {
            wal_written: Some(written),
            rejections,
        })
    }

    fn count_rejections(&self, tenant: &str, rejections: &[Rejection]) {
        for r in rejections {
            if r.lines > 0 {
                self.metrics.inc(
                    "sawmill_discarded_samples_total",
                    &[("reason", r.reason), ("tenant", tenant)],
                    r.lines as u64,
                );
                self.metrics.inc(
                    "sawmill_discarded_bytes_total",
                    &[("reason", r.reason), ("tenant", tenant)],
                    r.bytes as u64,
                );
            }
        }
    }

    /// Cuts due chunks (all of them with `force`), writes them to segments and deletes WAL
    /// files that nothing in memory needs any more.
    pub fn flush(&self, force: bool) -> Result<usize, SegmentError> {
        let _one_at_a_time = self.flush_lock.lock();
        let Some(wal) = self.wal.get() else {
            return Ok(0);
        };
        let ing = &self.cfg.ingester;
        let pressure = ing.wal.max_size > 0 && wal.disk_bytes() > ing.wal.max_size;
        let now = Instant::now();
        let mut written = 0;
        for tenant in self.tenants() {
            let (taken, to_seal) = {
                let mut head = tenant.head.lock();
                let mut to_seal = Vec::new();
                let mut taken: Vec<(SegmentStream, Vec<Arc<CutChunk>>)> = Vec::new();
                for st in head.streams.values_mut() {
                    if force
                        || pressure
                        || st.chunk_due(now, ing.max_chunk_age, ing.chunk_idle_period)
                    {
                        st.cut_chunk(&mut to_seal);
                    }
                    if st.cut.is_empty() {
                        continue;
                    }
                    let chunks = st.cut.clone();
                    let through = chunks.last().map(|c| c.through_pos).unwrap_or_default();
                    taken.push((
                        SegmentStream {
                            fingerprint: st.labels.fingerprint(),
                            labels: st.labels.clone(),
                            max_ts: st.newest_ts,
                            flushed_pos: through,
                        },
                        chunks,
                    ));
                }
                (taken, to_seal)
            };
            for s in to_seal {
                s.seal(ing.zstd_level);
            }
            if taken.is_empty() {
                continue;
            }
            let started = Instant::now();
            let reader = self.write_segment(&tenant.name, &taken)?;
            let bytes = reader.file_len();
            {
                let mut head = tenant.head.lock();
                let mut segs = tenant.segments.write();
                for (s, chunks) in &taken {
                    if let Some(st) = head.streams.get_mut(&s.labels) {
                        st.cut.drain(..chunks.len());
                        st.flushed_pos = s.flushed_pos;
                    }
                    head.remember(s);
                }
                // Streams without data leave memory; `known` keeps their newest timestamp.
                head.streams.retain(|_, st| st.has_data());
                segs.push(Arc::new(reader));
            }
            written += 1;
            self.metrics.inc(
                "sawmill_segments_written_total",
                &[("tenant", &tenant.name)],
                1,
            );
            self.metrics.inc(
                "sawmill_segment_bytes_written_total",
                &[("tenant", &tenant.name)],
                bytes,
            );
            self.metrics.observe(
                "sawmill_flush_duration_seconds",
                &[],
                started.elapsed().as_secs_f64(),
            );
        }
        if self.remote().is_some() && written > 0 {
            self.save_flushed().map_err(|source| SegmentError::Io {
                path: files::flushed_file(&self.data),
                source,
            })?;
        }
        self.truncate_wal(wal).map_err(|source| SegmentError::Io {
            path: wal.dir().to_path_buf(),
            source,
        })?;
        Ok(written)
    }

    fn write_segment(
        &self,
        tenant: &str,
        taken: &[(SegmentStream, Vec<Arc<CutChunk>>)],
    ) -> Result<SegmentReader, SegmentError> {
        let dir = self.new_segment_dir(tenant);
        std::fs::create_dir_all(&dir).map_err(|source| SegmentError::Io {
            path: dir.clone(),
            source,
        })?;
        let seq = self.allocate_segment_seq();
        let path = files::segment_file(&dir, seq);
        let mut w = SegmentWriter::create(&path)?;
        let mut buf = Vec::new();
        let level = self.cfg.ingester.zstd_level;
        let res = (|| {
            for (s, chunks) in taken {
                let idx = w.add_stream(s.clone());
                for c in chunks {
                    let blocks: Vec<_> = c.blocks.iter().map(|b| b.seal(level)).collect();
                    buf.clear();
                    encode_chunk(blocks.iter().map(|b| &**b), &mut buf);
                    w.add_chunk(idx, &buf, c.min_ts, c.max_ts, c.n_entries, c.raw_bytes)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            w.abort();
            return Err(e);
        }
        w.finish(&path)?;
        self.publish_segment(tenant, &path, seq, &[])
    }

    fn truncate_wal(&self, wal: &Wal) -> std::io::Result<()> {
        // Read the current file first: anything logged after this lands in it or a later one.
        let current = wal.current_seq();
        let mut min: Option<WalPos> = None;
        for tenant in self.tenants() {
            let head = tenant.head.lock();
            for st in head.streams.values() {
                if let Some(p) = st.first_unflushed_pos() {
                    min = Some(min.map_or(p, |m| m.min(p)));
                }
            }
        }
        let keep_from = min.map_or(current, |m| m.seq.min(current));
        let removed = wal.remove_before(keep_from)?;
        if removed > 0 {
            self.metrics
                .inc("sawmill_wal_files_removed_total", &[], removed as u64);
        }
        Ok(())
    }

    /// Flushes everything and syncs the WAL: a clean stop leaves nothing to replay.
    pub fn shutdown(&self) {
        if !self.is_ready() {
            return;
        }
        if let Err(e) = self.flush(true) {
            tracing::error!(error = %e, "final flush failed; the WAL keeps the data");
        }
        if let Some(w) = self.wal.get() {
            // Everything is in segments now: start a fresh WAL file and drop the old ones.
            if w.cut().is_ok() {
                let _ = self.truncate_wal(w);
            }
            let _ = w.sync_now();
        }
    }

    /// Starts the periodic flusher on a dedicated thread.
    pub fn start_flusher(self: &Arc<Self>) {
        let store = Arc::downgrade(self);
        let period = self.cfg.ingester.flush_check_period;
        std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || loop {
                std::thread::sleep(period.min(Duration::from_millis(250)));
                let Some(s) = store.upgrade() else { return };
                s.seal_idle_blocks();
                if !s.flush_due(period) {
                    continue;
                }
                if let Err(e) = s.flush(false) {
                    tracing::error!(error = %e, "flush failed; will retry");
                    s.metrics.inc("sawmill_flush_failures_total", &[], 1);
                }
            })
            .expect("bug: cannot spawn flusher thread");
    }

    /// Seals the open blocks of streams idle for a second that hold at least an eighth of
    /// a block (see `StreamHead::seal_if_idle`).
    fn seal_idle_blocks(&self) {
        let ing = &self.cfg.ingester;
        let now = Instant::now();
        for tenant in self.tenants() {
            let mut to_seal = Vec::new();
            for st in tenant.head.lock().streams.values_mut() {
                st.seal_if_idle(now, IDLE_SEAL, ing.chunk_block_size / 8, &mut to_seal);
            }
            for s in to_seal {
                s.seal(ing.zstd_level);
            }
        }
    }

    fn flush_due(&self, period: Duration) -> bool {
        let mut last = self.last_flush.lock();
        let now = Instant::now();
        let wal_pressure = self.wal.get().is_some_and(|w| {
            let max = self.cfg.ingester.wal.max_size;
            max > 0 && w.disk_bytes() > max
        });
        let any_cut = self
            .tenants()
            .iter()
            .any(|t| t.head.lock().streams.values().any(|s| !s.cut.is_empty()));
        if wal_pressure || any_cut || last.is_none_or(|l| now.duration_since(l) >= period) {
            *last = Some(now);
            return true;
        }
        false
    }

    /// Sizes for `/metrics`.
    pub fn gauges(&self) -> Vec<crate::telemetry::Gauge> {
        let mut out = Vec::new();
        for t in self.tenants() {
            // A copy of the list, not the lock: the flusher takes the head lock and then
            // the segments' write lock, so holding the segments while taking the head below
            // would deadlock with it.
            let segs = t.segments.read().clone();
            let bytes: u64 = segs.iter().map(|s| s.file_len()).sum();
            let tl = vec![("tenant".to_string(), t.name.clone())];
            out.push((
                "sawmill_segment_bytes".to_string(),
                tl.clone(),
                bytes as f64,
            ));
            out.push((
                "sawmill_segments".to_string(),
                tl.clone(),
                segs.len() as f64,
            ));
            let indexes: Vec<_> = segs.iter().filter_map(|s| s.search.get()).collect();
            out.push((
                "sawmill_index_segments".to_string(),
                tl.clone(),
                indexes.len() as f64,
            ));
            out.push((
                "sawmill_index_bytes".to_string(),
                tl.clone(),
                indexes.iter().map(|i| i.bytes).sum::<u64>() as f64,
            ));
            let head = t.head.lock();
            out.push((
                "sawmill_ingester_memory_streams".to_string(),
                tl.clone(),
                head.streams.len() as f64,
            ));
            let head_bytes: usize = head.streams.values().map(|s| s.open.size()).sum();
            out.push((
                "sawmill_head_open_bytes".to_string(),
                tl.clone(),
                head_bytes as f64,
            ));
            let in_memory: usize = head.streams.values().map(|s| s.memory_bytes()).sum();
            out.push(("sawmill_head_bytes".to_string(), tl, in_memory as f64));
        }
        if let Some(r) = self.remote() {
            // The cache counts its own hits and misses; they reach the counters here, just
            // before each render.
            let (hits, misses) = r.cache.counts();
            let mut shown = r.cache_counts_shown.lock();
            self.metrics
                .inc("sawmill_bucket_cache_hits_total", &[], hits - shown.0);
            self.metrics
                .inc("sawmill_bucket_cache_misses_total", &[], misses - shown.1);
            *shown = (hits, misses);
            out.push((
                "sawmill_bucket_cache_bytes".to_string(),
                vec![],
                r.cache.bytes() as f64,
            ));
        }
        if self.patterns.enabled() {
            let (streams, bytes) = self.patterns.usage();
            out.push((
                "sawmill_pattern_streams".to_string(),
                vec![],
                streams as f64,
            ));
            out.push(("sawmill_pattern_bytes".to_string(), vec![], bytes as f64));
        }
        if let Some(w) = self.wal.get() {
            out.push((
                "sawmill_wal_bytes".to_string(),
                vec![],
                w.disk_bytes() as f64,
            ));
        }
        out
    }
}

/// Compresses sealed blocks on a small pool (used by WAL replay).
struct Sealer {
    tx: Option<crossbeam::channel::Sender<Arc<BlockSlot>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Sealer {
    fn start(level: i32) -> Sealer {
        let (tx, rx) = crossbeam::channel::bounded::<Arc<BlockSlot>>(64);
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let workers = (0..n)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || {
                    for slot in rx {
                        slot.seal(level);
                    }
                })
            })
            .collect();
        Sealer {
            tx: Some(tx),
            workers,
        }
    }
    fn submit(&self, slot: Arc<BlockSlot>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(slot);
        }
    }
    fn finish(mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
