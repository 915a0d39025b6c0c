//! The built-in web page: `/` and `/ui/` serve `index.html`, `/ui/app.js` and `/ui/app.css`,
//! all embedded in the binary at compile time (no build step, nothing fetched at run time).
//! The page is a client of the API in this folder: `read` (queries, labels, values), `extra`
//! (volume), `tail` (WebSocket) and `correlate` (a request's timeline). `server.ui_enabled`
//! turns these routes off, and `/` answers 404 again.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// The page's routes, merged into the API router when `server.ui_enabled` is true.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
}

async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8", "no-cache")
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8", "no-cache")
}

async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8", "no-cache")
}

/// One embedded file. `no-cache` lets the browser keep it but ask again (a new binary may
/// bring a new page); the page makes no requests to other origins, which the policy enforces.
fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The tenant parameter of `/loki/api/v1/tail`: browsers cannot set headers on a WebSocket, so
/// the page sends its tenant as this query parameter instead of the header.
pub const TENANT_PARAM: &str = "X-Scope-OrgID";

/// For the tail route: a `X-Scope-OrgID` query parameter becomes the header of that name when
/// the request has no such header. A header (say, set by an authenticating proxy) always wins,
/// so this opens nothing a header could not already do.
pub async fn tenant_from_query(mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(TENANT_PARAM) {
        let from_query = req.uri().query().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == TENANT_PARAM)
                .and_then(|(_, v)| HeaderValue::from_str(&v).ok())
        });
        if let Some(v) = from_query {
            req.headers_mut().insert(TENANT_PARAM, v);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_under_the_size_cap() {
        // The cap is 200 KB gzipped per asset; uncompressed under it is a safe bound.
        for (name, a) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("app.css", APP_CSS),
        ] {
            assert!(a.len() < 200_000, "{name} is {} bytes", a.len());
        }
        assert!(INDEX_HTML.contains("/ui/app.js") && INDEX_HTML.contains("/ui/app.css"));
    }
}
