//! Metric query evaluation with Loki's step and window semantics: points at `start + k*step`
//! up to `end`; each range aggregation at `t` sees the samples in `(t - offset - range,
//! t - offset]`; vector aggregations, binary operators (Prometheus matching rules),
//! `label_replace`, `vector()` and literals are then applied step by step. Samples come from a
//! [`SampleSource`] (the log pipeline over segments and head); this module only does arithmetic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use thiserror::Error;

use crate::labels::Labels;
use crate::logql::{
    BinOp, BinOpExpr, GroupSide, Grouping, LabelReplaceExpr, RangeAggregationExpr, RangeOp,
    SampleExpr, VectorAggregationExpr, VectorMatching, VectorOp,
};

/// Loki refuses range queries of more points than this.
pub const MAX_POINTS: i64 = 11_000;

#[derive(Debug, Error, PartialEq)]
pub enum EvalError {
    /// A query Loki answers with 400.
    #[error("{0}")]
    BadQuery(String),
    #[error("maximum of series ({0}) reached for a single query")]
    MaxSeries(usize),
    #[error("{0}")]
    Source(String),
}

/// The raw samples of one series, sorted by timestamp (Unix ns).
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
    /// Each sample adds up the values of several entries (moved onto a [`Grid`]): a count is
    /// the sum of the values, not the number of samples.
    pub weighted: bool,
}

/// The step buckets `(origin + (j - 1) * step, origin + j * step]` of a range query whose range
/// is a whole number of steps: every window is a union of whole buckets, so a source may move
/// a sample to its bucket's end, and add up the samples that land on one time, without
/// changing any window's count or sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub origin: i64,
    pub step: i64,
}

impl Grid {
    /// The end of the bucket holding `ts`.
    pub fn bucket_end(&self, ts: i64) -> i64 {
        let d = ts as i128 - self.origin as i128;
        let step = self.step as i128;
        let j = d.div_euclid(step) + (d.rem_euclid(step) != 0) as i128;
        (self.origin as i128 + j * step).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

/// Produces the samples a range aggregation reads.
pub trait SampleSource {
    /// Every sample of the aggregation's log range with a timestamp in `(from, to]`, grouped in
    /// series by their labels after the pipeline, the unwrap and the aggregation's own grouping.
    /// With `grid`, samples whose values only ever add up may be merged onto it (see [`Grid`]).
    fn samples(
        &mut self,
        agg: &RangeAggregationExpr,
        from: i64,
        to: i64,
        grid: Option<Grid>,
    ) -> Result<Vec<SampleSeries>, EvalError>;
}

#[derive(Debug, Clone, Copy)]
pub struct EvalParams {
    pub start: i64,
    pub end: i64,
    /// Nanoseconds, at least 1.
    pub step: i64,
    pub max_series: usize,
}

impl EvalParams {
    /// One point at `time`: an instant query (`/loki/api/v1/query`, rule evaluation).
    pub fn instant(time: i64, max_series: usize) -> EvalParams {
        EvalParams {
            start: time,
            end: time,
            step: 1_000_000_000,
            max_series,
        }
    }

    pub fn steps(&self) -> usize {
        ((self.end as i128 - self.start as i128) / self.step as i128 + 1)
            .clamp(0, MAX_POINTS as i128) as usize
    }
    fn at(&self, k: usize) -> i64 {
        self.start + k as i64 * self.step
    }
}

/// One step's vector: labels and value per series.
type StepVector = Vec<(Arc<Labels>, f64)>;

/// What a node evaluates to: one scalar or one vector per step.
enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<StepVector>),
}

/// The result of a metric query.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricResult {
    /// One value per step.
    Scalar(Vec<(i64, f64)>),
    /// Series with the steps at which they have a value; sorted by labels.
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

