//! The store with a bucket (`common.storage`): where its segments go and come from.
//!
//! - Flush and compaction write a segment to `<data>/upload/` as they write it to the segment
//!   directory without a bucket. [`Store::upload_segment`] then uploads it whole, lists it in
//!   the tenant's catalog (with the segments it replaces taken out, in the same generation),
//!   puts its footer and chunks in the read cache, deletes the local file and opens it from
//!   the bucket. A crash before the catalog commit leaves an object no catalog lists (removed
//!   by [`Store::sweep_unlisted`]); after it, the local file (removed at start).
//! - Start reads each tenant's catalog and opens its segments from the bucket; the WAL is
//!   replayed past the flushed positions kept in `wal/flushed.json`, written after each flush
//!   ([`Store::save_flushed`]). They live beside the WAL, not in segments, because a segment
//!   compacted together with other nodes' segments cannot say what one node's WAL holds.
//! - Segment numbers carry the node's identity in their high bits ([`seq_base`]), so that
//!   nodes sharing a bucket never pick the same number.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::storage::bucket::cache::{range_name, ReadCache};
use crate::storage::bucket::{catalog, segment_key, Bucket};
use crate::storage::files;
use crate::storage::segment::{SegmentError, SegmentReader, HEADER_LEN, TRAILER_LEN};
use crate::storage::store::Store;
use crate::storage::wal::WalPos;

/// Bits of a segment number left for the node's own counter.
const COUNTER_BITS: u32 = 40;

/// The bucket a store keeps its segments in, and this node's part in it.
pub struct Remote {
    pub bucket: Arc<Bucket>,
    pub cache: Arc<ReadCache>,
    /// `common.ring.instance_id` (or the host name).
    pub instance: String,
    /// The high bits of every segment number this node allocates.
    pub seq_base: u64,
    /// The cache's (hits, misses) already added to the metrics.
    pub cache_counts_shown: parking_lot::Mutex<(u64, u64)>,
}

/// The high bits of the segment numbers of node `instance`: 24 bits of its name's hash, never
/// 0, so that they differ from the small numbers of a store without a bucket.
pub fn seq_base(instance: &str) -> u64 {
    (xxhash_rust::xxh3::xxh3_64(instance.as_bytes()) & 0xFF_FFFF).max(1) << COUNTER_BITS
}

