//! Query guards: what keeps one query, or one tenant's queries, from taking the server down.
//! Loki's names where Loki has them (`limits_config`, per tenant):
//!
//! - `max_outstanding_requests_per_tenant`: queries a tenant may run at once ([`TenantSlots`];
//!   more are answered 429, as Loki's scheduler answers "too many outstanding requests");
//! - `max_query_parallelism`: parts (threads) one query is split into;
//! - `max_query_bytes_read`: uncompressed bytes of the chunks a query would open, estimated
//!   before it runs ([`estimate_bytes`]); over it the query is refused;
//! - `max_query_memory` (Sawmill's): bytes of entries and samples a running query holds,
//!   charged by the collectors ([`MemoryMeter`]); over it the query is stopped;
//! - `max_query_lookback`: applied to the range by the HTTP layer.
//!
//! The per-query limits travel with the query's [`super::Cancel`], which also carries the
//! client's disconnect and the timeout, so every scan loop checks them in the same place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::{Cancel, QueryError, Snapshot};
use crate::logql::Matcher;

/// The per-query limits of a tenant.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub parallelism: usize,
    pub max_bytes_read: u64,
    pub max_memory: u64,
}

impl QueryLimits {
    pub const NONE: QueryLimits = QueryLimits {
        parallelism: usize::MAX,
        max_bytes_read: 0,
        max_memory: 0,
    };

    pub fn of(l: &crate::config::Limits) -> QueryLimits {
        QueryLimits {
            parallelism: l.max_query_parallelism.max(1),
            max_bytes_read: l.max_query_bytes_read,
            max_memory: l.max_query_memory,
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits::NONE
    }
}

/// What a query's parts share: its limits, the memory they hold, and the limit that stopped
/// it, if one did.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    pub(crate) limits: QueryLimits,
    memory: AtomicI64,
    hit: OnceLock<String>,
    /// Data the query needs could not be read (a bucket that did not answer).
    failed: OnceLock<String>,
}

impl Budget {
    pub(crate) fn new(limits: QueryLimits) -> Budget {
        Budget {
            limits,
            ..Budget::default()
        }
    }
}

/// Bytes charged to the budget in batches of this many, so parts rarely touch the shared
/// counter.
const CHARGE_BATCH: i64 = 64 << 10;

/// Counts one part's memory (entries kept, samples collected) and charges it to the query's
/// budget; past `max_query_memory` it stops the query with a message naming the limit.
pub struct MemoryMeter {
    cancel: Cancel,
    pending: i64,
}

impl MemoryMeter {
    pub fn new(cancel: Cancel) -> MemoryMeter {
        MemoryMeter { cancel, pending: 0 }
    }

    pub fn add(&mut self, bytes: usize) {
        self.pending += bytes as i64;
        if self.pending >= CHARGE_BATCH {
            self.flush();
        }
    }

    pub fn sub(&mut self, bytes: usize) {
        self.pending -= bytes as i64;
        if self.pending <= -CHARGE_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let b = &self.cancel.budget;
        let total = b.memory.fetch_add(self.pending, Ordering::Relaxed) + self.pending;
        self.pending = 0;
        let max = b.limits.max_memory;
        if max > 0 && total > max as i64 {
            let _ = b.hit.set(format!(
                "query stopped: its entries and samples took more than {} of memory (limits_config.max_query_memory); narrow the time range or the selector, add filters, or lower the limit",
                human_bytes(max)
            ));
            self.cancel.cancel();
        }
    }
}

impl Drop for MemoryMeter {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Cancel {
    /// This query's limits (the default `Cancel` has none).
    pub fn with_limits(mut self, limits: QueryLimits) -> Cancel {
        self.budget = Arc::new(Budget::new(limits));
        self
    }

    /// Parts to split a scan into: one per core, at most `max_query_parallelism`.
    pub fn parts(&self) -> usize {
        super::parallelism()
            .min(self.budget.limits.parallelism)
            .max(1)
    }

    /// The limit that stopped the query, as a message for the client.
    pub fn limit_hit(&self) -> Option<&str> {
        self.budget.hit.get().map(String::as_str)
    }

    /// Refuses a query whose chunks in range hold more than `max_query_bytes_read`.
    pub fn check_bytes_read(&self, estimate: u64) -> Result<(), QueryError> {
        let max = self.budget.limits.max_bytes_read;
        if max == 0 || estimate <= max {
            return Ok(());
        }
        let msg = format!(
            "the query would read too many bytes (query: {}, limit: {}, limits_config.max_query_bytes_read); narrow the stream selector or the time range",
            human_bytes(estimate),
            human_bytes(max)
        );
        let _ = self.budget.hit.set(msg.clone());
        Err(QueryError::Limit(msg))
    }

    /// Stops the query because data it needs could not be read: it ends with
    /// [`QueryError::Storage`].
    pub fn fail(&self, reason: String) {
        let _ = self.budget.failed.set(reason);
        self.cancel();
    }

