//! Regexes the way Loki evaluates them in line filters (`|~`, `!~`) and string label
//! filters (`name=~"re"`). Loki first tries to turn the regex into substring tests
//! (`foo.*` → contains `foo`); only when that fails does it run a regex, unanchored for
//! lines and `^(?:re)$` for labels. The substring forms are not always equivalent, and
//! answers must match Loki's, so the rewrite is reproduced: notably a label filter
//! `path=~"/api/(a|b)"` or `app=~"api.*"` tests *contains*, not a full match; `.+` tests
//! non-empty; `""` and `.*` always match. Regex syntax is Go's (RE2); [`to_rust_syntax`]
//! makes `\d \w \s \b` ASCII as in Go.

/// A regex reduced to substring tests, or the regex itself.
#[derive(Debug, Clone)]
pub enum Simple {
    True,
    /// The value is not empty (`.+`).
    Exists,
    /// Contains the bytes (lowercased when case-insensitive).
    Contains(Vec<u8>, bool),
    /// Equals the bytes (label filters' whole-literal form).
    Equal(Vec<u8>, bool),
    Or(Box<Simple>, Box<Simple>),
}

impl Simple {
    pub fn matches(&self, v: &[u8]) -> bool {
        match self {
            Simple::True => true,
            Simple::Exists => !v.is_empty(),
            Simple::Contains(s, false) => memchr::memmem::find(v, s).is_some(),
            Simple::Contains(s, true) => contains_lower(v, s),
            Simple::Equal(s, false) => v == s.as_slice(),
            Simple::Equal(s, true) => s.len() == v.len() && contains_lower(v, s),
            Simple::Or(a, b) => a.matches(v) || b.matches(v),
        }
    }
}

fn new_or(left: Simple, right: Simple) -> Simple {
    match (left, right) {
        (Simple::True, r) => r,
        (l, Simple::True) => l,
        (l, r) => Simple::Or(Box::new(l), Box::new(r)),
    }
}

fn chain_or(curr: Option<Simple>, new: Simple) -> Simple {
    match curr {
        None => new,
        Some(c) => new_or(c, new),
    }
}

fn text_filter(s: &str, ci: bool, equal: bool) -> Simple {
    let bytes = if ci {
        s.to_lowercase().into_bytes()
    } else {
        s.as_bytes().to_vec()
    };
    if equal {
        Simple::Equal(bytes, ci)
    } else if bytes.is_empty() {
        Simple::True
    } else {
        Simple::Contains(bytes, ci)
    }
}

/// Case-insensitive containment as Loki computes it: ASCII folded byte by byte, other runes
/// lowered; `substr` is already lowercase.
pub fn contains_lower(line: &[u8], substr: &[u8]) -> bool {
    if substr.is_empty() {
        return true;
    }
    if substr.len() > line.len() {
        return false;
    }
    let first = substr[0];
    let max = line.len() - substr.len();
    let mut i = 0;
    while i <= max {
        if line[i].to_ascii_lowercase() != first {
            i += 1;
            continue;
        }
        let (mut lp, mut sp, mut matched) = (i, 0, true);
        while lp < line.len() && sp < substr.len() {
            let (c, s) = (line[lp], substr[sp]);
            if c < 0x80 && s < 0x80 {
                if c.to_ascii_lowercase() != s {
                    matched = false;
                    break;
                }
                lp += 1;
                sp += 1;
                continue;
            }
            let (lr, lsize) = decode_rune(&line[lp..]);
            if lr.is_none() {
                if c.to_ascii_lowercase() != s {
                    matched = false;
                    break;
                }
                lp += 1;
                sp += 1;
                continue;
            }
            let (mr, ssize) = decode_rune(&substr[sp..]);
            let (Some(lr), Some(mr)) = (lr, mr) else {
                matched = false;
                break;
            };
            if to_lower_rune(lr) != mr {
                matched = false;
                break;
            }
            lp += lsize;
            sp += ssize;
        }
        if matched && sp == substr.len() {
            return true;
        }
        i += 1;
    }
    false
}

