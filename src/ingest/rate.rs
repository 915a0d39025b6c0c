//! Per-tenant ingestion rate limiting: a token bucket refilled at `ingestion_rate_mb` MB/s
//! holding at most `ingestion_burst_size_mb` MB. A push that does not fit is refused whole (429),
//! as Loki does.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::Limits;

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

const MB: f64 = 1024.0 * 1024.0;

impl RateLimiter {
    /// Takes `bytes` from the tenant's bucket; false (and nothing taken) when it does not fit.
    pub fn allow(&self, tenant: &str, bytes: usize, limits: &Limits) -> bool {
        self.allow_at(tenant, bytes, limits, Instant::now())
    }

    fn allow_at(&self, tenant: &str, bytes: usize, limits: &Limits, now: Instant) -> bool {
        let rate = limits.ingestion_rate_mb * MB;
        let burst = limits.ingestion_burst_size_mb.max(limits.ingestion_rate_mb) * MB;
        if rate <= 0.0 {
            return true;
        }
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if bytes as f64 <= b.tokens {
            b.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

/// Loki's 429 message.
pub fn rate_limited_message(tenant: &str, limits: &Limits, lines: usize, bytes: usize) -> String {
    format!(
        "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
        (limits.ingestion_rate_mb * MB) as u64
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_rate() {
        let limits = Limits {
            ingestion_rate_mb: 1.0,
            ingestion_burst_size_mb: 2.0,
            ..Limits::default()
        };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        assert!(r.allow_at("a", 2 << 20, &limits, t0));
        assert!(!r.allow_at("a", 1, &limits, t0));
        assert!(
            r.allow_at("b", 1 << 20, &limits, t0),
            "tenants are independent"
        );
        assert!(r.allow_at("a", 1 << 19, &limits, t0 + Duration::from_millis(600)));
        assert!(
            !r.allow_at("a", 3 << 20, &limits, t0 + Duration::from_secs(100)),
            "never more than the burst"
        );
    }
}
