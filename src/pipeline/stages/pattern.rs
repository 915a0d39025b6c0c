//! Loki's pattern language, used by the `| pattern "<ip> - <_>"` parser and the `|>` / `!>`
//! line filters: literals and captures `<name>` (`<_>` captures nothing). A capture takes
//! everything up to the next occurrence of the following literal; a line that ends early
//! still yields the captures found so far.

/// One element of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Literal(Vec<u8>),
    /// A capture; `None` for `<_>`.
    Capture(Option<String>),
}

/// A parsed pattern.
#[derive(Debug, Clone, Default)]
pub struct Pattern {
    nodes: Vec<Node>,
    names: Vec<String>,
}

fn parse_nodes(text: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut literal: Vec<u8> = Vec::new();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let rest = &bytes[i + 1..];
            let ident = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            let starts_ok = rest
                .first()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
            if starts_ok && rest.get(ident) == Some(&b'>') {
                if !literal.is_empty() {
                    nodes.push(Node::Literal(std::mem::take(&mut literal)));
                }
                let name = &text[i + 1..i + 1 + ident];
                nodes.push(Node::Capture((name != "_").then(|| name.to_string())));
                i += ident + 2;
                continue;
            }
        }
        literal.push(bytes[i]);
        i += 1;
    }
    if !literal.is_empty() {
        nodes.push(Node::Literal(literal));
    }
    nodes
}

fn check_consecutive(nodes: &[Node]) -> Result<(), String> {
    for w in nodes.windows(2) {
        if let (Node::Capture(a), Node::Capture(b)) = (&w[0], &w[1]) {
            let show = |c: &Option<String>| format!("<{}>", c.as_deref().unwrap_or("_"));
            return Err(format!(
                "found consecutive capture '{}{}': invalid expression",
                show(a),
                show(b)
            ));
        }
    }
    Ok(())
}

impl Pattern {
    /// A pattern for the parser: at least one named capture, no two captures in a row, no
    /// duplicate names.
    pub fn new(text: &str) -> Result<Pattern, String> {
        let nodes = parse_nodes(text);
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Capture(Some(name)) => Some(name.clone()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err("at least one capture is required".into());
        }
        check_consecutive(&nodes)?;
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("duplicate capture name ({n}): invalid expression"));
            }
        }
        Ok(Pattern { nodes, names })
    }

    /// A pattern for `|>` / `!>`: only `<_>` captures.
    pub fn for_line_filter(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Ok(Pattern::default());
        }
        let nodes = parse_nodes(text);
        check_consecutive(&nodes)?;
        if let Some(Node::Capture(Some(name))) =
            nodes.iter().find(|n| matches!(n, Node::Capture(Some(_))))
        {
            return Err(format!("named captures are not allowed: found '<{name}>'"));
        }
        Ok(Pattern {
            nodes,
            names: Vec::new(),
        })
    }

    /// The capture names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The values of the named captures, in order; fewer than [`Self::names`] when the line
    /// ends early, none when the leading literal does not match.
    pub fn matches<'a>(&self, line: &'a [u8], out: &mut Vec<&'a [u8]>) {
        out.clear();
        if line.is_empty() || self.nodes.is_empty() {
            return;
        }
        let mut input = line;
        let mut nodes = &self.nodes[..];
        if let Node::Literal(lit) = &nodes[0] {
            if !input.starts_with(lit) {
                return;
            }
            input = &input[lit.len()..];
            nodes = &nodes[1..];
        }
        while !nodes.is_empty() {
            let Node::Capture(name) = &nodes[0] else {
                return;
            };
            if nodes.len() == 1 {
                if name.is_some() {
                    out.push(input);
                }
                return;
            }
            let Node::Literal(lit) = &nodes[1] else {
                return;
            };
            nodes = &nodes[2..];
            match memchr::memmem::find(input, lit) {
                None => {
                    if name.is_some() {
                        out.push(input);
                    }
                    return;
                }
                Some(i) => {
                    if name.is_some() {
                        out.push(&input[..i]);
                    }
                    input = &input[i + lit.len()..];
                }
            }
        }
    }

    /// Whether the whole line fits the pattern (the `|>` filter).
    pub fn test(&self, line: &[u8]) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return line.is_empty() && self.nodes.is_empty();
        }
        let mut off = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            let Node::Literal(lit) = node else {
                continue;
            };
            let Some(j) = memchr::memmem::find(&line[off..], lit) else {
                return false;
            };
            if i != 0 && j == 0 {
                return false;
            }
            off += j + lit.len();
        }
        let ends_with_capture = matches!(self.nodes.last(), Some(Node::Capture(_)));
        ends_with_capture == (off != line.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn captures(pattern: &str, line: &str, want: &[&str]) {
        let p = Pattern::new(pattern).unwrap();
        let mut out = Vec::new();
        p.matches(line.as_bytes(), &mut out);
        let got: Vec<&str> = out
            .iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .collect();
        assert_eq!(got, want, "{pattern} on {line}");
    }

    #[track_caller]
    fn filter(pattern: &str, line: &str, want: bool) {
        let p = Pattern::for_line_filter(pattern).unwrap();
        assert_eq!(p.test(line.as_bytes()), want, "{pattern} on {line}");
    }

    #[test]
    fn captures_follow_loki() {
        captures("<ip> - <_>", "1.2.3.4 - x", &["1.2.3.4"]);
        captures(
            "<method> <path> HTTP/<_> <status> <_>",
            "GET /a HTTP/1.1 200 12",
            &["GET", "/a", "200"],
        );
        captures("foo <a> bar", "xfoo 1 bar", &[]);
        captures("<a> <b>", "only", &["only"]);
        captures("<a>:<b>:<c>", "1:2", &["1", "2"]);
        captures("<1> <a>", "<1> x", &["x"]);
    }

    #[test]
    fn line_filter_test_follows_loki() {
        filter("<_>error<_>", "an error here", true);
        filter("<_>error<_>", "error here", false);
        filter("<_>error", "an error", true);
        filter("<_>error", "an errors", false);
        filter("error<_>", "error x", true);
        filter("", "", true);
        filter("", "x", false);
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        assert!(Pattern::new("no captures").is_err());
        assert!(Pattern::new("<a><b>").is_err());
        assert!(Pattern::new("<a> <a>").is_err());
        assert!(Pattern::for_line_filter("<a> x").is_err());
    }
}
