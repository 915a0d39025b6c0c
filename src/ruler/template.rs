//! Alert label and annotation templates: the part of Prometheus' alert templating that rules
//! use — text with `{{ ... }}` actions holding a pipeline of operands (`$labels.NAME`,
//! `$value`, `$externalLabels.NAME`, `.Labels.NAME`, `.Value`, string and number literals) and
//! functions (`humanize`, `humanize1024`, `humanizePercentage`, `humanizeDuration`, `printf`,
//! `toUpper`, `toLower`, `title`), `|` passing a value on as the last argument, `{{-`/`-}}`
//! trimming and `{{/* comments */}}`. Numbers print as Go's `%v` does. Parsed once when rules
//! load (so `rules check` reports errors), rendered at each evaluation.
//!
//! Hand-written: Go's `text/template` with Prometheus' function map has no Rust crate, and
//! LogQL's `line_format` engine (`query::template`) has neither `$value` nor these functions.

use std::collections::BTreeMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum TemplateError {
    #[error("template: {0}")]
    Parse(String),
}

/// What a template sees: the alert's series labels and value.
pub struct TemplateData<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub value: f64,
    pub external_labels: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<Command>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Label(String),
    Value,
    ExternalLabel(String),
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Command {
    Operand(Operand),
    Call(Func, Vec<Operand>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
}

#[derive(Debug, Clone)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(v) => go_g(*v, None),
        }
    }

    fn num(&self) -> Result<f64, String> {
        match self {
            Val::Num(v) => Ok(*v),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("cannot convert {s:?} to a number")),
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let err = |m: String| TemplateError::Parse(m);
        let mut nodes = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let mut before = &rest[..open];
            let mut inner_start = open + 2;
            if rest[inner_start..].starts_with("- ") || rest[inner_start..].starts_with("-\t") {
                before = before.trim_end();
                inner_start += 1;
            }
            if !before.is_empty() {
                nodes.push(Node::Text(before.to_string()));
            }
            let close = find_close(&rest[inner_start..])
                .ok_or_else(|| err(format!("unclosed action {:?}", &rest[open..])))?;
            let mut inner = &rest[inner_start..inner_start + close];
            let mut after = &rest[inner_start + close + 2..];
            if inner.ends_with(" -") || inner.ends_with("\t-") {
                inner = &inner[..inner.len() - 1];
                after = after.trim_start();
            }
            let inner = inner.trim();
            if !(inner.starts_with("/*") && inner.ends_with("*/")) {
                nodes.push(Node::Action(parse_pipeline(inner).map_err(err)?));
            }
            rest = after;
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Template { nodes })
    }

    /// Renders the template; a function failing at run time (`humanize "abc"`) is an error.
    pub fn render(&self, d: &TemplateData) -> Result<String, String> {
        let mut out = String::new();
        for n in &self.nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(cmds) => {
                    let mut prev: Option<Val> = None;
                    for c in cmds {
                        prev = Some(run(c, prev, d)?);
                    }
                    if let Some(v) = prev {
                        out.push_str(&v.text());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Renders `text` as a template in one go (parse errors included in the message).
pub fn expand(text: &str, d: &TemplateData) -> Result<String, String> {
    Template::parse(text).map_err(|e| e.to_string())?.render(d)
}

/// The end of an action (`}}` outside a string literal).
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

fn tokens(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            out.push("|".into());
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut end = None;
            let mut escaped = false;
            for (j, d) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if d == '\\' && c == '"' {
                    escaped = true;
                } else if d == c {
                    end = Some(j);
                    break;
                }
            }
            let end = end.ok_or_else(|| format!("unterminated string in {s:?}"))?;
            out.push(s[i..=end].to_string());
        } else {
            let mut end = s.len();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_whitespace() || d == '|' {
                    end = j;
                    break;
                }
                chars.next();
            }
            out.push(s[i..end].to_string());
        }
    }
    Ok(out)
}

fn parse_pipeline(s: &str) -> Result<Vec<Command>, String> {
    let toks = tokens(s)?;
    if toks.is_empty() {
        return Err("missing value for command".into());
    }
    let mut cmds = Vec::new();
    for part in toks.split(|t| t == "|") {
        let Some((head, args)) = part.split_first() else {
            return Err(format!("missing command in pipeline {s:?}"));
        };
        let func = match head.as_str() {
            "humanize" => Some(Func::Humanize),
            "humanize1024" => Some(Func::Humanize1024),
            "humanizePercentage" => Some(Func::HumanizePercentage),
            "humanizeDuration" => Some(Func::HumanizeDuration),
            "printf" => Some(Func::Printf),
            "toUpper" => Some(Func::ToUpper),
            "toLower" => Some(Func::ToLower),
            "title" => Some(Func::Title),
            _ => None,
        };
        let args: Vec<Operand> = args.iter().map(|a| operand(a)).collect::<Result<_, _>>()?;
        match func {
            Some(f) => cmds.push(Command::Call(f, args)),
            None if args.is_empty() => cmds.push(Command::Operand(operand(head)?)),
            None => return Err(format!("function {head:?} not defined")),
        }
    }
    Ok(cmds)
}