fn to_lower_rune(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(x), None) => x,
        _ => c,
    }
}

/// Decodes one UTF-8 rune; `None` (width 1) for an invalid byte, as Go's `DecodeRune`.
pub fn decode_rune(b: &[u8]) -> (Option<char>, usize) {
    let n = match b.first() {
        None => return (None, 0),
        Some(&c) if c < 0x80 => return (Some(c as char), 1),
        Some(&c) if c >= 0xF0 => 4,
        Some(&c) if c >= 0xE0 => 3,
        Some(&c) if c >= 0xC0 => 2,
        _ => return (None, 1),
    };
    match b.get(..n).and_then(|s| std::str::from_utf8(s).ok()) {
        Some(s) => (s.chars().next(), n),
        None => (None, 1),
    }
}

/// A parsed regex, reduced to what the rewrite needs (Go's parse tree shapes).
#[derive(Debug, Clone, PartialEq)]
enum Re {
    Lit(String, bool),
    AnyStar,
    AnyPlus,
    Empty,
    Concat(Vec<Re>, bool),
    Alt(Vec<Re>),
    Capture(Box<Re>),
    Other,
}

struct ReParser<'a> {
    chars: Vec<char>,
    pos: usize,
    failed: bool,
    _src: &'a str,
}

impl<'a> ReParser<'a> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alt(&mut self, ci: bool) -> Re {
        let mut ci = ci;
        let mut branches = vec![self.concat(&mut ci)];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat(&mut ci));
        }
        if branches.len() == 1 {
            branches.pop().unwrap_or(Re::Empty)
        } else {
            factor_alt(branches)
        }
    }

    fn concat(&mut self, ci: &mut bool) -> Re {
        let mut items: Vec<Re> = Vec::new();
        let push = |items: &mut Vec<Re>, re: Re| {
            if let Re::Lit(s, c) = &re {
                if let Some(Re::Lit(prev, pc)) = items.last_mut() {
                    if pc == c {
                        prev.push_str(s);
                        return;
                    }
                }
            }
            items.push(re);
        };
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.pos += 1;
            let item = match c {
                '(' => self.group(ci),
                '.' => match self.peek() {
                    Some('*') => {
                        self.pos += 1;
                        self.skip_lazy();
                        Re::AnyStar
                    }
                    Some('+') => {
                        self.pos += 1;
                        self.skip_lazy();
                        Re::AnyPlus
                    }
                    _ => Re::Other,
                },
                '\\' => match self.peek() {
                    Some(e) if e.is_ascii_punctuation() => {
                        self.pos += 1;
                        Re::Lit(e.to_string(), *ci)
                    }
                    Some('n') => {
                        self.pos += 1;
                        Re::Lit("\n".into(), *ci)
                    }
                    Some('t') => {
                        self.pos += 1;
                        Re::Lit("\t".into(), *ci)
                    }
                    _ => Re::Other,
                },
                '[' | '^' | '$' | '{' | '*' | '+' | '?' => Re::Other,
                c => Re::Lit(c.to_string(), *ci),
            };
            if matches!(self.peek(), Some('*' | '+' | '?' | '{')) {
                self.failed = true;
            }
            if item == Re::Other {
                self.failed = true;
            }
            if item != Re::Empty {
                push(&mut items, item);
            }
        }
        match items.len() {
            0 => Re::Empty,
            1 => items.pop().unwrap_or(Re::Empty),
            _ => Re::Concat(items, *ci),
        }
    }

    fn skip_lazy(&mut self) {
        if self.peek() == Some('?') {
            self.pos += 1;
        }
    }

    fn group(&mut self, ci: &mut bool) -> Re {
        let mut capture = true;
        let mut inner_ci = *ci;
        if self.peek() == Some('?') {
            self.pos += 1;
            match self.peek() {
                Some(':') => {
                    self.pos += 1;
                    capture = false;
                }
                Some('P') | Some('<') => {
                    while let Some(c) = self.peek() {
                        self.pos += 1;
                        if c == '>' {
                            break;
                        }
                    }
                }
                _ => {
                    // Flags: only `i` is understood; `(?i)` changes the current group.
                    let mut on = true;
                    let mut flag_ci = *ci;
                    loop {
                        match self.peek() {
                            Some('i') => flag_ci = on,
                            Some('-') => on = false,
                            Some(')') => {
                                self.pos += 1;
                                *ci = flag_ci;
                                return Re::Empty;
                            }
                            Some(':') => {
                                self.pos += 1;
                                capture = false;
                                inner_ci = flag_ci;
                                break;
                            }
                            _ => {
                                self.failed = true;
                                return Re::Other;
                            }
                        }
                        self.pos += 1;
                    }
                }
            }
        }
        let inner = self.alt(inner_ci);
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            self.failed = true;
        }
        if capture {
            Re::Capture(Box::new(inner))
        } else {
            inner
        }
    }
}