/// Evaluates a metric query over every step.
pub fn evaluate(
    expr: &SampleExpr,
    p: &EvalParams,
    source: &mut dyn SampleSource,
) -> Result<MetricResult, EvalError> {
    if p.step <= 0 {
        return Err(EvalError::BadQuery("zero or negative query resolution step widths are not accepted. Try a positive integer".into()));
    }
    if (p.end as i128 - p.start as i128) / p.step as i128 + 1 > MAX_POINTS as i128 {
        return Err(EvalError::BadQuery(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    match eval(expr, p, source)? {
        Value::Scalar(v) => Ok(MetricResult::Scalar(
            v.into_iter()
                .enumerate()
                .map(|(k, x)| (p.at(k), x))
                .collect(),
        )),
        Value::Vector(steps) => {
            let m = to_matrix(steps, p);
            if m.len() > p.max_series {
                return Err(EvalError::MaxSeries(p.max_series));
            }
            Ok(MetricResult::Matrix(m))
        }
    }
}

fn to_matrix(steps: Vec<StepVector>, p: &EvalParams) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut series: BTreeMap<Arc<Labels>, Vec<(i64, f64)>> = BTreeMap::new();
    for (k, v) in steps.into_iter().enumerate() {
        for (l, x) in v {
            series.entry(l).or_default().push((p.at(k), x));
        }
    }
    series
        .into_iter()
        .map(|(l, v)| (Arc::unwrap_or_clone(l), v))
        .collect()
}

fn eval(
    expr: &SampleExpr,
    p: &EvalParams,
    source: &mut dyn SampleSource,
) -> Result<Value, EvalError> {
    let n = p.steps();
    Ok(match expr {
        SampleExpr::Literal(l) => Value::Scalar(vec![l.value; n]),
        SampleExpr::Vector(v) => {
            let empty = Arc::new(Labels::default());
            Value::Vector((0..n).map(|_| vec![(empty.clone(), v.value)]).collect())
        }
        SampleExpr::RangeAggregation(agg) => Value::Vector(eval_range(agg, p, source)?),
        SampleExpr::VectorAggregation(agg) => {
            let pushed = push_down_grouping(agg);
            let inner_expr = pushed.as_ref().unwrap_or(&agg.inner);
            let inner = match eval(inner_expr, p, source)? {
                Value::Vector(v) => v,
                Value::Scalar(_) => {
                    return Err(EvalError::BadQuery(format!(
                        "{} expects a vector, not a scalar",
                        agg.op.as_str()
                    )))
                }
            };
            Value::Vector(
                inner
                    .into_iter()
                    .map(|v| aggregate_vector(agg, v))
                    .collect::<Result<_, _>>()?,
            )
        }
        SampleExpr::LabelReplace(lr) => {
            let inner = match eval(&lr.inner, p, source)? {
                Value::Vector(v) => v,
                Value::Scalar(_) => {
                    return Err(EvalError::BadQuery("label_replace expects a vector".into()))
                }
            };
            Value::Vector(label_replace(lr, inner)?)
        }
        SampleExpr::BinOp(b) => {
            let lhs = eval(&b.lhs, p, source)?;
            let rhs = eval(&b.rhs, p, source)?;
            binop(b, lhs, rhs)?
        }
    })
}

/// `sum by (x) (rate(...))` equals `sum by (x)` of the rate computed on samples already grouped
/// by `x`, for range aggregations that add up their samples; grouping while extracting samples
/// saves building one series per distinct label set (as Loki does). `None` when not applicable.
fn push_down_grouping(agg: &VectorAggregationExpr) -> Option<SampleExpr> {
    let SampleExpr::RangeAggregation(inner) = agg.inner.as_ref() else {
        return None;
    };
    let additive = matches!(
        inner.op,
        RangeOp::CountOverTime
            | RangeOp::Rate
            | RangeOp::BytesOverTime
            | RangeOp::BytesRate
            | RangeOp::SumOverTime
    );
    let by = agg.grouping.as_ref().filter(|g| !g.without)?;
    if agg.op != VectorOp::Sum || !additive || inner.grouping.is_some() {
        return None;
    }
    let mut pushed = inner.clone();
    pushed.grouping = Some(by.clone());
    Some(SampleExpr::RangeAggregation(pushed))
}

// ---- range aggregations -----------------------------------------------------------------------

fn eval_range(
    agg: &RangeAggregationExpr,
    p: &EvalParams,
    source: &mut dyn SampleSource,
) -> Result<Vec<StepVector>, EvalError> {
    let range = agg.range.range.as_nanos();
    let offset = agg.range.offset.as_nanos();
    let n = p.steps();
    let from = p.start.saturating_sub(offset).saturating_sub(range);
    let to = p.end.saturating_sub(offset);
    // Windows are unions of whole step buckets when the range is a whole number of steps.
    let grid = (range > 0 && range % p.step == 0).then_some(Grid {
        origin: p.start.saturating_sub(offset),
        step: p.step,
    });
    let series = source.samples(agg, from, to, grid)?;
    let mut out: Vec<StepVector> = vec![Vec::new(); n];
    if agg.op == RangeOp::AbsentOverTime {
        let labels = Arc::new(absent_labels(agg));
        for (k, step) in out.iter_mut().enumerate() {
            let t = p.at(k).saturating_sub(offset);
            let present = series.iter().any(|s| {
                s.samples
                    .iter()
                    .any(|(ts, _)| *ts > t.saturating_sub(range) && *ts <= t)
            });
            if !present {
                step.push((labels.clone(), 1.0));
            }
        }
        return Ok(out);
    }
    let secs = range as f64 / 1e9;
    for s in series {
        let labels = Arc::new(s.labels);
        let (mut lo, mut hi) = (0usize, 0usize);
        for (k, step) in out.iter_mut().enumerate() {
            let t = p.at(k).saturating_sub(offset);
            while hi < s.samples.len() && s.samples[hi].0 <= t {
                hi += 1;
            }
            while lo < hi && s.samples[lo].0 <= t.saturating_sub(range) {
                lo += 1;
            }
            if lo == hi {
                continue;
            }
            if let Some(v) = range_value(agg, &s.samples[lo..hi], s.weighted, t, range, secs) {
                step.push((labels.clone(), v));
            }
        }
    }
    Ok(out)
}

/// `absent_over_time` reports the labels of the selector's equality matchers.
fn absent_labels(agg: &RangeAggregationExpr) -> Labels {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for m in &agg.range.log.selector.matchers {
        if m.op == crate::logql::MatchOp::Eq && !pairs.iter().any(|(n, _)| *n == m.name) {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    Labels::from_pairs(pairs)
}

fn range_value(
    agg: &RangeAggregationExpr,
    w: &[(i64, f64)],
    weighted: bool,
    t: i64,
    range: i64,
    secs: f64,
) -> Option<f64> {
    let sum = || w.iter().map(|(_, v)| v).sum::<f64>();
    let count = || if weighted { sum() } else { w.len() as f64 };
    Some(match agg.op {
        RangeOp::CountOverTime => count(),
        RangeOp::Rate if agg.range.unwrap.is_some() => sum() / secs,
        RangeOp::Rate => count() / secs,
        RangeOp::BytesOverTime | RangeOp::SumOverTime => sum(),
        RangeOp::BytesRate => sum() / secs,
        RangeOp::AvgOverTime => {
            let mut mean = 0.0;
            for (i, (_, v)) in w.iter().enumerate() {
                mean += (v - mean) / (i + 1) as f64;
            }
            mean
        }
        RangeOp::MinOverTime => {
            w.iter()
                .map(|(_, v)| *v)
                .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a })
        }
        RangeOp::MaxOverTime => {
            w.iter()
                .map(|(_, v)| *v)
                .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a })
        }
        RangeOp::StdvarOverTime => variance(w.iter().map(|(_, v)| *v)),
        RangeOp::StddevOverTime => variance(w.iter().map(|(_, v)| *v)).sqrt(),
        RangeOp::QuantileOverTime => quantile(
            agg.param.unwrap_or(f64::NAN),
            w.iter().map(|(_, v)| *v).collect(),
        ),
        RangeOp::FirstOverTime => w[0].1,
        RangeOp::LastOverTime => w[w.len() - 1].1,
        RangeOp::RateCounter => return counter_rate(w, t, range),
        RangeOp::AbsentOverTime => unreachable!("bug: absent_over_time is evaluated apart"),
    })
}

