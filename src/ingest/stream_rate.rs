//! Per-stream rate limiting (`per_stream_rate_limit`, `per_stream_rate_limit_burst`): a token
//! bucket per stream of each tenant. An entry that does not fit its stream's bucket is refused
//! alone, as Loki's ingester does: the stream's other entries and the other streams are stored,
//! and the push is answered 429 with Loki's message naming the stream. Neighbours: `store`
//! calls it after the tenant's own rate check (`rate`), before the WAL.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use super::validate::Rejection;
use super::ValidStream;
use crate::config::Limits;

/// Discard reason of an entry over its stream's rate (Loki's name).
pub const STREAM_RATE_LIMIT: &str = "per_stream_rate_limit";

/// At most this many refused entries are listed in one stream's message (Loki's
/// `max_returned_stream_errors` default); the total is always given.
const MAX_LISTED: usize = 10;

#[derive(Default)]
pub struct StreamRateLimiter {
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    /// Keyed by tenant and the stream's label text.
    by_stream: HashMap<(String, String), Bucket>,
    /// Size of `by_stream` after the last sweep of full buckets.
    after_sweep: usize,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl StreamRateLimiter {
    /// Takes each entry's bytes from its stream's bucket; entries that do not fit are taken
    /// out of `streams` and returned as one rejection per stream.
    pub fn apply(
        &self,
        tenant: &str,
        streams: &mut Vec<ValidStream>,
        limits: &Limits,
    ) -> Vec<Rejection> {
        self.apply_at(tenant, streams, limits, Instant::now())
    }

    fn apply_at(
        &self,
        tenant: &str,
        streams: &mut Vec<ValidStream>,
        limits: &Limits,
        now: Instant,
    ) -> Vec<Rejection> {
        let mut rejections = Vec::new();
        let rate = limits.per_stream_rate_limit as f64;
        if rate <= 0.0 {
            return rejections;
        }
        let burst = (limits.per_stream_rate_limit_burst as f64).max(rate);
        let mut buckets = self.buckets.lock();
        buckets.sweep(now, burst / rate);
        for stream in streams.iter_mut() {
            let labels = stream.labels.to_string();
            let b = buckets
                .by_stream
                .entry((tenant.to_string(), labels.clone()))
                .or_insert(Bucket {
                    tokens: burst,
                    last: now,
                });
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate).min(burst);
            b.last = now;
            let total = stream.entries.len();
            let mut refused = Vec::new();
            stream.entries.retain(|e| {
                let size = e.size() as f64;
                if size <= b.tokens {
                    b.tokens -= size;
                    true
                } else {
                    refused.push((e.ts, e.size()));
                    false
                }
            });
            if refused.is_empty() {
                continue;
            }
            rejections.push(Rejection {
                reason: STREAM_RATE_LIMIT,
                message: message(
                    tenant,
                    &labels,
                    limits.per_stream_rate_limit,
                    &refused,
                    total,
                ),
                lines: refused.len(),
                bytes: refused.iter().map(|(_, b)| b).sum(),
            });
        }
        streams.retain(|s| !s.entries.is_empty());
        rejections
    }
}

impl Buckets {
    /// Forgets buckets that have refilled completely (a fresh bucket is the same), whenever
    /// the map has doubled since the last sweep, so streams that stopped cost nothing.
    fn sweep(&mut self, now: Instant, refill_secs: f64) {
        if self.by_stream.len() < 1024 || self.by_stream.len() < 2 * self.after_sweep {
            return;
        }
        self.by_stream
            .retain(|_, b| now.saturating_duration_since(b.last).as_secs_f64() < refill_secs);
        self.after_sweep = self.by_stream.len();
    }
}

