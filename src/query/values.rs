//! `unwrap` from a value column. A columnar block keeps, for each field that `| json` or
//! `| logfmt` gives a number on every line that has it, that number per line
//! (`storage::columns`, section 7). A range aggregation of the shape
//!
//! ```text
//! op({selector} | json | __error__="" | unwrap field [range]) by (labels)
//! ```
//!
//! then reads the block's timestamps and that column, not its lines: every value the unwrap
//! would convert is already converted, and every line without the field gives no sample, as it
//! does on the line path.
//!
//! [`ValueColumn::for_range`] accepts the query and [`ValueColumn::answers`] each block. Both
//! accept only what makes the column's answer the line's answer:
//! - the pipeline is one plain parser (no arguments, no flags) and `__error__=""` filters, and
//!   the unwrap has no conversion and no filter but `__error__=""`: a column leaves out the
//!   lines the parser failed on, which only an error filter drops too, so a block with parser
//!   errors and no such filter is read whole;
//! - the series labels are a `by` grouping, and each of its names is a stream label, or a name
//!   the block's summary proves no line and no structured metadata gives (a parsed name that is
//!   also a stream label becomes `<name>_extracted`, and leaves the stream's value alone);
//! - the unwrapped name is neither a stream label (the unwrap would read the stream's value)
//!   nor a structured metadata name;
//! - not `avg_over_time`, whose count also sees the entries the unwrap skips.
//!
//! A test compares answers with and without columns over random queries
//! (`column_paths_tests`).

use crate::labels::Labels;
use crate::logql::{
    LabelFilterExpr, LabelParserExpr, MatchOp, RangeAggregationExpr, RangeOp, Stage,
};
use crate::pipeline::labels_builder::DUPLICATE_SUFFIX;
use crate::storage::columns::{ParserSummary, PARSER_JSON, PARSER_LOGFMT, PARSER_METADATA};

/// The column a range aggregation's samples can come from; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueColumn {
    parser: u8,
    field: String,
    /// Whether an `__error__=""` filter drops the lines the parser failed on.
    drop_errors: bool,
    /// The `by` names.
    groups: Vec<String>,
}

impl ValueColumn {
    /// The column `agg` can read, if its shape allows one.
    pub fn for_range(agg: &RangeAggregationExpr) -> Option<ValueColumn> {
        let unwrap = agg.range.unwrap.as_ref()?;
        if agg.op == RangeOp::AvgOverTime || unwrap.conversion.is_some() {
            return None;
        }
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
        for s in rest {
            match s {
                Stage::LabelFilter(f) if is_no_error(f) => drop_errors = true,
                _ => return None,
            }
        }
        for f in &unwrap.post_filters {
            if !is_no_error(f) {
                return None;
            }
            drop_errors = true;
        }
        Some(ValueColumn {
            parser,
            field: unwrap.identifier.clone(),
            drop_errors,
            groups: grouping.labels.clone(),
        })
    }

    /// (parser, field) of the column.
    pub fn field(&self) -> (u8, &str) {
        (self.parser, &self.field)
    }

    /// Whether the column answers for a block of a stream labelled `labels`, whose field
    /// summaries are `summaries`.
    pub fn answers(&self, summaries: &[ParserSummary], labels: &Labels) -> bool {
        let (Some(parsed), Some(metadata)) = (
            summaries.iter().find(|s| s.parser == self.parser),
            summaries.iter().find(|s| s.parser == PARSER_METADATA),
        ) else {
            return false;
        };
        if (parsed.errors > 0 && !self.drop_errors) || !metadata.complete {
            return false;
        }
        let reserved = |n: &str| n.starts_with("__") || n.ends_with(DUPLICATE_SUFFIX);
        let f = self.field.as_str();
        if reserved(f) || labels.get(f).is_some() || metadata.field(f).is_some() {
            return false;
        }
        self.groups.iter().all(|g| {
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
        if m.name == crate::pipeline::labels_builder::ERROR_LABEL && m.op == MatchOp::Eq && m.value.is_empty())
}
