//! Read endpoints that accept several tenants in `X-Scope-OrgID` (`a|b`) when
//! `querier.multi_tenant_queries_enabled` is set: `query_range`, `query`, `labels`,
//! `label/NAME/values`, `series` and `index/stats`. One tenant (or the setting off) goes to the ordinary
//! handlers in `read`, so a `|` stays a 400 there. Several tenants are read by
//! `query::multi_tenant`, under the strictest of their limits, as Loki does.

use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params::Params;
use super::read::{
    self, blocking, check_query_length, data_response, encode_metric, encode_streams,
    json_response, now_ns, optional_selector, parse_error, CancelOnDrop,
};
use super::{tenant_of, ApiError, AppState, TenantQuery};
use crate::logql::{self, Expr, Matcher};
use crate::model::tenant::{validate_tenant_id, TenantError};
use crate::query::metric::EvalParams;
use crate::query::multi_tenant::{
    run_metric_tenants, select_logs_tenants, with_tenant, TenantPart, TENANT_LABEL,
};
use crate::query::{self, Cancel, LogQuery};

/// The tenants of a read request: several only with `multi_tenant_queries_enabled` (sorted,
/// each once), else the one [`tenant_of`] gives.
pub fn tenants_of(state: &AppState, headers: &HeaderMap) -> Result<Vec<String>, ApiError> {
    let raw = headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(state.store.cfg.auth_enabled
        && state.store.cfg.querier.multi_tenant_queries_enabled
        && raw.contains('|'))
    {
        return Ok(vec![tenant_of(state, headers)?]);
    }
    let mut ids = Vec::new();
    for id in raw.split('|').map(str::trim) {
        validate_tenant_id(id).map_err(|e| match e {
            TenantError::Missing => ApiError::BadRequest(format!("empty tenant ID in {raw:?}")),
            _ => ApiError::BadRequest(e.to_string()),
        })?;
        ids.push(id.to_string());
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// [`TenantQuery`] with every tenant of the request.
pub struct TenantsQuery {
    pub tenants: Vec<String>,
    pub params: Params,
    pub headers: HeaderMap,
}

impl axum::extract::FromRequest<AppState> for TenantsQuery {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let raw = req.uri().query().map(str::to_owned);
        let body = bytes::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let tenants = tenants_of(state, &headers).map_err(IntoResponse::into_response)?;
        let params = Params::from_request(raw.as_deref(), &headers, &body)
            .map_err(IntoResponse::into_response)?;
        Ok(TenantsQuery {
            tenants,
            params,
            headers,
        })
    }
}

/// A request for one tenant, or for several.
enum Split {
    One(TenantQuery),
    Many(TenantsQuery),
}

impl TenantsQuery {
    fn split(self) -> Split {
        if self.tenants.len() == 1 {
            let TenantsQuery {
                mut tenants,
                params,
                headers,
            } = self;
            Split::One(TenantQuery {
                tenant: tenants.remove(0),
                params,
                headers,
            })
        } else {
            Split::Many(self)
        }
    }
}

/// The limits a multi-tenant query runs under: for each, the strictest of the tenants'
/// (0, no limit, counts as the loosest).
struct Strictest {
    max_entries_limit_per_query: usize,
    max_query_series: usize,
    max_query_length: std::time::Duration,
    query_timeout: std::time::Duration,
}

fn strictest(state: &AppState, tenants: &[String]) -> Strictest {
    fn min_nonzero<T: PartialOrd + Copy + Default>(a: T, b: T) -> T {
        let zero = T::default();
        match (a == zero, b == zero) {
            (true, _) => b,
            (_, true) => a,
            _ if b < a => b,
            _ => a,
        }
    }
    let mut s = Strictest {
        max_entries_limit_per_query: 0,
        max_query_series: 0,
        max_query_length: Default::default(),
        query_timeout: Default::default(),
    };
    for t in tenants {
        let l = state.store.limits_for(t);
        s.max_entries_limit_per_query =
            min_nonzero(s.max_entries_limit_per_query, l.max_entries_limit_per_query);
        s.max_query_series = min_nonzero(s.max_query_series, l.max_query_series);
        s.max_query_length = min_nonzero(s.max_query_length, l.max_query_length);
        s.query_timeout = min_nonzero(s.query_timeout, l.query_timeout);
    }
    s
}

fn parts(state: &AppState, tenants: &[String]) -> Vec<TenantPart> {
    tenants
        .iter()
        .map(|t| (t.clone(), state.store.existing_tenant(t)))
        .collect()
}

pub async fn query_range(
    State(state): State<AppState>,
    q: TenantsQuery,
) -> Result<Response, ApiError> {
    let TenantsQuery {
        tenants,
        params: p,
        headers,
    } = match q.split() {
        Split::One(one) => return read::query_range(State(state), one).await,
        Split::Many(many) => many,
    };
    let limits = strictest(&state, &tenants);
    let query = p.query()?;
    let (start, end) = p.range(now_ns())?;
    let limit = p.limit(limits.max_entries_limit_per_query)?;
    let direction = p.direction()?;
    check_query_length(start, end, limits.max_query_length)?;
    let log = match logql::parse_expr(query).map_err(parse_error)? {
        Expr::Log(log) => log,
        Expr::Sample(sample) => {
            let step = p.step(start, end)?;
            let (start, end) = (
                start.div_euclid(step) * step,
                (end.div_euclid(step) * step).saturating_add(if end.rem_euclid(step) > 0 {
                    step
                } else {
                    0
                }),
            );
            let params = EvalParams {
                start,
                end,
                step,
                max_series: limits.max_query_series,
            };
            return run_metric(
                &state,
                &tenants,
                sample,
                params,
                limits.query_timeout,
                false,
            )
            .await;
        }
    };
    let categorize = headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "categorize-labels");
    let lq = LogQuery {
        matchers: log.selector.matchers,
        pipeline: log.pipeline,
        start,
        end,
        limit,
        direction,
    };
    let parts = parts(&state, &tenants);
    let guard = CancelOnDrop(Cancel::with_timeout(limits.query_timeout));
    let cancel = guard.0.clone();
    let (streams, stats) =
        blocking(move || Ok(select_logs_tenants(&parts, &lq, categorize, cancel)?)).await?;
    Ok(json_response(encode_streams(&streams, &stats, categorize)))
}

