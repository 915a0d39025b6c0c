//! Stream labels: the sorted `name="value"` set that names a stream, its canonical text form
//! (`{a="b", c="d"}`, as Loki prints it), its stable fingerprint, and the Prometheus-text parser
//! that protobuf pushes carry. Used by `ingest` (validation), `head`, `segment` and `http`.

use std::fmt;

use thiserror::Error;

/// A stream's label set, sorted by name, names unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<(String, String)>);

#[derive(Debug, Error, PartialEq)]
pub enum LabelsError {
    #[error("{0}")]
    Syntax(String),
}

impl Labels {
    /// Builds a label set from pairs in any order. Duplicate names are kept so that validation
    /// can report them; use [`Labels::duplicate_name`] to find one.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.sort();
        Labels(pairs)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    pub fn duplicate_name(&self) -> Option<&str> {
        self.0
            .windows(2)
            .find(|w| w[0].0 == w[1].0)
            .map(|w| w[0].0.as_str())
    }

    /// Stable 64-bit fingerprint; the same on every machine and across restarts.
    pub fn fingerprint(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (n, v) in &self.0 {
            h.update(n.as_bytes());
            h.update(&[0xff]);
            h.update(v.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    /// Parses the Prometheus text form `{a="b", c="d"}` that protobuf pushes carry.
    pub fn parse(text: &str) -> Result<Labels, LabelsError> {
        let mut p = TextParser {
            s: text.as_bytes(),
            i: 0,
            text,
        };
        p.skip_ws();
        p.expect(b'{')?;
        let mut pairs = Vec::new();
        loop {
            p.skip_ws();
            if p.peek() == Some(b'}') {
                p.i += 1;
                break;
            }
            if !pairs.is_empty() {
                p.expect(b',')?;
                p.skip_ws();
                if p.peek() == Some(b'}') {
                    p.i += 1;
                    break;
                }
            }
            let name = p.ident()?;
            p.skip_ws();
            p.expect(b'=')?;
            p.skip_ws();
            let value = p.quoted()?;
            pairs.push((name, value));
        }
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(p.err("unexpected text after '}'"));
        }
        Ok(Labels::from_pairs(pairs))
    }
}

struct TextParser<'a> {
    s: &'a [u8],
    i: usize,
    text: &'a str,
}

impl TextParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn err(&self, what: &str) -> LabelsError {
        LabelsError::Syntax(format!("{what} at position {} of {:?}", self.i, self.text))
    }
    fn expect(&mut self, c: u8) -> Result<(), LabelsError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }
    fn ident(&mut self) -> Result<String, LabelsError> {
        let start = self.i;
        while matches!(self.peek(), Some(c) if c == b'_' || c.is_ascii_alphanumeric()) {
            self.i += 1;
        }
        if start == self.i {
            return Err(self.err("expected a label name"));
        }
        Ok(self.text[start..self.i].to_string())
    }
    fn quoted(&mut self) -> Result<String, LabelsError> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 1;
                    match c {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'\\' | b'"' | b'\'' => out.push(c),
                        _ => return Err(self.err("unknown escape")),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid utf-8"))
    }
}

/// Prometheus' legacy label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0] == b'_' || b[0].is_ascii_alphabetic())
        && b.iter().all(|c| *c == b'_' || c.is_ascii_alphanumeric())
}

/// Writes `s` as a Go double-quoted string, the way Loki prints label values.
pub fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(n)?;
            f.write_str("=")?;
            write_quoted(f, v)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn parses(text: &str, want: &[(&str, &str)]) {
        let got = Labels::parse(text).unwrap();
        let want: Vec<_> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got.pairs(), &want[..], "{text}");
        assert_eq!(
            Labels::parse(&got.to_string()).unwrap(),
            got,
            "round trip of {text}"
        );
    }

    #[test]
    fn parse_table() {
        parses(r#"{}"#, &[]);
        parses(r#"{app="foo"}"#, &[("app", "foo")]);
        parses(
            r#"{ env="prod", app="foo" }"#,
            &[("app", "foo"), ("env", "prod")],
        );
        parses(r#"{a="q\"uote\\d\n"}"#, &[("a", "q\"uote\\d\n")]);
        parses(r#"{a="ünï 🚀",}"#, &[("a", "ünï 🚀")]);
    }

    #[test]
    fn parse_errors() {
        for bad in [
            r#"app="x""#,
            r#"{app=x}"#,
            r#"{app="x"#,
            r#"{="x"}"#,
            r#"{a="b"} x"#,
            r#"{a="b" c="d"}"#,
        ] {
            assert!(Labels::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprint_is_order_independent_and_stable() {
        let a = Labels::parse(r#"{a="1", b="2"}"#).unwrap();
        let b = Labels::parse(r#"{b="2", a="1"}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(
            a.fingerprint(),
            Labels::parse(r#"{a="12"}"#).unwrap().fingerprint()
        );
    }

    #[test]
    fn label_names() {
        for (n, ok) in [
            ("app", true),
            ("_x9", true),
            ("9x", false),
            ("a-b", false),
            ("", false),
            ("ü", false),
        ] {
            assert_eq!(is_valid_label_name(n), ok, "{n}");
        }
    }
}
