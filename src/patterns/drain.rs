//! A Drain log-template miner for one stream, with the settings and tokenizers of Loki's
//! pattern ingester (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth Tree",
//! ICWS 2017).
//!
//! A line is split into tokens by the stream's format, guessed from its first line: JSON lines
//! by their message field (`log`, `message`, `msg`, `msg_`, `_msg`, `content`), logfmt lines
//! into key and value tokens (the values of time and trace keys replaced by `<_>`), anything
//! else at spaces and punctuation. Lines with fewer than 4 or more than 80 tokens, or longer
//! than `max_line_length`, are not mined. Clusters are found through a tree: first by token
//! count, then by the leading tokens (at most 28 levels; tokens with digits go to a `<_>`
//! branch; at most 15 children per node), then by similarity (share of equal tokens, at least
//! 0.3) among the leaf's clusters. A line joins the most similar cluster, whose template turns
//! every differing token into `<_>`, or starts a new one. At most `max_clusters` clusters
//! live per stream; the least recently used is evicted, and a stream that evicts more than a
//! quarter of what it adds stops mining for ten minutes.
//!
//! Each cluster counts its lines per 10 s, in chunks of at most an hour.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The placeholder for a variable token.
pub const PARAM: &str = "<_>";
/// Sample resolution in milliseconds.
pub const RESOLUTION_MS: i64 = 10_000;
const CHUNK_SPAN_MS: i64 = 3_600_000;
const MAX_NODE_DEPTH: usize = 28;
const SIM_THRESHOLD: f64 = 0.3;
const MAX_CHILDREN: usize = 15;
const MIN_TOKENS: usize = 4;
const MAX_TOKENS: usize = 80;
const MAX_EVICTION_RATIO: f64 = 0.25;
const BLOCK_FOR: Duration = Duration::from_secs(600);
/// JSON fields whose string value is mined, in order of preference.
const JSON_MESSAGE_FIELDS: [&str; 6] = ["log", "message", "msg", "msg_", "_msg", "content"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Logfmt,
    Unknown,
}

impl Format {
    /// Loki's guess from a stream's first line: `{...}` is JSON; `key=value` pairs separated
    /// by single spaces (values bare or quoted) are logfmt.
    pub fn detect(line: &str) -> Format {
        let b = line.as_bytes();
        if b.len() < 2 {
            Format::Unknown
        } else if b[0] == b'{' && b[b.len() - 1] == b'}' {
            Format::Json
        } else if is_logfmt(b) {
            Format::Logfmt
        } else {
            Format::Unknown
        }
    }
}

/// `^(\w+?=([^"]\S*?|".+?") )*?(\w+?=([^"]\S*?|".+?"))+$`, the regex Loki guesses with.
fn is_logfmt(b: &[u8]) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    loop {
        let ks = i;
        while i < b.len() && word(b[i]) {
            i += 1;
        }
        if i == ks || b.get(i) != Some(&b'=') {
            return false;
        }
        i += 1;
        match b.get(i) {
            None | Some(b' ') => return false,
            Some(b'"') => {
                // ".+?": the shortest quoted run with at least one character, which ends
                // where the pair does.
                let start = i + 1;
                let mut j = start + 1;
                loop {
                    match b[j.min(b.len())..].iter().position(|&c| c == b'"') {
                        None => return false,
                        Some(p) => {
                            let end = j + p;
                            if end + 1 == b.len() {
                                return true;
                            }
                            if b[end + 1] == b' ' {
                                i = end + 2;
                                break;
                            }
                            j = end + 1;
                        }
                    }
                }
            }
            Some(_) => {
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i == b.len() {
                    return true;
                }
                if b[i] != b' ' {
                    return false;
                }
                i += 1;
            }
        }
        if i >= b.len() {
            return false;
        }
    }
}

/// A line's tokens (borrowed from it where they can be) and where the spaces go when it is
/// printed.
#[derive(Debug, Clone)]
struct Tokens<'a> {
    tokens: Vec<Cow<'a, str>>,
    /// For the punctuation tokenizer: after which token index a space follows (repeated for
    /// several spaces).
    spaces_after: Vec<usize>,
}