pub async fn query_instant(
    State(state): State<AppState>,
    q: TenantsQuery,
) -> Result<Response, ApiError> {
    let TenantsQuery {
        tenants, params: p, ..
    } = match q.split() {
        Split::One(one) => return read::query_instant(State(state), one).await,
        Split::Many(many) => many,
    };
    let limits = strictest(&state, &tenants);
    let query = p.query()?;
    let time = p.timestamp("time")?.unwrap_or_else(now_ns);
    p.limit(limits.max_entries_limit_per_query)?;
    match logql::parse_expr(query).map_err(parse_error)? {
        Expr::Log(_) => Err(ApiError::BadRequest(
            "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        )),
        Expr::Sample(sample) => {
            let params = EvalParams::instant(time, limits.max_query_series);
            run_metric(&state, &tenants, sample, params, limits.query_timeout, true).await
        }
    }
}

async fn run_metric(
    state: &AppState,
    tenants: &[String],
    expr: logql::SampleExpr,
    params: EvalParams,
    timeout: std::time::Duration,
    instant: bool,
) -> Result<Response, ApiError> {
    let parts = parts(state, tenants);
    let started = std::time::Instant::now();
    let guard = CancelOnDrop(Cancel::with_timeout(timeout));
    let cancel = guard.0.clone();
    let (result, mut stats) =
        blocking(move || Ok(run_metric_tenants(parts, &expr, &params, cancel)?)).await?;
    stats.exec_secs = started.elapsed().as_secs_f64();
    Ok(json_response(encode_metric(&result, &stats, instant)))
}

pub async fn labels(State(state): State<AppState>, q: TenantsQuery) -> Result<Response, ApiError> {
    let TenantsQuery {
        tenants, params: p, ..
    } = match q.split() {
        Split::One(one) => return read::labels(State(state), one).await,
        Split::Many(many) => many,
    };
    let (start, end) = p.range(now_ns())?;
    let matchers = optional_selector(&p)?;
    let parts = parts(&state, &tenants);
    let names = blocking(move || {
        let mut all: Vec<String> = vec![TENANT_LABEL.to_string()];
        for (_, t) in &parts {
            if let Some(t) = t {
                all.extend(query::label_names(t, &matchers, start, end));
            }
        }
        all.sort();
        all.dedup();
        Ok(all)
    })
    .await?;
    Ok(data_response(names.into_iter().map(Into::into).collect()))
}

pub async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: TenantsQuery,
) -> Result<Response, ApiError> {
    // With the setting on, the values of `__tenant_id__` are the tenants asked for, as Loki
    // answers even for one tenant.
    if name == TENANT_LABEL && state.store.cfg.querier.multi_tenant_queries_enabled {
        q.params.range(now_ns())?;
        return Ok(data_response(
            q.tenants.into_iter().map(Into::into).collect(),
        ));
    }
    let TenantsQuery {
        tenants, params: p, ..
    } = match q.split() {
        Split::One(one) => return read::label_values(State(state), Path(name), one).await,
        Split::Many(many) => many,
    };
    let (start, end) = p.range(now_ns())?;
    let matchers = optional_selector(&p)?;
    let parts = parts(&state, &tenants);
    let values = blocking(move || {
        let mut all: Vec<String> = Vec::new();
        for t in parts.iter().filter_map(|(_, t)| t.as_ref()) {
            all.extend(query::label_values(t, &name, &matchers, start, end));
        }
        all.sort();
        all.dedup();
        Ok(all)
    })
    .await?;
    Ok(data_response(values.into_iter().map(Into::into).collect()))
}

pub async fn series(State(state): State<AppState>, q: TenantsQuery) -> Result<Response, ApiError> {
    let TenantsQuery {
        tenants, params: p, ..
    } = match q.split() {
        Split::One(one) => return read::series(State(state), one).await,
        Split::Many(many) => many,
    };
    let (start, end) = p.range(now_ns())?;
    let groups: Vec<Vec<Matcher>> = p
        .all("match[]")
        .chain(p.all("match"))
        .map(|m| logql::parse_selector(m).map_err(parse_error))
        .collect::<Result<_, _>>()?;
    let parts = parts(&state, &tenants);
    let found = blocking(move || {
        let mut all = Vec::new();
        for (name, t) in &parts {
            let Some(t) = t else { continue };
            for l in query::series(t, &groups, start, end) {
                // A stored `__tenant_id__` label is left as it is (Loki's rule for series).
                if l.get(TENANT_LABEL).is_some() {
                    all.push(l);
                } else {
                    all.push(with_tenant(&l, name));
                }
            }
        }
        all.sort();
        all.dedup();
        Ok(all)
    })
    .await?;
    let data: Vec<serde_json::Value> = found.iter().map(read::labels_json_value).collect();
    Ok(json_response(
        json!({"status": "success", "data": data}).to_string(),
    ))
}

/// `/loki/api/v1/index/stats` over several tenants: each tenant's answer, added up (Loki
/// merges them the same way).
pub async fn index_stats(
    State(state): State<AppState>,
    q: TenantsQuery,
) -> Result<Response, ApiError> {
    let TenantsQuery {
        tenants,
        params,
        headers,
    } = match q.split() {
        Split::One(one) => return super::stats::index_stats(State(state), one).await,
        Split::Many(many) => many,
    };
    let mut total = [0u64; 4];
    for tenant in tenants {
        let one = TenantQuery {
            tenant,
            params: params.clone(),
            headers: headers.clone(),
        };
        let r = super::stats::index_stats(State(state.clone()), one).await?;
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::Internal(format!("index stats: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::Internal(format!("index stats: {e}")))?;
        for (i, k) in ["streams", "chunks", "bytes", "entries"].iter().enumerate() {
            total[i] += v[k].as_u64().unwrap_or(0);
        }
    }
    Ok(json_response(
        json!({"streams": total[0], "chunks": total[1], "bytes": total[2], "entries": total[3]})
            .to_string(),
    ))
}
