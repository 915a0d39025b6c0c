//! The LogQL parser: a recursive-descent parser over the lexer's tokens that builds the
//! [`Expr`] tree of `ast`, following the grammar of Loki's `expr.y` (v3.4) and then the
//! checks Loki makes at parse time (aggregations that need or refuse `unwrap`, `topk`
//! parameters, selectors that would match every stream). Syntax errors carry the 1-based
//! line and column of the offending token; semantic errors, like Loki's, carry none and
//! print as `parse error : ...`. Binary operations between two literals are folded, as in
//! Loki, so `1 + 1` parses to the literal `2`.
//!
//! Nesting is capped at [`MAX_DEPTH`] levels and input at [`MAX_INPUT_SIZE`] bytes, so the
//! parser neither overflows its stack nor panics on hostile input.

use super::ast::{
    short_regex_error, BinOp, BinOpExpr, BinOpModifier, CmpOp, DropLabelsExpr, Expr, GroupModifier,
    GroupSide, Grouping, KeepLabelsExpr, LabelExtractionExpr, LabelFilterExpr, LabelFmt,
    LabelFormatExpr, LabelParserExpr, LabelRef, LabelReplaceExpr, LineFilterExpr, LineFilterOp,
    LineFilterValue, LineFormatExpr, LiteralExpr, LogExpr, LogRangeExpr, LogSelectorExpr, MatchOp,
    Matcher, RangeAggregationExpr, RangeOp, SampleExpr, Stage, UnwrapConversion, UnwrapExpr,
    VectorAggregationExpr, VectorExpr, VectorMatching, VectorOp,
};
use super::duration::Duration;
pub use super::error::ParseError;
use super::lexer::{tokenize, Tok, Token};

/// Queries of this many bytes or more are refused, as Loki does.
pub const MAX_INPUT_SIZE: usize = 5120;

/// The deepest nesting of parentheses and sub-expressions the parser accepts.
pub const MAX_DEPTH: usize = 256;

/// Loki's message for a query whose selectors would match every stream.
pub const ERR_EMPTY_COMPATIBLE_SELECTOR: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

/// Parses and validates a LogQL query, log or metric.
pub fn parse_expr(input: &str) -> Result<Expr, ParseError> {
    let expr = parse_expr_unvalidated(input)?;
    for selector in expr.selectors() {
        validate_selector(&selector.matchers)?;
    }
    Ok(expr)
}

/// Parses a log query (`{app="x"} |= "error" | json`).
pub fn parse_log_expr(input: &str) -> Result<LogExpr, ParseError> {
    match parse_expr(input)? {
        Expr::Log(log) => Ok(log),
        Expr::Sample(_) => Err(ParseError::semantic("only log selector is supported")),
    }
}

/// Parses a metric query (`sum(rate({app="x"}[5m]))`).
pub fn parse_sample_expr(input: &str) -> Result<SampleExpr, ParseError> {
    match parse_expr(input)? {
        Expr::Sample(sample) => Ok(sample),
        Expr::Log(_) => Err(ParseError::semantic("only sample expression supported")),
    }
}

/// Parses a bare stream selector such as the series API's `match[]`; `{}` is allowed.
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, ParseError> {
    match parse_expr_unvalidated(input)? {
        Expr::Log(log) if log.pipeline.is_empty() => Ok(log.selector.matchers),
        _ => Err(ParseError::semantic("only label matchers is supported")),
    }
}

/// Checks that a selector of a query narrows the streams: at least one matcher must not
/// match the empty string (`app="x"`, `app=~".+"`, `app!=""`).
pub fn validate_selector(matchers: &[Matcher]) -> Result<(), ParseError> {
    if matchers.iter().any(|m| !m.matches_empty()) {
        Ok(())
    } else {
        Err(ParseError::semantic(ERR_EMPTY_COMPATIBLE_SELECTOR))
    }
}

