//! Go's value parsers as Loki's stages see them, with Go's error texts, because those texts
//! become `__error_details__`: `strconv.ParseFloat`, `time.ParseDuration` and go-humanize's
//! `ParseBytes`; plus `strconv.Quote` for the messages themselves.

use std::fmt::Write;

/// Go's `strconv.Quote` for the characters that occur in label values.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{fffd}' => out.push_str("\\ufffd"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strconv.ParseFloat(s, 64)`: the value, or Go's error. An overflow gives ±Inf together
/// with the range error, as in Go.
pub fn parse_float(s: &str) -> (f64, Option<String>) {
    let syntax = || format!("strconv.ParseFloat: parsing {}: invalid syntax", quote(s));
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !body.is_empty() && body.len() <= 15 && body.bytes().all(|b| b.is_ascii_digit()) {
        // Integers below 10^15 are exact as floats: the common case (status codes, counts)
        // without the general parser.
        let n = body.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')) as f64;
        return (if s.starts_with('-') { -n } else { n }, None);
    }
    let valid = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if valid {
        // Neither an infinity, a NaN nor a hexadecimal float.
        return match s.parse::<f64>() {
            Ok(v) if v.is_infinite() => (
                v,
                Some(format!(
                    "strconv.ParseFloat: parsing {}: value out of range",
                    quote(s)
                )),
            ),
            Ok(v) => (v, None),
            Err(_) => (0.0, Some(syntax())),
        };
    }
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        let v = if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
        return (v, None);
    }
    if lower == "nan" {
        if body.len() != s.len() {
            return (0.0, Some(syntax()));
        }
        return (f64::NAN, None);
    }
    if let Some(hex) = lower.strip_prefix("0x") {
        return match parse_hex_float(hex) {
            Some(v) => (if s.starts_with('-') { -v } else { v }, None),
            None => (0.0, Some(syntax())),
        };
    }
    (0.0, Some(syntax()))
}

fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = match s.find('p') {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars() {
        v = v * 16.0 + c.to_digit(16)? as f64;
    }
    let mut scale = 1.0 / 16.0;
    for c in frac.chars() {
        v += c.to_digit(16)? as f64 * scale;
        scale /= 16.0;
    }
    if !s.contains('p') && !frac.is_empty() {
        return None;
    }
    Some(v * 2f64.powi(exp))
}

/// `time.ParseDuration`: nanoseconds, or Go's error text.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(s));
    let (neg, mut rest) = match s.chars().next() {
        Some(c @ ('-' | '+')) => (c == '-', &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut d: u64 = 0;
    while !rest.is_empty() {
        let v;
        (v, rest) = duration_part(s, rest)?;
        d += v;
        if d > DURATION_LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok((d as i64).wrapping_neg());
    }
    if d > DURATION_LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i64)
}

/// The largest magnitude a duration reaches while it is read (`-1<<63` nanoseconds).
const DURATION_LIMIT: u64 = 1 << 63;

/// One `<number><unit>` at the start of `rest` (a non-empty part of the duration `s`), in
/// nanoseconds, with what follows it.
fn duration_part<'r>(s: &str, rest: &'r str) -> Result<(u64, &'r str), String> {
    let invalid = || format!("time: invalid duration {}", quote(s));
    let b = rest.as_bytes();
    if !(b[0] == b'.' || b[0].is_ascii_digit()) {
        return Err(invalid());
    }
    let (mut v, int_len) = leading_int(rest).ok_or_else(invalid)?;
    let (f, scale, frac_len, rest) = leading_fraction(&rest[int_len..]);
    if int_len == 0 && frac_len == 0 {
        return Err(invalid());
    }
    let unit_len = rest
        .find(|c: char| c == '.' || c.is_ascii_digit())
        .unwrap_or(rest.len());
    if unit_len == 0 {
        return Err(format!("time: missing unit in duration {}", quote(s)));
    }
    let u = &rest[..unit_len];
    let Some(unit) = unit_nanos(u) else {
        return Err(format!(
            "time: unknown unit {} in duration {}",
            quote(u),
            quote(s)
        ));
    };
    if v > DURATION_LIMIT / unit {
        return Err(invalid());
    }
    v *= unit;
    if f > 0 {
        v += (f as f64 * (unit as f64 / scale)) as u64;
        if v > DURATION_LIMIT {
            return Err(invalid());
        }
    }
    Ok((v, &rest[unit_len..]))
}

/// The integer of the leading digits of `s` and their count; `None` past `DURATION_LIMIT`.
fn leading_int(s: &str) -> Option<(u64, usize)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut v: u64 = 0;
    for &c in &s.as_bytes()[..len] {
        if v > DURATION_LIMIT / 10 {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
        if v > DURATION_LIMIT {
            return None;
        }
    }
    Some((v, len))
}

/// A `.` and the digits after it at the start of `s`: their value (digits past what fits are
/// dropped, as Go does), the power of ten it is scaled by, the number of digits, and the rest.
fn leading_fraction(s: &str) -> (u64, f64, usize, &str) {
    let Some(after) = s.strip_prefix('.') else {
        return (0, 1.0, 0, s);
    };
    let (mut f, mut scale) = (0u64, 1f64);
    let n = after.bytes().take_while(u8::is_ascii_digit).count();
    for &c in &after.as_bytes()[..n] {
        if f > (DURATION_LIMIT - 1) / 10 {
            break;
        }
        let y = f * 10 + u64::from(c - b'0');
        if y > DURATION_LIMIT {
            break;
        }
        f = y;
        scale *= 10.0;
    }
    (f, scale, n, &after[n..])
}