pub struct Cluster {
    tokens: Vec<String>,
    spaces_after: Vec<usize>,
    /// Counts per 10 s: chunks of (ms, count), each spanning less than an hour.
    pub chunks: Vec<Vec<(i64, u32)>>,
    last_used: u64,
}

impl Cluster {
    /// Counts one line; returns by how much [`Self::bytes`] grew.
    fn add(&mut self, ts_ms: i64) -> usize {
        let t = ts_ms - ts_ms.rem_euclid(RESOLUTION_MS);
        match self.chunks.last_mut() {
            Some(c) if c.last().is_some_and(|s| s.0 == t) => {
                c.last_mut().expect("bug: chunk not empty").1 += 1;
                0
            }
            Some(c) if t - c[0].0 < CHUNK_SPAN_MS => {
                let before = c.capacity();
                if t > c.last().expect("bug: chunk not empty").0 {
                    c.push((t, 1));
                }
                (c.capacity() - before) * 16
            }
            _ => {
                self.chunks.push(vec![(t, 1)]);
                self.chunks.last().map_or(0, |c| c.capacity() * 16 + 24)
            }
        }
    }

    /// Approximate bytes held.
    pub fn bytes(&self) -> usize {
        let tok: usize = self.tokens.iter().map(|t| t.len() + 24).sum();
        let samples: usize = self.chunks.iter().map(|c| c.capacity() * 16 + 24).sum();
        tok + samples + self.spaces_after.capacity() * 8 + 96
    }