/// Loki's answer for one stream's refused entries.
fn message(
    tenant: &str,
    labels: &str,
    limit: u64,
    refused: &[(i64, usize)],
    total: usize,
) -> String {
    let mut out = String::new();
    for (ts, bytes) in refused.iter().take(MAX_LISTED) {
        out.push_str(&format!(
            "entry with timestamp {} ignored, reason: 'Per stream rate limit exceeded (limit: {}/sec) while attempting to ingest for stream '{labels}' totaling {}, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased',\n",
            go_time(*ts),
            byte_size(limit),
            byte_size(*bytes as u64),
        ));
    }
    out.push_str(&format!(
        "user '{tenant}', total ignored: {} out of {total} for stream: {labels}",
        refused.len()
    ));
    out
}

/// A byte count the way Loki prints one: the largest binary unit that divides it exactly.
fn byte_size(b: u64) -> String {
    const UNITS: [(&str, u32); 6] = [
        ("EB", 60),
        ("PB", 50),
        ("TB", 40),
        ("GB", 30),
        ("MB", 20),
        ("KB", 10),
    ];
    if b == 0 {
        return "0B".into();
    }
    for (name, shift) in UNITS {
        if b % (1u64 << shift) == 0 {
            return format!("{}{name}", b >> shift);
        }
    }
    format!("{b}B")
}

/// A nanosecond timestamp as Go's `time.Time.String()` writes it in UTC.
fn go_time(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let nanos = ts.rem_euclid(1_000_000_000) as u32;
    let Some(t) = chrono::DateTime::from_timestamp(secs, nanos) else {
        return ts.to_string();
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Entry;
    use crate::labels::Labels;
    use std::time::Duration;

    fn stream(app: &str, lines: &[&str]) -> ValidStream {
        ValidStream {
            labels: Labels::from_pairs(vec![("app".to_string(), app.to_string())]),
            entries: lines
                .iter()
                .enumerate()
                .map(|(i, l)| Entry {
                    ts: 1_700_000_000_000_000_000 + i as i64 * 1_500_000,
                    line: l.to_string(),
                    metadata: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn refuses_only_the_entries_over_their_streams_rate() {
        let limits = Limits {
            per_stream_rate_limit: 10,
            per_stream_rate_limit_burst: 20,
            ..Limits::default()
        };
        let r = StreamRateLimiter::default();
        let t0 = Instant::now();
        let mut v = vec![
            stream("a", &["0123456789", "0123456789", "x"]),
            stream("b", &["0123456789"]),
        ];
        let rejections = r.apply_at("t", &mut v, &limits, t0);
        let kept: Vec<usize> = v.iter().map(|s| s.entries.len()).collect();
        assert_eq!(kept, [2, 1], "two of a, one of b");
        assert_eq!(rejections.len(), 1);
        let rej = &rejections[0];
        assert_eq!(
            (rej.reason, rej.lines, rej.bytes),
            (STREAM_RATE_LIMIT, 1, 1)
        );
        assert_eq!(
            rej.message,
            "entry with timestamp 2023-11-14 22:13:20.003 +0000 UTC ignored, reason: 'Per stream rate limit exceeded (limit: 10B/sec) while attempting to ingest for stream '{app=\"a\"}' totaling 1B, consider splitting a stream via additional labels or contact your Loki administrator to see if the limit can be increased',\nuser 't', total ignored: 1 out of 3 for stream: {app=\"a\"}"
        );
        // A second later the bucket of a holds 10 bytes again.
        let mut v = vec![stream("a", &["0123456789"])];
        assert!(r
            .apply_at("t", &mut v, &limits, t0 + Duration::from_secs(1))
            .is_empty());
        // Another tenant's stream with the same labels has its own bucket.
        let mut v = vec![stream("a", &["0123456789", "0123456789"])];
        assert!(r.apply_at("u", &mut v, &limits, t0).is_empty());
    }

    #[test]
    fn loki_byte_sizes() {
        assert_eq!(byte_size(3 << 20), "3MB");
        assert_eq!(byte_size(15 << 20), "15MB");
        assert_eq!(byte_size(2048), "2KB");
        assert_eq!(byte_size(1500), "1500B");
        assert_eq!(byte_size(0), "0B");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
