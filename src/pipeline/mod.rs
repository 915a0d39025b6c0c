//! The log pipeline: the stages after a stream selector (`|= "x" | json | level="error"`),
//! run on each entry of the selected streams. [`Pipeline`] compiles the `logql` stages once
//! per query and processes entries one by one against a [`LabelsBuilder`] (which the engine
//! prepares per stream and per entry); it returns the possibly rewritten line, or `None`
//! when the entry is filtered out. [`SampleExtractor`] adds what metric queries need: the
//! sample value (1, the line size, or an `unwrap`ped label) and the series labels.
//!
//! Like Loki, line filters are moved ahead of the stages that cannot change the line
//! (parsers other than `unpack`, `label_format`, `drop`, `keep`, `decolorize`), but never
//! past a label filter, `line_format` or `unpack`. The engine can run the leading filters
//! alone on raw bytes with [`Pipeline::filter_line`] before paying for anything else.
//!
//! Parser hints (Loki's): when a metric query reads only some labels — its grouping, the
//! unwrapped label, the labels of later filters and templates — the `json` and `logfmt`
//! stages store only those ([`Pipeline::with_hints`]). The answer stays the one of a full
//! extraction: an entry that ends with `__error__` reports all its labels, so
//! [`SampleExtractor`] runs such an entry again without hints.

pub mod fields;
pub mod labels_builder;
pub mod stages;

use std::borrow::Cow;

use crate::logql::{
    Grouping, LabelParserExpr, LabelRef, LineFilterExpr, LineFilterOp, LineFilterValue, Stage,
    UnwrapConversion, UnwrapExpr,
};

use self::labels_builder::{LabelsBuilder, DUPLICATE_SUFFIX};
use self::stages::format::{self, LabelFormat, LineFormat};
use self::stages::ip::IpFilter;
use self::stages::json::{JsonExpressionParser, JsonParser, UnpackParser};
use self::stages::label_filter::LabelFilter;
use self::stages::logfmt::{LogfmtExpressionParser, LogfmtParser};
use self::stages::pattern::Pattern;
use self::stages::regex::RegexFilter;
use self::stages::{sanitize_label_key, ParserHints};
use crate::logql::go;

/// `__error__` of an `unwrap` whose label does not convert.
pub const ERR_SAMPLE_EXTRACTION: &str = "SampleExtractionErr";

/// Why a pipeline could not be built; Loki rejects these queries with status 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid regex {regex:?}: {message}")]
    Regex { regex: String, message: String },
    #[error("invalid pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("{0}")]
    Ip(String),
    #[error("ip: invalid operation: only |= and != take ip()")]
    IpOperation,
    #[error("{0}")]
    Template(String),
    #[error("{0}")]
    Parser(String),
}

/// One test of a line filter.
#[derive(Debug, Clone)]
enum LineTest {
    Contains(Box<memchr::memmem::Finder<'static>>),
    Regex(Box<RegexFilter>),
    Pattern(Pattern),
    Ip(IpFilter),
}

impl LineTest {
    fn new(op: LineFilterOp, value: &str) -> Result<Option<LineTest>, PipelineError> {
        Ok(Some(match op {
            LineFilterOp::Contains | LineFilterOp::NotContains => {
                if value.is_empty() {
                    return Ok(None);
                }
                LineTest::Contains(Box::new(
                    memchr::memmem::Finder::new(value.as_bytes()).into_owned(),
                ))
            }
            LineFilterOp::Match | LineFilterOp::NotMatch => {
                let re = RegexFilter::new(value, false).map_err(|e| PipelineError::Regex {
                    regex: value.to_string(),
                    message: e.to_string(),
                })?;
                if matches!(re, RegexFilter::Simple(self::stages::regex::Simple::True)) {
                    return Ok(None);
                }
                LineTest::Regex(Box::new(re))
            }
            LineFilterOp::Pattern | LineFilterOp::NotPattern => {
                LineTest::Pattern(Pattern::for_line_filter(value).map_err(|message| {
                    PipelineError::Pattern {
                        pattern: value.to_string(),
                        message,
                    }
                })?)
            }
        }))
    }

