//! Execution: walks the parse tree for one render, evaluating pipelines against the data and
//! the variables in scope, within the step and output limits.

use super::*;

pub(super) enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct Exec<'a> {
    pub(super) vars: &'a dyn Fn(&str) -> Option<String>,
    pub(super) line: &'a str,
    pub(super) ts_ns: i64,
    pub(super) stack: Vec<(String, Value)>,
    pub(super) start: usize,
    pub(super) steps: usize,
}

pub(super) fn xerr<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError::Exec(msg.into()))
}

impl Exec<'_> {
    pub(super) fn step(&mut self) -> Result<(), TemplateError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(TemplateError::TooManySteps);
        }
        Ok(())
    }

    /// `if` and `with` with their `else if`/`else with` chains: the first branch whose pipeline
    /// is true runs (`with`: with that value as `.`), else `otherwise`.
    fn branches(
        &mut self,
        branches: &[(Pipe, Vec<Node>)],
        otherwise: &[Node],
        dot: &Value,
        with: bool,
        out: &mut String,
    ) -> Result<Flow, TemplateError> {
        let mark = self.stack.len();
        let mut flow = None;
        for (cond, body) in branches {
            let v = self.pipe(cond, dot)?;
            if v.truthy() {
                let inner = if with { &v } else { dot };
                flow = Some(self.walk(body, inner, out)?);
                break;
            }
        }
        let flow = match flow {
            Some(f) => f,
            None => self.walk(otherwise, dot, out)?,
        };
        self.stack.truncate(mark);
        Ok(flow)
    }

    pub(super) fn walk(
        &mut self,
        nodes: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<Flow, TemplateError> {
        for node in nodes {
            self.step()?;
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipe(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        match v {
                            Value::Nil => out.push_str("<no value>"),
                            v => v.write_to(out),
                        }
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let flow = self.branches(branches, otherwise, dot, false, out)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With {
                    branches,
                    otherwise,
                } => {
                    let flow = self.branches(branches, otherwise, dot, true, out)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.stack.len();
                    self.range(pipe, body, otherwise, dot, out)?;
                    self.stack.truncate(mark);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
            if out.len() - self.start > MAX_OUTPUT {
                return Err(TemplateError::OutputTooLarge);
            }
        }
        Ok(Flow::Normal)
    }

    pub(super) fn range(
        &mut self,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        // Evaluate without declaring; range binds its variables per element.
        let v = self.cmds(&pipe.cmds, dot)?;
        let elems: Vec<(Value, Value)> = match v {
            Value::List(l) => l
                .into_iter()
                .enumerate()
                .map(|(i, e)| (Value::Int(i as i64), e))
                .collect(),
            Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
            Value::Int(n) => {
                if n > MAX_STEPS as i64 {
                    return Err(TemplateError::TooManySteps);
                }
                (0..n.max(0))
                    .map(|i| (Value::Int(i), Value::Int(i)))
                    .collect()
            }
            Value::Nil => Vec::new(),
            other => return xerr(format!("range can't iterate over {}", other.type_name())),
        };
        if elems.is_empty() {
            self.walk(otherwise, dot, out)?;
            return Ok(());
        }
        for (key, elem) in elems {
            let mark = self.stack.len();
            match pipe.decl.as_slice() {
                [] => {}
                [e] => self.stack.push((e.clone(), elem.clone())),
                [k, e, ..] => {
                    self.stack.push((k.clone(), key));
                    self.stack.push((e.clone(), elem.clone()));
                }
            }
            let flow = self.walk(body, &elem, out)?;
            self.stack.truncate(mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let v = self.cmds(&pipe.cmds, dot)?;
        if pipe.is_assign {
            for name in &pipe.decl {
                if let Some(slot) = self.stack.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                } else {
                    return xerr(format!("undefined variable {name:?}"));
                }
            }
        } else {
            for name in &pipe.decl {
                self.stack.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    pub(super) fn cmds(&mut self, cmds: &[Cmd], dot: &Value) -> Result<Value, TemplateError> {
        let mut piped: Option<Value> = None;
        for cmd in cmds {
            self.step()?;
            piped = Some(self.cmd(cmd, dot, piped)?);
        }
        Ok(piped.unwrap_or(Value::Nil))
    }

    pub(super) fn cmd(
        &mut self,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let first = &cmd.args[0];
        let Operand::Func(f) = first else {
            if piped.is_some() {
                return xerr("can't give argument to non-function");
            }
            return self.operand(first, dot);
        };
        match f.name {
            "and" | "or" => return self.and_or(f.name == "and", cmd, dot, piped),
            _ => {}
        }
        let mut args = Vec::with_capacity(cmd.args.len());
        for a in &cmd.args[1..] {
            args.push(self.operand(a, dot)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        let n = args.len();
        if n < f.min || f.max.is_some_and(|m| n > m) {
            let want = match f.max {
                Some(m) if m == f.min => m.to_string(),
                Some(m) => format!("{}..{}", f.min, m),
                None => format!("at least {}", f.min),
            };
            return xerr(format!(
                "wrong number of args for {}: want {want} got {n}",
                f.name
            ));
        }
        let result = match (&cmd.regex, f.name) {
            (Some(re), "regexReplaceAll") => regex_replace(re, &args, false),
            (Some(re), "regexReplaceAllLiteral") => regex_replace(re, &args, true),
            (Some(re), "count") => Ok(Value::Int(re.find_iter(&args[1].to_str()).count() as i64)),
            _ => (f.f)(&args),
        };
        let v = result.map_err(|e| {
            TemplateError::Exec(format!(
                "at byte {}: error calling {}: {e}",
                cmd.offset, f.name
            ))
        })?;
        if let Value::Str(s) = &v {
            if s.len() > MAX_OUTPUT {
                return Err(TemplateError::OutputTooLarge);
            }
        }
        Ok(v)
    }

    pub(super) fn and_or(
        &mut self,
        is_and: bool,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let n = cmd.args.len() - 1 + usize::from(piped.is_some());
        if n == 0 {
            return xerr(format!(
                "wrong number of args for {}: want at least 1 got 0",
                if is_and { "and" } else { "or" }
            ));
        }
        let mut last = Value::Nil;
        for a in &cmd.args[1..] {
            last = self.operand(a, dot)?;
            if last.truthy() != is_and {
                return Ok(last);
            }
        }
        if let Some(p) = piped {
            last = p;
        }
        Ok(last)
    }

    pub(super) fn operand(&mut self, op: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        match op {
            Operand::Func(f) => {
                if f.min > 0 {
                    return xerr(format!(
                        "wrong number of args for {}: want {} got 0",
                        f.name, f.min
                    ));
                }
                (f.f)(&[])
                    .map_err(|e| TemplateError::Exec(format!("error calling {}: {e}", f.name)))
            }
            Operand::Dot(fields) => self.fields(dot.clone(), fields),
            Operand::Var(name, fields) => {
                let Some((_, v)) = self.stack.iter().rev().find(|(n, _)| n == name) else {
                    return xerr(format!("undefined variable {name:?}"));
                };
                let v = v.clone();
                self.fields(v, fields)
            }
            Operand::Lit(v) => Ok(v.clone()),
            Operand::Nil => Ok(Value::Nil),
            Operand::Sub(pipe, fields) => {
                let v = self.cmds(&pipe.cmds, dot)?;
                self.fields(v, fields)
            }
            Operand::Line => Ok(Value::Str(self.line.to_string())),
            Operand::Timestamp => Ok(Value::Time(Time::from_ns(self.ts_ns))),
        }
    }

    pub(super) fn fields(
        &mut self,
        mut v: Value,
        fields: &[String],
    ) -> Result<Value, TemplateError> {
        for f in fields {
            v = match v {
                Value::Labels => Value::Str((self.vars)(f).unwrap_or_default()),
                Value::Map(mut m) => m.remove(f).unwrap_or(Value::Nil),
                Value::Nil => return xerr(format!("nil pointer evaluating interface {{}}.{f}")),
                other => {
                    return xerr(format!(
                        "can't evaluate field {f} in type {}",
                        other.type_name()
                    ))
                }
            };
        }
        Ok(v)
    }
}

/// `regexp.ReplaceAllString` (or `ReplaceAllLiteralString`), failing once the result would
/// exceed the output limit.
pub(super) fn regex_replace(
    re: &regex::Regex,
    args: &[Value],
    literal: bool,
) -> Result<Value, String> {
    let src = args[1].to_str();
    let repl = args[2].to_str();
    let mut out = String::with_capacity(src.len());
    let mut last = 0;
    for caps in re.captures_iter(&src) {
        let Some(m) = caps.get(0) else { continue };
        out.push_str(&src[last..m.start()]);
        if literal {
            out.push_str(&repl);
        } else {
            caps.expand(&repl, &mut out);
        }
        last = m.end();
        check_len(out.len())?;
    }
    out.push_str(&src[last..]);
    check_len(out.len())?;
    Ok(Value::Str(out))
}
