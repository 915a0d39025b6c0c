//! LogQL, the query language of Loki: text in, syntax tree out, and back. The lexer turns a
//! query into tokens, the parser builds the `ast` tree (a log query: stream selector plus
//! pipeline stages; or a metric query: aggregations and binary operations over log ranges)
//! and checks what Loki checks at parse time, and the printer writes the tree back as
//! canonical LogQL. Storage uses [`parse_selector`] and [`Matcher::matches`] to pick
//! streams; the query engine walks [`Expr`]; `/format_query` calls [`format_query`]. This
//! module depends on nothing else in the crate.

mod ast;
mod duration;
mod error;
pub mod go;
mod lexer;
mod parser;
mod printer;
#[cfg(test)]
mod tests;

pub use ast::*;
pub use duration::{
    byte_unit, parse_bytes, parse_duration, parse_go_duration, parse_prometheus_duration, Duration,
    DurationError,
};
pub use parser::{
    parse_expr, parse_expr_unvalidated, parse_log_expr, parse_sample_expr, parse_selector,
    validate_pattern, validate_selector, ParseError, ERR_EMPTY_COMPATIBLE_SELECTOR, MAX_DEPTH,
    MAX_INPUT_SIZE,
};
pub use printer::{format_float, format_query, quote, MAX_LINE_WIDTH};
