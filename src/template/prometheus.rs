//! Prometheus' alert templates on the same engine: the data an alerting rule's labels and
//! annotations see (`.Labels`, `.Value`, `.ExternalLabels`, `.ExternalURL`, with the variables
//! `$labels`, `$value`, `$externalLabels` and `$externalURL` that Prometheus declares before
//! every template), Go's builtins, and Prometheus' template functions: the `humanize` family,
//! `humanizeTimestamp`, `toTime`, `toDuration`, `parseDuration`, `match`, `reReplaceAll`,
//! `title`, `toUpper`, `toLower`, `stripPort`, `stripDomain`, `graphLink`, `tableLink`, `args`,
//! `externalURL`, `pathPrefix`, and `first`, `label`, `value`, `strvalue`, `sortByLabel` over
//! lists of samples. Left out, since they make no sense here: `query` (a template cannot run
//! a PromQL query against Sawmill), `tmpl` and `safeHtml`.

use std::collections::BTreeMap;

use super::*;

/// Go's builtins that Prometheus' templates have, taken from the LogQL function table where
/// both agree.
const BUILTINS: [&str; 14] = [
    "and", "or", "not", "len", "index", "print", "println", "printf", "eq", "ne", "lt", "le", "gt",
    "ge",
];

/// Declared before every alert template, as Prometheus does.
const PREAMBLE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// What an alert template sees.
pub struct AlertData<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub value: f64,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
}

impl Template {
    /// Parses an alert label or annotation template with Prometheus' function map.
    pub fn parse_alert(text: &str) -> Result<Template, TemplateError> {
        let full = format!("{PREAMBLE}{text}");
        Template::parse_dialect(&full, Dialect::Prometheus).map_err(|e| match e {
            TemplateError::Parse { offset, msg } => TemplateError::Parse {
                offset: offset.saturating_sub(PREAMBLE.len()),
                msg,
            },
            TemplateError::TooDeep { offset } => TemplateError::TooDeep {
                offset: offset.saturating_sub(PREAMBLE.len()),
            },
            other => other,
        })
    }

    /// Renders an alert template for one alert.
    pub fn render_alert(&self, d: &AlertData<'_>) -> Result<String, TemplateError> {
        let map = |m: &BTreeMap<String, String>| {
            Value::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                    .collect(),
            )
        };
        let root = Value::Map(BTreeMap::from([
            ("Labels".to_string(), map(d.labels)),
            ("ExternalLabels".to_string(), map(d.external_labels)),
            (
                "ExternalURL".to_string(),
                Value::Str(d.external_url.to_string()),
            ),
            ("Value".to_string(), Value::Float(d.value)),
        ]));
        let mut out = String::new();
        self.run(root, &|_| None, "", 0, &mut out)?;
        Ok(out)
    }
}

/// A function of Prometheus' alert templates.
pub(super) fn lookup_prometheus(name: &str) -> Option<&'static FuncDef> {
    if BUILTINS.contains(&name) {
        return lookup(name);
    }
    PROMETHEUS_FUNCS.iter().find(|f| f.name == name)
}

/// Prometheus' `convertToFloat`: numbers as they are, strings parsed.
fn float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Int(i) => Ok(*i as f64),
        Value::Float(f) => Ok(*f),
        Value::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn g4(v: f64) -> String {
    fmt_float_g(v, Some(4), false)
}

/// `humanize`: SI prefixes, four significant digits.
fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

/// `humanize1024`: binary prefixes.
fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return g4(v);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// `humanizeDuration` of seconds: `1d 2h 3m 4s`, `1.5s`, `250ms`.
fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", g4(v))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", g4(v))
}

/// Seconds as a time (UTC); `None` when out of Go's range.
fn seconds_to_time(v: f64) -> Option<Time> {
    if !v.is_finite() || v.abs() > 9.2e9 {
        return None;
    }
    let ns = (v * 1e9).round();
    Some(Time::from_ns(ns as i64))
}

