//! What Loki 3.4's distributor adds to a push for Grafana's Logs Drilldown:
//!
//! - **`service_name`** (`limits_config.discover_service_name`): a stream without a
//!   `service_name` label gets one, the value of the first label of the list the stream has
//!   with a non-empty value, else `unknown_service`. An empty list turns this off.
//! - **`detected_level`** (`limits_config.discover_log_levels`, with structured metadata
//!   allowed): every accepted entry gets the structured metadata `detected_level`: the value of
//!   the first level label of `log_level_fields` (`level`, `LEVEL`, `Level`, `severity`, ...)
//!   among the stream labels, else among the entry's structured metadata, both as they are;
//!   else from OTLP's `severity_number`; else from the line: a JSON object's or a logfmt
//!   line's level field (JSON keys exactly, logfmt keys in any case), normalized to
//!   `trace`, `debug`, `info`, `warn`, `error`, `critical` or `fatal`; else keywords in the
//!   line (`info`, `error`, `warn`, `critical:`, `debug:` ...); else `unknown`.
//!
//! Neighbours: `validate` calls both (service name before the label checks, so the label counts
//! see it; levels on accepted entries, so the metadata limits do not count it).

use crate::labels::Labels;

use super::Entry;

/// The structured metadata name of a detected level.
pub const DETECTED_LEVEL: &str = "detected_level";

pub use crate::config::{default_level_fields, default_service_name_labels};

/// `labels` with `service_name` added when discovery (`from`, non-empty) applies.
pub fn with_service_name(labels: Labels, from: &[String]) -> Labels {
    if from.is_empty() || labels.get(super::otlp::SERVICE_NAME).is_some() {
        return labels;
    }
    let value = from
        .iter()
        .find_map(|name| labels.get(name).filter(|v| !v.is_empty()))
        .unwrap_or(super::otlp::UNKNOWN_SERVICE)
        .to_string();
    let mut pairs = labels.pairs().to_vec();
    pairs.push((super::otlp::SERVICE_NAME.to_string(), value));
    Labels::from_pairs(pairs)
}

/// Appends `detected_level` to an entry's structured metadata.
pub fn add_detected_level(e: &mut Entry, labels: &Labels, fields: &[String]) {
    add_detected_level_with(e, label_level(labels, fields), fields);
}

/// The level the stream labels give (the same for each of the stream's entries).
pub fn label_level<'a>(labels: &'a Labels, fields: &[String]) -> Option<&'a str> {
    fields.iter().find_map(|f| labels.get(f))
}

/// [`add_detected_level`] with the stream labels' level found once per stream.
pub fn add_detected_level_with(e: &mut Entry, label_level: Option<&str>, fields: &[String]) {
    let level = level_of(e, label_level, fields);
    e.metadata.push((DETECTED_LEVEL.to_string(), level));
}

fn level_of(e: &Entry, label_level: Option<&str>, fields: &[String]) -> String {
    if let Some(v) = label_level {
        return v.to_string();
    }
    if let Some(v) = fields
        .iter()
        .find_map(|f| e.metadata.iter().find(|(k, _)| k == f).map(|(_, v)| v))
    {
        return v.clone();
    }
    if let Some((_, n)) = e.metadata.iter().find(|(k, _)| k == "severity_number") {
        return from_severity_number(n).to_string();
    }
    from_line(&e.line, fields).to_string()
}

/// OTLP's severity number ranges; text that is not a number counts as info, as in Loki.
fn from_severity_number(n: &str) -> &'static str {
    match n.parse::<i64>() {
        Err(_) => "info",
        Ok(0) => "unknown",
        Ok(1..=4) => "trace",
        Ok(5..=8) => "debug",
        Ok(9..=12) => "info",
        Ok(13..=16) => "warn",
        Ok(17..=20) => "error",
        Ok(21..=24) => "fatal",
        Ok(_) => "unknown",
    }
}

