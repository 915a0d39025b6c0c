//! Stages that rewrite the line or the labels: `line_format`, `label_format`, `decolorize`,
//! `drop` and `keep`. Templates are rendered by `crate::template`; a render error
//! sets `__error__=TemplateFormatErr` (with the error text as details) and leaves the line
//! or label unchanged. `line_format "{{.name}}"` takes the label value directly (an absent
//! label gives an empty line). `label_format` renders every template of one stage against
//! the labels as they were when its first template ran.

use std::sync::OnceLock;

use crate::logql::{LabelFmt, LabelRef, Matcher};
use crate::template::Template;

use super::super::labels_builder::{LabelsBuilder, ERROR_DETAILS_LABEL, ERROR_LABEL};

pub const ERR_TEMPLATE_FORMAT: &str = "TemplateFormatErr";

fn line_str(line: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(line)
}

fn render(
    t: &Template,
    lookup: &dyn Fn(&str) -> Option<String>,
    line: &[u8],
    ts: i64,
    out: &mut String,
) -> Result<(), String> {
    out.clear();
    t.render(lookup, &line_str(line), ts, out)
        .map_err(|e| e.to_string())
}

/// `| line_format "..."`.
#[derive(Debug)]
pub struct LineFormat {
    template: Template,
    simple_key: Option<String>,
    out: String,
}

fn simple_key(text: &str) -> Option<String> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let name = inner.strip_prefix('.')?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    valid.then(|| name.to_string())
}

impl LineFormat {
    pub fn new(text: &str) -> Result<Self, String> {
        let template = Template::parse(text).map_err(|e| format!("invalid line template: {e}"))?;
        Ok(LineFormat {
            template,
            simple_key: simple_key(text),
            out: String::new(),
        })
    }

    pub fn referenced_labels(&self) -> Vec<String> {
        self.template.referenced_labels()
    }

    /// Every label the stage reads, or `None` when the template may read any.
    pub fn read_labels(&self) -> Option<&[String]> {
        self.template.read_labels()
    }

    /// Writes the new line into `out`; false when the line is kept (render error).
    pub fn process(
        &mut self,
        ts: i64,
        line: &[u8],
        lbs: &mut LabelsBuilder,
        out: &mut Vec<u8>,
    ) -> bool {
        if let Some(key) = &self.simple_key {
            out.clear();
            if let Some(v) = lbs.get(key) {
                out.extend_from_slice(v.as_bytes());
            }
            return true;
        }
        let result = {
            let b: &LabelsBuilder = lbs;
            let lookup = |name: &str| b.template_value(name).map(str::to_string);
            render(&self.template, &lookup, line, ts, &mut self.out)
        };
        match result {
            Ok(()) => {
                out.clear();
                out.extend_from_slice(self.out.as_bytes());
                true
            }
            Err(e) => {
                lbs.set_err(ERR_TEMPLATE_FORMAT);
                lbs.set_err_details(&e);
                false
            }
        }
    }
}

#[derive(Debug)]
enum LabelFormatOp {
    Rename { dst: String, src: String },
    Template { dst: String, template: Template },
}

/// `| label_format a=b, c="{{.x}}"`.
#[derive(Debug)]
pub struct LabelFormat {
    ops: Vec<LabelFormatOp>,
    snapshot: Vec<(String, String)>,
    out: String,
}

impl LabelFormat {
    pub fn new(formats: &[LabelFmt]) -> Result<Self, String> {
        let mut ops = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for f in formats {
            let dst = match f {
                LabelFmt::Rename { dst, .. } | LabelFmt::Template { dst, .. } => dst.as_str(),
            };
            if dst == ERROR_LABEL {
                return Err(format!("{dst} cannot be formatted"));
            }
            if seen.contains(&dst) {
                return Err(format!(
                    "multiple label name '{dst}' not allowed in a single format operation"
                ));
            }
            seen.push(dst);
            ops.push(match f {
                LabelFmt::Rename { dst, src } => LabelFormatOp::Rename {
                    dst: dst.clone(),
                    src: src.clone(),
                },
                LabelFmt::Template { dst, template } => LabelFormatOp::Template {
                    dst: dst.clone(),
                    template: Template::parse(template)
                        .map_err(|e| format!("invalid template for label '{dst}': {e}"))?,
                },
            });
        }
        Ok(LabelFormat {
            ops,
            snapshot: Vec::new(),
            out: String::new(),
        })
    }

    pub fn referenced_labels(&self) -> Vec<String> {
        let mut out = Vec::new();
        for op in &self.ops {
            match op {
                LabelFormatOp::Rename { src, .. } => out.push(src.clone()),
                LabelFormatOp::Template { template, .. } => {
                    out.extend(template.referenced_labels())
                }
            }
        }
        out
    }

