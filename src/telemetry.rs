//! Self-monitoring: counters, gauges and histograms rendered in the Prometheus text format for
//! `/metrics`, with Loki's metric names (under the `sawmill_` prefix) where a Loki dashboard would
//! look for them. Hand-written: the format is a few lines and this avoids a registry crate.

use std::collections::BTreeMap;
use std::fmt::Write;

use parking_lot::Mutex;

type Key = (String, Vec<(String, String)>);

/// Histogram buckets in seconds, as Prometheus' defaults.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
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

    /// Renders everything, plus the given gauges, in the Prometheus text format.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        let mut last = String::new();
        for ((name, labels), v) in self.counters.lock().iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name.clone();
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        for ((name, labels), h) in self.histograms.lock().iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} histogram");
                last = name.clone();
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    fmt_labels(labels, Some(&b.to_string())),
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                fmt_labels(labels, Some("+Inf")),
                h.count
            );
            let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(labels, None), h.sum);
            let _ = writeln!(out, "{name}_count{} {}", fmt_labels(labels, None), h.count);
        }
        let mut sorted: Vec<_> = gauges.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, labels, v) in sorted {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} gauge");
                last = name.clone();
            }
            let _ = writeln!(out, "{name}{} {v}", fmt_labels(labels, None));
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
