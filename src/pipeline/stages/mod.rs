//! The pipeline's stages, one idea per file: line filters over regexes, patterns and IPs
//! (`regex`, `pattern`, `ip`), parsers (`json`, `logfmt`; `regexp` and `pattern` live in
//! the pipeline), `label_filter`, and the formatting stages (`format`). Go's value parsers, whose error texts
//! end up in `__error_details__`, are `logql::go`. [`ParserHints`] tells the
//! `json` and `logfmt` stages which labels the rest of the query reads, so that they skip
//! the others.

pub mod format;
pub mod ip;
pub mod json;
pub mod label_filter;
pub mod logfmt;
pub mod pattern;
pub mod regex;

use super::labels_builder::{LabelsBuilder, DUPLICATE_SUFFIX};

/// The labels a parser stage has to extract: those the later stages and the series of a
/// metric query read. A key whose name is a stream label is extracted as
/// `<name>_extracted`, so which keys give a wanted label depends on the stream:
/// [`ParserHints::refresh`] works it out once per stream. Extracting more than these
/// changes no answer.
#[derive(Debug, Clone, Default)]
pub struct ParserHints {
    names: Vec<String>,
    keys: Vec<HintKey>,
    /// The stream ([`LabelsBuilder::stream_id`]) the keys' `live` flags are for.
    stream: Option<u64>,
    /// The first bytes of the live keys' names (bit `c` for byte `c` below 0x80), or all
    /// bits when a live name is empty.
    firsts: u128,
}

/// A name a key may sanitise to for a wanted label.
#[derive(Debug, Clone)]
struct HintKey {
    name: String,
    /// Whether `name` is wanted, and `name_extracted`.
    plain: bool,
    suffixed: bool,
    /// Whether `name` is a label of the current stream (a key sanitising to it is stored
    /// as `name_extracted`), and whether that key gives a wanted label.
    in_stream: bool,
    live: bool,
    /// The longest run of letters and digits of `name`, which a key sanitising to it holds
    /// unchanged (`None`: no such run).
    run: Option<memchr::memmem::Finder<'static>>,
}

impl ParserHints {
    pub fn new(mut names: Vec<String>) -> Self {
        names.sort();
        names.dedup();
        let mut bases: Vec<&str> = names.iter().map(String::as_str).collect();
        bases.extend(
            names
                .iter()
                .filter_map(|n| n.strip_suffix(DUPLICATE_SUFFIX)),
        );
        bases.sort();
        bases.dedup();
        let keys = bases
            .into_iter()
            .map(|k| HintKey {
                name: k.to_string(),
                plain: names.iter().any(|n| n == k),
                suffixed: names
                    .iter()
                    .any(|n| n.strip_suffix(DUPLICATE_SUFFIX) == Some(k)),
                // Until the first refresh: as for a stream without the label.
                in_stream: false,
                live: names.iter().any(|n| n == k),
                run: k
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .max_by_key(|r| r.len())
                    .filter(|r| !r.is_empty())
                    .map(|r| memchr::memmem::Finder::new(r.as_bytes()).into_owned()),
            })
            .collect();
        let mut h = ParserHints {
            names,
            keys,
            stream: None,
            firsts: 0,
        };
        h.firsts = h.live_firsts();
        h
    }