/// Parses without the selector check, for callers that accept `{}`.
pub fn parse_expr_unvalidated(input: &str) -> Result<Expr, ParseError> {
    if input.len() >= MAX_INPUT_SIZE {
        return Err(ParseError::semantic(format!(
            "input size too long ({} > {MAX_INPUT_SIZE})",
            input.len()
        )));
    }
    let mut parser = Parser {
        tokens: tokenize(input),
        pos: 0,
        depth: 0,
    };
    let expr = parser.parse_binary(0)?;
    if parser.peek().is_op("|") && parser.peek_at(1).is_keyword("unwrap") {
        // `| unwrap` ends a pipeline only inside a range aggregation.
        parser.advance();
    }
    if !matches!(parser.peek(), Tok::Eof) {
        return Err(parser.unexpected(""));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

type Result<T, E = ParseError> = std::result::Result<T, E>;

const LINE_FILTER_OPS: [(&str, LineFilterOp); 6] = [
    ("|=", LineFilterOp::Contains),
    ("!=", LineFilterOp::NotContains),
    ("|~", LineFilterOp::Match),
    ("!~", LineFilterOp::NotMatch),
    ("|>", LineFilterOp::Pattern),
    ("!>", LineFilterOp::NotPattern),
];

impl Parser {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + n).min(last)].tok
    }

    fn advance(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        tok
    }

    fn here(&self) -> (usize, usize) {
        let t = &self.tokens[self.pos];
        (t.line, t.col)
    }

    fn error_here(&self, msg: impl Into<String>) -> ParseError {
        let (line, col) = self.here();
        ParseError::new(msg, line, col)
    }

    /// A syntax error at the current token, or the lexer's error if it stopped here.
    fn unexpected(&self, expecting: &str) -> ParseError {
        match self.peek() {
            Tok::Error(msg) => self.error_here(msg.clone()),
            tok if expecting.is_empty() => {
                self.error_here(format!("syntax error: unexpected {tok}"))
            }
            tok => self.error_here(format!(
                "syntax error: unexpected {tok}, expecting {expecting}"
            )),
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<()> {
        if self.peek().is_op(op) {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(op))
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let found = self.peek().is_op(op);
        if found {
            self.advance();
        }
        found
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.peek().is_keyword(kw);
        if found {
            self.advance();
        }
        found
    }

    fn expect_ident(&mut self) -> Result<String> {
        match self.peek() {
            Tok::Ident(name) => {
                let name = name.clone();
                self.advance();
                Ok(name)
            }
            _ => Err(self.unexpected("IDENTIFIER")),
        }
    }

    fn expect_string(&mut self) -> Result<String> {
        match self.peek() {
            Tok::Str(s) => {
                let s = s.clone();
                self.advance();
                Ok(s)
            }
            _ => Err(self.unexpected("STRING")),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!(
                "query is nested too deeply: more than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- expressions ---------------------------------------------------------------

    /// Binary operations by precedence climbing; `^` is right-associative.
    fn parse_binary(&mut self, min_prec: u8) -> Result<Expr> {
        self.enter()?;
        let mut lhs = self.parse_operand()?;
        while let Some(op) = self.peek_binop() {
            if op.precedence() < min_prec {
                break;
            }
            self.advance();
            let modifier = self.parse_binop_modifier()?;
            let next_min = if op.is_right_assoc() {
                op.precedence()
            } else {
                op.precedence() + 1
            };
            let rhs = self.parse_binary(next_min)?;
            lhs = Expr::Sample(make_binop(op, modifier, lhs, rhs)?);
        }
        self.leave();
        Ok(lhs)
    }

    fn peek_binop(&self) -> Option<BinOp> {
        Some(match self.peek() {
            Tok::Keyword("or") => BinOp::Or,
            Tok::Keyword("and") => BinOp::And,
            Tok::Keyword("unless") => BinOp::Unless,
            Tok::Op("+") => BinOp::Add,
            Tok::Op("-") => BinOp::Sub,
            Tok::Op("*") => BinOp::Mul,
            Tok::Op("/") => BinOp::Div,
            Tok::Op("%") => BinOp::Mod,
            Tok::Op("^") => BinOp::Pow,
            Tok::Op("==") => BinOp::CmpEq,
            Tok::Op("!=") => BinOp::Neq,
            Tok::Op(">") => BinOp::Gt,
            Tok::Op(">=") => BinOp::Gte,
            Tok::Op("<") => BinOp::Lt,
            Tok::Op("<=") => BinOp::Lte,
            _ => return None,
        })
    }

    fn parse_binop_modifier(&mut self) -> Result<BinOpModifier> {
        let return_bool = self.eat_keyword("bool");
        let on = match self.peek() {
            Tok::Keyword("on") => true,
            Tok::Keyword("ignoring") => false,
            _ => {
                return Ok(BinOpModifier {
                    return_bool,
                    matching: None,
                })
            }
        };
        self.advance();
        let labels = self.parse_label_list()?;
        let side = match self.peek() {
            Tok::Keyword("group_left") => Some(GroupSide::Left),
            Tok::Keyword("group_right") => Some(GroupSide::Right),
            _ => None,
        };
        let group = match side {
            Some(side) => {
                self.advance();
                let include = if self.peek().is_op("(") {
                    self.parse_label_list()?
                } else {
                    Vec::new()
                };
                Some(GroupModifier { side, include })
            }
            None => None,
        };
        Ok(BinOpModifier {
            return_bool,
            matching: Some(VectorMatching { on, labels, group }),
        })
    }

    /// `( [label {, label}] )`.
    fn parse_label_list(&mut self) -> Result<Vec<String>> {
        self.expect_op("(")?;
        let mut labels = Vec::new();
        if self.eat_op(")") {
            return Ok(labels);
        }
        loop {
            labels.push(self.expect_ident()?);
            if self.eat_op(")") {
                return Ok(labels);
            }
            if !self.eat_op(",") {
                return Err(self.unexpected(") or ,"));
            }
        }
    }

    fn parse_operand(&mut self) -> Result<Expr> {
        match self.peek().clone() {
            Tok::Op("(") => {
                self.advance();
                let inner = self.parse_binary(0)?;
                self.expect_op(")")?;
                Ok(inner)
            }
            Tok::Op("{") => Ok(Expr::Log(self.parse_log_expr()?)),
            Tok::Number(_) | Tok::Op("+") | Tok::Op("-") => {
                let value = self.parse_literal()?;
                Ok(Expr::Sample(SampleExpr::Literal(LiteralExpr { value })))
            }
            Tok::Func(name) => {
                if let Some(op) = RangeOp::from_name(name) {
                    self.parse_range_aggregation(op)
                } else if let Some(op) = VectorOp::from_name(name) {
                    self.parse_vector_aggregation(op)
                } else if name == "vector" {
                    self.parse_vector()
                } else if name == "label_replace" {
                    self.parse_label_replace()
                } else {
                    Err(self.unexpected(""))
                }
            }
            _ => Err(self.unexpected("")),
        }
    }

    /// `NUMBER`, `+NUMBER` or `-NUMBER`.
    fn parse_literal(&mut self) -> Result<f64> {
        let negative = match self.peek() {
            Tok::Op("-") => {
                self.advance();
                true
            }
            Tok::Op("+") => {
                self.advance();
                false
            }
            _ => false,
        };
        let Tok::Number(text) = self.peek().clone() else {
            return Err(self.unexpected("NUMBER"));
        };
        self.advance();
        let value = parse_float(&text, "unable to parse literal as a float")?;
        Ok(if negative { -value } else { value })
    }

    fn parse_sample_operand(&mut self) -> Result<SampleExpr> {
        let (line, col) = self.here();
        match self.parse_binary(0)? {
            Expr::Sample(sample) => Ok(sample),
            Expr::Log(_) => Err(ParseError::new(
                "syntax error: unexpected log query, expecting a metric query",
                line,
                col,
            )),
        }
    }

    fn parse_vector(&mut self) -> Result<Expr> {
        self.advance();
        self.expect_op("(")?;
        let Tok::Number(text) = self.peek().clone() else {
            return Err(self.unexpected("NUMBER"));
        };
        self.advance();
        let value = parse_float(&text, "unable to parse vectorExpr as a float")?;
        self.expect_op(")")?;
        Ok(Expr::Sample(SampleExpr::Vector(VectorExpr { value })))
    }

    fn parse_label_replace(&mut self) -> Result<Expr> {
        self.advance();
        self.enter()?;
        self.expect_op("(")?;
        let inner = self.parse_sample_operand()?;
        let mut args = Vec::with_capacity(4);
        for _ in 0..4 {
            self.expect_op(",")?;
            args.push(self.expect_string()?);
        }
        self.expect_op(")")?;
        self.leave();
        let [dst, replacement, src, regex]: [String; 4] =
            args.try_into().expect("bug: four label_replace arguments");
        if let Err(e) = regex::Regex::new(&format!("^(?:{regex})$")) {
            return Err(ParseError::semantic(format!(
                "invalid regex in label_replace: {}",
                short_regex_error(&e)
            )));
        }
        Ok(Expr::Sample(SampleExpr::LabelReplace(LabelReplaceExpr {
            inner: Box::new(inner),
            dst,
            replacement,
            src,
            regex,
        })))
    }

    fn parse_grouping(&mut self) -> Result<Option<Grouping>> {
        let without = match self.peek() {
            Tok::Keyword("by") => false,
            Tok::Keyword("without") => true,
            _ => return Ok(None),
        };
        self.advance();
        let labels = self.parse_label_list()?;
        Ok(Some(Grouping { without, labels }))
    }

    /// A `NUMBER ,` first argument, as written.
    fn parse_param(&mut self) -> Option<String> {
        match (self.peek().clone(), self.peek_at(1)) {
            (Tok::Number(text), next) if next.is_op(",") => {
                self.advance();
                self.advance();
                Some(text)
            }
            _ => None,
        }
    }

    fn parse_vector_aggregation(&mut self, op: VectorOp) -> Result<Expr> {
        self.advance();
        self.enter()?;
        let before = self.parse_grouping()?;
        self.expect_op("(")?;
        let param = self.parse_param();
        let inner = self.parse_sample_operand()?;
        self.expect_op(")")?;
        let grouping = match before {
            Some(g) => Some(g),
            None => self.parse_grouping()?,
        };
        self.leave();
        let name = op.as_str();
        let param = if op.takes_param() {
            let text = param.ok_or_else(|| {
                ParseError::semantic(format!("parameter required for operation {name}"))
            })?;
            let k: i64 = text
                .parse()
                .map_err(|_| ParseError::semantic(format!("invalid parameter {name}({text},")))?;
            if k <= 0 {
                return Err(ParseError::semantic(format!(
                    "invalid parameter (must be greater than 0) {name}({text}"
                )));
            }
            if op == VectorOp::ApproxTopk && grouping.is_some() {
                return Err(ParseError::semantic(format!(
                    "grouping not allowed for {name} aggregation"
                )));
            }
            Some(k)
        } else {
            if let Some(text) = param {
                return Err(ParseError::semantic(format!(
                    "unsupported parameter for operation {name}({text},"
                )));
            }
            None
        };
        if matches!(op, VectorOp::Sort | VectorOp::SortDesc)
            && grouping.as_ref().is_some_and(|g| !g.labels.is_empty())
        {
            return Err(ParseError::semantic(
                "sort and sort_desc doesn't allow grouping by ",
            ));
        }
        Ok(Expr::Sample(SampleExpr::VectorAggregation(
            VectorAggregationExpr {
                op,
                param,
                grouping,
                inner: Box::new(inner),
            },
        )))
    }

    fn parse_range_aggregation(&mut self, op: RangeOp) -> Result<Expr> {
        self.advance();
        self.enter()?;
        self.expect_op("(")?;
        let param = self.parse_param();
        let range = self.parse_log_range()?;
        self.expect_op(")")?;
        let grouping = self.parse_grouping()?;
        self.leave();
        let name = op.as_str();
        let param = match (param, op) {
            (Some(text), RangeOp::QuantileOverTime) => Some(parse_float(
                &text,
                &format!("invalid parameter for operation {name}"),
            )?),
            (Some(text), _) => {
                return Err(ParseError::semantic(format!(
                    "parameter {text} not supported for operation {name}"
                )))
            }
            (None, RangeOp::QuantileOverTime) => {
                return Err(ParseError::semantic(format!(
                    "parameter required for operation {name}"
                )))
            }
            (None, _) => None,
        };
        validate_range_aggregation(op, grouping.is_some(), range.unwrap.is_some())?;
        Ok(Expr::Sample(SampleExpr::RangeAggregation(
            RangeAggregationExpr {
                op,
                param,
                range,
                grouping,
            },
        )))
    }

    /// The many shapes of Loki's `logRangeExpr`: the range may come before or after the
    /// pipeline, and the selector part may be parenthesised.
    fn parse_log_range(&mut self) -> Result<LogRangeExpr> {
        if !self.peek().is_op("(") {
            let log = self.parse_log_expr()?;
            let unwrap = self.parse_unwrap()?;
            return self.parse_range_tail(log, unwrap);
        }
        self.advance();
        self.enter()?;
        let range = if self.peek().is_op("(") {
            let inner = self.parse_log_range()?;
            self.expect_op(")")?;
            inner
        } else {
            let log = self.parse_log_expr()?;
            let unwrap = self.parse_unwrap()?;
            if self.eat_op(")") {
                let bare = log.pipeline.is_empty() && unwrap.is_none();
                let (range, offset) = self.parse_range_and_offset()?;
                let unwrap = if bare { self.parse_unwrap()? } else { unwrap };
                LogRangeExpr {
                    log,
                    unwrap,
                    range,
                    offset,
                }
            } else if matches!(self.peek(), Tok::Range(_)) {
                let inner = self.parse_range_tail(log, unwrap)?;
                self.expect_op(")")?;
                inner
            } else {
                return Err(self.unexpected(") or RANGE"));
            }
        };
        self.leave();
        Ok(range)
    }

    /// `[range] [offset d]`, then a pipeline and unwrap if none came before the range.
    fn parse_range_tail(
        &mut self,
        mut log: LogExpr,
        mut unwrap: Option<UnwrapExpr>,
    ) -> Result<LogRangeExpr> {
        let bare = log.pipeline.is_empty() && unwrap.is_none();
        let (range, offset) = self.parse_range_and_offset()?;
        if bare {
            log.pipeline = self.parse_pipeline()?;
            unwrap = self.parse_unwrap()?;
        }
        Ok(LogRangeExpr {
            log,
            unwrap,
            range,
            offset,
        })
    }

    fn parse_range_and_offset(&mut self) -> Result<(Duration, Duration)> {
        let Tok::Range(range) = *self.peek() else {
            return Err(self.unexpected("RANGE or |"));
        };
        self.advance();
        if !self.eat_keyword("offset") {
            return Ok((range, Duration::ZERO));
        }
        match *self.peek() {
            Tok::Duration(offset) => {
                self.advance();
                Ok((range, offset))
            }
            _ => Err(self.unexpected("DURATION")),
        }
    }

    fn parse_unwrap(&mut self) -> Result<Option<UnwrapExpr>> {
        if !(self.peek().is_op("|") && self.peek_at(1).is_keyword("unwrap")) {
            return Ok(None);
        }
        self.advance();
        self.advance();
        let conversion = match self.peek() {
            Tok::Func("bytes") => Some(UnwrapConversion::Bytes),
            Tok::Func("duration") => Some(UnwrapConversion::Duration),
            Tok::Func("duration_seconds") => Some(UnwrapConversion::DurationSeconds),
            _ => None,
        };
        let identifier = if conversion.is_some() {
            self.advance();
            self.expect_op("(")?;
            let id = self.expect_ident()?;
            self.expect_op(")")?;
            id
        } else {
            self.expect_ident()?
        };
        let mut post_filters = Vec::new();
        while self.eat_op("|") {
            post_filters.push(self.parse_label_filter(0)?);
        }
        Ok(Some(UnwrapExpr {
            identifier,
            conversion,
            post_filters,
        }))
    }

    // ---- log queries ---------------------------------------------------------------

    fn parse_log_expr(&mut self) -> Result<LogExpr> {
        let selector = self.parse_selector()?;
        let pipeline = self.parse_pipeline()?;
        Ok(LogExpr { selector, pipeline })
    }

    fn parse_selector(&mut self) -> Result<LogSelectorExpr> {
        self.expect_op("{")?;
        let mut matchers = Vec::new();
        if self.eat_op("}") {
            return Ok(LogSelectorExpr { matchers });
        }
        loop {
            matchers.push(self.parse_matcher()?);
            if self.eat_op("}") {
                return Ok(LogSelectorExpr { matchers });
            }
            if !self.eat_op(",") {
                return Err(self.unexpected("} or ,"));
            }
        }
    }

    fn peek_match_op(&self, n: usize) -> Option<MatchOp> {
        match self.peek_at(n) {
            Tok::Op("=") => Some(MatchOp::Eq),
            Tok::Op("!=") => Some(MatchOp::Neq),
            Tok::Op("=~") => Some(MatchOp::Re),
            Tok::Op("!~") => Some(MatchOp::Nre),
            _ => None,
        }
    }

    /// `name op "value"`.
    fn parse_matcher(&mut self) -> Result<Matcher> {
        let name = self.expect_ident()?;
        let Some(op) = self.peek_match_op(0) else {
            return Err(self.unexpected("!= or !~ or = or =~"));
        };
        self.advance();
        let value = self.expect_string()?;
        Matcher::new(name, op, value)
    }

    /// Stages until something that cannot continue a pipeline, or `| unwrap`.
    fn parse_pipeline(&mut self) -> Result<Vec<Stage>> {
        let mut stages = Vec::new();
        loop {
            let line_filter = LINE_FILTER_OPS
                .iter()
                .find(|(text, _)| self.peek().is_op(text))
                .map(|(_, op)| *op);
            if let Some(op) = line_filter {
                self.advance();
                stages.push(Stage::LineFilter(self.parse_line_filter(op)?));
            } else if self.peek().is_op("|") && !self.peek_at(1).is_keyword("unwrap") {
                self.advance();
                stages.push(self.parse_stage()?);
            } else {
                return Ok(stages);
            }
        }
    }

    fn parse_line_filter(&mut self, op: LineFilterOp) -> Result<LineFilterExpr> {
        let mut values = vec![self.parse_line_filter_value()?];
        while self.eat_keyword("or") {
            values.push(self.parse_line_filter_value()?);
        }
        Ok(LineFilterExpr { op, values })
    }

    fn parse_line_filter_value(&mut self) -> Result<LineFilterValue> {
        match self.peek() {
            Tok::Str(s) => {
                let s = s.clone();
                self.advance();
                Ok(LineFilterValue::Literal(s))
            }
            Tok::Func("ip") => Ok(LineFilterValue::Ip(self.parse_ip_call()?)),
            _ => Err(self.unexpected("STRING or ip")),
        }
    }

    /// `ip("...")`.
    fn parse_ip_call(&mut self) -> Result<String> {
        self.advance();
        self.expect_op("(")?;
        let s = self.expect_string()?;
        self.expect_op(")")?;
        Ok(s)
    }

    /// A stage after `|`.
    fn parse_stage(&mut self) -> Result<Stage> {
        let stage = match self.peek() {
            Tok::Keyword("json") => {
                self.advance();
                let expressions = self.parse_extractions()?;
                Stage::LabelParser(LabelParserExpr::Json { expressions })
            }
            Tok::Keyword("logfmt") => {
                self.advance();
                let (mut strict, mut keep_empty) = (false, false);
                while let Tok::Flag(flag) = self.peek() {
                    match *flag {
                        "--strict" => strict = true,
                        _ => keep_empty = true,
                    }
                    self.advance();
                }
                let expressions = self.parse_extractions()?;
                Stage::LabelParser(LabelParserExpr::Logfmt {
                    strict,
                    keep_empty,
                    expressions,
                })
            }
            Tok::Keyword("regexp") => {
                self.advance();
                let re = self.expect_string()?;
                validate_regexp_parser(&re)?;
                Stage::LabelParser(LabelParserExpr::Regexp(re))
            }
            Tok::Keyword("pattern") => {
                self.advance();
                let pattern = self.expect_string()?;
                validate_pattern(&pattern)
                    .map_err(|e| ParseError::semantic(format!("invalid pattern parser: {e}")))?;
                Stage::LabelParser(LabelParserExpr::Pattern(pattern))
            }
            Tok::Keyword("unpack") => {
                self.advance();
                Stage::LabelParser(LabelParserExpr::Unpack)
            }
            Tok::Keyword("line_format") => {
                self.advance();
                let template = self.expect_string()?;
                Stage::LineFormat(LineFormatExpr { template })
            }
            Tok::Keyword("label_format") => {
                self.advance();
                Stage::LabelFormat(LabelFormatExpr {
                    formats: self.parse_label_formats()?,
                })
            }
            Tok::Keyword("decolorize") => {
                self.advance();
                Stage::Decolorize
            }
            Tok::Keyword("drop") => {
                self.advance();
                Stage::DropLabels(DropLabelsExpr {
                    labels: self.parse_label_refs()?,
                })
            }
            Tok::Keyword("keep") => {
                self.advance();
                Stage::KeepLabels(KeepLabelsExpr {
                    labels: self.parse_label_refs()?,
                })
            }
            Tok::Ident(_) | Tok::Op("(") => Stage::LabelFilter(self.parse_label_filter(0)?),
            _ => return Err(self.unexpected("")),
        };
        Ok(stage)
    }

    /// `[name[="expr"] {, name[="expr"]}]` after `json` or `logfmt`.
    fn parse_extractions(&mut self) -> Result<Vec<LabelExtractionExpr>> {
        let mut out = Vec::new();
        if !matches!(self.peek(), Tok::Ident(_)) {
            return Ok(out);
        }
        loop {
            let identifier = self.expect_ident()?;
            let expression = if self.eat_op("=") {
                self.expect_string()?
            } else {
                identifier.clone()
            };
            out.push(LabelExtractionExpr {
                identifier,
                expression,
            });
            if !self.eat_op(",") {
                return Ok(out);
            }
        }
    }

    fn parse_label_formats(&mut self) -> Result<Vec<LabelFmt>> {
        let mut out = Vec::new();
        loop {
            let dst = self.expect_ident()?;
            let taken = out.iter().any(|f| match f {
                LabelFmt::Rename { dst: d, .. } | LabelFmt::Template { dst: d, .. } => *d == dst,
            });
            if taken {
                return Err(ParseError::semantic(format!(
                    "multiple label name '{dst}' not allowed in a single format operation"
                )));
            }
            self.expect_op("=")?;
            let fmt = match self.peek().clone() {
                Tok::Ident(src) => {
                    self.advance();
                    LabelFmt::Rename { dst, src }
                }
                Tok::Str(template) => {
                    self.advance();
                    LabelFmt::Template { dst, template }
                }
                _ => return Err(self.unexpected("IDENTIFIER or STRING")),
            };
            out.push(fmt);
            if !self.eat_op(",") {
                return Ok(out);
            }
        }
    }

    /// `name` or `name op "value"`, comma-separated, after `drop` or `keep`.
    fn parse_label_refs(&mut self) -> Result<Vec<LabelRef>> {
        let mut out = Vec::new();
        loop {
            if matches!(self.peek(), Tok::Ident(_)) && self.peek_match_op(1).is_some() {
                out.push(LabelRef::Matcher(self.parse_matcher()?));
            } else {
                out.push(LabelRef::Name(self.expect_ident()?));
            }
            if !self.eat_op(",") {
                return Ok(out);
            }
        }
    }

    /// Label filters joined by `and`, `or`, `,` and juxtaposition. Loki's grammar binds
    /// `and` tighter than `or`, both left-associative, while `,` and juxtaposition join the
    /// filter just before them with everything after them: `a or b, c or d` is
    /// `a or (b and (c or d))`. As binding powers: `or` 1/1, `and` 2/2, `,` 3/0.
    fn parse_label_filter(&mut self, min_bp: u8) -> Result<LabelFilterExpr> {
        let mut lhs = self.parse_label_filter_primary()?;
        loop {
            let (lbp, rbp, consume) = match self.peek() {
                Tok::Keyword("or") => (1, 1, true),
                Tok::Keyword("and") => (2, 2, true),
                Tok::Op(",") => (3, 0, true),
                Tok::Ident(_) | Tok::Op("(") => (3, 0, false),
                _ => break,
            };
            if lbp <= min_bp {
                break;
            }
            let is_or = self.peek().is_keyword("or");
            if consume {
                self.advance();
            }
            let rhs = self.parse_label_filter(rbp)?;
            lhs = if is_or {
                LabelFilterExpr::Or(Box::new(lhs), Box::new(rhs))
            } else {
                LabelFilterExpr::And(Box::new(lhs), Box::new(rhs))
            };
        }
        Ok(lhs)
    }

    fn parse_label_filter_primary(&mut self) -> Result<LabelFilterExpr> {
        if self.eat_op("(") {
            self.enter()?;
            let inner = self.parse_label_filter(0)?;
            self.expect_op(")")?;
            self.leave();
            return Ok(inner);
        }
        let name = self.expect_ident()?;
        let (match_op, cmp_op) = match self.peek() {
            Tok::Op("=") => (Some(MatchOp::Eq), Some(CmpOp::Eq)),
            Tok::Op("!=") => (Some(MatchOp::Neq), Some(CmpOp::Neq)),
            Tok::Op("=~") => (Some(MatchOp::Re), None),
            Tok::Op("!~") => (Some(MatchOp::Nre), None),
            Tok::Op("==") => (None, Some(CmpOp::Eq)),
            Tok::Op(">") => (None, Some(CmpOp::Gt)),
            Tok::Op(">=") => (None, Some(CmpOp::Gte)),
            Tok::Op("<") => (None, Some(CmpOp::Lt)),
            Tok::Op("<=") => (None, Some(CmpOp::Lte)),
            _ => return Err(self.unexpected("!= or !~ or < or <= or = or == or =~ or > or >=")),
        };
        self.advance();
        match (self.peek().clone(), match_op, cmp_op) {
            (Tok::Str(value), Some(op), _) => {
                self.advance();
                Ok(LabelFilterExpr::String(Matcher::new(name, op, value)?))
            }
            (Tok::Func("ip"), Some(op @ (MatchOp::Eq | MatchOp::Neq)), _) => {
                let pattern = self.parse_ip_call()?;
                Ok(LabelFilterExpr::Ip {
                    name,
                    negated: op == MatchOp::Neq,
                    pattern,
                })
            }
            (Tok::Duration(value), _, Some(op)) => {
                self.advance();
                Ok(LabelFilterExpr::Duration { name, op, value })
            }
            (Tok::Bytes(value), _, Some(op)) => {
                self.advance();
                Ok(LabelFilterExpr::Bytes { name, op, value })
            }
            (Tok::Number(_) | Tok::Op("+") | Tok::Op("-"), _, Some(op)) => {
                let value = self.parse_literal()?;
                Ok(LabelFilterExpr::Number { name, op, value })
            }
            (_, Some(_), None) => Err(self.unexpected("STRING")),
            _ => Err(self.unexpected("")),
        }
    }
}

fn parse_float(text: &str, context: &str) -> Result<f64> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ParseError::semantic(format!(
            "{context}: strconv.ParseFloat: parsing {text:?}: invalid syntax"
        ))),
    }
}

/// Loki's type names for the legs of a binary operation, used in its error messages.
fn go_type_name(expr: &Expr) -> &'static str {
    match expr {
        Expr::Log(log) if log.pipeline.is_empty() => "*syntax.MatchersExpr",
        Expr::Log(_) => "*syntax.PipelineExpr",
        Expr::Sample(_) => "syntax.SampleExpr",
    }
}

