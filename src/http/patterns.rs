//! `GET|POST /loki/api/v1/patterns`: the patterns mined from the streams a selector matches,
//! with their line counts per `step`, in Loki's shape:
//! `{"status":"success","data":[{"pattern":"...","samples":[[<unix s>,<count>],...]}]}` (pattern
//! text escaped as Loki's encoder escapes it: `<`, `>` and `&` as `\u003c`, `\u003e`, `\u0026`).
//! Parameters `query` (a stream selector), `start`, `end` (default: the last hour) and `step`
//! (at least 10 s, the resolution counts are kept at). 404 with `pattern_ingester.enabled: false`,
//! as Loki answers without a pattern ingester.

use axum::extract::State;
use axum::response::Response;

use super::read::{blocking, json_response, now_ns, parse_error};
use super::{ApiError, AppState, TenantQuery};
use crate::logql::{self, Expr};

/// Loki refuses more points than this per series.
const MAX_POINTS: i64 = 11_000;

pub async fn patterns(State(state): State<AppState>, q: TenantQuery) -> Result<Response, ApiError> {
    if !state.store.patterns.enabled() {
        return Err(ApiError::NotFound(
            "pattern ingester is not enabled (pattern_ingester.enabled)".into(),
        ));
    }
    let query = q.params.query()?;
    let matchers = match logql::parse_expr_unvalidated(query).map_err(parse_error)? {
        Expr::Log(log) if log.pipeline.is_empty() => {
            logql::validate_selector(&log.selector.matchers).map_err(parse_error)?;
            log.selector.matchers
        }
        _ => {
            return Err(ApiError::BadRequest(format!(
                "only a stream selector is supported, got {query:?}"
            )))
        }
    };
    let (start, end) = q.params.range(now_ns())?;
    let step = q.params.step(start, end)?;
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::BadRequest("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into()));
    }
    let from_ms = start.div_euclid(1_000_000);
    let through_ms = end.div_euclid(1_000_000) + i64::from(end.rem_euclid(1_000_000) != 0);
    let store = state.store.clone();
    let tenant = q.tenant.clone();
    let series = blocking(move || {
        Ok(store
            .patterns
            .query(&tenant, &matchers, from_ms, through_ms, step / 1_000_000))
    })
    .await?;
    let mut body = String::from(r#"{"status":"success","data":["#);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(r#"{"pattern":"#);
        body.push_str(&html_escaped_json(&s.pattern));
        body.push_str(r#","samples":["#);
        for (j, (t, n)) in s.samples.iter().enumerate() {
            if j > 0 {
                body.push(',');
            }
            body.push_str(&format!("[{t},{n}]"));
        }
        body.push_str("]}");
    }
    body.push_str("]}\n");
    Ok(json_response(body))
}

/// A JSON string with `<`, `>` and `&` escaped as well, as Loki's encoder writes patterns.
fn html_escaped_json(s: &str) -> String {
    serde_json::to_string(s)
        .expect("bug: string encodes")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}
