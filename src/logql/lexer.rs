//! The LogQL lexer: turns query text into [`Token`]s with 1-based line and column, the way
//! Loki's `lex.go` does. Each kind of token is a nom parser (numbers, strings with Go escapes,
//! raw strings, ranges, words, operators); the recursive-descent parser consumes the tokens. Keywords are case-insensitive; function names (`rate`, `sum`,
//! `bytes`, `ip`...) are keywords only when followed by `(` or by `by (`/`without (`, so
//! they stay usable as label names; a number glued to a unit becomes a duration (`250ms`)
//! or a byte size (`20MB`); `[...]` is read whole as a range. A lexing error becomes a
//! [`Tok::Error`] token, so the parser reports it where it meets it.

use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_until, take_while, take_while_m_n};
use nom::character::complete::{char, digit0, digit1, multispace1, one_of, satisfy};
use nom::combinator::{map, map_res, opt, recognize, value};
use nom::error::Error as NomError;
use nom::sequence::{delimited, pair, preceded, tuple};
use nom::{IResult, Parser};

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
/// Each token is recognised by a nom parser over the remaining input; positions are 1-based
/// lines and columns counted in characters, as Loki reports them.
pub(super) fn tokenize(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut at = Position::default();
    let mut rest = input;
    loop {
        rest = skip_trivia(rest);
        at.advance(input, rest);
        let (next, tok) = if rest.is_empty() {
            (rest, Tok::Eof)
        } else {
            token(rest)
        };
        let last = matches!(tok, Tok::Eof | Tok::Error(_));
        out.push(Token {
            tok,
            line: at.line,
            col: at.col,
        });
        if last {
            return out;
        }
        rest = next;
    }
}

/// Line and column of a byte offset, advanced incrementally.
struct Position {
    offset: usize,
    line: usize,
    col: usize,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            offset: 0,
            line: 1,
            col: 1,
        }
    }
}

impl Position {
    /// Moves to where `rest` starts within `input`.
    fn advance(&mut self, input: &str, rest: &str) {
        let to = input.len() - rest.len();
        for c in input[self.offset..to].chars() {
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        self.offset = to;
    }
}

type Lexed<'a> = (&'a str, Tok);

/// Skips whitespace and `#` comments.
fn skip_trivia(mut i: &str) -> &str {
    let comment = recognize(pair(
        char::<&str, NomError<&str>>('#'),
        take_while(|c| c != '\n'),
    ));
    let mut trivia = alt((multispace1, comment));
    while let Ok((rest, _)) = trivia.parse(i) {
        i = rest;
    }
    i
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

/// One token at the start of non-empty `i`.
fn token(i: &str) -> Lexed<'_> {
    let mut chars = i.chars();
    let c = chars.next().expect("bug: token() on empty input");
    let second = chars.next();
    match c {
        '0'..='9' => number(i),
        '.' if second.is_some_and(|d| d.is_ascii_digit()) => number(i),
        '"' => string(i),
        '`' => raw_string(i),
        '[' => range(i),
        '-' => minus(i),
        '\0' => (&i[1..], Tok::Error("invalid character NUL".to_string())),
        c if is_ident_start(c) => word(i),
        _ => operator(i),
    }
}

/// `12`, `1.5`, `.5`, `1e3`, `2.5E-3`; glued to a unit it becomes a duration or byte size.
fn number(i: &str) -> Lexed<'_> {
    let exponent = tuple((one_of("eE"), opt(one_of("+-")), digit1));
    let mut text = recognize(tuple((
        digit0::<&str, NomError<&str>>,
        opt(pair(char('.'), digit0)),
        opt(exponent),
    )));
    let (rest, text) = text
        .parse(i)
        .expect("bug: a number starts with a digit or '.'");
    unit_suffix(text, rest).unwrap_or((rest, Tok::Number(text.to_string())))
}

/// A unit glued to `number` (`5m`, `1h30m`, `5KB`) when the whole word parses as a duration,
/// else as a byte size; `None` leaves the input to the caller.
fn unit_suffix<'a>(number: &str, rest: &'a str) -> Option<Lexed<'a>> {
    let suffix = |accept: fn(char) -> bool| -> (&'a str, &'a str) {
        take_while::<_, &str, NomError<&str>>(move |c: char| {
            !c.is_whitespace() && (c.is_numeric() || c == '.' || accept(c))
        })
        .parse(rest)
        .expect("bug: take_while cannot fail")
    };
    let (after, unit) = suffix(is_duration_rune);
    if !unit.is_empty() {
        if let Ok(d) = parse_duration(&format!("{number}{unit}")) {
            return Some((after, Tok::Duration(d)));
        }
    }
    if number == "-" {
        return None;
    }
    let (after, unit) = suffix(is_bytes_rune);
    if !unit.is_empty() {
        if let Ok(b) = parse_bytes(&format!("{number}{unit}")) {
            return Some((after, Tok::Bytes(b)));
        }
    }
    None
}

/// `-`, a parser flag (`--strict`), or a negative duration (`-5m`).
fn minus(i: &str) -> Lexed<'_> {
    let rest = &i[1..];
    let mut flag = recognize(pair(
        tag::<_, &str, NomError<&str>>("--"),
        take_while(|c: char| c.is_alphabetic() || c == '-'),
    ));
    if let Ok((after, text)) = flag.parse(i) {
        if let Some(known) = PARSER_FLAGS.iter().find(|f| **f == text) {
            return (after, Tok::Flag(known));
        }
    }
    unit_suffix("-", rest).unwrap_or((rest, Tok::Op("-")))
}

