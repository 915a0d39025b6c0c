//! HTTP: Loki's API on axum. In: requests; out: Loki's responses. `router(state)` builds every
//! route; the handlers live one file per API family: `push` (the write path), `read` (queries,
//! labels, series), `tail` (WebSocket), `stats` (index stats and volume), `detected` (detected
//! labels and fields), `format` (`format_query`), `correlate`, `rules`, `admin` (deletes,
//! flush, reload), `otlp` (OTLP logs), `patterns` and `ui` (the web page). The logic behind them is in `query`. [`ApiError`] is the one place where errors become
//! status codes, with plain-text bodies as Loki sends them. Two middlewares wrap every route:
//! [`request_id`] (accepted from `X-Request-ID` or generated, carried by a tracing span through
//! every log line of the request, echoed in the response, and one JSON log line per request)
//! and [`observe`] (request durations by route, push requests by body format).

pub mod admin;
pub mod conn;
pub mod correlate;
pub mod detected;
pub mod format;
pub mod guard;
pub mod multi_tenant;
pub mod ops;
pub mod otlp;
pub mod params;
pub mod patterns;
pub mod push;
pub mod read;
pub mod rules;
pub mod stats;
pub mod tail;
pub mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::model::tenant::{validate_tenant_id, DEFAULT_TENANT};
use crate::storage::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub ruler: Arc<crate::ruler::Ruler>,
    /// Queries running per tenant (`max_outstanding_requests_per_tenant`).
    pub query_slots: Arc<crate::query::guard::TenantSlots>,
}

