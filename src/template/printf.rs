//! Go's `fmt`: `print`, `println` and `printf` with its verbs, flags, width and precision, as
//! Go formats each kind of value.

use super::*;

/// `fmt.Sprint` (or `fmt.Sprintln`): spaces between operands when neither is a string.
pub(super) fn go_sprint(a: &[Value], ln: bool) -> Result<String, String> {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && (ln || !is_str(v) && !is_str(&a[i - 1])) {
            out.push(' ');
        }
        v.write_to(&mut out);
        check_len(out.len())?;
    }
    if ln {
        out.push('\n');
    }
    Ok(out)
}

#[derive(Default, Clone, Copy)]
pub(super) struct Spec {
    pub(super) minus: bool,
    pub(super) plus: bool,
    pub(super) sharp: bool,
    pub(super) space: bool,
    pub(super) zero: bool,
    pub(super) width: Option<usize>,
    pub(super) prec: Option<usize>,
}

/// Largest width or precision honoured, so a format cannot allocate without bound.
pub(super) const MAX_WIDTH: usize = 1 << 16;

/// `fmt.Sprintf` for the common verbs; mismatches render as Go does (`%!d(string=x)`).
pub(super) fn go_sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, next: &mut usize| {
            if chars.peek() == Some(&'*') {
                chars.next();
                let v = args.get(*next).map(to_i64).unwrap_or(0);
                *next += 1;
                return Some((v.unsigned_abs() as usize).min(MAX_WIDTH));
            }
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some((n.unwrap_or(0) * 10 + d as usize).min(MAX_WIDTH));
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars, &mut next);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars, &mut next).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            None => {
                out.push_str("%!");
                out.push(verb);
                out.push_str("(MISSING)");
            }
            Some(v) => fmt_value(&mut out, verb, spec, v),
        }
        next += 1;
        check_len(out.len())?;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, v) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(v.type_name());
            out.push('=');
            v.write_to(&mut out);
            check_len(out.len())?;
        }
        out.push(')');
    }
    Ok(out)
}

pub(super) fn bad_verb(out: &mut String, verb: char, v: &Value) {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if matches!(v, Value::Nil) {
        out.push_str("<nil>");
    } else {
        out.push_str(v.type_name());
        out.push('=');
        v.write_to(out);
    }
    out.push(')');
}

/// Pads `body` to the spec's width; `sign_aware` zero-padding goes after a leading sign.
pub(super) fn pad(out: &mut String, spec: Spec, body: &str, numeric: bool) {
    let len = body.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(body);
        return;
    }
    let fill = width - len;
    if spec.minus {
        out.push_str(body);
        out.extend(std::iter::repeat_n(' ', fill));
    } else if spec.zero && numeric {
        let (sign, rest) = match body.as_bytes().first() {
            Some(b'-' | b'+' | b' ') => body.split_at(1),
            _ => ("", body),
        };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', fill));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(body);
    }
}

pub(super) fn sign_prefix(spec: Spec, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

pub(super) fn fmt_value(out: &mut String, verb: char, spec: Spec, v: &Value) {
    match v {
        Value::Str(st) => fmt_str(out, verb, spec, st, v),
        Value::Int(i) => fmt_int(out, verb, spec, *i, v),
        Value::Float(f) => fmt_float(out, verb, spec, *f, v),
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, spec, if *b { "true" } else { "false" }, false),
            _ => bad_verb(out, verb, v),
        },
        Value::Nil => match verb {
            'v' => pad(out, spec, "<nil>", false),
            _ => bad_verb(out, verb, v),
        },
        Value::List(l) => {
            out.push('[');
            for (i, e) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, verb, spec, e);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_str(out, verb, spec, k, &Value::Nil);
                out.push(':');
                fmt_value(out, verb, spec, e);
            }
            out.push(']');
        }
        Value::Time(_) | Value::Labels => match verb {
            'v' | 's' => {
                let mut body = String::new();
                v.write_to(&mut body);
                pad(out, spec, &body, false);
            }
            _ => bad_verb(out, verb, v),
        },
    }
}

