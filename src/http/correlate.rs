//! `GET /sawmill/api/v1/correlate?id=ID&start=&end=&limit=`: Sawmill's own extension. Every
//! entry of the tenant carrying the ID in a correlation field, oldest first, with its stream
//! labels, service and level, and a summary of the request: services, first and last
//! timestamps, duration, entries by level. Without `start`, the last 24 hours are searched.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::read::{blocking, json_response, labels_json_value, now_ns, CancelOnDrop};
use super::{ApiError, AppState, TenantQuery};
use crate::query::correlate::{correlate as find, Correlation};
use crate::query::Cancel;

const DEFAULT_SINCE_NS: i64 = 24 * 3_600_000_000_000;

pub async fn correlate(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let id = p
        .get("id")
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "id parameter is required: the request or trace ID to follow".into(),
            )
        })?
        .trim()
        .to_string();
    let limits = state.store.limits_for(&tenant);
    let now = now_ns();
    let end = p.timestamp("end")?.unwrap_or(now);
    let start = p.timestamp("start")?.unwrap_or(end - DEFAULT_SINCE_NS);
    if start > end {
        return Err(ApiError::BadRequest("invalid start: after end".into()));
    }
    // Without `limit`: as many entries as a query may return.
    let max = limits.max_entries_limit_per_query;
    let limit = match p.get("limit").filter(|l| !l.is_empty()) {
        Some(_) => p.limit(max)?,
        None => max,
    };
    let store = state.store.clone();
    let guard = CancelOnDrop(Cancel::with_timeout(limits.query_timeout));
    let cancel = guard.0.clone();
    let started = std::time::Instant::now();
    let key = id.clone();
    let found = blocking(move || {
        let Some(t) = store.existing_tenant(&tenant) else {
            return Ok(Correlation::default());
        };
        Ok(find(
            &t,
            &store.cfg.index,
            &key,
            start,
            end + 1,
            limit,
            cancel,
        )?)
    })
    .await?;
    Ok(json_response(
        encode(&id, &found, started.elapsed().as_secs_f64()).to_string(),
    ))
}

fn encode(id: &str, c: &Correlation, secs: f64) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = c
        .entries
        .iter()
        .map(|e| {
            json!({
                "timestamp": e.ts.to_string(),
                "stream": labels_json_value(&e.labels),
                "line": e.line,
                "service": e.service,
                "level": e.level,
            })
        })
        .collect();
    let services: BTreeSet<&str> = c
        .entries
        .iter()
        .filter_map(|e| e.service.as_deref())
        .collect();
    let mut levels: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &c.entries {
        *levels
            .entry(e.level.as_deref().unwrap_or("unknown"))
            .or_default() += 1;
    }
    let first = c.entries.first().map(|e| e.ts);
    let last = c.entries.last().map(|e| e.ts);
    json!({
        "status": "success",
        "data": {
            "id": id,
            "entries": entries,
            "summary": {
                "entries": c.entries.len(),
                "services": services,
                "first": first.map(|t| t.to_string()),
                "last": last.map(|t| t.to_string()),
                "duration_seconds": match (first, last) {
                    (Some(a), Some(b)) => (b - a) as f64 / 1e9,
                    _ => 0.0,
                },
                "levels": levels,
            },
            "truncated": c.truncated,
            "stats": {
                "chunks": c.stats.chunks,
                "lines_processed": c.stats.lines_processed,
                "bytes_processed": c.stats.bytes_processed,
                "exec_time_seconds": secs,
            },
        }
    })
}
