//! `/loki/api/v1/index/stats`, `/index/volume` and `/index/volume_range`, in Loki's shapes
//! (`loki-api.md` §1.1). The counting is `query::usage`; this file reads the parameters and
//! writes the JSON.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;

use super::params::{positive, selector_of};
use super::read::{blocking, cancel_for, json_response, labels_json, now_ns, parse_error};
use super::{ApiError, AppState, TenantQuery};
use crate::logql::{MatchOp, Matcher};
use crate::query::usage::{
    totals, usage_by_stream, volume_series, Buckets, VolumeSeries, VolumeSpec,
};

/// Loki's default number of volume series.
const DEFAULT_VOLUME_LIMIT: usize = 100;
/// Loki refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;

/// `/loki/api/v1/index/stats`: a bare `{"streams","chunks","bytes","entries"}` for the streams
/// the selector matches in the range.
pub async fn index_stats(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let matchers = selector_of(p.get("query").unwrap_or(""))?;
    let store = state.store.clone();
    let guard = cancel_for(&state, &tenant);
    let cancel = guard.0.clone();
    let usage = blocking(move || match store.existing_tenant(&tenant) {
        Some(t) => Ok(usage_by_stream(
            &t,
            &matchers,
            &Buckets::single(start, end),
            &cancel,
        )?),
        None => Ok(BTreeMap::new()),
    })
    .await?;
    let (streams, total) = totals(&usage);
    Ok(json_response(format!(
        r#"{{"streams":{streams},"chunks":{},"bytes":{},"entries":{}}}"#,
        total.chunks, total.bytes, total.entries
    )))
}

/// `/loki/api/v1/index/volume`: bytes per series (or per label name) over the range, as a
/// vector at `end`.
pub async fn index_volume(
    State(state): State<AppState>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    volume(state, q, false).await
}

/// `/loki/api/v1/index/volume_range`: the same per `step` bucket.
pub async fn index_volume_range(
    State(state): State<AppState>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    volume(state, q, true).await
}

async fn volume(
    state: AppState,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
    range: bool,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let q = p.get("query").unwrap_or("");
    // `{}` selects every stream here (Loki's `MatchAny`); anything else is a checked selector.
    let (mut matchers, match_any) = if q.trim() == "{}" {
        (Vec::new(), true)
    } else {
        (selector_of(q)?, false)
    };
    let limit = positive(&p, &["limit"], DEFAULT_VOLUME_LIMIT)?;
    let by_labels = match p.get("aggregateBy").unwrap_or("") {
        "" | "series" => false,
        "labels" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid aggregateBy {other:?}: expected series or labels"
            )))
        }
    };
    let targets: Vec<String> = p
        .get("targetLabels")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let spec = if targets.is_empty() {
        VolumeSpec {
            names: matchers.iter().map(|m| m.name.clone()).collect(),
            match_any: match_any || matchers.is_empty(),
            by_labels,
            has_targets: false,
            limit,
        }
    } else {
        // Streams without a target label have no volume to report under it.
        for t in &targets {
            if !matchers.iter().any(|m| &m.name == t) {
                matchers.push(Matcher::new(t.as_str(), MatchOp::Re, ".+").map_err(parse_error)?);
            }
        }
        VolumeSpec {
            names: targets.into_iter().collect(),
            match_any: false,
            by_labels,
            has_targets: true,
            limit,
        }
    };
    let buckets = if range {
        let step = p.step(start, end)?;
        if (end - start) / step > MAX_POINTS {
            return Err(ApiError::BadRequest(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        Buckets::stepped(start, end, step)
    } else {
        Buckets::single(start, end)
    };
    let store = state.store.clone();
    let guard = cancel_for(&state, &tenant);
    let cancel = guard.0.clone();
    let series = blocking(move || {
        let usage = match store.existing_tenant(&tenant) {
            Some(t) => usage_by_stream(&t, &matchers, &buckets, &cancel)?,
            None => BTreeMap::new(),
        };
        Ok(volume_series(&usage, &buckets, &spec))
    })
    .await?;
    Ok(json_response(encode_volume(&series)))
}

/// Prometheus-style: a vector when every series has one sample, else a matrix (as Loki decides).
fn encode_volume(series: &[VolumeSeries]) -> String {
    use crate::query::metric::format_ts;
    let matrix = series.iter().any(|s| s.samples.len() > 1);
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"#);
    out.push_str(if matrix { r#""matrix""# } else { r#""vector""# });
    out.push_str(r#","result":["#);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        out.push_str(&labels_json(&s.metric));
        let point = |(t, v): &(i64, u64)| format!(r#"[{},"{v}"]"#, format_ts(*t));
        if matrix {
            out.push_str(r#","values":["#);
            let points: Vec<String> = s.samples.iter().map(point).collect();
            out.push_str(&points.join(","));
            out.push_str("]}");
        } else {
            out.push_str(r#","value":"#);
            out.push_str(&point(&s.samples[0]));
            out.push('}');
        }
    }
    out.push_str(r#"],"stats":{}}}"#);
    out
}
