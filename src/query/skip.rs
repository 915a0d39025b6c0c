//! Skipping what cannot match, before decompressing it. From a log pipeline, [`Skip`] keeps the
//! label filters whose outcome a stream's labels or a block's field summary can decide, and
//! the tokens and values a line must carry; `scan` then leaves out
//! - a whole stream, when a filter on one of its stream labels fails on the stream's value;
//! - a columnar block, when its summary (`storage::columns`) proves that the filter fails on
//!   every line;
//! - a columnar block (in the head or a segment), when its Bloom filter lacks a key of a
//!   `|= "literal"` filter (`index::literal_keys`: its whole tokens, and the edge keys of the
//!   words at its ends) or the value of a `name="value"` filter.
//!
//! Only an exact "no line can pass" skips: the answer with skipping is the answer without it
//! (a test compares them over random queries). A filter is used only when nothing before it
//! can change the labels it reads: the stages before it are line filters, label filters and
//! at most one kind of plain parser (`| json` or `| logfmt` with no arguments). A parsed name
//! that is also a stream label becomes `<name>_extracted`, so a filter on a stream label reads
//! the stream's value; structured metadata of the same name (listed in the summary) makes the
//! block unskippable.

use crate::labels::Labels;
use crate::logql::{CmpOp, LabelFilterExpr, LabelParserExpr, MatchOp, Stage};
use crate::pipeline::labels_builder::{LabelsBuilder, DUPLICATE_SUFFIX};
use crate::pipeline::stages::label_filter::LabelFilter;
use crate::storage::chunk::BlockRef;
use crate::storage::columns::{ParserSummary, PARSER_JSON, PARSER_LOGFMT, PARSER_METADATA};
use crate::storage::index::{contains_literal, escape_key, hash, literal_keys, value_keys};

/// One conjunct of the pipeline's label filters that a summary may decide.
#[derive(Debug)]
struct Conjunct {
    name: String,
    /// Whether it comes after the parser (else only stream labels and metadata reach it).
    after_parser: bool,
    filter: LabelFilter,
    test: Test,
    /// For `name="value"` (value not empty): the hash of the value (a metadata value) and
    /// its `index::value_keys` (a value parsed from the line).
    value_keys: Option<(u64, Option<Vec<u64>>)>,
}

#[derive(Debug)]
enum Test {
    Number {
        op: CmpOp,
        value: f64,
    },
    Eq(String),
    /// Any other string test: decided on a complete list of distinct values.
    Values,
    /// Only a stream label can decide it.
    StreamOnly,
}

/// What a query's pipeline lets `scan` skip; see the module documentation.
#[derive(Debug, Default)]
pub struct Skip {
    /// The parser the conjuncts read after, if any.
    parser: Option<u8>,
    conjuncts: Vec<Conjunct>,
    /// Keys (`index::literal_keys`) of the literals every passing line contains.
    tokens: Vec<u64>,
    /// A correlation lookup: the value some field of every entry has (see [`Skip::for_value`]).
    any_field: Option<(String, u64, Option<Vec<u64>>)>,
}

impl Skip {
    /// What `stages` let a scan skip (nothing, for most pipelines).
    pub fn for_pipeline(stages: &[Stage]) -> Skip {
        let mut s = Skip::default();
        let mut line_changed = false;
        for st in stages {
            match st {
                Stage::LineFilter(f) => {
                    if let Some(lit) = contains_literal(f).filter(|_| !line_changed) {
                        s.tokens.extend(literal_keys(lit.as_bytes()));
                    }
                }
                // A parser after `line_format` reads another line than the summary did.
                Stage::LabelParser(_) if line_changed => break,
                Stage::LabelParser(LabelParserExpr::Json { expressions })
                    if expressions.is_empty() && s.parser.is_none_or(|p| p == PARSER_JSON) =>
                {
                    s.parser = Some(PARSER_JSON)
                }
                Stage::LabelParser(LabelParserExpr::Logfmt {
                    strict: false,
                    keep_empty: false,
                    expressions,
                }) if expressions.is_empty() && s.parser.is_none_or(|p| p == PARSER_LOGFMT) => {
                    s.parser = Some(PARSER_LOGFMT)
                }
                Stage::LabelFilter(f) => s.add_conjuncts(f),
                Stage::LineFormat(_) | Stage::Decolorize => {
                    // Later line filters test another line; label filters may still be used.
                    line_changed = true;
                }
                // Anything else may change the labels later filters read.
                _ => break,
            }
        }
        s
    }

