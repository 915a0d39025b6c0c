//! What Grafana's Logs Drilldown asks about a query's data: the labels worth offering
//! (`detected_labels`) and the fields found in the lines (`detected_fields`,
//! `detected_field/NAME/values`), detected as Loki's frontend does: structured metadata first,
//! then what the query's own parsers found, then `json`, else `logfmt`, tried on each line.

use std::collections::{BTreeMap, BTreeSet};

use super::{ResultEntry, StreamResult};
use crate::labels::Labels;
use crate::logql;
use crate::pipeline::fields::{json_pipeline, logfmt_pipeline};
use crate::pipeline::labels_builder::{LabelsBuilder, ERROR_DETAILS_LABEL, ERROR_LABEL};
use crate::pipeline::Pipeline;

/// Labels `detected_labels` reports even when their values look like IDs.
const STATIC_LABELS: [&str; 4] = ["cluster", "namespace", "instance", "pod"];
/// Labels the query pipeline may add that are not fields.
const ERROR_LABELS: [&str; 3] = [ERROR_LABEL, ERROR_DETAILS_LABEL, "__preserve_error__"];

/// The detected labels of these streams with their number of distinct values. As Loki: labels
/// whose every value looks like an ID (a number or a UUID) are left out unless they are among
/// `cluster`, `namespace`, `instance`, `pod`; and so are internal labels (every `__` name).
pub fn detected_labels(streams: &[Labels]) -> Vec<(String, usize)> {
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in streams {
        for (n, v) in l.pairs() {
            if !n.starts_with("__") {
                values.entry(n).or_default().insert(v);
            }
        }
    }
    values
        .iter()
        .filter(|(n, vs)| STATIC_LABELS.contains(n) || !vs.iter().all(|v| looks_like_id(v)))
        .map(|(n, vs)| (n.to_string(), vs.len()))
        .collect()
}

/// A number (Go's `ParseFloat`) or a UUID (Go's `uuid.Parse`).
fn looks_like_id(v: &str) -> bool {
    is_go_float(v) || is_uuid(v)
}

fn is_uuid(v: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let dashed = |s: &str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 5
            && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts.iter().all(|p| hex(p))
    };
    match v.len() {
        32 => hex(v),
        36 => dashed(v),
        38 => v.starts_with('{') && v.ends_with('}') && dashed(&v[1..37]),
        45 => v.len() > 9 && v[..9].eq_ignore_ascii_case("urn:uuid:") && dashed(&v[9..]),
        _ => false,
    }
}

/// What is known of one detected field.
pub struct Field {
    pub kind: &'static str,
    pub values: BTreeSet<String>,
    pub parsers: Vec<&'static str>,
}

/// The `json` and `logfmt` parsers tried on each line, with a builder for the entry's labels.
struct LineParsers {
    json: Pipeline,
    logfmt: Pipeline,
    builder: LabelsBuilder,
}

impl LineParsers {
    fn new() -> LineParsers {
        LineParsers {
            json: json_pipeline(None),
            logfmt: logfmt_pipeline(None),
            builder: LabelsBuilder::new(),
        }
    }

    /// The parsed fields of an entry: those its query's pipeline parsed, plus what `json` (or,
    /// when the line is not JSON, `logfmt`) finds in the line; and the parser that succeeded
    /// (none when both failed: then only the query's own parsed fields).
    fn parse(
        &mut self,
        stream: &Labels,
        e: &ResultEntry,
    ) -> (BTreeMap<String, BTreeSet<String>>, Option<&'static str>) {
        let already = &e.categorized.parsed;
        let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (n, v) in already {
            if !ERROR_LABELS.contains(&n.as_str()) {
                fields.entry(n.clone()).or_default().insert(v.clone());
            }
        }
        // Names the query already parsed are not stream labels here (no `_extracted`).
        let base: Vec<&(String, String)> = stream
            .pairs()
            .iter()
            .filter(|(n, _)| !already.iter().any(|(p, _)| p == n))
            .collect();
        let base: Vec<(&str, &str)> = base.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        self.builder.set_stream(&base);
        let line = e.line.as_bytes();
        let mut parser = "json";
        self.builder.start_entry::<&str, &str>(&[]);
        let ok = self.json.process(e.ts, line, &mut self.builder).is_some();
        if !ok || self.builder.has_err() {
            parser = "logfmt";
            self.builder.start_entry::<&str, &str>(&[]);
            let ok = self.logfmt.process(e.ts, line, &mut self.builder).is_some();
            if !ok || self.builder.has_err() {
                return (fields, None);
            }
        }
        for (n, v) in self.builder.categorized().parsed {
            if !ERROR_LABELS.contains(&n.as_str()) {
                fields.entry(n).or_default().insert(v);
            }
        }
        (fields, Some(parser))
    }
}

/// Structured metadata of an entry, values grouped by name.
fn metadata_fields(e: &ResultEntry) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (n, v) in &e.categorized.structured_metadata {
        out.entry(n).or_default().insert(v);
    }
    out
}

