//! The query guards the HTTP layer applies before a query runs (see `query::guard` for the
//! ones that run with it): a place among the tenant's running queries
//! (`max_outstanding_requests_per_tenant`, 429 when none is free) and the lookback limit
//! (`max_query_lookback`: the range starts no earlier than that far back).

use super::{ApiError, AppState};
use crate::config::Limits;
use crate::query::guard::Slot;

/// A place for one of `tenant`'s queries, held until the returned slot is dropped (when the
/// handler ends, also when the client goes away).
pub fn query_slot(state: &AppState, tenant: &str, limits: &Limits) -> Result<Slot, ApiError> {
    state
        .query_slots
        .acquire(tenant, limits.max_outstanding_requests_per_tenant)
        .map_err(ApiError::TooManyRequests)
}

/// The start of a range under `max_query_lookback`, as Loki applies it: moved up to
/// `now - lookback`; a range that ends before that is then empty (start after end).
pub fn lookback_start(start: i64, now: i64, limits: &Limits) -> i64 {
    let lookback = limits.max_query_lookback.as_nanos();
    if lookback == 0 {
        return start;
    }
    let oldest = now.saturating_sub(i64::try_from(lookback).unwrap_or(i64::MAX));
    start.max(oldest)
}