    fn matches(&self, line: &[u8]) -> bool {
        match self {
            LineTest::Contains(f) => f.find(line).is_some(),
            LineTest::Regex(r) => r.matches(line),
            LineTest::Pattern(p) => p.test(line),
            LineTest::Ip(f) => f.matches(line),
        }
    }
}

/// A line filter stage: the line must pass every element.
#[derive(Debug, Clone)]
enum LineCheck {
    /// Passes when a test matches (`None`: the always-true test) — or, negated, when it
    /// does not.
    One {
        test: Option<LineTest>,
        negated: bool,
    },
    /// `|= "a" or "b"`: passes when any test matches; `None` matches every line.
    Any(Vec<Option<LineTest>>),
}

impl LineCheck {
    fn matches(&self, line: &[u8]) -> bool {
        match self {
            LineCheck::One { test, negated } => {
                let m = test.as_ref().is_none_or(|t| t.matches(line));
                m != *negated
            }
            LineCheck::Any(tests) => tests
                .iter()
                .any(|t| t.as_ref().is_none_or(|t| t.matches(line))),
        }
    }

    fn is_true(&self) -> bool {
        match self {
            LineCheck::One { test, negated } => test.is_none() && !negated,
            LineCheck::Any(tests) => tests.iter().any(Option::is_none),
        }
    }
}

fn compile_line_filter(f: &LineFilterExpr, out: &mut Vec<LineCheck>) -> Result<(), PipelineError> {
    let negated = f.op.is_negative();
    if f.values.len() > 1 && !negated {
        // Loki builds `or` chains with plain filters: `ip("...")` is taken literally there.
        let mut tests = Vec::new();
        for v in &f.values {
            let text = match v {
                LineFilterValue::Literal(s) | LineFilterValue::Ip(s) => s,
            };
            tests.push(LineTest::new(f.op, text)?);
        }
        out.push(LineCheck::Any(tests));
        return Ok(());
    }
    for v in &f.values {
        let test = match v {
            LineFilterValue::Literal(s) => LineTest::new(f.op, s)?,
            LineFilterValue::Ip(p) => {
                if !matches!(f.op, LineFilterOp::Contains | LineFilterOp::NotContains) {
                    return Err(PipelineError::IpOperation);
                }
                Some(LineTest::Ip(IpFilter::new(p).map_err(PipelineError::Ip)?))
            }
        };
        let check = LineCheck::One { test, negated };
        if !check.is_true() {
            out.push(check);
        }
    }
    Ok(())
}

#[derive(Debug)]
enum StageImpl {
    LineFilter(LineCheck),
    /// Put before a parser: drops the entries to which it cannot give the values the label
    /// filters after it require.
    Requires(Required),
    Json(JsonParser),
    JsonExpr(JsonExpressionParser),
    Logfmt(LogfmtParser),
    LogfmtExpr(LogfmtExpressionParser),
    Regexp {
        re: regex::bytes::Regex,
        names: Vec<(usize, String)>,
    },
    Pattern(Pattern),
    Unpack(UnpackParser),
    LabelFilter(LabelFilter),
    LineFormat(LineFormat),
    LabelFormat(LabelFormat),
    Drop(Vec<LabelRef>),
    Keep(Vec<LabelRef>, Vec<String>),
    Decolorize,
}

/// What a stage did to the entry.
enum Outcome {
    Keep,
    Drop,
    /// The new line is in the output buffer.
    Rewritten,
}

fn is_label_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn extraction_pairs(exprs: &[crate::logql::LabelExtractionExpr]) -> Vec<(String, String)> {
    exprs
        .iter()
        .map(|e| (e.identifier.clone(), e.expression.clone()))
        .collect()
}

fn compile_parser(p: &LabelParserExpr) -> Result<StageImpl, PipelineError> {
    Ok(match p {
        LabelParserExpr::Json { expressions } if expressions.is_empty() => {
            StageImpl::Json(JsonParser::new(None))
        }
        LabelParserExpr::Json { expressions } => StageImpl::JsonExpr(
            JsonExpressionParser::new(&extraction_pairs(expressions))
                .map_err(PipelineError::Parser)?,
        ),
        LabelParserExpr::Logfmt {
            strict,
            keep_empty,
            expressions,
        } if expressions.is_empty() => {
            StageImpl::Logfmt(LogfmtParser::new(*strict, *keep_empty, None))
        }
        LabelParserExpr::Logfmt {
            strict,
            expressions,
            ..
        } => StageImpl::LogfmtExpr(
            LogfmtExpressionParser::new(&extraction_pairs(expressions), *strict)
                .map_err(PipelineError::Parser)?,
        ),
        LabelParserExpr::Regexp(text) => {
            let re = regex::bytes::Regex::new(&self::stages::regex::to_rust_syntax(text)).map_err(
                |e| PipelineError::Regex {
                    regex: text.clone(),
                    message: e.to_string(),
                },
            )?;
            let mut names: Vec<(usize, String)> = Vec::new();
            for (i, name) in re.capture_names().enumerate() {
                let Some(name) = name else { continue };
                if !is_label_name(name) {
                    return Err(PipelineError::Parser(format!(
                        "invalid extracted label name '{name}'"
                    )));
                }
                if names.iter().any(|(_, n)| n == name) {
                    return Err(PipelineError::Parser(format!(
                        "duplicate extracted label name '{name}'"
                    )));
                }
                names.push((i, name.to_string()));
            }
            if names.is_empty() {
                return Err(PipelineError::Parser(
                    "at least one named capture must be supplied".into(),
                ));
            }
            StageImpl::Regexp { re, names }
        }
        LabelParserExpr::Pattern(text) => {
            let p = Pattern::new(text).map_err(|message| PipelineError::Pattern {
                pattern: text.clone(),
                message,
            })?;
            StageImpl::Pattern(p)
        }
        LabelParserExpr::Unpack => StageImpl::Unpack(UnpackParser::default()),
    })
}

/// Loki's `reorderStages`: line filters move to the front of their group; a group ends at
/// a label filter (before it), `line_format` or `unpack` (after them).
fn reorder(stages: &[Stage]) -> Vec<&Stage> {
    let mut result: Vec<&Stage> = Vec::with_capacity(stages.len());
    let mut filters: Vec<&Stage> = Vec::new();
    let mut others: Vec<&Stage> = Vec::new();
    fn flush<'s>(
        result: &mut Vec<&'s Stage>,
        filters: &mut Vec<&'s Stage>,
        others: &mut Vec<&'s Stage>,
    ) {
        result.append(filters);
        result.append(others);
    }
    for s in stages {
        match s {
            Stage::LabelFilter(_) => {
                flush(&mut result, &mut filters, &mut others);
                result.push(s);
            }
            Stage::LineFilter(_) => filters.push(s),
            Stage::LineFormat(_) => {
                others.push(s);
                flush(&mut result, &mut filters, &mut others);
            }
            Stage::LabelParser(LabelParserExpr::Unpack) => {
                others.push(s);
                flush(&mut result, &mut filters, &mut others);
            }
            _ => others.push(s),
        }
    }
    flush(&mut result, &mut filters, &mut others);
    result
}