/// Go's `time.Duration.String()` of seconds: `1h2m3.5s`, `250ms`, `0s`.
fn duration_string(secs: f64) -> String {
    let ns = (secs * 1e9).round() as i64;
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    let frac = |v: u64, digits: usize| -> String {
        let s = format!("{:0width$}", v, width = digits);
        let s = s.trim_end_matches('0');
        if s.is_empty() {
            String::new()
        } else {
            format!(".{s}")
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}{}µs", u / 1_000, frac(u % 1_000, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}{}ms", u / 1_000_000, frac(u % 1_000_000, 6));
    }
    let (h, rest) = (u / 3_600_000_000_000, u % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = format!("{}{}s", rest / 1_000_000_000, frac(rest % 1_000_000_000, 9));
    match (h, m) {
        (0, 0) => format!("{sign}{s}"),
        (0, m) => format!("{sign}{m}m{s}"),
        (h, m) => format!("{sign}{h}h{m}m{s}"),
    }
}

fn strip_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return rest[..end].to_string();
        }
    }
    match host.rfind(':') {
        Some(i) if host[..i].find(':').is_none() => host[..i].to_string(),
        _ => host.to_string(),
    }
}

fn strip_domain(host: &str) -> String {
    if host.starts_with('[') || host.matches(':').count() > 1 {
        return host.to_string(); // an IPv6 address has no domain
    }
    let (name, port) = match host.rfind(':') {
        Some(i) => (&host[..i], &host[i..]),
        None => (host, ""),
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return host.to_string();
    }
    let first = name.split('.').next().unwrap_or(name);
    format!("{first}{port}")
}

fn link(expr: &Value, tab: u8) -> Result<Value, String> {
    Ok(Value::Str(format!(
        "/graph?g0.expr={}&g0.tab={tab}",
        query_escape(&expr.to_str())
    )))
}

/// A sample's field: `.Labels` or `.Value` of a map, as Prometheus' query results carry them.
fn sample_field(v: &Value, field: &str) -> Result<Value, String> {
    match v {
        Value::Map(m) => Ok(m.get(field).cloned().unwrap_or(Value::Nil)),
        other => Err(format!("can't read {field} of {}", other.type_name())),
    }
}

fn label_of(name: &str, sample: &Value) -> Result<String, String> {
    Ok(match sample_field(sample, "Labels")? {
        Value::Map(l) => l.get(name).map(|v| v.to_str()).unwrap_or_default(),
        _ => String::new(),
    })
}