fn make_binop(op: BinOp, modifier: BinOpModifier, lhs: Expr, rhs: Expr) -> Result<SampleExpr> {
    let name = op.as_str();
    let lhs = match lhs {
        Expr::Sample(s) => s,
        log => {
            return Err(ParseError::semantic(format!(
                "unexpected type for left leg of binary operation ({name}): {}",
                go_type_name(&log)
            )))
        }
    };
    let rhs = match rhs {
        Expr::Sample(s) => s,
        log => {
            return Err(ParseError::semantic(format!(
                "unexpected type for right leg of binary operation ({name}): {}",
                go_type_name(&log)
            )))
        }
    };
    let literal = |e: &SampleExpr| match e {
        SampleExpr::Literal(l) => Some(l.value),
        _ => None,
    };
    if op.is_set_operator() {
        for (leg, value) in [("left", literal(&lhs)), ("right", literal(&rhs))] {
            if let Some(v) = value {
                return Err(ParseError::semantic(format!(
                    "unexpected literal for {leg} leg of logical/set binary operation ({name}): {v:.6}"
                )));
            }
        }
    }
    if let (Some(l), Some(r)) = (literal(&lhs), literal(&rhs)) {
        let folded = op.apply(l, r);
        // A NaN or infinite result has no literal syntax; the engine computes it instead.
        if folded.is_finite() {
            return Ok(SampleExpr::Literal(LiteralExpr { value: folded }));
        }
    }
    Ok(SampleExpr::BinOp(BinOpExpr {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
        modifier,
    }))
}

