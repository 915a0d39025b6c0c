//! Metric queries answered from a block's columns instead of its lines. A columnar block keeps
//! (`storage::columns`, section 7), for `| json` and for `| logfmt`:
//! - a value column for each field that is a number on every line that has it: the number per
//!   line;
//! - a dictionary column for each field with few distinct values: the value per line.
//!
//! Two shapes of range aggregation read them:
//!
//! ```text
//! op({selector} | json | __error__="" | unwrap field [range]) by (labels)
//! count_over_time({selector} | json | level="error" | __error__="" [range])   (by pushed down)
//! ```
//!
//! The first reads timestamps and the value column: every value the unwrap would convert is
//! already converted, and a line without the field gives no sample, as on the line path. The
//! second (`count_over_time`, `rate`, `bytes_over_time`, `bytes_rate`) reads timestamps, lengths,
//! the dictionary column of each `name="value"` filter and the value column of each
//! `name > number` filter (any comparison), and counts the lines that pass them all.
//!
//! [`ValueColumn::for_range`] accepts the query and [`ValueColumn::answers`] each block. Both
//! accept only what makes the columns' answer the lines' answer:
//! - the pipeline is one plain parser (no arguments, no flags) and label filters that are
//!   `__error__=""` or, for counts, `name="value"` with a value that is not empty or
//!   `name op number`; the unwrap
//!   has no conversion and no filter but `__error__=""`. A value column leaves out the lines
//!   the parser failed on, which only an error filter drops too, so for an unwrap a block with
//!   parser errors and no such filter is read whole (for an unwrap, and for a count with a
//!   numeric filter). A count with only `name="value"` filters reads the block's error column:
//!   without an error filter, a failed line that passes the filters gives the line path's
//!   error (the block is read whole), and the others count as they would;
//! - the series labels are a `by` grouping, and each of its names is a stream label, or a name
//!   the block's summary proves no line and no structured metadata gives (a parsed name that is
//!   also a stream label becomes `<name>_extracted`, and leaves the stream's value alone);
//! - the fields read are neither stream labels (the pipeline would read the stream's value)
//!   nor structured metadata names;
//! - not `avg_over_time`, whose count also sees the entries the unwrap skips.
//!
//! A test compares answers with and without columns over random queries
//! (`column_paths_tests`).

use super::{EntryVisitor, QueryStats};
use crate::labels::Labels;
use crate::logql::{
    CmpOp, LabelFilterExpr, LabelParserExpr, MatchOp, RangeAggregationExpr, RangeOp, Stage,
};
use crate::pipeline::labels_builder::{DUPLICATE_SUFFIX, ERROR_LABEL};
use crate::pipeline::stages::label_filter::cmp;
use crate::storage::chunk::{BlockRef, DecodedBlock};
use crate::storage::columns::{
    Dictionary, ParserSummary, PARSER_JSON, PARSER_LOGFMT, PARSER_METADATA,
};
use crate::storage::compress::ChunkError;

/// The columns a range aggregation's samples can come from; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueColumn {
    parser: u8,
    read: Read,
    /// Whether an `__error__=""` filter drops the lines the parser failed on.
    drop_errors: bool,
    /// The `by` names.
    groups: Vec<String>,
}

/// What a [`ValueColumn`] reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The value column of the unwrapped field.
    Unwrap(String),
    /// The dictionary columns of the `name="value"` filters and the value columns of the
    /// `name op number` filters; each line that passes them all counts 1, or its length
    /// (`bytes`).
    Count {
        bytes: bool,
        equal: Vec<(String, String)>,
        compare: Vec<(String, CmpOp, f64)>,
    },
}

impl ValueColumn {
    /// The columns `agg` can read, if its shape allows.
    pub fn for_range(agg: &RangeAggregationExpr) -> Option<ValueColumn> {
        let grouping = agg.grouping.as_ref().filter(|g| !g.without)?;
        let (first, rest) = agg.range.log.pipeline.split_first()?;
        let parser = match first {
            Stage::LabelParser(LabelParserExpr::Json { expressions }) if expressions.is_empty() => {
                PARSER_JSON
            }
            Stage::LabelParser(LabelParserExpr::Logfmt {
                strict: false,
                keep_empty: false,
                expressions,
            }) if expressions.is_empty() => PARSER_LOGFMT,
            _ => return None,
        };
        let mut drop_errors = false;
        let mut equal = Vec::new();
        let mut compare = Vec::new();
        for s in rest {
            match s {
                Stage::LabelFilter(f) if is_no_error(f) => drop_errors = true,
                Stage::LabelFilter(LabelFilterExpr::String(m))
                    if m.op == MatchOp::Eq && !m.value.is_empty() && !m.name.starts_with("__") =>
                {
                    equal.push((m.name.clone(), m.value.clone()))
                }
                Stage::LabelFilter(LabelFilterExpr::Number { name, op, value })
                    if !name.starts_with("__") =>
                {
                    compare.push((name.clone(), *op, *value))
                }
                _ => return None,
            }
        }
        let read = match &agg.range.unwrap {
            Some(unwrap) => {
                if agg.op == RangeOp::AvgOverTime
                    || unwrap.conversion.is_some()
                    || !equal.is_empty()
                    || !compare.is_empty()
                {
                    return None;
                }
                for f in &unwrap.post_filters {
                    if !is_no_error(f) {
                        return None;
                    }
                    drop_errors = true;
                }
                Read::Unwrap(unwrap.identifier.clone())
            }
            None => {
                let bytes = match agg.op {
                    RangeOp::CountOverTime | RangeOp::Rate => false,
                    RangeOp::BytesOverTime | RangeOp::BytesRate => true,
                    _ => return None,
                };
                if equal.is_empty() && compare.is_empty() {
                    return None;
                }
                Read::Count {
                    bytes,
                    equal,
                    compare,
                }
            }
        };
        Some(ValueColumn {
            parser,
            read,
            drop_errors,
            groups: grouping.labels.clone(),
        })
    }