static PROMETHEUS_FUNCS: &[FuncDef] = &[
    def("humanize", 1, Some(1), |a| s(humanize(float(&a[0])?))),
    def("humanize1024", 1, Some(1), |a| {
        s(humanize1024(float(&a[0])?))
    }),
    def("humanizeDuration", 1, Some(1), |a| {
        s(humanize_duration(float(&a[0])?))
    }),
    def("humanizePercentage", 1, Some(1), |a| {
        s(format!("{}%", g4(float(&a[0])? * 100.0)))
    }),
    def("humanizeTimestamp", 1, Some(1), |a| {
        let v = float(&a[0])?;
        Ok(match seconds_to_time(v) {
            Some(t) => Value::Str(time_string(t)),
            None => Value::Str(g4(v)),
        })
    }),
    def("toTime", 1, Some(1), |a| {
        let v = float(&a[0])?;
        seconds_to_time(v)
            .map(Value::Time)
            .ok_or_else(|| format!("{} cannot be represented as time", g4(v)))
    }),
    def("toDuration", 1, Some(1), |a| {
        s(duration_string(float(&a[0])?))
    }),
    def("parseDuration", 1, Some(1), |a| {
        let text = a[0].to_str();
        crate::logql::parse_prometheus_duration(&text)
            .map(|d| Value::Float(d.as_nanos() as f64 / 1e9))
            .map_err(|e| e.to_string())
    }),
    def("title", 1, Some(1), |a| s(title(&a[0].to_str()))),
    def("toUpper", 1, Some(1), |a| s(a[0].to_str().to_uppercase())),
    def("toLower", 1, Some(1), |a| s(a[0].to_str().to_lowercase())),
    def("match", 2, Some(2), |a| {
        let re = compile_regex(&a[0].to_str())?;
        Ok(Value::Bool(re.is_match(&a[1].to_str())))
    }),
    def("reReplaceAll", 3, Some(3), |a| {
        // Prometheus: (pattern, replacement, text); the shared helper takes (_, text, replacement).
        let re = compile_regex(&a[0].to_str())?;
        regex_replace(&re, &[a[0].clone(), a[2].clone(), a[1].clone()], false)
    }),
    def("stripPort", 1, Some(1), |a| s(strip_port(&a[0].to_str()))),
    def("stripDomain", 1, Some(1), |a| {
        s(strip_domain(&a[0].to_str()))
    }),
    def("graphLink", 1, Some(1), |a| link(&a[0], 0)),
    def("tableLink", 1, Some(1), |a| link(&a[0], 1)),
    def("args", 0, None, |a| {
        Ok(Value::Map(
            a.iter()
                .enumerate()
                .map(|(i, v)| (format!("arg{i}"), v.clone()))
                .collect(),
        ))
    }),
    def("pathPrefix", 0, Some(0), |_| s(String::new())),
    def("externalURL", 0, Some(0), |_| s(String::new())),
    def("first", 1, Some(1), |a| match &a[0] {
        Value::List(l) => l
            .first()
            .cloned()
            .ok_or_else(|| "first() called on vector with no elements".into()),
        other => Err(format!("first of {}", other.type_name())),
    }),
    def("label", 2, Some(2), |a| s(label_of(&a[0].to_str(), &a[1])?)),
    def("value", 1, Some(1), |a| sample_field(&a[0], "Value")),
    def("strvalue", 1, Some(1), |a| s(label_of("__value__", &a[0])?)),
    def("sortByLabel", 2, Some(2), |a| {
        let name = a[0].to_str();
        let Value::List(l) = &a[1] else {
            return Err(format!("sortByLabel of {}", a[1].type_name()));
        };
        let mut keyed: Vec<(String, Value)> = l
            .iter()
            .map(|v| Ok((label_of(&name, v)?, v.clone())))
            .collect::<Result<_, String>>()?;
        keyed.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(Value::List(keyed.into_iter().map(|(_, v)| v).collect()))
    }),
    def("slice", 1, None, |a| {
        let bound = |i: usize, len: usize| -> Result<usize, String> {
            let n = to_i64(&a[i]);
            if n < 0 || n as usize > len {
                return Err(format!("index out of range: {n}"));
            }
            Ok(n as usize)
        };
        match &a[0] {
            Value::Str(st) => {
                let lo = if a.len() > 1 { bound(1, st.len())? } else { 0 };
                let hi = if a.len() > 2 {
                    bound(2, st.len())?
                } else {
                    st.len()
                };
                st.get(lo..hi.max(lo))
                    .map(|x| Value::Str(x.to_string()))
                    .ok_or_else(|| "slice: not at a character boundary".into())
            }
            Value::List(l) => {
                let lo = if a.len() > 1 { bound(1, l.len())? } else { 0 };
                let hi = if a.len() > 2 {
                    bound(2, l.len())?
                } else {
                    l.len()
                };
                Ok(Value::List(l[lo..hi.max(lo)].to_vec()))
            }
            other => Err(format!("can't slice item of type {}", other.type_name())),
        }
    }),
    def("html", 1, None, |a| {
        let text: String = a.iter().map(|v| v.to_str()).collect();
        s(text
            .replace('&', "&amp;")
            .replace('\'', "&#39;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;"))
    }),
    def("urlquery", 1, None, |a| {
        let text: String = a.iter().map(|v| v.to_str()).collect();
        s(query_escape(&text))
    }),
];
