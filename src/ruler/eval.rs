//! What one rule's instant-query result turns into: samples of a recording rule (`__name__`
//! and the rule's labels set, `limit` checked) or the alerts of an alerting rule (rule labels
//! and annotations expanded as templates over each series, `alertname` set), and the
//! `ALERTS`/`ALERTS_FOR_STATE` series of an alerting rule's state. Pure functions; the
//! ruler's thread calls them.

use super::alert::{Alerts, Found, LabelMap};
use super::rulefmt::RuleSpec;
use crate::notify::remote_write::TimeSeries;
use crate::query::metric::MetricResult;
use crate::template::{AlertData, Template};

/// An instant query's result as (labels, value) pairs; a scalar is one sample without labels.
pub fn to_vector(r: MetricResult) -> Vec<(LabelMap, f64)> {
    match r {
        MetricResult::Scalar(points) => points
            .last()
            .map(|&(_, v)| vec![(LabelMap::new(), v)])
            .unwrap_or_default(),
        MetricResult::Matrix(series) => series
            .into_iter()
            .filter_map(|(l, points)| {
                let (_, v) = *points.last()?;
                Some((l.pairs().iter().cloned().collect(), v))
            })
            .collect(),
    }
}

/// A recording rule's samples: the series labels with `__name__` set to the record name and
/// the rule's labels on top.
pub fn record(
    spec: &RuleSpec,
    vector: Vec<(LabelMap, f64)>,
    ts: i64,
    limit: usize,
) -> Result<Vec<TimeSeries>, String> {
    if limit > 0 && vector.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series: raise the group's limit or aggregate more",
            vector.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(vector.len());
    for (mut labels, v) in vector {
        labels.insert("__name__".into(), spec.name.clone());
        for (k, val, _) in &spec.labels {
            labels.insert(k.clone(), val.clone());
        }
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push(TimeSeries::one(labels, v, ts.div_euclid(1_000_000)));
    }
    Ok(out)
}

/// An alerting rule's result as alerts: series labels, the rule's labels expanded, and
/// `alertname`; annotations expanded.
pub fn alert_series(
    spec: &RuleSpec,
    vector: Vec<(LabelMap, f64)>,
    external_url: &str,
) -> Result<Vec<Found>, String> {
    let external = LabelMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(vector.len());
    for (mut series_labels, value) in vector {
        series_labels.remove("__name__");
        let d = AlertData {
            labels: &series_labels,
            value,
            external_labels: &external,
            external_url,
        };
        let expand = |t: &Template| {
            t.render_alert(&d)
                .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
        };
        let mut labels = series_labels.clone();
        for (k, _, t) in &spec.labels {
            labels.insert(k.clone(), expand(t));
        }
        labels.insert("alertname".into(), spec.name.clone());
        let annotations: LabelMap = spec
            .annotations
            .iter()
            .map(|(k, _, t)| (k.clone(), expand(t)))
            .collect();
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        out.push(Found {
            labels,
            annotations,
            value,
        });
    }
    Ok(out)
}

/// Prometheus' `ALERTS` (1 per pending or firing alert, with `alertstate`) and
/// `ALERTS_FOR_STATE` (the alert's `activeAt` in seconds) samples.
pub fn alert_state_series(alerts: &Alerts, ts: i64) -> Vec<TimeSeries> {
    let ms = ts.div_euclid(1_000_000);
    let mut out = Vec::new();
    for a in alerts.listed() {
        let mut l = a.labels.clone();
        l.insert("__name__".into(), "ALERTS".into());
        l.insert("alertstate".into(), a.state.as_str().into());
        out.push(TimeSeries::one(l, 1.0, ms));
        let mut l = a.labels.clone();
        l.insert("__name__".into(), "ALERTS_FOR_STATE".into());
        out.push(TimeSeries::one(l, a.active_at as f64 / 1e9, ms));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruler::rulefmt;

    #[test]
    fn recording_labels_and_limit() {
        let g = rulefmt::check_text(
            "f",
            "groups: [{name: g, rules: [{record: 'job:x:sum', expr: 'vector(1)', labels: {team: a}}]}]",
        )
        .unwrap();
        let spec = &g[0].rules[0];
        let v = vec![(
            LabelMap::from([("job".to_string(), "api".to_string())]),
            2.0,
        )];
        let s = record(spec, v.clone(), 5_000_000_000, 0).unwrap();
        let names: Vec<(&str, &str)> = s[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [("__name__", "job:x:sum"), ("job", "api"), ("team", "a")]
        );
        assert_eq!(
            (s[0].samples[0].value, s[0].samples[0].timestamp),
            (2.0, 5000)
        );
        let two = vec![v[0].clone(), (LabelMap::new(), 1.0)];
        assert!(record(spec, two, 0, 1)
            .unwrap_err()
            .contains("exceeded limit of 1"));
    }

    #[test]
    fn alert_labels_are_expanded() {
        let g = rulefmt::check_text(
            "f",
            "groups: [{name: g, rules: [{alert: Hot, expr: 'vector(1)', labels: {severity: '{{ $labels.level }}'}, annotations: {summary: '{{ $labels.job }} at {{ $value }}'}}]}]",
        )
        .unwrap();
        let v = vec![(
            LabelMap::from([
                ("job".to_string(), "api".to_string()),
                ("level".to_string(), "page".to_string()),
                ("__name__".to_string(), "x".to_string()),
            ]),
            2.5,
        )];
        let f = alert_series(&g[0].rules[0], v, "").unwrap();
        assert_eq!(
            f[0].labels,
            LabelMap::from([
                ("alertname".to_string(), "Hot".to_string()),
                ("job".to_string(), "api".to_string()),
                ("level".to_string(), "page".to_string()),
                ("severity".to_string(), "page".to_string()),
            ])
        );
        assert_eq!(f[0].annotations["summary"], "api at 2.5");
    }
}
