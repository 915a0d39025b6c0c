//! Metadata endpoints that Grafana and Logs Drilldown call besides the core read path:
//! `format_query`, `index/stats`, `index/volume`, `index/volume_range`, `detected_labels`,
//! `detected_fields` and `detected_field/NAME/values`, in Loki's shapes (`loki-api.md` §1.1).
//!
//! Stats and volume count from the chunk metadata of segments (a chunk that straddles the range
//! counts pro rata of its time span, as Loki's index does) plus the head's entries in range;
//! bytes are uncompressed bytes as stored (line and structured metadata), so an answer does not
//! change when the head is flushed. Detected fields run the query's pipeline over the newest
//! `line_limit` entries and try `json`, then `logfmt`, on each line, as Loki's frontend does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::Params;
use super::read::labels_json;
use super::read::{blocking, json_response, now_ns, on_tenant, parse_error, CancelOnDrop};
use super::{ApiError, AppState, TenantQuery};
use crate::labels::Labels;
use crate::logql::{self, Expr, MatchOp, Matcher};
use crate::query::labels_builder::{LabelsBuilder, ERROR_DETAILS_LABEL, ERROR_LABEL};
use crate::query::pipeline::{pipeline_for_query, Pipeline};
use crate::query::{
    self, Cancel, Direction, EntryVisitor, LogQuery, QueryStats, Snapshot, StreamResult,
};
use crate::store::Tenant;

/// Loki's defaults for these endpoints.
const DEFAULT_VOLUME_LIMIT: usize = 100;
const DEFAULT_FIELD_LIMIT: usize = 1000;
const DEFAULT_LINE_LIMIT: usize = 100;
/// Loki refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;
/// Labels `detected_labels` reports even when their values look like IDs.
const STATIC_LABELS: [&str; 4] = ["cluster", "namespace", "instance", "pod"];
/// Labels the query pipeline may add that are not fields.
const ERROR_LABELS: [&str; 3] = [ERROR_LABEL, ERROR_DETAILS_LABEL, "__preserve_error__"];

fn json_with_status(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("bug: string encodes")
}

/// A cancel for one request: fires at `limits_config.query_timeout` or when the client goes.
fn cancel_for(state: &AppState, tenant: &str) -> CancelOnDrop {
    CancelOnDrop(Cancel::with_timeout(
        state.store.limits_for(tenant).query_timeout,
    ))
}

