//! Read endpoints: `query_range` for log queries (stream selector and line filters),
//! `labels`, `label/NAME/values`, `series`, plus `ready`, `metrics` and `status/buildinfo`.
//! Response shapes are Loki's (`loki-api.md` §1.3).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params::Params;
use super::{ApiError, AppState, TenantQuery};
use crate::logql::{self, Expr, Matcher};
use crate::query::guard::QueryLimits;
use crate::query::metric::{self, EvalParams};
use crate::query::Cancel;
use crate::query::{self, LogQuery, QueryStats, StreamResult};

pub(super) use crate::model::now_ns;

/// `max_query_length`: Loki's 400 for a range longer than the limit.
pub(super) fn check_query_length(
    start: i64,
    end: i64,
    max: std::time::Duration,
) -> Result<(), ApiError> {
    let len = (end as i128 - start as i128).max(0) as u128;
    if max.is_zero() || len <= max.as_nanos() {
        return Ok(());
    }
    let go = |ns: u128| {
        let s = ns / 1_000_000_000;
        format!("{}h{}m{}s", s / 3600, s % 3600 / 60, s % 60)
    };
    Err(ApiError::BadRequest(format!(
        "the query time range exceeds the limit (query length: {}, limit: {})",
        go(len),
        go(max.as_nanos())
    )))
}

/// Stops the query when the handler is dropped (client gone) or finishes.
pub(super) struct CancelOnDrop(pub(super) Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub(super) fn json_response(body: String) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

pub(super) use super::parse_error;

/// Runs blocking query work off the async threads.
/// The request's span (and its request ID) goes along, so the work's log lines carry it.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
}

/// Runs `f` on a tenant's data off the async threads; a tenant with no data gives the default.
pub(super) async fn on_tenant<T: Default + Send + 'static>(
    state: &AppState,
    tenant: String,
    f: impl FnOnce(&crate::storage::store::Tenant) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    blocking(move || {
        Ok(store
            .existing_tenant(&tenant)
            .map(|t| f(&t))
            .unwrap_or_default())
    })
    .await
}

pub async fn query_range(
    State(state): State<AppState>,
    TenantQuery {
        tenant,
        params: p,
        headers,
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let q = p.query()?;
    let limits = state.store.limits_for(&tenant);
    let now = now_ns();
    let (start, end) = p.range(now)?;
    let limit = p.limit(limits.max_entries_limit_per_query)?;
    let direction = p.direction()?;
    check_query_length(start, end, limits.max_query_length)?;
    let expr = logql::parse_expr(q).map_err(parse_error)?;
    let _slot = super::guard::query_slot(&state, &tenant, &limits)?;
    let start = super::guard::lookback_start(start, now, &limits);
    if start > end {
        // Wholly before max_query_lookback: an empty answer, as Loki gives.
        let stats = QueryStats::default();
        return Ok(json_response(match expr {
            Expr::Log(_) => encode_streams(&[], &stats, false),
            Expr::Sample(_) => {
                encode_metric(&metric::MetricResult::Matrix(Vec::new()), &stats, false)
            }
        }));
    }
    let log = match expr {
        Expr::Log(log) => log,
        Expr::Sample(sample) => {
            let step = p.step(start, end)?;
            // Points at multiples of the step covering [start, end], as Loki answers.
            let (start, end) = (
                start.div_euclid(step) * step,
                (end.div_euclid(step) * step).saturating_add(if end.rem_euclid(step) > 0 {
                    step
                } else {
                    0
                }),
            );
            let params = EvalParams {
                start,
                end,
                step,
                max_series: limits.max_query_series,
            };
            return run_metric(&state, tenant, sample, params, false).await;
        }
    };
    let categorize = headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "categorize-labels");
    let lq = LogQuery {
        matchers: log.selector.matchers,
        pipeline: log.pipeline,
        start,
        end,
        limit,
        direction,
    };
    let store = state.store.clone();
    let guard = CancelOnDrop(
        Cancel::with_timeout(limits.query_timeout).with_limits(QueryLimits::of(&limits)),
    );
    let cancel = guard.0.clone();
    let (streams, stats) = blocking(move || {
        let Some(t) = store.existing_tenant(&tenant) else {
            return Ok((Vec::new(), QueryStats::default()));
        };
        Ok(query::select_logs(&t, &lq, categorize, cancel)?)
    })
    .await?;
    if !stats.warnings.is_empty() {
        state.store.metrics.inc(
            "sawmill_query_damaged_blocks_total",
            &[],
            stats.warnings.len() as u64,
        );
    }
    Ok(json_response(encode_streams(&streams, &stats, categorize)))
}

