//! Self-monitoring: counters, gauges and histograms rendered in the Prometheus text format for
//! `/metrics`. Sawmill's own names carry the `sawmill_` prefix; the families a Loki dashboard
//! reads are exported a second time under Loki's name ([`LOKI_ALIASES`]: lines and bytes
//! received per tenant, discarded samples by reason, request durations by route, in-memory
//! streams), so existing Loki dashboards and alerts work unchanged. Hand-written: the format is
//! a few lines and this avoids a registry crate.

use std::collections::BTreeMap;
use std::fmt::Write;

use parking_lot::Mutex;

type Key = (String, Vec<(String, String)>);

/// Histogram buckets in seconds, as Prometheus' defaults.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Families also exported under Loki's name: (Sawmill's name, Loki's name). The `route` label of
/// `loki_request_duration_seconds` is written as Loki writes it (`loki_api_v1_push`).
pub const LOKI_ALIASES: [(&str, &str); 6] = [
    (
        "sawmill_distributor_lines_received_total",
        "loki_distributor_lines_received_total",
    ),
    (
        "sawmill_distributor_bytes_received_total",
        "loki_distributor_bytes_received_total",
    ),
    (
        "sawmill_discarded_samples_total",
        "loki_discarded_samples_total",
    ),
    (
        "sawmill_discarded_bytes_total",
        "loki_discarded_bytes_total",
    ),
    (
        "sawmill_ingester_memory_streams",
        "loki_ingester_memory_streams",
    ),
    (
        "sawmill_request_duration_seconds",
        "loki_request_duration_seconds",
    ),
];

