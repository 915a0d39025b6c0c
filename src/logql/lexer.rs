//! The LogQL lexer: turns query text into [`Token`]s with 1-based line and column, the way
//! Loki's `lex.go` does. Keywords are case-insensitive; function names (`rate`, `sum`,
//! `bytes`, `ip`...) are keywords only when followed by `(` or by `by (`/`without (`, so
//! they stay usable as label names; a number glued to a unit becomes a duration (`250ms`)
//! or a byte size (`20MB`); `[...]` is read whole as a range. A lexing error becomes a
//! [`Tok::Error`] token, so the parser reports it where it meets it.

use std::fmt;

use super::duration::{parse_bytes, parse_duration, parse_prometheus_duration, Duration};

/// Words that are always keywords, whatever follows them.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "bool",
    "unwrap",
    "offset",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "or",
    "and",
    "unless",
    "json",
    "regexp",
    "logfmt",
    "unpack",
    "pattern",
    "line_format",
    "label_format",
    "decolorize",
    "drop",
    "keep",
];

/// Words that are keywords only in call position.
const FUNCTIONS: &[&str] = &[
    "rate",
    "rate_counter",
    "count_over_time",
    "bytes_rate",
    "bytes_over_time",
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "stdvar_over_time",
    "stddev_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "absent_over_time",
    "vector",
    "sum",
    "avg",
    "max",
    "min",
    "count",
    "stddev",
    "stdvar",
    "bottomk",
    "topk",
    "sort",
    "sort_desc",
    "approx_topk",
    "label_replace",
    "bytes",
    "duration",
    "duration_seconds",
    "ip",
];

