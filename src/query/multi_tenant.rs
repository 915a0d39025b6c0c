//! Queries over several tenants at once (`X-Scope-OrgID: a|b` with
//! `querier.multi_tenant_queries_enabled`), as Loki's multi-tenant querier answers them:
//! each tenant's part is read with its own data (retention, deletes), every result carries
//! the label `__tenant_id__`, and a `__tenant_id__` matcher in a selector chooses tenants
//! rather than streams (`original___tenant_id__` matches a stored label of that name).
//! Neighbours: `http::multi_tenant` calls in; the per-tenant work is `select_logs` and
//! [`LogSampleSource`].

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::metric::{self, EvalError, Grid, SampleSeries, SampleSource};
use super::{
    select_logs, Cancel, Direction, LogQuery, LogSampleSource, QueryError, QueryStats, ResultEntry,
    StreamResult,
};
use crate::labels::Labels;
use crate::logql::{Matcher, RangeAggregationExpr};
use crate::storage::store::Tenant;

/// The label naming the tenant of each result.
pub const TENANT_LABEL: &str = "__tenant_id__";
/// A stored label named `__tenant_id__` is shown under this name, and matched by it.
const ORIGINAL_TENANT_LABEL: &str = "original___tenant_id__";

/// Loki's answer when only `__tenant_id__` matchers were given.
const NO_MATCHERS: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

/// The tenants the `__tenant_id__` matchers keep, and the matchers for the streams (with
/// `original___tenant_id__` renamed to `__tenant_id__`).
pub fn split_matchers(tenants: &[String], matchers: &[Matcher]) -> (Vec<String>, Vec<Matcher>) {
    let mut kept: Vec<String> = tenants.to_vec();
    let mut rest = Vec::with_capacity(matchers.len());
    for m in matchers {
        if m.name == TENANT_LABEL {
            kept.retain(|t| m.matches(t));
        } else if m.name == ORIGINAL_TENANT_LABEL {
            let mut renamed = m.clone();
            renamed.name = TENANT_LABEL.to_string();
            rest.push(renamed);
        } else {
            rest.push(m.clone());
        }
    }
    (kept, rest)
}

/// `labels` with `__tenant_id__="tenant"`; a `__tenant_id__` label already there is kept as
/// `original___tenant_id__`.
pub fn with_tenant(labels: &Labels, tenant: &str) -> Labels {
    Labels::from_pairs(with_tenant_pairs(labels.pairs(), tenant))
}