/// `# HELP` text of every family Sawmill exports, by name without the `sawmill_` prefix (a
/// test lints `/metrics` with promtool, which wants one for each; add new metrics here).
pub const HELP: &[(&str, &str)] = &[
    (
        "bucket_cache_hits_total",
        "Segment footers and chunks read from the local read cache instead of the bucket.",
    ),
    (
        "bucket_cache_misses_total",
        "Segment footers and chunks fetched from the bucket with a ranged GET.",
    ),
    (
        "bucket_cache_bytes",
        "Bytes in the local read cache of the bucket (bounded by storage.cache_size).",
    ),
    (
        "pattern_lines_dropped_total",
        "Accepted lines the pattern miner skipped because it was behind, by tenant.",
    ),
    (
        "pattern_streams",
        "Streams whose patterns the pattern miner holds, all tenants.",
    ),
    (
        "pattern_bytes",
        "Approximate memory of the mined patterns (bounded by pattern_ingester.max_memory).",
    ),
    (
        "otlp_log_records_total",
        "OTLP log records received at /otlp/v1/logs, by outcome (accepted or rejected).",
    ),
    (
        "index_bytes",
        "Bytes of the segments' search indexes, by tenant.",
    ),
    (
        "index_segments",
        "Segments whose search index is attached (queries narrow their reads), by tenant.",
    ),
    ("index_builds_total", "Segment search indexes built."),
    (
        "index_build_duration_seconds",
        "Time to build a segment's search index.",
    ),
    (
        "index_damaged_total",
        "Segment search indexes found damaged on open (rebuilt).",
    ),
    (
        "index_failures_total",
        "Segment search indexes that could not be built (retried after 10 minutes).",
    ),
    (
        "notifications_dropped_total",
        "Alerts dropped because an Alertmanager's queue was full, by alertmanager.",
    ),
    (
        "notifications_errors_total",
        "Alerts whose sending to an Alertmanager failed (retried), by alertmanager.",
    ),
    (
        "notifications_sent_total",
        "Alerts sent to an Alertmanager, by alertmanager.",
    ),
    (
        "remote_write_dropped_total",
        "Recorded samples dropped because the remote-write queue was full.",
    ),
    (
        "remote_write_failures_total",
        "Remote-write requests that failed (retried).",
    ),
    (
        "remote_write_samples_total",
        "Recorded samples written to Prometheus by remote write.",
    ),
    (
        "rule_evaluation_failures_total",
        "Rule evaluations that failed, by tenant, namespace and group.",
    ),
    (
        "rule_evaluations_total",
        "Rule evaluations, by tenant, namespace and group.",
    ),
    (
        "rule_group_duration_seconds",
        "Duration of rule group evaluations.",
    ),
    ("ruler_loads_total", "Times the rule files were (re)loaded."),
    (
        "compactor_disk_short_total",
        "Compactions skipped for lack of disk space.",
    ),
    ("compactor_duration_seconds", "Duration of compaction runs."),
    (
        "compactor_entries_dropped_total",
        "Entries removed by compaction, by reason (retention, delete, duplicate) and tenant.",
    ),
    (
        "compactor_failures_total",
        "Compactions of a partition that failed.",
    ),
    (
        "compactor_input_bytes_total",
        "Segment bytes read by compaction, by tenant.",
    ),
    (
        "compactor_output_bytes_total",
        "Segment bytes written by compaction, by tenant.",
    ),
    (
        "compactor_partitions_total",
        "Partitions compacted, by tenant.",
    ),
    ("compactor_runs_total", "Compaction runs."),
    (
        "compactor_segments_deleted_total",
        "Segment files removed by compaction.",
    ),
    ("config_reloads_total", "Successful configuration reloads."),
    (
        "discarded_bytes_total",
        "Bytes of entries refused, by reason and tenant.",
    ),
    (
        "discarded_samples_total",
        "Entries refused, by reason and tenant.",
    ),
    (
        "distributor_bytes_received_total",
        "Bytes of entries accepted, by tenant.",
    ),
    (
        "distributor_lines_received_total",
        "Entries accepted, by tenant.",
    ),
    (
        "flush_duration_seconds",
        "Duration of flushes of the head to segments.",
    ),
    (
        "flush_failures_total",
        "Flushes of the head to segments that failed.",
    ),
    (
        "head_bytes",
        "Bytes of entries held in memory (open, sealed and cut blocks not yet flushed), by tenant.",
    ),
    (
        "head_open_bytes",
        "Uncompressed bytes in open head blocks, by tenant.",
    ),
    (
        "ingester_memory_streams",
        "Streams held in memory, by tenant.",
    ),
    (
        "push_disk_short_total",
        "Pushes refused for lack of disk space, by tenant.",
    ),
    (
        "push_requests_total",
        "Push requests by body format (json, protobuf).",
    ),
    (
        "query_damaged_blocks_total",
        "Damaged blocks skipped by queries.",
    ),
    (
        "request_duration_seconds",
        "HTTP request durations by method, route and status code.",
    ),
    (
        "segment_bytes",
        "Bytes of segment files on disk, by tenant.",
    ),
    (
        "segment_bytes_written_total",
        "Bytes of segment files written by flushes, by tenant.",
    ),
    (
        "segment_damaged_total",
        "Damaged segment files found at start.",
    ),
    ("segments", "Segment files on disk, by tenant."),
    (
        "segments_written_total",
        "Segment files written by flushes, by tenant.",
    ),
    (
        "tail_dropped_entries_total",
        "Entries a live tail could not deliver (slow client), by tenant.",
    ),
    ("wal_bytes", "Bytes of write-ahead log files on disk."),
    (
        "wal_corruptions_total",
        "Damaged write-ahead log records skipped at replay.",
    ),
    (
        "wal_files_removed_total",
        "Write-ahead log files deleted once flushed.",
    ),
    (
        "wal_write_failures_total",
        "Failed write-ahead log writes (the push was refused).",
    ),
];

/// A gauge sampled at render time: name, labels, value.
pub type Gauge = (String, Vec<(String, String)>, f64);

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
}

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