/// Nanoseconds in a Go duration unit.
fn unit_nanos(u: &str) -> Option<u64> {
    Some(match u {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// go-humanize's `ParseBytes`: bytes, or its error text.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let num_len = s
        .char_indices()
        .find(|(_, c)| !(c.is_numeric() || *c == '.' || *c == ','))
        .map_or(s.len(), |(i, _)| i);
    let num: String = s[..num_len].chars().filter(|c| *c != ',').collect();
    let (f, err) = parse_float(&num);
    if let Some(e) = err {
        return Err(e);
    }
    let extra = s[num_len..].trim().to_lowercase();
    let m: f64 = match byte_unit(&extra) {
        Some(m) => m,
        None => return Err(format!("unhandled size name: {extra}")),
    };
    let v = f * m;
    if v >= u64::MAX as f64 {
        return Err(format!("too large: {s}"));
    }
    Ok(v as u64)
}

/// A JSON string as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped,
/// control characters as `\u00XX` except `\n`, `\r` and `\t`.
pub fn json_quote(s: &str) -> String {
    // serde_json escapes what Go escapes but for the HTML-sensitive characters and the two
    // line separators, which it writes as they are (so a plain replace cannot hit an escape).
    serde_json::to_string(s)
        .expect("bug: a string encodes")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// A byte size as Loki's `flagext.ByteSize` reads it (c2h5oh/datasize): binary units whatever
/// their spelling, `3MB` = `3MiB` = 3 MiB. Read by [`parse_bytes`] with each SI unit name
/// taken as its binary twin, so there is one byte-size parser.
pub fn parse_datasize(s: &str) -> Result<u64, String> {
    let num_len = s
        .char_indices()
        .find(|(_, c)| !(c.is_numeric() || *c == '.' || *c == ','))
        .map_or(s.len(), |(i, _)| i);
    let unit = s[num_len..].trim().to_ascii_lowercase();
    let binary = match unit.as_str() {
        "k" | "kb" => "kib",
        "m" | "mb" => "mib",
        "g" | "gb" => "gib",
        "t" | "tb" => "tib",
        "p" | "pb" => "pib",
        "e" | "eb" => "eib",
        other => other,
    };
    parse_bytes(&format!("{}{binary}", &s[..num_len]))
}

/// The multiplier of a go-humanize byte unit (lower case): `kb` is 1000, `kib` is 1024, and
/// so on up to exbibytes; `""` and `b` are bytes.
pub fn byte_unit(unit: &str) -> Option<f64> {
    Some(match unit {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn dur(s: &str, want: Result<i64, &str>) {
        assert_eq!(parse_duration(s), want.map_err(str::to_string), "{s}");
    }

    #[test]
    fn durations_follow_go() {
        dur("1s", Ok(1_000_000_000));
        dur("1.5h", Ok(5_400_000_000_000));
        dur("-250ms", Ok(-250_000_000));
        dur("1h2m3s4ms5us6ns", Ok(3_723_004_005_006));
        dur("0", Ok(0));
        dur("", Err("time: invalid duration \"\""));
        dur("abc", Err("time: invalid duration \"abc\""));
        dur("10", Err("time: missing unit in duration \"10\""));
        dur("3x", Err("time: unknown unit \"x\" in duration \"3x\""));
    }

    #[test]
    fn floats_follow_go() {
        assert_eq!(parse_float("1.5"), (1.5, None));
        assert_eq!(parse_float("1e3"), (1000.0, None));
        assert_eq!(
            parse_float("abc").1.as_deref(),
            Some("strconv.ParseFloat: parsing \"abc\": invalid syntax")
        );
        assert_eq!(parse_float("0x10").0, 16.0);
        assert!(parse_float("1e400")
            .1
            .unwrap()
            .ends_with("value out of range"));
        assert!(parse_float("NaN").0.is_nan());
    }

    /// The integer shortcut gives what the general parser gives, sign of zero included.
    #[test]
    fn integers_parse_as_the_general_parser_does() {
        let mut cases: Vec<String> = ["0", "-0", "+0", "007", "-12", "+500", "999999999999999"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut x: u64 = 1;
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let digits = (x >> 60) as u32 + 1;
            let v = (x >> 4) % 10u64.pow(digits.min(15));
            cases.push(v.to_string());
            cases.push(format!("-{v}"));
        }
        for c in &cases {
            let (got, err) = parse_float(c);
            let want: f64 = c.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
            assert_eq!(err, None);
        }
        assert_eq!(parse_float("1234567890123456").0, 1234567890123456.0);
        assert!(parse_float("-").1.is_some());
    }

    #[test]
    fn bytes_follow_humanize() {
        assert_eq!(parse_bytes("5KB"), Ok(5000));
        assert_eq!(parse_bytes("1 KiB"), Ok(1024));
        assert_eq!(parse_bytes("1,000"), Ok(1000));
        assert_eq!(
            parse_bytes("5 zb"),
            Err("unhandled size name: zb".to_string())
        );
        assert_eq!(
            parse_bytes("abc"),
            Err("strconv.ParseFloat: parsing \"\": invalid syntax".to_string())
        );
    }

    #[test]
    fn datasize_reads_si_names_as_binary() {
        assert_eq!(parse_datasize("3MB"), Ok(3 << 20));
        assert_eq!(parse_datasize("3MiB"), Ok(3 << 20));
        assert_eq!(parse_datasize("15mb"), Ok(15 << 20));
        assert_eq!(parse_datasize("512"), Ok(512));
        assert_eq!(parse_datasize("1.5KB"), Ok(1536));
        assert!(parse_datasize("3XB").is_err());
    }
}
