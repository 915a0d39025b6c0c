//! Time: the clock, and timestamps as Loki's HTTP parameters write them.

/// Now, in Unix nanoseconds: the clock retention, compaction and query defaults are read from.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Loki's `parseTimestamp`: a value with `.` is float seconds; an integer of at most 10 digits
/// is seconds, longer is nanoseconds; anything else is RFC3339 (with optional fraction).
pub fn parse_timestamp(v: &str) -> Result<i64, String> {
    if v.contains('.') {
        if let Ok(f) = v.parse::<f64>() {
            let secs = f.trunc();
            let ns = ((f - secs) * 1e9).round();
            return Ok((secs as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ns as i64));
        }
    }
    if let Ok(i) = v.parse::<i64>() {
        let digits = v.trim_start_matches('-').len();
        return Ok(if digits <= 10 {
            i.saturating_mul(1_000_000_000)
        } else {
            i
        });
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!("cannot parse {v:?} as a timestamp (nanoseconds, seconds or RFC3339)")
        })
}
