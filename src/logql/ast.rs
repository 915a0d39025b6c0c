//! The LogQL syntax tree, in Loki's vocabulary: a query is an [`Expr`], either a log query
//! ([`LogExpr`]: a [`LogSelectorExpr`] and a pipeline of [`Stage`]s) or a metric query
//! ([`SampleExpr`]). The parser builds these nodes, the printer turns them back into
//! canonical LogQL, and the query engine walks them; nothing here evaluates anything except
//! [`Matcher::matches`], which the storage engine needs to pick streams.
//!
//! Equality is structural on the source text: two matchers are equal when their name,
//! operator and value are, whatever the compiled regex.

use std::fmt;

use regex::Regex;

use super::duration::Duration;
use super::error::ParseError;

/// A whole query.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Log(LogExpr),
    Sample(SampleExpr),
}

/// A label matcher operator: `=`, `!=`, `=~`, `!~`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Eq,
    Neq,
    Re,
    Nre,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// One label matcher, `name op "value"`. Regex matchers are fully anchored, as in
/// Prometheus: `app=~"api"` matches `api` but not `api-gateway`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

/// Whether all matchers hold for a label set whose values `get` looks up (an absent label is
/// the empty string).
pub fn labels_match<'a>(matchers: &[Matcher], get: impl Fn(&str) -> Option<&'a str>) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(get(&m.name).unwrap_or("")))
}

impl Matcher {
    /// Builds a matcher, compiling `value` as an anchored regex for `=~` and `!~`.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, ParseError> {
        let value = value.into();
        let re = match op {
            MatchOp::Eq | MatchOp::Neq => None,
            MatchOp::Re | MatchOp::Nre => Some(
                compile_anchored(&value)
                    .map_err(|e| ParseError::semantic(format!("error parsing regexp: {e}")))?,
            ),
        };
        Ok(Matcher {
            name: name.into(),
            op,
            value,
            re,
        })
    }

    /// Whether a label value satisfies this matcher; an absent label is the empty string.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Neq, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            (_, None) => panic!("bug: regex matcher {self} without a compiled regex"),
        }
    }

    /// Whether this matcher selects streams that lack the label (`app=""`, `app=~".*"`).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The compiled, anchored regex of a `=~` or `!~` matcher.
    pub fn regex(&self) -> Option<&Regex> {
        self.re.as_ref()
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// Compiles a label regex with Prometheus semantics: anchored at both ends, `.` matching
/// newlines (`^(?s:re)$`).
pub fn compile_anchored(re: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?s:{re})$")).map_err(|e| short_regex_error(&e))
}

/// The last line of a regex error (`unclosed group`), without the caret diagram.
pub(super) fn short_regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or("").trim();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// The stream selector `{name="value", ...}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogSelectorExpr {
    pub matchers: Vec<Matcher>,
}

/// A log query: a stream selector and the pipeline applied to each entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LogExpr {
    pub selector: LogSelectorExpr,
    pub pipeline: Vec<Stage>,
}

/// One step of a log pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    LineFilter(LineFilterExpr),
    LabelParser(LabelParserExpr),
    LabelFilter(LabelFilterExpr),
    LineFormat(LineFormatExpr),
    LabelFormat(LabelFormatExpr),
    DropLabels(DropLabelsExpr),
    KeepLabels(KeepLabelsExpr),
    Decolorize,
}

/// A line filter operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineFilterOp {
    /// `|=` the line contains the string.
    Contains,
    /// `!=` the line does not contain the string.
    NotContains,
    /// `|~` the line matches the (unanchored) regex.
    Match,
    /// `!~` the line does not match the regex.
    NotMatch,
    /// `|>` the line matches the pattern (`<_> error <_>`).
    Pattern,
    /// `!>` the line does not match the pattern.
    NotPattern,
}

impl LineFilterOp {
    pub fn as_str(self) -> &'static str {
        match self {
            LineFilterOp::Contains => "|=",
            LineFilterOp::NotContains => "!=",
            LineFilterOp::Match => "|~",
            LineFilterOp::NotMatch => "!~",
            LineFilterOp::Pattern => "|>",
            LineFilterOp::NotPattern => "!>",
        }
    }

    /// Whether the operator excludes matching lines (`!=`, `!~`, `!>`).
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            LineFilterOp::NotContains | LineFilterOp::NotMatch | LineFilterOp::NotPattern
        )
    }
}

