//! The indexer thread: gives every segment its search index (`index`). After each flush and
//! compaction the new segments have none; at start no segment has one attached. The thread
//! opens the index on disk when there is one and it checks out, and builds it otherwise
//! (missing, damaged, or made with other `index` settings). Queries read every block of a
//! segment until its index is attached, so the index only ever makes them faster.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pipeline::fields::field_names;
use crate::storage::files::index_dir;
use crate::storage::index::{builder, IndexError, SegmentIndex};
use crate::storage::segment::SegmentReader;
use crate::storage::store::Store;

/// The indexer's nice value: under full load ingest comes first and the index catches up
/// when the load drops (queries read whole segments meanwhile).
const NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux: per thread).
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread, no memory involved.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, NICE);
    }
}

/// A segment whose index could not be built is tried again after this long.
/// The segment version whose blocks all have filter sections.
const FILTERED_SEGMENTS: u8 = 4;

const RETRY_AFTER: Duration = Duration::from_secs(600);

impl Store {
    /// Opens the segment's index, or builds it.
    pub fn index_segment(&self, seg: &SegmentReader) -> Result<SegmentIndex, IndexError> {
        let cfg = &self.cfg.index;
        let dir = index_dir(seg.path());
        let wanted = field_names(&cfg.fields);
        let tokens = cfg.tokens && seg.version < FILTERED_SEGMENTS;
        if dir.exists() {
            match SegmentIndex::open(&dir, seg.chunks.len() + seg.hidden_chunks) {
                Ok(i) if i.meta.tokens == tokens && i.meta.fields == wanted => return Ok(i),
                Ok(_) => {
                    tracing::info!(index = %dir.display(), "index settings changed; rebuilding")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rebuilding a damaged index");
                    self.metrics.inc("sawmill_index_damaged_total", &[], 1);
                }
            }
        }
        let started = Instant::now();
        let built = builder::build(seg, &dir, &cfg.fields, tokens)?;
        self.metrics.inc("sawmill_index_builds_total", &[], 1);
        self.metrics.observe(
            "sawmill_index_build_duration_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        Ok(built)
    }

    /// Attaches an index to every segment that has none, until the store is dropped.
    pub fn start_indexer(self: &Arc<Self>) {
        if !self.cfg.index.enabled {
            return;
        }
        let store = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("indexer".into())
            .spawn(move || {
                lower_priority();
                let mut failed: HashMap<PathBuf, Instant> = HashMap::new();
                let mut unneeded: HashSet<PathBuf> = HashSet::new();
                loop {
                    let Some(s) = store.upgrade() else { return };
                    let did = s.index_pass(&mut failed, &mut unneeded);
                    drop(s);
                    if !did {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            })
            .expect("bug: cannot spawn indexer thread");
    }

    /// Indexes one segment that needs it; false when none does.
    /// Whether a segment gets a search index: one of the formats before filter sections
    /// does, one whose blocks all have filters (segment version 4) only with
    /// `index.filtered_segments`. Decided from the header: reading every block to find out
    /// would map the whole file into memory.
    pub fn needs_index(&self, seg: &SegmentReader) -> bool {
        self.cfg.index.filtered_segments || seg.version < FILTERED_SEGMENTS
    }

    /// Builds or opens the index of one segment that lacks it; `unneeded` remembers the
    /// segments that need none. True when it did some work.
    fn index_pass(
        &self,
        failed: &mut HashMap<PathBuf, Instant>,
        unneeded: &mut HashSet<PathBuf>,
    ) -> bool {
        if unneeded.len() > 100_000 {
            // Paths of segments long gone; the live ones are checked again.
            unneeded.clear();
        }
        for t in self.tenants() {
            let segs = t.segments.read().clone();
            for seg in segs {
                if seg.search.get().is_some()
                    || seg.chunks.is_empty()
                    // Segments in a bucket are always filtered ones, and an index is a local
                    // directory: they are searched through their block filters.
                    || seg.remote_key().is_some()
                    || unneeded.contains(seg.path())
                    || failed
                        .get(seg.path())
                        .is_some_and(|at| at.elapsed() < RETRY_AFTER)
                {
                    continue;
                }
                if !self.needs_index(&seg) {
                    // An index left from other settings is of no use.
                    let _ = std::fs::remove_dir_all(index_dir(seg.path()));
                    unneeded.insert(seg.path().to_path_buf());
                    return true;
                }
                match self.index_segment(&seg) {
                    Ok(i) => {
                        // Compaction may have deleted the segment meanwhile: so goes its index.
                        if !seg.path().exists() {
                            let _ = std::fs::remove_dir_all(index_dir(seg.path()));
                        }
                        let _ = seg.search.set(Arc::new(i));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot index a segment; queries read all of it");
                        self.metrics.inc("sawmill_index_failures_total", &[], 1);
                        failed.insert(seg.path().to_path_buf(), Instant::now());
                    }
                }
                return true;
            }
        }
        false
    }
}
