//! Go's `text/template`, the one engine behind LogQL's `line_format` and `label_format` stages
//! and the ruler's alert templates. In: a template's text and a function map ([`Dialect`]:
//! LogQL's, with Loki's and sprig's functions, or Prometheus'); out: a [`Template`] parsed once
//! and rendered many times, per entry (labels, line, timestamp) or per alert ([`AlertData`]).
//!
//! By concern: `lexer` → `parser` (the tree) → `exec` (a render, within step and output
//! limits) over `value`s; `funcs` (LogQL's map), `prometheus` (Prometheus' map and the alert
//! data), `printf` (Go's `fmt`), `time` (Go's time layouts). It uses `logql` only for its one
//! duration and byte-size parser.

mod exec;
mod funcs;
mod lexer;
mod parser;
mod printf;
mod prometheus;
#[cfg(test)]
mod tests;
mod time;
mod value;

use exec::*;
use funcs::*;
use lexer::*;
use parser::*;
use printf::*;
use prometheus::*;
use time::*;
use value::*;

/// Deepest nesting of blocks and parentheses a template may use.
const MAX_DEPTH: usize = 64;
/// Largest output (and largest intermediate string) one render may produce, in bytes.
const MAX_OUTPUT: usize = 1 << 20;
/// Most evaluation steps one render may take (bounds `range` loops).
const MAX_STEPS: usize = 1_000_000;

/// Everything that can go wrong while parsing or rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template: parse error at byte {offset}: {msg}")]
    Parse { offset: usize, msg: String },
    #[error("template: nested too deeply at byte {offset}: limit {MAX_DEPTH} levels")]
    TooDeep { offset: usize },
    #[error("template: exec error: {0}")]
    Exec(String),
    #[error("template: output too large: limit {MAX_OUTPUT} bytes")]
    OutputTooLarge,
    #[error("template: too many evaluation steps: limit {MAX_STEPS}")]
    TooManySteps,
}

fn perr<T>(offset: usize, msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Parse {
        offset,
        msg: msg.into(),
    })
}

pub use prometheus::AlertData;

/// Which function map a template is parsed with: LogQL's (`line_format`, `label_format`: Go's
/// builtins, Loki's and sprig's functions, `__line__` and `__timestamp__`) or Prometheus' (alert
/// labels and annotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    LogQL,
    Prometheus,
}

/// A parsed template, ready to render against many entries.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<Node>,
    labels: Vec<String>,
    opaque: bool,
}

impl Template {
    /// Parses `text` as a Go template using Loki's function map.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        Self::parse_dialect(text, Dialect::LogQL)
    }

    fn parse_dialect(text: &str, dialect: Dialect) -> Result<Template, TemplateError> {
        let items = lex(text)?;
        let mut p = Parser {
            dialect,
            items,
            pos: 0,
            vars: vec!["$".to_string()],
            depth: 0,
            labels: Vec::new(),
            opaque: false,
        };
        let (nodes, end) = p.parse_list()?;
        match end {
            Stop::Eof => {}
            Stop::End => return perr(text.len(), "unexpected end"),
            Stop::Else(o, _) => return perr(o, "unexpected else"),
        }
        let mut labels = p.labels;
        labels.sort();
        labels.dedup();
        Ok(Template {
            nodes,
            labels,
            opaque: p.opaque,
        })
    }

    /// Renders the template for one entry, appending to `out`.
    ///
    /// `vars(name)` is a label's value (`None` when absent, which renders as an empty string);
    /// `line` is `__line__` and `ts_ns` (Unix nanoseconds) is `__timestamp__`.
    pub fn render(
        &self,
        vars: &dyn Fn(&str) -> Option<String>,
        line: &str,
        ts_ns: i64,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        self.run(Value::Labels, vars, line, ts_ns, out)
    }

    /// Renders with `root` as `.` and `$`.
    fn run(
        &self,
        root: Value,
        vars: &dyn Fn(&str) -> Option<String>,
        line: &str,
        ts_ns: i64,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let mut ex = Exec {
            vars,
            line,
            ts_ns,
            stack: vec![("$".to_string(), root.clone())],
            start: out.len(),
            steps: 0,
        };
        match ex.walk(&self.nodes, &root, out) {
            Ok(Flow::Normal) => Ok(()),
            Ok(_) => Err(TemplateError::Exec(
                "break or continue outside range".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Label names the template reads via `.name` (or `$.name`).
    pub fn referenced_labels(&self) -> Vec<String> {
        self.labels.clone()
    }

    /// Every label the template reads, or `None` when it may read others (through a
    /// variable or a parenthesised pipeline holding the labels).
    pub fn read_labels(&self) -> Option<&[String]> {
        (!self.opaque).then_some(&self.labels[..])
    }
}