/// The values that label filters after a `json` or `logfmt` stage require of labels
/// (`| json | level="error"`). Those stages take values from the line: unescaped, and with
/// invalid UTF-8 as spaces or U+FFFD. So for a value without either, a line that holds
/// neither the value nor a backslash cannot give it, and the entry passes only if the
/// label has the value already.
#[derive(Debug)]
struct Required {
    values: Vec<RequiredValue>,
    /// Before `json`: a line that does not open an object gives no label at all.
    json: bool,
    /// Whether each label has its value in the stream `.0`, for the entries whose labels
    /// are the stream's.
    stream: Option<(u64, Vec<bool>)>,
}

impl Required {
    fn new(values: Vec<RequiredValue>, json: bool) -> Self {
        Required {
            values,
            json,
            stream: None,
        }
    }

    /// Whether the entry may pass the label filters after the parser.
    fn possible(&mut self, line: &[u8], lbs: &LabelsBuilder) -> bool {
        if self.json {
            let first = line
                .iter()
                .find(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'));
            if first != Some(&b'{') {
                return (0..self.values.len()).all(|i| self.has(i, lbs));
            }
        }
        (0..self.values.len())
            .all(|i| self.values[i].finder.find(line).is_some() || self.has(i, lbs))
            || memchr::memchr(b'\\', line).is_some()
    }

    /// Whether label `i` has its value already.
    fn has(&mut self, i: usize, lbs: &LabelsBuilder) -> bool {
        let get = |r: &RequiredValue| lbs.get(&r.name) == Some(r.value.as_str());
        if !lbs.is_unchanged() {
            return get(&self.values[i]);
        }
        let id = lbs.stream_id();
        if self.stream.as_ref().is_none_or(|(s, _)| *s != id) {
            self.stream = Some((id, self.values.iter().map(get).collect()));
        }
        self.stream.as_ref().is_some_and(|(_, has)| has[i])
    }
}

/// One `name="value"` condition of a [`Required`].
#[derive(Debug)]
struct RequiredValue {
    name: String,
    value: String,
    finder: memchr::memmem::Finder<'static>,
}

/// Puts a [`StageImpl::Requires`] before each `json` and `logfmt` stage followed by label
/// filters with `name="value"` conditions (of the whole filter, not of an `or`).
fn add_required_values(stages: Vec<StageImpl>) -> Vec<StageImpl> {
    let mut required: Vec<Option<Required>> = Vec::with_capacity(stages.len());
    for (i, stage) in stages.iter().enumerate() {
        if !matches!(stage, StageImpl::Json(_) | StageImpl::Logfmt(_)) {
            required.push(None);
            continue;
        }
        let mut pairs = Vec::new();
        for later in &stages[i + 1..] {
            match later {
                StageImpl::LabelFilter(f) => f.required_equalities(&mut pairs),
                StageImpl::LineFilter(_) => {}
                _ => break,
            }
        }
        let reqs: Vec<RequiredValue> = pairs
            .into_iter()
            .filter(|(name, value)| {
                !name.starts_with("__") && !value.is_empty() && !value.contains([' ', '\u{fffd}'])
            })
            .map(|(name, value)| RequiredValue {
                finder: memchr::memmem::Finder::new(value.as_bytes()).into_owned(),
                name,
                value,
            })
            .collect();
        let json = matches!(stage, StageImpl::Json(_));
        required.push((!reqs.is_empty()).then(|| Required::new(reqs, json)));
    }
    let mut out = Vec::with_capacity(stages.len());
    for (stage, reqs) in stages.into_iter().zip(required) {
        if let Some(r) = reqs {
            out.push(StageImpl::Requires(r));
        }
        out.push(stage);
    }
    out
}

/// Gives the `json` and `logfmt` stages the labels read after them, when those are known:
/// `output` is what the caller reads of the final labels (`None`: all of them). Returns
/// whether a stage got hints.
fn assign_hints(stages: &mut [StageImpl], output: Option<Vec<String>>) -> bool {
    let mut read = output;
    let mut hinted = false;
    for stage in stages.iter_mut().rev() {
        let Some(names) = &mut read else {
            break;
        };
        match stage {
            StageImpl::Json(p) => {
                *p = JsonParser::new(Some(ParserHints::new(names.clone())));
                hinted = true;
            }
            StageImpl::Logfmt(p) => {
                *p = LogfmtParser::new(
                    p.strict,
                    p.keep_empty,
                    Some(ParserHints::new(names.clone())),
                );
                hinted = true;
            }
            StageImpl::JsonExpr(p) => names.extend_from_slice(p.ids()),
            StageImpl::Requires(r) => names.extend(r.values.iter().map(|r| r.name.clone())),
            StageImpl::LabelFilter(f) => f.required_labels(names),
            StageImpl::LineFormat(f) => match f.read_labels() {
                Some(l) => names.extend_from_slice(l),
                None => read = None,
            },
            StageImpl::LabelFormat(f) => match f.read_labels() {
                Some(l) => names.extend(l),
                None => read = None,
            },
            StageImpl::Drop(_) | StageImpl::Keep(..) => read = None,
            // These read no label (parsers only test the stream labels for collisions).
            StageImpl::LineFilter(_)
            | StageImpl::LogfmtExpr(_)
            | StageImpl::Regexp { .. }
            | StageImpl::Pattern(_)
            | StageImpl::Unpack(_)
            | StageImpl::Decolorize => {}
        }
    }
    hinted
}

/// A compiled log pipeline; see the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    stages: Vec<StageImpl>,
    /// Whether a parser stores only some labels ([`Self::with_hints`]).
    hinted: bool,
    leading_filters: usize,
    bufs: [Vec<u8>; 2],
    caps: Option<regex::bytes::CaptureLocations>,
    text: String,
    names: String,
}