/// The stream selector of `query`: a bare selector, or a log query's (its pipeline is ignored),
/// checked as Loki checks selectors (at least one matcher that does not match "").
fn selector_of(q: &str) -> Result<Vec<Matcher>, ApiError> {
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
fn positive(p: &Params, keys: &[&str], default: usize) -> Result<usize, ApiError> {
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

// ---------------------------------------------------------------------------------------------
// format_query

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

/// A JSON string as Go's `encoding/json` writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped,
/// control characters as `\u00XX` except `\n`, `\r` and `\t`.
fn go_json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// index/stats and index/volume

/// What a stream holds in one time bucket.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Usage {
    chunks: u64,
    entries: u64,
    bytes: u64,
}

/// The time buckets of a volume query, split as Loki splits it: at multiples of `step`, the
/// first bucket starting at `start` and the last ending at `end`. Stats and instant volume are
/// one bucket. Bucket `i` holds entries with `from(i) <= ts < to(i)`.
struct Buckets {
    start: i64,
    end: i64,
    aligned: i64,
    step: i64,
    n: usize,
}

impl Buckets {
    fn single(start: i64, end: i64) -> Buckets {
        Buckets {
            start,
            end,
            aligned: start,
            step: 0,
            n: usize::from(start < end),
        }
    }

    fn stepped(start: i64, end: i64, step: i64) -> Buckets {
        let aligned = start - start.rem_euclid(step);
        let n = if end > aligned {
            ((end - aligned - 1) / step + 1) as usize
        } else {
            0
        };
        Buckets {
            start,
            end,
            aligned,
            step,
            n,
        }
    }

    fn from(&self, i: usize) -> i64 {
        if i == 0 {
            self.start
        } else {
            self.aligned + i as i64 * self.step
        }
    }

    fn to(&self, i: usize) -> i64 {
        if i + 1 >= self.n {
            self.end
        } else {
            self.aligned + (i as i64 + 1) * self.step
        }
    }

    /// The sample timestamp of bucket `i`: its end, which Loki puts 1 ms before the next
    /// bucket's start.
    fn timestamp(&self, i: usize) -> i64 {
        if i + 1 >= self.n {
            self.end
        } else {
            self.to(i) - 1_000_000
        }
    }

    /// The bucket of a timestamp in `[start, end)`.
    fn index(&self, ts: i64) -> Option<usize> {
        if ts < self.start || ts >= self.end || self.n == 0 {
            return None;
        }
        if self.step == 0 {
            return Some(0);
        }
        Some((((ts - self.aligned) / self.step) as usize).min(self.n - 1))
    }
}

/// The share of a chunk spanning `[lo, hi]` that lies in `[from, to)`, as Loki's index
/// prorates chunks that straddle a query's range.
fn factor(from: i64, to: i64, lo: i64, hi: i64) -> f64 {
    if hi <= lo {
        return 1.0;
    }
    let overlap = (hi.min(to) - lo.max(from)).max(0);
    (overlap as f64 / (hi - lo) as f64).min(1.0)
}

/// Counts the head's entries per stream and bucket.
struct HeadUsage<'a> {
    buckets: &'a Buckets,
    streams: Vec<(Labels, Vec<Usage>)>,
}

impl EntryVisitor for HeadUsage<'_> {
    fn stream(&mut self, labels: &Labels) {
        self.streams
            .push((labels.clone(), vec![Usage::default(); self.buckets.n]));
    }
    fn entry(&mut self, ts: i64, line: &[u8], metadata: &[u8]) {
        let (Some(i), Some((_, usage))) = (self.buckets.index(ts), self.streams.last_mut()) else {
            return;
        };
        usage[i].entries += 1;
        usage[i].bytes += (line.len() + metadata.len()) as u64;
    }
}

/// Per matching stream, what it holds in each bucket: segment chunks by their metadata, head
/// entries one by one (each head stream with entries in a bucket counts as one chunk there).
fn usage_by_stream(
    tenant: &Tenant,
    matchers: &[Matcher],
    b: &Buckets,
    cancel: &Cancel,
) -> Result<BTreeMap<Labels, Vec<Usage>>, ApiError> {
    let mut out: BTreeMap<Labels, Vec<Usage>> = BTreeMap::new();
    if b.n == 0 {
        return Ok(out);
    }
    let mut add = |labels: &Labels, usage: &[Usage]| {
        let total = out
            .entry(labels.clone())
            .or_insert_with(|| vec![Usage::default(); b.n]);
        for (t, u) in total.iter_mut().zip(usage) {
            t.chunks += u.chunks;
            t.entries += u.entries;
            t.bytes += u.bytes;
        }
    };
    let snap = query::snapshot(tenant, matchers, b.start, b.end);
    for seg in &snap.segments {
        if cancel.is_cancelled() {
            return Err(query::QueryError::Stopped.into());
        }
        if seg.max_ts < b.start || seg.min_ts >= b.end {
            continue;
        }
        let ids = query::matching_streams(seg, matchers);
        let mut per_stream: HashMap<u32, Vec<Usage>> = HashMap::new();
        for c in seg
            .chunks
            .iter()
            .filter(|c| ids.binary_search(&c.stream).is_ok())
        {
            if c.max_ts < b.start || c.min_ts >= b.end {
                continue;
            }
            let (Some(first), Some(last)) = (
                b.index(c.min_ts.max(b.start)),
                b.index(c.max_ts.min(b.end - 1)),
            ) else {
                continue;
            };
            let usage = per_stream
                .entry(c.stream)
                .or_insert_with(|| vec![Usage::default(); b.n]);
            for (i, u) in usage.iter_mut().enumerate().take(last + 1).skip(first) {
                let f = factor(b.from(i), b.to(i), c.min_ts, c.max_ts);
                u.chunks += 1;
                u.entries += (c.n_entries as f64 * f) as u64;
                u.bytes += (c.raw_bytes as f64 * f) as u64;
            }
        }
        for (id, usage) in per_stream {
            add(&seg.streams[id as usize].labels, &usage);
        }
    }
    let head = Snapshot {
        segments: Vec::new(),
        head: snap.head,
        drops: snap.drops,
        now: snap.now,
        narrowed: Default::default(),
    };
    let mut v = HeadUsage {
        buckets: b,
        streams: Vec::new(),
    };
    let mut stats = QueryStats {
        cancel: cancel.clone(),
        ..QueryStats::default()
    };
    query::scan(
        &head,
        matchers,
        &|_| true,
        b.start,
        b.end,
        query::Part::ALL,
        &mut stats,
        &mut v,
    );
    if stats.stopped {
        return Err(query::QueryError::Stopped.into());
    }
    for (labels, mut usage) in v.streams {
        if usage.iter().all(|u| u.entries == 0) {
            continue;
        }
        for u in usage.iter_mut().filter(|u| u.entries > 0) {
            u.chunks = 1;
        }
        add(&labels, &usage);
    }
    Ok(out)
}

