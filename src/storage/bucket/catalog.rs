//! The catalog: which segments of a tenant are live, kept in the bucket itself, so that
//! several nodes sharing a bucket need nothing else to agree on it.
//!
//! Each change writes the whole list as a new generation, `catalog/<generation>.json`, with a
//! conditional write that succeeds only if that generation does not exist yet
//! (`If-None-Match: *`). Two writers that start from the same generation both try to create
//! the next one; one wins, the other reads the winner's list, applies its change again and
//! tries the generation after. So no writer ever loses another's segments, and a change that
//! adds and removes segments (compaction) becomes visible all at once or not at all.
//!
//! ```text
//! catalog/<generation, 20 digits>.json := {"generation": n, "segments": [
//!     {"seq": u64, "bytes": u64, "min_ts": i64, "max_ts": i64, "writer": "<instance id>"}, ...]}
//! ```
//!
//! Readers list `catalog/` and read the highest generation. The last [`KEEP`] generations are
//! kept, so that a reader that listed just before a commit still finds the one it listed.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::bucket::{tenant_prefix, Bucket, BucketError};

/// Generations kept behind the newest.
pub const KEEP: u64 = 8;
/// Attempts of one change against writers that keep winning (each is one generation).
const ATTEMPTS: usize = 64;

/// A live segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    /// The `common.ring.instance_id` of the node that wrote it.
    pub writer: String,
}

/// One generation of a tenant's catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub generation: u64,
    pub segments: Vec<Entry>,
}

fn catalog_prefix(tenant: &str) -> String {
    format!("{}/catalog", tenant_prefix(tenant))
}

fn generation_key(tenant: &str, generation: u64) -> String {
    format!("{}/{generation:020}.json", catalog_prefix(tenant))
}

fn generation_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

fn corrupt(key: &str, e: impl std::fmt::Display) -> BucketError {
    BucketError::Config(format!("catalog {key} is not readable: {e}"))
}

/// The tenant's newest generation (generation 0, empty, when it has none).
pub fn latest(bucket: &Bucket, tenant: &str) -> Result<Listing, BucketError> {
    // A generation listed but gone by the time it is read was removed behind newer ones:
    // list again.
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        let generations: Vec<u64> = bucket
            .list(&catalog_prefix(tenant))?
            .iter()
            .filter_map(|(k, _)| generation_of(k))
            .collect();
        let Some(newest) = generations.into_iter().max() else {
            return Ok(Listing::default());
        };
        let key = generation_key(tenant, newest);
        match bucket.get(&key) {
            Ok(bytes) => {
                let listing: Listing =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(&key, e))?;
                if listing.generation != newest {
                    return Err(corrupt(&key, "its generation differs from its name"));
                }
                return Ok(listing);
            }
            Err(e) if Bucket::is_not_found(&e) => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.expect("bug: no attempt made"))
}

/// Applies `change` to the newest list and commits it as the next generation, again on top
/// of whatever another writer committed first. Returns the committed generation.
pub fn commit(
    bucket: &Bucket,
    tenant: &str,
    mut change: impl FnMut(&mut Vec<Entry>),
) -> Result<Listing, BucketError> {
    for _ in 0..ATTEMPTS {
        let mut listing = latest(bucket, tenant)?;
        change(&mut listing.segments);
        listing.segments.sort_by_key(|e| e.seq);
        listing.generation += 1;
        let key = generation_key(tenant, listing.generation);
        let body = serde_json::to_vec(&listing).expect("bug: a listing always serializes");
        if bucket.put_if_absent(&key, Bytes::from(body))? {
            forget_old(bucket, tenant, listing.generation);
            return Ok(listing);
        }
        tracing::debug!(
            tenant,
            generation = listing.generation,
            "catalog generation taken; retrying"
        );
    }
    Err(BucketError::Config(format!(
        "catalog of tenant {tenant}: {ATTEMPTS} attempts lost to other writers"
    )))
}

/// Deletes the generations more than [`KEEP`] behind `newest` (best effort: a leftover is
/// deleted by a later commit).
fn forget_old(bucket: &Bucket, tenant: &str, newest: u64) {
    let Ok(keys) = bucket.list(&catalog_prefix(tenant)) else {
        return;
    };
    for (key, _) in keys {
        if generation_of(&key).is_some_and(|g| g + KEEP < newest) {
            let _ = bucket.delete(&key);
        }
    }
}

/// The tenants that have a catalog in the bucket.
pub fn tenants(bucket: &Bucket) -> Result<Vec<String>, BucketError> {
    let mut out: Vec<String> = bucket
        .list("tenants")?
        .iter()
        .filter_map(|(k, _)| {
            let mut parts = k.split('/');
            let (_, dir, kind) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "catalog").then(|| crate::model::tenant::tenant_from_dir_name(dir))?
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::bucket::tests::memory;

    fn entry(seq: u64, writer: &str) -> Entry {
        Entry {
            seq,
            bytes: 100 + seq,
            min_ts: seq as i64,
            max_ts: seq as i64 + 10,
            writer: writer.into(),
        }
    }

    #[test]
    fn commits_add_and_remove_in_one_generation() {
        let b = memory();
        assert_eq!(latest(&b, "t").unwrap(), Listing::default());
        commit(&b, "t", |s| s.push(entry(2, "a"))).unwrap();
        commit(&b, "t", |s| s.push(entry(1, "b"))).unwrap();
        let l = commit(&b, "t", |s| {
            s.retain(|e| e.seq != 2);
            s.push(entry(3, "a"));
        })
        .unwrap();
        assert_eq!(l.generation, 3);
        assert_eq!(latest(&b, "t").unwrap(), l);
        let seqs: Vec<u64> = l.segments.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        assert_eq!(tenants(&b).unwrap(), vec!["t".to_string()]);
        assert!(latest(&b, "other").unwrap().segments.is_empty());
    }

    #[test]
    fn racing_writers_lose_nothing() {
        let b = std::sync::Arc::new(memory());
        let threads: Vec<_> = (0..4u64)
            .map(|w| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..10u64 {
                        commit(&b, "t", |s| s.push(entry(w * 100 + i, &format!("w{w}")))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let l = latest(&b, "t").unwrap();
        assert_eq!(l.generation, 40);
        assert_eq!(l.segments.len(), 40);
        // Only the newest KEEP + 1 generations remain.
        let kept = b.list(&catalog_prefix("t")).unwrap().len() as u64;
        assert!(kept <= KEEP + 1, "{kept} generations kept");
    }

    #[test]
    fn a_damaged_generation_is_an_error_not_an_empty_list() {
        let b = memory();
        commit(&b, "t", |s| s.push(entry(1, "a"))).unwrap();
        b.put(&generation_key("t", 2), Bytes::from_static(b"{not json"))
            .unwrap();
        let e = latest(&b, "t").unwrap_err().to_string();
        assert!(e.contains("not readable"), "{e}");
    }
}