impl Pipeline {
    pub fn new(stages: &[Stage]) -> Result<Pipeline, PipelineError> {
        Self::with_hints(stages, None)
    }

    /// A pipeline whose caller reads only the `output` labels of its result (`None`: all
    /// of them) and neither `__error__` nor anything else when it is set: the `json` and
    /// `logfmt` stages then store only the labels read after them.
    pub fn with_hints(
        stages: &[Stage],
        output: Option<Vec<String>>,
    ) -> Result<Pipeline, PipelineError> {
        Self::compile(stages, output, true)
    }

    /// Without `shortcuts`, neither hints nor [`StageImpl::Requires`]: the reference the
    /// tests compare them with.
    fn compile(
        stages: &[Stage],
        output: Option<Vec<String>>,
        shortcuts: bool,
    ) -> Result<Pipeline, PipelineError> {
        let mut out: Vec<StageImpl> = Vec::new();
        for s in reorder(stages) {
            match s {
                Stage::LineFilter(f) => {
                    let mut checks = Vec::new();
                    compile_line_filter(f, &mut checks)?;
                    out.extend(checks.into_iter().map(StageImpl::LineFilter));
                }
                Stage::LabelParser(p) => out.push(compile_parser(p)?),
                Stage::LabelFilter(f) => {
                    let f = LabelFilter::new(f, true).map_err(PipelineError::Parser)?;
                    if !f.is_noop() {
                        out.push(StageImpl::LabelFilter(f));
                    }
                }
                Stage::LineFormat(f) => out.push(StageImpl::LineFormat(
                    LineFormat::new(&f.template).map_err(PipelineError::Template)?,
                )),
                Stage::LabelFormat(f) => out.push(StageImpl::LabelFormat(
                    LabelFormat::new(&f.formats).map_err(PipelineError::Template)?,
                )),
                Stage::DropLabels(d) => out.push(StageImpl::Drop(d.labels.clone())),
                Stage::KeepLabels(k) => out.push(StageImpl::Keep(k.labels.clone(), Vec::new())),
                Stage::Decolorize => out.push(StageImpl::Decolorize),
            }
        }
        let mut hinted = false;
        if shortcuts {
            out = add_required_values(out);
            hinted = assign_hints(&mut out, output);
        }
        let leading_filters = out
            .iter()
            .take_while(|s| matches!(s, StageImpl::LineFilter(_)))
            .count();
        Ok(Pipeline {
            stages: out,
            hinted,
            leading_filters,
            bufs: [Vec::new(), Vec::new()],
            caps: None,
            text: String::new(),
            names: String::new(),
        })
    }

