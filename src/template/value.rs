//! Template values: what a pipeline passes on, how Go prints it (`%v`), and time values.

use std::collections::BTreeMap;

use super::*;

/// A point in time: Unix seconds and nanoseconds plus the UTC offset it is shown in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Time {
    pub(super) secs: i64,
    pub(super) nanos: u32,
    pub(super) off: i32,
}

/// Unix seconds of Go's zero `time.Time`, 0001-01-01T00:00:00Z.
pub(super) const ZERO_TIME_SECS: i64 = -62_135_596_800;

impl Time {
    pub(super) fn from_ns(ns: i64) -> Time {
        Time {
            secs: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as u32,
            off: 0,
        }
    }

    pub(super) fn zero() -> Time {
        Time {
            secs: ZERO_TIME_SECS,
            nanos: 0,
            off: 0,
        }
    }

    pub(super) fn unix_nanos(&self) -> i64 {
        self.secs
            .wrapping_mul(1_000_000_000)
            .wrapping_add(i64::from(self.nanos))
    }
}

/// A dynamically typed template value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Time(Time),
    /// The entry's labels (the template's `.` at the top level).
    Labels,
}

impl Value {
    pub(super) fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Time(_) | Value::Labels => true,
        }
    }

    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Time(_) => "time.Time",
            Value::Labels => "map[string]string",
        }
    }

    /// Go's `%v` rendering, which is also how an action prints its value.
    pub(super) fn write_to(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&fmt_float_g(*f, None, false)),
            Value::Str(s) => out.push_str(s),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_to(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_to(out);
                }
                out.push(']');
            }
            Value::Time(t) => out.push_str(&time_string(*t)),
            Value::Labels => out.push_str("map[]"),
        }
    }

    /// Lenient conversion to a string, as sprig's `strval` does (nil becomes empty).
    pub(super) fn to_str(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Nil => String::new(),
            v => {
                let mut s = String::new();
                v.write_to(&mut s);
                s
            }
        }
    }
}

/// Go's `%g`-family float formatting with shortest precision when `prec` is `None`.
pub(super) fn fmt_float_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Significant digits and decimal exponent, via Rust's `{:e}`.
    let sci = match prec {
        None => format!("{f:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, f),
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut digits = digits.trim_end_matches('0').to_string();
    if digits.is_empty() {
        digits.push('0');
    }
    let eprec = match prec {
        None => 6,
        Some(p) => {
            let p = p.max(1) as i32;
            if p > digits.len() as i32 && digits.len() as i32 > exp {
                digits.len() as i32
            } else {
                p
            }
        }
    };
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if exp < -4 || exp >= eprec {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push(if upper { 'E' } else { 'e' });
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.abs()));
    } else if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}