fn with_tenant_pairs(pairs: &[(String, String)], tenant: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            if k == TENANT_LABEL {
                (ORIGINAL_TENANT_LABEL.to_string(), v.clone())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    out.push((TENANT_LABEL.to_string(), tenant.to_string()));
    out
}

/// One tenant's part of a query: its name and its data (`None`: nothing stored yet).
pub type TenantPart = (String, Option<Arc<Tenant>>);

/// A log query over several tenants: each tenant's `limit` entries nearest the starting
/// edge, labelled with their tenant, and of all of them the `limit` nearest.
pub fn select_logs_tenants(
    tenants: &[TenantPart],
    q: &LogQuery,
    categorize: bool,
    cancel: Cancel,
) -> Result<(Vec<StreamResult>, QueryStats), QueryError> {
    let started = std::time::Instant::now();
    let names: Vec<String> = tenants.iter().map(|(n, _)| n.clone()).collect();
    let (kept, matchers) = split_matchers(&names, &q.matchers);
    if matchers.is_empty() {
        return Err(QueryError::Unsupported(NO_MATCHERS.into()));
    }
    let mut stats = QueryStats {
        cancel: cancel.clone(),
        ..QueryStats::default()
    };
    let mut all: Vec<(Labels, ResultEntry)> = Vec::new();
    for (name, data) in tenants {
        let Some(t) = data.as_ref().filter(|_| kept.contains(name)) else {
            continue;
        };
        let part = LogQuery {
            matchers: matchers.clone(),
            pipeline: q.pipeline.clone(),
            ..*q
        };
        let (streams, s) = select_logs(t, &part, categorize, cancel.clone())?;
        stats.merge(s);
        for st in streams {
            let labels = with_tenant(&st.labels, name);
            for mut e in st.entries {
                e.categorized.stream = with_tenant_pairs(&e.categorized.stream, name);
                all.push((labels.clone(), e));
            }
        }
    }
    match q.direction {
        Direction::Forward => all.sort_by_key(|(_, e)| e.ts),
        Direction::Backward => all.sort_by_key(|(_, e)| Reverse(e.ts)),
    }
    all.truncate(q.limit);
    let mut grouped: BTreeMap<Labels, Vec<ResultEntry>> = BTreeMap::new();
    for (l, e) in all {
        grouped.entry(l).or_default().push(e);
    }
    let out = grouped
        .into_iter()
        .map(|(labels, entries)| StreamResult { labels, entries })
        .collect();
    stats.exec_secs = started.elapsed().as_secs_f64();
    Ok((out, stats))
}

/// The samples of several tenants: each tenant's series, labelled with their tenant, before
/// any aggregation across series (so `sum by (__tenant_id__)` splits by tenant, `sum` adds
/// them up).
pub struct TenantsSampleSource {
    pub parts: Vec<(String, LogSampleSource)>,
}

impl SampleSource for TenantsSampleSource {
    fn samples(
        &mut self,
        agg: &RangeAggregationExpr,
        from: i64,
        to: i64,
        grid: Option<Grid>,
    ) -> Result<Vec<SampleSeries>, EvalError> {
        let names: Vec<String> = self.parts.iter().map(|(n, _)| n.clone()).collect();
        let (kept, matchers) = split_matchers(&names, &agg.range.log.selector.matchers);
        if matchers.is_empty() {
            return Err(EvalError::BadQuery(NO_MATCHERS.into()));
        }
        let mut part_agg = agg.clone();
        part_agg.range.log.selector.matchers = matchers;
        let mut out = Vec::new();
        for (name, source) in &mut self.parts {
            if !kept.contains(name) {
                continue;
            }
            for s in source.samples(&part_agg, from, to, grid)? {
                out.push(SampleSeries {
                    labels: with_tenant(&s.labels, name),
                    samples: s.samples,
                    weighted: s.weighted,
                });
            }
        }
        Ok(out)
    }
}

/// A metric query over several tenants.
pub fn run_metric_tenants(
    tenants: Vec<TenantPart>,
    expr: &crate::logql::SampleExpr,
    params: &metric::EvalParams,
    cancel: Cancel,
) -> Result<(metric::MetricResult, QueryStats), QueryError> {
    let mut source = TenantsSampleSource {
        parts: tenants
            .into_iter()
            .map(|(name, tenant)| {
                let s = LogSampleSource {
                    tenant,
                    stats: QueryStats {
                        cancel: cancel.clone(),
                        ..QueryStats::default()
                    },
                };
                (name, s)
            })
            .collect(),
    };
    let result = metric::evaluate(expr, params, &mut source).map_err(|e| match e {
        EvalError::Source(_) if cancel.is_cancelled() => QueryError::Stopped,
        EvalError::Source(m) => QueryError::Storage(m),
        other => QueryError::Unsupported(other.to_string()),
    })?;
    let mut stats = QueryStats {
        cancel,
        ..QueryStats::default()
    };
    for (_, s) in source.parts {
        stats.merge(s.stats);
    }
    Ok((result, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Vec<Matcher> {
        crate::logql::parse_selector(s).unwrap()
    }

    #[test]
    fn tenant_matchers_choose_tenants() {
        let ts = ["a".to_string(), "b".to_string(), "c".to_string()];
        let (kept, rest) = split_matchers(&ts, &sel(r#"{app="x", __tenant_id__=~"a|b"}"#));
        assert_eq!(kept, ["a", "b"]);
        assert_eq!(rest, sel(r#"{app="x"}"#));
        let (kept, _) = split_matchers(&ts, &sel(r#"{app="x", __tenant_id__!="a"}"#));
        assert_eq!(kept, ["b", "c"]);
        let (kept, rest) = split_matchers(&ts, &sel(r#"{original___tenant_id__="z"}"#));
        assert_eq!(kept, ts);
        assert_eq!(rest, sel(r#"{__tenant_id__="z"}"#));
    }

    #[test]
    fn tenant_label_is_added_and_a_stored_one_kept() {
        let l = Labels::from_pairs(vec![
            ("app".into(), "x".into()),
            ("__tenant_id__".into(), "old".into()),
        ]);
        assert_eq!(
            with_tenant(&l, "a").to_string(),
            r#"{__tenant_id__="a", app="x", original___tenant_id__="old"}"#
        );
    }
}