    /// Every label the stage reads, or `None` when a template may read any.
    pub fn read_labels(&self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for op in &self.ops {
            match op {
                LabelFormatOp::Rename { src, .. } => out.push(src.clone()),
                LabelFormatOp::Template { template, .. } => {
                    out.extend_from_slice(template.read_labels()?)
                }
            }
        }
        Some(out)
    }

    pub fn process(&mut self, ts: i64, line: &[u8], lbs: &mut LabelsBuilder) {
        self.snapshot.clear();
        for op in &self.ops {
            match op {
                LabelFormatOp::Rename { dst, src } => {
                    if let Some(v) = lbs.get(src).map(str::to_string) {
                        lbs.set_parsed(dst, &v);
                        lbs.del(src);
                    }
                }
                LabelFormatOp::Template { dst, template } => {
                    if self.snapshot.is_empty() {
                        let snap = &mut self.snapshot;
                        lbs.for_each(|n, v, _| snap.push((n.to_string(), v.to_string())));
                    }
                    let snap = &self.snapshot;
                    let lookup = |name: &str| {
                        snap.iter()
                            .rev()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                    };
                    match render(template, &lookup, line, ts, &mut self.out) {
                        Ok(()) => lbs.set_parsed(dst, &self.out),
                        Err(e) => {
                            lbs.set_err(ERR_TEMPLATE_FORMAT);
                            lbs.set_err_details(&e);
                        }
                    }
                }
            }
        }
    }
}

fn ansi_regex() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::bytes::Regex::new(
            "[\u{1b}\u{9b}][\\[\\]()#;?]*(?:(?:(?:[a-zA-Z0-9]*(?:;[a-zA-Z0-9]*)*)?\u{7})|(?:(?:[0-9]{1,4}(?:;[0-9]{0,4})*)?[0-9A-PRZcf-ntqry=><~]))",
        )
        .unwrap_or_else(|e| panic!("bug: ansi regex does not compile: {e}"))
    })
}

/// `| decolorize`: removes ANSI escape sequences; true when the line changed.
pub fn decolorize(line: &[u8], out: &mut Vec<u8>) -> bool {
    let re = ansi_regex();
    if !re.is_match(line) {
        return false;
    }
    out.clear();
    let mut last = 0;
    for m in re.find_iter(line) {
        out.extend_from_slice(&line[last..m.start()]);
        last = m.end();
    }
    out.extend_from_slice(&line[last..]);
    true
}

/// `| drop a, b="v"`.
pub fn drop_labels(refs: &[LabelRef], lbs: &mut LabelsBuilder) {
    for r in refs {
        match r {
            LabelRef::Name(name) => {
                if name == ERROR_LABEL {
                    lbs.reset_err();
                } else if name == ERROR_DETAILS_LABEL {
                    lbs.reset_err_details();
                } else if lbs.get(name).is_some() {
                    lbs.del(name);
                }
            }
            LabelRef::Matcher(m) => drop_matching(m, lbs),
        }
    }
}

fn drop_matching(m: &Matcher, lbs: &mut LabelsBuilder) {
    if m.name == ERROR_LABEL {
        if m.matches(lbs.err()) {
            lbs.reset_err();
        }
        return;
    }
    if m.name == ERROR_DETAILS_LABEL {
        if m.matches(lbs.err_details()) {
            lbs.reset_err_details();
        }
        return;
    }
    let value = lbs.get(&m.name).unwrap_or("");
    if m.matches(value) {
        lbs.del(&m.name);
    }
}

/// `| keep a, b="v"`: deletes every other label; the error labels always stay.
pub fn keep_labels(refs: &[LabelRef], lbs: &mut LabelsBuilder, scratch: &mut Vec<String>) {
    if refs.is_empty() {
        return;
    }
    scratch.clear();
    lbs.for_each(|name, value, _| {
        if name == ERROR_LABEL || name == ERROR_DETAILS_LABEL || name == "__preserve_error__" {
            return;
        }
        let keep = refs.iter().any(|r| match r {
            LabelRef::Name(n) => n == name,
            LabelRef::Matcher(m) => m.name == name && m.matches(value),
        });
        if !keep {
            scratch.push(name.to_string());
        }
    });
    for name in scratch.iter() {
        lbs.del(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decolorize_strips_ansi_sequences() {
        let mut out = Vec::new();
        assert!(decolorize(b"\x1b[31mred\x1b[0m text", &mut out));
        assert_eq!(out, b"red text");
        assert!(!decolorize(b"plain", &mut out));
    }

    #[test]
    fn simple_key_detection() {
        assert_eq!(simple_key("{{.msg}}").as_deref(), Some("msg"));
        assert_eq!(simple_key("{{ .msg }}").as_deref(), Some("msg"));
        assert_eq!(simple_key("{{.a}} {{.b}}"), None);
        assert_eq!(simple_key("{{.a.b}}"), None);
    }
}
