//! The rules API: Loki's YAML ruler endpoints (`/loki/api/v1/rules[/{namespace}[/{group}]]`:
//! list, get, create or replace a group, delete) over the tenant's rule files, and the
//! Prometheus-shaped JSON that Grafana's alerting UI reads (`/prometheus/api/v1/rules`,
//! `/prometheus/api/v1/alerts`) over the ruler's live state. Namespaces are checked by
//! `ruler::validate_namespace` before any file is touched.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use serde_json::{json, Value};

use super::read::{blocking, json_response};
use super::{tenant_of, ApiError, AppState, TenantQuery};
use crate::ruler::alert::{Alert, LabelMap};
use crate::ruler::rulefmt::{self, RuleKind};
use crate::ruler::{Group, RuleState};

fn yaml_response(value: &impl serde::Serialize) -> Response {
    let text = serde_yaml::to_string(value).expect("bug: rule groups serialize");
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/yaml"));
    r
}

fn accepted() -> Response {
    let mut r = (
        StatusCode::ACCEPTED,
        json!({"status": "success", "data": null, "errorType": "", "error": ""}).to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// `GET /loki/api/v1/rules`: every namespace of the tenant, `namespace: [groups]`.
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let ruler = state.ruler.clone();
    let all = blocking(move || Ok(ruler.rule_groups(&tenant))).await?;
    if all.is_empty() {
        return Err(ApiError::NotFound("no rule groups found".into()));
    }
    Ok(yaml_response(&all))
}

/// `GET /loki/api/v1/rules/{namespace}`: `namespace: [groups]`.
pub async fn get_namespace(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let ruler = state.ruler.clone();
    let key = ns.clone();
    let groups = blocking(move || Ok(ruler.namespace_groups(&tenant, &key)?)).await?;
    Ok(yaml_response(&std::collections::BTreeMap::from([(
        ns, groups,
    )])))
}

/// `POST /loki/api/v1/rules/{namespace}` with one group as YAML: created or replaced, 202.
pub async fn post_namespace(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    crate::ruler::validate_namespace(&ns)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the rule group is not UTF-8 text".into()))?;
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "empty body: send one rule group as YAML (name, interval, rules)".into(),
        ));
    }
    let group = rulefmt::parse_group(&ns, text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let ruler = state.ruler.clone();
    blocking(move || Ok(ruler.put_group(&tenant, &ns, group)?)).await?;
    Ok(accepted())
}

/// `DELETE /loki/api/v1/rules/{namespace}`: 202.
pub async fn delete_namespace(
    State(state): State<AppState>,
    Path(ns): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let ruler = state.ruler.clone();
    blocking(move || Ok(ruler.delete_namespace(&tenant, &ns)?)).await?;
    Ok(accepted())
}

