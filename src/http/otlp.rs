//! `POST /otlp/v1/logs`: OTLP/HTTP logs ingestion, answered as the OTLP specification says.
//!
//! - 200 with an `ExportLogsServiceResponse` in the request's encoding: empty when every record
//!   was stored; with `partial_success` (`rejected_log_records` and the reasons) when only some
//!   were refused by validation.
//! - 400 for a body that does not decode, or when validation refused every record; 413 over
//!   `distributor.max_recv_msg_size`; 415 for a content type other than
//!   `application/x-protobuf` and `application/json`; 429 over the ingestion rate or the stream
//!   limit; 503 while starting or when the disk or the WAL cannot take the write (OTLP clients
//!   retry 429 and 503, with `Retry-After`). Errors carry a `google.rpc.Status` in the
//!   request's encoding.
//!
//! The records take the push path of `/loki/api/v1/push`: `ingest::otlp` maps them to streams,
//! then validation, WAL and head.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::{tenant_of, ApiError, AppState};
use crate::ingest::otlp::proto::{ExportLogsPartialSuccess, ExportLogsServiceResponse, Status};
use crate::ingest::otlp::{self, Encoding, OtlpError};
use crate::ingest::validate::{validate, STREAM_LIMIT};
use crate::storage::store::PushError;

/// Seconds a client is asked to wait before retrying a 429 or 503.
const RETRY_AFTER_S: &str = "1";

pub async fn logs(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok());
    let Some(encoding) = Encoding::from_content_type(ct) else {
        return status(
            Encoding::Protobuf,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "content type {:?} is not supported: send application/x-protobuf or application/json",
                ct.unwrap_or("")
            ),
        );
    };
    match export(&state, &headers, body, encoding).await {
        Ok(resp) => resp,
        Err(e) => {
            let code = match e.status() {
                // OTLP clients retry 503, not 507 or 500: nothing of the request was stored.
                StatusCode::INSUFFICIENT_STORAGE | StatusCode::INTERNAL_SERVER_ERROR => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                s => s,
            };
            status(encoding, code, e.message())
        }
    }
}

async fn export(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    encoding: Encoding,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(state, headers)?;
    let content_encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let store = state.store.clone();
    let t = tenant.clone();
    let work = move || -> Result<_, ApiError> {
        let req = otlp::decode(
            &body,
            encoding,
            content_encoding.as_deref(),
            store.cfg.distributor.max_recv_msg_size,
        )
        .map_err(|e| match e {
            OtlpError::Body(d) => ApiError::from(d),
            other => ApiError::BadRequest(other.to_string()),
        })?;
        let total = otlp::record_count(&req);
        if total == 0 {
            return Ok((0, None));
        }
        let limits = store.limits_for(&t);
        let now = crate::model::now_ns();
        let push = otlp::to_push_request(req, &limits.discover_service_name, now);
        let validated = validate(push, &limits, now);
        Ok((total, Some(store.push(&t, validated)?)))
    };
    let (total, outcome) = if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(work)?
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::Internal(format!("push task failed: {e}")))??
    };
    let Some(outcome) = outcome else {
        return Ok(success(encoding, None));
    };
    if let (Some(written), Some(wal)) = (outcome.wal_written, state.store.wal()) {
        wal.wait_durable(written)
            .await
            .map_err(|e| ApiError::from(PushError::Wal(e)))?;
    }
    let rejected: usize = outcome.rejections.iter().map(|r| r.lines).sum();
    let metrics = &state.store.metrics;
    for (outcome, n) in [
        ("accepted", total.saturating_sub(rejected)),
        ("rejected", rejected),
    ] {
        if n > 0 {
            metrics.inc(
                "sawmill_otlp_log_records_total",
                &[("outcome", outcome), ("tenant", &tenant)],
                n as u64,
            );
        }
    }
    if rejected == 0 {
        return Ok(success(encoding, None));
    }
    let message = outcome
        .rejections
        .iter()
        .map(|r| r.message.as_str())
        .filter(|m| !m.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    // As for a Loki push, the stream limit is worth retrying later.
    if outcome.rejections.iter().any(|r| r.reason == STREAM_LIMIT) {
        return Err(ApiError::TooManyRequests(message));
    }
    if rejected >= total {
        return Err(ApiError::BadRequest(message));
    }
    Ok(success(
        encoding,
        Some(ExportLogsPartialSuccess {
            rejected_log_records: rejected as i64,
            error_message: message,
        }),
    ))
}

fn success(encoding: Encoding, partial: Option<ExportLogsPartialSuccess>) -> Response {
    let body = match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        Encoding::Json => match partial {
            None => b"{}".to_vec(),
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedLogRecords": p.rejected_log_records.to_string(),
                "errorMessage": p.error_message,
            }})
            .to_string()
            .into_bytes(),
        },
    };
    with_type(StatusCode::OK, encoding, body)
}

/// An error as OTLP/HTTP sends it: the status code, and a `google.rpc.Status` body.
fn status(encoding: Encoding, code: StatusCode, message: &str) -> Response {
    // The gRPC code that goes with the HTTP status.
    let grpc = match code {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::GATEWAY_TIMEOUT => 4,
        _ => 13,
    };
    let body = match encoding {
        Encoding::Protobuf => Status {
            code: grpc,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": grpc, "message": message})
            .to_string()
            .into_bytes(),
    };
    let mut r = with_type(code, encoding, body);
    if code == StatusCode::TOO_MANY_REQUESTS || code == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static(RETRY_AFTER_S));
    }
    r
}

fn with_type(code: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    let mut r = (code, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}
