//! Live tail, the store's side: every push hands its accepted entries to the tails of its
//! tenant whose stream selector matches, through one bounded [`Backlog`] per tail. Pushing
//! never waits for a tail: when a backlog is full, the entry is dropped for that tail and
//! remembered (labels and timestamp) so the client is told, as Loki's `dropped_entries`.
//! The WebSocket side (pipeline, `delay_for`, frames, pings) is `http::tail`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use thiserror::Error;

use crate::ingest::{Entry, ValidStream};
use crate::labels::Labels;
use crate::logql::Matcher;

/// Entries a tail may have waiting before further ones are dropped for it.
pub const BACKLOG_ENTRIES: usize = 20_000;
/// Dropped entries remembered per frame; beyond, only counted.
pub const MAX_DROPPED_REPORTED: usize = 1000;

#[derive(Debug, Error, PartialEq)]
pub enum TailError {
    #[error("max concurrent tail requests limit exceeded, count > limit ({count} > {limit})")]
    TooMany { count: usize, limit: usize },
}

/// What a tail has not sent yet.
#[derive(Default)]
pub struct Backlog {
    pub entries: Vec<(Arc<Labels>, Entry)>,
    /// Stream labels and timestamps of entries dropped because the backlog was full.
    pub dropped: Vec<(Arc<Labels>, i64)>,
    /// Dropped entries beyond [`MAX_DROPPED_REPORTED`].
    pub dropped_unreported: u64,
}

/// One live tail: its selector, its backlog and the wake-up for its sender.
pub struct Subscriber {
    matchers: Vec<Matcher>,
    backlog: Mutex<Backlog>,
    pub wake: tokio::sync::Notify,
}

impl Subscriber {
    /// Everything waiting, leaving the backlog empty.
    pub fn take(&self) -> Backlog {
        std::mem::take(&mut *self.backlog.lock())
    }

    fn offer(&self, labels: &Arc<Labels>, entries: impl Iterator<Item = Entry>) {
        let mut b = self.backlog.lock();
        for e in entries {
            if b.entries.len() < BACKLOG_ENTRIES {
                b.entries.push((labels.clone(), e));
            } else if b.dropped.len() < MAX_DROPPED_REPORTED {
                b.dropped.push((labels.clone(), e.ts));
            } else {
                b.dropped_unreported += 1;
            }
        }
    }
}

