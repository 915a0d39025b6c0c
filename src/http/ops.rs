//! What operators reach for, in Loki's shapes: `GET /config` (the running configuration as
//! YAML, secrets redacted; `?mode=defaults` for the built-in defaults), `GET /services` (each
//! component and its state, one `name => State` line each) and `GET`/`POST /log_level` (the
//! log level, changed while running through `log_level`).

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_yaml::Value;

use super::AppState;
use crate::config::Config;

/// What replaces a secret in `/config` (Loki's redaction).
pub const REDACTED: &str = "********";

/// `GET /config[?mode=defaults]`.
pub async fn config(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let mode = query_value(q.as_deref(), "mode");
    let cfg = match mode.as_deref() {
        None | Some("") => (*state.store.live_config()).clone(),
        Some("defaults") => Config::default(),
        Some(other) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("unknown mode {other:?}: leave it out for the running configuration, or use defaults\n"),
            )
        }
    };
    match config_yaml(&cfg) {
        Ok(body) => {
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/yaml; charset=utf-8"),
            );
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot render the configuration: {e}\n"),
        ),
    }
}

/// The configuration as YAML with secrets replaced by [`REDACTED`].
pub fn config_yaml(cfg: &Config) -> Result<String, serde_yaml::Error> {
    let mut tree = serde_yaml::to_value(cfg)?;
    redact(&mut tree, false);
    serde_yaml::to_string(&tree)
}

/// Whether a key names a secret: one of its `_`-separated words is password, secret, token,
/// credentials or apikey (`secret_access_key`, `bearer_token`; not `tokens`).
fn is_secret_key(key: &str) -> bool {
    key.to_ascii_lowercase().split(['_', '-', '.']).any(|w| {
        matches!(
            w,
            "password" | "passwd" | "secret" | "token" | "credentials" | "apikey"
        )
    }) || key.eq_ignore_ascii_case("api_key")
}

/// Replaces secret values in place: values of secret-named keys, and the password of any
/// `scheme://user:password@host` URL.
fn redact(v: &mut Value, secret: bool) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m.iter_mut() {
                let s = secret || k.as_str().is_some_and(is_secret_key);
                redact(val, s);
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|i| redact(i, secret)),
        Value::String(s) if secret && !s.is_empty() => *s = REDACTED.into(),
        Value::String(s) => {
            if let Some(r) = redact_url_password(s) {
                *s = r;
            }
        }
        Value::Number(_) if secret => *v = Value::String(REDACTED.into()),
        _ => {}
    }
}

/// `http://user:pw@host/x` → `http://user:********@host/x`; `None` when there is no password.
/// Comma-separated lists of URLs (`ruler.alertmanager_url`) are handled one by one.
fn redact_url_password(s: &str) -> Option<String> {
    let mut changed = false;
    let parts: Vec<String> = s
        .split(',')
        .map(|u| {
            let Some(scheme_end) = u.find("://") else {
                return u.to_string();
            };
            let rest = &u[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else {
                return u.to_string();
            };
            let Some(colon) = rest[..at].find(':') else {
                return u.to_string();
            };
            changed = true;
            format!(
                "{}{}:{REDACTED}{}",
                &u[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            )
        })
        .collect();
    changed.then(|| parts.join(","))
}

/// `GET /services`: `name => State` per component (Loki's states: New, Starting, Running).
pub async fn services(State(state): State<AppState>) -> Response {
    let ready = state.store.is_ready();
    let after_recovery = if ready { "Running" } else { "New" };
    let mut lines = vec![
        ("server", "Running"),
        ("ingester", if ready { "Running" } else { "Starting" }),
        ("distributor", after_recovery),
        ("querier", after_recovery),
        ("compactor", after_recovery),
    ];
    if state.store.cfg.index.enabled {
        lines.push(("indexer", after_recovery));
    }
    lines.push((
        "ruler",
        if state.ruler.is_running() {
            "Running"
        } else {
            "New"
        },
    ));
    let body: String = lines
        .iter()
        .map(|(name, st)| format!("{name} => {st}\n"))
        .collect();
    text(StatusCode::OK, body)
}

/// `GET /log_level` → `{"message":"Current log level is info"}`.
pub async fn get_log_level(State(state): State<AppState>) -> Response {
    let level =
        crate::log_level::current().unwrap_or_else(|| state.store.cfg.server.log_level.clone());
    level_response(
        StatusCode::OK,
        serde_json::json!({ "message": format!("Current log level is {level}") }),
    )
}

/// `POST /log_level` with `log_level=debug` (query string or form body) → Loki's answer.
pub async fn set_log_level(RawQuery(q): RawQuery, body: Bytes) -> Response {
    let level = query_value(q.as_deref(), "log_level")
        .or_else(|| query_value(std::str::from_utf8(&body).ok(), "log_level"))
        .unwrap_or_default();
    match crate::log_level::set(&level) {
        Ok(()) => {
            let msg = format!("Log level set to {level}");
            tracing::info!("{msg}");
            level_response(
                StatusCode::OK,
                serde_json::json!({ "status": "success", "message": msg }),
            )
        }
        Err(e) => {
            let status = match e {
                crate::log_level::LevelError::Unknown(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            level_response(
                status,
                serde_json::json!({ "status": "failed", "message": e.to_string() }),
            )
        }
    }
}

fn level_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, format!("{body}\n")).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn text(status: StatusCode, body: String) -> Response {
    (status, body).into_response()
}

fn query_value(q: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let mut v: Value = serde_yaml::from_str(
            "a:\n  secret_access_key: abc\n  password: 12\n  tokens: true\n  url: http://u:pw@h:9/x\n  list: 'http://a, https://b:c@d'\n  plain: x\n",
        )
        .unwrap();
        redact(&mut v, false);
        assert_eq!(
            v,
            serde_yaml::from_str::<Value>(
                "a:\n  secret_access_key: '********'\n  password: '********'\n  tokens: true\n  url: http://u:********@h:9/x\n  list: 'http://a, https://b:********@d'\n  plain: x\n"
            )
            .unwrap()
        );
    }

    #[test]
    fn running_config_reads_back() {
        let cfg = Config::from_yaml(
            "ruler:\n  alertmanager_url: http://am:pw@127.0.0.1:9093\nlimits_config:\n  retention_period: 30d\n",
        )
        .unwrap();
        let yaml = config_yaml(&cfg).unwrap();
        assert!(yaml.contains("retention_period: 720h"), "{yaml}");
        assert!(yaml.contains("http://am:********@127.0.0.1:9093"), "{yaml}");
        assert!(!yaml.contains(":pw@"), "{yaml}");
        // What /config shows is a config Sawmill starts with.
        let back = Config::from_yaml(&yaml).unwrap();
        assert_eq!(
            back.limits_config.retention_period,
            cfg.limits_config.retention_period
        );
        assert_eq!(format!("{:?}", back.index), format!("{:?}", cfg.index));
    }
}