/// Go's alternation factoring: runs of branches sharing a literal prefix become
/// `prefix(?:rest|rest)`; two adjacent single-character branches become a character class.
fn factor_alt(branches: Vec<Re>) -> Re {
    fn leading(re: &Re) -> Option<(&str, bool)> {
        match re {
            Re::Lit(s, c) => Some((s, *c)),
            Re::Concat(items, _) => match items.first() {
                Some(Re::Lit(s, c)) => Some((s, *c)),
                _ => None,
            },
            _ => None,
        }
    }
    fn remove_leading(re: Re, n: usize) -> Re {
        match re {
            Re::Lit(s, c) => {
                let rest: String = s.chars().skip(n).collect();
                if rest.is_empty() {
                    Re::Empty
                } else {
                    Re::Lit(rest, c)
                }
            }
            Re::Concat(mut items, ci) => {
                if let Some(Re::Lit(s, c)) = items.first().cloned() {
                    let rest: String = s.chars().skip(n).collect();
                    if rest.is_empty() {
                        items.remove(0);
                    } else {
                        items[0] = Re::Lit(rest, c);
                    }
                }
                match items.len() {
                    0 => Re::Empty,
                    1 => items.pop().unwrap_or(Re::Empty),
                    _ => Re::Concat(items, ci),
                }
            }
            other => other,
        }
    }
    let mut out: Vec<Re> = Vec::new();
    let mut start = 0;
    let mut prefix: Vec<char> = Vec::new();
    let mut prefix_ci = false;
    for i in 0..=branches.len() {
        let mut next: Option<(Vec<char>, bool)> = None;
        if i < branches.len() {
            if let Some((s, c)) = leading(&branches[i]) {
                let chars: Vec<char> = s.chars().collect();
                if c == prefix_ci && i > start {
                    let same = prefix
                        .iter()
                        .zip(&chars)
                        .take_while(|(a, b)| a == b)
                        .count();
                    if same > 0 {
                        prefix.truncate(same);
                        continue;
                    }
                }
                next = Some((chars, c));
            }
        }
        if i == start + 1 {
            out.push(branches[start].clone());
        } else if i > start + 1 {
            let n = prefix.len();
            let rests: Vec<Re> = branches[start..i]
                .iter()
                .cloned()
                .map(|b| remove_leading(b, n))
                .collect();
            let suffix = if rests.len() == 1 {
                rests.into_iter().next().unwrap_or(Re::Empty)
            } else {
                factor_alt(rests)
            };
            let lit = Re::Lit(prefix.iter().collect(), prefix_ci);
            out.push(Re::Concat(vec![lit, suffix], prefix_ci));
        }
        start = i;
        match next {
            Some((chars, c)) => {
                prefix = chars;
                prefix_ci = c;
            }
            None => {
                prefix.clear();
                prefix_ci = false;
            }
        }
    }
    let single = |r: &Re| matches!(r, Re::Lit(s, _) if s.chars().count() == 1);
    if out.windows(2).any(|w| single(&w[0]) && single(&w[1])) {
        return Re::Other;
    }
    if out.len() == 1 {
        return out.pop().unwrap_or(Re::Empty);
    }
    Re::Alt(out)
}