impl Metrics {
    pub fn inc(&self, name: &str, labels: &[(&str, &str)], by: u64) {
        *self.counters.lock().entry(key(name, labels)).or_default() += by;
    }

    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.counters
            .lock()
            .get(&key(name, labels))
            .copied()
            .unwrap_or(0)
    }

    pub fn observe(&self, name: &str, labels: &[(&str, &str)], secs: f64) {
        let mut h = self.histograms.lock();
        let h = h.entry(key(name, labels)).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Renders everything, plus the given gauges, in the Prometheus text format; the families
    /// of [`LOKI_ALIASES`] a second time under Loki's names.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let counters = self.counters.lock().clone();
        let histograms = self.histograms.lock().clone();
        let mut gauges: Vec<Gauge> = gauges.to_vec();
        gauges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut out = String::new();
        render_families(&mut out, &counters, &histograms, &gauges, |n| {
            Some(n.to_string())
        });
        render_families(&mut out, &counters, &histograms, &gauges, |n| {
            LOKI_ALIASES
                .iter()
                .find(|(ours, _)| *ours == n)
                .map(|(_, loki)| loki.to_string())
        });
        out
    }
}

/// Writes every family whose name `rename` maps to Some(new name), under that name.
fn render_families(
    out: &mut String,
    counters: &BTreeMap<Key, u64>,
    histograms: &BTreeMap<Key, Histogram>,
    gauges: &[Gauge],
    rename: impl Fn(&str) -> Option<String>,
) {
    let mut last = String::new();
    let mut header = |out: &mut String, ours: &str, name: &str, kind: &str| {
        if name != last {
            if let Some((_, help)) = HELP
                .iter()
                .find(|(n, _)| ours.strip_prefix("sawmill_") == Some(n))
            {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
            last = name.to_string();
        }
    };
    for ((ours, labels), v) in counters {
        let Some(name) = rename(ours) else { continue };
        header(out, ours, &name, "counter");
        let labels = alias_labels(ours, &name, labels);
        let _ = writeln!(out, "{name}{} {v}", fmt_labels(&labels, None));
    }
    for ((ours, labels), h) in histograms {
        let Some(name) = rename(ours) else { continue };
        header(out, ours, &name, "histogram");
        let labels = alias_labels(ours, &name, labels);
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                fmt_labels(&labels, Some(&b.to_string())),
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            fmt_labels(&labels, Some("+Inf")),
            h.count
        );
        let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(&labels, None), h.sum);
        let _ = writeln!(out, "{name}_count{} {}", fmt_labels(&labels, None), h.count);
    }
    for (ours, labels, v) in gauges {
        let Some(name) = rename(ours) else { continue };
        header(out, ours, &name, "gauge");
        let labels = alias_labels(ours, &name, labels);
        let _ = writeln!(out, "{name}{} {v}", fmt_labels(&labels, None));
    }
}