/// Population variance (Welford).
fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
    for v in values {
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    if n == 0.0 {
        f64::NAN
    } else {
        m2 / n
    }
}

/// Prometheus' quantile: linear interpolation between the closest ranks.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let weight = rank - rank.floor();
    // The values of ranks `lower` and `lower + 1` in sorted order, without sorting.
    let (_, &mut low, above) = values.select_nth_unstable_by(lower, |a, b| a.total_cmp(b));
    let high = above
        .iter()
        .copied()
        .min_by(|a, b| a.total_cmp(b))
        .unwrap_or(low);
    low * (1.0 - weight) + high * weight
}

/// Prometheus' extrapolated rate of a counter (resets corrected), per second.
fn counter_rate(w: &[(i64, f64)], t: i64, range: i64) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    for pair in w.windows(2) {
        if pair[1].1 < pair[0].1 {
            result += pair[0].1;
        }
    }
    let range_start = t.saturating_sub(range);
    let mut to_start = (first.0 - range_start) as f64 / 1e9;
    let to_end = (t - last.0) as f64 / 1e9;
    let sampled = (last.0 - first.0) as f64 / 1e9;
    if sampled <= 0.0 {
        return None;
    }
    let avg_between = sampled / (w.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg_between / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg_between / 2.0
    };
    Some(result * (interval / sampled) / (range as f64 / 1e9))
}