const TWO_CHAR_OPS: &[&str] = &["!=", "=~", "!~", "!>", "|=", "|~", "|>", "==", ">=", "<="];
const ONE_CHAR_OPS: &[&str] = &[
    ",", ".", "{", "}", "(", ")", "]", "=", "|", "+", "-", "*", "/", "%", "^", ">", "<",
];
const PARSER_FLAGS: &[&str] = &["--strict", "--keep-empty"];

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Eof,
    Ident(String),
    /// A string literal, already unquoted.
    Str(String),
    /// A number as written (`1.5`, `1e3`).
    Number(String),
    Duration(Duration),
    Bytes(u64),
    /// `[5m]`.
    Range(Duration),
    /// `--strict`, `--keep-empty`.
    Flag(&'static str),
    Op(&'static str),
    Keyword(&'static str),
    Func(&'static str),
    /// A character that starts no token; Loki reports it as an identifier.
    Invalid(char),
    Error(String),
}

impl Tok {
    pub(super) fn is_op(&self, op: &str) -> bool {
        matches!(self, Tok::Op(o) if *o == op)
    }

    pub(super) fn is_keyword(&self, kw: &str) -> bool {
        matches!(self, Tok::Keyword(k) if *k == kw)
    }
}

/// How a token is named in syntax errors, as Loki's yacc tables name them.
impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Eof => f.write_str("$end"),
            Tok::Ident(_) | Tok::Invalid(_) => f.write_str("IDENTIFIER"),
            Tok::Str(_) => f.write_str("STRING"),
            Tok::Number(_) => f.write_str("NUMBER"),
            Tok::Duration(_) => f.write_str("DURATION"),
            Tok::Bytes(_) => f.write_str("BYTES"),
            Tok::Range(_) => f.write_str("RANGE"),
            Tok::Flag(_) => f.write_str("PARSER_FLAG"),
            Tok::Op(s) | Tok::Keyword(s) => f.write_str(s),
            Tok::Func(s) if *s == "ip" || *s == "label_replace" => f.write_str(s),
            Tok::Func(s) => f.write_str(&s.to_uppercase()),
            Tok::Error(msg) => f.write_str(msg),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

/// Splits `input` into tokens, ending with [`Tok::Eof`] or at the first [`Tok::Error`].
pub(super) fn tokenize(input: &str) -> Vec<Token> {
    let mut lexer = Lexer::new(input);
    let mut out = Vec::new();
    loop {
        let token = lexer.next_token();
        let last = matches!(token.tok, Tok::Eof | Tok::Error(_));
        out.push(token);
        if last {
            return out;
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    /// (line, column) of each char, plus one entry for the end of input.
    pos: Vec<(usize, usize)>,
    i: usize,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn is_duration_rune(c: char) -> bool {
    matches!(c, 'n' | 'u' | 'µ' | 'm' | 's' | 'h' | 'd' | 'w' | 'y')
}

fn is_bytes_rune(c: char) -> bool {
    matches!(c, 'B' | 'i' | 'k' | 'K' | 'M' | 'G' | 'T' | 'P')
}

impl Lexer {
    fn new(input: &str) -> Self {
        let chars: Vec<char> = input.chars().collect();
        let mut pos = Vec::with_capacity(chars.len() + 1);
        let (mut line, mut col) = (1, 1);
        for &c in &chars {
            pos.push((line, col));
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        pos.push((line, col));
        Lexer { chars, pos, i: 0 }
    }

    fn peek(&self, offset: usize) -> Option<char> {
        self.chars.get(self.i + offset).copied()
    }

    fn token(&self, start: usize, tok: Tok) -> Token {
        let (line, col) = self.pos[start];
        Token { tok, line, col }
    }

    fn next_token(&mut self) -> Token {
        loop {
            match self.peek(0) {
                Some(c) if is_space(c) => self.i += 1,
                Some('#') => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
        let start = self.i;
        let Some(c) = self.peek(0) else {
            return self.token(start, Tok::Eof);
        };
        let tok = match c {
            '0'..='9' => self.number(),
            '.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
            '"' => self.string(),
            '`' => self.raw_string(),
            '[' => self.range(),
            '-' => self.minus(),
            '\0' => {
                self.i += 1;
                Tok::Error("invalid character NUL".to_string())
            }
            c if is_ident_start(c) => self.word(),
            _ => self.operator(),
        };
        self.token(start, tok)
    }

    fn number(&mut self) -> Tok {
        let start = self.i;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if self.peek(0) == Some('.') {
            self.i += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek(1), Some('+' | '-')));
            if self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1 + sign;
                while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
        }
        let text: String = self.chars[start..self.i].iter().collect();
        if let Some(tok) = self.unit_suffix(&text) {
            return tok;
        }
        Tok::Number(text)
    }

    /// Reads a unit glued to a number (`5m`, `1h30m`, `5KB`) when the whole word parses as
    /// a duration, else as a byte size; leaves the input untouched otherwise.
    fn unit_suffix(&mut self, number: &str) -> Option<Tok> {
        let suffix_len = |accept: fn(char) -> bool| {
            self.chars[self.i..]
                .iter()
                .take_while(|c| !c.is_whitespace() && (c.is_numeric() || **c == '.' || accept(**c)))
                .count()
        };
        let n = suffix_len(is_duration_rune);
        if n > 0 {
            let word: String = number
                .chars()
                .chain(self.chars[self.i..self.i + n].iter().copied())
                .collect();
            if let Ok(d) = parse_duration(&word) {
                self.i += n;
                return Some(Tok::Duration(d));
            }
        }
        if number == "-" {
            return None;
        }
        let n = suffix_len(is_bytes_rune);
        if n > 0 {
            let word: String = number
                .chars()
                .chain(self.chars[self.i..self.i + n].iter().copied())
                .collect();
            if let Ok(b) = parse_bytes(&word) {
                self.i += n;
                return Some(Tok::Bytes(b));
            }
        }
        None
    }

    fn minus(&mut self) -> Tok {
        self.i += 1;
        if self.peek(0) == Some('-') {
            let n = self.chars[self.i..]
                .iter()
                .take_while(|c| c.is_alphabetic() || **c == '-')
                .count();
            let flag: String = std::iter::once('-')
                .chain(self.chars[self.i..self.i + n].iter().copied())
                .collect();
            if let Some(known) = PARSER_FLAGS.iter().find(|f| **f == flag) {
                self.i += n;
                return Tok::Flag(known);
            }
        }
        if let Some(tok) = self.unit_suffix("-") {
            return tok;
        }
        Tok::Op("-")
    }

    fn string(&mut self) -> Tok {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Tok::Error("literal not terminated".to_string());
            };
            self.i += 1;
            match c {
                '"' => break,
                '\n' => return Tok::Error("literal not terminated".to_string()),
                '\\' => {
                    if let Err(msg) = self.escape(&mut out) {
                        return Tok::Error(msg);
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        match String::from_utf8(out) {
            Ok(s) => Tok::Str(s),
            Err(_) => Tok::Error("invalid UTF-8 rune".to_string()),
        }
    }

    /// Decodes one Go escape sequence after a backslash into `out`.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let invalid = || "invalid char escape".to_string();
        let c = self.peek(0).ok_or_else(invalid)?;
        self.i += 1;
        let simple = match c {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        let (digits, radix, first) = match c {
            '0'..='7' => (2, 8, c.to_digit(8)),
            'x' => (2, 16, None),
            'u' => (4, 16, None),
            'U' => (8, 16, None),
            _ => return Err(invalid()),
        };
        let mut value = first.unwrap_or(0);
        for _ in 0..digits {
            let d = self
                .peek(0)
                .and_then(|d| d.to_digit(radix))
                .ok_or_else(invalid)?;
            self.i += 1;
            value = value * radix + d;
        }
        match c {
            '0'..='7' | 'x' => {
                out.push(u8::try_from(value).map_err(|_| invalid())?);
            }
            _ => {
                let ch = char::from_u32(value).ok_or_else(invalid)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
        }
        Ok(())
    }

    fn raw_string(&mut self) -> Tok {
        self.i += 1;
        let mut out = String::new();
        loop {
            match self.peek(0) {
                None => return Tok::Error("literal not terminated".to_string()),
                Some('`') => {
                    self.i += 1;
                    return Tok::Str(out);
                }
                Some('\r') => self.i += 1,
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn range(&mut self) -> Tok {
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek(0) {
            self.i += 1;
            if c == ']' {
                let text: String = self.chars[start..self.i - 1].iter().collect();
                return match parse_prometheus_duration(&text) {
                    Ok(d) => Tok::Range(d),
                    Err(e) => Tok::Error(e.to_string()),
                };
            }
        }
        Tok::Error("missing closing ']' in duration".to_string())
    }

    fn word(&mut self) -> Tok {
        let start = self.i;
        while self.peek(0).is_some_and(is_ident_char) {
            self.i += 1;
        }
        let text: String = self.chars[start..self.i].iter().collect();
        let lower = text.to_lowercase();
        if let Some(f) = FUNCTIONS.iter().find(|f| **f == lower) {
            return if self.is_call() {
                Tok::Func(f)
            } else {
                Tok::Ident(text)
            };
        }
        if let Some(k) = KEYWORDS.iter().find(|k| **k == lower) {
            return Tok::Keyword(k);
        }
        Tok::Ident(text)
    }

    /// Whether the next non-space input is `(`, `by (` or `without (`.
    fn is_call(&self) -> bool {
        let rest = &self.chars[self.i..];
        let skip = |from: usize| {
            from + rest[from..]
                .iter()
                .take_while(|c| c.is_whitespace())
                .count()
        };
        let at = skip(0);
        if rest.get(at) == Some(&'(') {
            return true;
        }
        for word in ["by", "without"] {
            let len = word.len();
            let matches_word = rest.len() >= at + len
                && rest[at..at + len]
                    .iter()
                    .zip(word.chars())
                    .all(|(c, w)| c.to_ascii_lowercase() == w);
            if matches_word {
                return rest.get(skip(at + len)) == Some(&'(');
            }
        }
        false
    }

    fn operator(&mut self) -> Tok {
        let c = self.chars[self.i];
        if let Some(next) = self.peek(1) {
            let pair: String = [c, next].iter().collect();
            if let Some(op) = TWO_CHAR_OPS.iter().find(|op| **op == pair) {
                self.i += 2;
                return Tok::Op(op);
            }
        }
        self.i += 1;
        let single = c.to_string();
        match ONE_CHAR_OPS.iter().find(|op| **op == single) {
            Some(op) => Tok::Op(op),
            None => Tok::Invalid(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn lexes(input: &str, want: &[Tok]) {
        let got: Vec<Tok> = tokenize(input).into_iter().map(|t| t.tok).collect();
        let mut want = want.to_vec();
        if !matches!(want.last(), Some(Tok::Error(_))) {
            want.push(Tok::Eof);
        }
        assert_eq!(got, want, "tokens of {input:?}");
    }

    fn id(s: &str) -> Tok {
        Tok::Ident(s.to_string())
    }
    fn st(s: &str) -> Tok {
        Tok::Str(s.to_string())
    }
    fn num(s: &str) -> Tok {
        Tok::Number(s.to_string())
    }
    fn dur(nanos: i64) -> Tok {
        Tok::Duration(Duration::from_nanos(nanos))
    }
    fn err(s: &str) -> Tok {
        Tok::Error(s.to_string())
    }
    const S: i64 = 1_000_000_000;

    #[test]
    fn tokens() {
        lexes(
            r#"{app="a"}"#,
            &[Tok::Op("{"), id("app"), Tok::Op("="), st("a"), Tok::Op("}")],
        );
        lexes("a=~`x\\d`", &[id("a"), Tok::Op("=~"), st("x\\d")]);
        lexes(r#""a\"b\\c\n\x41\u00e9\101""#, &[st("a\"b\\c\nAéA")]);
        lexes(r#""\d""#, &[err("invalid char escape")]);
        lexes(r#""abc"#, &[err("literal not terminated")]);
        lexes("\"a\nb\"", &[err("literal not terminated")]);
        lexes("`a\r\nb`", &[st("a\nb")]);
        lexes(
            "250ms 1h15m30.5s 5d",
            &[dur(S / 4), dur(4530 * S + S / 2), dur(5 * 86400 * S)],
        );
        lexes("-5m", &[dur(-300 * S)]);
        lexes("- 5", &[Tok::Op("-"), num("5")]);
        lexes("-5", &[Tok::Op("-"), num("5")]);
        lexes(
            "20MB 1MiB 5KB",
            &[
                Tok::Bytes(20_000_000),
                Tok::Bytes(1 << 20),
                Tok::Bytes(5000),
            ],
        );
        lexes(
            "1.5 .5 1e3 2.5e-3",
            &[num("1.5"), num(".5"), num("1e3"), num("2.5e-3")],
        );
        lexes("5mb", &[dur(300 * S), id("b")]);
        lexes("[5m]", &[Tok::Range(Duration::from_secs(300))]);
        lexes("[5x]", &[err("not a valid duration string: \"5x\"")]);
        lexes("[5m", &[err("missing closing ']' in duration")]);
        lexes(
            "--strict --keep-empty",
            &[Tok::Flag("--strict"), Tok::Flag("--keep-empty")],
        );
        lexes(
            "rate(x) rate > 1",
            &[
                Tok::Func("rate"),
                Tok::Op("("),
                id("x"),
                Tok::Op(")"),
                id("rate"),
                Tok::Op(">"),
                num("1"),
            ],
        );
        lexes(
            "SUM by (a) (",
            &[
                Tok::Func("sum"),
                Tok::Keyword("by"),
                Tok::Op("("),
                id("a"),
                Tok::Op(")"),
                Tok::Op("("),
            ],
        );
        lexes("sum bytes", &[id("sum"), id("bytes")]);
        lexes("JSON | ip", &[Tok::Keyword("json"), Tok::Op("|"), id("ip")]);
        lexes(
            "|= != |~ !~ |> !> == >= <=",
            &["|=", "!=", "|~", "!~", "|>", "!>", "==", ">=", "<="].map(Tok::Op),
        );
        lexes("a # comment\n b", &[id("a"), id("b")]);
        lexes("@ !", &[Tok::Invalid('@'), Tok::Invalid('!')]);
        lexes("ünï_1 _x", &[id("ünï_1"), id("_x")]);
    }

    #[test]
    fn positions_are_one_based_chars() {
        let tokens = tokenize("{ü=\"a\"}\n  |= \"b\"");
        let pos: Vec<(usize, usize)> = tokens.iter().map(|t| (t.line, t.col)).collect();
        assert_eq!(
            pos,
            vec![
                (1, 1),
                (1, 2),
                (1, 3),
                (1, 4),
                (1, 7),
                (2, 3),
                (2, 6),
                (2, 9)
            ]
        );
    }
}