/// Labels as exported under `name`: under a Loki name, `route` as Loki writes it.
fn alias_labels(ours: &str, name: &str, labels: &[(String, String)]) -> Vec<(String, String)> {
    if ours == name {
        return labels.to_vec();
    }
    labels
        .iter()
        .map(|(k, v)| {
            if k == "route" {
                (k.clone(), loki_route(v))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// A route as Loki labels it: `/loki/api/v1/label/{name}/values` → `loki_api_v1_label_name_values`.
pub fn loki_route(route: &str) -> String {
    let mut out = String::with_capacity(route.len());
    for c in route.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("root");
    }
    out
}

fn fmt_labels(labels: &[(String, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    let mut first = true;
    for (k, v) in labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le.map(|l| ("le", l)))
    {
        if !first {
            s.push(',');
        }
        first = false;
        let v = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s.push('}');
    s
}

/// The log filter for `server.log_level`: a plain level applies to Sawmill's own targets,
/// while other crates (tantivy's "save metas", hyper) log at warn, or less when the level is
/// quieter. A full filter directive (with `=` or `,`) is taken as it is.
pub fn log_directive(level: &str) -> String {
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return level.to_string();
    }
    let others = match level.to_ascii_lowercase().as_str() {
        "off" | "error" => level.to_string(),
        _ => "warn".to_string(),
    };
    format!("{others},sawmill={level}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_log_at_warn_unless_asked() {
        #[track_caller]
        fn case(level: &str, want: &str) {
            assert_eq!(log_directive(level), want, "{level}");
        }
        case("info", "warn,sawmill=info");
        case("debug", "warn,sawmill=debug");
        case("warn", "warn,sawmill=warn");
        case("error", "error,sawmill=error");
        case("tantivy=info,sawmill=debug", "tantivy=info,sawmill=debug");
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc("sawmill_lines_total", &[("tenant", "a\"b")], 3);
        m.observe(
            "sawmill_request_duration_seconds",
            &[("route", "push")],
            0.02,
        );
        let text = m.render(&[("sawmill_wal_bytes".into(), vec![], 42.0)]);
        assert!(
            text.contains("sawmill_lines_total{tenant=\"a\\\"b\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sawmill_request_duration_seconds_bucket{route=\"push\",le=\"0.025\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sawmill_request_duration_seconds_bucket{route=\"push\",le=\"0.01\"} 0"),
            "{text}"
        );
        assert!(text.contains("sawmill_wal_bytes 42"), "{text}");
    }

    #[test]
    fn loki_names_are_aliases() {
        let m = Metrics::default();
        m.inc(
            "sawmill_distributor_lines_received_total",
            &[("tenant", "t")],
            5,
        );
        m.observe(
            "sawmill_request_duration_seconds",
            &[("route", "/loki/api/v1/label/{name}/values")],
            0.2,
        );
        let text = m.render(&[(
            "sawmill_ingester_memory_streams".into(),
            vec![("tenant".into(), "t".into())],
            3.0,
        )]);
        for want in [
            "# HELP sawmill_distributor_lines_received_total Entries accepted, by tenant.\n# TYPE sawmill_distributor_lines_received_total counter\nsawmill_distributor_lines_received_total{tenant=\"t\"} 5\n",
            "# TYPE loki_distributor_lines_received_total counter\nloki_distributor_lines_received_total{tenant=\"t\"} 5\n",
            "sawmill_request_duration_seconds_count{route=\"/loki/api/v1/label/{name}/values\"} 1\n",
            "loki_request_duration_seconds_bucket{route=\"loki_api_v1_label_name_values\",le=\"0.25\"} 1\n",
            "loki_ingester_memory_streams{tenant=\"t\"} 3\n",
        ] {
            assert!(text.contains(want), "{want}\nnot in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE loki_request_duration_seconds ")
                .count(),
            1
        );
    }

    /// Every metric name written in the source has a `# HELP` text (promtool's lint wants one).
    #[test]
    fn every_metric_has_help() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("telemetry.rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        let name = regex::Regex::new(r#""sawmill_([a-z0-9_]+)""#).unwrap();
        let mut seen = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for c in name.captures_iter(&text) {
                seen += 1;
                assert!(
                    HELP.iter().any(|(n, _)| *n == &c[1]),
                    "sawmill_{} ({}) has no HELP text in telemetry::HELP",
                    &c[1],
                    f.display()
                );
            }
        }
        assert!(
            seen > 20,
            "found only {seen} metric names: the scan is broken"
        );
    }

    #[track_caller]
    fn route(path: &str, want: &str) {
        assert_eq!(loki_route(path), want);
    }

    #[test]
    fn loki_route_names() {
        route("/loki/api/v1/push", "loki_api_v1_push");
        route(
            "/loki/api/v1/label/{name}/values",
            "loki_api_v1_label_name_values",
        );
        route("/-/reload", "reload");
        route("/", "root");
        route("other", "other");
    }
}