/// A double-quoted string with Go escapes.
fn string(i: &str) -> Lexed<'_> {
    let not_terminated = |rest| (rest, Tok::Error("literal not terminated".to_string()));
    let mut rest = &i[1..];
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut plain = take_while::<_, &str, NomError<&str>>(|c| !matches!(c, '"' | '\\' | '\n'));
        let (after, text) = plain.parse(rest).expect("bug: take_while cannot fail");
        out.extend_from_slice(text.as_bytes());
        rest = after;
        match rest.chars().next() {
            None | Some('\n') => return not_terminated(rest),
            Some('"') => {
                rest = &rest[1..];
                break;
            }
            _ => match escape(&rest[1..]) {
                Ok((after, bytes)) => {
                    out.extend_from_slice(&bytes);
                    rest = after;
                }
                Err(_) => return (rest, Tok::Error("invalid char escape".to_string())),
            },
        }
    }
    match String::from_utf8(out) {
        Ok(s) => (rest, Tok::Str(s)),
        Err(_) => (rest, Tok::Error("invalid UTF-8 rune".to_string())),
    }
}

/// One Go escape sequence after its backslash: `\n`, `\x41`, `\101`, `\u00e9`, `\U0001F680`.
fn escape(i: &str) -> IResult<&str, Vec<u8>> {
    let simple = alt((
        value(vec![0x07], char('a')),
        value(vec![0x08], char('b')),
        value(vec![0x0c], char('f')),
        value(vec![b'\n'], char('n')),
        value(vec![b'\r'], char('r')),
        value(vec![b'\t'], char('t')),
        value(vec![0x0b], char('v')),
        value(vec![b'\\'], char('\\')),
        value(vec![b'"'], char('"')),
    ));
    let digits = |radix: u32, n: usize| take_while_m_n(n, n, move |c: char| c.is_digit(radix));
    let byte = |radix: u32| move |d: &str| u8::from_str_radix(d, radix);
    let octal = map_res(recognize(pair(one_of("01234567"), digits(8, 2))), byte(8));
    let hex = map_res(preceded(char('x'), digits(16, 2)), byte(16));
    let rune = || {
        move |d: &str| {
            u32::from_str_radix(d, 16)
                .ok()
                .and_then(char::from_u32)
                .map(|ch| ch.to_string().into_bytes())
                .ok_or(())
        }
    };
    let unicode = alt((
        map_res(preceded(char('u'), digits(16, 4)), rune()),
        map_res(preceded(char('U'), digits(16, 8)), rune()),
    ));
    alt((
        simple,
        map(octal, |b| vec![b]),
        map(hex, |b| vec![b]),
        unicode,
    ))
    .parse(i)
}

/// A backquoted raw string; carriage returns are dropped, as in Go.
fn raw_string(i: &str) -> Lexed<'_> {
    let mut body = delimited(
        char::<&str, NomError<&str>>('`'),
        take_while(|c| c != '`'),
        char('`'),
    );
    match body.parse(i) {
        Ok((rest, text)) => (rest, Tok::Str(text.replace('\r', ""))),
        Err(_) => ("", Tok::Error("literal not terminated".to_string())),
    }
}

/// `[5m]`, read whole.
fn range(i: &str) -> Lexed<'_> {
    let mut body = delimited(
        char::<&str, NomError<&str>>('['),
        take_until("]"),
        char(']'),
    );
    match body.parse(i) {
        Ok((rest, text)) => match parse_prometheus_duration(text) {
            Ok(d) => (rest, Tok::Range(d)),
            Err(e) => (rest, Tok::Error(e.to_string())),
        },
        Err(_) => (
            "",
            Tok::Error("missing closing ']' in duration".to_string()),
        ),
    }
}

/// An identifier, keyword, or function name (a function only in call position).
fn word(i: &str) -> Lexed<'_> {
    let mut ident = recognize(pair(
        satisfy::<_, &str, NomError<&str>>(is_ident_start),
        take_while(is_ident_char),
    ));
    let (rest, text) = ident
        .parse(i)
        .expect("bug: a word starts with an identifier character");
    let lower = text.to_lowercase();
    if let Some(f) = FUNCTIONS.iter().find(|f| **f == lower) {
        return (
            rest,
            if is_call(rest) {
                Tok::Func(f)
            } else {
                Tok::Ident(text.to_string())
            },
        );
    }
    if let Some(k) = KEYWORDS.iter().find(|k| **k == lower) {
        return (rest, Tok::Keyword(k));
    }
    (rest, Tok::Ident(text.to_string()))
}

/// Whether the input continues with `(`, `by (` or `without (` (spaces allowed).
fn is_call(i: &str) -> bool {
    let space = || take_while::<_, &str, NomError<&str>>(char::is_whitespace);
    let grouping = tuple((
        space(),
        alt((tag_no_case("by"), tag_no_case("without"))),
        space(),
        char('('),
    ));
    let call = tuple((space(), char('(')));
    alt((recognize(call), recognize(grouping))).parse(i).is_ok()
}

/// An operator or punctuation; anything else is one invalid character.
fn operator(i: &str) -> Lexed<'_> {
    let two = TWO_CHAR_OPS.iter().find(|op| i.starts_with(**op));
    if let Some(op) = two {
        return (&i[op.len()..], Tok::Op(op));
    }
    let c = i.chars().next().expect("bug: operator() on empty input");
    let rest = &i[c.len_utf8()..];
    match ONE_CHAR_OPS
        .iter()
        .find(|op| op.starts_with(c) && op.len() == c.len_utf8())
    {
        Some(op) => (rest, Tok::Op(op)),
        None => (rest, Tok::Invalid(c)),
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
