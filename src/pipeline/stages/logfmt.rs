//! The logfmt stages: `| logfmt [--strict] [--keep-empty]` (every key) and
//! `| logfmt a="key", b` (selected keys). The decoder follows Loki's: bare keys have empty
//! values, quoted values are unescaped only when they contain a backslash, a malformed pair
//! is skipped, and only `--strict` stops at it and reports `LogfmtParserErr` with
//! `logfmt syntax error at pos N : message`.

use super::super::labels_builder::{LabelsBuilder, DUPLICATE_SUFFIX};
use super::json::push_lossy_spaces;
use super::{sanitize_key_bytes, swar, ParserHints};

pub const ERR_LOGFMT: &str = "LogfmtParserErr";

/// A logfmt scanner over one line.
pub struct Decoder<'a> {
    line: &'a [u8],
    pos: usize,
    key: &'a [u8],
    value: Value<'a>,
    /// The last syntax error and its position (1-based), formatted only when asked for.
    err: Option<(usize, SyntaxError)>,
}

#[derive(Debug, Clone, Copy)]
enum SyntaxError {
    Unexpected(u8),
    InvalidKey,
    InvalidQuotedValue,
    UnterminatedQuotedValue,
}

/// A decoded value: a slice of the line, or an unescaped copy.
pub enum Value<'a> {
    Raw(&'a [u8]),
    Owned(Vec<u8>),
}

impl Value<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Raw(b) => b,
            Value::Owned(b) => b,
        }
    }
}