/// `/loki/api/v1/query`: metric queries at one instant (log queries are refused, as by Loki).
pub async fn query_instant(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let q = p.query()?;
    let limits = state.store.limits_for(&tenant);
    let time = p.timestamp("time")?.unwrap_or_else(now_ns);
    p.limit(limits.max_entries_limit_per_query)?;
    let expr = logql::parse_expr(q).map_err(parse_error)?;
    let _slot = super::guard::query_slot(&state, &tenant, &limits)?;
    match expr {
        Expr::Log(_) => Err(ApiError::BadRequest(
            "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        )),
        Expr::Sample(sample) => {
            let params = EvalParams::instant(time, limits.max_query_series);
            run_metric(&state, tenant, sample, params, true).await
        }
    }
}

async fn run_metric(
    state: &AppState,
    tenant: String,
    expr: logql::SampleExpr,
    params: EvalParams,
    instant: bool,
) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let started = std::time::Instant::now();
    let limits = state.store.limits_for(&tenant);
    let guard = CancelOnDrop(
        Cancel::with_timeout(limits.query_timeout).with_limits(QueryLimits::of(&limits)),
    );
    let cancel = guard.0.clone();
    let (result, mut stats) = blocking(move || {
        Ok(query::run_metric(
            store.existing_tenant(&tenant),
            &expr,
            &params,
            cancel,
        )?)
    })
    .await?;
    stats.exec_secs = started.elapsed().as_secs_f64();
    Ok(json_response(encode_metric(&result, &stats, instant)))
}

/// Matrix, vector or scalar in Loki's shape: timestamps as JSON numbers of seconds, values as
/// strings.
pub fn encode_metric(result: &metric::MetricResult, stats: &QueryStats, instant: bool) -> String {
    use metric::{format_ts, format_value, MetricResult};
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"#);
    match result {
        MetricResult::Scalar(points) => {
            let (t, v) = points.last().copied().unwrap_or((0, f64::NAN));
            out.push_str(&format!(
                r#""scalar","result":[{},"{}"]"#,
                format_ts(t),
                format_value(v)
            ));
        }
        MetricResult::Matrix(series) if instant => {
            out.push_str(r#""vector","result":["#);
            for (i, (l, points)) in series.iter().enumerate() {
                let (t, v) = points[points.len() - 1];
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(
                    r#"{{"metric":{},"value":[{},"{}"]}}"#,
                    labels_json(l),
                    format_ts(t),
                    format_value(v)
                ));
            }
            out.push(']');
        }
        MetricResult::Matrix(series) => {
            out.push_str(r#""matrix","result":["#);
            for (i, (l, points)) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(r#"{{"metric":{},"values":["#, labels_json(l)));
                for (j, (t, v)) in points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!(r#"[{},"{}"]"#, format_ts(*t), format_value(*v)));
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push_str(r#","stats":"#);
    out.push_str(&stats_json(stats, 0).to_string());
    out.push_str("}}");
    out
}

/// `{"status":"success","data":{"resultType":"streams","result":[...],"stats":{...}}}`
pub fn encode_streams(streams: &[StreamResult], stats: &QueryStats, categorize: bool) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(r#"{"status":"success","data":{"resultType":"streams","#);
    if categorize {
        out.push_str(r#""encodingFlags":["categorize-labels"],"#);
    }
    out.push_str(r#""result":["#);
    let mut returned = 0u64;
    for (i, s) in streams.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"stream":"#);
        out.push_str(&labels_json(&s.labels));
        out.push_str(r#","values":["#);
        for (j, e) in s.entries.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("[\"");
            out.push_str(&e.ts.to_string());
            out.push_str("\",");
            out.push_str(&serde_json::to_string(&e.line).expect("bug: string encodes"));
            let c = &e.categorized;
            if categorize && (!c.structured_metadata.is_empty() || !c.parsed.is_empty()) {
                let obj = |pairs: &[(String, String)]| -> serde_json::Value {
                    serde_json::Value::Object(
                        pairs
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone().into()))
                            .collect(),
                    )
                };
                let mut third = serde_json::Map::new();
                if !c.structured_metadata.is_empty() {
                    third.insert("structuredMetadata".into(), obj(&c.structured_metadata));
                }
                if !c.parsed.is_empty() {
                    third.insert("parsed".into(), obj(&c.parsed));
                }
                out.push(',');
                out.push_str(&serde_json::Value::Object(third).to_string());
            }
            out.push(']');
            returned += 1;
        }
        out.push_str("]}");
    }
    out.push_str(r#"],"stats":"#);
    out.push_str(&stats_json(stats, returned).to_string());
    out.push('}');
    if !stats.warnings.is_empty() {
        out.push_str(r#","warnings":"#);
        out.push_str(&serde_json::to_string(&stats.warnings).expect("bug: strings encode"));
    }
    out.push('}');
    out
}

pub fn labels_json(l: &crate::labels::Labels) -> String {
    labels_json_value(l).to_string()
}

pub fn labels_json_value(l: &crate::labels::Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.pairs()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect(),
    )
}

/// The `stats` object; Grafana reads `summary`.
pub fn stats_json(s: &QueryStats, returned: u64) -> serde_json::Value {
    let per_sec = |v: u64| {
        if s.exec_secs > 0.0 {
            (v as f64 / s.exec_secs) as u64
        } else {
            0
        }
    };
    // Loki's shape; only what the engine counts (no queue, splits, shards or ingesters here).
    json!({
        "summary": {
            "bytesProcessedPerSecond": per_sec(s.bytes_processed),
            "linesProcessedPerSecond": per_sec(s.lines_processed),
            "totalBytesProcessed": s.bytes_processed,
            "totalLinesProcessed": s.lines_processed,
            "execTime": s.exec_secs,
            "totalEntriesReturned": returned,
            "totalPostFilterLines": s.post_filter_lines
        },
        "querier": {"store": {"totalChunksRef": s.chunks, "totalChunksDownloaded": s.chunks,
            "chunk": {"headChunkBytes": s.head_bytes, "headChunkLines": s.head_lines,
                      "decompressedBytes": s.bytes_processed - s.head_bytes,
                      "decompressedLines": s.lines_processed - s.head_lines,
                      "compressedBytes": s.compressed_bytes, "totalDuplicates": s.duplicates,
                      "postFilterLines": s.post_filter_lines}}}
    })
}

/// The optional `query` selector of metadata endpoints.
pub(super) fn optional_selector(p: &Params) -> Result<Vec<Matcher>, ApiError> {
    match p.get("query") {
        Some(q) if !q.trim().is_empty() => logql::parse_selector(q).map_err(parse_error),
        _ => Ok(Vec::new()),
    }
}

pub(super) fn data_response(data: Vec<serde_json::Value>) -> Response {
    let body = if data.is_empty() {
        json!({"status": "success"})
    } else {
        json!({"status": "success", "data": data})
    };
    json_response(body.to_string())
}

pub async fn labels(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let matchers = optional_selector(&p)?;
    let names = on_tenant(&state, tenant, move |t| {
        query::label_names(t, &matchers, start, end)
    })
    .await?;
    Ok(data_response(names.into_iter().map(Into::into).collect()))
}

pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let matchers = optional_selector(&p)?;
    let values = on_tenant(&state, tenant, move |t| {
        query::label_values(t, &name, &matchers, start, end)
    })
    .await?;
    Ok(data_response(values.into_iter().map(Into::into).collect()))
}

pub async fn series(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let groups: Vec<Vec<Matcher>> = p
        .all("match[]")
        .chain(p.all("match"))
        .map(|m| logql::parse_selector(m).map_err(parse_error))
        .collect::<Result<_, _>>()?;
    let found = on_tenant(&state, tenant, move |t| {
        query::series(t, &groups, start, end)
    })
    .await?;
    let data: Vec<serde_json::Value> = found
        .iter()
        .map(|l| {
            serde_json::Value::Object(
                l.pairs()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
            )
        })
        .collect();
    Ok(json_response(
        json!({"status": "success", "data": data}).to_string(),
    ))
}

pub async fn buildinfo() -> Response {
    json_response(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            // Recorded by src/build.rs; Loki's field names, so `goVersion` holds rustc's.
            "revision": env!("SAWMILL_REVISION"),
            "branch": env!("SAWMILL_BRANCH"),
            "buildUser": env!("SAWMILL_BUILD_USER"),
            "buildDate": env!("SAWMILL_BUILD_DATE"),
            "goVersion": env!("SAWMILL_RUST_VERSION")
        })
        .to_string(),
    )
}

pub async fn ready(State(state): State<AppState>) -> Response {
    if state.store.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: replaying the write-ahead log\n",
        )
            .into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let text = tokio::task::spawn_blocking(move || store.metrics.render(&store.gauges()))
        .await
        .unwrap_or_default();
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

pub(super) fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("bug: string encodes")
}

/// A cancel for one request: fires at `limits_config.query_timeout` or when the client goes.
pub(super) fn cancel_for(state: &AppState, tenant: &str) -> CancelOnDrop {
    CancelOnDrop(Cancel::with_timeout(
        state.store.limits_for(tenant).query_timeout,
    ))
}