/// One operand of a line filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineFilterValue {
    /// A string, regex or pattern, depending on the operator.
    Literal(String),
    /// `ip("10.0.0.0/8")`: an address, range or CIDR matched against IPs in the line.
    Ip(String),
}

/// `|= "a" or "b"`: the operator applies to every alternative. For a positive operator the
/// line must match one of them; for a negative one it must match none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFilterExpr {
    pub op: LineFilterOp,
    /// The `or` alternatives, never empty.
    pub values: Vec<LineFilterValue>,
}

/// `name="expression"` in `| json` and `| logfmt`; a bare `name` extracts `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelExtractionExpr {
    pub identifier: String,
    pub expression: String,
}

/// A parser stage that extracts labels from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelParserExpr {
    /// `| json` (all fields, flattened) or `| json a="x.y", b` (only those).
    Json {
        expressions: Vec<LabelExtractionExpr>,
    },
    /// `| logfmt [--strict] [--keep-empty] [a="x", b]`.
    Logfmt {
        strict: bool,
        keep_empty: bool,
        expressions: Vec<LabelExtractionExpr>,
    },
    /// `| regexp "(?P<name>re)"`.
    Regexp(String),
    /// `| pattern "<ip> - <_>"`.
    Pattern(String),
    /// `| unpack`.
    Unpack,
}

/// A comparison in a numeric, duration or bytes label filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Neq => "!=",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
        }
    }
}

/// `| level="error" and (status >= 500 or latency > 250ms)`.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelFilterExpr {
    /// `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
    String(Matcher),
    /// `name > 1.5`; the label value is parsed as a float.
    Number { name: String, op: CmpOp, value: f64 },
    /// `name > 250ms`; the label value is parsed as a Go duration.
    Duration {
        name: String,
        op: CmpOp,
        value: Duration,
    },
    /// `name > 20MB`; the label value is parsed as a byte size.
    Bytes { name: String, op: CmpOp, value: u64 },
    /// `name = ip("10.0.0.0/8")` or `name != ip(...)`.
    Ip {
        name: String,
        negated: bool,
        pattern: String,
    },
    /// `a and b`, `a, b` and `a b`.
    And(Box<LabelFilterExpr>, Box<LabelFilterExpr>),
    /// `a or b`.
    Or(Box<LabelFilterExpr>, Box<LabelFilterExpr>),
}

/// `| line_format "{{.level}} {{.msg}}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFormatExpr {
    pub template: String,
}

/// One assignment of `| label_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelFmt {
    /// `dst=src` renames a label.
    Rename { dst: String, src: String },
    /// `dst="{{.a}}-{{.b}}"` sets a label from a template.
    Template { dst: String, template: String },
}

/// `| label_format a=b, c="{{.x}}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFormatExpr {
    pub formats: Vec<LabelFmt>,
}

/// A label named by `drop` or `keep`: a bare name, or a matcher on its value.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelRef {
    Name(String),
    Matcher(Matcher),
}

/// `| drop a, b="v"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DropLabelsExpr {
    pub labels: Vec<LabelRef>,
}

/// `| keep a, b="v"`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepLabelsExpr {
    pub labels: Vec<LabelRef>,
}

/// The conversion of `| unwrap duration(x)` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnwrapConversion {
    /// `bytes(x)`: a byte size such as `5KB`.
    Bytes,
    /// `duration(x)`: a Go duration, as seconds.
    Duration,
    /// `duration_seconds(x)`: the same as `duration`.
    DurationSeconds,
}

impl UnwrapConversion {
    pub fn as_str(self) -> &'static str {
        match self {
            UnwrapConversion::Bytes => "bytes",
            UnwrapConversion::Duration => "duration",
            UnwrapConversion::DurationSeconds => "duration_seconds",
        }
    }
}