fn parse(re: &str) -> Option<Re> {
    let mut p = ReParser {
        chars: re.chars().collect(),
        pos: 0,
        failed: false,
        _src: re,
    };
    let tree = p.alt(false);
    if p.failed || p.pos != p.chars.len() {
        return None;
    }
    Some(tree)
}

fn clear_capture(re: &Re) -> &Re {
    match re {
        Re::Capture(inner) => inner,
        other => other,
    }
}

fn simplify(re: &Re, is_label: bool) -> Option<Simple> {
    match re {
        Re::Alt(subs) => {
            let mut f = simplify(clear_capture(&subs[0]), is_label)?;
            for sub in &subs[1..] {
                f = new_or(f, simplify(clear_capture(sub), is_label)?);
            }
            Some(f)
        }
        Re::Concat(subs, _) => simplify_concat(subs, None),
        Re::Capture(inner) => simplify(inner, is_label),
        Re::Lit(s, ci) => Some(text_filter(s, *ci, is_label)),
        Re::AnyStar | Re::Empty => Some(Simple::True),
        Re::AnyPlus => Some(Simple::Exists),
        Re::Other => None,
    }
}

fn ci_of(re: &Re) -> bool {
    match re {
        Re::Lit(_, c) | Re::Concat(_, c) => *c,
        _ => false,
    }
}

fn simplify_concat(subs: &[Re], base: Option<String>) -> Option<Simple> {
    let subs: Vec<&Re> = subs
        .iter()
        .map(clear_capture)
        .filter(|r| **r != Re::Empty)
        .collect();
    if subs.len() > 3 {
        return None;
    }
    let mut base = base;
    let mut curr: Option<Simple> = None;
    let mut literals = 0;
    let mut base_ci = false;
    for sub in subs {
        match sub {
            Re::Lit(s, ci) => {
                if literals != 0 {
                    return None;
                }
                literals += 1;
                base.get_or_insert_with(String::new).push_str(s);
                base_ci = *ci;
            }
            Re::Alt(alts) if base.is_some() => {
                let literal = base.clone().unwrap_or_default();
                curr = Some(simplify_concat_alt(alts, &literal, curr, base_ci)?);
            }
            Re::AnyStar => {}
            _ => return None,
        }
    }
    if curr.is_some() {
        return curr;
    }
    base.map(|b| text_filter(&b, base_ci, false))
}

fn simplify_concat_alt(
    alts: &[Re],
    literal: &str,
    mut curr: Option<Simple>,
    base_ci: bool,
) -> Option<Simple> {
    for alt in alts {
        if !base_ci && ci_of(alt) {
            return None;
        }
        let f = match alt {
            Re::Empty | Re::AnyStar => text_filter(literal, base_ci, false),
            Re::Lit(s, _) => text_filter(&format!("{literal}{s}"), base_ci, false),
            Re::Concat(subs, _) => simplify_concat(subs, Some(literal.to_string()))?,
            _ => return None,
        };
        curr = Some(chain_or(curr, f));
    }
    curr
}

/// Loki's rewrite of `re` into substring tests, when it applies.
pub fn simplify_regex(re: &str, is_label: bool) -> Option<Simple> {
    let tree = parse(re)?;
    simplify(&tree, is_label)
}

