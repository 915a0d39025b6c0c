//! Go `text/template` subset behind LogQL's `line_format` and `label_format` stages: it parses a
//! template once (text, actions, pipelines, control structures, Loki's and sprig's functions) and
//! renders it per entry against that entry's labels, line and timestamp. The pipeline stages in
//! `query` call it; it depends on nothing else in the crate.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Deepest nesting of blocks and parentheses a template may use.
const MAX_DEPTH: usize = 64;
/// Largest output (and largest intermediate string) one render may produce, in bytes.
const MAX_OUTPUT: usize = 1 << 20;
/// Most evaluation steps one render may take (bounds `range` loops).
const MAX_STEPS: usize = 1_000_000;

/// Everything that can go wrong while parsing or rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template: parse error at byte {offset}: {msg}")]
    Parse { offset: usize, msg: String },
    #[error("template: nested too deeply at byte {offset}: limit {MAX_DEPTH} levels")]
    TooDeep { offset: usize },
    #[error("template: exec error: {0}")]
    Exec(String),
    #[error("template: output too large: limit {MAX_OUTPUT} bytes")]
    OutputTooLarge,
    #[error("template: too many evaluation steps: limit {MAX_STEPS}")]
    TooManySteps,
}

fn perr<T>(offset: usize, msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Parse {
        offset,
        msg: msg.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A point in time: Unix seconds and nanoseconds plus the UTC offset it is shown in.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Time {
    secs: i64,
    nanos: u32,
    off: i32,
}

/// Unix seconds of Go's zero `time.Time`, 0001-01-01T00:00:00Z.
const ZERO_TIME_SECS: i64 = -62_135_596_800;

impl Time {
    fn from_ns(ns: i64) -> Time {
        Time {
            secs: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as u32,
            off: 0,
        }
    }

    fn zero() -> Time {
        Time {
            secs: ZERO_TIME_SECS,
            nanos: 0,
            off: 0,
        }
    }

    fn unix_nanos(&self) -> i64 {
        self.secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(i64::from(self.nanos))
    }
}

/// A dynamically typed template value.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Time(Time),
    /// The entry's labels (the template's `.` at the top level).
    Labels,
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Time(_) | Value::Labels => true,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Time(_) => "time.Time",
            Value::Labels => "map[string]string",
        }
    }

    /// Go's `%v` rendering, which is also how an action prints its value.
    fn write_to(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&fmt_float_g(*f, None, false)),
            Value::Str(s) => out.push_str(s),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_to(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_to(out);
                }
                out.push(']');
            }
            Value::Time(t) => out.push_str(&time_string(*t)),
            Value::Labels => out.push_str("map[]"),
        }
    }

    /// Lenient conversion to a string, as sprig's `strval` does (nil becomes empty).
    fn to_str(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Nil => String::new(),
            v => {
                let mut s = String::new();
                v.write_to(&mut s);
                s
            }
        }
    }
}

/// Go's `%g`-family float formatting with shortest precision when `prec` is `None`.
fn fmt_float_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Significant digits and decimal exponent, via Rust's `{:e}`.
    let sci = match prec {
        None => format!("{f:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f),
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut digits = digits.trim_end_matches('0').to_string();
    if digits.is_empty() {
        digits.push('0');
    }
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > digits.len() as i32 && digits.len() as i32 > exp {
                digits.len() as i32
            } else {
                p
            }
        }
    };
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp < -4 || exp >= eprec {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push(if upper { 'E' } else { 'e' });
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}

/// Go's `time.Time.String()`.
fn time_string(t: Time) -> String {
    go_format(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// One element of a Go time layout such as `2006-01-02T15:04:05Z07:00`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TZ,
    /// `-0700`-style offsets: (`Z` for UTC, colons, with seconds, with minutes).
    Offset {
        z: bool,
        colon: bool,
        secs: bool,
        mins: bool,
    },
    /// Fractional seconds: (digits, trim trailing zeros, comma separator).
    Frac {
        n: usize,
        trim: bool,
        comma: bool,
    },
}

enum Chunk<'a> {
    Lit(&'a str),
    Std(Std),
}

/// Splits a Go layout into literal text and layout elements, as Go's `nextStdChunk` does.
fn layout_chunks(layout: &str) -> Vec<Chunk<'_>> {
    let b = layout.as_bytes();
    let mut chunks = Vec::new();
    let mut lit = 0;
    let mut i = 0;
    while i < b.len() {
        let rest = &layout[i..];
        let found: Option<(Std, usize)> = match b[i] {
            b'J' if rest.starts_with("January") => Some((Std::LongMonth, 7)),
            b'J' if rest.starts_with("Jan") => Some((Std::Month, 3)),
            b'M' if rest.starts_with("Monday") => Some((Std::LongWeekDay, 6)),
            b'M' if rest.starts_with("Mon") => Some((Std::WeekDay, 3)),
            b'M' if rest.starts_with("MST") => Some((Std::TZ, 3)),
            b'0' if rest.starts_with("002") => Some((Std::ZeroYearDay, 3)),
            b'0' => match b.get(i + 1) {
                Some(b'1') => Some((Std::ZeroMonth, 2)),
                Some(b'2') => Some((Std::ZeroDay, 2)),
                Some(b'3') => Some((Std::ZeroHour12, 2)),
                Some(b'4') => Some((Std::ZeroMinute, 2)),
                Some(b'5') => Some((Std::ZeroSecond, 2)),
                Some(b'6') => Some((Std::Year, 2)),
                _ => None,
            },
            b'1' if rest.starts_with("15") => Some((Std::Hour, 2)),
            b'1' => Some((Std::NumMonth, 1)),
            b'2' if rest.starts_with("2006") => Some((Std::LongYear, 4)),
            b'2' => Some((Std::Day, 1)),
            b'_' if rest.starts_with("__2") => Some((Std::UnderYearDay, 3)),
            b'_' if rest.starts_with("_2006") => {
                // A literal underscore followed by a year.
                chunks.push(Chunk::Lit(&layout[lit..i + 1]));
                lit = i + 1;
                i += 1;
                continue;
            }
            b'_' if rest.starts_with("_2") => Some((Std::UnderDay, 2)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if rest.starts_with("PM") => Some((Std::PM, 2)),
            b'p' if rest.starts_with("pm") => Some((Std::Pm, 2)),
            b'-' | b'Z' => {
                let z = b[i] == b'Z';
                let body = &rest[1..];
                let off = |colon, secs, mins| Std::Offset {
                    z,
                    colon,
                    secs,
                    mins,
                };
                if body.starts_with("07:00:00") {
                    Some((off(true, true, true), 9))
                } else if body.starts_with("070000") {
                    Some((off(false, true, true), 7))
                } else if body.starts_with("07:00") {
                    Some((off(true, false, true), 6))
                } else if body.starts_with("0700") {
                    Some((off(false, false, true), 5))
                } else if body.starts_with("07") {
                    Some((off(false, false, false), 3))
                } else {
                    None
                }
            }
            b'.' | b',' if matches!(b.get(i + 1), Some(b'0' | b'9')) => {
                let ch = b[i + 1];
                let mut j = i + 1;
                while j < b.len() && b[j] == ch {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    None
                } else {
                    Some((
                        Std::Frac {
                            n: j - i - 1,
                            trim: ch == b'9',
                            comma: b[i] == b',',
                        },
                        j - i,
                    ))
                }
            }
            _ => None,
        };
        match found {
            Some((std, len)) => {
                if lit < i {
                    chunks.push(Chunk::Lit(&layout[lit..i]));
                }
                chunks.push(Chunk::Std(std));
                i += len;
                lit = i;
            }
            None => i += layout[i..].chars().next().map_or(1, char::len_utf8),
        }
    }
    if lit < b.len() {
        chunks.push(Chunk::Lit(&layout[lit..]));
    }
    chunks
}

/// Formats `t` (in its own offset) with a Go layout.
fn go_format(t: Time, layout: &str) -> String {
    let local = t.secs.saturating_add(i64::from(t.off));
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hour, min, sec) = (sod / 3600, sod / 60 % 60, sod % 60);
    let wday = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    for chunk in layout_chunks(layout) {
        let std = match chunk {
            Chunk::Lit(l) => {
                out.push_str(l);
                continue;
            }
            Chunk::Std(std) => std,
        };
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        match std {
            Std::LongMonth => out.push_str(MONTHS[m as usize - 1]),
            Std::Month => out.push_str(&MONTHS[m as usize - 1][..3]),
            Std::NumMonth => out.push_str(&m.to_string()),
            Std::ZeroMonth => out.push_str(&format!("{m:02}")),
            Std::LongWeekDay => out.push_str(DAYS[wday]),
            Std::WeekDay => out.push_str(&DAYS[wday][..3]),
            Std::Day => out.push_str(&d.to_string()),
            Std::UnderDay => out.push_str(&format!("{d:>2}")),
            Std::ZeroDay => out.push_str(&format!("{d:02}")),
            Std::UnderYearDay => out.push_str(&format!("{yday:>3}")),
            Std::ZeroYearDay => out.push_str(&format!("{yday:03}")),
            Std::Hour => out.push_str(&format!("{hour:02}")),
            Std::Hour12 => out.push_str(&h12.to_string()),
            Std::ZeroHour12 => out.push_str(&format!("{h12:02}")),
            Std::Minute => out.push_str(&min.to_string()),
            Std::ZeroMinute => out.push_str(&format!("{min:02}")),
            Std::Second => out.push_str(&sec.to_string()),
            Std::ZeroSecond => out.push_str(&format!("{sec:02}")),
            Std::LongYear => out.push_str(&format!("{y:04}")),
            Std::Year => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Std::PM => out.push_str(if hour >= 12 { "PM" } else { "AM" }),
            Std::Pm => out.push_str(if hour >= 12 { "pm" } else { "am" }),
            Std::TZ => {
                if t.off == 0 {
                    out.push_str("UTC");
                } else {
                    let a = t.off.unsigned_abs() / 60;
                    let sign = if t.off < 0 { '-' } else { '+' };
                    out.push_str(&format!("{sign}{:02}{:02}", a / 60, a % 60));
                }
            }
            Std::Offset {
                z,
                colon,
                secs,
                mins,
            } => {
                if z && t.off == 0 {
                    out.push('Z');
                    continue;
                }
                let a = t.off.unsigned_abs();
                out.push(if t.off < 0 { '-' } else { '+' });
                out.push_str(&format!("{:02}", a / 3600));
                let sep = if colon { ":" } else { "" };
                if mins {
                    out.push_str(&format!("{sep}{:02}", a / 60 % 60));
                }
                if secs {
                    out.push_str(&format!("{sep}{:02}", a % 60));
                }
            }
            Std::Frac { n, trim, comma } => {
                let digits = format!("{:09}", t.nanos);
                let mut digits = &digits[..n.min(9)];
                if trim {
                    digits = digits.trim_end_matches('0');
                    if digits.is_empty() {
                        continue;
                    }
                }
                out.push(if comma { ',' } else { '.' });
                out.push_str(digits);
            }
        }
    }
    out
}

