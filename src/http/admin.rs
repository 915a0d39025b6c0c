//! Loki's log deletion API (`/loki/api/v1/delete`: create, list, cancel), Loki's `POST /flush`
//! (every head chunk of every tenant written to segments now) and the configuration reload
//! endpoint (`POST /-/reload`, as Prometheus and Alertmanager have it). Deletes belong to
//! the requesting tenant only; the rules are applied by `retention` and the compactor.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::parse_timestamp;
use super::read::{blocking, json_response, now_ns};
use super::{tenant_of, ApiError, AppState, TenantQuery};

/// `POST|PUT /loki/api/v1/delete?query=SELECTOR[|= ...]&start=&end=` → 204.
pub async fn create(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let query = p.query()?.to_string();
    let start = p
        .get("start")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("start parameter is required".into()))
        .and_then(|s| {
            parse_timestamp(s).map_err(|e| ApiError::BadRequest(format!("invalid start time: {e}")))
        })?;
    let end = match p.get("end").filter(|s| !s.is_empty()) {
        Some(s) => parse_timestamp(s)
            .map_err(|e| ApiError::BadRequest(format!("invalid end time: {e}")))?,
        None => now_ns(),
    };
    let store = state.store.clone();
    let req = blocking(move || Ok(store.add_delete(&tenant, &query, start, end)?)).await?;
    tracing::info!(request_id = %req.request_id, query = %req.query, "delete request received");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /loki/api/v1/delete` → the tenant's requests, in Loki's shape (times in seconds).
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let reqs = match state.store.existing_tenant(&tenant) {
        Some(t) => t.deletes.lock().requests.clone(),
        None => Vec::new(),
    };
    let secs =
        |ns: i64| serde_json::Number::from_f64(ns as f64 / 1e9).map(serde_json::Value::Number);
    let out: Vec<serde_json::Value> = reqs
        .iter()
        .map(|r| {
            serde_json::json!({
                "request_id": r.request_id,
                "start_time": secs(r.start_ns),
                "end_time": secs(r.end_ns),
                "query": r.query,
                "status": r.status,
                "created_at": secs(r.created_at_ms * 1_000_000),
            })
        })
        .collect();
    Ok(json_response(serde_json::Value::Array(out).to_string()))
}

/// `DELETE /loki/api/v1/delete?request_id=ID[&force=true]` → 204 while the request is pending.
pub async fn cancel(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let id = p
        .get("request_id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest("request_id parameter is required".into()))?
        .to_string();
    let force = p.get("force").is_some_and(|f| f == "true");
    let store = state.store.clone();
    blocking(move || Ok(store.cancel_delete(&tenant, &id, force)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /-/reload`: re-reads the config file (limits and retention) and the rule files
/// without a restart.
pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let ruler = state.ruler.clone();
    let msg = blocking(move || {
        let rules = ruler.reload();
        store
            .reload()
            .map(|m| format!("{m}\n{rules}"))
            .map_err(|e| ApiError::BadRequest(format!("config not reloaded: {e}")))
    })
    .await?;
    Ok((StatusCode::OK, format!("{msg}\n")).into_response())
}

/// `POST /flush`, as Loki's ingester has it: cuts every head chunk of every tenant, writes them
/// to segments and answers 204 once they are on disk (the WAL files they held are released).
pub async fn flush(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let written = blocking(move || {
        store
            .flush(true)
            .map_err(|e| ApiError::Internal(format!("flush failed: {e}")))
    })
    .await?;
    tracing::info!(segments = written, "flushed on request");
    Ok(StatusCode::NO_CONTENT.into_response())
}
