//! The canonical LogQL printer: `Display` for every node of `ast`, producing one-line text
//! that the parser reads back to an equal tree (`parse(print(parse(q))) == parse(q)`), and
//! [`format_query`] for the `/format_query` endpoint, which breaks long metric queries
//! over indented lines. Parentheses are printed only where precedence needs them; strings
//! are double-quoted with Go escapes; durations use `h m s ms us ns` and byte sizes plain
//! bytes (`5000B`), so no value loses precision on the way back.

use std::fmt::{self, Display, Formatter, Write};

use super::ast::{
    BinOpExpr, BinOpModifier, DropLabelsExpr, Expr, GroupSide, Grouping, KeepLabelsExpr,
    LabelExtractionExpr, LabelFilterExpr, LabelFmt, LabelFormatExpr, LabelParserExpr, LabelRef,
    LabelReplaceExpr, LineFilterExpr, LineFilterValue, LineFormatExpr, LiteralExpr, LogExpr,
    LogRangeExpr, LogSelectorExpr, Matcher, RangeAggregationExpr, SampleExpr, Stage, UnwrapExpr,
    VectorAggregationExpr, VectorExpr,
};

/// Writes `s` as a double-quoted LogQL string, as Loki's printer does (Go's `strconv.Quote`).
pub fn quote(s: &str) -> String {
    super::go::quote(s)
}

/// A float that reads back exactly: `2`, `0.5`, `1e-7`, and `-0.0`, since `-0` would lex
/// as a duration.
pub fn format_float(v: f64) -> String {
    if v == 0.0 && v.is_sign_negative() {
        "-0.0".to_string()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{v}")
    } else {
        format!("{v:?}")
    }
}

impl Display for Matcher {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.as_str(), quote(&self.value))
    }
}

impl Display for LogSelectorExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

impl Display for LogExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.selector)?;
        for stage in &self.pipeline {
            write!(f, " {stage}")?;
        }
        Ok(())
    }
}

impl Display for LineFilterValue {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LineFilterValue::Literal(s) => f.write_str(&quote(s)),
            LineFilterValue::Ip(s) => write!(f, "ip({})", quote(s)),
        }
    }
}

impl Display for LineFilterExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.as_str())?;
        for (i, v) in self.values.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { " or " })?;
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

fn write_extractions(f: &mut Formatter<'_>, exprs: &[LabelExtractionExpr]) -> fmt::Result {
    for (i, e) in exprs.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        write!(f, "{}={}", e.identifier, quote(&e.expression))?;
    }
    Ok(())
}

impl Display for LabelParserExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelParserExpr::Json { expressions } => {
                f.write_str("| json")?;
                write_extractions(f, expressions)
            }
            LabelParserExpr::Logfmt {
                strict,
                keep_empty,
                expressions,
            } => {
                f.write_str("| logfmt")?;
                if *strict {
                    f.write_str(" --strict")?;
                }
                if *keep_empty {
                    f.write_str(" --keep-empty")?;
                }
                write_extractions(f, expressions)
            }
            LabelParserExpr::Regexp(re) => write!(f, "| regexp {}", quote(re)),
            LabelParserExpr::Pattern(p) => write!(f, "| pattern {}", quote(p)),
            LabelParserExpr::Unpack => f.write_str("| unpack"),
        }
    }
}

fn is_compound(e: &LabelFilterExpr) -> bool {
    matches!(e, LabelFilterExpr::And(..) | LabelFilterExpr::Or(..))
}

/// An `and` whose right operand is compound prints as `l, r`: a comma joins the filter
/// before it with everything after it, so the right side needs no parentheses.
fn prints_with_comma(e: &LabelFilterExpr) -> bool {
    matches!(e, LabelFilterExpr::And(_, r) if is_compound(r))
}

fn write_operand(e: &LabelFilterExpr, f: &mut Formatter<'_>, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl Display for LabelFilterExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilterExpr::String(m) => write!(f, "{m}"),
            LabelFilterExpr::Number { name, op, value } => {
                write!(f, "{name} {} {}", op.as_str(), format_float(*value))
            }
            LabelFilterExpr::Duration { name, op, value } => {
                write!(f, "{name} {} {value}", op.as_str())
            }
            LabelFilterExpr::Bytes { name, op, value } => {
                write!(f, "{name} {} {value}B", op.as_str())
            }
            LabelFilterExpr::Ip {
                name,
                negated,
                pattern,
            } => {
                let op = if *negated { "!=" } else { "=" };
                write!(f, "{name}{op}ip({})", quote(pattern))
            }
            // `l, r`: the comma takes only the filter just before it.
            LabelFilterExpr::And(l, r) if is_compound(r) => {
                write_operand(l, f, is_compound(l))?;
                f.write_str(", ")?;
                write!(f, "{r}")
            }
            // `l and r`, r a single filter: `and` binds tighter than `or`.
            LabelFilterExpr::And(l, r) => {
                let parens = matches!(**l, LabelFilterExpr::Or(..)) || prints_with_comma(l);
                write_operand(l, f, parens)?;
                write!(f, " and {r}")
            }
            // `l or r`: left-associative.
            LabelFilterExpr::Or(l, r) => {
                write_operand(l, f, prints_with_comma(l))?;
                f.write_str(" or ")?;
                write_operand(r, f, matches!(**r, LabelFilterExpr::Or(..)))
            }
        }
    }
}

