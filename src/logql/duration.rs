//! Duration and byte-size literals of LogQL: the signed nanosecond [`Duration`] used by
//! ranges, offsets and duration label filters, and the parsers behind them. A range `[5m]`
//! takes Prometheus durations only (`y w d h m s ms`, integers, largest unit first); a
//! duration token elsewhere (`latency > 1h15m30.5s`, `offset -5m`) tries Prometheus first
//! and falls back to Go's `time.ParseDuration`; byte sizes (`20MB`, `1MiB`) follow
//! go-humanize (both through `go`, which keeps Go's error texts). These are the crate's one
//! duration parser and one byte-size parser: config, templates, HTTP parameters and the
//! client read theirs here. The printer uses [`Duration`]'s `Display`, whose output both
//! duration parsers read back to the same value.

use std::fmt;

/// Why a duration or byte-size literal was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("not a valid duration string: {0:?}")]
    InvalidDuration(String),
    #[error("duration out of range: {0:?}")]
    OutOfRange(String),
    #[error("not a valid byte size: {0:?}")]
    InvalidBytes(String),
}

const NANOS_PER_MILLI: i64 = 1_000_000;
const NANOS_PER_SEC: i64 = 1_000_000_000;
const NANOS_PER_MIN: i64 = 60 * NANOS_PER_SEC;
const NANOS_PER_HOUR: i64 = 60 * NANOS_PER_MIN;
const NANOS_PER_DAY: i64 = 24 * NANOS_PER_HOUR;

/// A signed span of time in nanoseconds, like Go's `time.Duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    nanos: i64,
}

impl Duration {
    pub const ZERO: Duration = Duration { nanos: 0 };

    pub const fn from_nanos(nanos: i64) -> Self {
        Duration { nanos }
    }

    pub const fn from_secs(secs: i64) -> Self {
        Duration {
            nanos: secs * NANOS_PER_SEC,
        }
    }

    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    pub fn as_secs_f64(self) -> f64 {
        self.nanos as f64 / NANOS_PER_SEC as f64
    }

    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// The standard-library duration, or `None` when negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.nanos)
            .ok()
            .map(std::time::Duration::from_nanos)
    }
}

/// Prints the shortest `h m s ms us ns` form (`1h15m30s500ms`, `-5m`, `0s`), which both
/// [`parse_prometheus_duration`] (when it has no sub-millisecond part) and
/// [`parse_go_duration`] read back exactly.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0s");
        }
        if self.nanos < 0 {
            f.write_str("-")?;
        }
        let mut rest = self.nanos.unsigned_abs();
        let units: [(u64, &str); 6] = [
            (NANOS_PER_HOUR as u64, "h"),
            (NANOS_PER_MIN as u64, "m"),
            (NANOS_PER_SEC as u64, "s"),
            (NANOS_PER_MILLI as u64, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        for (size, unit) in units {
            let n = rest / size;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                rest -= n * size;
            }
        }
        Ok(())
    }
}

/// Parses a Prometheus duration (`5m`, `1h30m`, `2d`, `1w`, `1y`, `250ms`, `0`): integer
/// amounts of `y w d h m s ms`, each at most once, largest first.
pub fn parse_prometheus_duration(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::InvalidDuration(s.to_string());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * NANOS_PER_DAY),
        ("w", 7 * NANOS_PER_DAY),
        ("d", NANOS_PER_DAY),
        ("h", NANOS_PER_HOUR),
        ("m", NANOS_PER_MIN),
        ("s", NANOS_PER_SEC),
        ("ms", NANOS_PER_MILLI),
    ];
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        let digits = &s[start..i];
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[unit_start..i];
        let pos = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        let size = UNITS[next_unit + pos].1;
        next_unit += pos + 1;
        let amount: i64 = digits
            .parse()
            .map_err(|_| DurationError::OutOfRange(s.to_string()))?;
        total = amount
            .checked_mul(size)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| DurationError::OutOfRange(s.to_string()))?;
    }
    Ok(Duration::from_nanos(total))
}

/// Parses a Go duration (`time.ParseDuration`): an optional sign and a sequence of decimal
/// numbers, each with an optional fraction and a unit among `ns us µs ms s m h`. The one
/// implementation is [`super::go::parse_duration`], which keeps Go's error texts.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    super::go::parse_duration(s)
        .map(Duration::from_nanos)
        .map_err(|_| DurationError::InvalidDuration(s.to_string()))
}

