//! The functions of LogQL's templates (Go's builtins, Loki's and sprig's), looked up by name.

use super::*;

pub(super) fn lookup(name: &str) -> Option<&'static FuncDef> {
    FUNCS.iter().find(|f| f.name == name)
}

pub(super) const fn def(
    name: &'static str,
    min: usize,
    max: Option<usize>,
    f: FuncImpl,
) -> FuncDef {
    FuncDef { name, min, max, f }
}

pub(super) fn s(v: String) -> Result<Value, String> {
    Ok(Value::Str(v))
}

/// sprig's `toInt64`: lenient, unparsable strings become 0.
pub(super) fn to_i64(v: &Value) -> i64 {
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
pub(super) fn parse_go_int(s: &str) -> Option<i64> {
    if s.is_empty() || s.contains(['.', 'e', 'E']) && !s.starts_with("0x") && !s.starts_with("0X") {
        return None;
    }
    match parse_go_number(s)? {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

/// sprig's `toFloat64`: lenient, unparsable strings become 0.
pub(super) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Str(s) => s.trim().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Go's (and sprig's) notion of an empty value.
pub(super) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Time(t) => t.secs == ZERO_TIME_SECS && t.nanos == 0,
        Value::Labels => false,
        v => !v.truthy(),
    }
}

pub(super) fn check_len(n: usize) -> Result<(), String> {
    if n > MAX_OUTPUT {
        return Err(format!("result too large: {n} bytes, limit {MAX_OUTPUT}"));
    }
    Ok(())
}

/// Go's `strings.Trim` family with a cutset.
pub(super) fn trim_set(v: &str, cutset: &str, left: bool, right: bool) -> String {
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
pub(super) fn byte_slice(v: &str, start: usize, end: usize) -> String {
    String::from_utf8_lossy(&v.as_bytes()[start..end]).into_owned()
}

/// Go's `strings.Title`: upper-cases the first letter of each word.
pub(super) fn title(v: &str) -> String {
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

pub(super) fn trunc(a: &[Value]) -> Result<Value, String> {
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

pub(super) fn substr(a: &[Value]) -> Result<Value, String> {
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

pub(super) fn repeat(a: &[Value]) -> Result<Value, String> {
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
pub(super) fn bounded_replace(
    v: &str,
    old: &str,
    new: &str,
    limit: Option<usize>,
) -> Result<Value, String> {
    let found = if old.is_empty() {
        v.chars().count() + 1
    } else {
        v.matches(old).count()
    };
    let n = limit.map_or(found, |l| l.min(found));
    check_len((v.len() - n * old.len()).saturating_add(n.saturating_mul(new.len())))?;
    s(v.replacen(old, new, n))
}

pub(super) fn go_replace(a: &[Value]) -> Result<Value, String> {
    let (v, old, new) = (a[0].to_str(), a[1].to_str(), a[2].to_str());
    let n = to_i64(&a[3]);
    bounded_replace(&v, &old, &new, usize::try_from(n).ok())
}

pub(super) fn sprig_replace(a: &[Value]) -> Result<Value, String> {
    let (old, new, v) = (a[0].to_str(), a[1].to_str(), a[2].to_str());
    bounded_replace(&v, &old, &new, None)
}

pub(super) fn default_fn(a: &[Value]) -> Result<Value, String> {
    match a.get(1) {
        Some(v) if !is_empty(v) => Ok(v.clone()),
        _ => Ok(a[0].clone()),
    }
}

pub(super) fn len_fn(a: &[Value]) -> Result<Value, String> {
    Ok(Value::Int(match &a[0] {
        Value::Str(v) => v.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        Value::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    } as i64))
}

pub(super) fn index_fn(a: &[Value]) -> Result<Value, String> {
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

pub(super) fn values_eq(a: &Value, b: &Value) -> Result<bool, String> {
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

pub(super) fn eq_fn(a: &[Value]) -> Result<Value, String> {
    for b in &a[1..] {
        if values_eq(&a[0], b)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub(super) fn values_lt(a: &Value, b: &Value) -> Result<bool, String> {
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

pub(super) fn now() -> Time {
    let n = chrono::Utc::now();
    Time {
        secs: n.timestamp(),
        nanos: n.timestamp_subsec_nanos(),
        off: 0,
    }
}

/// sprig's `date` argument: a time, or Unix seconds; anything else means now.
pub(super) fn as_date(v: &Value) -> Time {
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

pub(super) fn want_time(v: &Value) -> Result<Time, String> {
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
pub(super) fn to_date(layout: &str, zone: &str, value: &str) -> Time {
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

pub(super) fn layout_has_zone(layout: &str) -> bool {
    layout_chunks(layout)
        .iter()
        .any(|c| matches!(c, Chunk::Std(Std::TZ | Std::Offset { .. })))
}

pub(super) fn zone_offset(zone: &str) -> Option<i32> {
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
pub(super) fn unix_to_time(epoch: &str) -> Result<Value, String> {
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

/// Go's `time.ParseDuration`, in seconds (LogQL's one duration parser).
pub(super) fn parse_duration(text: &str) -> Option<f64> {
    crate::logql::go::parse_duration(text)
        .ok()
        .map(|ns| ns as f64 / 1e9)
}

/// go-humanize's `ParseBytes` (LogQL's one byte-size parser).
pub(super) fn parse_bytes(text: &str) -> Option<i64> {
    crate::logql::go::parse_bytes(text.trim())
        .ok()
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(v: &str) -> String {
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
pub(super) fn query_unescape(v: &str) -> Result<String, String> {
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
pub(super) fn align(a: &[Value], left: bool) -> Result<Value, String> {
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
pub(super) fn indent(a: &[Value]) -> Result<String, String> {
    let n = to_i64(&a[0]).max(0) as usize;
    let v = a[1].to_str();
    let lines = v.bytes().filter(|&c| c == b'\n').count() + 1;
    check_len(v.len().saturating_add(n.saturating_mul(lines)))?;
    let pad = " ".repeat(n);
    Ok(format!("{pad}{}", v.replace('\n', &format!("\n{pad}"))))
}

/// Decodes JSON the way Go's `json.Unmarshal` into `interface{}` does: numbers are float64,
/// a repeated key keeps its last value.
pub(super) fn parse_json(text: &str) -> Option<Value> {
    fn convert(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => Value::List(a.into_iter().map(convert).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.into_iter().map(|(k, v)| (k, convert(v))).collect())
            }
        }
    }
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .map(convert)
}

/// sprig's `round a precision [half]`: rounds half away from zero unless `half` is given.
pub(super) fn round(a: &[Value]) -> Result<Value, String> {
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

pub(super) static FUNCS: &[FuncDef] = &[
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