fn from_line(line: &str, fields: &[String]) -> &'static str {
    let value = if is_json(line) {
        json_field(line.as_bytes(), fields).map(std::borrow::Cow::Borrowed)
    } else if line.contains('=') {
        logfmt_field(line.as_bytes(), fields)
    } else {
        return from_keywords(line);
    };
    let v = value.unwrap_or_default();
    let is = |w: &str| v.as_ref().eq_ignore_ascii_case(w.as_bytes());
    if is("trace") || is("trc") {
        "trace"
    } else if is("debug") || is("dbg") {
        "debug"
    } else if is("info") || is("inf") {
        "info"
    } else if is("warn") || is("wrn") || is("warning") {
        "warn"
    } else if is("error") || is("err") {
        "error"
    } else if is("critical") {
        "critical"
    } else if is("fatal") {
        "fatal"
    } else {
        from_keywords(line)
    }
}

fn from_keywords(line: &str) -> &'static str {
    let has = |ws: &[&str]| ws.iter().any(|w| line.contains(w));
    if has(&["info", "INFO"]) {
        "info"
    } else if has(&["err:", "ERR:", "error", "ERROR"]) {
        "error"
    } else if has(&["warn:", "WARN:", "warning", "WARNING"]) {
        "warn"
    } else if has(&["CRITICAL:", "critical:"]) {
        "critical"
    } else if has(&["debug:", "DEBUG:"]) {
        "debug"
    } else {
        "unknown"
    }
}

/// First and last non-space characters are `{` and `}`.
fn is_json(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('{') && t.ends_with('}')
}

/// The raw value (a string's content without its quotes, escapes kept) of the top-level key
/// of a JSON object that comes first in `fields`; keys compare exactly.
fn json_field<'a>(line: &'a [u8], fields: &[String]) -> Option<&'a [u8]> {
    let mut best: Option<(usize, &[u8])> = None;
    let mut i = skip_ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(line, i);
        match *line.get(i)? {
            b'}' => break,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return best.map(|b| b.1),
        }
        let (key, after) = string_at(line, i)?;
        i = skip_ws(line, after);
        if line.get(i) != Some(&b':') {
            return best.map(|b| b.1);
        }
        i = skip_ws(line, i + 1);
        let start = i;
        let value = match *line.get(i)? {
            b'"' => {
                let (s, after) = string_at(line, i)?;
                i = after;
                s
            }
            b'{' | b'[' => {
                i = skip_nested(line, i)?;
                &line[start..i]
            }
            _ => {
                while i < line.len()
                    && !matches!(line[i], b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                {
                    i += 1;
                }
                &line[start..i]
            }
        };
        if let Some(pos) = fields.iter().position(|f| f.as_bytes() == key) {
            if best.is_none_or(|(p, _)| pos < p) {
                best = Some((pos, value));
            }
        }
    }
    best.map(|b| b.1)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The content of the JSON string starting at `b[i] == '"'`, and the index past it.
fn string_at(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some((&b[i + 1..j], j + 1)),
            _ => j += 1,
        }
    }
    None
}

