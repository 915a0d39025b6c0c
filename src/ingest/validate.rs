//! Push validation with Loki's rules and defaults: label syntax and counts, line size, timestamp
//! age and future skew, structured metadata size and count. Each rejection carries a discard
//! reason (the `reason` label of `sawmill_discarded_samples_total`) defined next to its message.
//! A bad stream drops only that stream; a bad entry only that entry.

use crate::config::Limits;
use crate::labels::{is_valid_label_name, Labels};

use super::{Entry, PushRequest, RawLabels, ValidStream};

pub const INVALID_LABELS: &str = "invalid_labels";
pub const MISSING_LABELS: &str = "missing_labels";
pub const MAX_LABEL_NAMES_PER_SERIES: &str = "max_label_names_per_series";
pub const LABEL_NAME_TOO_LONG: &str = "label_name_too_long";
pub const LABEL_VALUE_TOO_LONG: &str = "label_value_too_long";
pub const DUPLICATE_LABEL_NAMES: &str = "duplicate_label_names";
pub const LINE_TOO_LONG: &str = "line_too_long";
pub const GREATER_THAN_MAX_SAMPLE_AGE: &str = "greater_than_max_sample_age";
pub const TOO_FAR_IN_FUTURE: &str = "too_far_in_future";
pub const STRUCTURED_METADATA_TOO_LARGE: &str = "structured_metadata_too_large";
pub const STRUCTURED_METADATA_TOO_MANY: &str = "structured_metadata_too_many";
pub const DISALLOWED_STRUCTURED_METADATA: &str = "disallowed_structured_metadata";
pub const INVALID_UTF8: &str = "invalid_utf8";
/// Set by the head, not here: out of the out-of-order window.
pub const TOO_FAR_BEHIND: &str = "too_far_behind";
/// Set by the rate limiter.
pub const RATE_LIMITED: &str = "rate_limited";
/// Set by the store: a new stream past `max_global_streams_per_user`.
pub const STREAM_LIMIT: &str = "stream_limit";

/// One rejected stream or entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
    pub lines: usize,
    pub bytes: usize,
}

#[derive(Debug, Default)]
pub struct Validated {
    pub streams: Vec<ValidStream>,
    pub rejections: Vec<Rejection>,
}

impl Validated {
    pub fn accepted_lines(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }
    pub fn accepted_bytes(&self) -> usize {
        self.streams
            .iter()
            .flat_map(|s| &s.entries)
            .map(Entry::size)
            .sum()
    }
}