/// Parses a duration token outside a range: Prometheus syntax first, then Go syntax.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    parse_prometheus_duration(s).or_else(|_| parse_go_duration(s))
}

/// Parses a byte size the way go-humanize's `ParseBytes` does: a decimal number (commas
/// allowed) followed by an optional case-insensitive unit, SI (`kB`, `MB`) or IEC (`KiB`);
/// sizes of 2^64 bytes or more are refused. The one implementation is
/// [`super::go::parse_bytes`], which keeps go-humanize's error texts.
pub fn parse_bytes(s: &str) -> Result<u64, DurationError> {
    super::go::parse_bytes(s).map_err(|_| DurationError::InvalidBytes(s.to_string()))
}

pub use super::go::byte_unit;

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn prom(input: &str, want: Option<i64>) {
        let got = parse_prometheus_duration(input)
            .ok()
            .map(Duration::as_nanos);
        assert_eq!(got, want, "prometheus duration {input:?}");
    }

    #[track_caller]
    fn go(input: &str, want: Option<i64>) {
        let got = parse_go_duration(input).ok().map(Duration::as_nanos);
        assert_eq!(got, want, "go duration {input:?}");
    }

    #[track_caller]
    fn bytes(input: &str, want: Option<u64>) {
        assert_eq!(parse_bytes(input).ok(), want, "bytes {input:?}");
    }

    #[track_caller]
    fn display(nanos: i64, want: &str) {
        let d = Duration::from_nanos(nanos);
        assert_eq!(d.to_string(), want);
        assert_eq!(parse_go_duration(want), Ok(d), "go reads back {want}");
    }

    const S: i64 = NANOS_PER_SEC;

    #[test]
    fn prometheus_durations() {
        prom("5m", Some(300 * S));
        prom("1h30m", Some(5400 * S));
        prom("250ms", Some(250 * NANOS_PER_MILLI));
        prom("1d", Some(86400 * S));
        prom("1w", Some(7 * 86400 * S));
        prom("1y", Some(365 * 86400 * S));
        prom("0", Some(0));
        prom("0s", Some(0));
        prom(
            "1y2w3d4h5m6s7ms",
            Some(((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * S + 7 * NANOS_PER_MILLI),
        );
        prom("5x", None);
        prom("", None);
        prom("1.5h", None);
        prom("30m1h", None);
        prom("1m1m", None);
        prom("-5m", None);
        prom("5", None);
        prom("m", None);
        prom("1000y", None);
    }

    #[test]
    fn go_durations() {
        go("1h15m30.5s", Some(4530 * S + S / 2));
        go("250ms", Some(250 * NANOS_PER_MILLI));
        go("-5m", Some(-300 * S));
        go("+5m", Some(300 * S));
        go("1.5h", Some(5400 * S));
        go(".5s", Some(S / 2));
        go("1.s", Some(S));
        go("10us", Some(10_000));
        go("10µs", Some(10_000));
        go("3ns", Some(3));
        go("0", Some(0));
        go("-0", Some(0));
        go("5", None);
        go("5d", None);
        go(".s", None);
        go("", None);
        go("-", None);
        go("1h1x", None);
        go("9223372036854775807ns", Some(i64::MAX));
        go("9223372036854775808ns", None);
        go("-9223372036854775808ns", Some(i64::MIN));
    }

    #[test]
    fn byte_sizes() {
        bytes("5KB", Some(5000));
        bytes("1MiB", Some(1 << 20));
        bytes("20MB", Some(20_000_000));
        bytes("1.5kB", Some(1500));
        bytes("10B", Some(10));
        bytes("3", Some(3));
        bytes("1,000B", Some(1000));
        bytes("2GiB", Some(2 << 30));
        bytes("1M", Some(1_000_000));
        bytes("5XB", None);
        bytes("KB", None);
        bytes("100000EB", None);
    }

    #[test]
    fn display_reads_back() {
        display(0, "0s");
        display(300 * S, "5m");
        display(4530 * S + S / 2, "1h15m30s500ms");
        display(-300 * S, "-5m");
        display(86400 * S, "24h");
        display(1_001, "1us1ns");
        display(i64::MIN, "-2562047h47m16s854ms775us808ns");
    }
}
