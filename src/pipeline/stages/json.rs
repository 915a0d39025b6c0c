//! The JSON stages: `| json` (every field, nested objects flattened with `_`), `| json a="x.y"`
//! (selected paths) and `| unpack` (labels from a packed entry, `_entry` becomes the line).
//! Loki scans JSON with a permissive byte scanner (grafana/jsonparser) and reports its error
//! texts in `__error_details__`, so that scanner's behaviour is reproduced here: values are
//! delimited, not validated (`-abc` is a number), labels found before an error are kept,
//! arrays and nulls are skipped by `| json`.

use super::super::labels_builder::{LabelsBuilder, DUPLICATE_SUFFIX};
use super::{sanitize_key_bytes, sanitize_label_key, swar, ParserHints};

pub const ERR_JSON: &str = "JSONParserErr";

const MALFORMED_JSON: &str = "Malformed JSON error";
const MALFORMED_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const MALFORMED_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const MALFORMED_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
const UNKNOWN_VALUE_TYPE: &str = "Unknown value type";
const MALFORMED_STRING_ESCAPE: &str = "Encountered an invalid escape sequence in a string";

/// The type of a scanned JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Number,
    Object,
    Array,
    Boolean,
    Null,
}

fn next_token(data: &[u8]) -> Option<usize> {
    match data.first() {
        Some(b' ' | b'\n' | b'\r' | b'\t') => data
            .iter()
            .position(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t')),
        Some(_) => Some(0),
        None => None,
    }
}

/// The index just past the closing quote, and whether a backslash was seen.
#[inline]
fn string_end(data: &[u8]) -> (Option<usize>, bool) {
    let mut at = 0;
    while let Some(x) = swar::load(data, at) {
        let m = swar::eq(x, b'"') | swar::eq(x, b'\\');
        if m != 0 {
            at += swar::first(m);
            break;
        }
        at += 8;
    }
    match data[at.min(data.len())..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
    {
        Some(i) if data[at + i] == b'"' => (Some(at + i + 1), false),
        Some(_) => string_end_escaped(data),
        None => (None, false),
    }
}

/// [`string_end`] of a string with a backslash.
fn string_end_escaped(data: &[u8]) -> (Option<usize>, bool) {
    let mut escaped = false;
    for (i, &c) in data.iter().enumerate() {
        if c == b'"' {
            if !escaped {
                return (Some(i + 1), false);
            }
            let mut j = i as isize - 1;
            loop {
                if j < 0 || data[j as usize] != b'\\' {
                    return (Some(i + 1), true);
                }
                j -= 1;
                if j < 0 || data[j as usize] != b'\\' {
                    break;
                }
                j -= 1;
            }
        } else if c == b'\\' {
            escaped = true;
        }
    }
    (None, escaped)
}

fn block_end(data: &[u8], open: u8, close: u8) -> Option<usize> {
    let mut level = 0i32;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'"' => {
                let (se, _) = string_end(&data[i + 1..]);
                i += se?;
            }
            c if c == open => level += 1,
            c if c == close => {
                level -= 1;
                if level == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn token_end(data: &[u8]) -> usize {
    data.iter()
        .position(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b',' | b'}' | b']'))
        .unwrap_or(data.len())
}

/// jsonparser's `Get(data)`: the first value of `data` (a string without its quotes), its
/// type and the offset just past it.
pub fn get_value(data: &[u8]) -> Result<(&[u8], ValueType, usize), &'static str> {
    let offset = next_token(data).ok_or(MALFORMED_JSON)?;
    let rest = &data[offset..];
    let (ty, end) = match rest[0] {
        b'"' => match string_end(&rest[1..]).0 {
            Some(e) => (ValueType::String, e + 1),
            None => return Err(MALFORMED_STRING),
        },
        b'[' => (
            ValueType::Array,
            block_end(rest, b'[', b']').ok_or(MALFORMED_ARRAY)?,
        ),
        b'{' => (
            ValueType::Object,
            block_end(rest, b'{', b'}').ok_or(MALFORMED_OBJECT)?,
        ),
        c => {
            let end = token_end(rest);
            let value = &rest[..end];
            let ty = match c {
                b't' | b'f' if value == b"true" || value == b"false" => ValueType::Boolean,
                b'u' | b'n' if value == b"null" => ValueType::Null,
                b'0'..=b'9' | b'-' => ValueType::Number,
                _ => return Err(UNKNOWN_VALUE_TYPE),
            };
            (ty, end)
        }
    };
    let value = if ty == ValueType::String {
        &rest[1..end - 1]
    } else {
        &rest[..end]
    };
    Ok((value, ty, offset + end))
}

/// jsonparser's `ObjectEach`: calls `f(key, value, type)` for each member of the object
/// at the start of `data`; `f` may stop the walk with its own error.
pub fn object_each<E, F>(data: &[u8], f: &mut F) -> Result<(), E>
where
    E: From<&'static str>,
    F: FnMut(&[u8], &[u8], ValueType) -> Result<(), E>,
{
    let mut offset = next_token(data).ok_or(MALFORMED_OBJECT)?;
    if data[offset] != b'{' {
        return Err(MALFORMED_OBJECT.into());
    }
    offset += 1;
    offset += next_token(&data[offset..]).ok_or(MALFORMED_JSON)?;
    if data[offset] == b'}' {
        return Ok(());
    }
    let mut key_buf = Vec::new();
    while offset < data.len() {
        match data[offset] {
            b'"' => offset += 1,
            b'}' => return Ok(()),
            _ => return Err(MALFORMED_OBJECT.into()),
        }
        let (end, escaped) = string_end(&data[offset..]);
        let end = end.ok_or(MALFORMED_JSON)?;
        let raw_key = &data[offset..offset + end - 1];
        offset += end;
        let key: &[u8] = if escaped {
            key_buf.clear();
            unescape(raw_key, &mut key_buf).map_err(|_| MALFORMED_STRING_ESCAPE)?;
            &key_buf
        } else {
            raw_key
        };
        offset += next_token(&data[offset..]).ok_or(MALFORMED_JSON)?;
        if data[offset] != b':' {
            return Err(MALFORMED_JSON.into());
        }
        offset += 1;
        let (value, ty, off) = get_value(&data[offset..])?;
        f(key, value, ty)?;
        offset += off;
        offset += next_token(&data[offset..]).ok_or(MALFORMED_ARRAY)?;
        match data[offset] {
            b'}' => return Ok(()),
            b',' => offset += 1,
            _ => return Err(MALFORMED_OBJECT.into()),
        }
        offset += next_token(&data[offset..]).ok_or(MALFORMED_ARRAY)?;
    }
    Err(MALFORMED_OBJECT.into())
}

/// The elements of the array at the start of `data`.
fn array_each<'a>(data: &'a [u8], mut f: impl FnMut(&'a [u8], ValueType) -> bool) {
    let Some(start) = next_token(data) else {
        return;
    };
    if data[start] != b'[' {
        return;
    }
    let mut offset = start + 1;
    let Some(n) = next_token(&data[offset..]) else {
        return;
    };
    offset += n;
    if data[offset] == b']' {
        return;
    }
    loop {
        let Ok((v, t, o)) = get_value(&data[offset..]) else {
            return;
        };
        if o == 0 || !f(v, t) {
            return;
        }
        offset += o;
        let Some(n) = next_token(&data[offset..]) else {
            return;
        };
        offset += n;
        if data[offset] != b',' {
            return;
        }
        offset += 1;
    }
}

/// A JSON string with an invalid escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidEscape;

/// jsonparser's `Unescape`: JSON escapes decoded into `out`.
pub fn unescape(input: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidEscape> {
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *input.get(i + 1).ok_or(InvalidEscape)?;
        let simple = match e {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            i += 2;
            continue;
        }
        if e != b'u' {
            return Err(InvalidEscape);
        }
        let hex = |at: usize| -> Option<u32> {
            let h = input.get(at..at + 4)?;
            u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
        };
        let r = hex(i + 2).ok_or(InvalidEscape)?;
        let (ch, used) = if !(0xD800..=0xDFFF).contains(&r) {
            (char::from_u32(r).unwrap_or('\u{fffd}'), 6)
        } else {
            if input.get(i + 6..i + 8) != Some(b"\\u") {
                return Err(InvalidEscape);
            }
            let r2 = hex(i + 8).ok_or(InvalidEscape)?;
            if r2 < 0xDC00 {
                return Err(InvalidEscape);
            }
            let combined = 0x10000 + ((r.wrapping_sub(0xD800)) << 10) + r2.wrapping_sub(0xDC00);
            (char::from_u32(combined).unwrap_or('\u{fffd}'), 12)
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        i += used;
    }
    Ok(())
}

/// Appends `b` as text, each invalid UTF-8 byte and each U+FFFD becoming a space (Loki's
/// `removeInvalidUtf`).
pub fn push_lossy_spaces(b: &[u8], out: &mut String) {
    if b.is_ascii() {
        // ASCII, the common case (checked a word at a time), is UTF-8 without U+FFFD.
        // SAFETY: ASCII bytes are valid UTF-8; validating again cost a tenth of the
        // block summary.
        out.push_str(unsafe { std::str::from_utf8_unchecked(b) });
        return;
    }
    if let Ok(s) = std::str::from_utf8(b) {
        // U+FFFD (EF BF BD) by a vectorized search: `str::contains` was a third of the cost.
        if memchr::memmem::find(s.as_bytes(), "\u{fffd}".as_bytes()).is_none() {
            out.push_str(s);
            return;
        }
    }
    for chunk in b.utf8_chunks() {
        let valid = chunk.valid();
        if valid.contains('\u{fffd}') {
            out.extend(valid.chars().map(|c| if c == '\u{fffd}' { ' ' } else { c }));
        } else {
            out.push_str(valid);
        }
        for _ in chunk.invalid() {
            out.push(' ');
        }
    }
}

/// Loki's `unescapeJSONString`: the unescaped string, empty when an escape is invalid.
pub(crate) fn unescape_string(raw: &[u8], scratch: &mut Vec<u8>, out: &mut String) {
    out.clear();
    if memchr::memchr(b'\\', raw).is_none() {
        push_lossy_spaces(raw, out);
        return;
    }
    scratch.clear();
    if unescape(raw, scratch).is_ok() {
        push_lossy_spaces(scratch, out);
    }
}

/// `| json` without arguments; with [`ParserHints`], only the wanted labels are stored
/// (the whole object is still walked, so that errors are the same).
#[derive(Debug, Default)]
pub struct JsonParser {
    hints: Option<ParserHints>,
    walk: Walk,
}

/// The buffers of one walk, reused from line to line.
#[derive(Debug, Default)]
struct Walk {
    /// The sanitised names of the enclosing objects, joined with `_`.
    prefix: String,
    name: String,
    text: String,
    scratch: Vec<u8>,
}

impl JsonParser {
    pub fn new(hints: Option<ParserHints>) -> Self {
        JsonParser {
            hints,
            walk: Walk::default(),
        }
    }

    pub fn hints(&self) -> Option<&ParserHints> {
        self.hints.as_ref()
    }

    pub fn process(&mut self, line: &[u8], lbs: &mut LabelsBuilder) {
        self.walk.prefix.clear();
        if let Some(h) = &mut self.hints {
            h.refresh(lbs);
        }
        if let Err(e) = self.walk.object(line, self.hints.as_ref(), lbs) {
            lbs.set_err(ERR_JSON);
            lbs.set_err_details(e);
        }
    }
}

impl Walk {
    fn object(
        &mut self,
        data: &[u8],
        hints: Option<&ParserHints>,
        lbs: &mut LabelsBuilder,
    ) -> Result<(), &'static str> {
        object_each(data, &mut |key: &[u8], value: &[u8], ty| match ty {
            ValueType::String | ValueType::Number | ValueType::Boolean => {
                if self.prefix.is_empty() && hints.is_some_and(|h| !h.may_want(key)) {
                    return Ok(());
                }
                self.name.clear();
                if self.prefix.is_empty() {
                    sanitize_key_bytes(key, true, &mut self.name);
                } else {
                    self.name.push_str(&self.prefix);
                    self.name.push('_');
                    sanitize_key_bytes(key, false, &mut self.name);
                }
                match hints {
                    Some(h) => {
                        if !h.wanted(&mut self.name) {
                            return Ok(());
                        }
                    }
                    None => {
                        if lbs.base_has(&self.name) {
                            self.name.push_str(DUPLICATE_SUFFIX);
                        }
                    }
                }
                match ty {
                    ValueType::String => unescape_string(value, &mut self.scratch, &mut self.text),
                    _ => {
                        self.text.clear();
                        self.text.push_str(&String::from_utf8_lossy(value));
                    }
                }
                lbs.set_parsed(&self.name, &self.text);
                Ok(())
            }
            ValueType::Object => {
                let saved = self.prefix.len();
                let at_start = self.prefix.is_empty();
                if !at_start {
                    self.prefix.push('_');
                }
                sanitize_key_bytes(key, at_start, &mut self.prefix);
                let r = self.object(value, hints, lbs);
                self.prefix.truncate(saved);
                r
            }
            ValueType::Array | ValueType::Null => Ok(()),
        })
    }
}

/// One step of a `| json a="x.y[0][\"k\"]"` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// Parses Loki's JSON expression syntax: fields (`a.b`), keys (`["k"]`) and indexes (`[0]`).
pub fn parse_json_path(expr: &str) -> Result<Vec<PathStep>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut expect_field = true;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '.' => {
                if steps.is_empty() {
                    return Err("syntax error: unexpected DOT".into());
                }
                expect_field = true;
                i += 1;
            }
            '[' => {
                i += 1;
                while i < chars.len() && chars[i] == ' ' {
                    i += 1;
                }
                if i < chars.len() && chars[i] == '"' {
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i] != '"' && chars[i] != ']' {
                        i += 1;
                    }
                    steps.push(PathStep::Key(chars[start..i].iter().collect()));
                    if i < chars.len() && chars[i] == '"' {
                        i += 1;
                    }
                } else {
                    let start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i < chars.len() && chars[i] == '.' {
                        return Err("cannot use float as array index".into());
                    }
                    let n: usize = chars[start..i]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .map_err(|_| "syntax error: unexpected RSB".to_string())?;
                    steps.push(PathStep::Index(n));
                }
                if i < chars.len() && chars[i] == ']' {
                    i += 1;
                } else {
                    return Err("syntax error: missing RSB".into());
                }
                expect_field = false;
            }
            c if is_start(c) => {
                if !expect_field {
                    return Err("syntax error: unexpected FIELD".into());
                }
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                steps.push(PathStep::Key(chars[start..i].iter().collect()));
                expect_field = false;
            }
            c => return Err(format!("unexpected char {c}")),
        }
    }
    if steps.is_empty() || expect_field && !steps.is_empty() && expr.trim_end().ends_with('.') {
        return Err("syntax error: unexpected $end".into());
    }
    Ok(steps)
}