fn operand(t: &str) -> Result<Operand, String> {
    if let Some(name) = t
        .strip_prefix("$labels.")
        .or_else(|| t.strip_prefix(".Labels."))
    {
        return Ok(Operand::Label(name.to_string()));
    }
    if let Some(name) = t
        .strip_prefix("$externalLabels.")
        .or_else(|| t.strip_prefix(".ExternalLabels."))
    {
        return Ok(Operand::ExternalLabel(name.to_string()));
    }
    match t {
        "$value" | ".Value" => return Ok(Operand::Value),
        _ => {}
    }
    if let Some(body) = t.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
        return unquote(body).map(Operand::Str);
    }
    if let Some(body) = t.strip_prefix('`').and_then(|b| b.strip_suffix('`')) {
        return Ok(Operand::Str(body.to_string()));
    }
    if let Ok(v) = t.parse::<f64>() {
        return Ok(Operand::Num(v));
    }
    if t.starts_with('$') || t.starts_with('.') {
        return Err(format!(
            "undefined {t:?}: use $labels.NAME, $value or $externalLabels.NAME"
        ));
    }
    Err(format!("function {t:?} not defined"))
}

fn unquote(body: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut it = body.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

fn value_of(o: &Operand, d: &TemplateData) -> Val {
    match o {
        Operand::Label(n) => Val::Str(d.labels.get(n).cloned().unwrap_or_default()),
        Operand::ExternalLabel(n) => {
            Val::Str(d.external_labels.get(n).cloned().unwrap_or_default())
        }
        Operand::Value => Val::Num(d.value),
        Operand::Str(s) => Val::Str(s.clone()),
        Operand::Num(v) => Val::Num(*v),
    }
}

fn run(c: &Command, prev: Option<Val>, d: &TemplateData) -> Result<Val, String> {
    let (f, args) = match c {
        Command::Operand(o) => return Ok(value_of(o, d)),
        Command::Call(f, args) => (f, args),
    };
    let mut vals: Vec<Val> = args.iter().map(|a| value_of(a, d)).collect();
    vals.extend(prev);
    let one = |vals: &[Val]| -> Result<Val, String> {
        match vals {
            [v] => Ok(v.clone()),
            _ => Err(format!(
                "wrong number of args for {f:?}: want 1 got {}",
                vals.len()
            )),
        }
    };
    Ok(match f {
        Func::Humanize => Val::Str(humanize(one(&vals)?.num()?)),
        Func::Humanize1024 => Val::Str(humanize1024(one(&vals)?.num()?)),
        Func::HumanizePercentage => {
            Val::Str(format!("{}%", go_g(one(&vals)?.num()? * 100.0, Some(4))))
        }
        Func::HumanizeDuration => Val::Str(humanize_duration(one(&vals)?.num()?)),
        Func::ToUpper => Val::Str(one(&vals)?.text().to_uppercase()),
        Func::ToLower => Val::Str(one(&vals)?.text().to_lowercase()),
        Func::Title => Val::Str(title(&one(&vals)?.text())),
        Func::Printf => {
            let Some((fmt, rest)) = vals.split_first() else {
                return Err("printf needs a format".into());
            };
            Val::Str(printf(&fmt.text(), rest)?)
        }
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// Prometheus' `humanize`: SI prefixes, four significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, Some(4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_g(v, Some(4)))
}

/// Prometheus' `humanizeDuration` of seconds: `1d 2h 3m 4s`, `1.5s`, `250ms`.
fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, d / 60 % 60, d / 3600 % 24, d / 86400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(v, Some(4)))
        };
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_g(v, Some(4)))
}

/// `printf` with the verbs rules use: `%s %v %d %f %e %g %q %%`, with width and precision.
fn printf(fmt: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = it.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' {
                spec.push(d);
                it.next();
            } else {
                break;
            }
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let (width, prec) = match spec.trim_start_matches(['-', '+']).split_once('.') {
            Some((w, p)) => (w.parse().ok(), Some(p.parse().unwrap_or(0))),
            None => (spec.trim_start_matches(['-', '+']).parse().ok(), None),
        };
        let s = match verb {
            's' | 'v' => arg.text(),
            'q' => format!("{:?}", arg.text()),
            'd' => format!("{}", arg.num()?.trunc() as i64),
            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), arg.num()?),
            'e' => go_e(arg.num()?, prec.unwrap_or(6)),
            'g' => go_g(arg.num()?, prec),
            _ => format!("%!{verb}({})", arg.text()),
        };
        let width: usize = width.unwrap_or(0);
        if s.chars().count() < width {
            let pad = " ".repeat(width - s.chars().count());
            if spec.starts_with('-') {
                out.push_str(&s);
                out.push_str(&pad);
            } else {
                out.push_str(&pad);
                out.push_str(&s);
            }
        } else {
            out.push_str(&s);
        }
    }
    Ok(out)
}

/// Decimal digits (no trailing zeros) and the decimal point position of `|v|`, rounded to
/// `prec` significant digits, or the shortest round-tripping digits.
fn digits(v: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        Some(p) => format!("{:.*e}", p.max(1) - 1, v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mant, exp) = s.split_once('e').expect("bug: {:e} has an exponent");
    let exp: i32 = exp.parse().expect("bug: exponent is a number");
    let mut d: String = mant.chars().filter(|c| *c != '.').collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    (d, exp + 1)
}