/// `GET /loki/api/v1/rules/{namespace}/{group}`: the group alone.
pub async fn get_group(
    State(state): State<AppState>,
    Path((ns, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let ruler = state.ruler.clone();
    let groups = blocking(move || {
        ruler.namespace_groups(&tenant, &ns).map_err(|e| match e {
            crate::ruler::RulerError::NotFound(_) => {
                ApiError::NotFound("group does not exist".into())
            }
            other => other.into(),
        })
    })
    .await?;
    let g = groups
        .into_iter()
        .find(|g| g.name == group)
        .ok_or_else(|| ApiError::NotFound("group does not exist".into()))?;
    Ok(yaml_response(&g))
}

/// `DELETE /loki/api/v1/rules/{namespace}/{group}`: 202.
pub async fn delete_group(
    State(state): State<AppState>,
    Path((ns, group)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let ruler = state.ruler.clone();
    blocking(move || Ok(ruler.delete_group(&tenant, &ns, &group)?)).await?;
    Ok(accepted())
}

fn time_json(ns: Option<i64>) -> String {
    match ns {
        Some(ns) => DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as Prometheus writes alert values.
pub fn value_json(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').expect("bug: {:e} has an exponent");
    let exp: i32 = exp.parse().expect("bug: exponent is a number");
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": time_json(Some(a.active_at)),
        "value": value_json(a.value),
    });
    if let Some(k) = a.keep_firing_since {
        v["keepFiringSince"] = time_json(Some(k)).into();
    }
    v
}

fn rule_json(r: &RuleState) -> Value {
    let labels: LabelMap = r
        .spec
        .labels
        .iter()
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let common = json!({
        "name": r.spec.name,
        "query": r.spec.query,
        "labels": labels,
        "health": r.health,
        "lastError": r.last_error,
        "lastEvaluation": time_json(r.last_evaluation),
        "evaluationTime": r.evaluation_secs,
    });
    let mut v = common;
    match r.spec.kind {
        RuleKind::Recording => {
            v["type"] = "recording".into();
        }
        RuleKind::Alerting => {
            let annotations: LabelMap = r
                .spec
                .annotations
                .iter()
                .map(|(k, v, _)| (k.clone(), v.clone()))
                .collect();
            v["type"] = "alerting".into();
            v["state"] = r.alerts.rule_state().as_str().into();
            v["duration"] = r.spec.hold.as_secs_f64().into();
            v["keepFiringFor"] = r.spec.keep_firing_for.as_secs_f64().into();
            v["annotations"] = json!(annotations);
            v["alerts"] = r.alerts.listed().map(alert_json).collect::<Vec<_>>().into();
        }
    }
    v
}

/// `GET /prometheus/api/v1/rules?type=alert|record&rule_name[]=&rule_group[]=&file[]=`.
pub async fn prometheus_rules(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let kind = match p.get("type").unwrap_or("") {
        "" => None,
        "alert" => Some(RuleKind::Alerting),
        "record" => Some(RuleKind::Recording),
        other => {
            return Err(ApiError::BadRequest(format!(
                "unsupported rule type {other:?}: use type=alert or type=record"
            )))
        }
    };
    let names: Vec<String> = p.all("rule_name[]").map(str::to_string).collect();
    let groups_f: Vec<String> = p.all("rule_group[]").map(str::to_string).collect();
    let files: Vec<String> = p.all("file[]").map(str::to_string).collect();
    let ruler = state.ruler.clone();
    let groups = blocking(move || {
        let mut out = Vec::new();
        ruler.for_each_group(&tenant, |ns, g: &Group| {
            if (!files.is_empty() && !files.iter().any(|f| f == ns))
                || (!groups_f.is_empty() && !groups_f.contains(&g.spec.name))
            {
                return;
            }
            let rules: Vec<Value> = g
                .rules
                .iter()
                .filter(|r| kind.is_none_or(|k| k == r.spec.kind))
                .filter(|r| names.is_empty() || names.contains(&r.spec.name))
                .map(rule_json)
                .collect();
            if rules.is_empty() && (kind.is_some() || !names.is_empty()) {
                return;
            }
            out.push(json!({
                "name": g.spec.name,
                "file": ns,
                "rules": rules,
                "interval": g.interval.as_secs_f64(),
                "limit": g.spec.limit,
                "lastEvaluation": time_json(g.last_evaluation),
                "evaluationTime": g.evaluation_secs,
            }));
        });
        Ok(out)
    })
    .await?;
    Ok(json_response(
        json!({"status": "success", "data": {"groups": groups}}).to_string(),
    ))
}

/// `GET /prometheus/api/v1/alerts`: every pending and firing alert of the tenant.
pub async fn prometheus_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant_of(&state, &headers)?;
    let ruler = state.ruler.clone();
    let alerts = blocking(move || {
        let mut out = Vec::new();
        ruler.for_each_group(&tenant, |_, g| {
            for r in &g.rules {
                out.extend(r.alerts.listed().map(alert_json));
            }
        });
        Ok(out)
    })
    .await?;
    Ok(json_response(
        json!({"status": "success", "data": {"alerts": alerts}}).to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_prometheus_writes_them() {
        assert_eq!(value_json(1.2), "1.2e+00");
        assert_eq!(value_json(0.0), "0e+00");
        assert_eq!(value_json(12345.0), "1.2345e+04");
        assert_eq!(value_json(0.001), "1e-03");
        assert_eq!(value_json(f64::NAN), "NaN");
    }
}
