//! The lexer: a template's text cut into text items and the tokens of its actions (`{{ }}`,
//! with `{{-`/`-}}` trimming and comments), numbers and quoted strings read as Go reads them.

use super::*;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// `.name`
    Field(String),
    /// `.`
    Dot,
    /// `$name` or `$`
    Var(String),
    Ident(String),
    Lit(Value),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) offset: usize,
    /// Whether whitespace separates this token from the previous one.
    pub(super) spaced: bool,
}

pub(super) enum Item {
    Text(String),
    Action { offset: usize, toks: Vec<Token> },
}

pub(super) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits the template into text and tokenised actions, applying trim markers and dropping
/// comments.
pub(super) fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut pos = 0;
    let mut trim_next = false;
    while pos <= b.len() {
        let Some(rel) = src[pos..].find("{{") else {
            let mut text = &src[pos..];
            if trim_next {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                items.push(Item::Text(text.to_string()));
            }
            break;
        };
        let start = pos + rel;
        let mut text = &src[pos..start];
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let mut p = start + 2;
        if b.get(p) == Some(&b'-') && b.get(p + 1).is_some_and(|&c| is_space(c)) {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']);
            p += 2;
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        if src[p..].starts_with("/*") {
            let Some(end) = src[p + 2..].find("*/") else {
                return perr(start, "unclosed comment");
            };
            let mut q = p + 2 + end + 2;
            if src[q..].starts_with("}}") {
                trim_next = false;
                pos = q + 2;
            } else if q < b.len() && is_space(b[q]) && src[q + 1..].starts_with("-}}") {
                q += 4;
                trim_next = true;
                pos = q;
            } else {
                return perr(q, "comment ends before closing delimiter");
            }
            continue;
        }
        let (toks, end, trim) = lex_action(src, p)?;
        items.push(Item::Action {
            offset: start,
            toks,
        });
        trim_next = trim;
        pos = end;
    }
    Ok(items)
}

/// Tokenises one action starting at `p`; returns the tokens, the offset after `}}` and whether
/// a right trim marker was present.
pub(super) fn lex_action(
    src: &str,
    mut p: usize,
) -> Result<(Vec<Token>, usize, bool), TemplateError> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut paren = 0usize;
    loop {
        let mut spaced = false;
        while p < b.len() && is_space(b[p]) {
            p += 1;
            spaced = true;
        }
        if p >= b.len() {
            return perr(p, "unclosed action");
        }
        let rest = &src[p..];
        if spaced && rest.starts_with("-}}") {
            if paren > 0 {
                return perr(p, "unclosed left paren");
            }
            return Ok((toks, p + 3, true));
        }
        if rest.starts_with("}}") {
            if paren > 0 {
                return perr(p, "unclosed left paren");
            }
            return Ok((toks, p + 2, false));
        }
        let start = p;
        let tok;
        (tok, p) = lex_token(src, p, &mut paren)?;
        toks.push(Token {
            tok,
            offset: start,
            spaced,
        });
    }
}

/// Reads the token at `p` inside an action, counting parentheses in `paren`; returns it with
/// the offset after it.
fn lex_token(src: &str, p: usize, paren: &mut usize) -> Result<(Tok, usize), TemplateError> {
    let b = src.as_bytes();
    let c = b[p];
    Ok(match c {
        b'|' => (Tok::Pipe, p + 1),
        b'(' => {
            *paren += 1;
            (Tok::LParen, p + 1)
        }
        b')' => {
            if *paren == 0 {
                return perr(p, "unexpected right paren");
            }
            *paren -= 1;
            (Tok::RParen, p + 1)
        }
        b',' => (Tok::Comma, p + 1),
        b':' => {
            if b.get(p + 1) != Some(&b'=') {
                return perr(p, "expected :=");
            }
            (Tok::Declare, p + 2)
        }
        b'=' => (Tok::Assign, p + 1),
        b'"' => {
            let (s, end) = lex_quoted(src, p)?;
            (Tok::Lit(Value::Str(s)), end)
        }
        b'`' => {
            let Some(end) = src[p + 1..].find('`') else {
                return perr(p, "unterminated raw quoted string");
            };
            let s = src[p + 1..p + 1 + end].to_string();
            (Tok::Lit(Value::Str(s)), p + end + 2)
        }
        b'\'' => {
            let (ch, end) = lex_char(src, p)?;
            (Tok::Lit(Value::Int(i64::from(u32::from(ch)))), end)
        }
        b'$' => {
            let end = ident_end(b, p + 1);
            (Tok::Var(src[p..end].to_string()), end)
        }
        b'.' if b.get(p + 1).is_some_and(|c| c.is_ascii_digit()) => lex_number_token(src, p)?,
        b'.' => lex_field(src, p),
        b'0'..=b'9' => lex_number_token(src, p)?,
        b'+' | b'-'
            if b.get(p + 1)
                .is_some_and(|&c| c.is_ascii_digit() || c == b'.') =>
        {
            lex_number_token(src, p)?
        }
        c if is_ident_byte(c) || c >= 0x80 => lex_word(src, p),
        _ => {
            let ch = src[p..].chars().next().unwrap_or('?');
            return perr(p, format!("unexpected {ch:?} in action"));
        }
    })
}

/// The offset after the identifier bytes starting at `p`.
fn ident_end(b: &[u8], mut p: usize) -> usize {
    while p < b.len() && is_ident_byte(b[p]) {
        p += 1;
    }
    p
}