/// Loki's field detection over the entries of a log query: structured metadata first (no
/// parser), then parsed fields. At most `limit` fields; a field's type is that of the first
/// value of the last entry that had it.
pub fn detect_fields(streams: &[StreamResult], limit: usize) -> BTreeMap<String, Field> {
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let mut parsers = LineParsers::new();
    let note = |fields: &mut BTreeMap<String, Field>,
                name: &str,
                values: Vec<String>,
                parser: Option<&'static str>| {
        if !fields.contains_key(name) {
            if fields.len() >= limit {
                return;
            }
            fields.insert(
                name.to_string(),
                Field {
                    kind: "string",
                    values: BTreeSet::new(),
                    parsers: Vec::new(),
                },
            );
        }
        let f = fields.get_mut(name).expect("bug: field inserted above");
        if let Some(p) = parser {
            if !f.parsers.contains(&p) {
                f.parsers.push(p);
            }
        }
        if let Some(first) = values.first() {
            f.kind = field_type(first);
        }
        f.values.extend(values);
    };
    for s in streams {
        for e in &s.entries {
            for (n, vs) in metadata_fields(e) {
                note(
                    &mut fields,
                    n,
                    vs.into_iter().map(str::to_string).collect(),
                    None,
                );
            }
            let (parsed, parser) = parsers.parse(&s.labels, e);
            for (n, vs) in parsed {
                note(&mut fields, &n, vs.into_iter().collect(), parser);
            }
        }
    }
    fields
}

/// Values of one field over the entries, until `limit` are found. Parsed byte sizes with a
/// unit are rewritten as go-humanize writes them (`1.5kB`), so they can go into a query.
pub fn detect_field_values(streams: &[StreamResult], name: &str, limit: usize) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    let mut parsers = LineParsers::new();
    'streams: for s in streams {
        for e in &s.entries {
            if values.len() >= limit {
                break 'streams;
            }
            if let Some(vs) = metadata_fields(e).get(name) {
                values.extend(vs.iter().map(|v| v.to_string()));
            }
            let (parsed, _) = parsers.parse(&s.labels, e);
            for v in parsed.get(name).into_iter().flatten() {
                values.insert(normalize_bytes(v).unwrap_or_else(|| v.clone()));
            }
        }
    }
    values
}

/// Loki's type of a field value, tried in this order: int, float, boolean, duration, bytes.
fn field_type(v: &str) -> &'static str {
    if is_go_int(v) {
        "int"
    } else if is_go_float(v) {
        "float"
    } else if matches!(
        v,
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    ) {
        "boolean"
    } else if logql::parse_go_duration(v).is_ok() {
        "duration"
    } else if logql::parse_bytes(v).is_ok() {
        "bytes"
    } else {
        "string"
    }
}

/// Go's `strconv.ParseInt(v, 10, 64)` succeeds.
fn is_go_int(v: &str) -> bool {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && v.parse::<i64>().is_ok()
}

/// Go's `strconv.ParseFloat(v, 64)` succeeds (decimal forms; out of range is an error there).
fn is_go_float(v: &str) -> bool {
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => true,
        Ok(_) => {
            let l = v.trim_start_matches(['+', '-']).to_ascii_lowercase();
            matches!(l.as_str(), "inf" | "infinity" | "nan")
        }
        Err(_) => false,
    }
}

/// A byte size with a unit, rewritten as go-humanize's `Bytes` writes it without the space
/// (`1500` bytes → `1.5kB`); `None` when `v` is not one.
fn normalize_bytes(v: &str) -> Option<String> {
    const UNITS: [&str; 25] = [
        "b", "kib", "kb", "mib", "mb", "gib", "gb", "tib", "tb", "pib", "pb", "eib", "eb", "ki",
        "k", "mi", "m", "gi", "g", "ti", "t", "pi", "p", "ei", "e",
    ];
    let lower = v.to_ascii_lowercase();
    if !UNITS.iter().any(|u| lower.ends_with(u)) {
        return None;
    }
    let n = logql::parse_bytes(v).ok()?;
    if n < 10 {
        return Some(format!("{n}B"));
    }
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor().min(6.0);
    let val = ((n as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    let unit = SIZES[e as usize];
    Some(if val < 10.0 {
        format!("{val:.1}{unit}")
    } else {
        format!("{val:.0}{unit}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn kind(v: &str, want: &str) {
        assert_eq!(field_type(v), want, "{v}");
    }

    #[test]
    fn field_types_in_loki_order() {
        kind("42", "int");
        kind("-7", "int");
        kind("1.5", "float");
        kind("1e3", "float");
        kind("true", "boolean");
        kind("F", "boolean");
        kind("250ms", "duration");
        kind("1h30m", "duration");
        kind("10KB", "bytes");
        kind("3 MiB", "bytes");
        kind("GET", "string");
        kind("", "string");
    }

    #[test]
    fn ids_and_uuids() {
        assert!(looks_like_id("12"));
        assert!(looks_like_id("3.5"));
        assert!(looks_like_id("123e4567-e89b-12d3-a456-426614174000"));
        assert!(looks_like_id("{123e4567-e89b-12d3-a456-426614174000}"));
        assert!(looks_like_id("123e4567e89b12d3a456426614174000"));
        assert!(!looks_like_id("api"));
        assert!(!looks_like_id("123e4567-e89b-12d3-a456-42661417400z"));
    }

    #[test]
    fn byte_values_as_humanize_writes_them() {
        assert_eq!(normalize_bytes("1500B").as_deref(), Some("1.5kB"));
        assert_eq!(normalize_bytes("10KB").as_deref(), Some("10kB"));
        assert_eq!(normalize_bytes("2MiB").as_deref(), Some("2.1MB"));
        assert_eq!(normalize_bytes("5b").as_deref(), Some("5B"));
        assert_eq!(normalize_bytes("300"), None);
        assert_eq!(normalize_bytes("GET"), None);
    }
}
