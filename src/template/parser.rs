//! The parse tree and the parser: actions, pipelines and commands, `if`/`with`/`range` with
//! `else` chains, `break`/`continue`, variables, and functions looked up in the template's
//! function map when the template is parsed.

use std::sync::Arc;

use super::*;

pub(super) type FuncImpl = fn(&[Value]) -> Result<Value, String>;

pub(super) struct FuncDef {
    pub(super) name: &'static str,
    pub(super) min: usize,
    /// `None` for variadic.
    pub(super) max: Option<usize>,
    pub(super) f: FuncImpl,
}

#[derive(Debug)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Debug)]
pub(super) struct Pipe {
    pub(super) decl: Vec<String>,
    pub(super) is_assign: bool,
    pub(super) cmds: Vec<Cmd>,
}

#[derive(Debug)]
pub(super) struct Cmd {
    pub(super) offset: usize,
    pub(super) args: Vec<Operand>,
    /// A literal regular expression compiled at parse time, for the regex functions.
    pub(super) regex: Option<Arc<regex::Regex>>,
}

#[derive(Debug)]
pub(super) enum Operand {
    Func(&'static FuncDef),
    /// `.` followed by zero or more fields.
    Dot(Vec<String>),
    /// A variable followed by zero or more fields.
    Var(String, Vec<String>),
    Lit(Value),
    Nil,
    /// `( pipeline )` followed by zero or more fields.
    Sub(Box<Pipe>, Vec<String>),
    Line,
    Timestamp,
}

impl std::fmt::Debug for FuncDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub(super) struct Parser {
    pub(super) dialect: Dialect,
    pub(super) items: Vec<Item>,
    pub(super) pos: usize,
    pub(super) vars: Vec<String>,
    pub(super) depth: usize,
    pub(super) labels: Vec<String>,
    /// Whether a label may be read by another way than `.name` or `$.name` (a field of a
    /// variable or of a parenthesised pipeline holding the labels).
    pub(super) opaque: bool,
}

/// How a list of nodes ended.
pub(super) enum Stop {
    Eof,
    End,
    Else(usize, Vec<Token>),
}

impl Parser {
    pub(super) fn enter(&mut self, offset: usize) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(TemplateError::TooDeep { offset });
        }
        Ok(())
    }

    pub(super) fn parse_list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while self.pos < self.items.len() {
            let idx = self.pos;
            self.pos += 1;
            let (offset, toks) = match &mut self.items[idx] {
                Item::Text(t) => {
                    nodes.push(Node::Text(std::mem::take(t)));
                    continue;
                }
                Item::Action { offset, toks } => (*offset, std::mem::take(toks)),
            };
            let keyword = match toks.first().map(|t| &t.tok) {
                Some(Tok::Ident(w)) => w.as_str(),
                _ => "",
            };
            match keyword {
                "end" => {
                    if toks.len() > 1 {
                        return perr(toks[1].offset, "unexpected token after end");
                    }
                    return Ok((nodes, Stop::End));
                }
                "else" => return Ok((nodes, Stop::Else(offset, toks[1..].to_vec()))),
                "if" | "with" => {
                    let node = self.parse_if_with(keyword == "if", offset, &toks[1..])?;
                    nodes.push(node);
                }
                "range" => {
                    let node = self.parse_range(offset, &toks[1..])?;
                    nodes.push(node);
                }
                "break" | "continue" => {
                    if toks.len() > 1 {
                        return perr(toks[1].offset, format!("unexpected token after {keyword}"));
                    }
                    nodes.push(if keyword == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                "define" | "template" | "block" => {
                    return perr(offset, format!("{keyword} is not supported"));
                }
                _ => {
                    if toks.is_empty() {
                        return perr(offset, "missing value for command");
                    }
                    let pipe = self.parse_pipe(offset, &toks, false)?;
                    nodes.push(Node::Action(pipe));
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    pub(super) fn parse_if_with(
        &mut self,
        is_if: bool,
        offset: usize,
        toks: &[Token],
    ) -> Result<Node, TemplateError> {
        let what = if is_if { "if" } else { "with" };
        self.enter(offset)?;
        let mark = self.vars.len();
        let mut branches = Vec::new();
        let mut otherwise = Vec::new();
        let mut cond_toks = toks.to_vec();
        let mut cond_offset = offset;
        loop {
            if cond_toks.is_empty() {
                return perr(cond_offset, format!("missing value for {what}"));
            }
            let pipe = self.parse_pipe(cond_offset, &cond_toks, false)?;
            let (body, end) = self.parse_list()?;
            branches.push((pipe, body));
            match end {
                Stop::Eof => return perr(offset, format!("unexpected EOF: {what} without end")),
                Stop::End => break,
                Stop::Else(else_offset, rest) => {
                    let chained =
                        matches!(rest.first(), Some(Token { tok: Tok::Ident(w), .. }) if w == what);
                    if chained {
                        cond_toks = rest[1..].to_vec();
                        cond_offset = else_offset;
                        continue;
                    }
                    if let Some(t) = rest.first() {
                        return perr(t.offset, "unexpected token after else");
                    }
                    let (body, end) = self.parse_list()?;
                    otherwise = body;
                    match end {
                        Stop::End => break,
                        Stop::Eof => {
                            return perr(offset, format!("unexpected EOF: {what} without end"))
                        }
                        Stop::Else(o, _) => return perr(o, "else after else"),
                    }
                }
            }
        }
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(if is_if {
            Node::If {
                branches,
                otherwise,
            }
        } else {
            Node::With {
                branches,
                otherwise,
            }
        })
    }

    pub(super) fn parse_range(
        &mut self,
        offset: usize,
        toks: &[Token],
    ) -> Result<Node, TemplateError> {
        self.enter(offset)?;
        let mark = self.vars.len();
        if toks.is_empty() {
            return perr(offset, "missing value for range");
        }
        let pipe = self.parse_pipe(offset, toks, true)?;
        let (body, end) = self.parse_list()?;
        let otherwise = match end {
            Stop::End => Vec::new(),
            Stop::Eof => return perr(offset, "unexpected EOF: range without end"),
            Stop::Else(o, rest) => {
                if !rest.is_empty() {
                    return perr(o, "unexpected token after else");
                }
                let (body, end) = self.parse_list()?;
                match end {
                    Stop::End => body,
                    Stop::Eof => return perr(offset, "unexpected EOF: range without end"),
                    Stop::Else(o, _) => return perr(o, "else after else"),
                }
            }
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(Node::Range {
            pipe,
            body,
            otherwise,
        })
    }

    /// Parses `[decl :=] cmd | cmd ...` from a whole token slice.
    pub(super) fn parse_pipe(
        &mut self,
        offset: usize,
        toks: &[Token],
        in_range: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut i = 0;
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, or in range `$i, $e :=`.
        if let Some(Tok::Var(_)) = toks.first().map(|t| &t.tok) {
            let mut j = 0;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = toks.get(j).map(|t| &t.tok) {
                names.push(v.clone());
                match toks.get(j + 1).map(|t| &t.tok) {
                    Some(Tok::Comma) if in_range && names.len() < 2 => j += 2,
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        is_assign = toks[j + 1].tok == Tok::Assign;
                        decl = names.clone();
                        i = j + 2;
                        break;
                    }
                    _ => break,
                }
            }
            if is_assign {
                for name in &decl {
                    if !self.vars.contains(name) {
                        return perr(offset, format!("undefined variable {name:?}"));
                    }
                }
            }
        }
        let mut cmds = Vec::new();
        let rest = &toks[i..];
        if rest.is_empty() {
            return perr(offset, "missing value for command");
        }
        let mut k = 0;
        loop {
            let (cmd, used) = self.parse_cmd(rest, k, offset)?;
            if !cmds.is_empty() && !matches!(cmd.args.first(), Some(Operand::Func(_))) {
                return perr(
                    cmd.offset,
                    format!(
                        "non executable command in pipeline stage {}",
                        cmds.len() + 1
                    ),
                );
            }
            cmds.push(cmd);
            k = used;
            match rest.get(k).map(|t| &t.tok) {
                None => break,
                Some(Tok::Pipe) => {
                    k += 1;
                    if k >= rest.len() {
                        return perr(rest[k - 1].offset, "missing command after |");
                    }
                }
                Some(_) => return perr(rest[k].offset, "unexpected token in pipeline"),
            }
        }
        if !is_assign {
            for name in &decl {
                self.vars.push(name.clone());
            }
        }
        Ok(Pipe {
            decl,
            is_assign,
            cmds,
        })
    }

    /// Parses one command starting at `toks[k]`; stops before `|`, `)` or the end.
    pub(super) fn parse_cmd(
        &mut self,
        toks: &[Token],
        mut k: usize,
        offset: usize,
    ) -> Result<(Cmd, usize), TemplateError> {
        let cmd_offset = toks.get(k).map_or(offset, |t| t.offset);
        let mut args = Vec::new();
        while let Some(t) = toks.get(k) {
            if matches!(t.tok, Tok::Pipe | Tok::RParen) {
                break;
            }
            if !args.is_empty() && !t.spaced && !matches!(t.tok, Tok::LParen) {
                return perr(t.offset, "missing space between arguments");
            }
            let (op, used) = self.parse_operand(toks, k)?;
            args.push(op);
            k = used;
        }
        if args.is_empty() {
            return perr(cmd_offset, "missing value for command");
        }
        if matches!(args[..], [Operand::Nil]) {
            return perr(cmd_offset, "nil is not a command");
        }
        if args.len() > 1 && !matches!(args[0], Operand::Func(_)) {
            return perr(cmd_offset, "can't give argument to non-function");
        }
        for a in &args[1..] {
            if let Operand::Func(f) = a {
                // Go calls a niladic function used as an argument; others need parentheses.
                if f.min > 0 {
                    return perr(
                        cmd_offset,
                        format!("{} needs arguments; use parentheses", f.name),
                    );
                }
            }
        }
        let regex = match (&args[..], args.get(1)) {
            ([Operand::Func(f), ..], Some(Operand::Lit(Value::Str(p))))
                if f.name.starts_with("regexReplaceAll") || f.name == "count" =>
            {
                match compile_regex(p) {
                    Ok(re) => Some(Arc::new(re)),
                    Err(e) => return perr(cmd_offset, e),
                }
            }
            _ => None,
        };
        Ok((
            Cmd {
                offset: cmd_offset,
                args,
                regex,
            },
            k,
        ))
    }

    pub(super) fn parse_operand(
        &mut self,
        toks: &[Token],
        k: usize,
    ) -> Result<(Operand, usize), TemplateError> {
        let t = &toks[k];
        let mut k = k + 1;
        let op = match &t.tok {
            Tok::Field(name) => {
                self.labels.push(name.clone());
                let mut fields = vec![name.clone()];
                k = chain(toks, k, &mut fields);
                return Ok((Operand::Dot(fields), k));
            }
            Tok::Dot => Operand::Dot(Vec::new()),
            Tok::Var(name) => {
                if !self.vars.contains(name) {
                    return perr(t.offset, format!("undefined variable {name:?}"));
                }
                let mut fields = Vec::new();
                k = chain(toks, k, &mut fields);
                if name == "$" {
                    if let Some(f) = fields.first() {
                        self.labels.push(f.clone());
                    }
                } else if !fields.is_empty() {
                    self.opaque = true;
                }
                return Ok((Operand::Var(name.clone(), fields), k));
            }
            Tok::Lit(v) => Operand::Lit(v.clone()),
            Tok::Nil => Operand::Nil,
            Tok::Ident(name) => match (self.dialect, name.as_str()) {
                (Dialect::LogQL, "__line__") => Operand::Line,
                (Dialect::LogQL, "__timestamp__") => Operand::Timestamp,
                (Dialect::LogQL, _) => match lookup(name) {
                    Some(f) => Operand::Func(f),
                    None => return perr(t.offset, format!("function {name:?} not defined")),
                },
                (Dialect::Prometheus, _) => match lookup_prometheus(name) {
                    Some(f) => Operand::Func(f),
                    None => return perr(t.offset, format!("function {name:?} not defined")),
                },
            },
            Tok::LParen => {
                self.enter(t.offset)?;
                // Find the matching right paren.
                let mut depth = 1;
                let mut j = k;
                while j < toks.len() {
                    match toks[j].tok {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= toks.len() {
                    return perr(t.offset, "unclosed left paren");
                }
                let inner = &toks[k..j];
                if inner.is_empty() {
                    return perr(t.offset, "missing value in parentheses");
                }
                if inner
                    .iter()
                    .any(|t| matches!(t.tok, Tok::Declare | Tok::Assign))
                {
                    return perr(t.offset, "variable declaration inside parentheses");
                }
                let pipe = self.parse_pipe(t.offset, inner, false)?;
                self.depth -= 1;
                let mut fields = Vec::new();
                let k = chain(toks, j + 1, &mut fields);
                self.opaque |= !fields.is_empty();
                return Ok((Operand::Sub(Box::new(pipe), fields), k));
            }
            Tok::RParen | Tok::Pipe => return perr(t.offset, "unexpected token"),
            Tok::Declare | Tok::Assign | Tok::Comma => {
                return perr(t.offset, "unexpected declaration or comma")
            }
        };
        if let Some(next) = toks.get(k) {
            if matches!(next.tok, Tok::Field(_)) && !next.spaced {
                return perr(next.offset, "unexpected field after non-field value");
            }
        }
        Ok((op, k))
    }
}

/// Appends the `.a.b` fields directly following position `k`; returns the next position.
pub(super) fn chain(toks: &[Token], mut k: usize, fields: &mut Vec<String>) -> usize {
    while let Some(Token {
        tok: Tok::Field(f),
        spaced: false,
        ..
    }) = toks.get(k)
    {
        fields.push(f.clone());
        k += 1;
    }
    k
}

pub(super) fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}