fn special(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Go's `%e` with `prec` fraction digits.
fn go_e(v: f64, prec: usize) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let s = format!("{:.*e}", prec, v);
    let (mant, exp) = s.split_once('e').expect("bug: {:e} has an exponent");
    let exp: i32 = exp.parse().expect("bug: exponent is a number");
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

/// Go's `%g` (`prec` significant digits) and `%v` (`None`: shortest) for floats.
pub fn go_g(v: f64, prec: Option<usize>) -> String {
    if let Some(s) = special(v) {
        return s;
    }
    let sign = if v.is_sign_negative() && v != 0.0 {
        "-"
    } else {
        ""
    };
    if v == 0.0 {
        return "0".into();
    }
    let (d, dp) = digits(v, prec);
    let nd = d.len() as i32;
    let mut eprec = prec.map(|p| p.max(1) as i32).unwrap_or(nd);
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if prec.is_none() {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let mut m = d[..1].to_string();
        if nd > 1 {
            m.push('.');
            m.push_str(&d[1..]);
        }
        return format!(
            "{sign}{m}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        );
    }
    let s = if dp <= 0 {
        format!("0.{}{d}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{d}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &d[..dp as usize], &d[dp as usize..])
    };
    format!("{sign}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn render(tmpl: &str, value: f64, want: &str) {
        let labels: BTreeMap<String, String> = [("job", "api"), ("service", "payments")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ext = BTreeMap::from([("cluster".to_string(), "eu1".to_string())]);
        let d = TemplateData {
            labels: &labels,
            value,
            external_labels: &ext,
        };
        let got = Template::parse(tmpl).unwrap().render(&d).unwrap();
        assert_eq!(got, want, "{tmpl} with {value}");
    }

    #[test]
    fn renders_like_prometheus() {
        render("plain text", 1.0, "plain text");
        render("{{ $labels.job }} is down", 1.0, "api is down");
        render("{{$labels.service}}/{{ .Labels.job }}", 1.0, "payments/api");
        render("missing: [{{ $labels.nope }}]", 1.0, "missing: []");
        render("{{ $value }}", 0.05, "0.05");
        render("{{ $value }}", 1e6, "1e+06");
        render("{{ $value }}", 123456.0, "123456");
        render("{{ $value }}", 2.0, "2");
        render("{{ humanize $value }}", 1234.5, "1.234k");
        render("{{ $value | humanize }}", 0.0123, "12.3m");
        render("{{ humanize $value }}", 0.0, "0");
        render("{{ humanize $value }}", 12.0, "12");
        render("{{ humanize $value }}", 2.5e9, "2.5G");
        render("{{ humanize1024 $value }}", 2048.0, "2ki");
        render("{{ humanizePercentage $value }}", 0.1234, "12.34%");
        render("{{ humanizeDuration $value }}", 3725.0, "1h 2m 5s");
        render("{{ humanizeDuration $value }}", 1.5, "1.5s");
        render("{{ humanizeDuration $value }}", 0.25, "250ms");
        render("{{ printf \"%.2f\" $value }}", 0.12345, "0.12");
        render("{{ $value | printf \"%.1f%%\" }}", 12.34, "12.3%");
        render("{{ printf \"%s=%d\" $labels.job $value }}", 7.9, "api=7");
        render("{{ $labels.job | toUpper }}", 0.0, "API");
        render("{{ $externalLabels.cluster }}", 0.0, "eu1");
        render("a {{- \" b \" -}} c", 0.0, "a b c");
        render("x{{/* a comment */}}y", 0.0, "xy");
        render("{{ \"}}\" }}", 0.0, "}}");
    }

    #[track_caller]
    fn bad(tmpl: &str, want: &str) {
        let e = Template::parse(tmpl).unwrap_err().to_string();
        assert!(e.contains(want), "{tmpl}: {e}");
    }

    #[test]
    fn errors_name_the_problem() {
        bad("{{ $labels.job ", "unclosed action");
        bad("{{ nope $value }}", "function \"nope\" not defined");
        bad("{{ $vlaue }}", "undefined \"$vlaue\"");
        bad("{{ }}", "missing value");
        bad("{{ \"open }}", "unclosed action");
    }

    #[track_caller]
    fn g(v: f64, prec: Option<usize>, want: &str) {
        assert_eq!(go_g(v, prec), want, "{v} {prec:?}");
    }

    #[test]
    fn go_float_formatting() {
        g(1.0, None, "1");
        g(-2.5, None, "-2.5");
        g(0.0001, None, "0.0001");
        g(0.00001, None, "1e-05");
        g(1234567.0, None, "1.234567e+06");
        g(100.0, Some(4), "100");
        g(12345.0, Some(4), "1.234e+04");
        g(f64::NAN, None, "NaN");
        g(f64::INFINITY, Some(4), "+Inf");
        assert_eq!(go_e(12.0, 6), "1.200000e+01");
    }
}
