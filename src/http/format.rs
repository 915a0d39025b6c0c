//! `/loki/api/v1/format_query`: a query pretty-printed by `logql`'s printer.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::Params;
use super::read::blocking;
use super::ApiError;
use crate::logql;

/// `/loki/api/v1/format_query`: the query pretty-printed, or a JSON error (not plain text: this
/// is the one endpoint where Loki answers errors in JSON), encoded as Go's `encoding/json` does.
pub async fn format_query(
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::from_request(raw.as_deref(), &headers, &body)?;
    let q = p.get("query").unwrap_or("").to_string();
    let parsed =
        blocking(move || Ok(logql::parse_expr(&q).map(|e| logql::format_query(&e)))).await?;
    let (status, body) = match parsed {
        Ok(pretty) => (
            StatusCode::OK,
            format!(r#"{{"status":"success","data":{}}}"#, go_json_str(&pretty)),
        ),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!(
                r#"{{"status":"invalid-query","error":{}}}"#,
                go_json_str(&e.to_string())
            ),
        ),
    };
    Ok(json_with_status(status, body + "\n"))
}

use crate::logql::go::json_quote as go_json_str;

fn json_with_status(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_query_escapes_as_go() {
        assert_eq!(
            go_json_str("a<b>&\"\\\n\u{1}"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001""#
        );
    }
}