/// Rewrites Go (RE2) syntax for Rust's `regex`: Go's `\d \w \s \b` are ASCII-only.
pub fn to_rust_syntax(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 8);
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let rep = match (in_class, e) {
                    (false, 'd') => "[0-9]",
                    (false, 'D') => "[^0-9]",
                    (false, 'w') => "[0-9A-Za-z_]",
                    (false, 'W') => "[^0-9A-Za-z_]",
                    (false, 's') => "[\\t\\n\\f\\r ]",
                    (false, 'S') => "[^\\t\\n\\f\\r ]",
                    (false, 'b') => "(?-u:\\b)",
                    (false, 'B') => "(?-u:\\B)",
                    (true, 'd') => "0-9",
                    (true, 'w') => "0-9A-Za-z_",
                    (true, 's') => "\\t\\n\\f\\r ",
                    _ => {
                        out.push('\\');
                        out.push(e);
                        continue;
                    }
                };
                out.push_str(rep);
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                out.push('[');
                for c2 in chars.by_ref() {
                    out.push(c2);
                    if c2 == ']' {
                        break;
                    }
                }
            }
            '[' => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// A compiled line or label regex filter: the substring rewrite or a real regex.
#[derive(Debug, Clone)]
pub enum RegexFilter {
    Simple(Simple),
    Line(regex::bytes::Regex),
}

impl RegexFilter {
    /// Compiles `re` as Loki does for a line (`is_label == false`, unanchored) or for a
    /// label value (anchored, `.` not matching newlines).
    pub fn new(re: &str, is_label: bool) -> Result<Self, regex::Error> {
        // Reject what Go would reject before trying the rewrite.
        let rust = to_rust_syntax(re);
        let source = if is_label {
            format!("^(?:{rust})$")
        } else {
            rust
        };
        let compiled = regex::bytes::Regex::new(&source)?;
        Ok(match simplify_regex(re, is_label) {
            Some(s) => RegexFilter::Simple(s),
            None => RegexFilter::Line(compiled),
        })
    }

    pub fn matches(&self, v: &[u8]) -> bool {
        match self {
            RegexFilter::Simple(s) => s.matches(v),
            RegexFilter::Line(re) => re.is_match(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(re: &str, value: &str, want: bool, label: bool) {
        let f = RegexFilter::new(re, label).unwrap();
        assert_eq!(
            f.matches(value.as_bytes()),
            want,
            "{re} on {value:?}: {f:?}"
        );
    }

    #[track_caller]
    fn label(re: &str, value: &str, want: bool) {
        check(re, value, want, true);
    }

    #[track_caller]
    fn line(re: &str, value: &str, want: bool) {
        check(re, value, want, false);
    }

    #[test]
    fn label_regexes_follow_lokis_rewrite() {
        label("foo", "foo", true);
        label("foo", "xfoo", false);
        label("foo|bar", "bar", true);
        label("foo|bar", "xbar", false);
        label("foo.*", "xfoo", true);
        label(".*foo", "foox", true);
        label("/api/(tickets|scan)", "/api/tickets/1", true);
        label("/api/(tickets|scan)", "/x/api/scan", true);
        label("/api/(tickets|scan)", "/api/other", false);
        label("error|err", "xerr", true);
        label("(?i)hello", "HELLO", true);
        label("(?i)hello", "HELLOx", false);
        label("", "anything", true);
        label(".*", "a\nb", true);
        label(".+", "", false);
        label("5..", "500", true);
        label("5..", "5000", false);
        label("a|b|foo.*", "xfoo", false);
        label("\\d+", "12", true);
        label("\\d+", "١٢", false);
    }

    #[test]
    fn line_regexes_match_anywhere() {
        line("status[=\":]+5\\d\\d", "x status=503 y", true);
        line("(?i)NULL POINTER", "a null pointer", true);
        line("GET|POST", "a POST b", true);
        line("ünï|🚀", "🚀 go", true);
        line("foo|.*", "bar", false);
    }

    #[test]
    fn contains_lower_folds_ascii_and_unicode() {
        assert!(contains_lower(b"Hello WORLD", b"world"));
        assert!(contains_lower("ÏB".as_bytes(), "ïb".as_bytes()));
        assert!(!contains_lower(b"abc", b"abd"));
    }
}