/// Every error an endpoint can answer with, and its status code.
#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(String),
    NotFound(String),
    PayloadTooLarge(String),
    Unprocessable(String),
    TooManyRequests(String),
    InsufficientStorage(String),
    Unavailable(String),
    Timeout(String),
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::NotFound(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::Unprocessable(m)
            | ApiError::TooManyRequests(m)
            | ApiError::InsufficientStorage(m)
            | ApiError::Unavailable(m)
            | ApiError::Timeout(m)
            | ApiError::Internal(m) => m,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.message().to_string();
        body.push('\n');
        let mut r = (self.status(), body).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

impl From<crate::ingest::decode::DecodeError> for ApiError {
    fn from(e: crate::ingest::decode::DecodeError) -> Self {
        use crate::ingest::decode::DecodeError as D;
        match e {
            D::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            D::UnsupportedEncoding(_) | D::Decompress(_) | D::Json(_) | D::Proto(_) => {
                ApiError::BadRequest(e.to_string())
            }
        }
    }
}

impl From<crate::storage::store::PushError> for ApiError {
    fn from(e: crate::storage::store::PushError) -> Self {
        use crate::storage::store::PushError as P;
        match e {
            P::NotReady => ApiError::Unavailable(e.to_string()),
            P::RateLimited(m) => ApiError::TooManyRequests(m),
            P::DiskShort(m) => ApiError::InsufficientStorage(m),
            P::Wal(w) => ApiError::InsufficientStorage(format!("push not accepted: could not write to the write-ahead log ({w}); nothing of this request was stored, retry later")),
        }
    }
}

impl From<crate::storage::retention::DeleteError> for ApiError {
    fn from(e: crate::storage::retention::DeleteError) -> Self {
        use crate::storage::retention::DeleteError as D;
        match e {
            D::Query(_) | D::Invalid(_) | D::AlreadyProcessed => {
                ApiError::BadRequest(e.to_string())
            }
            D::NotFound => ApiError::NotFound(e.to_string()),
            D::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::query::QueryError> for ApiError {
    fn from(e: crate::query::QueryError) -> Self {
        use crate::query::QueryError as Q;
        match e {
            Q::Stopped => ApiError::Timeout("query timed out: it ran longer than limits_config.query_timeout; narrow the time range or the selector".into()),
            Q::Unsupported(m) | Q::BadRegex(m) => ApiError::BadRequest(m),
            Q::Storage(m) => ApiError::Internal(m),
            Q::Limit(m) => ApiError::BadRequest(m),
        }
    }
}

impl From<crate::ruler::RulerError> for ApiError {
    fn from(e: crate::ruler::RulerError) -> Self {
        use crate::ruler::RulerError as R;
        match e {
            R::BadNamespace(_) | R::Invalid(_) => ApiError::BadRequest(e.to_string()),
            R::NotFound(m) => ApiError::NotFound(m),
            R::Io { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

/// What the query endpoints start from: the tenant, the parameters of the query string and
/// form body, and the headers. The body is read first (with axum's limit and rejections), then
/// the tenant is checked, then the parameters are parsed.
pub struct TenantQuery {
    pub tenant: String,
    pub params: params::Params,
    pub headers: HeaderMap,
}

impl axum::extract::FromRequest<AppState> for TenantQuery {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let raw = req.uri().query().map(str::to_owned);
        let body = bytes::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let tenant = tenant_of(state, &headers).map_err(IntoResponse::into_response)?;
        let params = params::Params::from_request(raw.as_deref(), &headers, &body)
            .map_err(IntoResponse::into_response)?;
        Ok(TenantQuery {
            tenant,
            params,
            headers,
        })
    }
}

/// The tenant of a request: `X-Scope-OrgID` with auth enabled, else `fake`.
pub fn tenant_of(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if !state.store.cfg.auth_enabled {
        return Ok(DEFAULT_TENANT.to_string());
    }
    let id = headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    validate_tenant_id(id).map_err(|e| match e {
        crate::model::tenant::TenantError::Missing => ApiError::Unauthorized(e.to_string()),
        _ => ApiError::BadRequest(e.to_string()),
    })?;
    Ok(id.to_string())
}

pub fn router(state: AppState) -> Router {
    let max_body = state.store.cfg.distributor.max_recv_msg_size;
    let page = if state.store.cfg.server.ui_enabled {
        ui::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(page)
        .route("/loki/api/v1/push", post(push::push))
        .route("/api/prom/push", post(push::push))
        .route("/otlp/v1/logs", post(otlp::logs))
        .route(
            "/loki/api/v1/patterns",
            get(patterns::patterns).post(patterns::patterns),
        )
        .route(
            "/loki/api/v1/query_range",
            get(multi_tenant::query_range).post(multi_tenant::query_range),
        )
        .route(
            "/loki/api/v1/query",
            get(multi_tenant::query_instant).post(multi_tenant::query_instant),
        )
        .route(
            "/loki/api/v1/format_query",
            get(format::format_query).post(format::format_query),
        )
        .route(
            "/loki/api/v1/index/stats",
            get(multi_tenant::index_stats).post(multi_tenant::index_stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(stats::index_volume).post(stats::index_volume),
        )
        .route(
            "/loki/api/v1/index/volume_range",
            get(stats::index_volume_range).post(stats::index_volume_range),
        )
        .route(
            "/loki/api/v1/detected_labels",
            get(detected::detected_labels).post(detected::detected_labels),
        )
        .route(
            "/loki/api/v1/detected_fields",
            get(detected::detected_fields).post(detected::detected_fields),
        )
        .route(
            "/loki/api/v1/detected_field/{name}/values",
            get(detected::detected_field_values).post(detected::detected_field_values),
        )
        .route(
            "/loki/api/v1/labels",
            get(multi_tenant::labels).post(multi_tenant::labels),
        )
        .route(
            "/loki/api/v1/label",
            get(multi_tenant::labels).post(multi_tenant::labels),
        )
        .route(
            "/loki/api/v1/label/{name}/values",
            get(multi_tenant::label_values).post(multi_tenant::label_values),
        )
        .route(
            "/loki/api/v1/series",
            get(multi_tenant::series).post(multi_tenant::series),
        )
        .route(
            "/loki/api/v1/tail",
            get(tail::tail).layer(axum::middleware::from_fn(ui::tenant_from_query)),
        )
        .route(
            "/sawmill/api/v1/correlate",
            get(correlate::correlate).post(correlate::correlate),
        )
        .route("/loki/api/v1/status/buildinfo", get(read::buildinfo))
        .route(
            "/loki/api/v1/delete",
            post(admin::create)
                .put(admin::create)
                .get(admin::list)
                .delete(admin::cancel),
        )
        .route("/-/reload", post(admin::reload))
        .route("/flush", post(admin::flush))
        // The ruler (src/ruler): Loki's YAML rules API and the Prometheus-shaped views.
        .merge(rules_api(state.store.cfg.ruler.enable_api))
        // What operators reach for (see `ops`).
        .route("/config", get(ops::config))
        .route("/services", get(ops::services))
        .route(
            "/log_level",
            get(ops::get_log_level).post(ops::set_log_level),
        )
        .route("/ready", get(read::ready))
        .route("/metrics", get(read::metrics))
        .layer(DefaultBodyLimit::max(
            usize::try_from(max_body).unwrap_or(usize::MAX),
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_id,
        ))
        .with_state(state)
}

/// The rules API, or nothing when `ruler.enable_api` is false (then its paths answer 404).
fn rules_api(enabled: bool) -> Router<AppState> {
    if !enabled {
        return Router::new();
    }
    Router::new()
        .route("/loki/api/v1/rules", get(rules::list))
        .route("/api/prom/rules", get(rules::list))
        .route(
            "/loki/api/v1/rules/{namespace}",
            get(rules::get_namespace)
                .post(rules::post_namespace)
                .delete(rules::delete_namespace),
        )
        .route(
            "/loki/api/v1/rules/{namespace}/{group}",
            get(rules::get_group).delete(rules::delete_group),
        )
        .route(
            "/api/prom/rules/{namespace}",
            get(rules::get_namespace)
                .post(rules::post_namespace)
                .delete(rules::delete_namespace),
        )
        .route(
            "/api/prom/rules/{namespace}/{group}",
            get(rules::get_group).delete(rules::delete_group),
        )
        .route(
            "/prometheus/api/v1/rules",
            get(rules::prometheus_rules).post(rules::prometheus_rules),
        )
        .route("/prometheus/api/v1/alerts", get(rules::prometheus_alerts))
}

/// The request header a caller's request ID is taken from, and the response header it is
/// returned in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest accepted `X-Request-ID`; longer (or non-printable) ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The caller's `X-Request-ID` if it is 1 to 128 printable ASCII characters, else a new one.
pub fn request_id_of(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(new_request_id, str::to_string)
}

/// 16 random bytes in hex.
fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness (should not happen on Linux): unique within the process instead.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = crate::model::now_ns() as u64;
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Gives every request an ID, runs it inside a `request` span carrying that ID (so every log
/// line written while serving it has it), returns it as `X-Request-ID`, and writes one log line
/// per request: method, route, path, status, duration, tenant. Probes (`/ready`, `/metrics`)
/// log at debug, everything else at info.
async fn request_id(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let id = request_id_of(req.headers());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let tenant = tenant_of(&state, req.headers()).unwrap_or_default();
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let _entered = span.enter();
    if route == "/ready" || route == "/metrics" {
        tracing::debug!(%method, %route, %path, status, duration_ms, %tenant, request_id = %id, "request");
    } else {
        tracing::info!(%method, %route, %path, status, duration_ms, %tenant, request_id = %id, "request");
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// Request durations by route, as `sawmill_request_duration_seconds` (a histogram), and push
/// requests by body format, as `sawmill_push_requests_total{format}` (which clients send
/// protobuf, which JSON).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let method = req.method().to_string();
    if route == "/loki/api/v1/push" || route == "/api/prom/push" {
        let ct = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        let format = match crate::ingest::decode::BodyFormat::from_content_type(ct) {
            crate::ingest::decode::BodyFormat::Json => "json",
            crate::ingest::decode::BodyFormat::Protobuf => "protobuf",
        };
        state
            .store
            .metrics
            .inc("sawmill_push_requests_total", &[("format", format)], 1);
    }
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    state.store.metrics.observe(
        "sawmill_request_duration_seconds",
        &[
            ("method", &method),
            ("route", &route),
            ("status_code", &status),
        ],
        started.elapsed().as_secs_f64(),
    );
    resp
}

pub(super) fn parse_error(e: crate::logql::ParseError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}