/// `| unwrap [conv(]label[)] | post_filter...`: the label whose value becomes the sample.
#[derive(Debug, Clone, PartialEq)]
pub struct UnwrapExpr {
    pub identifier: String,
    pub conversion: Option<UnwrapConversion>,
    /// Label filters applied after unwrapping, typically `| __error__=""`.
    pub post_filters: Vec<LabelFilterExpr>,
}

/// The log range of a range aggregation: `{...} | pipeline | unwrap x [5m] offset 1h`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRangeExpr {
    pub log: LogExpr,
    pub unwrap: Option<UnwrapExpr>,
    pub range: Duration,
    /// Zero when there is no `offset`.
    pub offset: Duration,
}

/// A range aggregation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeOp {
    CountOverTime,
    Rate,
    RateCounter,
    BytesOverTime,
    BytesRate,
    AvgOverTime,
    SumOverTime,
    MinOverTime,
    MaxOverTime,
    StdvarOverTime,
    StddevOverTime,
    QuantileOverTime,
    FirstOverTime,
    LastOverTime,
    AbsentOverTime,
}

impl RangeOp {
    pub const ALL: [RangeOp; 15] = [
        RangeOp::CountOverTime,
        RangeOp::Rate,
        RangeOp::RateCounter,
        RangeOp::BytesOverTime,
        RangeOp::BytesRate,
        RangeOp::AvgOverTime,
        RangeOp::SumOverTime,
        RangeOp::MinOverTime,
        RangeOp::MaxOverTime,
        RangeOp::StdvarOverTime,
        RangeOp::StddevOverTime,
        RangeOp::QuantileOverTime,
        RangeOp::FirstOverTime,
        RangeOp::LastOverTime,
        RangeOp::AbsentOverTime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::Rate => "rate",
            RangeOp::RateCounter => "rate_counter",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

/// `quantile_over_time(0.99, {...} | unwrap x [5m]) by (app)`.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeAggregationExpr {
    pub op: RangeOp,
    /// The quantile of `quantile_over_time`.
    pub param: Option<f64>,
    pub range: LogRangeExpr,
    pub grouping: Option<Grouping>,
}

/// A vector aggregation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
    ApproxTopk,
}

impl VectorOp {
    pub const ALL: [VectorOp; 12] = [
        VectorOp::Sum,
        VectorOp::Avg,
        VectorOp::Min,
        VectorOp::Max,
        VectorOp::Count,
        VectorOp::Stddev,
        VectorOp::Stdvar,
        VectorOp::Topk,
        VectorOp::Bottomk,
        VectorOp::Sort,
        VectorOp::SortDesc,
        VectorOp::ApproxTopk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VectorOp::Sum => "sum",
            VectorOp::Avg => "avg",
            VectorOp::Min => "min",
            VectorOp::Max => "max",
            VectorOp::Count => "count",
            VectorOp::Stddev => "stddev",
            VectorOp::Stdvar => "stdvar",
            VectorOp::Topk => "topk",
            VectorOp::Bottomk => "bottomk",
            VectorOp::Sort => "sort",
            VectorOp::SortDesc => "sort_desc",
            VectorOp::ApproxTopk => "approx_topk",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// Whether the operator takes a leading `k` parameter.
    pub fn takes_param(self) -> bool {
        matches!(
            self,
            VectorOp::Topk | VectorOp::Bottomk | VectorOp::ApproxTopk
        )
    }
}

/// `sum by (app) (rate(...))`, `topk(5, ...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorAggregationExpr {
    pub op: VectorOp,
    /// The `k` of `topk`, `bottomk` and `approx_topk`.
    pub param: Option<i64>,
    pub grouping: Option<Grouping>,
    pub inner: Box<SampleExpr>,
}