impl Display for LineFormatExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "| line_format {}", quote(&self.template))
    }
}

impl Display for LabelFormatExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("| label_format")?;
        for (i, fmt) in self.formats.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            match fmt {
                LabelFmt::Rename { dst, src } => write!(f, "{dst}={src}")?,
                LabelFmt::Template { dst, template } => write!(f, "{dst}={}", quote(template))?,
            }
        }
        Ok(())
    }
}

fn write_label_refs(f: &mut Formatter<'_>, keyword: &str, labels: &[LabelRef]) -> fmt::Result {
    write!(f, "| {keyword}")?;
    for (i, label) in labels.iter().enumerate() {
        f.write_str(if i == 0 { " " } else { ", " })?;
        match label {
            LabelRef::Name(name) => f.write_str(name)?,
            LabelRef::Matcher(m) => write!(f, "{m}")?,
        }
    }
    Ok(())
}

impl Display for DropLabelsExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_label_refs(f, "drop", &self.labels)
    }
}

impl Display for KeepLabelsExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_label_refs(f, "keep", &self.labels)
    }
}

impl Display for Stage {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(e) => write!(f, "{e}"),
            Stage::LabelParser(e) => write!(f, "{e}"),
            Stage::LabelFilter(e) => write!(f, "| {e}"),
            Stage::LineFormat(e) => write!(f, "{e}"),
            Stage::LabelFormat(e) => write!(f, "{e}"),
            Stage::DropLabels(e) => write!(f, "{e}"),
            Stage::KeepLabels(e) => write!(f, "{e}"),
            Stage::Decolorize => f.write_str("| decolorize"),
        }
    }
}

impl Display for UnwrapExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.conversion {
            Some(conv) => write!(f, "| unwrap {}({})", conv.as_str(), self.identifier)?,
            None => write!(f, "| unwrap {}", self.identifier)?,
        }
        for filter in &self.post_filters {
            write!(f, " | {filter}")?;
        }
        Ok(())
    }
}

impl Display for LogRangeExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.log)?;
        if let Some(unwrap) = &self.unwrap {
            write!(f, " {unwrap}")?;
        }
        if !self.log.pipeline.is_empty() || self.unwrap.is_some() {
            f.write_str(" ")?;
        }
        write!(f, "[{}]", self.range)?;
        if !self.offset.is_zero() {
            write!(f, " offset {}", self.offset)?;
        }
        Ok(())
    }
}

impl Display for Grouping {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let keyword = if self.without { "without" } else { "by" };
        write!(f, "{keyword} ({})", self.labels.join(", "))
    }
}

impl Display for RangeAggregationExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}(", self.op.as_str())?;
        if let Some(p) = self.param {
            write!(f, "{}, ", format_float(p))?;
        }
        write!(f, "{})", self.range)?;
        if let Some(g) = &self.grouping {
            write!(f, " {g}")?;
        }
        Ok(())
    }
}

impl Display for VectorAggregationExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.as_str())?;
        if let Some(g) = &self.grouping {
            write!(f, " {g} ")?;
        }
        f.write_str("(")?;
        if let Some(k) = self.param {
            write!(f, "{k}, ")?;
        }
        write!(f, "{})", self.inner)
    }
}

impl Display for BinOpModifier {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.return_bool {
            f.write_str(" bool")?;
        }
        if let Some(m) = &self.matching {
            let keyword = if m.on { "on" } else { "ignoring" };
            write!(f, " {keyword} ({})", m.labels.join(", "))?;
            if let Some(group) = &m.group {
                let keyword = match group.side {
                    GroupSide::Left => "group_left",
                    GroupSide::Right => "group_right",
                };
                write!(f, " {keyword}")?;
                if !group.include.is_empty() {
                    write!(f, " ({})", group.include.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

/// Whether an operand of `e` needs parentheses to keep its place under `e`'s operator.
fn needs_parens(e: &BinOpExpr, operand: &SampleExpr, is_rhs: bool) -> bool {
    let SampleExpr::BinOp(inner) = operand else {
        return false;
    };
    let (outer, inner) = (e.op.precedence(), inner.op.precedence());
    inner < outer || (inner == outer && (is_rhs != e.op.is_right_assoc()))
}

impl Display for BinOpExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let write_operand = |f: &mut Formatter<'_>, e: &SampleExpr, parens: bool| {
            if parens {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        write_operand(f, &self.lhs, needs_parens(self, &self.lhs, false))?;
        write!(f, " {}{} ", self.op.as_str(), self.modifier)?;
        write_operand(f, &self.rhs, needs_parens(self, &self.rhs, true))
    }
}

impl Display for LiteralExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&format_float(self.value))
    }
}

impl Display for VectorExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "vector({})", format_float(self.value))
    }
}