    /// The error a stopped query ends with: a read that failed, the limit it hit, else
    /// [`QueryError::Stopped`].
    pub fn stopped_error(&self) -> QueryError {
        if let Some(m) = self.budget.failed.get() {
            return QueryError::Storage(m.clone());
        }
        match self.limit_hit() {
            Some(m) => QueryError::Limit(m.to_string()),
            None => QueryError::Stopped,
        }
    }
}

/// Uncompressed bytes of the chunks (and head data) of the snapshot's streams overlapping
/// `[start, end)`: what a scan would read at most.
pub fn estimate_bytes(snap: &Snapshot, matchers: &[Matcher], start: i64, end: i64) -> u64 {
    let mut total = 0u64;
    for seg in &snap.segments {
        if seg.max_ts < start || seg.min_ts >= end {
            continue;
        }
        let ids = super::matching_streams(seg, matchers);
        total += seg
            .chunks
            .iter()
            .filter(|c| c.max_ts >= start && c.min_ts < end)
            .filter(|c| ids.binary_search(&c.stream).is_ok())
            .map(|c| c.raw_bytes)
            .sum::<u64>();
    }
    let overlaps = |lo: i64, hi: i64| hi >= start && lo < end;
    for hs in &snap.head {
        for slot in &hs.slots {
            total += match slot {
                crate::storage::head::SlotState::Raw(h) => h
                    .min_max_ts()
                    .filter(|(lo, hi)| overlaps(*lo, *hi))
                    .map_or(0, |_| h.size() as u64),
                crate::storage::head::SlotState::Sealed(b) if overlaps(b.min_ts, b.max_ts) => {
                    u64::from(b.raw_len)
                }
                crate::storage::head::SlotState::Sealed(_) => 0,
            };
        }
        total += hs
            .open
            .as_ref()
            .and_then(|h| {
                h.min_max_ts()
                    .filter(|(lo, hi)| overlaps(*lo, *hi))
                    .map(|_| h.size() as u64)
            })
            .unwrap_or(0);
    }
    total
}

/// Queries running per tenant, bounded by `max_outstanding_requests_per_tenant`.
#[derive(Debug, Default)]
pub struct TenantSlots {
    running: Arc<Mutex<HashMap<String, usize>>>,
}

/// A running query's place; given back when dropped (the query ended or its client left).
#[derive(Debug)]
pub struct Slot {
    running: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl TenantSlots {
    /// A place for one more of `tenant`'s queries, or the message of a 429 when it already
    /// runs `max` (0: no limit).
    pub fn acquire(&self, tenant: &str, max: usize) -> Result<Slot, String> {
        let mut running = self.running.lock();
        let n = running.entry(tenant.to_string()).or_default();
        if max > 0 && *n >= max {
            return Err(format!(
                "too many outstanding requests: {max} queries of this tenant are running (limits_config.max_outstanding_requests_per_tenant); retry later"
            ));
        }
        *n += 1;
        Ok(Slot {
            running: self.running.clone(),
            tenant: tenant.to_string(),
        })
    }

    /// Queries `tenant` has running.
    pub fn running(&self, tenant: &str) -> usize {
        self.running.lock().get(tenant).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock();
        if let Some(n) = running.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

/// `1.5GiB`, `300.0MiB`, `12.0KiB`, `512B`.
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b}B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_tenant_and_given_back() {
        let slots = TenantSlots::default();
        let a = slots.acquire("a", 2).unwrap();
        let _b = slots.acquire("a", 2).unwrap();
        let err = slots.acquire("a", 2).unwrap_err();
        assert!(err.contains("max_outstanding_requests_per_tenant"), "{err}");
        let _other = slots.acquire("b", 2).unwrap();
        drop(a);
        assert_eq!(slots.running("a"), 1);
        slots.acquire("a", 2).unwrap();
    }

    #[test]
    fn memory_past_the_budget_stops_the_query_naming_the_limit() {
        let cancel = Cancel::default().with_limits(QueryLimits {
            max_memory: 1 << 20,
            ..QueryLimits::NONE
        });
        let mut m = MemoryMeter::new(cancel.clone());
        m.add(512 << 10);
        m.sub(256 << 10);
        m.add(512 << 10);
        assert!(!cancel.is_cancelled());
        m.add(512 << 10);
        assert!(cancel.is_cancelled());
        assert!(
            cancel.limit_hit().unwrap().contains("max_query_memory"),
            "{:?}",
            cancel.limit_hit()
        );
    }

    #[test]
    fn parts_follow_max_query_parallelism() {
        let one = Cancel::default().with_limits(QueryLimits {
            parallelism: 1,
            ..QueryLimits::NONE
        });
        assert_eq!(one.parts(), 1);
        assert_eq!(Cancel::default().parts(), crate::query::parallelism());
    }

    #[test]
    fn bytes_read_estimate_over_the_limit_is_refused() {
        let cancel = Cancel::default().with_limits(QueryLimits {
            max_bytes_read: 1000,
            ..QueryLimits::NONE
        });
        assert!(cancel.check_bytes_read(1000).is_ok());
        let err = cancel.check_bytes_read(5000).unwrap_err().to_string();
        assert!(err.contains("max_query_bytes_read"), "{err}");
        assert!(Cancel::default().check_bytes_read(u64::MAX).is_ok());
    }
}