/// The index past the object or array starting at `i`.
fn skip_nested(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = string_at(b, i)?.1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The value of the logfmt key (compared in any case) that comes first in `fields`; the whole
/// line is read, as Loki reads it, so that a better-ranked key later in the line wins.
fn logfmt_field<'a>(line: &'a [u8], fields: &[String]) -> Option<std::borrow::Cow<'a, [u8]>> {
    let mut best: Option<(usize, std::borrow::Cow<'a, [u8]>)> = None;
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i] <= b' ' {
            i += 1;
        }
        let ks = i;
        while i < line.len() && line[i] > b' ' && line[i] != b'=' && line[i] != b'"' {
            i += 1;
        }
        let key = &line[ks..i];
        if key.is_empty() {
            // A stray quote or `=`: skip it, as the decoder does with garbage.
            i += 1;
            continue;
        }
        let mut value: std::borrow::Cow<[u8]> = std::borrow::Cow::Borrowed(&[]);
        if line.get(i) == Some(&b'=') {
            i += 1;
            if line.get(i) == Some(&b'"') {
                let (s, after) = string_at(line, i)?;
                i = after;
                value = if s.contains(&b'\\') {
                    match serde_json::from_slice::<String>(&line[after - s.len() - 2..after]) {
                        Ok(u) => std::borrow::Cow::Owned(u.into_bytes()),
                        Err(_) => std::borrow::Cow::Borrowed(s),
                    }
                } else {
                    std::borrow::Cow::Borrowed(s)
                };
            } else {
                let vs = i;
                while i < line.len() && line[i] > b' ' {
                    i += 1;
                }
                value = std::borrow::Cow::Borrowed(&line[vs..i]);
            }
        }
        if let Some(pos) = fields
            .iter()
            .position(|f| f.as_bytes().eq_ignore_ascii_case(key))
        {
            if best.as_ref().is_none_or(|(p, _)| pos < *p) {
                if pos == 0 {
                    return Some(value);
                }
                best = Some((pos, value));
            }
        }
    }
    best.map(|b| b.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Labels {
        Labels::parse(text).unwrap()
    }

    #[track_caller]
    fn level(stream: &str, md: &[(&str, &str)], line: &str, want: &str) {
        let mut e = Entry {
            ts: 1,
            line: line.into(),
            metadata: md
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        add_detected_level(&mut e, &labels(stream), &default_level_fields());
        assert_eq!(
            e.metadata.last().unwrap(),
            &(DETECTED_LEVEL.to_string(), want.to_string()),
            "{line}"
        );
    }

    #[test]
    fn levels_as_loki_detects_them() {
        let s = r#"{app="a"}"#;
        // Labels and metadata win, taken as they are.
        level(
            r#"{app="a", level="Warning"}"#,
            &[],
            "level=error",
            "Warning",
        );
        level(s, &[("severity", "NOTICE")], "level=error", "NOTICE");
        level(s, &[("severity_number", "10")], "error!", "info");
        level(s, &[("severity_number", "18")], "", "error");
        level(s, &[("severity_number", "23")], "", "fatal");
        level(s, &[("severity_number", "0")], "", "unknown");
        level(s, &[("severity_number", "x")], "", "info");
        // JSON: exact keys, the best-ranked field wins wherever it is.
        level(s, &[], r#"{"lvl":"debug","level":"WARN"}"#, "warn");
        level(s, &[], r#"{"msg":"x","Level":"err"}"#, "error");
        level(
            s,
            &[],
            r#"{"LeVeL":"trace","msg":"no level here"}"#,
            "unknown",
        );
        level(s, &[], r#" {"level":"CRITICAL"} "#, "critical");
        level(
            s,
            &[],
            r#"{"nested":{"level":"debug"},"level":"dbg"}"#,
            "debug",
        );
        level(s, &[], r#"{"level":"loud","msg":"an error"}"#, "error");
        // logfmt: keys in any case.
        level(s, &[], "ts=1 LeVeL=inf msg=x", "info");
        level(s, &[], r#"msg="a b" severity="fatal""#, "fatal");
        level(s, &[], "a=1 b=2", "unknown");
        level(s, &[], "a=1 msg=\"some warning\"", "warn");
        // Keywords.
        level(s, &[], "INFO starting", "info");
        level(s, &[], "ERR: disk", "error");
        level(s, &[], "something error-ish with info", "info");
        level(s, &[], "critical: overheated", "critical");
        level(s, &[], "DEBUG: x", "debug");
        level(s, &[], "debug x", "unknown");
        level(s, &[], "", "unknown");
    }

    #[test]
    fn service_name_from_the_first_listed_label() {
        let from = default_service_name_labels();
        let with = |t: &str| with_service_name(labels(t), &from).to_string();
        assert_eq!(
            with(r#"{job="j", app="a"}"#),
            r#"{app="a", job="j", service_name="a"}"#
        );
        assert_eq!(
            with(r#"{env="dev"}"#),
            r#"{env="dev", service_name="unknown_service"}"#
        );
        assert_eq!(
            with(r#"{service_name="own", app="a"}"#),
            r#"{app="a", service_name="own"}"#
        );
        assert_eq!(
            with_service_name(labels(r#"{app="a"}"#), &[]).to_string(),
            r#"{app="a"}"#
        );
    }
}