// ---- vector aggregations ----------------------------------------------------------------------

/// The labels a grouping keeps of `l`.
pub fn group_labels(g: Option<&Grouping>, l: &Labels) -> Labels {
    match g {
        None => Labels::default(),
        Some(g) if g.without => Labels::from_pairs(
            l.pairs()
                .iter()
                .filter(|(n, _)| !g.labels.contains(n))
                .cloned()
                .collect(),
        ),
        Some(g) => Labels::from_pairs(
            l.pairs()
                .iter()
                .filter(|(n, _)| g.labels.contains(n))
                .cloned()
                .collect(),
        ),
    }
}

fn aggregate_vector(agg: &VectorAggregationExpr, v: StepVector) -> Result<StepVector, EvalError> {
    match agg.op {
        VectorOp::Sort | VectorOp::SortDesc => {
            let mut v = v;
            v.sort_by(|a, b| a.1.total_cmp(&b.1));
            if agg.op == VectorOp::SortDesc {
                v.reverse();
            }
            return Ok(v);
        }
        VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk => {
            let k = agg.param.unwrap_or(0);
            if k < 1 {
                return Ok(Vec::new());
            }
            let mut groups: BTreeMap<Labels, Vec<(Arc<Labels>, f64)>> = BTreeMap::new();
            for (l, x) in v {
                groups
                    .entry(group_labels(agg.grouping.as_ref(), &l))
                    .or_default()
                    .push((l, x));
            }
            let mut out = Vec::new();
            for (_, mut members) in groups {
                // NaN sorts last for both.
                members.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if agg.op == VectorOp::Bottomk => a.1.total_cmp(&b.1),
                    _ => b.1.total_cmp(&a.1),
                });
                members.truncate(k as usize);
                out.extend(members);
            }
            return Ok(out);
        }
        _ => {}
    }
    let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
    for (l, x) in &v {
        groups
            .entry(group_labels(agg.grouping.as_ref(), l))
            .or_default()
            .push(*x);
    }
    Ok(groups
        .into_iter()
        .map(|(l, xs)| {
            let n = xs.len() as f64;
            let value = match agg.op {
                VectorOp::Sum => xs.iter().sum(),
                VectorOp::Avg => {
                    let mut mean = 0.0;
                    for (i, x) in xs.iter().enumerate() {
                        mean += (x - mean) / (i + 1) as f64;
                    }
                    mean
                }
                VectorOp::Count => n,
                VectorOp::Min => {
                    xs.iter()
                        .copied()
                        .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a })
                }
                VectorOp::Max => {
                    xs.iter()
                        .copied()
                        .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a })
                }
                VectorOp::Stdvar => variance(xs.iter().copied()),
                VectorOp::Stddev => variance(xs.iter().copied()).sqrt(),
                VectorOp::Topk
                | VectorOp::Bottomk
                | VectorOp::ApproxTopk
                | VectorOp::Sort
                | VectorOp::SortDesc => {
                    unreachable!("bug: handled above")
                }
            };
            (Arc::new(l), value)
        })
        .collect())
}

// ---- label_replace ----------------------------------------------------------------------------

