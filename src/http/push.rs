//! `POST /loki/api/v1/push`: decode (JSON, gzip/deflate JSON, snappy protobuf), validate, log and
//! apply; answer 204, or 400 listing each rejected stream or entry while the valid ones are
//! stored, 413 for oversized bodies, 422 for no streams, 429 over the rate, 507 when the WAL
//! cannot be written.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{tenant_of, ApiError, AppState};
use crate::ingest::decode::{decode_push, BodyFormat};
use crate::ingest::validate::validate;

pub async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let format =
        BodyFormat::from_content_type(headers.get("content-type").and_then(|v| v.to_str().ok()));
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let store = state.store.clone();
    let t = tenant.clone();
    let outcome = decode_off_the_reactor(move || -> Result<_, ApiError> {
        let cfg = &store.cfg;
        let req = decode_push(
            &body,
            format,
            encoding.as_deref(),
            cfg.distributor.max_recv_msg_size,
        )?;
        if req.streams.is_empty() {
            return Err(ApiError::Unprocessable(
                "error at least one valid stream is required for ingestion".into(),
            ));
        }
        let limits = store.limits_for(&t);
        let now = crate::model::now_ns();
        let validated = validate(req, &limits, now);
        Ok(store.push(&t, validated)?)
    })
    .await?;
    if let (Some(written), Some(wal)) = (outcome.wal_written, state.store.wal()) {
        wal.wait_durable(written)
            .await
            .map_err(|e| ApiError::from(crate::storage::store::PushError::Wal(e)))?;
    }
    if outcome.rejections.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let msgs: Vec<&str> = outcome
        .rejections
        .iter()
        .map(|r| r.message.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    // Loki answers a stream-limit or stream-rate rejection with 429 (retryable), every other
    // one with 400.
    if outcome.rejections.iter().any(|r| {
        r.reason == crate::ingest::validate::STREAM_LIMIT
            || r.reason == crate::ingest::stream_rate::STREAM_RATE_LIMIT
    }) {
        return Err(ApiError::TooManyRequests(msgs.join("\n")));
    }
    Err(ApiError::BadRequest(msgs.join("\n")))
}

/// Runs a push's CPU work (about a millisecond per 1000 lines) where it does not stall other
/// connections: on a multi-threaded runtime in place, with the runtime told that this worker
/// blocks (no hand-off to another thread, measured a few percent faster at high rates);
/// elsewhere on the blocking pool.
async fn decode_off_the_reactor<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(f)
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::Internal(format!("push task failed: {e}")))?
    }
}