/// Parses `value` with a Go layout, as `time.ParseInLocation` does for a UTC location.
fn go_parse(layout: &str, value: &str) -> Result<Time, String> {
    let bad = || format!("cannot parse {value:?} as {layout:?}");
    let mut v = value;
    let (mut year, mut month, mut day, mut yday) = (1i64, 0u32, 0u32, 0i64);
    let (mut hour, mut min, mut sec, mut nanos) = (0i64, 0i64, 0i64, 0u32);
    let mut pm: Option<bool> = None;
    let mut off: Option<i32> = None;
    let chunks = layout_chunks(layout);
    for (idx, chunk) in chunks.iter().enumerate() {
        let std = match chunk {
            Chunk::Lit(l) => {
                v = skip_lit(v, l).ok_or_else(bad)?;
                continue;
            }
            Chunk::Std(s) => *s,
        };
        match std {
            Std::LongYear => {
                let (n, r) = take_digits(v, 4, 4).ok_or_else(bad)?;
                year = n;
                v = r;
            }
            Std::Year => {
                let (n, r) = take_digits(v, 2, 2).ok_or_else(bad)?;
                year = if n >= 69 { 1900 + n } else { 2000 + n };
                v = r;
            }
            Std::LongMonth | Std::Month => {
                let (i, r) = lookup_name(v, &MONTHS, std == Std::Month).ok_or_else(bad)?;
                month = i as u32 + 1;
                v = r;
            }
            Std::LongWeekDay | Std::WeekDay => {
                let (_, r) = lookup_name(v, &DAYS, std == Std::WeekDay).ok_or_else(bad)?;
                v = r;
            }
            Std::NumMonth | Std::ZeroMonth => {
                let min_digits = if std == Std::ZeroMonth { 2 } else { 1 };
                let (n, r) = take_digits(v, min_digits, 2).ok_or_else(bad)?;
                month = n as u32;
                v = r;
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => {
                if std == Std::UnderDay && v.starts_with(' ') {
                    v = &v[1..];
                }
                let min_digits = if std == Std::ZeroDay { 2 } else { 1 };
                let (n, r) = take_digits(v, min_digits, 2).ok_or_else(bad)?;
                day = n as u32;
                v = r;
            }
            Std::UnderYearDay | Std::ZeroYearDay => {
                if std == Std::UnderYearDay {
                    v = v.trim_start_matches(' ');
                }
                let (n, r) = take_digits(v, 1, 3).ok_or_else(bad)?;
                yday = n;
                v = r;
            }
            Std::Hour => {
                let (n, r) = take_digits(v, 1, 2).ok_or_else(bad)?;
                hour = n;
                v = r;
            }
            Std::Hour12 | Std::ZeroHour12 => {
                let min_digits = if std == Std::ZeroHour12 { 2 } else { 1 };
                let (n, r) = take_digits(v, min_digits, 2).ok_or_else(bad)?;
                if n > 12 {
                    return Err(bad());
                }
                hour = n;
                v = r;
            }
            Std::Minute | Std::ZeroMinute | Std::Second | Std::ZeroSecond => {
                let fixed = matches!(std, Std::ZeroMinute | Std::ZeroSecond);
                let (n, r) = take_digits(v, if fixed { 2 } else { 1 }, 2).ok_or_else(bad)?;
                v = r;
                if matches!(std, Std::Minute | Std::ZeroMinute) {
                    min = n;
                } else {
                    sec = n;
                    // A fraction the layout does not mention is still accepted.
                    let next_is_frac =
                        matches!(chunks.get(idx + 1), Some(Chunk::Std(Std::Frac { .. })));
                    let b = v.as_bytes();
                    if !next_is_frac
                        && b.len() > 1
                        && (b[0] == b'.' || b[0] == b',')
                        && b[1].is_ascii_digit()
                    {
                        let (ns, r) = take_frac(&v[1..]);
                        nanos = ns;
                        v = r;
                    }
                }
            }
            Std::PM | Std::Pm => {
                let p = v.get(..2).ok_or_else(bad)?;
                pm = Some(match p.to_ascii_uppercase().as_str() {
                    "PM" => true,
                    "AM" => false,
                    _ => return Err(bad()),
                });
                v = &v[2..];
            }
            Std::TZ => {
                if let Some(r) = v.strip_prefix("UTC") {
                    off = Some(0);
                    v = r;
                } else {
                    let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
                    if !(3..=5).contains(&n) {
                        return Err(bad());
                    }
                    off = Some(0);
                    v = &v[n..];
                }
            }
            Std::Offset {
                z,
                colon,
                secs,
                mins,
            } => {
                if z && v.starts_with('Z') {
                    off = Some(0);
                    v = &v[1..];
                    continue;
                }
                let sign = match v.as_bytes().first() {
                    Some(b'+') => 1,
                    Some(b'-') => -1,
                    _ => return Err(bad()),
                };
                v = &v[1..];
                let (h, r) = take_digits(v, 2, 2).ok_or_else(bad)?;
                v = r;
                let mut total = h * 3600;
                for (wanted, mult) in [(mins, 60), (secs, 1)] {
                    if !wanted {
                        continue;
                    }
                    if colon {
                        v = v.strip_prefix(':').ok_or_else(bad)?;
                    }
                    let (n, r) = take_digits(v, 2, 2).ok_or_else(bad)?;
                    total += n * mult;
                    v = r;
                }
                off = Some(sign * total as i32);
            }
            Std::Frac { n, trim, .. } => {
                let b = v.as_bytes();
                if b.first().is_none_or(|c| *c != b'.' && *c != b',') {
                    if trim {
                        continue;
                    }
                    return Err(bad());
                }
                let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if !trim && digits != n || trim && digits == 0 {
                    return Err(bad());
                }
                let (ns, r) = take_frac(&v[1..]);
                nanos = ns;
                v = r;
            }
        }
    }
    if !v.is_empty() {
        return Err(format!(
            "extra text {v:?} after parsing {value:?} as {layout:?}"
        ));
    }
    if let Some(pm) = pm {
        if pm && hour < 12 {
            hour += 12;
        } else if !pm && hour == 12 {
            hour = 0;
        }
    }
    if yday > 0 && month == 0 {
        let max = if is_leap(year) { 366 } else { 365 };
        if yday > max {
            return Err(bad());
        }
        let (_, m, d) = civil_from_days(days_from_civil(year, 1, 1) + yday - 1);
        month = m;
        day = d;
    }
    let month = if month == 0 { 1 } else { month };
    let day = if day == 0 { 1 } else { day };
    if month > 12 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
        return Err(format!("parsing {value:?}: value out of range"));
    }
    let off = off.unwrap_or(0);
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    Ok(Time {
        secs: local - i64::from(off),
        nanos,
        off,
    })
}

/// Matches layout literal text, treating a run of spaces as matching any run of spaces.
fn skip_lit<'v>(mut v: &'v str, mut lit: &str) -> Option<&'v str> {
    while let Some(c) = lit.chars().next() {
        if c == ' ' {
            if !v.is_empty() && !v.starts_with(' ') {
                return None;
            }
            lit = lit.trim_start_matches(' ');
            v = v.trim_start_matches(' ');
            continue;
        }
        v = v.strip_prefix(c)?;
        lit = &lit[c.len_utf8()..];
    }
    Some(v)
}

fn take_digits(v: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let n = v.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((v[..n].parse().ok()?, &v[n..]))
}