fn ts_text(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Validates every stream and entry; `now` is the server's clock in Unix nanoseconds.
pub fn validate(req: PushRequest, limits: &Limits, now: i64) -> Validated {
    let mut out = Validated::default();
    let oldest = now.saturating_sub(limits.reject_old_samples_max_age.as_nanos() as i64);
    let newest = now.saturating_add(limits.creation_grace_period.as_nanos() as i64);
    for stream in req.streams {
        let lines = stream.entries.len();
        let bytes = stream.entries.iter().map(Entry::size).sum();
        let labels = match check_labels(stream.labels, limits) {
            Ok(l) => l,
            Err((reason, message)) => {
                out.rejections.push(Rejection {
                    reason,
                    message,
                    lines,
                    bytes,
                });
                continue;
            }
        };
        let mut entries = Vec::with_capacity(stream.entries.len());
        let label_level = super::discover::label_level(&labels, &limits.log_level_fields);
        for mut e in stream.entries {
            if let Some((reason, message)) = check_entry(&mut e, &labels, limits, oldest, newest) {
                out.rejections.push(Rejection {
                    reason,
                    message,
                    lines: 1,
                    bytes: e.size(),
                });
            } else {
                if limits.discover_log_levels && limits.allow_structured_metadata {
                    super::discover::add_detected_level_with(
                        &mut e,
                        label_level,
                        &limits.log_level_fields,
                    );
                }
                entries.push(e);
            }
        }
        if !entries.is_empty() {
            match out.streams.iter_mut().find(|s| s.labels == labels) {
                Some(s) => s.entries.extend(entries),
                None => out.streams.push(ValidStream { labels, entries }),
            }
        }
    }
    out
}

fn check_labels(raw: RawLabels, limits: &Limits) -> Result<Labels, (&'static str, String)> {
    let labels = match raw {
        RawLabels::Pairs(p) => Labels::from_pairs(p),
        RawLabels::Text(t) => Labels::parse(&t).map_err(|e| {
            (
                INVALID_LABELS,
                format!("error parsing labels '{t}' with error: {e}"),
            )
        })?,
    };
    if labels.is_empty() {
        return Err((
            MISSING_LABELS,
            "error at least one label pair is required per stream".into(),
        ));
    }
    let labels = super::discover::with_service_name(labels, &limits.discover_service_name);
    if labels.len() > limits.max_label_names_per_series {
        let shown = if labels.len() > 32 {
            format!("{{{} labels}}", labels.len())
        } else {
            labels.to_string()
        };
        return Err((
            MAX_LABEL_NAMES_PER_SERIES,
            format!(
                "entry for stream '{shown}' has {} label names; limit {} (limits_config.max_label_names_per_series)",
                labels.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    for (name, value) in labels.pairs() {
        if !is_valid_label_name(name) {
            return Err((
                INVALID_LABELS,
                format!("error parsing labels '{labels}' with error: invalid label name {name:?}"),
            ));
        }
        if name.len() > limits.max_label_name_length {
            return Err((
                LABEL_NAME_TOO_LONG,
                format!("stream '{labels}' has label name too long: '{name}'"),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err((
                LABEL_VALUE_TOO_LONG,
                format!("stream '{labels}' has label value too long: '{value}'"),
            ));
        }
        if value.is_empty() {
            return Err((
                INVALID_LABELS,
                format!(
                    "error parsing labels '{labels}' with error: label {name:?} has an empty value"
                ),
            ));
        }
    }
    if let Some(dup) = labels.duplicate_name() {
        return Err((
            DUPLICATE_LABEL_NAMES,
            format!("stream '{labels}' has duplicate label name: '{dup}'"),
        ));
    }
    Ok(labels)
}

fn check_entry(
    e: &mut Entry,
    labels: &Labels,
    limits: &Limits,
    oldest: i64,
    newest: i64,
) -> Option<(&'static str, String)> {
    if limits.reject_old_samples && e.ts < oldest {
        return Some((
            GREATER_THAN_MAX_SAMPLE_AGE,
            format!(
                "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                ts_text(e.ts),
                ts_text(oldest)
            ),
        ));
    }
    if e.ts > newest {
        return Some((
            TOO_FAR_IN_FUTURE,
            format!(
                "entry for stream '{labels}' has timestamp too new: {}",
                ts_text(e.ts)
            ),
        ));
    }
    if limits.max_line_size > 0 && e.line.len() as u64 > limits.max_line_size {
        return Some((
            LINE_TOO_LONG,
            format!(
                "Max entry size '{}' bytes exceeded for stream '{labels}' while adding an entry with length '{}' bytes",
                limits.max_line_size,
                e.line.len()
            ),
        ));
    }
    if !e.metadata.is_empty() {
        if !limits.allow_structured_metadata {
            return Some((
                DISALLOWED_STRUCTURED_METADATA,
                format!("stream '{labels}' includes structured metadata, but this feature is disallowed (limits_config.allow_structured_metadata)"),
            ));
        }
        let size = e.metadata_size();
        if size as u64 > limits.max_structured_metadata_size {
            return Some((
                STRUCTURED_METADATA_TOO_LARGE,
                format!(
                    "stream '{labels}' has structured metadata too large: '{size}' bytes, limit: '{}' (limits_config.max_structured_metadata_size)",
                    limits.max_structured_metadata_size
                ),
            ));
        }
        if e.metadata.len() > limits.max_structured_metadata_entries_count {
            return Some((
                STRUCTURED_METADATA_TOO_MANY,
                format!(
                    "stream '{labels}' has too many structured metadata labels: '{}', limit: '{}' (limits_config.max_structured_metadata_entries_count)",
                    e.metadata.len(),
                    limits.max_structured_metadata_entries_count
                ),
            ));
        }
        // Names are sanitized to the Prometheus label charset, as Loki does.
        for (k, _) in e.metadata.iter_mut() {
            if !is_valid_label_name(k) {
                *k = sanitize_label_name(k);
            }
        }
    }
    None
}

fn sanitize_label_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::PushStream;

    const NOW: i64 = 1_795_132_800_000_000_000;

    fn push(labels: &str, entries: Vec<Entry>) -> PushRequest {
        PushRequest {
            streams: vec![PushStream {
                labels: RawLabels::Text(labels.into()),
                entries,
            }],
        }
    }

    fn entry(ts: i64, line: &str) -> Entry {
        Entry {
            ts,
            line: line.into(),
            metadata: vec![],
        }
    }

    #[track_caller]
    fn rejected(labels: &str, e: Entry, reason: &str) {
        let v = validate(
            push(labels, vec![e, entry(NOW, "ok")]),
            &Limits::default(),
            NOW,
        );
        assert_eq!(v.rejections.len(), 1, "{:?}", v.rejections);
        assert_eq!(
            v.rejections[0].reason, reason,
            "{}",
            v.rejections[0].message
        );
    }

    #[track_caller]
    fn stream_rejected(labels: &str, reason: &str) {
        let v = validate(push(labels, vec![entry(NOW, "x")]), &Limits::default(), NOW);
        assert!(v.streams.is_empty());
        assert_eq!(
            v.rejections[0].reason, reason,
            "{}",
            v.rejections[0].message
        );
    }

    #[test]
    fn stream_rules() {
        stream_rejected("{}", MISSING_LABELS);
        stream_rejected("{app=x}", INVALID_LABELS);
        stream_rejected(r#"{app="a", app="b"}"#, DUPLICATE_LABEL_NAMES);
        let many: Vec<String> = (0..16).map(|i| format!("l{i}=\"v\"")).collect();
        stream_rejected(
            &format!("{{{}}}", many.join(",")),
            MAX_LABEL_NAMES_PER_SERIES,
        );
        stream_rejected(
            &format!("{{a=\"{}\"}}", "v".repeat(2049)),
            LABEL_VALUE_TOO_LONG,
        );
        stream_rejected(
            &format!("{{{}=\"v\"}}", "n".repeat(1025)),
            LABEL_NAME_TOO_LONG,
        );
    }

    #[test]
    fn entry_rules() {
        let day = 86_400_000_000_000;
        rejected(
            r#"{app="a"}"#,
            entry(NOW - 8 * day, "old"),
            GREATER_THAN_MAX_SAMPLE_AGE,
        );
        rejected(
            r#"{app="a"}"#,
            entry(NOW + 11 * 60_000_000_000, "new"),
            TOO_FAR_IN_FUTURE,
        );
        rejected(
            r#"{app="a"}"#,
            entry(NOW, &"x".repeat(256_001)),
            LINE_TOO_LONG,
        );
        let md: Vec<_> = (0..129)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        rejected(
            r#"{app="a"}"#,
            Entry {
                ts: NOW,
                line: "m".into(),
                metadata: md,
            },
            STRUCTURED_METADATA_TOO_MANY,
        );
        let big = vec![("k".to_string(), "v".repeat(64_001))];
        rejected(
            r#"{app="a"}"#,
            Entry {
                ts: NOW,
                line: "m".into(),
                metadata: big,
            },
            STRUCTURED_METADATA_TOO_LARGE,
        );
    }

    #[test]
    fn old_samples_accepted_when_disabled() {
        let limits = Limits {
            reject_old_samples: false,
            ..Limits::default()
        };
        let v = validate(
            push(r#"{app="a"}"#, vec![entry(1, "ancient")]),
            &limits,
            NOW,
        );
        assert_eq!(v.accepted_lines(), 1);
    }

    #[test]
    fn valid_entries_survive_beside_bad_ones() {
        let v = validate(
            push(
                r#"{app="a"}"#,
                vec![
                    entry(NOW, "a"),
                    entry(NOW, &"x".repeat(300_000)),
                    entry(NOW, "b"),
                ],
            ),
            &Limits::default(),
            NOW,
        );
        assert_eq!(v.accepted_lines(), 2);
        assert_eq!(v.rejections.len(), 1);
    }

    #[test]
    fn metadata_names_are_sanitized() {
        let e = Entry {
            ts: NOW,
            line: "m".into(),
            metadata: vec![("trace.id".into(), "1".into())],
        };
        let v = validate(push(r#"{app="a"}"#, vec![e]), &Limits::default(), NOW);
        assert_eq!(v.streams[0].entries[0].metadata[0].0, "trace_id");
    }
}