    fn live_firsts(&self) -> u128 {
        let mut firsts = 0u128;
        for k in self.keys.iter().filter(|k| k.live) {
            match k.name.as_bytes().first() {
                Some(&c) if c < 0x80 => firsts |= 1 << c,
                Some(_) => {}
                None => return u128::MAX,
            }
        }
        firsts
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Works out which keys give a wanted label in the stream of `lbs` (once per stream).
    pub fn refresh(&mut self, lbs: &LabelsBuilder) {
        if self.stream == Some(lbs.stream_id()) {
            return;
        }
        for k in &mut self.keys {
            k.in_stream = lbs.base_has(&k.name);
            k.live = if k.in_stream { k.suffixed } else { k.plain };
        }
        self.firsts = self.live_firsts();
        self.stream = Some(lbs.stream_id());
    }

    /// The name under which a parser stores the key sanitised as `name`, when that label is
    /// wanted: `name`, or `name_extracted` when `name` is a stream label. `name` may get the
    /// suffix appended. As of the last [`Self::refresh`].
    pub fn wanted(&self, name: &mut String) -> bool {
        let Some(k) = self.keys.iter().find(|k| k.name == *name) else {
            return false;
        };
        if k.in_stream {
            name.push_str(DUPLICATE_SUFFIX);
        }
        k.live
    }

    /// False when a top-level key cannot give a wanted label, decided on the raw key
    /// without sanitising it; true when it may (or when only sanitising tells). As of the
    /// last [`Self::refresh`].
    pub fn may_want(&self, key: &[u8]) -> bool {
        let (Some(&first), Some(&last)) = (key.first(), key.last()) else {
            return self.keys.iter().any(|k| k.live && k.name.is_empty());
        };
        // The first byte of the name an ASCII first byte (not a space) sanitises to.
        if first < 0x80 && !is_space(first) {
            let c = if first.is_ascii_digit() {
                b'_'
            } else {
                sanitized(first)
            };
            if self.firsts & (1 << c) == 0 {
                return false;
            }
        }
        if !key.is_ascii() || is_space(first) || is_space(last) {
            return true;
        }
        // An ASCII key without surrounding spaces sanitises byte for byte, after a `_`
        // when it starts with a digit.
        self.keys.iter().any(|k| {
            let k = match (k.live, first.is_ascii_digit()) {
                (false, _) => return false,
                (true, false) => k.name.as_bytes(),
                (true, true) => match k.name.as_bytes().strip_prefix(b"_") {
                    Some(k) => k,
                    None => return false,
                },
            };
            k.len() == key.len() && k.iter().zip(key).all(|(&a, &b)| a == sanitized(b))
        })
    }

    /// False when no key in `text` can give a wanted label: `text` lacks the letters and
    /// digits of every name that would. As of the last [`Self::refresh`].
    pub fn may_appear(&self, text: &[u8]) -> bool {
        self.keys
            .iter()
            .any(|k| k.live && k.run.as_ref().is_none_or(|r| r.find(text).is_some()))
    }
}

/// [`sanitize_label_key`] of raw bytes (lossy UTF-8), without a copy for ASCII keys.
pub fn sanitize_key_bytes(key: &[u8], is_prefix: bool, out: &mut String) {
    if !key.is_ascii() {
        sanitize_label_key(&String::from_utf8_lossy(key), is_prefix, out);
        return;
    }
    let start = key.iter().position(|&c| !is_space(c)).unwrap_or(key.len());
    let end = key
        .iter()
        .rposition(|&c| !is_space(c))
        .map_or(start, |e| e + 1);
    let key = &key[start..end];
    if key.is_empty() {
        return;
    }
    if is_prefix && key[0].is_ascii_digit() {
        out.push('_');
    }
    let clean = key
        .iter()
        .position(|&c| sanitized(c) != c)
        .unwrap_or(key.len());
    if let Ok(s) = std::str::from_utf8(&key[..clean]) {
        out.push_str(s);
    }
    for &c in &key[clean..] {
        out.push(sanitized(c) as char);
    }
}

/// What `str::trim` removes of ASCII: space and \t \n \v \f \r.
fn is_space(c: u8) -> bool {
    c == b' ' || (0x09..=0x0d).contains(&c)
}

/// An ASCII byte of a label name: itself when allowed, else `_`.
fn sanitized(c: u8) -> u8 {
    if c.is_ascii_alphanumeric() || c == b'_' {
        c
    } else {
        b'_'
    }
}

/// Scanning eight bytes at a time in a `u64` (SWAR). `(x - 0x01…) & !x & 0x80…` flags the
/// zero bytes of `x`; it may also flag bytes above a flagged one, never below, so the lowest
/// flag of a mask (or of masks or-ed together) is exact.
pub(crate) mod swar {
    const ONES: u64 = 0x0101_0101_0101_0101;
    pub const HIGH: u64 = 0x8080_8080_8080_8080;