/// Reads fractional-second digits (any count, nanosecond precision).
fn take_frac(v: &str) -> (u32, &str) {
    let n = v.bytes().take_while(u8::is_ascii_digit).count();
    let mut ns = 0u32;
    for (i, c) in v.bytes().take(n).enumerate() {
        if i < 9 {
            ns += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
    }
    (ns, &v[n..])
}

fn lookup_name<'v>(v: &'v str, names: &[&str], short: bool) -> Option<(usize, &'v str)> {
    for (i, name) in names.iter().enumerate() {
        let name = if short { &name[..3] } else { name };
        if v.len() >= name.len()
            && v.is_char_boundary(name.len())
            && v[..name.len()].eq_ignore_ascii_case(name)
        {
            return Some((i, &v[name.len()..]));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// `.name`
    Field(String),
    /// `.`
    Dot,
    /// `$name` or `$`
    Var(String),
    Ident(String),
    Lit(Value),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    offset: usize,
    /// Whether whitespace separates this token from the previous one.
    spaced: bool,
}

enum Item {
    Text(String),
    Action { offset: usize, toks: Vec<Token> },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the template into text and tokenised actions, applying trim markers and dropping
/// comments.
fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while pos <= b.len() {
        let Some(rel) = src[pos..].find("{{") else {
            let mut text = &src[pos..];
            if trim_next {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            break;
        };
        let start = pos + rel;
        let mut text = &src[pos..start];
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let mut p = start + 2;
        if b.get(p) == Some(&b'-') && b.get(p + 1).is_some_and(|&c| is_space(c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            p += 2;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        if src[p..].starts_with("/*") {
            let Some(end) = src[p + 2..].find("*/") else {
                return perr(start, "unclosed comment");
            };
            let mut q = p + 2 + end + 2;
            if src[q..].starts_with("}}") {
                trim_next = false;
                pos = q + 2;
            } else if q < b.len() && is_space(b[q]) && src[q + 1..].starts_with("-}}") {
                q += 4;
                trim_next = true;
                pos = q;
            } else {
                return perr(q, "comment ends before closing delimiter");
            }
            continue;
        }
        let (toks, end, trim) = lex_action(src, p)?;
        items.push(Item::Action {
            offset: start,
            toks,
        });
        trim_next = trim;
        pos = end;
    }
    Ok(items)
}

/// Tokenises one action starting at `p`; returns the tokens, the offset after `}}` and whether
/// a right trim marker was present.
fn lex_action(src: &str, mut p: usize) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut paren = 0usize;
    loop {
        let mut spaced = false;
        while p < b.len() && is_space(b[p]) {
            p += 1;
            spaced = true;
        }
        if p >= b.len() {
            return perr(p, "unclosed action");
        }
        let rest = &src[p..];
        if spaced && rest.starts_with("-}}") {
            if paren > 0 {
                return perr(p, "unclosed left paren");
            }
            return Ok((toks, p + 3, true));
        }
        if rest.starts_with("}}") {
            if paren > 0 {
                return perr(p, "unclosed left paren");
            }
            return Ok((toks, p + 2, false));
        }
        let start = p;
        let c = b[p];
        let tok = match c {
            b'|' => {
                p += 1;
                Tok::Pipe
            }
            b'(' => {
                p += 1;
                paren += 1;
                Tok::LParen
            }
            b')' => {
                if paren == 0 {
                    return perr(p, "unexpected right paren");
                }
                paren -= 1;
                p += 1;
                Tok::RParen
            }
            b',' => {
                p += 1;
                Tok::Comma
            }
            b':' => {
                if b.get(p + 1) != Some(&b'=') {
                    return perr(p, "expected :=");
                }
                p += 2;
                Tok::Declare
            }
            b'=' => {
                p += 1;
                Tok::Assign
            }
            b'"' => {
                let (s, end) = lex_quoted(src, p)?;
                p = end;
                Tok::Lit(Value::Str(s))
            }
            b'`' => {
                let Some(end) = src[p + 1..].find('`') else {
                    return perr(p, "unterminated raw quoted string");
                };
                let s = src[p + 1..p + 1 + end].to_string();
                p += end + 2;
                Tok::Lit(Value::Str(s))
            }
            b'\'' => {
                let (ch, end) = lex_char(src, p)?;
                p = end;
                Tok::Lit(Value::Int(i64::from(u32::from(ch))))
            }
            b'$' => {
                p += 1;
                while p < b.len() && is_ident_byte(b[p]) {
                    p += 1;
                }
                Tok::Var(src[start..p].to_string())
            }
            b'.' if b.get(p + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let (v, end) = lex_number(src, p)?;
                p = end;
                Tok::Lit(v)
            }
            b'.' => {
                p += 1;
                if p < b.len() && is_ident_byte(b[p]) && !b[p].is_ascii_digit() {
                    while p < b.len() && is_ident_byte(b[p]) {
                        p += 1;
                    }
                    Tok::Field(src[start + 1..p].to_string())
                } else {
                    Tok::Dot
                }
            }
            b'0'..=b'9' => {
                let (v, end) = lex_number(src, p)?;
                p = end;
                Tok::Lit(v)
            }
            b'+' | b'-'
                if b.get(p + 1)
                    .is_some_and(|&c| c.is_ascii_digit() || c == b'.') =>
            {
                let (v, end) = lex_number(src, p)?;
                p = end;
                Tok::Lit(v)
            }
            c if is_ident_byte(c) || c >= 0x80 => {
                while p < b.len() && (is_ident_byte(b[p]) || b[p] >= 0x80) {
                    p += 1;
                }
                match &src[start..p] {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "nil" => Tok::Nil,
                    w => Tok::Ident(w.to_string()),
                }
            }
            _ => {
                let ch = rest.chars().next().unwrap_or('?');
                return perr(p, format!("unexpected {ch:?} in action"));
            }
        };
        toks.push(Token {
            tok,
            offset: start,
            spaced,
        });
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Lexes a Go number literal at `p`: decimal, hex, octal or binary integers (with `_`
/// separators) and decimal floats.
fn lex_number(src: &str, p: usize) -> Result<(Value, usize), TemplateError> {
    let b = src.as_bytes();
    let mut q = p;
    if b[q] == b'+' || b[q] == b'-' {
        q += 1;
    }
    while q < b.len() {
        let c = b[q];
        let prev = b[q - 1];
        let exp_sign = (c == b'+' || c == b'-') && matches!(prev, b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
            q += 1;
        } else {
            break;
        }
    }
    let text = &src[p..q];
    match parse_go_number(text) {
        Some(v) => Ok((v, q)),
        None => perr(p, format!("bad number syntax: {text:?}")),
    }
}

fn parse_go_number(text: &str) -> Option<Value> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') {
        return None;
    }
    let clean: String = body.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if let Ok(u) = u64::from_str_radix(digits, radix) {
        if neg {
            return if u <= i64::MAX as u64 + 1 {
                Some(Value::Int((u as i64).wrapping_neg()))
            } else {
                Some(Value::Float(-(u as f64)))
            };
        }
        return Some(if u <= i64::MAX as u64 {
            Value::Int(u as i64)
        } else {
            Value::Float(u as f64)
        });
    }
    if radix != 10
        || !digits
            .bytes()
            .all(|c| c.is_ascii_digit() || b".e+-".contains(&c))
    {
        return None;
    }
    let f: f64 = digits.parse().ok()?;
    Some(Value::Float(if neg { -f } else { f }))
}

/// Lexes a double-quoted Go string literal starting at `p` (the opening quote).
fn lex_quoted(src: &str, p: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = src[p + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, p + 1 + i + 1)),
            '\n' => return perr(p, "unterminated quoted string"),
            '\\' => {
                let rest = &src[p + 1 + i + 1..];
                let (ch, used) = unescape(rest, '"').ok_or_else(|| TemplateError::Parse {
                    offset: p + 1 + i,
                    msg: "invalid escape in quoted string".into(),
                })?;
                out.push(ch);
                for _ in 0..used {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    perr(p, "unterminated quoted string")
}

/// Lexes a Go character constant like `'a'` or `'\n'` starting at `p`.
fn lex_char(src: &str, p: usize) -> Result<(char, usize), TemplateError> {
    let rest = &src[p + 1..];
    let mut it = rest.chars();
    let (ch, used) = match it.next() {
        Some('\\') => match unescape(&rest[1..], '\'') {
            Some((c, n)) => (
                c,
                1 + rest[1..].chars().take(n).map(char::len_utf8).sum::<usize>(),
            ),
            None => return perr(p, "invalid escape in character constant"),
        },
        Some('\'') | Some('\n') | None => return perr(p, "bad character constant"),
        Some(c) => (c, c.len_utf8()),
    };
    if !rest[used..].starts_with('\'') {
        return perr(p, "unterminated character constant");
    }
    Ok((ch, p + 1 + used + 1))
}

/// Decodes the escape after a backslash; returns the character and how many characters of
/// `rest` it used.
fn unescape(rest: &str, quote: char) -> Option<(char, usize)> {
    let mut it = rest.chars();
    let c = it.next()?;
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        c if c == quote => Some(c),
        _ => None,
    };
    if let Some(s) = simple {
        return Some((s, 1));
    }
    let (len, radix) = match c {
        'x' => (2, 16),
        'u' => (4, 16),
        'U' => (8, 16),
        '0'..='7' => (3, 8),
        _ => return None,
    };
    let start = if radix == 8 { 0 } else { 1 };
    let digits: String = rest.chars().skip(start).take(len).collect();
    if digits.chars().count() != len {
        return None;
    }
    let n = u32::from_str_radix(&digits, radix).ok()?;
    let ch = if c == 'x' || radix == 8 {
        // Bytes above 0x7f cannot stand alone in a Rust string; keep them as U+FFFD.
        if n > 0xff {
            return None;
        }
        if n < 0x80 {
            char::from(n as u8)
        } else {
            '\u{fffd}'
        }
    } else {
        char::from_u32(n)?
    };
    Some((ch, start + len))
}

// ---------------------------------------------------------------------------------------------
// Parse tree
// ---------------------------------------------------------------------------------------------

type FuncImpl = fn(&[Value]) -> Result<Value, String>;

struct FuncDef {
    name: &'static str,
    min: usize,
    /// `None` for variadic.
    max: Option<usize>,
    f: FuncImpl,
}

#[derive(Debug)]
enum Node {
    Text(String),
    Action(Pipe),
    If {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Debug)]
struct Pipe {
    decl: Vec<String>,
    is_assign: bool,
    cmds: Vec<Cmd>,
}

#[derive(Debug)]
struct Cmd {
    offset: usize,
    args: Vec<Operand>,
    /// A literal regular expression compiled at parse time, for the regex functions.
    regex: Option<Arc<regex::Regex>>,
}

#[derive(Debug)]
enum Operand {
    Func(&'static FuncDef),
    /// `.` followed by zero or more fields.
    Dot(Vec<String>),
    /// A variable followed by zero or more fields.
    Var(String, Vec<String>),
    Lit(Value),
    Nil,
    /// `( pipeline )` followed by zero or more fields.
    Sub(Box<Pipe>, Vec<String>),
    Line,
    Timestamp,
}

impl std::fmt::Debug for FuncDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

struct Parser {
    items: Vec<Item>,
    pos: usize,
    vars: Vec<String>,
    depth: usize,
    labels: Vec<String>,
    /// Whether a label may be read by another way than `.name` or `$.name` (a field of a
    /// variable or of a parenthesised pipeline holding the labels).
    opaque: bool,
}

/// How a list of nodes ended.
enum Stop {
    Eof,
    End,
    Else(usize, Vec<Token>),
}

impl Parser {
    fn enter(&mut self, offset: usize) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(TemplateError::TooDeep { offset });
        }
        Ok(())
    }

    fn parse_list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let idx = self.pos;
            self.pos += 1;
            let (offset, toks) = match &mut self.items[idx] {
                Item::Text(t) => {
                    nodes.push(Node::Text(std::mem::take(t)));
                    continue;
                }
                Item::Action { offset, toks } => (*offset, std::mem::take(toks)),
            };
            let keyword = match toks.first().map(|t| &t.tok) {
                Some(Tok::Ident(w)) => w.as_str(),
                _ => "",
            };
            match keyword {
                "end" => {
                    if toks.len() > 1 {
                        return perr(toks[1].offset, "unexpected token after end");
                    }
                    return Ok((nodes, Stop::End));
                }
                "else" => return Ok((nodes, Stop::Else(offset, toks[1..].to_vec()))),
                "if" | "with" => {
                    let node = self.parse_if_with(keyword == "if", offset, &toks[1..])?;
                    nodes.push(node);
                }
                "range" => {
                    let node = self.parse_range(offset, &toks[1..])?;
                    nodes.push(node);
                }
                "break" | "continue" => {
                    if toks.len() > 1 {
                        return perr(toks[1].offset, format!("unexpected token after {keyword}"));
                    }
                    nodes.push(if keyword == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                "define" | "template" | "block" => {
                    return perr(offset, format!("{keyword} is not supported"));
                }
                _ => {
                    if toks.is_empty() {
                        return perr(offset, "missing value for command");
                    }
                    let pipe = self.parse_pipe(offset, &toks, false)?;
                    nodes.push(Node::Action(pipe));
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn parse_if_with(
        &mut self,
        is_if: bool,
        offset: usize,
        toks: &[Token],
    ) -> Result<Node, TemplateError> {
        let what = if is_if { "if" } else { "with" };
        self.enter(offset)?;
        let mark = self.vars.len();
        let mut branches = Vec::new();
        let mut otherwise = Vec::new();
        let mut cond_toks = toks.to_vec();
        let mut cond_offset = offset;
        loop {
            if cond_toks.is_empty() {
                return perr(cond_offset, format!("missing value for {what}"));
            }
            let pipe = self.parse_pipe(cond_offset, &cond_toks, false)?;
            let (body, end) = self.parse_list()?;
            branches.push((pipe, body));
            match end {
                Stop::Eof => return perr(offset, format!("unexpected EOF: {what} without end")),
                Stop::End => break,
                Stop::Else(else_offset, rest) => {
                    let chained =
                        matches!(rest.first(), Some(Token { tok: Tok::Ident(w), .. }) if w == what);
                    if chained {
                        cond_toks = rest[1..].to_vec();
                        cond_offset = else_offset;
                        continue;
                    }
                    if let Some(t) = rest.first() {
                        return perr(t.offset, "unexpected token after else");
                    }
                    let (body, end) = self.parse_list()?;
                    otherwise = body;
                    match end {
                        Stop::End => break,
                        Stop::Eof => {
                            return perr(offset, format!("unexpected EOF: {what} without end"))
                        }
                        Stop::Else(o, _) => return perr(o, "else after else"),
                    }
                }
            }
        }
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(if is_if {
            Node::If {
                branches,
                otherwise,
            }
        } else {
            Node::With {
                branches,
                otherwise,
            }
        })
    }

    fn parse_range(&mut self, offset: usize, toks: &[Token]) -> Result<Node, TemplateError> {
        self.enter(offset)?;
        let mark = self.vars.len();
        if toks.is_empty() {
            return perr(offset, "missing value for range");
        }
        let pipe = self.parse_pipe(offset, toks, true)?;
        let (body, end) = self.parse_list()?;
        let otherwise = match end {
            Stop::End => Vec::new(),
            Stop::Eof => return perr(offset, "unexpected EOF: range without end"),
            Stop::Else(o, rest) => {
                if !rest.is_empty() {
                    return perr(o, "unexpected token after else");
                }
                let (body, end) = self.parse_list()?;
                match end {
                    Stop::End => body,
                    Stop::Eof => return perr(offset, "unexpected EOF: range without end"),
                    Stop::Else(o, _) => return perr(o, "else after else"),
                }
            }
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(Node::Range {
            pipe,
            body,
            otherwise,
        })
    }

    /// Parses `[decl :=] cmd | cmd ...` from a whole token slice.
    fn parse_pipe(
        &mut self,
        offset: usize,
        toks: &[Token],
        in_range: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut i = 0;
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, or in range `$i, $e :=`.
        if let Some(Tok::Var(_)) = toks.first().map(|t| &t.tok) {
            let mut j = 0;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = toks.get(j).map(|t| &t.tok) {
                names.push(v.clone());
                match toks.get(j + 1).map(|t| &t.tok) {
                    Some(Tok::Comma) if in_range && names.len() < 2 => j += 2,
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        is_assign = toks[j + 1].tok == Tok::Assign;
                        decl = names.clone();
                        i = j + 2;
                        break;
                    }
                    _ => break,
                }
            }
            if is_assign {
                for name in &decl {
                    if !self.vars.contains(name) {
                        return perr(offset, format!("undefined variable {name:?}"));
                    }
                }
            }
        }
        let mut cmds = Vec::new();
        let rest = &toks[i..];
        if rest.is_empty() {
            return perr(offset, "missing value for command");
        }
        let mut k = 0;
        loop {
            let (cmd, used) = self.parse_cmd(rest, k, offset)?;
            if !cmds.is_empty() && !matches!(cmd.args.first(), Some(Operand::Func(_))) {
                return perr(
                    cmd.offset,
                    format!(
                        "non executable command in pipeline stage {}",
                        cmds.len() + 1
                    ),
                );
            }
            cmds.push(cmd);
            k = used;
            match rest.get(k).map(|t| &t.tok) {
                None => break,
                Some(Tok::Pipe) => {
                    k += 1;
                    if k >= rest.len() {
                        return perr(rest[k - 1].offset, "missing command after |");
                    }
                }
                Some(_) => return perr(rest[k].offset, "unexpected token in pipeline"),
            }
        }
        if !is_assign {
            for name in &decl {
                self.vars.push(name.clone());
            }
        }
        Ok(Pipe {
            decl,
            is_assign,
            cmds,
        })
    }

    /// Parses one command starting at `toks[k]`; stops before `|`, `)` or the end.
    fn parse_cmd(
        &mut self,
        toks: &[Token],
        mut k: usize,
        offset: usize,
    ) -> Result<(Cmd, usize), TemplateError> {
        let cmd_offset = toks.get(k).map_or(offset, |t| t.offset);
        let mut args = Vec::new();
        while let Some(t) = toks.get(k) {
            if matches!(t.tok, Tok::Pipe | Tok::RParen) {
                break;
            }
            if !args.is_empty() && !t.spaced && !matches!(t.tok, Tok::LParen) {
                return perr(t.offset, "missing space between arguments");
            }
            let (op, used) = self.parse_operand(toks, k)?;
            args.push(op);
            k = used;
        }
        if args.is_empty() {
            return perr(cmd_offset, "missing value for command");
        }
        if matches!(args[..], [Operand::Nil]) {
            return perr(cmd_offset, "nil is not a command");
        }
        if args.len() > 1 && !matches!(args[0], Operand::Func(_)) {
            return perr(cmd_offset, "can't give argument to non-function");
        }
        for a in &args[1..] {
            if let Operand::Func(f) = a {
                // Go calls a niladic function used as an argument; others need parentheses.
                if f.min > 0 {
                    return perr(
                        cmd_offset,
                        format!("{} needs arguments; use parentheses", f.name),
                    );
                }
            }
        }
        let regex = match (&args[..], args.get(1)) {
            ([Operand::Func(f), ..], Some(Operand::Lit(Value::Str(p))))
                if f.name.starts_with("regexReplaceAll") || f.name == "count" =>
            {
                match compile_regex(p) {
                    Ok(re) => Some(Arc::new(re)),
                    Err(e) => return perr(cmd_offset, e),
                }
            }
            _ => None,
        };
        Ok((
            Cmd {
                offset: cmd_offset,
                args,
                regex,
            },
            k,
        ))
    }

    fn parse_operand(
        &mut self,
        toks: &[Token],
        k: usize,
    ) -> Result<(Operand, usize), TemplateError> {
        let t = &toks[k];
        let mut k = k + 1;
        let op = match &t.tok {
            Tok::Field(name) => {
                self.labels.push(name.clone());
                let mut fields = vec![name.clone()];
                k = chain(toks, k, &mut fields);
                return Ok((Operand::Dot(fields), k));
            }
            Tok::Dot => Operand::Dot(Vec::new()),
            Tok::Var(name) => {
                if !self.vars.contains(name) {
                    return perr(t.offset, format!("undefined variable {name:?}"));
                }
                let mut fields = Vec::new();
                k = chain(toks, k, &mut fields);
                if name == "$" {
                    if let Some(f) = fields.first() {
                        self.labels.push(f.clone());
                    }
                } else if !fields.is_empty() {
                    self.opaque = true;
                }
                return Ok((Operand::Var(name.clone(), fields), k));
            }
            Tok::Lit(v) => Operand::Lit(v.clone()),
            Tok::Nil => Operand::Nil,
            Tok::Ident(name) => match name.as_str() {
                "__line__" => Operand::Line,
                "__timestamp__" => Operand::Timestamp,
                _ => match lookup(name) {
                    Some(f) => Operand::Func(f),
                    None => return perr(t.offset, format!("function {name:?} not defined")),
                },
            },
            Tok::LParen => {
                self.enter(t.offset)?;
                // Find the matching right paren.
                let mut depth = 1;
                let mut j = k;
                while j < toks.len() {
                    match toks[j].tok {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= toks.len() {
                    return perr(t.offset, "unclosed left paren");
                }
                let inner = &toks[k..j];
                if inner.is_empty() {
                    return perr(t.offset, "missing value in parentheses");
                }
                if inner
                    .iter()
                    .any(|t| matches!(t.tok, Tok::Declare | Tok::Assign))
                {
                    return perr(t.offset, "variable declaration inside parentheses");
                }
                let pipe = self.parse_pipe(t.offset, inner, false)?;
                self.depth -= 1;
                let mut fields = Vec::new();
                let k = chain(toks, j + 1, &mut fields);
                self.opaque |= !fields.is_empty();
                return Ok((Operand::Sub(Box::new(pipe), fields), k));
            }
            Tok::RParen | Tok::Pipe => return perr(t.offset, "unexpected token"),
            Tok::Declare | Tok::Assign | Tok::Comma => {
                return perr(t.offset, "unexpected declaration or comma")
            }
        };
        if let Some(next) = toks.get(k) {
            if matches!(next.tok, Tok::Field(_)) && !next.spaced {
                return perr(next.offset, "unexpected field after non-field value");
            }
        }
        Ok((op, k))
    }
}

/// Appends the `.a.b` fields directly following position `k`; returns the next position.
fn chain(toks: &[Token], mut k: usize, fields: &mut Vec<String>) -> usize {
    while let Some(Token {
        tok: Tok::Field(f),
        spaced: false,
        ..
    }) = toks.get(k)
    {
        fields.push(f.clone());
        k += 1;
    }
    k
}

fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// A parsed template, ready to render against many entries.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
    labels: Vec<String>,
    opaque: bool,
}

impl Template {
    /// Parses `text` as a Go template using Loki's function map.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let items = lex(text)?;
        let mut p = Parser {
            items,
            pos: 0,
            vars: vec!["$".to_string()],
            depth: 0,
            labels: Vec::new(),
            opaque: false,
        };
        let (nodes, end) = p.parse_list()?;
        match end {
            Stop::Eof => {}
            Stop::End => return perr(text.len(), "unexpected end"),
            Stop::Else(o, _) => return perr(o, "unexpected else"),
        }
        let mut labels = p.labels;
        labels.sort();
        labels.dedup();
        Ok(Template {
            nodes,
            labels,
            opaque: p.opaque,
        })
    }

    /// Renders the template for one entry, appending to `out`.
    ///
    /// `vars(name)` is a label's value (`None` when absent, which renders as an empty string);
    /// `line` is `__line__` and `ts_ns` (Unix nanoseconds) is `__timestamp__`.
    pub fn render(
        &self,
        vars: &dyn Fn(&str) -> Option<String>,
        line: &str,
        ts_ns: i64,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let mut ex = Exec {
            vars,
            line,
            ts_ns,
            stack: vec![("$".to_string(), Value::Labels)],
            start: out.len(),
            steps: 0,
        };
        match ex.walk(&self.nodes, &Value::Labels, out) {
            Ok(Flow::Normal) => Ok(()),
            Ok(_) => Err(TemplateError::Exec(
                "break or continue outside range".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Label names the template reads via `.name` (or `$.name`).
    pub fn referenced_labels(&self) -> Vec<String> {
        self.labels.clone()
    }

    /// Every label the template reads, or `None` when it may read others (through a
    /// variable or a parenthesised pipeline holding the labels).
    pub fn read_labels(&self) -> Option<&[String]> {
        (!self.opaque).then_some(&self.labels[..])
    }
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

enum Flow {
    Normal,
    Break,
    Continue,
}

struct Exec<'a> {
    vars: &'a dyn Fn(&str) -> Option<String>,
    line: &'a str,
    ts_ns: i64,
    stack: Vec<(String, Value)>,
    start: usize,
    steps: usize,
}

fn xerr<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Exec(msg.into()))
}

impl Exec<'_> {
    fn step(&mut self) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(TemplateError::TooManySteps);
        }
        Ok(())
    }

    fn walk(
        &mut self,
        nodes: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<Flow, TemplateError> {
        for node in nodes {
            self.step()?;
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipe(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        match v {
                            Value::Nil => out.push_str("<no value>"),
                            v => v.write_to(out),
                        }
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mark = self.stack.len();
                    let mut flow = None;
                    for (cond, body) in branches {
                        if self.pipe(cond, dot)?.truthy() {
                            flow = Some(self.walk(body, dot, out)?);
                            break;
                        }
                    }
                    let flow = match flow {
                        Some(f) => f,
                        None => self.walk(otherwise, dot, out)?,
                    };
                    self.stack.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With {
                    branches,
                    otherwise,
                } => {
                    let mark = self.stack.len();
                    let mut flow = None;
                    for (cond, body) in branches {
                        let v = self.pipe(cond, dot)?;
                        if v.truthy() {
                            flow = Some(self.walk(body, &v, out)?);
                            break;
                        }
                    }
                    let flow = match flow {
                        Some(f) => f,
                        None => self.walk(otherwise, dot, out)?,
                    };
                    self.stack.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.stack.len();
                    self.range(pipe, body, otherwise, dot, out)?;
                    self.stack.truncate(mark);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
            if out.len() - self.start > MAX_OUTPUT {
                return Err(TemplateError::OutputTooLarge);
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        // Evaluate without declaring; range binds its variables per element.
        let v = self.cmds(&pipe.cmds, dot)?;
        let elems: Vec<(Value, Value)> = match v {
            Value::List(l) => l
                .into_iter()
                .enumerate()
                .map(|(i, e)| (Value::Int(i as i64), e))
                .collect(),
            Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
            Value::Int(n) => {
                if n > MAX_STEPS as i64 {
                    return Err(TemplateError::TooManySteps);
                }
                (0..n.max(0))
                    .map(|i| (Value::Int(i), Value::Int(i)))
                    .collect()
            }
            Value::Nil => Vec::new(),
            other => return xerr(format!("range can't iterate over {}", other.type_name())),
        };
        if elems.is_empty() {
            self.walk(otherwise, dot, out)?;
            return Ok(());
        }
        for (key, elem) in elems {
            let mark = self.stack.len();
            match pipe.decl.as_slice() {
                [] => {}
                [e] => self.stack.push((e.clone(), elem.clone())),
                [k, e, ..] => {
                    self.stack.push((k.clone(), key));
                    self.stack.push((e.clone(), elem.clone()));
                }
            }
            let flow = self.walk(body, &elem, out)?;
            self.stack.truncate(mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(())
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let v = self.cmds(&pipe.cmds, dot)?;
        if pipe.is_assign {
            for name in &pipe.decl {
                if let Some(slot) = self.stack.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                } else {
                    return xerr(format!("undefined variable {name:?}"));
                }
            }
        } else {
            for name in &pipe.decl {
                self.stack.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn cmds(&mut self, cmds: &[Cmd], dot: &Value) -> Result<Value, TemplateError> {
        let mut piped: Option<Value> = None;
        for cmd in cmds {
            self.step()?;
            piped = Some(self.cmd(cmd, dot, piped)?);
        }
        Ok(piped.unwrap_or(Value::Nil))
    }

    fn cmd(
        &mut self,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let first = &cmd.args[0];
        let Operand::Func(f) = first else {
            if piped.is_some() {
                return xerr("can't give argument to non-function");
            }
            return self.operand(first, dot);
        };
        match f.name {
            "and" | "or" => return self.and_or(f.name == "and", cmd, dot, piped),
            _ => {}
        }
        let mut args = Vec::with_capacity(cmd.args.len());
        for a in &cmd.args[1..] {
            args.push(self.operand(a, dot)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        let n = args.len();
        if n < f.min || f.max.is_some_and(|m| n > m) {
            let want = match f.max {
                Some(m) if m == f.min => m.to_string(),
                Some(m) => format!("{}..{}", f.min, m),
                None => format!("at least {}", f.min),
            };
            return xerr(format!(
                "wrong number of args for {}: want {want} got {n}",
                f.name
            ));
        }
        let result = match (&cmd.regex, f.name) {
            (Some(re), "regexReplaceAll") => regex_replace(re, &args, false),
            (Some(re), "regexReplaceAllLiteral") => regex_replace(re, &args, true),
            (Some(re), "count") => Ok(Value::Int(re.find_iter(&args[1].to_str()).count() as i64)),
            _ => (f.f)(&args),
        };
        let v = result.map_err(|e| {
            TemplateError::Exec(format!(
                "at byte {}: error calling {}: {e}",
                cmd.offset, f.name
            ))
        })?;
        if let Value::Str(s) = &v {
            if s.len() > MAX_OUTPUT {
                return Err(TemplateError::OutputTooLarge);
            }
        }
        Ok(v)
    }

    fn and_or(
        &mut self,
        is_and: bool,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let n = cmd.args.len() - 1 + usize::from(piped.is_some());
        if n == 0 {
            return xerr(format!(
                "wrong number of args for {}: want at least 1 got 0",
                if is_and { "and" } else { "or" }
            ));
        }
        let mut last = Value::Nil;
        for a in &cmd.args[1..] {
            last = self.operand(a, dot)?;
            if last.truthy() != is_and {
                return Ok(last);
            }
        }
        if let Some(p) = piped {
            last = p;
        }
        Ok(last)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        match op {
            Operand::Func(f) => {
                if f.min > 0 {
                    return xerr(format!(
                        "wrong number of args for {}: want {} got 0",
                        f.name, f.min
                    ));
                }
                (f.f)(&[])
                    .map_err(|e| TemplateError::Exec(format!("error calling {}: {e}", f.name)))
            }
            Operand::Dot(fields) => self.fields(dot.clone(), fields),
            Operand::Var(name, fields) => {
                let Some((_, v)) = self.stack.iter().rev().find(|(n, _)| n == name) else {
                    return xerr(format!("undefined variable {name:?}"));
                };
                let v = v.clone();
                self.fields(v, fields)
            }
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Nil => Ok(Value::Nil),
            Operand::Sub(pipe, fields) => {
                let v = self.cmds(&pipe.cmds, dot)?;
                self.fields(v, fields)
            }
            Operand::Line => Ok(Value::Str(self.line.to_string())),
            Operand::Timestamp => Ok(Value::Time(Time::from_ns(self.ts_ns))),
        }
    }

    fn fields(&mut self, mut v: Value, fields: &[String]) -> Result<Value, TemplateError> {
        for f in fields {
            v = match v {
                Value::Labels => Value::Str((self.vars)(f).unwrap_or_default()),
                Value::Map(mut m) => m.remove(f).unwrap_or(Value::Nil),
                Value::Nil => return xerr(format!("nil pointer evaluating interface {{}}.{f}")),
                other => {
                    return xerr(format!(
                        "can't evaluate field {f} in type {}",
                        other.type_name()
                    ))
                }
            };
        }
        Ok(v)
    }
}

/// `regexp.ReplaceAllString` (or `ReplaceAllLiteralString`), failing once the result would
/// exceed the output limit.
fn regex_replace(re: &regex::Regex, args: &[Value], literal: bool) -> Result<Value, String> {
    let src = args[1].to_str();
    let repl = args[2].to_str();
    let mut out = String::with_capacity(src.len());
    let mut last = 0;
    for caps in re.captures_iter(&src) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&src[last..m.start()]);
        if literal {
            out.push_str(&repl);
        } else {
            caps.expand(&repl, &mut out);
        }
        last = m.end();
        check_len(out.len())?;
    }
    out.push_str(&src[last..]);
    check_len(out.len())?;
    Ok(Value::Str(out))
}

// ---------------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------------

fn lookup(name: &str) -> Option<&'static FuncDef> {
    FUNCS.iter().find(|f| f.name == name)
}

const fn def(name: &'static str, min: usize, max: Option<usize>, f: FuncImpl) -> FuncDef {
    FuncDef { name, min, max, f }
}

fn s(v: String) -> Result<Value, String> {
    Ok(Value::Str(v))
}

/// sprig's `toInt64`: lenient, unparsable strings become 0.
fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => *f as i64,
        Value::Bool(b) => i64::from(*b),
        Value::Str(s) => parse_go_int(s.trim_end_matches(".0")).unwrap_or(0),
        Value::Time(t) => t.secs,
        _ => 0,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn parse_go_int(s: &str) -> Option<i64> {
    if s.is_empty() || s.contains(['.', 'e', 'E']) && !s.starts_with("0x") && !s.starts_with("0X") {
        return None;
    }
    match parse_go_number(s)? {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

/// sprig's `toFloat64`: lenient, unparsable strings become 0.
fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Go's (and sprig's) notion of an empty value.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Time(t) => t.secs == ZERO_TIME_SECS && t.nanos == 0,
        Value::Labels => false,
        v => !v.truthy(),
    }
}

fn check_len(n: usize) -> Result<(), String> {
    if n > MAX_OUTPUT {
        return Err(format!("result too large: {n} bytes, limit {MAX_OUTPUT}"));
    }
    Ok(())
}

/// Go's `strings.Trim` family with a cutset.
fn trim_set(v: &str, cutset: &str, left: bool, right: bool) -> String {
    let set = |c: char| cutset.contains(c);
    let mut out = v;
    if left {
        out = out.trim_start_matches(set);
    }
    if right {
        out = out.trim_end_matches(set);
    }
    out.to_string()
}

/// Byte-range slicing as Go does, made UTF-8 safe.
fn byte_slice(v: &str, start: usize, end: usize) -> String {
    String::from_utf8_lossy(&v.as_bytes()[start..end]).into_owned()
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
fn title(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut prev_sep = true;
    for c in v.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}

fn trunc(a: &[Value]) -> Result<Value, String> {
    let n = to_i64(&a[0]);
    let v = a[1].to_str();
    let len = v.len() as i64;
    s(if n < 0 && len + n > 0 {
        byte_slice(&v, (len + n) as usize, v.len())
    } else if n >= 0 && len > n {
        byte_slice(&v, 0, n as usize)
    } else {
        v
    })
}

fn substr(a: &[Value]) -> Result<Value, String> {
    let (start, end) = (to_i64(&a[0]), to_i64(&a[1]));
    let v = a[2].to_str();
    let len = v.len() as i64;
    let (lo, hi) = if start < 0 {
        (0, end)
    } else if end < 0 || end > len {
        (start, len)
    } else {
        (start, end)
    };
    if lo < 0 || hi < lo || hi > len {
        return Err(format!(
            "slice bounds out of range [{lo}:{hi}] with length {len}"
        ));
    }
    s(byte_slice(&v, lo as usize, hi as usize))
}

fn repeat(a: &[Value]) -> Result<Value, String> {
    let n = to_i64(&a[0]);
    let v = a[1].to_str();
    if n < 0 {
        return Err("negative repeat count".into());
    }
    check_len(
        v.len()
            .saturating_mul(usize::try_from(n).unwrap_or(usize::MAX)),
    )?;
    s(v.repeat(n as usize))
}

/// Replaces the first `limit` (or all) occurrences of `old`, failing when the result would
/// exceed the output limit.
fn bounded_replace(v: &str, old: &str, new: &str, limit: Option<usize>) -> Result<Value, String> {
    let found = if old.is_empty() {
        v.chars().count() + 1
    } else {
        v.matches(old).count()
    };
    let n = limit.map_or(found, |l| l.min(found));
    check_len((v.len() - n * old.len()).saturating_add(n.saturating_mul(new.len())))?;
    s(v.replacen(old, new, n))
}

fn go_replace(a: &[Value]) -> Result<Value, String> {
    let (v, old, new) = (a[0].to_str(), a[1].to_str(), a[2].to_str());
    let n = to_i64(&a[3]);
    bounded_replace(&v, &old, &new, usize::try_from(n).ok())
}

fn sprig_replace(a: &[Value]) -> Result<Value, String> {
    let (old, new, v) = (a[0].to_str(), a[1].to_str(), a[2].to_str());
    bounded_replace(&v, &old, &new, None)
}

fn default_fn(a: &[Value]) -> Result<Value, String> {
    match a.get(1) {
        Some(v) if !is_empty(v) => Ok(v.clone()),
        _ => Ok(a[0].clone()),
    }
}

fn len_fn(a: &[Value]) -> Result<Value, String> {
    Ok(Value::Int(match &a[0] {
        Value::Str(v) => v.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        Value::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    } as i64))
}

fn index_fn(a: &[Value]) -> Result<Value, String> {
    let mut v = a[0].clone();
    for idx in &a[1..] {
        v = match (v, idx) {
            (Value::List(mut l), Value::Int(i)) => {
                if *i < 0 || *i as usize >= l.len() {
                    return Err(format!("index out of range: {i}"));
                }
                l.swap_remove(*i as usize)
            }
            (Value::Str(v), Value::Int(i)) => match v.as_bytes().get(*i as usize) {
                Some(b) if *i >= 0 => Value::Int(i64::from(*b)),
                _ => return Err(format!("index out of range: {i}")),
            },
            (Value::Map(mut m), Value::Str(k)) => m.remove(k).unwrap_or(Value::Nil),
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (Value::Labels, _) => return Err("cannot index labels; use .name".into()),
            (v, idx) => {
                return Err(format!(
                    "cannot index {} with {}",
                    v.type_name(),
                    idx.type_name()
                ))
            }
        };
    }
    Ok(v)
}

fn values_eq(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Time(x), Value::Time(y)) => (x.secs, x.nanos) == (y.secs, y.nanos),
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::List(_) | Value::Map(_) | Value::Labels, _)
        | (_, Value::List(_) | Value::Map(_) | Value::Labels) => {
            return Err("non-comparable type".into())
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn eq_fn(a: &[Value]) -> Result<Value, String> {
    for b in &a[1..] {
        if values_eq(&a[0], b)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn values_lt(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => x < y,
        (Value::Float(x), Value::Float(y)) => x < y,
        (Value::Int(x), Value::Float(y)) => (*x as f64) < *y,
        (Value::Float(x), Value::Int(y)) => *x < (*y as f64),
        (Value::Str(x), Value::Str(y)) => x < y,
        (Value::Time(x), Value::Time(y)) => (x.secs, x.nanos) < (y.secs, y.nanos),
        (
            Value::Int(_) | Value::Float(_) | Value::Str(_),
            Value::Int(_) | Value::Float(_) | Value::Str(_),
        ) => return Err("incompatible types for comparison".into()),
        _ => return Err("invalid type for comparison".into()),
    })
}

fn now() -> Time {
    let n = chrono::Utc::now();
    Time {
        secs: n.timestamp(),
        nanos: n.timestamp_subsec_nanos(),
        off: 0,
    }
}

/// sprig's `date` argument: a time, or Unix seconds; anything else means now.
fn as_date(v: &Value) -> Time {
    let t = match v {
        Value::Time(t) => *t,
        Value::Int(secs) => Time {
            secs: *secs,
            nanos: 0,
            off: 0,
        },
        _ => now(),
    };
    // Shown in the server's local zone, which is UTC.
    Time { off: 0, ..t }
}

fn want_time(v: &Value) -> Result<Time, String> {
    match v {
        Value::Time(t) => Ok(*t),
        other => Err(format!(
            "wrong type for value; expected time.Time; got {}",
            other.type_name()
        )),
    }
}

/// sprig's `toDateInZone`: unknown zones fall back to UTC and unparsable input gives the zero
/// time. Only `UTC`, `Local` (taken as UTC) and `Etc/GMT±N` zones are known.
fn to_date(layout: &str, zone: &str, value: &str) -> Time {
    let zone_off = zone_offset(zone).unwrap_or(0);
    match go_parse(layout, value) {
        Ok(t) if t.off == 0 && !layout_has_zone(layout) => Time {
            secs: t.secs - i64::from(zone_off),
            off: zone_off,
            ..t
        },
        Ok(t) => t,
        Err(_) => Time::zero(),
    }
}

fn layout_has_zone(layout: &str) -> bool {
    layout_chunks(layout)
        .iter()
        .any(|c| matches!(c, Chunk::Std(Std::TZ | Std::Offset { .. })))
}

fn zone_offset(zone: &str) -> Option<i32> {
    match zone {
        "" | "UTC" | "Local" | "GMT" | "Etc/UTC" | "Etc/GMT" => Some(0),
        z => {
            // POSIX-style names: Etc/GMT+5 is five hours behind UTC.
            let n: i32 = z.strip_prefix("Etc/GMT")?.parse().ok()?;
            (-14..=14).contains(&n).then_some(-n * 3600)
        }
    }
}

/// Loki's `unixToTime`: the epoch's unit follows from its length (days, s, ms, µs or ns).
fn unix_to_time(epoch: &str) -> Result<Value, String> {
    let n: i64 = epoch
        .parse()
        .map_err(|_| format!("unable to parse time {epoch:?}: invalid syntax"))?;
    let t = match epoch.len() {
        5 => Time {
            secs: n.saturating_mul(86_400),
            nanos: 0,
            off: 0,
        },
        10 => Time {
            secs: n,
            nanos: 0,
            off: 0,
        },
        13 => Time::from_ns(n.saturating_mul(1_000_000)),
        16 => Time::from_ns(n.saturating_mul(1_000)),
        19 => Time::from_ns(n),
        _ => {
            return Err(format!(
                "unable to parse time {epoch:?}: unsupported epoch length"
            ))
        }
    };
    Ok(Value::Time(t))
}

/// Go's `time.ParseDuration`, in seconds.
fn parse_duration(text: &str) -> Option<f64> {
    let (neg, mut v) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if v == "0" {
        return Some(0.0);
    }
    if v.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !v.is_empty() {
        let n = v
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        let num = &v[..n];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let num: f64 = num.parse().ok()?;
        v = &v[n..];
        let u = v
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(v.len(), |(i, _)| i);
        let scale = match &v[..u] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += num * scale;
        v = &v[u..];
    }
    Some(if neg { -total } else { total })
}

/// go-humanize's `ParseBytes`: "42 MB", "42mib", "1,000".
fn parse_bytes(text: &str) -> Option<i64> {
    let t = text.trim();
    let n = t
        .bytes()
        .take_while(|c| c.is_ascii_digit() || *c == b'.' || *c == b',')
        .count();
    let num: f64 = t[..n].replace(',', "").parse().ok()?;
    let unit = t[n..].trim().to_ascii_lowercase();
    let mult: f64 = crate::logql::byte_unit(&unit)?;
    let v = num * mult;
    (v < 9.2e18).then_some(v as i64)
}

/// Go's `url.QueryEscape`.
fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.QueryUnescape`.
fn query_unescape(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = v
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
                let Some(hex) = hex else {
                    let bad = String::from_utf8_lossy(&b[i..(i + 3).min(b.len())]).into_owned();
                    return Err(format!("invalid URL escape {bad:?}"));
                };
                out.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Loki's `alignLeft`/`alignRight`: pad or cut to exactly `count` characters.
fn align(a: &[Value], left: bool) -> Result<Value, String> {
    let count = to_i64(&a[0]);
    let v = a[1].to_str();
    if count < 0 {
        return Err(format!("negative count {count}"));
    }
    check_len(count as usize)?;
    let count = count as usize;
    let n = v.chars().count();
    s(match (n < count, left) {
        (true, true) => format!("{v}{}", " ".repeat(count - n)),
        (true, false) => format!("{}{v}", " ".repeat(count - n)),
        (false, true) => v.chars().take(count).collect(),
        (false, false) => v.chars().skip(n - count).collect(),
    })
}

/// sprig's `indent`: prefixes every line with `spaces` spaces.
fn indent(a: &[Value]) -> Result<String, String> {
    let n = to_i64(&a[0]).max(0) as usize;
    let v = a[1].to_str();
    let lines = v.bytes().filter(|&c| c == b'\n').count() + 1;
    check_len(v.len().saturating_add(n.saturating_mul(lines)))?;
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", v.replace('\n', &format!("\n{pad}"))))
}

/// Decodes JSON the way Go's `json.Unmarshal` into `interface{}` does (numbers are float64).
fn parse_json(text: &str) -> Option<Value> {
    let mut p = JsonParser {
        b: text.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.b.len()).then_some(v)
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && is_space(self.b[self.i]) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match *self.b.get(self.i)? {
            b'{' => {
                self.i += 1;
                let mut m = BTreeMap::new();
                if self.eat(b'}') {
                    return Some(Value::Map(m));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                    if self.eat(b'}') {
                        return Some(Value::Map(m));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut l = Vec::new();
                if self.eat(b']') {
                    return Some(Value::List(l));
                }
                loop {
                    l.push(self.value(depth + 1)?);
                    if self.eat(b']') {
                        return Some(Value::List(l));
                    }
                    if !self.eat(b',') {
                        return None;
                    }
                }
            }
            b'"' => self.string().map(Value::Str),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'n' => self.word("null", Value::Nil),
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                if text.is_empty() || text.starts_with('+') {
                    return None;
                }
                text.parse().ok().map(Value::Float)
            }
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Option<Value> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Some(v)
        } else {
            None
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xd800..0xdc00).contains(&hi)
                                && self.b[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                let cp = 0x10000
                                    + ((hi - 0xd800) << 10)
                                    + (lo.wrapping_sub(0xdc00) & 0x3ff);
                                char::from_u32(cp).unwrap_or('\u{fffd}')
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return None,
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let h = std::str::from_utf8(h).ok()?;
        let v = u32::from_str_radix(h, 16).ok()?;
        self.i += 4;
        Some(v)
    }
}

/// sprig's `round a precision [half]`: rounds half away from zero unless `half` is given.
fn round(a: &[Value]) -> Result<Value, String> {
    let v = to_f64(&a[0]);
    let places = to_i64(&a[1]).clamp(-308, 308) as i32;
    let half = a.get(2).map_or(0.5, to_f64);
    let pow = 10f64.powi(places);
    let digit = pow * v;
    let (int, frac) = (digit.trunc(), digit.fract());
    let rounded = if frac.abs() >= half {
        int + frac.signum()
    } else {
        int
    };
    Ok(Value::Float(rounded / pow))
}

static FUNCS: &[FuncDef] = &[
    // Go template builtins (`and`/`or` are evaluated lazily by the executor).
    def("and", 1, None, |a| Ok(a[0].clone())),
    def("or", 1, None, |a| Ok(a[0].clone())),
    def("not", 1, Some(1), |a| Ok(Value::Bool(!a[0].truthy()))),
    def("len", 1, Some(1), len_fn),
    def("index", 1, None, index_fn),
    def("print", 0, None, |a| s(go_sprint(a, false)?)),
    def("println", 0, None, |a| s(go_sprint(a, true)?)),
    def("printf", 1, None, |a| {
        s(go_sprintf(&a[0].to_str(), &a[1..])?)
    }),
    def("eq", 2, None, eq_fn),
    def("ne", 2, Some(2), |a| {
        Ok(Value::Bool(!values_eq(&a[0], &a[1])?))
    }),
    def("lt", 2, Some(2), |a| {
        Ok(Value::Bool(values_lt(&a[0], &a[1])?))
    }),
    def("le", 2, Some(2), |a| {
        Ok(Value::Bool(
            values_lt(&a[0], &a[1])? || values_eq(&a[0], &a[1])?,
        ))
    }),
    def("gt", 2, Some(2), |a| {
        Ok(Value::Bool(values_lt(&a[1], &a[0])?))
    }),
    def("ge", 2, Some(2), |a| {
        Ok(Value::Bool(
            values_lt(&a[1], &a[0])? || values_eq(&a[0], &a[1])?,
        ))
    }),
    // Go's strings package, as Loki exposes it.
    def("ToLower", 1, Some(1), |a| s(a[0].to_str().to_lowercase())),
    def("ToUpper", 1, Some(1), |a| s(a[0].to_str().to_uppercase())),
    def("Replace", 4, Some(4), go_replace),
    def("Trim", 2, Some(2), |a| {
        s(trim_set(&a[0].to_str(), &a[1].to_str(), true, true))
    }),
    def("TrimLeft", 2, Some(2), |a| {
        s(trim_set(&a[0].to_str(), &a[1].to_str(), true, false))
    }),
    def("TrimRight", 2, Some(2), |a| {
        s(trim_set(&a[0].to_str(), &a[1].to_str(), false, true))
    }),
    def("TrimPrefix", 2, Some(2), |a| {
        let v = a[0].to_str();
        s(v.strip_prefix(a[1].to_str().as_str())
            .unwrap_or(&v)
            .to_string())
    }),
    def("TrimSuffix", 2, Some(2), |a| {
        let v = a[0].to_str();
        s(v.strip_suffix(a[1].to_str().as_str())
            .unwrap_or(&v)
            .to_string())
    }),
    def("TrimSpace", 1, Some(1), |a| {
        s(a[0].to_str().trim().to_string())
    }),
    // sprig's string functions, as Loki exposes them.
    def("lower", 1, Some(1), |a| s(a[0].to_str().to_lowercase())),
    def("upper", 1, Some(1), |a| s(a[0].to_str().to_uppercase())),
    def("title", 1, Some(1), |a| s(title(&a[0].to_str()))),
    def("trunc", 2, Some(2), trunc),
    def("substr", 3, Some(3), substr),
    def("contains", 2, Some(2), |a| {
        Ok(Value::Bool(a[1].to_str().contains(a[0].to_str().as_str())))
    }),
    def("hasPrefix", 2, Some(2), |a| {
        Ok(Value::Bool(
            a[1].to_str().starts_with(a[0].to_str().as_str()),
        ))
    }),
    def("hasSuffix", 2, Some(2), |a| {
        Ok(Value::Bool(a[1].to_str().ends_with(a[0].to_str().as_str())))
    }),
    def("replace", 3, Some(3), sprig_replace),
    def("repeat", 2, Some(2), repeat),
    def("trim", 1, Some(1), |a| s(a[0].to_str().trim().to_string())),
    def("trimAll", 2, Some(2), |a| {
        s(trim_set(&a[1].to_str(), &a[0].to_str(), true, true))
    }),
    def("trimPrefix", 2, Some(2), |a| {
        let v = a[1].to_str();
        s(v.strip_prefix(a[0].to_str().as_str())
            .unwrap_or(&v)
            .to_string())
    }),
    def("trimSuffix", 2, Some(2), |a| {
        let v = a[1].to_str();
        s(v.strip_suffix(a[0].to_str().as_str())
            .unwrap_or(&v)
            .to_string())
    }),
    def("default", 1, Some(2), default_fn),
    // sprig's math.
    def("add", 0, None, |a| {
        Ok(Value::Int(
            a.iter().fold(0i64, |x, v| x.wrapping_add(to_i64(v))),
        ))
    }),
    def("add1", 1, Some(1), |a| {
        Ok(Value::Int(to_i64(&a[0]).wrapping_add(1)))
    }),
    def("sub", 2, Some(2), |a| {
        Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
    }),
    def("mul", 1, None, |a| {
        Ok(Value::Int(
            a[1..]
                .iter()
                .fold(to_i64(&a[0]), |x, v| x.wrapping_mul(to_i64(v))),
        ))
    }),
    def("div", 2, Some(2), |a| match to_i64(&a[1]) {
        0 => Err("integer divide by zero".into()),
        d => Ok(Value::Int(to_i64(&a[0]).wrapping_div(d))),
    }),
    def("mod", 2, Some(2), |a| match to_i64(&a[1]) {
        0 => Err("integer divide by zero".into()),
        d => Ok(Value::Int(to_i64(&a[0]).wrapping_rem(d))),
    }),
    def("max", 1, None, |a| {
        Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
    }),
    def("min", 1, None, |a| {
        Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
    }),
    def("addf", 0, None, |a| {
        Ok(Value::Float(a.iter().map(to_f64).sum()))
    }),
    def("subf", 1, None, |a| {
        Ok(Value::Float(
            a[1..].iter().fold(to_f64(&a[0]), |x, v| x - to_f64(v)),
        ))
    }),
    def("mulf", 1, None, |a| {
        Ok(Value::Float(
            a[1..].iter().fold(to_f64(&a[0]), |x, v| x * to_f64(v)),
        ))
    }),
    def("divf", 1, None, |a| {
        let mut x = to_f64(&a[0]);
        for v in &a[1..] {
            let d = to_f64(v);
            if d == 0.0 {
                return Err("division by zero".into());
            }
            x /= d;
        }
        Ok(Value::Float(x))
    }),
    def("maxf", 1, None, |a| {
        Ok(Value::Float(
            a[1..].iter().fold(to_f64(&a[0]), |x, v| x.max(to_f64(v))),
        ))
    }),
    def("minf", 1, None, |a| {
        Ok(Value::Float(
            a[1..].iter().fold(to_f64(&a[0]), |x, v| x.min(to_f64(v))),
        ))
    }),
    def("ceil", 1, Some(1), |a| {
        Ok(Value::Float(to_f64(&a[0]).ceil()))
    }),
    def("floor", 1, Some(1), |a| {
        Ok(Value::Float(to_f64(&a[0]).floor()))
    }),
    def("round", 2, Some(3), round),
    def("int", 1, Some(1), |a| Ok(Value::Int(to_i64(&a[0])))),
    def("float64", 1, Some(1), |a| Ok(Value::Float(to_f64(&a[0])))),
    // Dates and times; "Local" is UTC (Sawmill servers run in UTC).
    def("now", 0, Some(0), |_| Ok(Value::Time(now()))),
    def("date", 2, Some(2), |a| {
        s(go_format(as_date(&a[1]), &a[0].to_str()))
    }),
    def("toDate", 2, Some(2), |a| {
        Ok(Value::Time(to_date(
            &a[0].to_str(),
            "Local",
            &a[1].to_str(),
        )))
    }),
    def("toDateInZone", 3, Some(3), |a| {
        Ok(Value::Time(to_date(
            &a[0].to_str(),
            &a[1].to_str(),
            &a[2].to_str(),
        )))
    }),
    def("unixEpoch", 1, Some(1), |a| {
        Ok(Value::Int(want_time(&a[0])?.secs))
    }),
    def("unixEpochMillis", 1, Some(1), |a| {
        let t = want_time(&a[0])?;
        Ok(Value::Int(
            t.secs
                .wrapping_mul(1000)
                .wrapping_add(i64::from(t.nanos / 1_000_000)),
        ))
    }),
    def("unixEpochNanos", 1, Some(1), |a| {
        Ok(Value::Int(want_time(&a[0])?.unix_nanos()))
    }),
    def("unixToTime", 1, Some(1), |a| unix_to_time(&a[0].to_str())),
    def("duration", 1, Some(1), |a| {
        Ok(Value::Float(parse_duration(&a[0].to_str()).unwrap_or(0.0)))
    }),
    def("duration_seconds", 1, Some(1), |a| {
        Ok(Value::Float(parse_duration(&a[0].to_str()).unwrap_or(0.0)))
    }),
    // Encodings and layout.
    def("bytes", 1, Some(1), |a| {
        Ok(Value::Int(parse_bytes(&a[0].to_str()).unwrap_or(0)))
    }),
    def("urlencode", 1, Some(1), |a| s(query_escape(&a[0].to_str()))),
    def("urldecode", 1, Some(1), |a| {
        s(query_unescape(&a[0].to_str())?)
    }),
    def("b64enc", 1, Some(1), |a| {
        use base64::Engine as _;
        s(base64::engine::general_purpose::STANDARD.encode(a[0].to_str()))
    }),
    def("b64dec", 1, Some(1), |a| {
        use base64::Engine as _;
        // sprig returns the decoding error as the result.
        match base64::engine::general_purpose::STANDARD.decode(a[0].to_str()) {
            Ok(b) => s(String::from_utf8_lossy(&b).into_owned()),
            Err(e) => s(e.to_string()),
        }
    }),
    def("alignLeft", 2, Some(2), |a| align(a, true)),
    def("alignRight", 2, Some(2), |a| align(a, false)),
    def("indent", 2, Some(2), |a| s(indent(a)?)),
    def("nindent", 2, Some(2), |a| s(format!("\n{}", indent(a)?))),
    def("fromJson", 1, Some(1), |a| {
        Ok(parse_json(&a[0].to_str()).unwrap_or_else(|| Value::Str(String::new())))
    }),
    def("count", 2, Some(2), |a| {
        let re = compile_regex(&a[0].to_str())?;
        Ok(Value::Int(re.find_iter(&a[1].to_str()).count() as i64))
    }),
    // Regular expressions: literal patterns are compiled once at parse time (see `Cmd::regex`).
    def("regexReplaceAll", 3, Some(3), |a| {
        let re = compile_regex(&a[0].to_str())?;
        regex_replace(&re, a, false)
    }),
    def("regexReplaceAllLiteral", 3, Some(3), |a| {
        let re = compile_regex(&a[0].to_str())?;
        regex_replace(&re, a, true)
    }),
];

// ---------------------------------------------------------------------------------------------
// Go's fmt
// ---------------------------------------------------------------------------------------------

/// `fmt.Sprint` (or `fmt.Sprintln`): spaces between operands when neither is a string.
fn go_sprint(a: &[Value], ln: bool) -> Result<String, String> {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && (ln || !is_str(v) && !is_str(&a[i - 1])) {
            out.push(' ');
        }
        v.write_to(&mut out);
        check_len(out.len())?;
    }
    if ln {
        out.push('\n');
    }
    Ok(out)
}

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// Largest width or precision honoured, so a format cannot allocate without bound.
const MAX_WIDTH: usize = 1 << 16;

/// `fmt.Sprintf` for the common verbs; mismatches render as Go does (`%!d(string=x)`).
fn go_sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, next: &mut usize| {
            if chars.peek() == Some(&'*') {
                chars.next();
                let v = args.get(*next).map(to_i64).unwrap_or(0);
                *next += 1;
                return Some((v.unsigned_abs() as usize).min(MAX_WIDTH));
            }
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some((n.unwrap_or(0) * 10 + d as usize).min(MAX_WIDTH));
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars, &mut next);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars, &mut next).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(MISSING)");
            }
            Some(v) => fmt_value(&mut out, verb, spec, v),
        }
        next += 1;
        check_len(out.len())?;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, v) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(v.type_name());
            out.push('=');
            v.write_to(&mut out);
            check_len(out.len())?;
        }
        out.push(')');
    }
    Ok(out)
}

fn bad_verb(out: &mut String, verb: char, v: &Value) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if matches!(v, Value::Nil) {
        out.push_str("<nil>");
    } else {
        out.push_str(v.type_name());
        out.push('=');
        v.write_to(out);
    }
    out.push(')');
}

/// Pads `body` to the spec's width; `sign_aware` zero-padding goes after a leading sign.
fn pad(out: &mut String, spec: Spec, body: &str, numeric: bool) {
    let len = body.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(body);
        return;
    }
    let fill = width - len;
    if spec.minus {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && numeric {
        let (sign, rest) = match body.as_bytes().first() {
            Some(b'-' | b'+' | b' ') => body.split_at(1),
            _ => ("", body),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}

fn sign_prefix(spec: Spec, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

fn fmt_value(out: &mut String, verb: char, spec: Spec, v: &Value) {
    match v {
        Value::Str(st) => fmt_str(out, verb, spec, st, v),
        Value::Int(i) => fmt_int(out, verb, spec, *i, v),
        Value::Float(f) => fmt_float(out, verb, spec, *f, v),
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, spec, if *b { "true" } else { "false" }, false),
            _ => bad_verb(out, verb, v),
        },
        Value::Nil => match verb {
            'v' => pad(out, spec, "<nil>", false),
            _ => bad_verb(out, verb, v),
        },
        Value::List(l) => {
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, verb, spec, e);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_str(out, verb, spec, k, &Value::Nil);
                out.push(':');
                fmt_value(out, verb, spec, e);
            }
            out.push(']');
        }
        Value::Time(_) | Value::Labels => match verb {
            'v' | 's' => {
                let mut body = String::new();
                v.write_to(&mut body);
                pad(out, spec, &body, false);
            }
            _ => bad_verb(out, verb, v),
        },
    }
}

fn fmt_str(out: &mut String, verb: char, spec: Spec, st: &str, v: &Value) {
    match verb {
        's' | 'v' => {
            let body: String = match spec.prec {
                Some(p) => st.chars().take(p).collect(),
                None => st.to_string(),
            };
            pad(out, spec, &body, false);
        }
        'q' => pad(out, spec, &go_quote(st), false),
        'x' | 'X' => {
            let bytes = match spec.prec {
                Some(p) => &st.as_bytes()[..p.min(st.len())],
                None => st.as_bytes(),
            };
            let mut body = String::new();
            for b in bytes {
                if verb == 'x' {
                    body.push_str(&format!("{b:02x}"));
                } else {
                    body.push_str(&format!("{b:02X}"));
                }
            }
            pad(out, spec, &body, false);
        }
        _ => bad_verb(out, verb, v),
    }
}

/// Go's `strconv.Quote`.
fn go_quote(st: &str) -> String {
    let mut q = String::with_capacity(st.len() + 2);
    q.push('"');
    for c in st.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\x07' => q.push_str("\\a"),
            '\x08' => q.push_str("\\b"),
            '\x0c' => q.push_str("\\f"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            '\x0b' => q.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => q.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn fmt_int(out: &mut String, verb: char, spec: Spec, i: i64, v: &Value) {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let digits = match verb {
        'd' | 'v' => u.to_string(),
        'x' => format!("{}{u:x}", if spec.sharp { "0x" } else { "" }),
        'X' => format!("{}{u:X}", if spec.sharp { "0X" } else { "" }),
        'o' => format!("{}{u:o}", if spec.sharp { "0" } else { "" }),
        'O' => format!("0o{u:o}"),
        'b' => format!("{u:b}"),
        'c' => {
            let ch = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            return pad(out, spec, &ch.to_string(), false);
        }
        'q' => {
            let ch = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            let quoted = go_quote(&ch.to_string());
            let inner = &quoted[1..quoted.len() - 1];
            let inner = if inner == "\\\"" {
                "\""
            } else if ch == '\'' {
                "\\'"
            } else {
                inner
            };
            return pad(out, spec, &format!("'{inner}'"), false);
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => return bad_verb(out, verb, v),
        _ => return bad_verb(out, verb, v),
    };
    let digits = match spec.prec {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        Some(0) if u == 0 => String::new(),
        _ => digits,
    };
    let body = format!("{}{digits}", sign_prefix(spec, neg));
    let zero_ok = spec.prec.is_none();
    pad(
        out,
        Spec {
            zero: spec.zero && zero_ok,
            ..spec
        },
        &body,
        true,
    );
}

fn fmt_float(out: &mut String, verb: char, spec: Spec, f: f64, v: &Value) {
    if !f.is_finite() {
        let body = if f.is_nan() {
            format!(
                "{}NaN",
                if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                }
            )
        } else if f > 0.0 {
            format!(
                "{}Inf",
                if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                }
            )
        } else {
            "-Inf".to_string()
        };
        return pad(
            out,
            Spec {
                zero: false,
                ..spec
            },
            &body,
            true,
        );
    }
    let neg = f.is_sign_negative() && f != 0.0 || (f == 0.0 && f.is_sign_negative());
    let a = f.abs();
    let digits = match verb {
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), a),
        'e' | 'E' => {
            let s = go_exp(a, spec.prec.unwrap_or(6));
            if verb == 'E' {
                s.to_uppercase()
            } else {
                s
            }
        }
        'g' | 'G' | 'v' => fmt_float_g(a, spec.prec, verb == 'G'),
        _ => return bad_verb(out, verb, v),
    };
    let body = format!("{}{digits}", sign_prefix(spec, neg));
    pad(out, spec, &body, true);
}

/// `%e` with `prec` digits after the point and a two-digit exponent.
fn go_exp(a: f64, prec: usize) -> String {
    let sci = format!("{a:.prec$e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-02T03:04:05.123456789Z
    const TS: i64 = 1_704_164_645_123_456_789;

    fn labels(name: &str) -> Option<String> {
        let v = match name {
            "status" => "200",
            "query" => "SELECT 1",
            "path" => "/api/v1/push",
            "level" => "info",
            "msg" => "hello world",
            "bytes" => "2048",
            "method" => "GET",
            "empty" => "",
            "n" => "42",
            "f" => "3.7",
            "json" => r#"{"a":{"b":"deep"},"n":3,"l":[1,"x"]}"#,
            "epoch" => "1704164645",
            "spaces" => "  padded  ",
            _ => return None,
        };
        Some(v.to_string())
    }

    #[track_caller]
    fn check(tpl: &str, want: &str) {
        let t = Template::parse(tpl).unwrap_or_else(|e| panic!("parse {tpl:?}: {e}"));
        let mut out = String::new();
        t.render(&labels, "the log line", TS, &mut out)
            .unwrap_or_else(|e| panic!("render {tpl:?}: {e}"));
        assert_eq!(out, want, "template {tpl:?}");
    }

    #[track_caller]
    fn check_err(tpl: &str, want: &str) {
        let err = match Template::parse(tpl) {
            Err(e) => e.to_string(),
            Ok(t) => {
                let mut out = String::new();
                match t.render(&labels, "the log line", TS, &mut out) {
                    Err(e) => e.to_string(),
                    Ok(()) => {
                        let out: String = out.chars().take(200).collect();
                        panic!("template {tpl:?} rendered {out:?}, want error {want:?}")
                    }
                }
            }
        };
        assert!(
            err.contains(want),
            "template {tpl:?}: error {err:?} lacks {want:?}"
        );
    }

    #[test]
    fn renders() {
        check("", "");
        check("plain text", "plain text");
        check("{{.status}} {{.query}}", "200 SELECT 1");
        check("{{ .status }}", "200");
        check("{{.missing}}", "");
        check("a {{- \" b \" -}} c", "a b c");
        check("a  {{- .status }}", "a200");
        check("{{ .status -}}  \n b", "200b");
        check("x{{/* comment */}}y", "xy");
        check("x {{- /* comment */ -}} y", "xy");
        check("{{ \"quoted\\tstr\" }}", "quoted\tstr");
        check("{{ `raw\\n` }}", "raw\\n");
        check("{{ 42 }}", "42");
        check("{{ -7 }}", "-7");
        check("{{ 0x1F }}", "31");
        check("{{ 1.5 }}", "1.5");
        check("{{ 1e21 }}", "1e+21");
        check("{{ 'a' }}", "97");
        check("{{ true }} {{ false }}", "true false");
        check("{{ .path | replace \"/\" \"_\" }}", "_api_v1_push");
        check("{{ __line__ | ToUpper }}", "THE LOG LINE");
        check("{{ .level | ToUpper }} {{ .msg }}", "INFO hello world");
        check("{{ ToUpper (lower \"ABC\") }}", "ABC");
        check("{{ (.level) }}", "info");
        check(
            "{{ __timestamp__ }}",
            "2024-01-02 03:04:05.123456789 +0000 UTC",
        );
        check("{{ $.status }}", "200");
    }

    #[test]
    fn functions() {
        check("{{ .method | ToLower }}", "get");
        check(
            "{{ToUpper \"This is a string\" | ToLower}}",
            "this is a string",
        );
        check("{{ Replace .path \"/\" \"-\" -1 }}", "-api-v1-push");
        check("{{ Replace .path \"/\" \"-\" 2 }}", "-api-v1/push");
        check("{{ Trim \"xxhixx\" \"x\" }}", "hi");
        check("{{ TrimLeft \"xxhixx\" \"x\" }}", "hixx");
        check("{{ TrimRight \"xxhixx\" \"x\" }}", "xxhi");
        check("{{ TrimPrefix .path \"/api\" }}", "/v1/push");
        check("{{ TrimSuffix .path \"/push\" }}", "/api/v1");
        check("{{ TrimSpace .spaces }}", "padded");
        check("{{ .msg | title }}", "Hello World");
        check("{{ .msg | upper }}", "HELLO WORLD");
        check(
            "{{ .path | replace \" \" \"_\" | trunc 5 | upper }}",
            "/API/",
        );
        check("{{ trunc -4 .path }}", "push");
        check("{{ trunc 99 .path }}", "/api/v1/push");
        check("{{ substr 1 4 .path }}", "api");
        check("{{ substr 8 99 .path }}", "push");
        check("{{ if contains \"wor\" .msg }}yes{{ end }}", "yes");
        check(
            "{{ hasPrefix \"/api\" .path }} {{ hasSuffix \"x\" .path }}",
            "true false",
        );
        check("{{ repeat 3 \"ab\" }}", "ababab");
        check("{{ trim .spaces }}", "padded");
        check("{{ trimAll \"$\" \"$5.00$\" }}", "5.00");
        check("{{ trimPrefix \"/api\" .path }}", "/v1/push");
        check("{{ trimSuffix \"push\" .path }}", "/api/v1/");
        check("{{ .missing | default \"none\" }}", "none");
        check("{{ .status | default \"none\" }}", "200");
        check("{{ default \"d\" 0 }} {{ default \"d\" false }}", "d d");
        check("{{ printf \"%.2f\" (divf .bytes 1024) }}", "2.00");
        check("{{ printf \"%s=%d\" .level 5 }}", "info=5");
        check("{{ printf \"%v|%v|%v\" 1 2.5 true }}", "1|2.5|true");
        check("{{ printf \"%q\" .msg }}", "\"hello world\"");
        check("{{ printf \"%x %X\" 255 \"hi\" }}", "ff 6869");
        check(
            "{{ printf \"[%5s][%-5s]\" \"ab\" \"cd\" }}",
            "[   ab][cd   ]",
        );
        check(
            "{{ printf \"%05d|%+d|%5.1f\" -42 7 3.14159 }}",
            "-0042|+7|  3.1",
        );
        check(
            "{{ printf \"%e %g %g\" 1234.5678 0.000012 1e7 }}",
            "1.234568e+03 1.2e-05 1e+07",
        );
        check("{{ printf \"%d\" .status }}", "%!d(string=200)");
        check("{{ printf \"%d %d\" 1 }}", "1 %!d(MISSING)");
        check("{{ printf \"%d\" 1 2 }}", "1%!(EXTRA int=2)");
        check("{{ printf \"100%%\" }}", "100%");
        check("{{ printf \"%c%c\" 72 105 }}", "Hi");
        check("{{ printf \"%t %o %b\" true 8 5 }}", "true 10 101");
        check("{{ print \"a\" 1 2 \"b\" }}", "a1 2b");
        check("{{ len .path }} {{ len \"\" }}", "12 0");
        check("{{ index \"abc\" 1 }}", "98");
        check(
            "{{ eq .status \"200\" }} {{ ne .status \"200\" }}",
            "true false",
        );
        check("{{ eq .level \"warn\" \"info\" }}", "true");
        check(
            "{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 1.5 1 }}",
            "true true false true",
        );
        check("{{ lt \"a\" \"b\" }}", "true");
        check(
            "{{ and 1 0 }} {{ and 1 2 }} {{ or 0 \"\" }} {{ or 0 \"x\" }}",
            "0 2  x",
        );
        check("{{ not .empty }} {{ not .status }}", "true false");
        check("{{ and .missing (index \"\" 5) }}", "");
        check(
            "{{ regexReplaceAll \"/(v[0-9])/\" .path \"[$1]\" }}",
            "/api[v1]push",
        );
        check(
            "{{ regexReplaceAll \"(a)\" \"banana\" \"${1}x\" }}",
            "baxnaxnax",
        );
        check(
            "{{ regexReplaceAllLiteral \"a\" \"banana\" \"$1\" }}",
            "b$1n$1n$1",
        );
        check(
            "{{ $re := \"[0-9]+\" }}{{ regexReplaceAll $re .path \"N\" }}",
            "/api/vN/push",
        );
        check("{{ __line__ | replace \"log\" \"LOG\" }}", "the LOG line");
        check(
            "{{ 1234567.0 }} {{ 123456.0 }} {{ 0.00001 }}",
            "1.234567e+06 123456 1e-05",
        );
    }

    #[test]
    fn control() {
        check("{{ if eq .status \"200\" }}ok{{ else }}fail{{ end }}", "ok");
        check(
            "{{ if eq .status \"500\" }}ok{{ else }}fail{{ end }}",
            "fail",
        );
        check(
            "{{ if .missing }}a{{ else if .level }}b{{ else }}c{{ end }}",
            "b",
        );
        check(
            "{{ if .missing }}a{{ else if .empty }}b{{ else }}c{{ end }}",
            "c",
        );
        check(
            "{{ if and (contains \"he\" \"hello\") (contains \"llo\" \"hello\") }} yes {{end}}",
            " yes ",
        );
        check(
            "{{ if or (contains \"he\" \"hello\") (contains \"llo\" \"hello\") }} yes {{end}}",
            " yes ",
        );
        check(
            "{{ if .level }}{{ if eq .level \"info\" }}I{{ end }}{{ end }}",
            "I",
        );
        check("{{ with .level }}[{{ . }}]{{ end }}", "[info]");
        check(
            "{{ with .missing }}[{{ . }}]{{ else }}none{{ end }}",
            "none",
        );
        check(
            "{{ with .missing }}a{{ else with .msg }}{{ . }}{{ end }}",
            "hello world",
        );
        check("{{ with .level }}{{ $.status }}{{ end }}", "200");
        check("{{ $x := .level }}{{ $x }}", "info");
        check("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2");
        check(
            "{{ $x := 1 }}{{ if true }}{{ $x = 3 }}{{ end }}{{ $x }}",
            "3",
        );
        check("{{ if $v := .level }}{{ $v }}{{ end }}", "info");
        check("{{ range $i, $e := 3 }}{{ $i }}{{ $e }}{{ end }}", "001122");
        check("{{ range 3 }}{{ . }}{{ end }}", "012");
        check(
            "{{ range $i := 5 }}{{ if eq $i 3 }}{{ break }}{{ end }}{{ $i }}{{ end }}",
            "012",
        );
        check(
            "{{ range 4 }}{{ if eq . 1 }}{{ continue }}{{ end }}{{ . }}{{ end }}",
            "023",
        );
        check("{{ range 0 }}x{{ else }}empty{{ end }}", "empty");
        check("a\n{{- if true }}\n  b\n{{- end }}\n", "a\n  b\n");
        check("{{ .level }}{{/* x */}}{{ .status }}", "info200");
    }

    #[test]
    fn more_functions() {
        check(
            "{{ count \"a|b\" \"abab\" }} {{ count \"o\" \"foo\" }}",
            "4 2",
        );
        check("{{ __line__ | count \"l\" }}", "2");
        check("{{ urlencode \"a b&c=d/é\" }}", "a+b%26c%3Dd%2F%C3%A9");
        check("{{ urldecode \"a+b%26c%3Dd\" }}", "a b&c=d");
        check("{{ .msg | b64enc }}", "aGVsbG8gd29ybGQ=");
        check("{{ \"aGVsbG8gd29ybGQ=\" | b64dec }}", "hello world");
        check(
            "{{ alignLeft 5 \"hello world\" }}|{{ alignLeft 5 \"hi\" }}|",
            "hello|hi   |",
        );
        check(
            "{{ alignRight 5 \"hello world\" }}|{{ alignRight 5 \"hi\" }}|",
            "world|   hi|",
        );
        check("{{ indent 2 \"a\\nb\" }}", "  a\n  b");
        check("{{ nindent 2 \"a\" }}", "\n  a");
        check(
            "{{ bytes \"2 KB\" }} {{ bytes \"1kib\" }} {{ bytes \"42\" }} {{ bytes \"x\" }}",
            "2000 1024 42 0",
        );
        check(
            "{{ duration \"1m30s\" }} {{ duration_seconds \"1.5h\" }} {{ duration \"250ms\" }}",
            "90 5400 0.25",
        );
        check("{{ duration \"bogus\" }}", "0");
        check(
            "{{ add 3 2 5 }} {{ sub 5 2 }} {{ mul 5 2 3 }} {{ div 10 3 }} {{ mod 10 3 }}",
            "10 3 30 3 1",
        );
        check(
            "{{ addf 3.5 2 5 }} {{ subf 5.5 2 1.5 }} {{ mulf 5.5 2 2.5 }} {{ divf 10 2 4 }}",
            "10.5 2 27.5 1.25",
        );
        check(
            "{{ max 1 2 3 }} {{ min 1 2 3 }} {{ maxf 1 2.5 3 }} {{ minf 1 2.5 3 }}",
            "3 1 3 1",
        );
        check(
            "{{ ceil 123.001 }} {{ floor 123.9999 }} {{ round 123.555555 3 }}",
            "124 123 123.556",
        );
        check("{{ round 123.88571428571 5 .2 }}", "123.88572");
        check(
            "{{ \"3\" | int }} {{ \"3.5\" | float64 }} {{ add .n 1 }} {{ addf .f 1 }}",
            "3 3.5 43 4.7",
        );
        check("{{ __timestamp__ | unixEpoch }}", "1704164645");
        check(
            "{{ unixEpochMillis __timestamp__ }} {{ unixEpochNanos __timestamp__ }}",
            "1704164645123 1704164645123456789",
        );
        check(
            "{{ __timestamp__ | date \"2006-01-02 15:04:05\" }}",
            "2024-01-02 03:04:05",
        );
        check(
            "{{ __timestamp__ | date \"2006-01-02T15:04:05.00Z-07:00\" }}",
            "2024-01-02T03:04:05.12Z+00:00",
        );
        check(
            "{{ date \"Mon Jan _2 3:4:5 PM MST 06 002 .999 ,000000\" __timestamp__ }}",
            "Tue Jan  2 3:4:5 AM UTC 24 002 .123 ,123456",
        );
        check(
            "{{ date \"Monday, January 2, 2006 15:04:05.000000000Z07:00\" __timestamp__ }}",
            "Tuesday, January 2, 2024 03:04:05.123456789Z",
        );
        check(
            "{{ date \"2006-01-02\" (unixToTime .epoch) }}",
            "2024-01-02",
        );
        check("{{ unixToTime \"19724\" | unixEpoch }} {{ unixToTime \"1704164645123\" | unixEpochMillis }}", "1704153600 1704164645123");
        check(
            "{{ unixToTime \"1704164645123456\" | unixEpochNanos }}",
            "1704164645123456000",
        );
        check(
            "{{ toDate \"2006-01-02\" \"2021-11-02\" | unixEpoch }}",
            "1635811200",
        );
        check(
            "{{ toDateInZone \"2006-01-02\" \"UTC\" \"2021-11-02\" }}",
            "2021-11-02 00:00:00 +0000 UTC",
        );
        check("{{ toDateInZone \"2006-01-02 15:04\" \"Etc/GMT-2\" \"2021-11-02 10:00\" | unixEpoch }}", "1635840000");
        check("{{ toDateInZone \"2006-01-02T15:04:05.999999999Z07:00\" \"UTC\" \"2021-11-02T10:00:00.5+02:00\" | unixEpochMillis }}", "1635840000500");
        check("{{ toDateInZone \"2006-01-02T15:04:05Z07:00\" \"UTC\" \"2021-11-02T10:00:00+02:00\" }}", "2021-11-02 10:00:00 +0200 +0200");
        check(
            "{{ toDate \"Jan 2 2006 3:04pm\" \"Feb 29 2024 1:30pm\" | date \"2006-01-02 15:04\" }}",
            "2024-02-29 13:30",
        );
        check(
            "{{ toDate \"2006-01-02 15:04:05\" \"2021-11-02 10:00:00.25\" | unixEpochMillis }}",
            "1635847200250",
        );
        check(
            "{{ toDate \"2006-01-02\" \"not a date\" }}",
            "0001-01-01 00:00:00 +0000 UTC",
        );
        check(
            "{{ toDate \"2006-01-02\" \"2021-02-30\" | unixEpoch }}",
            "-62135596800",
        );
        check("{{ date \"2006\" 0 }}", "1970");
        check(
            "{{ if lt (unixEpoch now) 1000 }}old{{ else }}new{{ end }}",
            "new",
        );
        check("{{ fromJson \"{\\\"foo\\\": 55}\" }}", "map[foo:55]");
        check(
            "{{ (fromJson .json).a.b }} {{ (fromJson .json).n }}",
            "deep 3",
        );
        check(
            "{{ range $e := (fromJson .json).l }}[{{ $e }}]{{ end }}",
            "[1][x]",
        );
        check(
            "{{ range $k, $v := fromJson .json }}{{ $k }};{{ end }}",
            "a;l;n;",
        );
        check(
            "{{ with $j := fromJson .json }}{{ index $j \"n\" }} {{ len $j.l }}{{ end }}",
            "3 2",
        );
        check("{{ fromJson \"{bad\" }}|", "|");
        check(
            "{{ fromJson \"[1, 2.5, \\\"s\\\", true, null]\" }}",
            "[1 2.5 s true <nil>]",
        );
        check(
            "{{ $l := fromJson \"[\\\"q1\\\",\\\"q2\\\"]\" }}{{ range $l }} {{ . }}{{ end }}",
            " q1 q2",
        );
        check(
            "{{ printf \"%v %s\" (fromJson \"[1,2]\") (fromJson \"{\\\"a\\\":\\\"b\\\"}\") }}",
            "[1 2] map[a:b]",
        );
        check(
            "{{ index (fromJson \"[1,2]\") 1 }} {{ index (fromJson .json) \"missing\" }}",
            "2 <no value>",
        );
    }

    /// Templates for the mutation test, covering every construct.
    const CORPUS: &[&str] = &[
        "{{.status}} {{.query}}",
        "{{ if eq .status \"200\" }}ok{{ else if .x }}x{{ else }}fail{{ end }}",
        "{{ .path | replace \"/\" \"_\" | trunc 5 | upper }}",
        "{{ __line__ | ToUpper }} {{ __timestamp__ }}",
        "{{ printf \"%.2f %5s %-5d %q %x %v\" (divf .bytes 1024) .a 3 .b 255 true }}",
        "{{- with $x := .level -}} {{ $x }} {{- else -}} none {{- end -}}",
        "{{ range $i, $e := 3 }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $e }}{{ break }}{{ end }}",
        "{{ regexReplaceAll \"(a+)\" .msg \"${1}b\" }}{{/* c */}}",
        "{{ substr 1 3 .path }}{{ index \"abc\" 1 }}{{ len .msg }}{{ repeat 2 `x` }}",
        "{{ and 1 (or 0 'a') (not false) }}{{ 0x1F }}{{ -1.5e3 }}{{ lt 1 2.5 }}",
        "{{ $v := 1 }}{{ $v = add $v 2 }}{{ mul $v 3 | printf \"%05d\" }}",
        "{{ default \"d\" .missing | Replace \"a\" \"b\" -1 | TrimSpace }}",
        "{{ toDateInZone \"2006-01-02T15:04:05.999Z07:00\" \"UTC\" \"2021-11-02T10:00:00.5+02:00\" | date \"Jan _2 3PM .000\" }}",
        "{{ range $k, $v := fromJson `{\"a\":[1,{\"b\":\"\\u00e9\"}],\"c\":null}` }}{{ $k }}={{ $v }}{{ end }}",
        "{{ unixToTime \"1704164645123\" | unixEpochNanos }}{{ duration \"1h2m3.5s\" }}{{ bytes \"1.5 MiB\" }}",
        "{{ urldecode \"a%20b+c\" | urlencode | b64enc | b64dec }}{{ alignRight 4 \"é\" }}{{ nindent 2 \"x\\ny\" }}",
    ];

    #[test]
    fn mutations_never_panic() {
        let alphabet: &[u8] = b"{}()|.$-/*\"`'\\:=, 0123456789abcdefxyz_%\n\xff\xc3";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for tpl in CORPUS {
            let t = Template::parse(tpl).unwrap_or_else(|e| panic!("{tpl:?}: {e}"));
            let mut out = String::new();
            t.render(&labels, "line", TS, &mut out)
                .unwrap_or_else(|e| panic!("{tpl:?}: {e}"));
        }
        let mut tried = 0;
        for i in 0..100 {
            let mut bytes = CORPUS[i % CORPUS.len()].as_bytes().to_vec();
            for _ in 0..50 {
                let pos = rand(bytes.len() + 1);
                let b = alphabet[rand(alphabet.len())];
                match rand(3) {
                    0 if pos < bytes.len() => bytes[pos] = b,
                    1 if pos < bytes.len() => {
                        bytes.remove(pos);
                    }
                    _ => bytes.insert(pos, b),
                }
                let text = String::from_utf8_lossy(&bytes);
                if let Ok(t) = Template::parse(&text) {
                    let mut out = String::new();
                    let _ = t.render(&labels, "line", TS, &mut out);
                    let _ = t.referenced_labels();
                }
                tried += 1;
            }
        }
        assert_eq!(tried, 5000);
    }

    #[test]
    fn output_is_capped() {
        let t = Template::parse("{{ range 100000 }}{{ repeat 100 \"x\" }}{{ end }}").unwrap();
        let mut out = String::new();
        let err = t.render(&labels, "", 0, &mut out).unwrap_err();
        assert!(matches!(err, TemplateError::OutputTooLarge), "{err}");
        let t = Template::parse("{{ range 1000000000 }}{{ end }}").unwrap();
        let err = t.render(&labels, "", 0, &mut String::new()).unwrap_err();
        assert!(matches!(err, TemplateError::TooManySteps), "{err}");
    }

    #[test]
    fn referenced_labels() {
        let t = Template::parse("{{ .b }}{{ .a | upper }}{{ if .c }}{{ $.d }}{{ end }}{{ .a }}")
            .unwrap();
        assert_eq!(t.referenced_labels(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn errors() {
        check_err("{{", "unclosed action");
        check_err("{{ .a", "unclosed action");
        check_err("{{ nosuch }}", "function \"nosuch\" not defined");
        check_err("{{ .a | .b }}", "non executable command");
        check_err("{{ \"a\" \"b\" }}", "can't give argument to non-function");
        check_err("{{ ( .a }}", "unclosed left paren");
        check_err("{{ $x }}", "undefined variable");
        check_err("{{/* x }}", "unclosed comment");
        check_err("{{ replace \"a\" }}", "wrong number of args for replace");
        check_err("{{ .status.x }}", "can't evaluate field x in type string");
        check_err("{{ eq .status 200 }}", "incompatible types for comparison");
        check_err("{{ lt true false }}", "invalid type for comparison");
        check_err("{{ regexReplaceAll \"(\" .path \"x\" }}", "invalid regex");
        check_err(
            "{{ $p := \"(\" }}{{ regexReplaceAll $p .path \"x\" }}",
            "error calling regexReplaceAll",
        );
        check_err("{{ substr 5 2 .path }}", "slice bounds out of range");
        check_err("{{ repeat 2000000 \"ab\" }}", "result too large");
        check_err("{{ index \"abc\" 5 }}", "index out of range");
        check_err("{{ len 3 }}", "len of type int");
        check_err("{{ not }}", "wrong number of args for not");
        check_err("{{ nil }}", "nil is not a command");
        check_err(
            &format!(
                "{{{{ printf (repeat 20 \"%60000d\"){} }}}}",
                " 1".repeat(20)
            ),
            "result too large",
        );
        check_err(
            "{{ regexReplaceAll \"\" (repeat 1000 \"x\") (repeat 2000 \"y\") }}",
            "result too large",
        );
        check_err(
            "{{ replace \"x\" (repeat 2000 \"y\") (repeat 1000 \"x\") }}",
            "result too large",
        );
        check_err(
            "{{ Replace (repeat 1000 \"x\") \"\" (repeat 2000 \"y\") -1 }}",
            "result too large",
        );
        check_err("{{ indent 1000000 \"a\\nb\" }}", "result too large");
        check_err("{{ unixToTime \"123\" }}", "unsupported epoch length");
        check_err("{{ unixToTime \"abc\" }}", "unable to parse time");
        check_err("{{ unixEpoch .status }}", "expected time.Time; got string");
        check_err("{{ urldecode \"%zz\" }}", "invalid URL escape");
        check_err("{{ div 1 0 }}", "integer divide by zero");
        check_err("{{ divf 1 0 }}", "division by zero");
        check_err("{{ alignLeft -1 \"x\" }}", "negative count");
        check_err("{{ count \"[\" .msg }}", "invalid regex");
        check_err(
            "{{ (fromJson .json).n.x }}",
            "can't evaluate field x in type float64",
        );
        check_err("{{ if true }}x", "if without end");
        check_err("{{ end }}", "unexpected end");
        check_err("{{ else }}", "unexpected else");
        check_err(
            "{{ if true }}{{ else }}{{ else }}{{ end }}",
            "else after else",
        );
        check_err("{{ $x = 1 }}", "undefined variable");
        check_err(
            "{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}",
            "undefined variable",
        );
        check_err(
            "{{ range .level }}{{ end }}",
            "range can't iterate over string",
        );
        check_err("{{ break }}", "break or continue outside range");
        check_err("{{ define \"x\" }}{{ end }}", "define is not supported");
        check_err(&"{{ if true }}".repeat(65), "nested too deeply");
        check_err(
            &format!("{{{{ {}1{} }}}}", "(".repeat(70), ")".repeat(70)),
            "nested too deeply",
        );
    }
}