/// `/loki/api/v1/index/stats`: a bare `{"streams","chunks","bytes","entries"}` for the streams
/// the selector matches in the range.
pub async fn index_stats(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let matchers = selector_of(p.get("query").unwrap_or(""))?;
    let store = state.store.clone();
    let guard = cancel_for(&state, &tenant);
    let cancel = guard.0.clone();
    let usage = blocking(move || match store.existing_tenant(&tenant) {
        Some(t) => usage_by_stream(&t, &matchers, &Buckets::single(start, end), &cancel),
        None => Ok(BTreeMap::new()),
    })
    .await?;
    let mut total = Usage::default();
    let mut streams = 0u64;
    for u in usage.values().map(|u| u[0]).filter(|u| u.chunks > 0) {
        streams += 1;
        total.chunks += u.chunks;
        total.entries += u.entries;
        total.bytes += u.bytes;
    }
    Ok(json_response(format!(
        r#"{{"streams":{streams},"chunks":{},"bytes":{},"entries":{}}}"#,
        total.chunks, total.bytes, total.entries
    )))
}

/// How a volume query names its series.
struct VolumeSpec {
    /// Labels kept (by series) or counted (by labels); every label when `match_any`.
    names: BTreeSet<String>,
    match_any: bool,
    by_labels: bool,
    has_targets: bool,
    limit: usize,
}

/// One result series: its name (Loki sorts ties by it), metric and samples.
struct VolumeSeries {
    name: String,
    metric: String,
    samples: Vec<(i64, u64)>,
}

