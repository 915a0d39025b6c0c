//! The error of a query that does not parse, with its position when the parser knows it.

/// A query that does not parse. Displays as Loki does:
/// `parse error at line 1, col 23: syntax error: unexpected ...`, or `parse error : ...`
/// for errors that have no position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error{}: {msg}", position(.line, .col))]
pub struct ParseError {
    line: usize,
    col: usize,
    msg: String,
}

fn position(line: &usize, col: &usize) -> String {
    if *line == 0 && *col == 0 {
        " ".to_string()
    } else {
        format!(" at line {line}, col {col}")
    }
}

impl ParseError {
    pub fn new(msg: impl Into<String>, line: usize, col: usize) -> Self {
        ParseError {
            line,
            col,
            msg: msg.into(),
        }
    }

    /// An error about the meaning of a well-formed query, without a position.
    pub fn semantic(msg: impl Into<String>) -> Self {
        Self::new(msg, 0, 0)
    }

    /// 1-based line, or 0 when the error has no position.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column in characters, or 0 when the error has no position.
    pub fn col(&self) -> usize {
        self.col
    }

    /// The message without the `parse error at ...` prefix.
    pub fn message(&self) -> &str {
        &self.msg
    }
}