    /// The eight bytes at `at`, when there are eight.
    #[inline(always)]
    pub fn load(data: &[u8], at: usize) -> Option<u64> {
        data.get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map(|c| u64::from_le_bytes(*c))
    }

    /// Flags the bytes equal to `b`.
    #[inline(always)]
    pub fn eq(x: u64, b: u8) -> u64 {
        let y = x ^ (ONES * u64::from(b));
        y.wrapping_sub(ONES) & !y & HIGH
    }

    /// Flags the bytes below `n` (at most 0x80).
    #[inline(always)]
    pub fn below(x: u64, n: u8) -> u64 {
        x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
    }

    /// The index of the lowest flagged byte of a non-zero mask.
    #[inline(always)]
    pub fn first(m: u64) -> usize {
        (m.trailing_zeros() / 8) as usize
    }
}

/// Loki's `sanitizeLabelKey`: the trimmed key with every rune outside `[A-Za-z0-9_]` as
/// `_`, and `_` before a leading digit when `is_prefix`.
pub fn sanitize_label_key(key: &str, is_prefix: bool, out: &mut String) {
    let key = key.trim();
    if key.is_empty() {
        return;
    }
    if is_prefix && key.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &[
        "level",
        "Level",
        "lev-el",
        "lev.el",
        " level ",
        "\u{b}level\t",
        "1level",
        "9",
        "_1",
        "",
        " ",
        "lévél",
        "\u{a0}level",
        "level_extracted",
        "app",
        "a b",
    ];

    #[test]
    fn sanitize_key_bytes_matches_sanitize_label_key() {
        for key in KEYS {
            for prefix in [true, false] {
                let (mut want, mut got) = (String::new(), String::new());
                sanitize_label_key(key, prefix, &mut want);
                sanitize_key_bytes(key.as_bytes(), prefix, &mut got);
                assert_eq!(got, want, "{key:?} prefix {prefix}");
            }
        }
    }

    /// `may_want` may answer true for an unwanted key, never false for a wanted one.
    #[test]
    fn may_want_never_rejects_a_wanted_key() {
        let lbs = LabelsBuilder::for_stream(&[("app", "x")]);
        for names in [
            &["level"][..],
            &["_1level", "app_extracted"],
            &["_9", "lev_el"],
            &["level_extracted", "a_b"],
        ] {
            let mut h = ParserHints::new(names.iter().map(|s| s.to_string()).collect());
            h.refresh(&lbs);
            for key in KEYS {
                let mut name = String::new();
                sanitize_key_bytes(key.as_bytes(), true, &mut name);
                if !name.is_empty() && h.wanted(&mut name) {
                    assert!(h.may_want(key.as_bytes()), "{key:?} for {names:?}");
                }
            }
            assert!(!h.may_want(b"msg"));
        }
    }

    #[test]
    fn keys_of_stream_labels_are_wanted_only_with_the_suffix() {
        let mut h = ParserHints::new(vec!["app".into(), "duration_ms".into()]);
        h.refresh(&LabelsBuilder::for_stream(&[("app", "x")]));
        assert!(!h.may_want(b"app"));
        assert!(h.may_want(b"duration-ms"));
        assert!(!h.may_appear(b"app=1 x=2"));
        assert!(h.may_appear(b"a=1 duration.ms=2"));
        h.refresh(&LabelsBuilder::for_stream(&[("job", "x")]));
        assert!(h.may_want(b"app"));
        assert!(h.may_appear(b"app=1 x=2"));
    }
}