/// Volumes per bucket, each bucket keeping its `limit` largest names (largest first, ties by
/// name), then the series sorted by their first sample, largest first.
fn volume_series(
    usage: &BTreeMap<Labels, Vec<Usage>>,
    b: &Buckets,
    spec: &VolumeSpec,
) -> Vec<VolumeSeries> {
    let mut series: BTreeMap<String, VolumeSeries> = BTreeMap::new();
    for i in 0..b.n {
        // name -> (metric, bytes)
        let mut volumes: HashMap<String, (String, u64)> = HashMap::new();
        for (labels, u) in usage {
            let u = u[i];
            if u.chunks == 0 {
                continue;
            }
            if spec.by_labels {
                for (name, _) in labels.pairs() {
                    if spec.has_targets && !spec.names.contains(name) {
                        continue;
                    }
                    volumes
                        .entry(name.clone())
                        .or_insert_with(|| (format!(r#"{{{}:""}}"#, json_str(name)), 0))
                        .1 += u.bytes;
                }
            } else {
                let kept = Labels::from_pairs(
                    labels
                        .pairs()
                        .iter()
                        .filter(|(n, _)| spec.match_any || spec.names.contains(n))
                        .cloned()
                        .collect(),
                );
                volumes
                    .entry(kept.to_string())
                    .or_insert_with(|| (labels_json(&kept), 0))
                    .1 += u.bytes;
            }
        }
        let mut ranked: Vec<(String, (String, u64))> = volumes.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(spec.limit);
        for (name, (metric, bytes)) in ranked {
            series
                .entry(name.clone())
                .or_insert_with(|| VolumeSeries {
                    name,
                    metric,
                    samples: Vec::new(),
                })
                .samples
                .push((b.timestamp(i), bytes));
        }
    }
    let mut out: Vec<VolumeSeries> = series.into_values().collect();
    out.sort_by(|a, b| {
        b.samples[0]
            .1
            .cmp(&a.samples[0].1)
            .then_with(|| a.name.cmp(&b.name))
    });
    out
}

/// `/loki/api/v1/index/volume`: bytes per series (or per label name) over the range, as a
/// vector at `end`.
pub async fn index_volume(
    State(state): State<AppState>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    volume(state, q, false).await
}

/// `/loki/api/v1/index/volume_range`: the same per `step` bucket.
pub async fn index_volume_range(
    State(state): State<AppState>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    volume(state, q, true).await
}

async fn volume(
    state: AppState,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
    range: bool,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let q = p.get("query").unwrap_or("");
    // `{}` selects every stream here (Loki's `MatchAny`); anything else is a checked selector.
    let (mut matchers, match_any) = if q.trim() == "{}" {
        (Vec::new(), true)
    } else {
        (selector_of(q)?, false)
    };
    let limit = positive(&p, &["limit"], DEFAULT_VOLUME_LIMIT)?;
    let by_labels = match p.get("aggregateBy").unwrap_or("") {
        "" | "series" => false,
        "labels" => true,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid aggregateBy {other:?}: expected series or labels"
            )))
        }
    };
    let targets: Vec<String> = p
        .get("targetLabels")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let spec = if targets.is_empty() {
        VolumeSpec {
            names: matchers.iter().map(|m| m.name.clone()).collect(),
            match_any: match_any || matchers.is_empty(),
            by_labels,
            has_targets: false,
            limit,
        }
    } else {
        // Streams without a target label have no volume to report under it.
        for t in &targets {
            if !matchers.iter().any(|m| &m.name == t) {
                matchers.push(Matcher::new(t.as_str(), MatchOp::Re, ".+").map_err(parse_error)?);
            }
        }
        VolumeSpec {
            names: targets.into_iter().collect(),
            match_any: false,
            by_labels,
            has_targets: true,
            limit,
        }
    };
    let buckets = if range {
        let step = p.step(start, end)?;
        if (end - start) / step > MAX_POINTS {
            return Err(ApiError::BadRequest(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        Buckets::stepped(start, end, step)
    } else {
        Buckets::single(start, end)
    };
    let store = state.store.clone();
    let guard = cancel_for(&state, &tenant);
    let cancel = guard.0.clone();
    let series = blocking(move || {
        let usage = match store.existing_tenant(&tenant) {
            Some(t) => usage_by_stream(&t, &matchers, &buckets, &cancel)?,
            None => BTreeMap::new(),
        };
        Ok(volume_series(&usage, &buckets, &spec))
    })
    .await?;
    Ok(json_response(encode_volume(&series)))
}

/// Prometheus-style: a vector when every series has one sample, else a matrix (as Loki decides).
fn encode_volume(series: &[VolumeSeries]) -> String {
    use crate::query::metric::format_ts;
    let matrix = series.iter().any(|s| s.samples.len() > 1);
    let mut out = String::from(r#"{"status":"success","data":{"resultType":"#);
    out.push_str(if matrix { r#""matrix""# } else { r#""vector""# });
    out.push_str(r#","result":["#);
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"metric":"#);
        out.push_str(&s.metric);
        let point = |(t, v): &(i64, u64)| format!(r#"[{},"{v}"]"#, format_ts(*t));
        if matrix {
            out.push_str(r#","values":["#);
            let points: Vec<String> = s.samples.iter().map(point).collect();
            out.push_str(&points.join(","));
            out.push_str("]}");
        } else {
            out.push_str(r#","value":"#);
            out.push_str(&point(&s.samples[0]));
            out.push('}');
        }
    }
    out.push_str(r#"],"stats":{}}}"#);
    out
}

// ---------------------------------------------------------------------------------------------
// detected_labels

/// `/loki/api/v1/detected_labels`: the labels of the matching streams with their number of
/// distinct values. As Loki: labels whose every value looks like an ID (a number or a UUID)
/// are left out unless they are among `cluster`, `namespace`, `instance`, `pod`; and so are
/// internal labels (`__stream_shard__` and every other `__` name).
pub async fn detected_labels(
    State(state): State<AppState>,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let groups = match p.get("query") {
        Some(q) if !q.trim().is_empty() => vec![selector_of(q)?],
        _ => Vec::new(),
    };
    let found = on_tenant(&state, tenant, move |t| {
        query::series(t, &groups, start, end)
    })
    .await?;
    let mut values: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in &found {
        for (n, v) in l.pairs() {
            if !n.starts_with("__") {
                values.entry(n).or_default().insert(v);
            }
        }
    }
    let items: Vec<String> = values
        .iter()
        .filter(|(n, vs)| STATIC_LABELS.contains(n) || !vs.iter().all(|v| looks_like_id(v)))
        .map(|(n, vs)| format!(r#"{{"label":{},"cardinality":{}}}"#, json_str(n), vs.len()))
        .collect();
    Ok(json_response(format!(
        r#"{{"detectedLabels":[{}]}}"#,
        items.join(",")
    )))
}

/// A number (Go's `ParseFloat`) or a UUID (Go's `uuid.Parse`).
fn looks_like_id(v: &str) -> bool {
    is_go_float(v) || is_uuid(v)
}

fn is_uuid(v: &str) -> bool {
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let dashed = |s: &str| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == 5
            && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts.iter().all(|p| hex(p))
    };
    match v.len() {
        32 => hex(v),
        36 => dashed(v),
        38 => v.starts_with('{') && v.ends_with('}') && dashed(&v[1..37]),
        45 => v.len() > 9 && v[..9].eq_ignore_ascii_case("urn:uuid:") && dashed(&v[9..]),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// detected_fields

/// What is known of one detected field.
struct Field {
    kind: &'static str,
    values: BTreeSet<String>,
    parsers: Vec<&'static str>,
}

/// The `json` and `logfmt` parsers tried on each line, with a builder for the entry's labels.
struct LineParsers {
    json: Pipeline,
    logfmt: Pipeline,
    builder: LabelsBuilder,
}

impl LineParsers {
    fn new() -> LineParsers {
        let compile = |q: &str| {
            pipeline_for_query(q).unwrap_or_else(|e| panic!("bug: {q} does not compile: {e}"))
        };
        LineParsers {
            json: compile(r#"{detected="fields"} | json"#),
            logfmt: compile(r#"{detected="fields"} | logfmt"#),
            builder: LabelsBuilder::new(),
        }
    }

    /// The parsed fields of an entry: those its query's pipeline parsed, plus what `json` (or,
    /// when the line is not JSON, `logfmt`) finds in the line; and the parser that succeeded
    /// (none when both failed: then only the query's own parsed fields).
    fn parse(
        &mut self,
        stream: &Labels,
        e: &query::ResultEntry,
    ) -> (BTreeMap<String, BTreeSet<String>>, Option<&'static str>) {
        let already = &e.categorized.parsed;
        let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (n, v) in already {
            if !ERROR_LABELS.contains(&n.as_str()) {
                fields.entry(n.clone()).or_default().insert(v.clone());
            }
        }
        // Names the query already parsed are not stream labels here (no `_extracted`).
        let base: Vec<&(String, String)> = stream
            .pairs()
            .iter()
            .filter(|(n, _)| !already.iter().any(|(p, _)| p == n))
            .collect();
        let base: Vec<(&str, &str)> = base.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        self.builder.set_stream(&base);
        let line = e.line.as_bytes();
        let mut parser = "json";
        self.builder.start_entry::<&str, &str>(&[]);
        let ok = self.json.process(e.ts, line, &mut self.builder).is_some();
        if !ok || self.builder.has_err() {
            parser = "logfmt";
            self.builder.start_entry::<&str, &str>(&[]);
            let ok = self.logfmt.process(e.ts, line, &mut self.builder).is_some();
            if !ok || self.builder.has_err() {
                return (fields, None);
            }
        }
        for (n, v) in self.builder.categorized().parsed {
            if !ERROR_LABELS.contains(&n.as_str()) {
                fields.entry(n).or_default().insert(v);
            }
        }
        (fields, Some(parser))
    }
}

/// Structured metadata of an entry, values grouped by name.
fn metadata_fields(e: &query::ResultEntry) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (n, v) in &e.categorized.structured_metadata {
        out.entry(n).or_default().insert(v);
    }
    out
}

/// Loki's field detection over the entries of a log query: structured metadata first (no
/// parser), then parsed fields. At most `limit` fields; a field's type is that of the first
/// value of the last entry that had it.
fn detect_fields(streams: &[StreamResult], limit: usize) -> BTreeMap<String, Field> {
    let mut fields: BTreeMap<String, Field> = BTreeMap::new();
    let mut parsers = LineParsers::new();
    let note = |fields: &mut BTreeMap<String, Field>,
                name: &str,
                values: Vec<String>,
                parser: Option<&'static str>| {
        if !fields.contains_key(name) {
            if fields.len() >= limit {
                return;
            }
            fields.insert(
                name.to_string(),
                Field {
                    kind: "string",
                    values: BTreeSet::new(),
                    parsers: Vec::new(),
                },
            );
        }
        let f = fields.get_mut(name).expect("bug: field inserted above");
        if let Some(p) = parser {
            if !f.parsers.contains(&p) {
                f.parsers.push(p);
            }
        }
        if let Some(first) = values.first() {
            f.kind = field_type(first);
        }
        f.values.extend(values);
    };
    for s in streams {
        for e in &s.entries {
            for (n, vs) in metadata_fields(e) {
                note(
                    &mut fields,
                    n,
                    vs.into_iter().map(str::to_string).collect(),
                    None,
                );
            }
            let (parsed, parser) = parsers.parse(&s.labels, e);
            for (n, vs) in parsed {
                note(&mut fields, &n, vs.into_iter().collect(), parser);
            }
        }
    }
    fields
}

/// Values of one field over the entries, until `limit` are found. Parsed byte sizes with a
/// unit are rewritten as go-humanize writes them (`1.5kB`), so they can go into a query.
fn detect_field_values(streams: &[StreamResult], name: &str, limit: usize) -> BTreeSet<String> {
    let mut values = BTreeSet::new();
    let mut parsers = LineParsers::new();
    'streams: for s in streams {
        for e in &s.entries {
            if values.len() >= limit {
                break 'streams;
            }
            if let Some(vs) = metadata_fields(e).get(name) {
                values.extend(vs.iter().map(|v| v.to_string()));
            }
            let (parsed, _) = parsers.parse(&s.labels, e);
            for v in parsed.get(name).into_iter().flatten() {
                values.insert(normalize_bytes(v).unwrap_or_else(|| v.clone()));
            }
        }
    }
    values
}

/// `/loki/api/v1/detected_fields`.
pub async fn detected_fields(
    State(state): State<AppState>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    detected(state, q, None).await
}

/// `/loki/api/v1/detected_field/NAME/values`.
pub async fn detected_field_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    q: TenantQuery,
) -> Result<Response, ApiError> {
    detected(state, q, Some(name)).await
}

async fn detected(
    state: AppState,
    TenantQuery {
        tenant, params: p, ..
    }: TenantQuery,
    values_of: Option<String>,
) -> Result<Response, ApiError> {
    let (start, end) = p.range(now_ns())?;
    let limit = positive(&p, &["limit", "field_limit"], DEFAULT_FIELD_LIMIT)?;
    let line_limit = positive(&p, &["line_limit"], DEFAULT_LINE_LIMIT)?;
    let max = state.store.limits_for(&tenant).max_entries_limit_per_query;
    if max > 0 && line_limit > max {
        return Err(ApiError::BadRequest(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({line_limit} > {max})"
        )));
    }
    let log = logql::parse_log_expr(p.get("query").unwrap_or("")).map_err(parse_error)?;
    let lq = LogQuery {
        matchers: log.selector.matchers,
        pipeline: log.pipeline,
        start,
        end,
        limit: line_limit,
        direction: Direction::Backward,
    };
    let store = state.store.clone();
    let guard = cancel_for(&state, &tenant);
    let cancel = guard.0.clone();
    let body = blocking(move || {
        let streams = match store.existing_tenant(&tenant) {
            Some(t) => query::select_logs(&t, &lq, true, cancel)?.0,
            None => Vec::new(),
        };
        Ok(match values_of {
            Some(name) => encode_values(&detect_field_values(&streams, &name, limit), limit),
            None => encode_fields(&detect_fields(&streams, limit), limit),
        })
    })
    .await?;
    Ok(json_response(body))
}

/// `{"fields":[...],"limit":N}`; `parsers` is null for structured metadata. Loki leaves
/// `limit` out when nothing was found.
fn encode_fields(fields: &BTreeMap<String, Field>, limit: usize) -> String {
    let items: Vec<String> = fields
        .iter()
        .map(|(name, f)| {
            let parsers = if f.parsers.is_empty() {
                "null".to_string()
            } else {
                serde_json::to_string(&f.parsers).expect("bug: strings encode")
            };
            format!(
                r#"{{"label":{},"type":"{}","cardinality":{},"parsers":{parsers}}}"#,
                json_str(name),
                f.kind,
                f.values.len()
            )
        })
        .collect();
    let mut out = format!(r#"{{"fields":[{}]"#, items.join(","));
    if !fields.is_empty() {
        out.push_str(&format!(r#","limit":{limit}"#));
    }
    out.push('}');
    out
}

/// `{"values":[...],"limit":N}` (no `limit` when nothing was found, as Loki).
fn encode_values(values: &BTreeSet<String>, limit: usize) -> String {
    let mut out = format!(
        r#"{{"values":{}"#,
        serde_json::to_string(values).expect("bug: strings encode")
    );
    if !values.is_empty() {
        out.push_str(&format!(r#","limit":{limit}"#));
    }
    out.push('}');
    out
}

/// Loki's type of a field value, tried in this order: int, float, boolean, duration, bytes.
fn field_type(v: &str) -> &'static str {
    if is_go_int(v) {
        "int"
    } else if is_go_float(v) {
        "float"
    } else if matches!(
        v,
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
    ) {
        "boolean"
    } else if logql::parse_go_duration(v).is_ok() {
        "duration"
    } else if logql::parse_bytes(v).is_ok() {
        "bytes"
    } else {
        "string"
    }
}

/// Go's `strconv.ParseInt(v, 10, 64)` succeeds.
fn is_go_int(v: &str) -> bool {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && v.parse::<i64>().is_ok()
}

/// Go's `strconv.ParseFloat(v, 64)` succeeds (decimal forms; out of range is an error there).
fn is_go_float(v: &str) -> bool {
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => true,
        Ok(_) => {
            let l = v.trim_start_matches(['+', '-']).to_ascii_lowercase();
            matches!(l.as_str(), "inf" | "infinity" | "nan")
        }
        Err(_) => false,
    }
}

/// A byte size with a unit, rewritten as go-humanize's `Bytes` writes it without the space
/// (`1500` bytes → `1.5kB`); `None` when `v` is not one.
fn normalize_bytes(v: &str) -> Option<String> {
    const UNITS: [&str; 25] = [
        "b", "kib", "kb", "mib", "mb", "gib", "gb", "tib", "tb", "pib", "pb", "eib", "eb", "ki",
        "k", "mi", "m", "gi", "g", "ti", "t", "pi", "p", "ei", "e",
    ];
    let lower = v.to_ascii_lowercase();
    if !UNITS.iter().any(|u| lower.ends_with(u)) {
        return None;
    }
    let n = logql::parse_bytes(v).ok()?;
    if n < 10 {
        return Some(format!("{n}B"));
    }
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor().min(6.0);
    let val = ((n as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    let unit = SIZES[e as usize];
    Some(if val < 10.0 {
        format!("{val:.1}{unit}")
    } else {
        format!("{val:.0}{unit}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn kind(v: &str, want: &str) {
        assert_eq!(field_type(v), want, "{v}");
    }

    #[test]
    fn field_types_in_loki_order() {
        kind("42", "int");
        kind("-7", "int");
        kind("1.5", "float");
        kind("1e3", "float");
        kind("true", "boolean");
        kind("F", "boolean");
        kind("250ms", "duration");
        kind("1h30m", "duration");
        kind("10KB", "bytes");
        kind("3 MiB", "bytes");
        kind("GET", "string");
        kind("", "string");
    }

    #[test]
    fn ids_and_uuids() {
        assert!(looks_like_id("12"));
        assert!(looks_like_id("3.5"));
        assert!(looks_like_id("123e4567-e89b-12d3-a456-426614174000"));
        assert!(looks_like_id("{123e4567-e89b-12d3-a456-426614174000}"));
        assert!(looks_like_id("123e4567e89b12d3a456426614174000"));
        assert!(!looks_like_id("api"));
        assert!(!looks_like_id("123e4567-e89b-12d3-a456-42661417400z"));
    }

    #[test]
    fn byte_values_as_humanize_writes_them() {
        assert_eq!(normalize_bytes("1500B").as_deref(), Some("1.5kB"));
        assert_eq!(normalize_bytes("10KB").as_deref(), Some("10kB"));
        assert_eq!(normalize_bytes("2MiB").as_deref(), Some("2.1MB"));
        assert_eq!(normalize_bytes("5b").as_deref(), Some("5B"));
        assert_eq!(normalize_bytes("300"), None);
        assert_eq!(normalize_bytes("GET"), None);
    }

    #[test]
    fn buckets_split_as_loki_splits() {
        let s = 1_000_000_000;
        let b = Buckets::stepped(90 * s, 200 * s, 60 * s);
        assert_eq!(b.n, 3);
        assert_eq!((b.from(0), b.to(0)), (90 * s, 120 * s));
        assert_eq!((b.from(1), b.to(1)), (120 * s, 180 * s));
        assert_eq!((b.from(2), b.to(2)), (180 * s, 200 * s));
        assert_eq!(b.timestamp(0), 120 * s - 1_000_000);
        assert_eq!(b.timestamp(2), 200 * s);
        assert_eq!(b.index(119 * s), Some(0));
        assert_eq!(b.index(180 * s), Some(2));
        assert_eq!(b.index(200 * s), None);
        assert_eq!(Buckets::single(5, 5).n, 0);
    }

    #[test]
    fn chunks_count_pro_rata() {
        assert_eq!(factor(0, 100, 10, 20), 1.0);
        assert_eq!(factor(15, 100, 10, 20), 0.5);
        assert_eq!(factor(0, 100, 50, 50), 1.0);
        assert_eq!(factor(0, 10, 20, 30), 0.0);
    }

    #[test]
    fn format_query_escapes_as_go() {
        assert_eq!(
            go_json_str("a<b>&\"\\\n\u{1}"),
            r#""a\u003cb\u003e\u0026\"\\\n\u0001""#
        );
    }
}
