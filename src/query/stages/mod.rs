//! The pipeline's stages, one idea per file: line filters over regexes, patterns and IPs
//! (`regex`, `pattern`, `ip`), parsers (`json`, `logfmt`; `regexp` and `pattern` live in
//! the pipeline), `label_filter`, and the formatting stages (`format`). `go` holds Go's
//! value parsers whose error texts end up in `__error_details__`.

pub mod format;
pub mod go;
pub mod ip;
pub mod json;
pub mod label_filter;
pub mod logfmt;
pub mod pattern;
pub mod regex;

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
