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
        if layout[i..].starts_with("_2006") {
            // A literal underscore followed by a year.
            chunks.push(Chunk::Lit(&layout[lit..i + 1]));
            lit = i + 1;
            i += 1;
            continue;
        }
        match element_at(layout, i) {
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

/// The layout element starting at byte `i` of `layout`, with its length in bytes.
fn element_at(layout: &str, i: usize) -> Option<(Std, usize)> {
    let b = layout.as_bytes();
    let rest = &layout[i..];
    match b[i] {
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
        b'_' if rest.starts_with("_2") => Some((Std::UnderDay, 2)),
        b'3' => Some((Std::Hour12, 1)),
        b'4' => Some((Std::Minute, 1)),
        b'5' => Some((Std::Second, 1)),
        b'P' if rest.starts_with("PM") => Some((Std::PM, 2)),
        b'p' if rest.starts_with("pm") => Some((Std::Pm, 2)),
        b'-' | b'Z' => offset_element(b[i] == b'Z', &rest[1..]),
        b'.' | b',' if matches!(b.get(i + 1), Some(b'0' | b'9')) => frac_element(b, i),
        _ => None,
    }
}

/// A numeric zone offset after its `-` or `Z` (`Z` also standing for UTC): `07:00:00`,
/// `070000`, `07:00`, `0700` or `07`.
fn offset_element(z: bool, body: &str) -> Option<(Std, usize)> {
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

/// Fractional seconds at byte `i` (`.000`, `,999`...); none when a digit follows the run.
fn frac_element(b: &[u8], i: usize) -> Option<(Std, usize)> {
    let ch = b[i + 1];
    let mut j = i + 1;
    while j < b.len() && b[j] == ch {
        j += 1;
    }
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((
        Std::Frac {
            n: j - i - 1,
            trim: ch == b'9',
            comma: b[i] == b',',
        },
        j - i,
    ))
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
    let chunks = layout_chunks(layout);
    let mut fields = Fields::new();
    let mut v = value;
    for (idx, chunk) in chunks.iter().enumerate() {
        v = match chunk {
            Chunk::Lit(l) => skip_lit(v, l),
            Chunk::Std(std) => {
                let next_is_frac =
                    matches!(chunks.get(idx + 1), Some(Chunk::Std(Std::Frac { .. })));
                fields.read(*std, v, next_is_frac)
            }
        }
        .ok_or_else(bad)?;
    }
    if !v.is_empty() {
        return Err(format!(
            "extra text {v:?} after parsing {value:?} as {layout:?}"
        ));
    }
    fields.into_time().map_err(|e| match e {
        Invalid::Unparsable => bad(),
        Invalid::OutOfRange => format!("parsing {value:?}: value out of range"),
    })
}

/// Why read fields do not make a time.
enum Invalid {
    Unparsable,
    OutOfRange,
}

/// What a value says about its time, filled in element by element as `go_parse` reads it;
/// what the layout does not mention keeps Go's zero (year 1, January 1st, midnight, UTC).
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    yday: i64,
    hour: i64,
    min: i64,
    sec: i64,
    nanos: u32,
    pm: Option<bool>,
    off: Option<i32>,
}

impl Fields {
    fn new() -> Fields {
        Fields {
            year: 1,
            month: 0,
            day: 0,
            yday: 0,
            hour: 0,
            min: 0,
            sec: 0,
            nanos: 0,
            pm: None,
            off: None,
        }
    }

    /// Reads one layout element at the start of `v`; returns the rest, or `None` when it does not fit.
    fn read<'v>(&mut self, std: Std, v: &'v str, next_is_frac: bool) -> Option<&'v str> {
        match std {
            Std::LongYear | Std::Year => self.read_year(std, v),
            Std::LongMonth | Std::Month | Std::NumMonth | Std::ZeroMonth => self.read_month(std, v),
            Std::LongWeekDay | Std::WeekDay => {
                // The weekday is checked for spelling only, as Go does.
                lookup_name(v, &DAYS, std == Std::WeekDay).map(|(_, r)| r)
            }
            Std::Day | Std::UnderDay | Std::ZeroDay => self.read_day(std, v),
            Std::UnderYearDay | Std::ZeroYearDay => self.read_year_day(std, v),
            Std::Hour | Std::Hour12 | Std::ZeroHour12 => self.read_hour(std, v),
            Std::Minute | Std::ZeroMinute => {
                let (n, r) = take_digits(v, if std == Std::ZeroMinute { 2 } else { 1 }, 2)?;
                self.min = n;
                Some(r)
            }
            Std::Second | Std::ZeroSecond => self.read_second(std, v, next_is_frac),
            Std::PM | Std::Pm => self.read_am_pm(v),
            Std::TZ => self.read_zone_name(v),
            Std::Offset {
                z,
                colon,
                secs,
                mins,
            } => self.read_offset(v, z, colon, mins, secs),
            Std::Frac { n, trim, .. } => self.read_frac(v, n, trim),
        }
    }

    fn read_year<'v>(&mut self, std: Std, v: &'v str) -> Option<&'v str> {
        if std == Std::LongYear {
            let (n, r) = take_digits(v, 4, 4)?;
            self.year = n;
            return Some(r);
        }
        let (n, r) = take_digits(v, 2, 2)?;
        self.year = if n >= 69 { 1900 + n } else { 2000 + n };
        Some(r)
    }

    fn read_month<'v>(&mut self, std: Std, v: &'v str) -> Option<&'v str> {
        if matches!(std, Std::LongMonth | Std::Month) {
            let (i, r) = lookup_name(v, &MONTHS, std == Std::Month)?;
            self.month = i as u32 + 1;
            return Some(r);
        }
        let min_digits = if std == Std::ZeroMonth { 2 } else { 1 };
        let (n, r) = take_digits(v, min_digits, 2)?;
        self.month = n as u32;
        Some(r)
    }

    fn read_day<'v>(&mut self, std: Std, mut v: &'v str) -> Option<&'v str> {
        if std == Std::UnderDay && v.starts_with(' ') {
            v = &v[1..];
        }
        let min_digits = if std == Std::ZeroDay { 2 } else { 1 };
        let (n, r) = take_digits(v, min_digits, 2)?;
        self.day = n as u32;
        Some(r)
    }

    fn read_year_day<'v>(&mut self, std: Std, mut v: &'v str) -> Option<&'v str> {
        if std == Std::UnderYearDay {
            v = v.trim_start_matches(' ');
        }
        let (n, r) = take_digits(v, 1, 3)?;
        self.yday = n;
        Some(r)
    }

    fn read_hour<'v>(&mut self, std: Std, v: &'v str) -> Option<&'v str> {
        let (min_digits, max_hour) = match std {
            Std::Hour => (1, i64::MAX),
            Std::ZeroHour12 => (2, 12),
            _ => (1, 12),
        };
        let (n, r) = take_digits(v, min_digits, 2)?;
        if n > max_hour {
            return None;
        }
        self.hour = n;
        Some(r)
    }

    /// Seconds, then a fraction the layout does not mention, which Go still accepts.
    fn read_second<'v>(&mut self, std: Std, v: &'v str, next_is_frac: bool) -> Option<&'v str> {
        let (n, v) = take_digits(v, if std == Std::ZeroSecond { 2 } else { 1 }, 2)?;
        self.sec = n;
        let b = v.as_bytes();
        if !next_is_frac && b.len() > 1 && (b[0] == b'.' || b[0] == b',') && b[1].is_ascii_digit() {
            let (ns, r) = take_frac(&v[1..]);
            self.nanos = ns;
            return Some(r);
        }
        Some(v)
    }

    fn read_am_pm<'v>(&mut self, v: &'v str) -> Option<&'v str> {
        let p = v.get(..2)?;
        self.pm = Some(match p.to_ascii_uppercase().as_str() {
            "PM" => true,
            "AM" => false,
            _ => return None,
        });
        Some(&v[2..])
    }

    /// A zone abbreviation (`UTC`, or three to five capitals); every zone reads as UTC.
    fn read_zone_name<'v>(&mut self, v: &'v str) -> Option<&'v str> {
        self.off = Some(0);
        if let Some(r) = v.strip_prefix("UTC") {
            return Some(r);
        }
        let n = v.bytes().take_while(u8::is_ascii_uppercase).count();
        (3..=5).contains(&n).then(|| &v[n..])
    }

    /// A numeric offset such as `-07`, `-0700`, `-07:00:00`, or `Z` where the layout allows it.
    fn read_offset<'v>(
        &mut self,
        mut v: &'v str,
        z: bool,
        colon: bool,
        mins: bool,
        secs: bool,
    ) -> Option<&'v str> {
        if z && v.starts_with('Z') {
            self.off = Some(0);
            return Some(&v[1..]);
        }
        let sign = match v.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        let (h, r) = take_digits(&v[1..], 2, 2)?;
        v = r;
        let mut total = h * 3600;
        for (wanted, mult) in [(mins, 60), (secs, 1)] {
            if !wanted {
                continue;
            }
            if colon {
                v = v.strip_prefix(':')?;
            }
            let (n, r) = take_digits(v, 2, 2)?;
            total += n * mult;
            v = r;
        }
        self.off = Some(sign * total as i32);
        Some(v)
    }

    /// A fraction of `n` digits, or with `trim` (`.999`) any number of them or none at all.
    fn read_frac<'v>(&mut self, v: &'v str, n: usize, trim: bool) -> Option<&'v str> {
        let b = v.as_bytes();
        if b.first().is_none_or(|c| *c != b'.' && *c != b',') {
            return trim.then_some(v);
        }
        let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !trim && digits != n || trim && digits == 0 {
            return None;
        }
        let (ns, r) = take_frac(&v[1..]);
        self.nanos = ns;
        Some(r)
    }

    /// Turns the read fields into a time: AM/PM and day of year applied, ranges checked.
    fn into_time(mut self) -> Result<Time, Invalid> {
        self.apply_am_pm();
        self.apply_year_day()?;
        let month = if self.month == 0 { 1 } else { self.month };
        let day = if self.day == 0 { 1 } else { self.day };
        let (year, hour, min, sec) = (self.year, self.hour, self.min, self.sec);
        if month > 12 || day > days_in_month(year, month) || hour > 23 || min > 59 || sec > 59 {
            return Err(Invalid::OutOfRange);
        }
        let off = self.off.unwrap_or(0);
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
        Ok(Time {
            secs: local - i64::from(off),
            nanos: self.nanos,
            off,
        })
    }

    fn apply_am_pm(&mut self) {
        match self.pm {
            Some(true) if self.hour < 12 => self.hour += 12,
            Some(false) if self.hour == 12 => self.hour = 0,
            _ => {}
        }
    }

    /// A day of year sets month and day when the layout gave no month.
    fn apply_year_day(&mut self) -> Result<(), Invalid> {
        if self.yday == 0 || self.month != 0 {
            return Ok(());
        }
        let max = if is_leap(self.year) { 366 } else { 365 };
        if self.yday > max {
            return Err(Invalid::Unparsable);
        }
        let (_, m, d) = civil_from_days(days_from_civil(self.year, 1, 1) + self.yday - 1);
        self.month = m;
        self.day = d;
        Ok(())
    }
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
