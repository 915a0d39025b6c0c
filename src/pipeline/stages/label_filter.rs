//! Label filters: `| level="error"`, `| status >= 500`, `| latency > 250ms`,
//! `| size > 5KB`, `| addr = ip("10.0.0.0/8")`, combined with `and`/`,` and `or`.
//! Loki's rules: a missing label fails a numeric, duration, bytes or ip filter but reads as
//! `""` for a string filter; a value that does not convert sets `__error__=LabelFilterErr`
//! (when no error is set yet) and *keeps* the entry; `or` stops at a true left side while
//! `and` always evaluates both sides; `__error__` is matched against the current error.

use crate::logql::{CmpOp, LabelFilterExpr, MatchOp, Matcher};

use super::super::labels_builder::{LabelsBuilder, ERROR_LABEL};
use super::ip::IpFilter;
use super::regex::RegexFilter;
use crate::logql::go;

pub const ERR_LABEL_FILTER: &str = "LabelFilterErr";

/// How a string label filter tests its value.
#[derive(Debug, Clone)]
pub enum StringTest {
    Eq(String),
    Neq(String),
    Re(RegexFilter),
    Nre(RegexFilter),
}

/// A compiled label filter.
#[derive(Debug, Clone)]
pub enum LabelFilter {
    /// Always true (`name=~".*"` and the like).
    Noop,
    String {
        name: String,
        test: StringTest,
    },
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    Duration {
        name: String,
        op: CmpOp,
        nanos: i64,
    },
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
    Ip {
        name: String,
        negated: bool,
        filter: Option<IpFilter>,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

/// `a op b`, as a numeric, duration or bytes label filter compares.
pub fn cmp<T: PartialOrd>(op: CmpOp, a: T, b: T) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Neq => a != b,
        CmpOp::Gt => a > b,
        CmpOp::Gte => a >= b,
        CmpOp::Lt => a < b,
        CmpOp::Lte => a <= b,
    }
}

impl LabelFilter {
    /// Compiles a filter; `top_level` reports an invalid `ip()` pattern as an error (Loki
    /// checks it only when the ip filter is the whole stage).
    pub fn new(expr: &LabelFilterExpr, top_level: bool) -> Result<LabelFilter, String> {
        Ok(match expr {
            LabelFilterExpr::String(m) => string_filter(m)?,
            LabelFilterExpr::Number { name, op, value } => LabelFilter::Number {
                name: name.clone(),
                op: *op,
                value: *value,
            },
            LabelFilterExpr::Duration { name, op, value } => LabelFilter::Duration {
                name: name.clone(),
                op: *op,
                nanos: value.as_nanos(),
            },
            LabelFilterExpr::Bytes { name, op, value } => LabelFilter::Bytes {
                name: name.clone(),
                op: *op,
                value: *value,
            },
            LabelFilterExpr::Ip {
                name,
                negated,
                pattern,
            } => {
                let filter = match IpFilter::new(pattern) {
                    Ok(f) => Some(f),
                    Err(e) if top_level => return Err(e),
                    Err(_) => None,
                };
                LabelFilter::Ip {
                    name: name.clone(),
                    negated: *negated,
                    filter,
                }
            }
            LabelFilterExpr::And(a, b) => LabelFilter::And(
                Box::new(LabelFilter::new(a, false)?),
                Box::new(LabelFilter::new(b, false)?),
            ),
            LabelFilterExpr::Or(a, b) => LabelFilter::Or(
                Box::new(LabelFilter::new(a, false)?),
                Box::new(LabelFilter::new(b, false)?),
            ),
        })
    }

    /// Names of the labels the filter reads.
    pub fn required_labels(&self, out: &mut Vec<String>) {
        match self {
            LabelFilter::Noop => {}
            LabelFilter::String { name, .. }
            | LabelFilter::Number { name, .. }
            | LabelFilter::Duration { name, .. }
            | LabelFilter::Bytes { name, .. }
            | LabelFilter::Ip { name, .. } => out.push(name.clone()),
            LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
                a.required_labels(out);
                b.required_labels(out);
            }
        }
    }

    /// The `name="value"` conditions the entry must meet to pass (those outside an `or`).
    pub fn required_equalities(&self, out: &mut Vec<(String, String)>) {
        match self {
            LabelFilter::String {
                name,
                test: StringTest::Eq(v),
            } => out.push((name.clone(), v.clone())),
            LabelFilter::And(a, b) => {
                a.required_equalities(out);
                b.required_equalities(out);
            }
            _ => {}
        }
    }

    pub fn is_noop(&self) -> bool {
        matches!(self, LabelFilter::Noop)
    }

    /// Whether the entry passes; may set `__error__`.
    pub fn process(&self, lbs: &mut LabelsBuilder) -> bool {
        match self {
            LabelFilter::Noop => true,
            LabelFilter::And(a, b) => {
                let l = a.process(lbs);
                let r = b.process(lbs);
                l && r
            }
            LabelFilter::Or(a, b) => a.process(lbs) || b.process(lbs),
            LabelFilter::String { name, test } => {
                let v = if name == ERROR_LABEL {
                    lbs.err()
                } else {
                    lbs.get(name).unwrap_or("")
                };
                match test {
                    StringTest::Eq(s) => v == s,
                    StringTest::Neq(s) => v != s,
                    StringTest::Re(f) => f.matches(v.as_bytes()),
                    StringTest::Nre(f) => !f.matches(v.as_bytes()),
                }
            }
            LabelFilter::Number { name, op, value } => {
                let Some(v) = lbs.get(name) else {
                    return false;
                };
                match go::parse_float(v) {
                    (_, Some(e)) => set_filter_err(lbs, &e),
                    (v, None) => cmp(*op, v, *value),
                }
            }
            LabelFilter::Duration { name, op, nanos } => {
                let Some(v) = lbs.get(name) else {
                    return false;
                };
                match go::parse_duration(v) {
                    Err(e) => set_filter_err(lbs, &e),
                    Ok(d) => cmp(*op, d, *nanos),
                }
            }
            LabelFilter::Bytes { name, op, value } => {
                let Some(v) = lbs.get(name) else {
                    return false;
                };
                match go::parse_bytes(v) {
                    Err(e) => set_filter_err(lbs, &e),
                    Ok(b) => cmp(*op, b, *value),
                }
            }
            LabelFilter::Ip {
                name,
                negated,
                filter,
            } => {
                if lbs.has_err() {
                    return true;
                }
                let Some(v) = lbs.get(name) else {
                    return false;
                };
                let Some(f) = filter else {
                    return false;
                };
                f.matches(v.as_bytes()) != *negated
            }
        }
    }
}

fn set_filter_err(lbs: &mut LabelsBuilder, details: &str) -> bool {
    if !lbs.has_err() {
        lbs.set_err(ERR_LABEL_FILTER);
        lbs.set_err_details(details);
    }
    true
}

fn string_filter(m: &Matcher) -> Result<LabelFilter, String> {
    let name = m.name.clone();
    let test = match m.op {
        MatchOp::Eq => StringTest::Eq(m.value.clone()),
        MatchOp::Neq => StringTest::Neq(m.value.clone()),
        MatchOp::Re | MatchOp::Nre => {
            let f = RegexFilter::new(&m.value, true).map_err(|e| e.to_string())?;
            if m.op == MatchOp::Re {
                if matches!(f, RegexFilter::Simple(super::regex::Simple::True)) {
                    return Ok(LabelFilter::Noop);
                }
                StringTest::Re(f)
            } else {
                StringTest::Nre(f)
            }
        }
    };
    Ok(LabelFilter::String { name, test })
}