    /// Drops chunks whose last sample is older than `oldest_ms`.
    pub fn prune(&mut self, oldest_ms: i64) {
        self.chunks
            .retain(|c| c.last().is_some_and(|s| s.0 >= oldest_ms));
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

#[derive(Default)]
struct Node {
    children: Children,
    clusters: Vec<u32>,
}

/// A node's children by token, in a list: a node has at most [`MAX_CHILDREN`] (the root one
/// per token count), and most have one. A hash map per node held most of the miner's memory
/// (a quarter of the server's heap on the shared workload), for no faster lookup.
#[derive(Default)]
struct Children(Vec<(Box<str>, Node)>);

impl Children {
    fn get(&self, token: &str) -> Option<&Node> {
        self.0.iter().find(|(t, _)| &**t == token).map(|(_, n)| n)
    }

    fn contains_key(&self, token: &str) -> bool {
        self.get(token).is_some()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The child of `token`, added when missing.
    fn entry(&mut self, token: &str) -> &mut Node {
        let i = match self.0.iter().position(|(t, _)| &**t == token) {
            Some(i) => i,
            None => {
                // One at a time: most nodes keep one child, and a Vec's first growth makes
                // room for four.
                self.0.reserve_exact(1);
                self.0.push((token.into(), Node::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut Node) -> bool) {
        self.0.retain_mut(|(_, n)| keep(n));
    }
}

/// One stream's miner.
pub struct Drain {
    format: Format,
    max_clusters: usize,
    max_line_length: usize,
    root: Node,
    clusters: HashMap<u32, Cluster>,
    /// The sum of the clusters' [`Cluster::bytes`], kept as they change (summing them after
    /// every batch cost the miner a third of its time).
    held: usize,
    next_id: u32,
    clock: u64,
    added: u64,
    evicted: u64,
    blocked_until: Option<Instant>,
}

impl Drain {
    pub fn new(first_line: &str, max_clusters: usize, max_line_length: usize) -> Drain {
        Drain {
            format: Format::detect(first_line),
            max_clusters: max_clusters.max(1),
            max_line_length,
            root: Node::default(),
            clusters: HashMap::new(),
            held: 0,
            next_id: 0,
            clock: 0,
            added: 0,
            evicted: 0,
            blocked_until: None,
        }
    }

    pub fn clusters(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.values()
    }

    /// Approximate bytes held by the clusters.
    pub fn bytes(&self) -> usize {
        self.held + 256
    }

    /// Mines one line with its timestamp.
    pub fn train(&mut self, line: &str, ts_ns: i64) {
        if !self.allow() {
            return;
        }
        let Some(toks) = self.tokenize(line) else {
            return;
        };
        if toks.tokens.len() < MIN_TOKENS || toks.tokens.len() > MAX_TOKENS {
            return;
        }
        self.clock += 1;
        let ts_ms = ts_ns.div_euclid(1_000_000);
        match self.search(&toks.tokens) {
            Some(id) => {
                let clock = self.clock;
                let c = self
                    .clusters
                    .get_mut(&id)
                    .expect("bug: searched cluster exists");
                for (t, new) in c.tokens.iter_mut().zip(&toks.tokens) {
                    if t.as_str() != new.as_ref() {
                        self.held = self.held + PARAM.len() - t.len();
                        *t = PARAM.to_string();
                    }
                }
                self.held += c.add(ts_ms);
                c.last_used = clock;
            }
            None => {
                self.next_id = self.next_id.wrapping_add(1);
                let id = self.next_id;
                let mut c = Cluster {
                    tokens: toks.tokens.into_iter().map(Cow::into_owned).collect(),
                    spaces_after: toks.spaces_after,
                    chunks: Vec::new(),
                    last_used: self.clock,
                };
                c.add(ts_ms);
                self.insert(id, &c.tokens);
                self.held += c.bytes();
                self.clusters.insert(id, c);
                if self.clusters.len() > self.max_clusters {
                    if let Some(&old) = self
                        .clusters
                        .iter()
                        .min_by_key(|(_, c)| c.last_used)
                        .map(|(id, _)| id)
                    {
                        if let Some(c) = self.clusters.remove(&old) {
                            self.held -= c.bytes();
                        }
                        self.evicted += 1;
                    }
                }
            }
        }
    }

    /// Loki's limiter: once evictions pass a quarter of additions, stop for ten minutes.
    fn allow(&mut self) -> bool {
        if let Some(until) = self.blocked_until {
            if Instant::now() < until {
                return false;
            }
            self.blocked_until = None;
            self.added = 0;
            self.evicted = 0;
        }
        if self.added > 0 && self.evicted as f64 / self.added as f64 > MAX_EVICTION_RATIO {
            self.blocked_until = Some(Instant::now() + BLOCK_FOR);
            return false;
        }
        self.added += 1;
        true
    }

    /// Removes clusters with no samples left and the tree branches that led only to them.
    pub fn prune(&mut self, oldest_ms: i64) {
        for c in self.clusters.values_mut() {
            c.prune(oldest_ms);
        }
        self.clusters.retain(|_, c| !c.is_empty());
        self.held = self.clusters.values().map(Cluster::bytes).sum();
        let live = &self.clusters;
        fn walk(n: &mut Node, live: &HashMap<u32, Cluster>) -> usize {
            n.children.retain(|child| walk(child, live) > 0);
            n.clusters.retain(|id| live.contains_key(id));
            n.children.len() + n.clusters.len()
        }
        walk(&mut self.root, live);
    }

    /// The template of a cluster as text, `<_>` runs collapsed to one.
    pub fn pattern(&self, c: &Cluster) -> String {
        let text = match self.format {
            Format::Logfmt => join_logfmt(&c.tokens),
            Format::Json => format!("{PARAM}{}{PARAM}", join_spaced(&c.tokens, &c.spaces_after)),
            Format::Unknown => join_spaced(&c.tokens, &c.spaces_after),
        };
        dedup_params(&text)
    }

    fn tokenize<'a>(&self, line: &'a str) -> Option<Tokens<'a>> {
        match self.format {
            Format::Json => {
                let msg = json_message(line)?;
                if msg.len() > self.max_line_length {
                    return None;
                }
                Some(punctuation_tokens(msg))
            }
            Format::Logfmt => {
                if line.len() > self.max_line_length {
                    return None;
                }
                logfmt_tokens(line)
            }
            Format::Unknown => {
                if line.len() > self.max_line_length {
                    return None;
                }
                Some(punctuation_tokens(line))
            }
        }
    }

    fn search(&self, tokens: &[Cow<str>]) -> Option<u32> {
        let mut count = [0u8; 20];
        let mut node = self.root.children.get(decimal(tokens.len(), &mut count))?;
        if tokens.len() < 2 {
            return node.clusters.first().copied();
        }
        let mut depth = 1;
        for t in tokens {
            if depth >= MAX_NODE_DEPTH || depth == tokens.len() {
                break;
            }
            node = node
                .children
                .get(t.as_ref())
                .or_else(|| node.children.get(PARAM))?;
            depth += 1;
        }
        let mut best: Option<(f64, usize, u32)> = None;
        for id in &node.clusters {
            let Some(c) = self.clusters.get(id) else {
                continue;
            };
            let (mut same, mut params) = (0usize, 0usize);
            for (a, b) in c.tokens.iter().zip(tokens) {
                if a == PARAM {
                    params += 1;
                } else if a.as_str() == b.as_ref() {
                    same += 1;
                }
            }
            let sim = same as f64 / c.tokens.len() as f64;
            if best.is_none_or(|(s, p, _)| sim > s || (sim == s && params > p)) {
                best = Some((sim, params, *id));
            }
        }
        best.filter(|(s, _, _)| *s >= SIM_THRESHOLD)
            .map(|(_, _, id)| id)
    }

    fn insert(&mut self, id: u32, tokens: &[String]) {
        let live = &self.clusters;
        let mut node = self.root.children.entry(&tokens.len().to_string());
        if tokens.is_empty() {
            node.clusters.push(id);
            return;
        }
        let mut depth = 1;
        for t in tokens {
            if depth >= MAX_NODE_DEPTH || depth >= tokens.len() {
                node.clusters.retain(|c| live.contains_key(c));
                node.clusters.push(id);
                return;
            }
            let key = if node.children.contains_key(t.as_str()) {
                t.as_str()
            } else if t.chars().any(char::is_numeric) {
                PARAM
            } else if node.children.contains_key(PARAM) {
                if node.children.len() < MAX_CHILDREN {
                    t.as_str()
                } else {
                    PARAM
                }
            } else if node.children.len() + 1 < MAX_CHILDREN {
                t.as_str()
            } else {
                PARAM
            };
            node = node.children.entry(key);
            depth += 1;
        }
    }
}

/// Loki's punctuation tokenizer: letters, digits and `_-.:/` build tokens; a space ends one
/// (and is remembered), `=` and other punctuation end one and are a token themselves.
fn punctuation_tokens(line: &str) -> Tokens<'_> {
    let mut tokens = Vec::new();
    let mut spaces_after = Vec::new();
    let mut start = 0;
    for (i, c) in line.char_indices() {
        if tokens.len() >= 127 {
            break;
        }
        if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/') {
            continue;
        }
        if c == ' ' || c == '=' || is_punct(c) {
            if i > start {
                tokens.push(Cow::Borrowed(&line[start..i]));
            }
            if c == ' ' {
                spaces_after.push(tokens.len().wrapping_sub(1));
            } else {
                tokens.push(Cow::Borrowed(&line[i..i + c.len_utf8()]));
            }
            start = i + c.len_utf8();
        }
    }
    if start < line.len() {
        tokens.push(Cow::Borrowed(&line[start..]));
    }
    Tokens {
        tokens,
        spaces_after,
    }
}

/// Unicode punctuation (category P) for ASCII; other scripts' punctuation counts as part of a
/// token.
fn is_punct(c: char) -> bool {
    matches!(
        c,
        '!' | '"'
            | '#'
            | '%'
            | '&'
            | '\''
            | '('
            | ')'
            | '*'
            | ','
            | '-'
            | '.'
            | '/'
            | ':'
            | ';'
            | '?'
            | '@'
            | '['
            | '\\'
            | ']'
            | '_'
            | '{'
            | '}'
    )
}

fn join_spaced(tokens: &[String], spaces_after: &[usize]) -> String {
    let mut out = String::new();
    let mut s = 0;
    for (i, t) in tokens.iter().enumerate() {
        out.push_str(t);
        while s < spaces_after.len() && spaces_after[s] == i {
            out.push(' ');
            s += 1;
        }
        // Spaces recorded before any token never print (as in Loki).
        while s < spaces_after.len() && spaces_after[s] == usize::MAX {
            s += 1;
        }
    }
    out
}

/// logfmt tokens: key, value, key, value ...; time and trace values become `<_>`. `None` for a
/// line the decoder stops on.
fn logfmt_tokens(line: &str) -> Option<Tokens<'_>> {
    let b = line.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] <= b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let ks = i;
        while i < b.len() && b[i] > b' ' && b[i] != b'=' && b[i] != b'"' {
            i += 1;
        }
        if i == ks {
            return None;
        }
        let key = &line[ks..i];
        let mut value = Cow::Borrowed("");
        if b.get(i) == Some(&b'=') {
            i += 1;
            if b.get(i) == Some(&b'"') {
                let mut j = i + 1;
                loop {
                    match *b.get(j)? {
                        b'\\' => j += 2,
                        b'"' => break,
                        _ => j += 1,
                    }
                }
                let raw = &line[i..=j];
                value = if raw.contains('\\') {
                    Cow::Owned(serde_json::from_str::<String>(raw).ok()?)
                } else {
                    Cow::Borrowed(&raw[1..raw.len() - 1])
                };
                i = j + 1;
            } else {
                let vs = i;
                while i < b.len() && b[i] > b' ' {
                    if b[i] == b'=' || b[i] == b'"' {
                        return None;
                    }
                    i += 1;
                }
                value = Cow::Borrowed(&line[vs..i]);
            }
        }
        let variable = ["ts", "time", "timestamp", "traceid"]
            .iter()
            .any(|v| key.eq_ignore_ascii_case(v))
            || key == "t";
        tokens.push(Cow::Borrowed(key));
        tokens.push(if variable {
            Cow::Borrowed(PARAM)
        } else {
            value
        });
    }
    Some(Tokens {
        tokens,
        spaces_after: Vec::new(),
    })
}

