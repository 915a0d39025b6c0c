//! `/loki/api/v1/detected_labels`, `/detected_fields` and `/detected_field/NAME/values`, in
//! Loki's shapes. The detection is `query::detected`; this file reads the parameters, runs the
//! log query and writes the JSON.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::response::Response;

use super::params::{positive, selector_of};
use super::read::{blocking, cancel_for, json_response, json_str, now_ns, on_tenant, parse_error};
use super::{ApiError, AppState, TenantQuery};
use crate::logql;
use crate::query::detected::{
    detect_field_values, detect_fields, detected_labels as detect, Field,
};
use crate::query::{self, Direction, LogQuery};

/// Loki's defaults for these endpoints.
const DEFAULT_FIELD_LIMIT: usize = 1000;
const DEFAULT_LINE_LIMIT: usize = 100;

/// `/loki/api/v1/detected_labels`: the labels of the matching streams with their number of
/// distinct values (`query::detected::detected_labels` says which are left out).
pub async fn detected_labels(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let groups = match p.get("query") {
        Some(q) if !q.trim().is_empty() => vec![selector_of(q)?],
        _ => Vec::new(),
    };
    let found = on_tenant(&state, tenant, move |t| {
        query::series(t, &groups, start, end)
    })
    .await?;
    let items: Vec<String> = detect(&found)
        .iter()
        .map(|(n, c)| format!(r#"{{"label":{},"cardinality":{c}}}"#, json_str(n)))
        .collect();
    Ok(json_response(format!(
        r#"{{"detectedLabels":[{}]}}"#,
        items.join(",")
    )))
}

/// `/loki/api/v1/detected_fields`.
pub async fn detected_fields(
    State(state): State<AppState>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    detected(state, q, None).await
}

/// `/loki/api/v1/detected_field/NAME/values`.
pub async fn detected_field_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    detected(state, q, Some(name)).await
}

async fn detected(
    state: AppState,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
    values_of: Option<String>,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let limit = positive(&p, &["limit", "field_limit"], DEFAULT_FIELD_LIMIT)?;
    let line_limit = positive(&p, &["line_limit"], DEFAULT_LINE_LIMIT)?;
    let max = state.store.limits_for(&tenant).max_entries_limit_per_query;
    if max > 0 && line_limit > max {
        return Err(ApiError::BadRequest(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({line_limit} > {max})"
        )));
    }
    let log = logql::parse_log_expr(p.get("query").unwrap_or("")).map_err(parse_error)?;
    let lq = LogQuery {
        matchers: log.selector.matchers,
        pipeline: log.pipeline,
        start,
        end,
        limit: line_limit,
        direction: Direction::Backward,
    };
    let store = state.store.clone();
    let guard = cancel_for(&state, &tenant);
    let cancel = guard.0.clone();
    let body = blocking(move || {
        let streams = match store.existing_tenant(&tenant) {
            Some(t) => query::select_logs(&t, &lq, true, cancel)?.0,
            None => Vec::new(),
        };
        Ok(match values_of {
            Some(name) => encode_values(&detect_field_values(&streams, &name, limit), limit),
            None => encode_fields(&detect_fields(&streams, limit), limit),
        })
    })
    .await?;
    Ok(json_response(body))
}

/// `{"fields":[...],"limit":N}`; `parsers` is null for structured metadata. Loki leaves
/// `limit` out when nothing was found.
fn encode_fields(fields: &BTreeMap<String, Field>, limit: usize) -> String {
    let items: Vec<String> = fields
        .iter()
        .map(|(name, f)| {
            let parsers = if f.parsers.is_empty() {
                "null".to_string()
            } else {
                serde_json::to_string(&f.parsers).expect("bug: strings encode")
            };
            format!(
                r#"{{"label":{},"type":"{}","cardinality":{},"parsers":{parsers}}}"#,
                json_str(name),
                f.kind,
                f.values.len()
            )
        })
        .collect();
    let mut out = format!(r#"{{"fields":[{}]"#, items.join(","));
    if !fields.is_empty() {
        out.push_str(&format!(r#","limit":{limit}"#));
    }
    out.push('}');
    out
}

/// `{"values":[...],"limit":N}` (no `limit` when nothing was found, as Loki).
fn encode_values(values: &BTreeSet<String>, limit: usize) -> String {
    let mut out = format!(
        r#"{{"values":{}"#,
        serde_json::to_string(values).expect("bug: strings encode")
    );
    if !values.is_empty() {
        out.push_str(&format!(r#","limit":{limit}"#));
    }
    out.push('}');
    out
}