/// Loki's rules on which range aggregations take `by`/`without` and `unwrap`.
fn validate_range_aggregation(op: RangeOp, grouped: bool, unwrapped: bool) -> Result<()> {
    use RangeOp::*;
    let name = op.as_str();
    if grouped
        && !matches!(
            op,
            AvgOverTime
                | StddevOverTime
                | StdvarOverTime
                | QuantileOverTime
                | MaxOverTime
                | MinOverTime
                | FirstOverTime
                | LastOverTime
        )
    {
        return Err(ParseError::semantic(format!(
            "grouping not allowed for {name} aggregation"
        )));
    }
    let ok = if unwrapped {
        !matches!(op, CountOverTime | BytesOverTime | BytesRate)
    } else {
        matches!(
            op,
            BytesOverTime | BytesRate | CountOverTime | Rate | AbsentOverTime
        )
    };
    if ok {
        Ok(())
    } else if unwrapped {
        Err(ParseError::semantic(format!(
            "invalid aggregation {name} with unwrap"
        )))
    } else {
        Err(ParseError::semantic(format!(
            "invalid aggregation {name} without unwrap"
        )))
    }
}

/// `| regexp` needs a valid regex with at least one named capture.
fn validate_regexp_parser(re: &str) -> Result<()> {
    let fail = |msg: String| ParseError::semantic(format!("invalid regexp parser: {msg}"));
    let compiled = regex::Regex::new(re).map_err(|e| fail(short_regex_error(&e)))?;
    let mut named = 0;
    for name in compiled.capture_names().flatten() {
        if !is_label_name(name) {
            return Err(fail(format!("invalid extracted label name '{name}'")));
        }
        named += 1;
    }
    if named == 0 {
        return Err(fail(
            "at least one named capture must be supplied".to_string(),
        ));
    }
    Ok(())
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `| pattern` needs at least one named capture (`<name>`; `<_>` does not count), no two
/// captures side by side and no name twice.
pub fn validate_pattern(pattern: &str) -> std::result::Result<(), String> {
    let mut names: Vec<&str> = Vec::new();
    let mut rest = pattern;
    let mut previous_capture: Option<&str> = None;
    while !rest.is_empty() {
        let capture = rest.strip_prefix('<').and_then(|after| {
            let end = after.find('>')?;
            let name = &after[..end];
            is_label_name(name).then_some(&rest[..end + 2])
        });
        match capture {
            Some(text) => {
                if let Some(prev) = previous_capture {
                    return Err(format!(
                        "found consecutive capture '{prev}{text}': invalid expression"
                    ));
                }
                let name = &text[1..text.len() - 1];
                if name != "_" {
                    if names.contains(&name) {
                        return Err(format!(
                            "duplicate capture name ({name}): invalid expression"
                        ));
                    }
                    names.push(name);
                }
                previous_capture = Some(text);
                rest = &rest[text.len()..];
            }
            None => {
                previous_capture = None;
                let next = rest.chars().next().map_or(0, char::len_utf8);
                rest = &rest[next..];
            }
        }
    }
    if names.is_empty() {
        return Err("at least one capture is required".to_string());
    }
    Ok(())
}