/// `wal/flushed.json`: tenant → stream → flushed WAL position.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Flushed {
    tenants: BTreeMap<String, Vec<(String, u64, u64)>>,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SegmentError + '_ {
    move |source| SegmentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn unavailable(key: &str) -> impl Fn(crate::storage::bucket::BucketError) -> SegmentError + '_ {
    move |e| SegmentError::Unavailable {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

impl Remote {
    /// Connects to the bucket `cfg` names (checking that it answers and the credentials
    /// work) and opens the read cache; `None` without a bucket.
    pub fn start(cfg: &crate::config::Config) -> std::io::Result<Option<Remote>> {
        let bucket = crate::storage::bucket::Bucket::from_config(&cfg.common.storage)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let Some(bucket) = bucket else {
            return Ok(None);
        };
        bucket.check().map_err(|e| {
            std::io::Error::other(format!(
                "cannot use the bucket {} (common.storage): {e}",
                bucket.name()
            ))
        })?;
        let cache = ReadCache::open(&files::cache_dir(cfg.data_dir()), cfg.storage.cache_size)?;
        let instance = cfg.common.ring.instance();
        tracing::info!(bucket = bucket.name(), instance = %instance, "segments live in a bucket");
        Ok(Some(Remote {
            bucket: Arc::new(bucket),
            cache: Arc::new(cache),
            seq_base: seq_base(&instance),
            instance,
            cache_counts_shown: Default::default(),
        }))
    }

    /// Opens segment `seq` of `tenant` from the bucket.
    pub fn open(&self, tenant: &str, seq: u64, len: u64) -> Result<SegmentReader, SegmentError> {
        SegmentReader::open_remote(
            self.bucket.clone(),
            self.cache.clone(),
            &segment_key(tenant, seq),
            seq,
            len,
        )
    }

    /// The next counter of this node's segment numbers after those listed.
    pub fn next_counter(&self, listed: impl Iterator<Item = u64>) -> u64 {
        let mask = (1u64 << COUNTER_BITS) - 1;
        listed
            .filter(|s| s & !mask == self.seq_base)
            .map(|s| (s & mask) + 1)
            .max()
            .unwrap_or(1)
    }
}

impl Store {
    /// Uploads the segment written at `path`, commits it to the catalog with the segments
    /// `replaces_whole` taken out, keeps its bytes in the read cache, deletes the local file and
    /// opens it from the bucket.
    pub(crate) fn upload_segment(
        &self,
        remote: &Remote,
        tenant: &str,
        path: &Path,
        seq: u64,
        replaces_whole: &[u64],
    ) -> Result<SegmentReader, SegmentError> {
        let local = SegmentReader::open(path)?;
        let data = std::fs::read(path).map_err(io_error(path))?;
        let key = segment_key(tenant, seq);
        let len = data.len() as u64;
        let data = bytes::Bytes::from(data);
        remote
            .bucket
            .put(&key, data.clone())
            .map_err(unavailable(&key))?;
        crate::failpoint::hit("upload-before-commit");
        let entry = catalog::Entry {
            seq,
            bytes: len,
            min_ts: local.min_ts,
            max_ts: local.max_ts,
            writer: remote.instance.clone(),
        };
        catalog::commit(&remote.bucket, tenant, |segs| {
            segs.retain(|e| e.seq != seq && !replaces_whole.contains(&e.seq));
            segs.push(entry.clone());
        })
        .map_err(unavailable(&key))?;
        // What a reader of the new segment asks for first: header, trailer, footer, chunks.
        let footer_start = local
            .chunks
            .iter()
            .map(|c| c.offset + c.len)
            .max()
            .unwrap_or(HEADER_LEN as u64);
        let mut ranges = vec![
            0..HEADER_LEN as u64,
            len - TRAILER_LEN as u64..len,
            footer_start..len - TRAILER_LEN as u64,
        ];
        ranges.extend(local.chunks.iter().map(|c| c.offset..c.offset + c.len));
        for r in ranges {
            if r.end <= len && r.start <= r.end {
                remote.cache.insert(
                    &range_name(&key, &r),
                    &data[r.start as usize..r.end as usize],
                );
            }
        }
        drop(local);
        let _ = std::fs::remove_file(path);
        remote.open(tenant, seq, len)
    }

    /// Takes segments `seqs` out of the tenant's catalog, then deletes their objects.
    pub(crate) fn forget_segments(
        &self,
        remote: &Remote,
        tenant: &str,
        seqs: &[u64],
    ) -> Result<(), SegmentError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let key = segment_key(tenant, seqs[0]);
        catalog::commit(&remote.bucket, tenant, |segs| {
            segs.retain(|e| !seqs.contains(&e.seq))
        })
        .map_err(unavailable(&key))?;
        self.delete_objects(remote, tenant, seqs);
        Ok(())
    }

    /// Deletes the objects of segments no catalog lists any more (best effort: a leftover is
    /// removed by [`Store::sweep_unlisted`]).
    pub(crate) fn delete_objects(&self, remote: &Remote, tenant: &str, seqs: &[u64]) {
        for (i, seq) in seqs.iter().enumerate() {
            if i == 1 {
                crate::failpoint::hit("compact-between-deletes");
            }
            let key = segment_key(tenant, *seq);
            if let Err(e) = remote.bucket.delete(&key) {
                tracing::warn!(key, error = %e, "cannot delete a replaced segment; a later sweep will");
            }
        }
    }

    /// Deletes the segment objects of `tenant` that its catalog does not list and that this
    /// node wrote (an upload cut short before its commit), except the one being uploaded.
    pub(crate) fn sweep_unlisted(
        &self,
        remote: &Remote,
        tenant: &str,
    ) -> Result<usize, SegmentError> {
        let prefix = format!("{}/segments", crate::storage::bucket::tenant_prefix(tenant));
        let listing = catalog::latest(&remote.bucket, tenant).map_err(unavailable(&prefix))?;
        let objects = remote.bucket.list(&prefix).map_err(unavailable(&prefix))?;
        let mask = (1u64 << COUNTER_BITS) - 1;
        let mut removed = 0;
        for (key, _) in objects {
            let Some(seq) = key.rsplit('/').next().and_then(files::segment_seq) else {
                continue;
            };
            let mine = seq & !mask == remote.seq_base;
            let listed = listing.segments.iter().any(|e| e.seq == seq);
            if mine
                && !listed
                && seq < self.next_segment_seq()
                && remote.bucket.delete(&key).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes `wal/flushed.json`: every stream's flushed WAL position that the WAL may still
    /// hold records before.
    pub(crate) fn save_flushed(&self) -> std::io::Result<()> {
        let oldest = self.wal().map_or(0, |w| w.oldest_seq());
        let mut out = Flushed::default();
        for t in self.tenants() {
            let head = t.head.lock();
            let streams: Vec<(String, u64, u64)> = head
                .known
                .iter()
                .filter(|(_, (_, pos))| pos.seq >= oldest && *pos != WalPos::default())
                .map(|(l, (_, pos))| (l.to_string(), pos.seq, pos.offset))
                .collect();
            if !streams.is_empty() {
                out.tenants.insert(t.name.clone(), streams);
            }
        }
        let path = files::flushed_file(self.data_dir());
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(&out).expect("bug: positions always serialize");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        files::sync_dir(&files::wal_dir(self.data_dir()))
    }

    /// Reads `wal/flushed.json` into the tenants' heads (before the WAL is replayed); returns
    /// the highest WAL file number it names.
    pub(crate) fn load_flushed(&self) -> std::io::Result<u64> {
        let path = files::flushed_file(self.data_dir());
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let flushed: Flushed = serde_json::from_slice(&body)
            .map_err(|e| std::io::Error::other(format!("{} is damaged: {e}", path.display())))?;
        let mut max_seq = 0;
        for (tenant, streams) in flushed.tenants {
            let t = self.tenant(&tenant);
            let mut head = t.head.lock();
            for (labels, seq, offset) in streams {
                let Ok(labels) = Labels::parse(&labels) else {
                    continue;
                };
                let k = head
                    .known
                    .entry(labels)
                    .or_insert((i64::MIN, WalPos::default()));
                k.1 = k.1.max(WalPos { seq, offset });
                max_seq = max_seq.max(seq);
            }
        }
        Ok(max_seq)
    }
}
