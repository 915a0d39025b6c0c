//! The read cache: byte ranges of bucket objects (segment footers and chunks) kept on local
//! disk, one file per range, the least recently used removed first once the total passes
//! `storage.cache_size`. A query reads a chunk from here, or fetches that chunk alone with a
//! ranged GET and leaves it here. Everything in it can be fetched again, so it is never
//! fsynced, and a file that cannot be read is dropped and fetched again.
//!
//! ```text
//! <data>/cache/<xxh3-128 of "key@start-end", 32 hex digits>     the bytes of that range
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

pub struct ReadCache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct State {
    /// name → (size, last use).
    entries: HashMap<String, (u64, u64)>,
    /// last use → name, oldest first.
    by_use: BTreeMap<u64, String>,
    bytes: u64,
    clock: u64,
}

impl State {
    fn touch(&mut self, name: &str) {
        self.clock += 1;
        let clock = self.clock;
        if let Some((_, used)) = self.entries.get_mut(name) {
            self.by_use.remove(used);
            *used = clock;
            self.by_use.insert(clock, name.to_string());
        }
    }

    fn add(&mut self, name: String, size: u64) {
        self.remove(&name);
        self.clock += 1;
        self.entries.insert(name.clone(), (size, self.clock));
        self.by_use.insert(self.clock, name);
        self.bytes += size;
    }

    fn remove(&mut self, name: &str) -> bool {
        match self.entries.remove(name) {
            Some((size, used)) => {
                self.by_use.remove(&used);
                self.bytes -= size;
                true
            }
            None => false,
        }
    }

    /// Names to delete so that the total fits `limit`, oldest use first.
    fn evict(&mut self, limit: u64) -> Vec<String> {
        let mut out = Vec::new();
        while self.bytes > limit {
            let Some((_, name)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((size, _)) = self.entries.remove(&name) {
                self.bytes -= size;
            }
            out.push(name);
        }
        out
    }
}

/// The cache file name of `range` of object `key`.
pub fn range_name(key: &str, range: &Range<u64>) -> String {
    let id = format!("{key}@{}-{}", range.start, range.end);
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes()))
}

impl ReadCache {
    /// Opens the cache in `dir`, taking in what a previous run left there (by age).
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<ReadCache> {
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata()?;
            if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                // A write cut short (`.tmp`) or a stranger: not ours to keep.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let used = meta.modified().ok();
            found.push((used, name, meta.len()));
        }
        found.sort();
        let mut state = State::default();
        for (_, name, size) in found {
            state.add(name, size);
        }
        let cache = ReadCache {
            dir: dir.to_path_buf(),
            limit,
            state: Mutex::new(state),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        };
        let gone = cache.state.lock().evict(limit);
        cache.delete(&gone);
        Ok(cache)
    }

    /// The cached bytes of `name`, counted as a hit or a miss.
    pub fn get(&self, name: &str) -> Option<Bytes> {
        let known = self.state.lock().entries.contains_key(name);
        if known {
            match std::fs::read(self.dir.join(name)) {
                Ok(data) => {
                    self.state.lock().touch(name);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Some(Bytes::from(data));
                }
                Err(e) => {
                    tracing::warn!(file = name, error = %e, "read cache file unreadable; fetching again");
                    self.state.lock().remove(name);
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Keeps `data` as `name`, then removes the least recently used past the limit.
    pub fn insert(&self, name: &str, data: &[u8]) {
        if data.len() as u64 > self.limit {
            return;
        }
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let written = std::fs::write(&tmp, data).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write to the read cache");
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let gone = {
            let mut st = self.state.lock();
            st.add(name.to_string(), data.len() as u64);
            st.evict(self.limit)
        };
        self.delete(&gone);
    }

    /// The cached bytes of `name`, or `fetch`'s, which are then kept.
    pub fn get_or_fetch<E>(
        &self,
        name: &str,
        fetch: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if let Some(b) = self.get(name) {
            return Ok(b);
        }
        let b = fetch()?;
        self.insert(name, &b);
        Ok(b)
    }

    fn delete(&self, names: &[String]) {
        for n in names {
            let _ = std::fs::remove_file(self.dir.join(n));
        }
    }

    pub fn bytes(&self) -> u64 {
        self.state.lock().bytes
    }

    /// (hits, misses) since start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let c = ReadCache::open(dir.path(), 25).unwrap();
        c.insert("a", &[1; 10]);
        c.insert("b", &[2; 10]);
        assert_eq!(c.get("a").as_deref(), Some(&[1u8; 10][..]));
        c.insert("c", &[3; 10]);
        // 30 bytes > 25: "b", used least recently, went.
        assert!(c.get("b").is_none());
        assert!(!dir.path().join("b").exists());
        assert!(c.get("a").is_some() && c.get("c").is_some());
        assert_eq!(c.bytes(), 20);
        assert_eq!(c.counts(), (3, 1));
        // Too big to keep at all.
        c.insert("d", &[4; 30]);
        assert!(c.get("d").is_none());
    }

    #[test]
    fn reopening_keeps_what_fits_and_fetch_fills() {
        let dir = tempfile::tempdir().unwrap();
        let key = range_name("tenants/x/segments/1.seg", &(0..10));
        {
            let c = ReadCache::open(dir.path(), 100).unwrap();
            c.insert(&key, b"0123456789");
        }
        std::fs::write(dir.path().join("junk.tmp"), b"x").unwrap();
        let c = ReadCache::open(dir.path(), 100).unwrap();
        assert!(!dir.path().join("junk.tmp").exists());
        let got: Result<Bytes, ()> = c.get_or_fetch(&key, || panic!("cached"));
        assert_eq!(&got.unwrap()[..], b"0123456789");
        let other = range_name("tenants/x/segments/1.seg", &(10..20));
        let got: Result<Bytes, ()> = c.get_or_fetch(&other, || Ok(Bytes::from_static(b"abc")));
        assert_eq!(&got.unwrap()[..], b"abc");
        assert!(c.get(&other).is_some());
    }
}