impl<'a> Decoder<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        Decoder {
            line,
            pos: 0,
            key: &[],
            value: Value::Raw(&[]),
            err: None,
        }
    }

    pub fn eol(&self) -> bool {
        self.pos >= self.line.len()
    }

    /// The rest of the line, not scanned yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.line[self.pos.min(self.line.len())..]
    }

    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    pub fn value(&self) -> &[u8] {
        self.value.as_bytes()
    }

    /// The last syntax error: `logfmt syntax error at pos N : message`.
    pub fn err(&self) -> Option<String> {
        let (pos, e) = self.err?;
        let msg = match e {
            SyntaxError::Unexpected(b'\'') => "unexpected '\\''".to_string(),
            SyntaxError::Unexpected(c) if c.is_ascii_graphic() || c == b' ' => {
                format!("unexpected '{}'", c as char)
            }
            SyntaxError::Unexpected(c) => format!("unexpected '\\x{c:02x}'"),
            SyntaxError::InvalidKey => "invalid key".to_string(),
            SyntaxError::InvalidQuotedValue => "invalid quoted value".to_string(),
            SyntaxError::UnterminatedQuotedValue => "unterminated quoted value".to_string(),
        };
        Some(format!("logfmt syntax error at pos {pos} : {msg}"))
    }

    /// Takes `line[start..pos]` as the key when it is not empty; false (a syntax error) when
    /// it is not valid UTF-8.
    fn set_key(&mut self, line: &'a [u8], start: usize, multibyte: bool) -> bool {
        if self.pos > start {
            self.key = &line[start..self.pos];
            if multibyte && invalid_utf8(self.key) {
                self.syntax_error(SyntaxError::InvalidKey);
                return false;
            }
        }
        true
    }

    fn syntax_error(&mut self, e: SyntaxError) {
        self.err = Some((self.pos + 1, e));
    }

    fn unexpected_byte(&mut self, c: u8) {
        self.syntax_error(SyntaxError::Unexpected(c));
    }

    fn skip_value(&mut self) -> bool {
        self.pos = find(self.line, self.pos, Stop::SPACE);
        false
    }

    /// Scans the next pair; false when it was malformed (or the line ended).
    pub fn scan_keyval(&mut self) -> bool {
        self.key = &[];
        self.value = Value::Raw(&[]);
        let line = self.line;
        match line[self.pos..].iter().position(|&c| c > b' ') {
            Some(p) => self.pos += p,
            None => {
                self.pos = line.len();
                return false;
            }
        }
        let start = self.pos;
        let mut multibyte = false;
        let mut p = self.pos;
        loop {
            let stop = if multibyte {
                Stop::KEY
            } else {
                Stop::KEY_ASCII
            };
            p = find(line, p, stop);
            if p >= line.len() {
                self.pos = line.len();
                return self.set_key(line, start, multibyte);
            }
            let c = line[p];
            if c == b'=' {
                self.pos = p;
                if !self.set_key(line, start, multibyte) {
                    return self.skip_value();
                }
                if self.key.is_empty() {
                    self.unexpected_byte(c);
                    return self.skip_value();
                }
                break;
            } else if c == b'"' {
                self.pos = p;
                self.unexpected_byte(c);
                return self.skip_value();
            } else if c <= b' ' {
                self.pos = p;
                return self.set_key(line, start, multibyte);
            } else if c >= 0x80 {
                multibyte = true;
            }
            p += 1;
        }
        // equal
        self.pos += 1;
        if self.pos >= line.len() {
            return true;
        }
        let c = line[self.pos];
        if c <= b' ' {
            return true;
        }
        if c == b'"' {
            return self.quoted_value();
        }
        let start = self.pos;
        let p = find(line, start, Stop::KEY);
        if p < line.len() {
            let c = line[p];
            if c == b'=' || c == b'"' {
                self.pos = p;
                self.unexpected_byte(c);
                return self.skip_value();
            }
            self.pos = p;
            if self.pos > start {
                self.value = Value::Raw(&line[start..self.pos]);
            }
            return true;
        }
        self.pos = line.len();
        if self.pos > start {
            self.value = Value::Raw(&line[start..self.pos]);
        }
        true
    }

    fn quoted_value(&mut self) -> bool {
        let line = self.line;
        let start = self.pos;
        let mut has_esc = false;
        let mut p = self.pos + 1;
        // A backslash escapes the byte after it, whatever it is.
        while let Some(i) = line
            .get(p..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            if line[p + i] == b'\\' {
                has_esc = true;
                p += i + 2;
            } else {
                self.pos = p + i + 1;
                if has_esc {
                    match unquote(&line[start..self.pos]) {
                        Some(v) => self.value = Value::Owned(v),
                        None => {
                            self.syntax_error(SyntaxError::InvalidQuotedValue);
                            return false;
                        }
                    }
                } else {
                    let (s, e) = (start + 1, self.pos - 1);
                    if e > s {
                        self.value = Value::Raw(&line[s..e]);
                    }
                }
                return true;
            }
        }
        self.pos = line.len();
        self.syntax_error(SyntaxError::UnterminatedQuotedValue);
        false
    }
}

/// The bytes [`find`] stops at.
#[derive(Clone, Copy)]
struct Stop {
    /// `=` and `"`.
    delimiters: bool,
    /// Bytes from 0x80 on.
    high: bool,
}

impl Stop {
    /// The end of a value to skip: a space or control byte.
    const SPACE: Stop = Stop {
        delimiters: false,
        high: false,
    };
    /// The end of a key or bare value: also `=` and `"`.
    const KEY: Stop = Stop {
        delimiters: true,
        high: false,
    };
    /// Like [`Stop::KEY`], and at the first byte of a multibyte rune.
    const KEY_ASCII: Stop = Stop {
        delimiters: true,
        high: true,
    };

    fn matches(self, c: u8) -> bool {
        c <= b' ' || (self.delimiters && (c == b'=' || c == b'"')) || (self.high && c >= 0x80)
    }
}

/// The index of the first byte from `at` on that `stop` matches, or `line.len()`.
#[inline]
fn find(line: &[u8], mut at: usize, stop: Stop) -> usize {
    while let Some(x) = swar::load(line, at) {
        let mut m = swar::below(x, 0x21);
        if stop.delimiters {
            m |= swar::eq(x, b'=') | swar::eq(x, b'"');
        }
        if stop.high {
            m |= x & swar::HIGH;
        }
        if m != 0 {
            return at + swar::first(m);
        }
        at += 8;
    }
    while at < line.len() && !stop.matches(line[at]) {
        at += 1;
    }
    at.min(line.len())
}