/// The first value at `path` inside `data`.
fn lookup<'a>(
    data: &'a [u8],
    path: &[PathStep],
) -> Option<Result<(&'a [u8], ValueType), &'static str>> {
    let Some((step, rest)) = path.split_first() else {
        return Some(get_value(data).map(|(v, t, _)| (v, t)));
    };
    let start = next_token(data)?;
    let data = &data[start..];
    match step {
        PathStep::Key(k) => {
            let mut found: Option<&'a [u8]> = None;
            if data.first() != Some(&b'{') {
                return None;
            }
            let mut offset = 1;
            while offset < data.len() {
                offset += next_token(&data[offset..])?;
                if data[offset] != b'"' {
                    return None;
                }
                let (end, escaped) = string_end(&data[offset + 1..]);
                let end = end?;
                let raw_key = &data[offset + 1..offset + end];
                let mut buf = Vec::new();
                let key: &[u8] = if escaped {
                    unescape(raw_key, &mut buf).ok()?;
                    &buf
                } else {
                    raw_key
                };
                offset += end + 1;
                offset += next_token(&data[offset..])?;
                if data[offset] != b':' {
                    return None;
                }
                offset += 1;
                let value_start = offset + next_token(&data[offset..])?;
                let value_data = &data[value_start..];
                let (_, _, off) = match get_value(value_data) {
                    Ok(x) => x,
                    Err(e) => {
                        if key == k.as_bytes() {
                            return Some(Err(e));
                        }
                        return None;
                    }
                };
                if key == k.as_bytes() {
                    found = Some(value_data);
                    break;
                }
                offset = value_start + off;
                offset += next_token(&data[offset..])?;
                match data[offset] {
                    b',' => offset += 1,
                    _ => return None,
                }
            }
            lookup(found?, rest)
        }
        PathStep::Index(n) => {
            if data.first() != Some(&b'[') {
                return None;
            }
            let mut idx = 0;
            let mut found: Option<(&'a [u8], ValueType)> = None;
            array_each(data, |v, t| {
                if idx == *n {
                    found = Some((v, t));
                    return false;
                }
                idx += 1;
                true
            });
            let (v, t) = found?;
            if rest.is_empty() {
                return Some(Ok((v, t)));
            }
            if t == ValueType::String {
                return None;
            }
            lookup(v, rest)
        }
    }
}

/// `| json a="x.y", b="list[0]"`.
#[derive(Debug)]
pub struct JsonExpressionParser {
    ids: Vec<String>,
    paths: Vec<Vec<PathStep>>,
    text: String,
    scratch: Vec<u8>,
}

impl JsonExpressionParser {
    pub fn new(exprs: &[(String, String)]) -> Result<Self, String> {
        let mut ids = Vec::new();
        let mut paths = Vec::new();
        for (id, expr) in exprs {
            let path = parse_json_path(expr)
                .map_err(|e| format!("cannot parse expression [{expr}]: {e}"))?;
            ids.push(id.clone());
            paths.push(path);
        }
        Ok(JsonExpressionParser {
            ids,
            paths,
            text: String::new(),
            scratch: Vec::new(),
        })
    }

    /// The labels it stores, which it also reads (an absent one is set empty).
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    pub fn process(&mut self, line: &[u8], lbs: &mut LabelsBuilder) {
        if line.is_empty() {
            return;
        }
        if !matches!(line[0], b'"' | b'{' | b'[') {
            lbs.set_err(ERR_JSON);
            return;
        }
        let mut matches = 0;
        for (id, path) in self.ids.iter().zip(&self.paths) {
            let found = match lookup(line, path) {
                None => continue,
                Some(Err(e)) => {
                    lbs.set_err(ERR_JSON);
                    lbs.set_err_details(e);
                    continue;
                }
                Some(Ok(v)) => v,
            };
            let key = if lbs.base_has(id) {
                format!("{id}{DUPLICATE_SUFFIX}")
            } else {
                id.clone()
            };
            match found.1 {
                ValueType::Null => self.text.clear(),
                ValueType::Object => {
                    self.text.clear();
                    self.text.push_str(&String::from_utf8_lossy(found.0));
                }
                _ => unescape_string(found.0, &mut self.scratch, &mut self.text),
            }
            lbs.set_parsed(&key, &self.text);
            matches += 1;
        }
        if matches < self.ids.len() {
            for id in &self.ids {
                if lbs.get(id).is_none() {
                    lbs.set_parsed(id, "");
                }
            }
        }
    }
}

/// `| unpack`: string fields become labels and `_entry` the new line.
#[derive(Debug, Default)]
pub struct UnpackParser {
    pairs: Vec<(String, String)>,
    scratch: Vec<u8>,
}

impl UnpackParser {
    /// Returns the unpacked line in `out` and true when the line changed.
    pub fn process(&mut self, line: &[u8], lbs: &mut LabelsBuilder, out: &mut Vec<u8>) -> bool {
        if line.is_empty() {
            return false;
        }
        if line[0] != b'{' {
            lbs.set_err(ERR_JSON);
            lbs.set_err_details("expecting json object(6), but it is not");
            return false;
        }
        self.pairs.clear();
        let mut entry: Option<Vec<u8>> = None;
        let pairs = &mut self.pairs;
        let scratch = &mut self.scratch;
        let r = object_each::<&'static str, _>(line, &mut |key, value, ty| {
            if ty != ValueType::String {
                return Ok(());
            }
            if key == b"_entry" {
                let mut buf = Vec::new();
                unescape(value, &mut buf).map_err(|_| MALFORMED_STRING_ESCAPE)?;
                entry = Some(buf);
                return Ok(());
            }
            let raw = String::from_utf8_lossy(key);
            let field = if lbs.base_has(&raw) {
                format!("{raw}{DUPLICATE_SUFFIX}")
            } else {
                raw.into_owned()
            };
            let mut name = String::new();
            sanitize_label_key(&field, true, &mut name);
            let mut text = String::new();
            unescape_string(value, scratch, &mut text);
            pairs.push((name, text));
            Ok(())
        });
        if let Err(e) = r {
            lbs.set_err(ERR_JSON);
            lbs.set_err_details(e);
            return false;
        }
        match entry {
            Some(e) => {
                for (n, v) in &self.pairs {
                    lbs.set_parsed(n, v);
                }
                out.clear();
                out.extend_from_slice(&e);
                true
            }
            None => false,
        }
    }
}