/// The tails of every tenant.
pub struct TailHub {
    tenants: RwLock<HashMap<String, Vec<Arc<Subscriber>>>>,
    /// Tails open across tenants: the push path looks no further when it is 0.
    open: AtomicUsize,
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for TailHub {
    fn default() -> Self {
        TailHub {
            tenants: RwLock::default(),
            open: AtomicUsize::new(0),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

/// A registered tail; unregisters itself when dropped.
pub struct TailHandle {
    hub: Arc<TailHub>,
    tenant: String,
    pub subscriber: Arc<Subscriber>,
}

impl Drop for TailHandle {
    fn drop(&mut self) {
        let mut tenants = self.hub.tenants.write();
        if let Some(subs) = tenants.get_mut(&self.tenant) {
            subs.retain(|s| !Arc::ptr_eq(s, &self.subscriber));
            if subs.is_empty() {
                tenants.remove(&self.tenant);
            }
        }
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TailHub {
    /// Registers a tail for `tenant`, refused when the tenant already has `limit` open.
    pub fn register(
        self: &Arc<Self>,
        tenant: &str,
        matchers: Vec<Matcher>,
        limit: usize,
    ) -> Result<TailHandle, TailError> {
        let mut tenants = self.tenants.write();
        let subs = tenants.entry(tenant.to_string()).or_default();
        if subs.len() >= limit {
            let count = subs.len() + 1;
            if subs.is_empty() {
                tenants.remove(tenant);
            }
            return Err(TailError::TooMany { count, limit });
        }
        let subscriber = Arc::new(Subscriber {
            matchers,
            backlog: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        });
        subs.push(subscriber.clone());
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(TailHandle {
            hub: self.clone(),
            tenant: tenant.to_string(),
            subscriber,
        })
    }

    /// Tails open for a tenant.
    pub fn open_for(&self, tenant: &str) -> usize {
        self.tenants.read().get(tenant).map_or(0, Vec::len)
    }

    /// Hands accepted entries to the matching tails: `accepted` lists, per stream of
    /// `streams` (by labels), the indexes of the entries the head took.
    pub fn publish(
        &self,
        tenant: &str,
        streams: &[ValidStream],
        accepted: &[(Labels, Vec<usize>)],
    ) {
        if self.open.load(Ordering::Relaxed) == 0 {
            return;
        }
        let tenants = self.tenants.read();
        let Some(subs) = tenants.get(tenant) else {
            return;
        };
        for (labels, idx) in accepted.iter().filter(|(_, idx)| !idx.is_empty()) {
            let Some(stream) = streams.iter().find(|s| &s.labels == labels) else {
                continue;
            };
            let shared = Arc::new(labels.clone());
            for s in subs
                .iter()
                .filter(|s| crate::logql::labels_match(&s.matchers, |n| labels.get(n)))
            {
                s.offer(&shared, idx.iter().map(|&i| stream.entries[i].clone()));
                s.wake.notify_one();
            }
        }
    }

    /// Tells every tail the server is stopping.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Self::close_all`] was called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(labels: &str, lines: &[(i64, &str)]) -> ValidStream {
        ValidStream {
            labels: Labels::parse(labels).unwrap(),
            entries: lines
                .iter()
                .map(|(ts, l)| Entry {
                    ts: *ts,
                    line: l.to_string(),
                    metadata: Vec::new(),
                })
                .collect(),
        }
    }

    fn selector(s: &str) -> Vec<Matcher> {
        match crate::logql::parse_expr(s).unwrap() {
            crate::logql::Expr::Log(l) => l.selector.matchers,
            _ => unreachable!(),
        }
    }

    #[test]
    fn matching_tails_get_accepted_entries_only() {
        let hub = Arc::new(TailHub::default());
        let api = hub.register("t", selector(r#"{app="api"}"#), 10).unwrap();
        let web = hub.register("t", selector(r#"{app="web"}"#), 10).unwrap();
        let other = hub.register("u", selector(r#"{app="api"}"#), 10).unwrap();
        let s = stream(r#"{app="api"}"#, &[(1, "a"), (2, "b"), (3, "c")]);
        hub.publish(
            "t",
            std::slice::from_ref(&s),
            &[(s.labels.clone(), vec![0, 2])],
        );
        let got: Vec<_> = api
            .subscriber
            .take()
            .entries
            .into_iter()
            .map(|(_, e)| e.line)
            .collect();
        assert_eq!(got, ["a", "c"]);
        assert!(web.subscriber.take().entries.is_empty());
        assert!(other.subscriber.take().entries.is_empty());
    }

    #[test]
    fn a_full_backlog_drops_and_reports() {
        let hub = Arc::new(TailHub::default());
        let h = hub.register("t", selector(r#"{app="api"}"#), 10).unwrap();
        let n = BACKLOG_ENTRIES + MAX_DROPPED_REPORTED + 5;
        let lines: Vec<(i64, &str)> = (0..n as i64).map(|i| (i, "x")).collect();
        let s = stream(r#"{app="api"}"#, &lines);
        hub.publish(
            "t",
            std::slice::from_ref(&s),
            &[(s.labels.clone(), (0..n).collect())],
        );
        let b = h.subscriber.take();
        assert_eq!(b.entries.len(), BACKLOG_ENTRIES);
        assert_eq!(b.dropped.len(), MAX_DROPPED_REPORTED);
        assert_eq!(b.dropped[0].1, BACKLOG_ENTRIES as i64);
        assert_eq!(b.dropped_unreported, 5);
        assert!(h.subscriber.take().entries.is_empty());
    }

    #[test]
    fn tails_per_tenant_are_limited_and_released_on_drop() {
        let hub = Arc::new(TailHub::default());
        let a = hub.register("t", Vec::new(), 2).unwrap();
        let _b = hub.register("t", Vec::new(), 2).unwrap();
        assert_eq!(
            hub.register("t", Vec::new(), 2).err(),
            Some(TailError::TooMany { count: 3, limit: 2 })
        );
        assert!(hub.register("u", Vec::new(), 2).is_ok());
        drop(a);
        assert_eq!(hub.open_for("t"), 1);
        assert!(hub.register("t", Vec::new(), 2).is_ok());
    }
}