fn invalid_utf8(b: &[u8]) -> bool {
    match std::str::from_utf8(b) {
        Ok(s) => s.contains('\u{fffd}'),
        Err(_) => true,
    }
}

/// Unquotes a JSON-style quoted string (the logfmt decoder's `unquoteBytes`).
fn unquote(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() < 2 || s[0] != b'"' || s[s.len() - 1] != b'"' {
        return None;
    }
    let s = &s[1..s.len() - 1];
    let mut out = Vec::with_capacity(s.len());
    let mut r = 0;
    while r < s.len() {
        let c = s[r];
        match c {
            b'\\' => {
                r += 1;
                let e = *s.get(r)?;
                match e {
                    b'"' | b'\\' | b'/' | b'\'' => out.push(e),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let hex = |at: usize| -> Option<u32> {
                            let h = s.get(at..at + 4)?;
                            u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
                        };
                        let mut rr = hex(r + 1)?;
                        r += 5;
                        if (0xD800..0xE000).contains(&rr) {
                            let second = if s.get(r..r + 2) == Some(b"\\u") {
                                hex(r + 2)
                            } else {
                                None
                            };
                            match second {
                                Some(r2) if (0xDC00..0xE000).contains(&r2) && rr < 0xDC00 => {
                                    rr = 0x10000 + ((rr - 0xD800) << 10) + (r2 - 0xDC00);
                                    r += 6;
                                }
                                _ => rr = 0xFFFD,
                            }
                        }
                        let ch = char::from_u32(rr).unwrap_or('\u{fffd}');
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    _ => return None,
                }
                r += 1;
            }
            b'"' => return None,
            c if c < 0x80 => {
                out.push(c);
                r += 1;
            }
            _ => {
                let (ch, size) = super::regex::decode_rune(&s[r..]);
                let ch = ch.unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                r += size.max(1);
            }
        }
    }
    Some(out)
}

/// `| logfmt [--strict] [--keep-empty]`; with [`ParserHints`], only the wanted labels are
/// stored (the whole line is still scanned, so that `--strict` errors are the same).
#[derive(Debug, Default)]
pub struct LogfmtParser {
    pub strict: bool,
    pub keep_empty: bool,
    hints: Option<ParserHints>,
    name: String,
    text: String,
}

impl LogfmtParser {
    pub fn new(strict: bool, keep_empty: bool, hints: Option<ParserHints>) -> Self {
        LogfmtParser {
            strict,
            keep_empty,
            hints,
            ..Default::default()
        }
    }

    pub fn hints(&self) -> Option<&ParserHints> {
        self.hints.as_ref()
    }

    pub fn process(&mut self, line: &[u8], lbs: &mut LabelsBuilder) {
        // Without `--strict` (no error to report), the scan stops where no wanted key can
        // follow.
        if let Some(h) = &mut self.hints {
            h.refresh(lbs);
        }
        let lenient = !self.strict;
        let nothing_in = |h: &Option<ParserHints>, text: &[u8]| {
            lenient && h.as_ref().is_some_and(|h| !h.may_appear(text))
        };
        if nothing_in(&self.hints, line) {
            return;
        }
        let mut dec = Decoder::new(line);
        while !dec.eol() {
            if !dec.scan_keyval() {
                if self.strict {
                    break;
                }
                continue;
            }
            if self.hints.as_ref().is_some_and(|h| !h.may_want(dec.key())) {
                continue;
            }
            self.pair(&dec, lbs);
            if nothing_in(&self.hints, dec.rest()) {
                break;
            }
        }
        if self.strict {
            if let Some(e) = dec.err() {
                lbs.set_err(ERR_LOGFMT);
                lbs.set_err_details(&e);
            }
        }
    }