fn lex_number_token(src: &str, p: usize) -> Result<(Tok, usize), TemplateError> {
    let (v, end) = lex_number(src, p)?;
    Ok((Tok::Lit(v), end))
}

/// `.name` (a field) or `.` alone (the dot) at `p`.
fn lex_field(src: &str, p: usize) -> (Tok, usize) {
    let b = src.as_bytes();
    let q = p + 1;
    if q < b.len() && is_ident_byte(b[q]) && !b[q].is_ascii_digit() {
        let end = ident_end(b, q);
        (Tok::Field(src[q..end].to_string()), end)
    } else {
        (Tok::Dot, q)
    }
}

/// A word at `p`: `true`, `false`, `nil` or an identifier (a function or keyword name).
fn lex_word(src: &str, p: usize) -> (Tok, usize) {
    let b = src.as_bytes();
    let mut end = p;
    while end < b.len() && (is_ident_byte(b[end]) || b[end] >= 0x80) {
        end += 1;
    }
    let tok = match &src[p..end] {
        "true" => Tok::Lit(Value::Bool(true)),
        "false" => Tok::Lit(Value::Bool(false)),
        "nil" => Tok::Nil,
        w => Tok::Ident(w.to_string()),
    };
    (tok, end)
}

pub(super) fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Lexes a Go number literal at `p`: decimal, hex, octal or binary integers (with `_`
/// separators) and decimal floats.
pub(super) fn lex_number(src: &str, p: usize) -> Result<(Value, usize), TemplateError> {
    let b = src.as_bytes();
    let mut q = p;
    if b[q] == b'+' || b[q] == b'-' {
        q += 1;
    }
    while q < b.len() {
        let c = b[q];
        let prev = b[q - 1];
        let exp_sign = (c == b'+' || c == b'-') && matches!(prev, b'e' | b'E' | b'p' | b'P');
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || exp_sign {
            q += 1;
        } else {
            break;
        }
    }
    let text = &src[p..q];
    match parse_go_number(text) {
        Some(v) => Ok((v, q)),
        None => perr(p, format!("bad number syntax: {text:?}")),
    }
}

pub(super) fn parse_go_number(text: &str) -> Option<Value> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') {
        return None;
    }
    let clean: String = body.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if let Ok(u) = u64::from_str_radix(digits, radix) {
        if neg {
            return if u <= i64::MAX as u64 + 1 {
                Some(Value::Int((u as i64).wrapping_neg()))
            } else {
                Some(Value::Float(-(u as f64)))
            };
        }
        return Some(if u <= i64::MAX as u64 {
            Value::Int(u as i64)
        } else {
            Value::Float(u as f64)
        });
    }
    if radix != 10
        || !digits
            .bytes()
            .all(|c| c.is_ascii_digit() || b".e+-".contains(&c))
    {
        return None;
    }
    let f: f64 = digits.parse().ok()?;
    Some(Value::Float(if neg { -f } else { f }))
}

/// Lexes a double-quoted Go string literal starting at `p` (the opening quote).
pub(super) fn lex_quoted(src: &str, p: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = src[p + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, p + 1 + i + 1)),
            '\n' => return perr(p, "unterminated quoted string"),
            '\\' => {
                let rest = &src[p + 1 + i + 1..];
                let (ch, used) = unescape(rest, '"').ok_or_else(|| TemplateError::Parse {
                    offset: p + 1 + i,
                    msg: "invalid escape in quoted string".into(),
                })?;
                out.push(ch);
                for _ in 0..used {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    perr(p, "unterminated quoted string")
}

/// Lexes a Go character constant like `'a'` or `'\n'` starting at `p`.
pub(super) fn lex_char(src: &str, p: usize) -> Result<(char, usize), TemplateError> {
    let rest = &src[p + 1..];
    let mut it = rest.chars();
    let (ch, used) = match it.next() {
        Some('\\') => match unescape(&rest[1..], '\'') {
            Some((c, n)) => (
                c,
                1 + rest[1..].chars().take(n).map(char::len_utf8).sum::<usize>(),
            ),
            None => return perr(p, "invalid escape in character constant"),
        },
        Some('\'') | Some('\n') | None => return perr(p, "bad character constant"),
        Some(c) => (c, c.len_utf8()),
    };
    if !rest[used..].starts_with('\'') {
        return perr(p, "unterminated character constant");
    }
    Ok((ch, p + 1 + used + 1))
}

/// Decodes the escape after a backslash; returns the character and how many characters of
/// `rest` it used.
pub(super) fn unescape(rest: &str, quote: char) -> Option<(char, usize)> {
    let mut it = rest.chars();
    let c = it.next()?;
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        c if c == quote => Some(c),
        _ => None,
    };
    if let Some(s) = simple {
        return Some((s, 1));
    }
    let (len, radix) = match c {
        'x' => (2, 16),
        'u' => (4, 16),
        'U' => (8, 16),
        '0'..='7' => (3, 8),
        _ => return None,
    };
    let start = if radix == 8 { 0 } else { 1 };
    let digits: String = rest.chars().skip(start).take(len).collect();
    if digits.chars().count() != len {
        return None;
    }
    let n = u32::from_str_radix(&digits, radix).ok()?;
    let ch = if c == 'x' || radix == 8 {
        // Bytes above 0x7f cannot stand alone in a Rust string; keep them as U+FFFD.
        if n > 0xff {
            return None;
        }
        if n < 0x80 {
            char::from(n as u8)
        } else {
            '\u{fffd}'
        }
    } else {
        char::from_u32(n)?
    };
    Some((ch, start + len))
}
