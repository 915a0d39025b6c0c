//! Go's time layouts (`2006-01-02T15:04:05Z07:00`): formatting and parsing, and the civil
//! calendar arithmetic under them.

use super::*;

/// Go's `time.Time.String()`.
pub(super) fn time_string(t: Time) -> String {
    go_format(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

pub(super) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

pub(super) const MONTHS: [&str; 12] = [
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
pub(super) const DAYS: [&str; 7] = [
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
pub(super) enum Std {
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

pub(super) enum Chunk<'a> {
    Lit(&'a str),
    Std(Std),
}

/// Splits a Go layout into literal text and layout elements, as Go's `nextStdChunk` does.
pub(super) fn layout_chunks(layout: &str) -> Vec<Chunk<'_>> {
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
pub(super) fn go_format(t: Time, layout: &str) -> String {
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
pub(super) fn go_parse(layout: &str, value: &str) -> Result<Time, String> {
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
pub(super) fn skip_lit<'v>(mut v: &'v str, mut lit: &str) -> Option<&'v str> {
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

pub(super) fn take_digits(v: &str, min: usize, max: usize) -> Option<(i64, &str)> {
    let n = v.bytes().take(max).take_while(u8::is_ascii_digit).count();
    if n < min {
        return None;
    }
    Some((v[..n].parse().ok()?, &v[n..]))
}

/// Reads fractional-second digits (any count, nanosecond precision).
pub(super) fn take_frac(v: &str) -> (u32, &str) {
    let n = v.bytes().take_while(u8::is_ascii_digit).count();
    let mut ns = 0u32;
    for (i, c) in v.bytes().take(n).enumerate() {
        if i < 9 {
            ns += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
        }
    }
    (ns, &v[n..])
}

pub(super) fn lookup_name<'v>(v: &'v str, names: &[&str], short: bool) -> Option<(usize, &'v str)> {
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