    /// What a lookup of the entries with `value` in some field (the correlate API) lets a scan
    /// skip: the blocks of streams without a label of that value whose filter has neither the
    /// value (structured metadata) nor, as a field of a line, its tokens.
    pub fn for_value(value: &str) -> Skip {
        Skip {
            any_field: (!value.is_empty())
                .then(|| (value.to_string(), hash(value.as_bytes()), value_keys(value))),
            ..Skip::default()
        }
    }

    fn add_conjuncts(&mut self, f: &LabelFilterExpr) {
        match f {
            LabelFilterExpr::And(a, b) => {
                self.add_conjuncts(a);
                self.add_conjuncts(b);
            }
            LabelFilterExpr::Or(..) | LabelFilterExpr::Ip { .. } => {}
            LabelFilterExpr::String(m) => {
                let test = match m.op {
                    MatchOp::Eq => Test::Eq(m.value.clone()),
                    _ => Test::Values,
                };
                self.push(&m.name, f, test);
            }
            LabelFilterExpr::Number { name, op, value } => {
                let test = if value.is_nan() {
                    Test::StreamOnly
                } else {
                    Test::Number {
                        op: *op,
                        value: *value,
                    }
                };
                self.push(name, f, test)
            }
            LabelFilterExpr::Duration { name, .. } | LabelFilterExpr::Bytes { name, .. } => {
                self.push(name, f, Test::StreamOnly)
            }
        }
    }

    fn push(&mut self, name: &str, f: &LabelFilterExpr, test: Test) {
        if name.starts_with("__error") || name.ends_with(DUPLICATE_SUFFIX) {
            return;
        }
        if let Ok(filter) = LabelFilter::new(f, true) {
            let value_keys = match &test {
                Test::Eq(v) if !v.is_empty() => Some((hash(v.as_bytes()), value_keys(v))),
                _ => None,
            };
            self.conjuncts.push(Conjunct {
                value_keys,
                name: name.to_string(),
                after_parser: self.parser.is_some(),
                filter,
                test,
            });
        }
    }

    /// Whether nothing can be skipped.
    pub fn is_empty(&self) -> bool {
        self.conjuncts.is_empty() && self.tokens.is_empty() && self.any_field.is_none()
    }

    /// Whether no entry of a stream with these labels can pass.
    pub fn skips_stream(&self, labels: &Labels) -> bool {
        let mut b: Option<LabelsBuilder> = None;
        self.conjuncts
            .iter()
            .filter(|c| labels.get(&c.name).is_some())
            .any(|c| {
                let b = b.get_or_insert_with(|| LabelsBuilder::for_stream(labels.pairs()));
                b.start_entry::<&str, &str>(&[]);
                !c.filter.process(b) && !b.has_err()
            })
    }

    /// Whether no line of a block can pass, by its summary and its filter (columnar blocks).
    /// `labels` are the block's stream's.
    pub fn skips_block(&self, b: &BlockRef<'_>, labels: &Labels) -> bool {
        if let Some(bloom) = b.columns.as_ref().and_then(|c| c.filter()) {
            if self.tokens.iter().any(|t| !bloom.may_contain(*t)) {
                return true;
            }
            let escapes = bloom.may_contain(escape_key());
            // Neither a metadata value nor, read from a line, its tokens.
            let missing = |exact: u64, from_line: &Option<Vec<u64>>| {
                !bloom.may_contain(exact)
                    && !escapes
                    && from_line
                        .as_ref()
                        .is_some_and(|k| k.iter().any(|k| !bloom.may_contain(*k)))
            };
            let values_missing = self.conjuncts.iter().any(|c| match &c.value_keys {
                Some((exact, from_line)) if labels.get(&c.name).is_none() => {
                    missing(*exact, from_line)
                }
                _ => false,
            });
            if values_missing {
                return true;
            }
            if let Some((value, exact, from_line)) = &self.any_field {
                if !labels.pairs().iter().any(|(_, v)| v == value) && missing(*exact, from_line) {
                    return true;
                }
            }
        }
        let Some(parser) = self.parser else {
            return false;
        };
        if b.columns.is_none() || self.conjuncts.is_empty() {
            return false;
        }
        let Ok(summaries) = b.summaries() else {
            // A damaged summary decides nothing; the read reports the damage.
            return false;
        };
        let find = |p: u8| summaries.iter().find(|s| s.parser == p);
        let (Some(parsed), Some(md)) = (find(parser), find(PARSER_METADATA)) else {
            return false;
        };
        let n = b.n_entries as u64;
        self.conjuncts.iter().any(|c| {
            c.after_parser
                && labels.get(&c.name).is_none()
                && md.complete
                && md.field(&c.name).is_none()
                && fails_everywhere(c, parsed, n)
        })
    }
}