pub(super) fn fmt_str(out: &mut String, verb: char, spec: Spec, st: &str, v: &Value) {
    match verb {
        's' | 'v' => {
            let body: String = match spec.prec {
                Some(p) => st.chars().take(p).collect(),
                None => st.to_string(),
            };
            pad(out, spec, &body, false);
        }
        'q' => pad(out, spec, &go_quote(st), false),
        'x' | 'X' => {
            let bytes = match spec.prec {
                Some(p) => &st.as_bytes()[..p.min(st.len())],
                None => st.as_bytes(),
            };
            let mut body = String::new();
            for b in bytes {
                if verb == 'x' {
                    body.push_str(&format!("{b:02x}"));
                } else {
                    body.push_str(&format!("{b:02X}"));
                }
            }
            pad(out, spec, &body, false);
        }
        _ => bad_verb(out, verb, v),
    }
}

/// Go's `strconv.Quote`.
pub(super) fn go_quote(st: &str) -> String {
    let mut q = String::with_capacity(st.len() + 2);
    q.push('"');
    for c in st.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\x07' => q.push_str("\\a"),
            '\x08' => q.push_str("\\b"),
            '\x0c' => q.push_str("\\f"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            '\x0b' => q.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => q.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

pub(super) fn fmt_int(out: &mut String, verb: char, spec: Spec, i: i64, v: &Value) {
    let neg = i < 0;
    let u = i.unsigned_abs();
    let digits = match verb {
        'd' | 'v' => u.to_string(),
        'x' => format!("{}{u:x}", if spec.sharp { "0x" } else { "" }),
        'X' => format!("{}{u:X}", if spec.sharp { "0X" } else { "" }),
        'o' => format!("{}{u:o}", if spec.sharp { "0" } else { "" }),
        'O' => format!("0o{u:o}"),
        'b' => format!("{u:b}"),
        'c' => {
            let ch = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            return pad(out, spec, &ch.to_string(), false);
        }
        'q' => {
            let ch = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            let quoted = go_quote(&ch.to_string());
            let inner = &quoted[1..quoted.len() - 1];
            let inner = if inner == "\\\"" {
                "\""
            } else if ch == '\'' {
                "\\'"
            } else {
                inner
            };
            return pad(out, spec, &format!("'{inner}'"), false);
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => return bad_verb(out, verb, v),
        _ => return bad_verb(out, verb, v),
    };
    let digits = match spec.prec {
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        Some(0) if u == 0 => String::new(),
        _ => digits,
    };
    let body = format!("{}{digits}", sign_prefix(spec, neg));
    let zero_ok = spec.prec.is_none();
    pad(
        out,
        Spec {
            zero: spec.zero && zero_ok,
            ..spec
        },
        &body,
        true,
    );
}

pub(super) fn fmt_float(out: &mut String, verb: char, spec: Spec, f: f64, v: &Value) {
    if !f.is_finite() {
        let body = if f.is_nan() {
            format!(
                "{}NaN",
                if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                }
            )
        } else if f > 0.0 {
            format!(
                "{}Inf",
                if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                }
            )
        } else {
            "-Inf".to_string()
        };
        return pad(
            out,
            Spec {
                zero: false,
                ..spec
            },
            &body,
            true,
        );
    }
    let neg = f.is_sign_negative() && f != 0.0 || (f == 0.0 && f.is_sign_negative());
    let a = f.abs();
    let digits = match verb {
        'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), a),
        'e' | 'E' => {
            let s = go_exp(a, spec.prec.unwrap_or(6));
            if verb == 'E' {
                s.to_uppercase()
            } else {
                s
            }
        }
        'g' | 'G' | 'v' => fmt_float_g(a, spec.prec, verb == 'G'),
        _ => return bad_verb(out, verb, v),
    };
    let body = format!("{}{digits}", sign_prefix(spec, neg));
    pad(out, spec, &body, true);
}

/// `%e` with `prec` digits after the point and a two-digit exponent.
pub(super) fn go_exp(a: f64, prec: usize) -> String {
    let sci = format!("{a:.prec$e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}
