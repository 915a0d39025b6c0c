//! Request parameters as Loki reads them: from the query string and, for POST, from a form body;
//! timestamps in every form Loki takes (ns, seconds, float seconds, RFC3339), durations, limit
//! and direction with Loki's defaults.

use axum::http::HeaderMap;

use super::parse_error;
use super::ApiError;
use crate::logql::{self, Expr, Matcher};
pub use crate::model::time::parse_timestamp;
use crate::query::Direction;

/// Loki's defaults.
pub const DEFAULT_LIMIT: usize = 100;
pub const DEFAULT_SINCE_NS: i64 = 3600 * 1_000_000_000;

/// All `key=value` pairs of a request, in order, repeated keys kept.
#[derive(Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_request(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = match query {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        let is_form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if is_form && !body.is_empty() {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| ApiError::BadRequest(format!("invalid form body: {e}")))?;
            pairs.extend(form);
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `query` parameter, required.
    /// A timestamp parameter in any form Loki takes; `None` when absent or empty.
    pub fn timestamp(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => parse_timestamp(v)
                .map(Some)
                .map_err(|m| ApiError::BadRequest(format!("invalid {key}: {m}"))),
        }
    }

    pub fn query(&self) -> Result<&str, ApiError> {
        self.get("query")
            .filter(|q| !q.is_empty())
            .ok_or_else(|| ApiError::BadRequest("query parameter is required".into()))
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `start`/`end` with Loki's defaults: end = now, start = end - `since` (default 1h).
    pub fn range(&self, now: i64) -> Result<(i64, i64), ApiError> {
        let end = match self.get("end") {
            Some(e) if !e.is_empty() => {
                parse_timestamp(e).map_err(|m| ApiError::BadRequest(format!("invalid end: {m}")))?
            }
            _ => now,
        };
        let since = match self.get("since") {
            Some(s) if !s.is_empty() => parse_duration_ns(s)
                .map_err(|m| ApiError::BadRequest(format!("invalid since: {m}")))?,
            _ => DEFAULT_SINCE_NS,
        };
        let start = match self.get("start") {
            Some(s) if !s.is_empty() => parse_timestamp(s)
                .map_err(|m| ApiError::BadRequest(format!("invalid start: {m}")))?,
            _ => end.saturating_sub(since),
        };
        if end < start {
            return Err(ApiError::BadRequest(
                "end timestamp must not be before or equal to start time".into(),
            ));
        }
        Ok((start, end))
    }

    pub fn limit(&self, max: usize) -> Result<usize, ApiError> {
        let limit = match self.get("limit") {
            Some(l) if !l.is_empty() => l.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!("invalid limit {l:?}: expected a positive integer"))
            })?,
            _ => DEFAULT_LIMIT as i64,
        };
        if limit <= 0 {
            return Err(ApiError::BadRequest(
                "limit must be a positive value".into(),
            ));
        }
        if max > 0 && limit as usize > max {
            return Err(ApiError::BadRequest(format!(
                "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {max})"
            )));
        }
        Ok(limit as usize)
    }

    /// `step` as a duration or float seconds; Loki's default is `max(floor((end-start)/250), 1s)`.
    pub fn step(&self, start: i64, end: i64) -> Result<i64, ApiError> {
        let step = match self.get("step") {
            Some(s) if !s.is_empty() => parse_duration_ns(s)
                .map_err(|m| ApiError::BadRequest(format!("invalid step: {m}")))?,
            _ => ((end - start) / 250 / 1_000_000_000).max(1) * 1_000_000_000,
        };
        if step <= 0 {
            return Err(ApiError::BadRequest("zero or negative query resolution step widths are not accepted. Try a positive integer".into()));
        }
        Ok(step)
    }

    pub fn direction(&self) -> Result<Direction, ApiError> {
        match self.get("direction").map(|d| d.to_ascii_uppercase()) {
            None => Ok(Direction::Backward),
            Some(d) if d.is_empty() || d == "BACKWARD" => Ok(Direction::Backward),
            Some(d) if d == "FORWARD" => Ok(Direction::Forward),
            Some(d) => Err(ApiError::BadRequest(format!(
                "invalid direction {d:?}: expected forward or backward"
            ))),
        }
    }
}

/// A duration as float seconds or Prometheus form (`5m`, `1h30m`, `250ms`), in nanoseconds.
pub fn parse_duration_ns(v: &str) -> Result<i64, String> {
    if let Ok(f) = v.parse::<f64>() {
        return Ok((f * 1e9) as i64);
    }
    crate::logql::parse_duration(v)
        .map(|d| d.as_nanos())
        .map_err(|e| e.to_string())
}

/// The stream selector of `query`: a bare selector, or a log query's (its pipeline is ignored),
/// checked as Loki checks selectors (at least one matcher that does not match "").
pub(super) fn selector_of(q: &str) -> Result<Vec<Matcher>, ApiError> {
    match logql::parse_expr_unvalidated(q).map_err(parse_error)? {
        Expr::Log(log) => {
            logql::validate_selector(&log.selector.matchers).map_err(parse_error)?;
            Ok(log.selector.matchers)
        }
        Expr::Sample(_) => Err(ApiError::BadRequest(
            "only label matchers are supported".into(),
        )),
    }
}

/// A positive integer parameter (the first of `keys` present), else `default`.
pub(super) fn positive(p: &Params, keys: &[&str], default: usize) -> Result<usize, ApiError> {
    let Some((key, v)) = keys
        .iter()
        .find_map(|k| p.get(k).filter(|v| !v.is_empty()).map(|v| (*k, v)))
    else {
        return Ok(default);
    };
    match v.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n as usize),
        Ok(_) => Err(ApiError::BadRequest(format!(
            "{key} must be a positive value"
        ))),
        Err(_) => Err(ApiError::BadRequest(format!(
            "invalid {key} {v:?}: expected a positive integer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ts(v: &str, want: i64) {
        assert_eq!(parse_timestamp(v).unwrap(), want, "{v}");
    }

    #[test]
    fn timestamps_in_every_form() {
        ts("1795132800", 1_795_132_800_000_000_000);
        ts("4000000000", 4_000_000_000_000_000_000);
        ts("1795132800000000000", 1_795_132_800_000_000_000);
        ts("1795132800.5", 1_795_132_800_500_000_000);
        ts("2026-11-20T00:00:00Z", 1_795_132_800_000_000_000);
        ts("2026-11-20T00:00:00.000000001Z", 1_795_132_800_000_000_001);
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn limits_and_direction() {
        let p = Params(vec![
            ("limit".into(), "6000".into()),
            ("direction".into(), "forward".into()),
        ]);
        assert!(p.limit(5000).is_err());
        assert_eq!(p.direction().unwrap(), Direction::Forward);
        assert_eq!(Params(vec![]).limit(5000).unwrap(), 100);
        assert!(Params(vec![("limit".into(), "0".into())])
            .limit(5000)
            .is_err());
    }
}