    /// Whether a parser stores only the labels read after it.
    pub fn is_hinted(&self) -> bool {
        self.hinted
    }

    /// Whether the pipeline changes nothing and filters nothing.
    pub fn is_noop(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether every stage is a line filter: entries keep their line and stream labels.
    pub fn line_filters_only(&self) -> bool {
        self.leading_filters == self.stages.len()
    }

    /// Runs the leading line filters on a raw line: false means the entry is filtered out
    /// whatever the later stages do.
    pub fn filter_line(&self, line: &[u8]) -> bool {
        self.stages[..self.leading_filters].iter().all(|s| match s {
            StageImpl::LineFilter(c) => c.matches(line),
            _ => true,
        })
    }

    /// Runs every stage on an entry whose labels are in `lbs` (after
    /// [`LabelsBuilder::start_entry`]); the resulting line, or `None` when filtered out.
    pub fn process<'a>(
        &'a mut self,
        ts_ns: i64,
        line: &'a [u8],
        lbs: &mut LabelsBuilder,
    ) -> Option<&'a [u8]> {
        self.run(0, ts_ns, line, lbs)
    }

    /// Like [`Self::process`] for a line that already passed [`Self::filter_line`].
    pub fn process_after_line_filters<'a>(
        &'a mut self,
        ts_ns: i64,
        line: &'a [u8],
        lbs: &mut LabelsBuilder,
    ) -> Option<&'a [u8]> {
        self.run(self.leading_filters, ts_ns, line, lbs)
    }

    /// Like [`Self::process`], returning an owned-or-borrowed line.
    pub fn process_cow<'a>(
        &'a mut self,
        ts_ns: i64,
        line: &'a [u8],
        lbs: &mut LabelsBuilder,
    ) -> Option<Cow<'a, [u8]>> {
        let ptr = line.as_ptr();
        let out = self.process(ts_ns, line, lbs)?;
        if out.as_ptr() == ptr && out.len() == line.len() {
            Some(Cow::Borrowed(line))
        } else {
            Some(Cow::Owned(out.to_vec()))
        }
    }

    fn run<'a>(
        &'a mut self,
        first: usize,
        ts: i64,
        line: &'a [u8],
        lbs: &mut LabelsBuilder,
    ) -> Option<&'a [u8]> {
        let [b0, b1] = &mut self.bufs;
        // None: the caller's line; Some(false): b0; Some(true): b1.
        let mut current: Option<bool> = None;
        for stage in &mut self.stages[first..] {
            let (cur, out): (&[u8], &mut Vec<u8>) = match current {
                None => (line, &mut *b0),
                Some(false) => (&b0[..], &mut *b1),
                Some(true) => (&b1[..], &mut *b0),
            };
            let outcome = process_stage(
                stage,
                ts,
                cur,
                out,
                lbs,
                &mut self.caps,
                &mut self.text,
                &mut self.names,
            );
            match outcome {
                Outcome::Keep => {}
                Outcome::Drop => return None,
                Outcome::Rewritten => {
                    current = Some(match current {
                        None | Some(true) => false,
                        Some(false) => true,
                    })
                }
            }
        }
        Some(match current {
            None => line,
            Some(false) => &self.bufs[0][..],
            Some(true) => &self.bufs[1][..],
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn process_stage(
    stage: &mut StageImpl,
    ts: i64,
    line: &[u8],
    out: &mut Vec<u8>,
    lbs: &mut LabelsBuilder,
    caps: &mut Option<regex::bytes::CaptureLocations>,
    text: &mut String,
    name: &mut String,
) -> Outcome {
    let keep = |b: bool| if b { Outcome::Keep } else { Outcome::Drop };
    match stage {
        StageImpl::LineFilter(c) => keep(c.matches(line)),
        StageImpl::Requires(r) => keep(r.possible(line, lbs)),
        StageImpl::Json(p) => {
            p.process(line, lbs);
            Outcome::Keep
        }
        StageImpl::JsonExpr(p) => {
            p.process(line, lbs);
            Outcome::Keep
        }
        StageImpl::Logfmt(p) => {
            p.process(line, lbs);
            Outcome::Keep
        }
        StageImpl::LogfmtExpr(p) => {
            p.process(line, lbs);
            Outcome::Keep
        }
        StageImpl::Regexp { re, names } => {
            regexp_labels(re, names, line, lbs, caps, text, name);
            Outcome::Keep
        }
        StageImpl::Pattern(p) => {
            pattern_labels(p, line, lbs, text, name);
            Outcome::Keep
        }
        StageImpl::Unpack(p) => {
            if p.process(line, lbs, out) {
                Outcome::Rewritten
            } else {
                Outcome::Keep
            }
        }
        StageImpl::LabelFilter(f) => keep(f.process(lbs)),
        StageImpl::LineFormat(f) => {
            if f.process(ts, line, lbs, out) {
                Outcome::Rewritten
            } else {
                Outcome::Keep
            }
        }
        StageImpl::LabelFormat(f) => {
            f.process(ts, line, lbs);
            Outcome::Keep
        }
        StageImpl::Drop(refs) => {
            format::drop_labels(refs, lbs);
            Outcome::Keep
        }
        StageImpl::Keep(refs, scratch) => {
            format::keep_labels(refs, lbs, scratch);
            Outcome::Keep
        }
        StageImpl::Decolorize => {
            if format::decolorize(line, out) {
                Outcome::Rewritten
            } else {
                Outcome::Keep
            }
        }
    }
}

/// `| regexp`: each named group that matched becomes a parsed label (sanitized; `_extracted`
/// added when a stream label has the name).
fn regexp_labels(
    re: &regex::bytes::Regex,
    names: &[(usize, String)],
    line: &[u8],
    lbs: &mut LabelsBuilder,
    caps: &mut Option<regex::bytes::CaptureLocations>,
    text: &mut String,
    name: &mut String,
) {
    let locs = caps.get_or_insert_with(|| re.capture_locations());
    if locs.len() != re.captures_len() {
        *locs = re.capture_locations();
    }
    if re.captures_read(locs, line).is_none() {
        return;
    }
    for (i, n) in names.iter() {
        name.clear();
        sanitize_label_key(n, true, name);
        if name.is_empty() {
            continue;
        }
        if lbs.base_has(name) {
            name.push_str(DUPLICATE_SUFFIX);
        }
        text.clear();
        if let Some((s, e)) = locs.get(*i) {
            text.push_str(&String::from_utf8_lossy(&line[s..e]));
        }
        lbs.set_parsed(name, text);
    }
}

/// `| pattern`: each named capture becomes a parsed label (`_extracted` added when a stream
/// label has the name).
fn pattern_labels(
    p: &Pattern,
    line: &[u8],
    lbs: &mut LabelsBuilder,
    text: &mut String,
    name: &mut String,
) {
    let mut found = Vec::new();
    p.matches(line, &mut found);
    for (i, v) in found.iter().enumerate() {
        name.clear();
        name.push_str(&p.names()[i]);
        if lbs.base_has(name) {
            name.push_str(DUPLICATE_SUFFIX);
        }
        text.clear();
        text.push_str(&String::from_utf8_lossy(v));
        lbs.set_parsed(name, text);
    }
}

/// How a metric query turns an entry into a sample value.
#[derive(Debug)]
enum Extraction {
    /// `count_over_time`, `rate`, `absent_over_time`: 1 per entry.
    Count,
    /// `bytes_over_time`, `bytes_rate`: the line's length after the pipeline.
    Bytes,
    /// `| unwrap [conv(]label[)] | post filters`.
    Unwrap {
        label: String,
        conversion: Option<UnwrapConversion>,
        post: Vec<LabelFilter>,
    },
}

/// The series labels a metric query keeps: Loki pushes `by`/`without` down to the
/// extractor; `no_labels` (`by ()`, `absent_over_time`) keeps none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleGrouping {
    pub groups: Vec<String>,
    pub without: bool,
    pub no_labels: bool,
}

impl SampleGrouping {
    /// The grouping Loki derives from a range aggregation's `by`/`without` (`None` when
    /// there is none).
    pub fn from_grouping(g: Option<&Grouping>) -> Self {
        match g {
            None => SampleGrouping::default(),
            Some(g) => SampleGrouping {
                groups: g.labels.clone(),
                without: g.without,
                no_labels: g.labels.is_empty() && !g.without,
            },
        }
    }
}

/// A pipeline plus the sample value of each entry, for metric queries.
#[derive(Debug)]
pub struct SampleExtractor {
    pipeline: Pipeline,
    /// The pipeline without hints, for the entries that end with an error (their series
    /// has every label); `None` when `pipeline` has no hints.
    full: Option<Pipeline>,
    /// Whether the last entry processed got through the pipeline (before the unwrap).
    passed_pipeline: bool,
    extraction: Extraction,
    grouping: SampleGrouping,
}

impl SampleExtractor {
    /// `bytes` selects the line-length value (`bytes_over_time`, `bytes_rate`); `unwrap`
    /// the label value. With an `unwrap`, the unwrapped label is dropped from the series
    /// labels unless a `by` grouping names the labels to keep.
    pub fn new(
        stages: &[Stage],
        unwrap: Option<&UnwrapExpr>,
        bytes: bool,
        grouping: SampleGrouping,
    ) -> Result<SampleExtractor, PipelineError> {
        Self::build(stages, unwrap, bytes, grouping, true)
    }

    /// [`Self::new`], with parser hints and [`StageImpl::Requires`] or without (the
    /// reference they must match).
    fn build(
        stages: &[Stage],
        unwrap: Option<&UnwrapExpr>,
        bytes: bool,
        grouping: SampleGrouping,
        shortcuts: bool,
    ) -> Result<SampleExtractor, PipelineError> {
        let mut grouping = grouping;
        let extraction = match unwrap {
            Some(u) => {
                let post = u
                    .post_filters
                    .iter()
                    .map(|f| LabelFilter::new(f, true))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(PipelineError::Parser)?;
                if grouping.groups.is_empty() || grouping.without {
                    grouping.without = true;
                    grouping.groups.push(u.identifier.clone());
                    grouping.groups.sort();
                }
                Extraction::Unwrap {
                    label: u.identifier.clone(),
                    conversion: u.conversion,
                    post,
                }
            }
            None if bytes => Extraction::Bytes,
            None => Extraction::Count,
        };
        // The labels read after the pipeline: the series labels (when the grouping names
        // them), the unwrapped label and those of the filters after it.
        let mut output = if grouping.no_labels {
            Some(Vec::new())
        } else if grouping.without || grouping.groups.is_empty() {
            None
        } else {
            Some(grouping.groups.clone())
        };
        if let (Some(names), Extraction::Unwrap { label, post, .. }) = (&mut output, &extraction) {
            names.push(label.clone());
            for f in post {
                f.required_labels(names);
            }
        }
        let pipeline = Pipeline::compile(stages, output, shortcuts)?;
        let full = if pipeline.is_hinted() {
            Some(Pipeline::new(stages)?)
        } else {
            None
        };
        Ok(SampleExtractor {
            pipeline,
            full,
            passed_pipeline: false,
            extraction,
            grouping,
        })
    }

    /// Whether the last entry given to [`Self::process`] got through the pipeline, whatever
    /// became of its unwrap.
    pub fn passed_pipeline(&self) -> bool {
        self.passed_pipeline
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// For a pipeline with no stages and a count or bytes value, `Some(bytes)`: each entry's
    /// value is then 1 (or its line's length) and its series depends only on its stream and
    /// structured metadata, so the line itself need not be read.
    pub fn plain_count(&self) -> Option<bool> {
        if !self.pipeline.is_noop() {
            return None;
        }
        match self.extraction {
            Extraction::Count => Some(false),
            Extraction::Bytes => Some(true),
            Extraction::Unwrap { .. } => None,
        }
    }

    /// The sample value of an entry, or `None` when filtered out (or the unwrapped label
    /// is absent or empty). A value that does not convert gives a sample with
    /// `__error__=SampleExtractionErr` (value 0, or ±Inf for an out-of-range float).
    /// `lbs` is as [`LabelsBuilder::start_entry`] left it.
    pub fn process(&mut self, ts_ns: i64, line: &[u8], lbs: &mut LabelsBuilder) -> Option<f64> {
        let v = extract(
            &mut self.pipeline,
            &self.extraction,
            &mut self.passed_pipeline,
            ts_ns,
            line,
            lbs,
        );
        match &mut self.full {
            // The entry's labels are all read: those the hints skipped are needed.
            Some(full) if self.passed_pipeline && lbs.has_err() => {
                lbs.restart_entry();
                extract(
                    full,
                    &self.extraction,
                    &mut self.passed_pipeline,
                    ts_ns,
                    line,
                    lbs,
                )
            }
            _ => v,
        }
    }

    /// Whether the series of the sample just extracted is the one of its stream's
    /// untouched entries: no error, and no label of the series changed by the pipeline.
    pub fn series_is_stream(&self, lbs: &LabelsBuilder) -> bool {
        if lbs.has_err() {
            return false;
        }
        let g = &self.grouping;
        if g.no_labels {
            return true;
        }
        if g.groups.is_empty() || g.without {
            return lbs.is_unchanged();
        }
        !g.groups.iter().any(|n| lbs.touched(n))
    }

    /// The series labels of the sample just extracted (Loki's `GroupedLabels`): all
    /// labels when an error is set, none for `no_labels`, else the `by`/`without` subset.
    pub fn series_labels(&self, lbs: &LabelsBuilder) -> Vec<(String, String)> {
        if lbs.has_err() {
            return lbs.labels();
        }
        let g = &self.grouping;
        if g.no_labels {
            return Vec::new();
        }
        if g.groups.is_empty() {
            return lbs.labels();
        }
        let mut out: Vec<(String, String)> = if g.without {
            let mut all = Vec::new();
            lbs.for_each(|n, v, _| {
                if !g.groups.iter().any(|x| x == n) {
                    all.push((n.to_string(), v.to_string()));
                }
            });
            all
        } else {
            g.groups
                .iter()
                .filter_map(|n| lbs.get(n).map(|v| (n.clone(), v.to_string())))
                .collect()
        };
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }
}

/// Runs an entry through `pipeline` and takes its sample value; see
/// [`SampleExtractor::process`].
fn extract(
    pipeline: &mut Pipeline,
    extraction: &Extraction,
    passed_pipeline: &mut bool,
    ts_ns: i64,
    line: &[u8],
    lbs: &mut LabelsBuilder,
) -> Option<f64> {
    *passed_pipeline = false;
    let out = pipeline.process(ts_ns, line, lbs)?;
    *passed_pipeline = true;
    match extraction {
        Extraction::Count => Some(1.0),
        Extraction::Bytes => Some(out.len() as f64),
        Extraction::Unwrap {
            label,
            conversion,
            post,
        } => {
            let raw = lbs.get(label).unwrap_or("");
            // A line without the label gives no sample (Loki issue 6713).
            if raw.is_empty() {
                return None;
            }
            let (v, err) = match conversion {
                None => go::parse_float(raw),
                Some(UnwrapConversion::Duration | UnwrapConversion::DurationSeconds) => {
                    match go::parse_duration(raw) {
                        Ok(n) => (n as f64 / 1e9, None),
                        Err(e) => (0.0, Some(e)),
                    }
                }
                Some(UnwrapConversion::Bytes) => match go::parse_bytes(raw) {
                    Ok(b) => (b as f64, None),
                    Err(e) => (0.0, Some(e)),
                },
            };
            if let Some(e) = err {
                lbs.set_err(ERR_SAMPLE_EXTRACTION);
                lbs.set_err_details(&e);
            }
            let mut pass = true;
            for f in post {
                pass &= f.process(lbs);
            }
            pass.then_some(v)
        }
    }
}

/// Convenience for tests and tools: compiles the pipeline of a log query's text.
pub fn pipeline_for_query(query: &str) -> Result<Pipeline, String> {
    let expr = crate::logql::parse_log_expr(query).map_err(|e| e.to_string())?;
    Pipeline::new(&expr.pipeline).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