fn label_replace(
    lr: &LabelReplaceExpr,
    steps: Vec<StepVector>,
) -> Result<Vec<StepVector>, EvalError> {
    let re = crate::logql::compile_anchored(&lr.regex).map_err(|e| {
        EvalError::BadQuery(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    let mut cache: HashMap<Arc<Labels>, Arc<Labels>> = HashMap::new();
    Ok(steps
        .into_iter()
        .map(|v| {
            v.into_iter()
                .map(|(l, x)| {
                    let out = cache
                        .entry(l.clone())
                        .or_insert_with(|| {
                            let src = l.get(&lr.src).unwrap_or("");
                            let Some(caps) = re.captures(src) else {
                                return l.clone();
                            };
                            let mut value = String::new();
                            caps.expand(&lr.replacement, &mut value);
                            let mut pairs: Vec<(String, String)> = l
                                .pairs()
                                .iter()
                                .filter(|(n, _)| *n != lr.dst)
                                .cloned()
                                .collect();
                            if !value.is_empty() {
                                pairs.push((lr.dst.clone(), value));
                            }
                            Arc::new(Labels::from_pairs(pairs))
                        })
                        .clone();
                    (out, x)
                })
                .collect()
        })
        .collect())
}

// ---- binary operators -------------------------------------------------------------------------

fn binop(b: &BinOpExpr, lhs: Value, rhs: Value) -> Result<Value, EvalError> {
    let op = b.op;
    let bool_ = b.modifier.return_bool;
    Ok(match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            if op.is_set_operator() {
                return Err(EvalError::BadQuery(format!(
                    "set operator \"{}\" not allowed in binary scalar expression",
                    op.as_str()
                )));
            }
            Value::Scalar(l.iter().zip(&r).map(|(a, c)| op.apply(*a, *c)).collect())
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Value::Vector(vector_scalar(op, bool_, v, &s, false)?)
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Value::Vector(vector_scalar(op, bool_, v, &s, true)?)
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let m = b.modifier.matching.clone().unwrap_or(VectorMatching {
                on: false,
                labels: Vec::new(),
                group: None,
            });
            Value::Vector(
                l.into_iter()
                    .zip(r)
                    .map(|(l, r)| vector_vector(op, bool_, &m, l, r))
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

fn vector_scalar(
    op: BinOp,
    bool_: bool,
    steps: Vec<StepVector>,
    s: &[f64],
    scalar_left: bool,
) -> Result<Vec<StepVector>, EvalError> {
    if op.is_set_operator() {
        return Err(EvalError::BadQuery(format!(
            "set operator \"{}\" not allowed between a vector and a scalar",
            op.as_str()
        )));
    }
    Ok(steps
        .into_iter()
        .zip(s)
        .map(|(v, &sv)| {
            v.into_iter()
                .filter_map(|(l, x)| {
                    let (a, c) = if scalar_left { (sv, x) } else { (x, sv) };
                    let value = op.apply(a, c);
                    if op.is_comparison() {
                        let keep = value == 1.0;
                        if bool_ {
                            return Some((l, if keep { 1.0 } else { 0.0 }));
                        }
                        return keep.then_some((l, x));
                    }
                    Some((l, value))
                })
                .collect()
        })
        .collect())
}

fn signature(m: &VectorMatching, l: &Labels) -> Vec<(String, String)> {
    if m.on {
        l.pairs()
            .iter()
            .filter(|(n, _)| m.labels.contains(n))
            .cloned()
            .collect()
    } else {
        l.pairs()
            .iter()
            .filter(|(n, _)| !m.labels.contains(n))
            .cloned()
            .collect()
    }
}

fn vector_vector(
    op: BinOp,
    bool_: bool,
    m: &VectorMatching,
    lhs: StepVector,
    rhs: StepVector,
) -> Result<StepVector, EvalError> {
    match op {
        BinOp::And => {
            let right: HashSet<_> = rhs.iter().map(|(l, _)| signature(m, l)).collect();
            return Ok(lhs
                .into_iter()
                .filter(|(l, _)| right.contains(&signature(m, l)))
                .collect());
        }
        BinOp::Unless => {
            let right: HashSet<_> = rhs.iter().map(|(l, _)| signature(m, l)).collect();
            return Ok(lhs
                .into_iter()
                .filter(|(l, _)| !right.contains(&signature(m, l)))
                .collect());
        }
        BinOp::Or => {
            let left: HashSet<_> = lhs.iter().map(|(l, _)| signature(m, l)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|(l, _)| !left.contains(&signature(m, l))),
            );
            return Ok(out);
        }
        _ => {}
    }
    // The "one" side is indexed by signature; the "many" side is walked.
    let group = m.group.as_ref();
    let swapped = group.is_some_and(|g| g.side == GroupSide::Right);
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    #[allow(clippy::type_complexity)]
    let mut index: HashMap<Vec<(String, String)>, (Arc<Labels>, f64)> = HashMap::new();
    for (l, x) in one {
        let sig = signature(m, &l);
        if index.insert(sig, (l, x)).is_some() {
            let side = if swapped { "left" } else { "right" };
            return Err(EvalError::BadQuery(format!(
                "found duplicate series for the match group on the {side} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
    }
    let mut seen: HashSet<Vec<(String, String)>> = HashSet::new();
    let mut out = Vec::new();
    for (l, x) in many {
        let sig = signature(m, &l);
        let Some((ol, ox)) = index.get(&sig) else {
            continue;
        };
        if group.is_none() && !seen.insert(sig.clone()) {
            return Err(EvalError::BadQuery(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let (a, c) = if swapped { (*ox, x) } else { (x, *ox) };
        let value = op.apply(a, c);
        let value = if op.is_comparison() {
            let keep = value == 1.0;
            if bool_ {
                if keep {
                    1.0
                } else {
                    0.0
                }
            } else if keep {
                a
            } else {
                continue;
            }
        } else {
            value
        };
        out.push((Arc::new(result_labels(m, &l, ol)), value));
    }
    Ok(out)
}

/// Prometheus' result labels: one-to-one keeps (`on`) or drops (`ignoring`) the matching
/// labels; group modifiers copy the included labels from the "one" side.
fn result_labels(m: &VectorMatching, many: &Labels, one: &Labels) -> Labels {
    match &m.group {
        None => {
            if m.on {
                Labels::from_pairs(
                    many.pairs()
                        .iter()
                        .filter(|(n, _)| m.labels.contains(n))
                        .cloned()
                        .collect(),
                )
            } else {
                Labels::from_pairs(
                    many.pairs()
                        .iter()
                        .filter(|(n, _)| !m.labels.contains(n))
                        .cloned()
                        .collect(),
                )
            }
        }
        Some(g) => {
            let mut pairs: Vec<(String, String)> = many
                .pairs()
                .iter()
                .filter(|(n, _)| !g.include.contains(n))
                .cloned()
                .collect();
            for name in &g.include {
                if let Some(v) = one.get(name) {
                    if !v.is_empty() {
                        pairs.push((name.clone(), v.to_string()));
                    }
                }
            }
            Labels::from_pairs(pairs)
        }
    }
}

/// Formats a sample value as Loki does (Go's `strconv.FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Formats a step timestamp (Unix ns) as Loki's JSON number of seconds with millisecond
/// precision: `1588889221`, `1588889221.5`.
pub fn format_ts(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    let (secs, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 {
        secs.to_string()
    } else {
        format!("{secs}.{}", format!("{frac:03}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::{parse_expr, Expr};

    const S: i64 = 1_000_000_000;

    /// Serves fixed series for every range aggregation.
    struct Fixed(Vec<SampleSeries>);

    impl SampleSource for Fixed {
        fn samples(
            &mut self,
            agg: &RangeAggregationExpr,
            from: i64,
            to: i64,
            _grid: Option<Grid>,
        ) -> Result<Vec<SampleSeries>, EvalError> {
            Ok(self
                .0
                .iter()
                .filter(|s| {
                    crate::logql::labels_match(&agg.range.log.selector.matchers, |n| {
                        s.labels.get(n)
                    })
                })
                .map(|s| SampleSeries {
                    labels: s.labels.clone(),
                    samples: s
                        .samples
                        .iter()
                        .copied()
                        .filter(|(t, _)| *t > from && *t <= to)
                        .collect(),
                    weighted: false,
                })
                .collect())
        }
    }

    fn series(labels: &str, samples: &[(i64, f64)]) -> SampleSeries {
        SampleSeries {
            labels: Labels::parse(labels).unwrap(),
            samples: samples.to_vec(),
            weighted: false,
        }
    }

    fn data() -> Fixed {
        Fixed(vec![
            series(
                r#"{app="a", level="info"}"#,
                &[(10 * S, 1.0), (20 * S, 2.0), (30 * S, 3.0), (60 * S, 4.0)],
            ),
            series(
                r#"{app="a", level="error"}"#,
                &[(15 * S, 10.0), (45 * S, 20.0)],
            ),
            series(r#"{app="b", level="info"}"#, &[(5 * S, 7.0)]),
        ])
    }

    #[track_caller]
    fn check(query: &str, start: i64, end: i64, step: i64, want: &[(&str, &[(i64, f64)])]) {
        let Expr::Sample(e) = parse_expr(query).unwrap() else {
            panic!("not a metric query: {query}")
        };
        let p = EvalParams {
            start: start * S,
            end: end * S,
            step: step * S,
            max_series: 500,
        };
        let got = evaluate(&e, &p, &mut data()).unwrap();
        let got: Vec<(String, Vec<(i64, f64)>)> = match got {
            MetricResult::Matrix(m) => m
                .into_iter()
                .map(|(l, v)| {
                    (
                        l.to_string(),
                        v.into_iter().map(|(t, x)| (t / S, x)).collect(),
                    )
                })
                .collect(),
            MetricResult::Scalar(v) => vec![(
                "scalar".into(),
                v.into_iter().map(|(t, x)| (t / S, x)).collect(),
            )],
        };
        let want: Vec<(String, Vec<(i64, f64)>)> = want
            .iter()
            .map(|(l, v)| (l.to_string(), v.to_vec()))
            .collect();
        assert_eq!(got, want, "{query}");
    }

    #[test]
    fn a_grid_moves_a_sample_to_the_end_of_its_bucket() {
        let g = Grid {
            origin: 100,
            step: 10,
        };
        assert_eq!(g.bucket_end(100), 100);
        assert_eq!(g.bucket_end(101), 110);
        assert_eq!(g.bucket_end(110), 110);
        assert_eq!(g.bucket_end(91), 100);
        assert_eq!(g.bucket_end(90), 90);
        assert_eq!(g.bucket_end(-5), 0);
        assert_eq!(g.bucket_end(i64::MAX), i64::MAX);
        assert_eq!(g.bucket_end(i64::MIN + 3), i64::MIN + 8);
    }

    #[test]
    fn windows_are_left_open_right_closed() {
        check(
            r#"count_over_time({app="a"}[10s])"#,
            10,
            30,
            10,
            &[
                (r#"{app="a", level="error"}"#, &[(20, 1.0)]),
                (
                    r#"{app="a", level="info"}"#,
                    &[(10, 1.0), (20, 1.0), (30, 1.0)],
                ),
            ],
        );
        check(
            r#"count_over_time({app="a"}[30s])"#,
            30,
            30,
            1,
            &[
                (r#"{app="a", level="error"}"#, &[(30, 1.0)]),
                (r#"{app="a", level="info"}"#, &[(30, 3.0)]),
            ],
        );
        check(
            r#"count_over_time({app="a"}[10s] offset 10s)"#,
            30,
            30,
            1,
            &[
                (r#"{app="a", level="error"}"#, &[(30, 1.0)]),
                (r#"{app="a", level="info"}"#, &[(30, 1.0)]),
            ],
        );
    }

    #[test]
    fn aggregations() {
        check(
            r#"sum by (app) (count_over_time({app=~".+"}[1m]))"#,
            60,
            60,
            1,
            &[
                (r#"{app="a"}"#, &[(60, 6.0)]),
                (r#"{app="b"}"#, &[(60, 1.0)]),
            ],
        );
        check(
            r#"sum(rate({app=~".+"}[1m]))"#,
            60,
            60,
            1,
            &[("{}", &[(60, 7.0 / 60.0)])],
        );
        check(
            r#"topk(1, count_over_time({app=~".+"}[1m]))"#,
            60,
            60,
            1,
            &[(r#"{app="a", level="info"}"#, &[(60, 4.0)])],
        );
        check(
            r#"count(count_over_time({app=~".+"}[1m]))"#,
            60,
            60,
            1,
            &[("{}", &[(60, 3.0)])],
        );
        check(
            r#"sum without (level) (count_over_time({app=~".+"}[1m]))"#,
            60,
            60,
            1,
            &[
                (r#"{app="a"}"#, &[(60, 6.0)]),
                (r#"{app="b"}"#, &[(60, 1.0)]),
            ],
        );
    }

    #[test]
    fn binary_operators() {
        check(
            r#"sum by (app) (count_over_time({app=~".+"}[1m])) > 1"#,
            60,
            60,
            1,
            &[(r#"{app="a"}"#, &[(60, 6.0)])],
        );
        check(
            r#"sum by (app) (count_over_time({app=~".+"}[1m])) > bool 1"#,
            60,
            60,
            1,
            &[
                (r#"{app="a"}"#, &[(60, 1.0)]),
                (r#"{app="b"}"#, &[(60, 0.0)]),
            ],
        );
        check(
            r#"sum by (app) (count_over_time({app=~".+"}[1m])) * 2"#,
            60,
            60,
            1,
            &[
                (r#"{app="a"}"#, &[(60, 12.0)]),
                (r#"{app="b"}"#, &[(60, 2.0)]),
            ],
        );
        check(
            r#"sum by (app, level) (count_over_time({app=~".+"}[1m])) / on (app) group_left sum by (app) (count_over_time({app=~".+"}[1m]))"#,
            60,
            60,
            1,
            &[
                (r#"{app="a", level="error"}"#, &[(60, 2.0 / 6.0)]),
                (r#"{app="a", level="info"}"#, &[(60, 4.0 / 6.0)]),
                (r#"{app="b", level="info"}"#, &[(60, 1.0)]),
            ],
        );
        check("vector(1) + vector(1)", 4, 4, 1, &[("{}", &[(4, 2.0)])]);
        check("1 + 2 * 3", 0, 0, 1, &[("scalar", &[(0, 7.0)])]);
    }

    #[test]
    fn absent_and_label_replace() {
        check(
            r#"absent_over_time({app="zzz"}[10s])"#,
            100,
            100,
            1,
            &[(r#"{app="zzz"}"#, &[(100, 1.0)])],
        );
        check(
            r#"label_replace(sum by (app) (count_over_time({app=~".+"}[1m])), "svc", "s-$1", "app", "(.*)")"#,
            60,
            60,
            1,
            &[
                (r#"{app="a", svc="s-a"}"#, &[(60, 6.0)]),
                (r#"{app="b", svc="s-b"}"#, &[(60, 1.0)]),
            ],
        );
    }

    /// The selection in [`quantile`] gives what sorting gives, bit for bit.
    #[test]
    fn quantile_selects_the_sorted_ranks() {
        let sorted = |q: f64, mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            let rank = q * (v.len() as f64 - 1.0);
            let lower = rank.floor().max(0.0) as usize;
            let upper = (lower + 1).min(v.len() - 1);
            let weight = rank - rank.floor();
            v[lower] * (1.0 - weight) + v[upper] * weight
        };
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let specials = [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1.5];
        for len in 1..40 {
            let v: Vec<f64> = (0..len)
                .map(|_| match next() % 4 {
                    0 => specials[(next() % 6) as usize],
                    _ => (next() % 100) as f64 / 8.0,
                })
                .collect();
            for q in [0.0, 0.1, 0.5, 0.95, 0.99, 1.0] {
                let (a, b) = (quantile(q, v.clone()), sorted(q, v.clone()));
                assert_eq!(a.to_bits(), b.to_bits(), "{q} of {v:?}");
            }
        }
    }

    #[test]
    fn quantiles_and_formatting() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.95, vec![1.0, 2.0, 3.0, 4.0, 5.0]), 4.8);
        assert_eq!(format_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_value(2.0), "2");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_ts(1_588_889_221_500_000_000), "1588889221.5");
        assert_eq!(format_ts(1_588_889_221_000_000_000), "1588889221");
    }
}