/// A binary operator, from loosest to tightest binding: `or`; `and unless`; comparisons;
/// `+ -`; `* / %`; `^`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    CmpEq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Unless => "unless",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::CmpEq => "==",
            BinOp::Neq => "!=",
            BinOp::Gt => ">",
            BinOp::Gte => ">=",
            BinOp::Lt => "<",
            BinOp::Lte => "<=",
        }
    }

    /// Binding strength, 1 (loosest) to 6 (tightest).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::CmpEq | BinOp::Neq | BinOp::Gt | BinOp::Gte | BinOp::Lt | BinOp::Lte => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn is_right_assoc(self) -> bool {
        self == BinOp::Pow
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// `and`, `or`, `unless`.
    pub fn is_set_operator(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }

    /// Applies the operator to two scalars, as Loki folds `1 + 1` at parse time: division
    /// and modulo by zero give NaN, comparisons give 1 or 0.
    pub fn apply(self, l: f64, r: f64) -> f64 {
        let truth = |b: bool| if b { 1.0 } else { 0.0 };
        match self {
            BinOp::Add => l + r,
            BinOp::Sub => l - r,
            BinOp::Mul => l * r,
            BinOp::Div if r == 0.0 => f64::NAN,
            BinOp::Div => l / r,
            BinOp::Mod if r == 0.0 => f64::NAN,
            BinOp::Mod => l % r,
            BinOp::Pow => l.powf(r),
            BinOp::CmpEq => truth(l == r),
            BinOp::Neq => truth(l != r),
            BinOp::Gt => truth(l > r),
            BinOp::Gte => truth(l >= r),
            BinOp::Lt => truth(l < r),
            BinOp::Lte => truth(l <= r),
            BinOp::Or | BinOp::And | BinOp::Unless => {
                panic!("bug: set operator {} applied to scalars", self.as_str())
            }
        }
    }
}

/// `group_left(a)` / `group_right(a)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupSide {
    Left,
    Right,
}

/// The many-to-one or one-to-many part of vector matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupModifier {
    pub side: GroupSide,
    /// Labels copied from the "one" side.
    pub include: Vec<String>,
}

/// `on (a, b)` or `ignoring (a, b)`, with an optional group modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorMatching {
    pub on: bool,
    pub labels: Vec<String>,
    pub group: Option<GroupModifier>,
}

/// The modifiers between a binary operator and its right operand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BinOpModifier {
    /// `bool`: comparisons return 0 or 1 instead of filtering.
    pub return_bool: bool,
    pub matching: Option<VectorMatching>,
}

/// `lhs op [bool] [on(...) group_left(...)] rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinOpExpr {
    pub op: BinOp,
    pub lhs: Box<SampleExpr>,
    pub rhs: Box<SampleExpr>,
    pub modifier: BinOpModifier,
}

/// A scalar literal: `2`, `-1.5`, `1e3`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiteralExpr {
    pub value: f64,
}

/// `vector(1)`: one sample with no labels at every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VectorExpr {
    pub value: f64,
}

/// `label_replace(v, "dst", "replacement", "src", "regex")`; the regex is anchored.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelReplaceExpr {
    pub inner: Box<SampleExpr>,
    pub dst: String,
    pub replacement: String,
    pub src: String,
    pub regex: String,
}

/// A metric query.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleExpr {
    RangeAggregation(RangeAggregationExpr),
    VectorAggregation(VectorAggregationExpr),
    BinOp(BinOpExpr),
    Literal(LiteralExpr),
    Vector(VectorExpr),
    LabelReplace(LabelReplaceExpr),
}

impl SampleExpr {
    /// Every log range the query reads, left to right.
    pub fn log_ranges(&self) -> Vec<&LogRangeExpr> {
        let mut out = Vec::new();
        self.collect_ranges(&mut out);
        out
    }

    fn collect_ranges<'a>(&'a self, out: &mut Vec<&'a LogRangeExpr>) {
        match self {
            SampleExpr::RangeAggregation(e) => out.push(&e.range),
            SampleExpr::VectorAggregation(e) => e.inner.collect_ranges(out),
            SampleExpr::BinOp(e) => {
                e.lhs.collect_ranges(out);
                e.rhs.collect_ranges(out);
            }
            SampleExpr::LabelReplace(e) => e.inner.collect_ranges(out),
            SampleExpr::Literal(_) | SampleExpr::Vector(_) => {}
        }
    }
}

impl Expr {
    /// Every stream selector of the query, left to right.
    pub fn selectors(&self) -> Vec<&LogSelectorExpr> {
        match self {
            Expr::Log(log) => vec![&log.selector],
            Expr::Sample(sample) => sample
                .log_ranges()
                .into_iter()
                .map(|r| &r.log.selector)
                .collect(),
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