    pub fn read(&self) -> &Read {
        &self.read
    }

    /// Whether the columns answer for a block of a stream labelled `labels`, whose field
    /// summaries are `summaries`.
    pub fn answers(&self, summaries: &[ParserSummary], labels: &Labels) -> bool {
        let (Some(parsed), Some(metadata)) = (
            summaries.iter().find(|s| s.parser == self.parser),
            summaries.iter().find(|s| s.parser == PARSER_METADATA),
        ) else {
            return false;
        };
        // A count sees the lines the parser failed on in the error column (`read_columns`),
        // but a value column leaves them out.
        let numbers = match &self.read {
            Read::Unwrap(_) => true,
            Read::Count { compare, .. } => !compare.is_empty(),
        };
        if (numbers && parsed.errors > 0 && !self.drop_errors) || !metadata.complete {
            return false;
        }
        let reserved = |n: &str| n.starts_with("__") || n.ends_with(DUPLICATE_SUFFIX);
        let readable =
            |f: &str| !reserved(f) && labels.get(f).is_none() && metadata.field(f).is_none();
        let fields_ok = match &self.read {
            Read::Unwrap(f) => readable(f),
            Read::Count { equal, compare, .. } => {
                equal.iter().all(|(f, _)| readable(f)) && compare.iter().all(|(f, ..)| readable(f))
            }
        };
        fields_ok
            && self.groups.iter().all(|g| {
                !reserved(g)
                    && (labels.get(g).is_some()
                        || (parsed.complete
                            && parsed.field(g).is_none()
                            && metadata.field(g).is_none()))
            })
    }
}

/// `__error__=""`.
fn is_no_error(f: &LabelFilterExpr) -> bool {
    matches!(f, LabelFilterExpr::String(m)
        if m.name == ERROR_LABEL && m.op == MatchOp::Eq && m.value.is_empty())
}

/// Visits the entries of block `b` in `[start, end)` from the columns `col` reads, through
/// [`EntryVisitor::valued`]. `Ok(None)` when the lines must be read instead: the block lacks a
/// column, or (a count without an error filter) a line the parser failed on passes the
/// filters, whose error only the line path gives. Else whether the scan must stop.
/// `stop_at(i, stats)` is `scan`'s check, every few entries, that the query goes on.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_columns(
    col: &ValueColumn,
    b: &BlockRef<'_>,
    block: &mut DecodedBlock,
    (dicts, values): (&mut Vec<Dictionary>, &mut Vec<Vec<f64>>),
    (start, end): (i64, i64),
    stats: &mut QueryStats,
    v: &mut dyn EntryVisitor,
    stop_at: &dyn Fn(usize, &mut QueryStats) -> bool,
) -> Result<Option<bool>, ChunkError> {
    let in_range = |ts: i64| ts >= start && ts < end;
    let found = match &col.read {
        Read::Unwrap(field) => block.decode_values(b, (col.parser, field))?,
        Read::Count { equal, compare, .. } => {
            let words: Vec<&str> = equal.iter().map(|(f, _)| f.as_str()).collect();
            let numbers: Vec<&str> = compare.iter().map(|(f, ..)| f.as_str()).collect();
            block.decode_filter_columns(b, col.parser, (&words, &numbers), dicts, values)?
        }
    };
    if !found {
        return Ok(None);
    }
    // For counts: the code of each filter's value in its column (`None`: no line passes),
    // then the parser's error column.
    let (filters, failed) = dicts.split_at(dicts.len().saturating_sub(1));
    let wanted: Option<Vec<u8>> = match &col.read {
        Read::Count { equal, .. } => equal
            .iter()
            .zip(filters)
            .map(|((_, want), d)| d.values.iter().position(|x| x == want).map(|k| k as u8 + 1))
            .collect(),
        Read::Unwrap(_) => None,
    };
    let failed = |i: usize| failed.first().is_some_and(|e| e.codes.get(i) == Some(&1));
    let compared: &[(String, CmpOp, f64)] = match &col.read {
        Read::Count { compare, .. } => compare,
        Read::Unwrap(_) => &[],
    };
    // A line without the field fails a numeric filter, as on the line path.
    let passes = |i: usize| {
        wanted
            .as_ref()
            .is_some_and(|w| w.iter().zip(filters).all(|(c, d)| d.codes[i] == *c))
            && compared
                .iter()
                .zip(values.iter())
                .all(|((_, op, x), v)| !v[i].is_nan() && cmp(*op, v[i], *x))
    };
    if matches!(col.read, Read::Count { .. })
        && !col.drop_errors
        && (0..block.len()).any(|i| in_range(block.ts(i)) && failed(i) && passes(i))
    {
        return Ok(None);
    }
    stats.compressed_bytes += b.comp.len() as u64;
    for i in 0..block.len() {
        let ts = block.ts(i);
        if in_range(ts) {
            stats.lines_processed += 1;
            stats.bytes_processed += block.line_len(i) as u64;
            match &col.read {
                Read::Unwrap(_) => {
                    let value = block.value(i);
                    if !value.is_nan() {
                        v.valued(ts, value);
                    }
                }
                Read::Count { bytes, .. } => {
                    if passes(i) && !failed(i) {
                        let one = if *bytes {
                            block.line_len(i) as f64
                        } else {
                            1.0
                        };
                        v.valued(ts, one);
                    }
                }
            }
        }
        if stop_at(i, stats) {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}