/// logfmt text of key/value tokens: values with spaces, `=`, quotes or control characters
/// quoted, as go-logfmt writes them.
fn join_logfmt(tokens: &[String]) -> String {
    let mut out = String::new();
    for pair in tokens.chunks(2) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&pair[0]);
        out.push('=');
        let v = pair.get(1).map_or("", String::as_str);
        if v.chars()
            .any(|c| c <= ' ' || c == '=' || c == '"' || c == '\u{fffd}')
        {
            out.push_str(&serde_json::to_string(v).expect("bug: string encodes"));
        } else {
            out.push_str(v);
        }
    }
    out
}

/// The first message field of a JSON line that holds a string (its raw content, escapes kept).
fn json_message(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let mut found: Option<(usize, &str)> = None;
    let mut i = 1;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() || b[i] != b'"' {
            break;
        }
        let (ks, ke) = string_span(b, i)?;
        i = ke + 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b':') {
            break;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &line[ks..ke];
        let pos = JSON_MESSAGE_FIELDS.iter().position(|f| *f == key);
        match *b.get(i)? {
            b'"' => {
                let (vs, ve) = string_span(b, i)?;
                if let Some(p) = pos {
                    if found.is_none_or(|(q, _)| p < q) {
                        found = Some((p, &line[vs..ve]));
                    }
                }
                i = ve + 1;
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                while i < b.len() {
                    match b[i] {
                        b'"' => {
                            i = string_span(b, i)?.1 + 1;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                while i < b.len() && !matches!(b[i], b',' | b'}') {
                    i += 1;
                }
            }
        }
    }
    found.map(|(_, s)| s)
}

/// (start, end) of the content of the JSON string whose quote is at `i`; `end` is the closing
/// quote's index.
fn string_span(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some((i + 1, j)),
            _ => j += 1,
        }
    }
    None
}