    /// Stores the pair just scanned, when wanted.
    fn pair(&mut self, dec: &Decoder<'_>, lbs: &mut LabelsBuilder) {
        self.name.clear();
        sanitize_key_bytes(dec.key(), true, &mut self.name);
        if self.name.is_empty() {
            return;
        }
        match &self.hints {
            Some(h) => {
                if !h.wanted(&mut self.name) {
                    return;
                }
            }
            None => {
                if lbs.base_has(&self.name) {
                    self.name.push_str(DUPLICATE_SUFFIX);
                }
            }
        }
        let val = dec.value();
        if !self.keep_empty && val.is_empty() {
            return;
        }
        self.text.clear();
        push_lossy_spaces(val, &mut self.text);
        lbs.set_parsed(&self.name, &self.text);
    }
}

/// `| logfmt a="key", b`.
#[derive(Debug)]
pub struct LogfmtExpressionParser {
    /// (label, key in the line), in query order.
    exprs: Vec<(String, String)>,
    strict: bool,
    name: String,
}

impl LogfmtExpressionParser {
    pub fn new(exprs: &[(String, String)], strict: bool) -> Result<Self, String> {
        if exprs.is_empty() {
            return Err("no logfmt expression provided".into());
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for (id, expr) in exprs {
            let key = expr.trim();
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("cannot parse expression [{expr}]: syntax error"));
            }
            // A later expression for the same label replaces the earlier one (a Go map).
            match out.iter_mut().find(|(i, _)| i == id) {
                Some(slot) => slot.1 = key.to_string(),
                None => out.push((id.clone(), key.to_string())),
            }
        }
        Ok(LogfmtExpressionParser {
            exprs: out,
            strict,
            name: String::new(),
        })
    }

    pub fn process(&mut self, line: &[u8], lbs: &mut LabelsBuilder) {
        for (id, _) in &self.exprs {
            if !lbs.base_has(id) {
                lbs.set_parsed(id, "");
            }
        }
        let mut dec = Decoder::new(line);
        while !dec.eol() {
            if !dec.scan_keyval() {
                if self.strict {
                    break;
                }
                continue;
            }
            self.name.clear();
            sanitize_key_bytes(dec.key(), true, &mut self.name);
            if self.name.is_empty() {
                continue;
            }
            let val = dec.value();
            let val: &[u8] = if invalid_utf8(val) { &[] } else { val };
            let mut key = self.name.as_str();
            if let Some((id, _)) = self.exprs.iter().find(|(_, orig)| orig == key) {
                key = id;
            }
            if self.exprs.iter().any(|(id, _)| id == key) {
                let text = String::from_utf8_lossy(val);
                if lbs.base_has(key) {
                    let suffixed = format!("{key}{DUPLICATE_SUFFIX}");
                    lbs.set_parsed(&suffixed, &text);
                } else {
                    let key = key.to_string();
                    lbs.set_parsed(&key, &text);
                }
            }
        }
        if self.strict {
            if let Some(e) = dec.err() {
                lbs.set_err(ERR_LOGFMT);
                lbs.set_err_details(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_stops_where_a_byte_loop_stops() {
        let bytes = [
            b'a', b'=', b'"', b' ', b'\t', 0, 0x20, 0x21, 0x7f, 0x80, 0xc3, 0xff, b'z',
        ];
        let mut seed = 11u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        for _ in 0..3000 {
            let len = next() % 40;
            let line: Vec<u8> = (0..len)
                .map(|_| match next() % 5 {
                    0 => bytes[next() % bytes.len()],
                    _ => b'k',
                })
                .collect();
            for stop in [Stop::SPACE, Stop::KEY, Stop::KEY_ASCII] {
                for at in 0..=len {
                    let want = (at..len).find(|&i| stop.matches(line[i])).unwrap_or(len);
                    assert_eq!(find(&line, at, stop), want, "{line:?} from {at}");
                }
            }
        }
    }
}