/// A line check from the `name="value"` filters on parsed labels: a value `| json` or
/// `| logfmt` finds is a piece of the line as written, unless the line escapes something (a
/// backslash) or the value has bytes the parsers change (spaces may stand for invalid UTF-8;
/// quotes and backslashes are escaped), so a line that has neither the value nor a backslash,
/// and whose metadata does not have it either, cannot pass.
pub struct Prefilter {
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl Prefilter {
    /// Whether an entry with this line and encoded metadata may pass the filters.
    pub fn may_pass(&self, line: &[u8], metadata: &[u8]) -> bool {
        self.finders.iter().all(|f| {
            f.find(line).is_some()
                || memchr::memchr(b'\\', line).is_some()
                || f.find(metadata).is_some()
        })
    }
}

impl Skip {
    /// The line check for a stream with these labels (`None`: nothing to check).
    pub fn prefilter(&self, labels: &Labels) -> Option<Prefilter> {
        let finders: Vec<_> = self
            .conjuncts
            .iter()
            .filter(|c| labels.get(&c.name).is_none())
            .filter_map(|c| match &c.test {
                Test::Eq(v) if verbatim(v) => {
                    Some(memchr::memmem::Finder::new(v.as_bytes()).into_owned())
                }
                _ => None,
            })
            .collect();
        (!finders.is_empty()).then_some(Prefilter { finders })
    }
}

/// Whether a label value appears in a line exactly as it is: printable ASCII other than
/// space, quote and backslash.
fn verbatim(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Whether conjunct `c` fails on every one of `n` lines whose `parser` fields `s` summarizes.
fn fails_everywhere(c: &Conjunct, s: &ParserSummary, n: u64) -> bool {
    let f = s.field(&c.name);
    if f.is_none() && !s.complete {
        return false;
    }
    match (&c.test, f) {
        // Absent everywhere: a numeric filter fails on a missing label, a string test sees "".
        (Test::Number { .. }, None) => true,
        (Test::Eq(v), None) => !v.is_empty(),
        (Test::Values, None) => !string_passes(c, ""),
        (Test::StreamOnly, _) => false,
        (Test::Number { op, value }, Some(f)) => {
            // A value that does not convert keeps the line (with `__error__`).
            f.numeric == f.present && !range_meets(*op, *value, f.min, f.max)
        }
        (Test::Eq(v), Some(f)) => {
            let missing_pass = f.present < n && v.is_empty();
            !missing_pass && f.values.as_ref().is_some_and(|vs| !vs.contains(v))
        }
        (Test::Values, Some(f)) => {
            let missing_pass = f.present < n && string_passes(c, "");
            !missing_pass
                && f.values
                    .as_ref()
                    .is_some_and(|vs| vs.iter().all(|v| !string_passes(c, v)))
        }
    }
}

/// Whether a string conjunct passes a line whose label has `value`.
fn string_passes(c: &Conjunct, value: &str) -> bool {
    let mut b = LabelsBuilder::new();
    b.start_entry::<&str, &str>(&[]);
    b.set_parsed(&c.name, value);
    c.filter.process(&mut b)
}

/// Whether some `x` in `[min, max]` has `x op value`.
fn range_meets(op: CmpOp, value: f64, min: f64, max: f64) -> bool {
    match op {
        CmpOp::Eq => min <= value && value <= max,
        CmpOp::Neq => !(min == value && max == value),
        CmpOp::Gt => max > value,
        CmpOp::Gte => max >= value,
        CmpOp::Lt => min < value,
        CmpOp::Lte => min <= value,
    }
}