/// `n` in decimal, written into `buf` (the tree's first level is keyed by token counts).
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).expect("bug: digits are UTF-8")
}

/// Runs of `<_>` collapse to one.
fn dedup_params(s: &str) -> String {
    let twice = "<_><_>";
    if !s.contains(twice) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find(PARAM) {
        out.push_str(&rest[..p + PARAM.len()]);
        rest = &rest[p + PARAM.len()..];
        while let Some(r) = rest.strip_prefix(PARAM) {
            rest = r;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mined(lines: &[&str]) -> Vec<(String, u32)> {
        let mut d = Drain::new(lines[0], 300, 3000);
        for (i, l) in lines.iter().enumerate() {
            d.train(l, 1_700_000_000_000_000_000 + i as i64 * 1_000_000_000);
        }
        let mut out: Vec<(String, u32)> = d
            .clusters()
            .map(|c| {
                (
                    d.pattern(c),
                    c.chunks.iter().flatten().map(|s| s.1).sum::<u32>(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The running total equals the sum over the clusters, through growth, template changes,
    /// evictions and pruning.
    #[test]
    fn bytes_held_are_kept_as_clusters_change() {
        let mut d = Drain::new("user 1 logged in from host a", 20, 3000);
        let sum = |d: &Drain| d.clusters.values().map(Cluster::bytes).sum::<usize>() + 256;
        for i in 0..5000i64 {
            // Leading words without digits and varying lengths make many clusters.
            let word: String = [b'a' + (i % 26) as u8, b'a' + (i / 26 % 26) as u8]
                .iter()
                .map(|&b| b as char)
                .collect();
            let tail = " x".repeat((i % 5) as usize);
            let line = format!("{word} user {i} logged in from host h{}{tail}", i % 7);
            d.train(&line, 1_700_000_000_000_000_000 + i * 3_000_000_000);
            assert_eq!(d.bytes(), sum(&d), "after line {i}");
        }
        assert!(d.evicted > 0, "the test must evict");
        d.prune(1_700_000_000_000 + 4000 * 3000);
        assert_eq!(d.bytes(), sum(&d));
    }

    #[test]
    fn token_counts_key_the_tree_in_decimal() {
        let mut buf = [0u8; 20];
        for n in [0, 7, 10, 80, 127, usize::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
        }
    }

    #[test]
    fn formats_are_guessed_like_loki() {
        assert_eq!(Format::detect(r#"{"msg":"x"}"#), Format::Json);
        assert_eq!(Format::detect("a=1 b=\"x y\" c=3"), Format::Logfmt);
        assert_eq!(Format::detect("a=1  b=2"), Format::Unknown);
        assert_eq!(Format::detect("GET /index 200"), Format::Unknown);
        assert_eq!(Format::detect("x"), Format::Unknown);
    }

    #[test]
    fn plain_lines_become_templates() {
        let got = mined(&[
            "GET /api/users/1 took 15ms status 200",
            "GET /api/users/2 took 17ms status 200",
            "GET /api/users/3 took 9ms status 404",
            "connection reset by peer on worker 7",
        ]);
        assert_eq!(
            got,
            vec![
                ("GET <_> took <_> status <_>".to_string(), 3),
                ("connection reset by peer on worker 7".to_string(), 1),
            ]
        );
    }

    #[test]
    fn logfmt_values_vary_and_times_are_params() {
        let got = mined(&[
            "ts=2024-01-01T00:00:00Z level=info msg=\"user logged in\" user=1",
            "ts=2024-01-01T00:00:01Z level=info msg=\"user logged in\" user=2",
            "ts=2024-01-01T00:00:02Z level=info msg=\"user logged in\" user=3",
        ]);
        assert_eq!(
            got,
            vec![(
                "ts=<_> level=info msg=\"user logged in\" user=<_>".to_string(),
                3
            )]
        );
    }

    #[test]
    fn json_lines_use_their_message() {
        let got = mined(&[
            r#"{"level":"info","msg":"order 1 shipped to berlin"}"#,
            r#"{"level":"info","msg":"order 2 shipped to paris"}"#,
            r#"{"level":"info","other":"no message here at all"}"#,
        ]);
        assert_eq!(got, vec![("<_>order <_> shipped to <_>".to_string(), 2)]);
    }

    #[test]
    fn short_long_and_oversized_lines_are_skipped() {
        let mut d = Drain::new("a b c", 300, 20);
        d.train("a b c", 0);
        d.train("one two three four five six seven eight nine", 0);
        assert_eq!(d.clusters().count(), 0);
    }

    #[test]
    fn clusters_are_bounded_and_pruned() {
        let mut d = Drain::new("x", 5, 3000);
        for i in 0..4 {
            d.train(&format!("alpha{i} beta gamma delta epsilon"), 0);
        }
        // Distinct first words that share nothing: one cluster each, at most 5 kept.
        for w in ["a", "b", "c", "d", "e", "f", "g"] {
            d.train(&format!("{w}1 {w}2 {w}3 {w}4 {w}5 {w}6"), 3_600_000_000_000);
        }
        assert!(d.clusters().count() <= 5);
        d.prune(3_600_000);
        assert!(d.clusters().all(|c| !c.chunks.is_empty()));
    }

    #[test]
    fn placeholders_collapse() {
        assert_eq!(dedup_params("a <_><_><_> b <_>"), "a <_> b <_>");
        assert_eq!(dedup_params("<_><_>"), "<_>");
    }
}