impl Display for LabelReplaceExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "label_replace({}, {}, {}, {}, {})",
            self.inner,
            quote(&self.dst),
            quote(&self.replacement),
            quote(&self.src),
            quote(&self.regex)
        )
    }
}

impl Display for SampleExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SampleExpr::RangeAggregation(e) => write!(f, "{e}"),
            SampleExpr::VectorAggregation(e) => write!(f, "{e}"),
            SampleExpr::BinOp(e) => write!(f, "{e}"),
            SampleExpr::Literal(e) => write!(f, "{e}"),
            SampleExpr::Vector(e) => write!(f, "{e}"),
            SampleExpr::LabelReplace(e) => write!(f, "{e}"),
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(e) => write!(f, "{e}"),
            Expr::Sample(e) => write!(f, "{e}"),
        }
    }
}

/// Queries up to this many characters stay on one line in [`format_query`].
pub const MAX_LINE_WIDTH: usize = 100;

/// Formats a query for people: the canonical one-line form when it fits in
/// [`MAX_LINE_WIDTH`] characters, else aggregations and binary operations broken over
/// lines, operands indented by two spaces. The result parses back to the same tree.
pub fn format_query(expr: &Expr) -> String {
    let mut out = String::new();
    match expr {
        Expr::Log(log) => pretty_log(&mut out, log, 0),
        Expr::Sample(sample) => pretty_sample(&mut out, sample, 0),
    }
    out
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn pretty_log(out: &mut String, log: &LogExpr, level: usize) {
    indent(out, level);
    let one_line = log.to_string();
    if one_line.len() + 2 * level <= MAX_LINE_WIDTH || log.pipeline.is_empty() {
        out.push_str(&one_line);
        return;
    }
    let _ = write!(out, "{}", log.selector);
    for stage in &log.pipeline {
        out.push('\n');
        indent(out, level + 1);
        let _ = write!(out, "{stage}");
    }
}

fn pretty_sample(out: &mut String, expr: &SampleExpr, level: usize) {
    let one_line = expr.to_string();
    if one_line.len() + 2 * level <= MAX_LINE_WIDTH {
        indent(out, level);
        out.push_str(&one_line);
        return;
    }
    match expr {
        SampleExpr::RangeAggregation(e) => {
            indent(out, level);
            let _ = write!(out, "{}(", e.op.as_str());
            if let Some(p) = e.param {
                out.push('\n');
                indent(out, level + 1);
                let _ = write!(out, "{},", format_float(p));
            }
            out.push('\n');
            pretty_log(out, &e.range.log, level + 1);
            let range = &e.range;
            if let Some(unwrap) = &range.unwrap {
                out.push('\n');
                indent(out, level + 1);
                let _ = write!(out, "{unwrap}");
            }
            let _ = write!(out, " [{}]", range.range);
            if !range.offset.is_zero() {
                let _ = write!(out, " offset {}", range.offset);
            }
            out.push('\n');
            indent(out, level);
            out.push(')');
            if let Some(g) = &e.grouping {
                let _ = write!(out, " {g}");
            }
        }
        SampleExpr::VectorAggregation(e) => {
            indent(out, level);
            out.push_str(e.op.as_str());
            if let Some(g) = &e.grouping {
                let _ = write!(out, " {g} ");
            }
            out.push_str("(\n");
            if let Some(k) = e.param {
                indent(out, level + 1);
                let _ = writeln!(out, "{k},");
            }
            pretty_sample(out, &e.inner, level + 1);
            out.push('\n');
            indent(out, level);
            out.push(')');
        }
        SampleExpr::BinOp(e) => {
            let operand = |out: &mut String, side: &SampleExpr, parens: bool| {
                if parens {
                    indent(out, level);
                    out.push_str("(\n");
                    pretty_sample(out, side, level + 1);
                    out.push('\n');
                    indent(out, level);
                    out.push(')');
                } else {
                    pretty_sample(out, side, level);
                }
            };
            operand(out, &e.lhs, needs_parens(e, &e.lhs, false));
            out.push('\n');
            indent(out, level);
            let _ = write!(out, "{}{}", e.op.as_str(), e.modifier);
            out.push('\n');
            operand(out, &e.rhs, needs_parens(e, &e.rhs, true));
        }
        SampleExpr::LabelReplace(e) => {
            indent(out, level);
            out.push_str("label_replace(\n");
            pretty_sample(out, &e.inner, level + 1);
            out.push_str(",\n");
            for (i, arg) in [&e.dst, &e.replacement, &e.src, &e.regex]
                .iter()
                .enumerate()
            {
                indent(out, level + 1);
                out.push_str(&quote(arg));
                out.push_str(if i < 3 { ",\n" } else { "\n" });
            }
            indent(out, level);
            out.push(')');
        }
        SampleExpr::Literal(_) | SampleExpr::Vector(_) => {
            indent(out, level);
            out.push_str(&one_line);
        }
    }
}
