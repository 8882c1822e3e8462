//! Runs parsed templates over JSON data, printing values the way Go's `fmt` does
//! and offering Docker's template functions (`json`, `join`, `upper`, `pad`, ...).

use serde_json::Value;

use super::parse::{Command, Node, Operand, Pipeline};
use super::{Methods, TemplateError};

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct Exec<'a> {
    pub root: &'a Value,
    pub methods: Option<&'a dyn Methods>,
    vars: Vec<(String, Value)>,
    out: String,
}

impl<'a> Exec<'a> {
    pub fn new(root: &'a Value, methods: Option<&'a dyn Methods>) -> Self {
        Exec {
            root,
            methods,
            vars: Vec::new(),
            out: String::new(),
        }
    }

    pub fn run(mut self, nodes: &[Node]) -> Result<String, TemplateError> {
        let root = self.root.clone();
        self.nodes(nodes, &root)?;
        Ok(self.out)
    }

    fn nodes(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, TemplateError> {
        for n in nodes {
            match self.node(n, dot)? {
                Flow::Normal => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal)
    }

    fn node(&mut self, node: &Node, dot: &Value) -> Result<Flow, TemplateError> {
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(p) => {
                let v = self.pipeline(p, dot)?;
                if p.decl.is_empty() {
                    self.out.push_str(&print(&v));
                }
            }
            Node::If(p, yes, no) | Node::With(p, yes, no) => {
                let mark = self.vars.len();
                let v = self.pipeline(p, dot)?;
                let flow = if truthy(&v) {
                    let inner = if matches!(node, Node::With(..)) {
                        &v
                    } else {
                        dot
                    };
                    self.nodes(yes, inner)?
                } else {
                    self.nodes(no, dot)?
                };
                self.vars.truncate(mark);
                return Ok(flow);
            }
            Node::Range(p, body, otherwise) => {
                let mark = self.vars.len();
                let plain = Pipeline {
                    decl: Vec::new(),
                    commands: p.commands.clone(),
                };
                let v = self.pipeline(&plain, dot)?;
                let items: Vec<(Value, Value)> = match &v {
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (Value::from(i), e.clone()))
                        .collect(),
                    Value::Object(m) => {
                        let mut keys: Vec<&String> = m.keys().collect();
                        keys.sort();
                        keys.into_iter()
                            .map(|k| (Value::from(k.clone()), m[k].clone()))
                            .collect()
                    }
                    Value::Null => Vec::new(),
                    Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                        .map(|i| (Value::from(i), Value::from(i)))
                        .collect(),
                    other => return Err(err(format!("range can't iterate over {}", print(other)))),
                };
                if items.is_empty() {
                    self.nodes(otherwise, dot)?;
                }
                for (key, elem) in items {
                    match p.decl.as_slice() {
                        [] => {}
                        [e] => self.vars.push((e.clone(), elem.clone())),
                        [k, e, ..] => {
                            self.vars.push((k.clone(), key));
                            self.vars.push((e.clone(), elem.clone()));
                        }
                    }
                    let flow = self.nodes(body, &elem)?;
                    self.vars.truncate(mark);
                    if matches!(flow, Flow::Break) {
                        break;
                    }
                }
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut prev: Option<Value> = None;
        for c in &p.commands {
            prev = Some(self.command(c, dot, prev)?);
        }
        let v = prev.unwrap_or(Value::Null);
        if let Some(name) = p.decl.first() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn command(
        &mut self,
        c: &Command,
        dot: &Value,
        prev: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let (first, rest) = c.args.split_first().ok_or_else(|| err("empty command"))?;
        let mut args = Vec::new();
        for a in rest {
            args.push(self.operand(a, dot)?);
        }
        args.extend(prev);
        match first {
            Operand::Func(name) => call(name, &args),
            // `.Label "key"`: a method of the row, offered by the caller
            Operand::Dot(chain) if !args.is_empty() => {
                let (method, path) = chain
                    .split_last()
                    .ok_or_else(|| err("can't give argument to non-function ."))?;
                let target = walk(dot, path)?;
                self.methods
                    .and_then(|m| m.call(&target, method, &args))
                    .ok_or_else(|| {
                        err(format!(
                            "can't give argument to non-function .{}",
                            chain.join(".")
                        ))
                    })
            }
            other if args.is_empty() => self.operand(other, dot),
            _ => Err(err("can't give argument to non-function")),
        }
    }

    fn operand(&mut self, o: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        match o {
            Operand::Dot(chain) => walk(dot, chain),
            Operand::Var(name, chain) => {
                let base = if name.is_empty() {
                    self.root.clone()
                } else {
                    self.vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| err(format!("undefined variable: ${name}")))?
                };
                walk(&base, chain)
            }
            Operand::Sub(p, chain) => {
                let v = self.pipeline(p, dot)?;
                walk(&v, chain)
            }
            Operand::Func(name) => call(name, &[]),
            Operand::Str(s) => Ok(Value::from(s.clone())),
            Operand::Num(n) => Ok(Value::Number(n.clone())),
            Operand::Bool(b) => Ok(Value::Bool(*b)),
            Operand::Nil => Err(err("nil is not a command")),
        }
    }
}

/// Follows `.A.B` through objects. A missing key is an error, as Docker runs
/// templates (typed rows, and maps with `missingkey=error`): a typo never
/// prints quietly.
fn walk(v: &Value, chain: &[String]) -> Result<Value, TemplateError> {
    let mut cur = v.clone();
    for (i, f) in chain.iter().enumerate() {
        let at = || format!("<.{}>", chain[..=i].join("."));
        cur = match &cur {
            Value::Object(m) => match m.get(f) {
                Some(x) => x.clone(),
                None => return Err(err(format!("at {}: map has no entry for key {f:?}", at()))),
            },
            Value::Null => return Err(err(format!("at {}: nil pointer evaluating .{f}", at()))),
            other => {
                return Err(err(format!(
                    "at {}: can't evaluate field {f} in type {}",
                    at(),
                    type_name(other)
                )))
            }
        };
    }
    Ok(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Go's truth: false, 0, nil and empty strings, slices and maps are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// A value as Go's `fmt.Sprint` writes it: slices as `[a b]`, maps as `map[k:v]`.
pub fn print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", print(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn as_str(v: &Value) -> String {
    print(v)
}

fn as_int(v: &Value, func: &str) -> Result<i64, TemplateError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| err(format!("{func}: bad number"))),
        Value::String(s) => s
            .parse()
            .map_err(|_| err(format!("{func}: {s:?} is not a number"))),
        other => Err(err(format!(
            "{func}: expected a number, got {}",
            type_name(other)
        ))),
    }
}

/// Docker's string functions take a string first, as Go's typed calls check.
fn string_arg<'v>(name: &str, v: &'v Value) -> Result<&'v str, TemplateError> {
    v.as_str()
        .ok_or_else(|| err(format!("{name}: expected string; found {}", print(v))))
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), TemplateError> {
    if args.len() != n {
        return Err(err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

/// The functions every template may call: Go's builtins and Docker's additions.
pub const FUNCTIONS: &[&str] = &[
    "json", "join", "split", "lower", "upper", "title", "pad", "truncate", "println", "print",
    "printf", "len", "index", "not", "and", "or", "eq", "ne", "lt", "le", "gt", "ge", "slice",
];

fn call(name: &str, args: &[Value]) -> Result<Value, TemplateError> {
    Ok(match name {
        "json" => {
            arity(name, args, 1)?;
            Value::from(serde_json::to_string(&args[0]).map_err(|e| err(e.to_string()))?)
        }
        "join" => {
            arity(name, args, 2)?;
            let items: Vec<String> = match &args[0] {
                Value::Array(a) => a.iter().map(as_str).collect(),
                other => vec![as_str(other)],
            };
            Value::from(items.join(&as_str(&args[1])))
        }
        "split" => {
            arity(name, args, 2)?;
            let text = as_str(&args[0]);
            let sep = as_str(&args[1]);
            let parts: Vec<Value> = if sep.is_empty() {
                text.chars().map(|c| Value::from(c.to_string())).collect()
            } else {
                text.split(sep.as_str()).map(Value::from).collect()
            };
            Value::Array(parts)
        }
        "lower" => {
            arity(name, args, 1)?;
            Value::from(as_str(&args[0]).to_lowercase())
        }
        "upper" => {
            arity(name, args, 1)?;
            Value::from(as_str(&args[0]).to_uppercase())
        }
        "title" => {
            arity(name, args, 1)?;
            let mut out = String::new();
            let mut start = true;
            for c in as_str(&args[0]).chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.push(c);
                }
                start = !c.is_alphanumeric();
            }
            Value::from(out)
        }
        "pad" => {
            arity(name, args, 3)?;
            let left = as_int(&args[1], name)?.max(0) as usize;
            let right = as_int(&args[2], name)?.max(0) as usize;
            Value::from(format!(
                "{}{}{}",
                " ".repeat(left),
                string_arg(name, &args[0])?,
                " ".repeat(right)
            ))
        }
        "truncate" => {
            arity(name, args, 2)?;
            let n = as_int(&args[1], name)?.max(0) as usize;
            Value::from(
                string_arg(name, &args[0])?
                    .chars()
                    .take(n)
                    .collect::<String>(),
            )
        }
        "print" => Value::from(sprint(args)),
        "println" => Value::from(args.iter().map(as_str).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => {
            let (fmt, rest) = args
                .split_first()
                .ok_or_else(|| err("printf: missing format"))?;
            Value::from(sprintf(&as_str(fmt), rest))
        }
        "len" => {
            arity(name, args, 1)?;
            Value::from(match &args[0] {
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                other => return Err(err(format!("len of {}", type_name(other)))),
            })
        }
        "index" => {
            let (first, keys) = args
                .split_first()
                .ok_or_else(|| err("index: missing argument"))?;
            let mut cur = first.clone();
            for k in keys {
                cur = match (&cur, k) {
                    (Value::Array(a), k) => {
                        let i = as_int(k, name)?;
                        a.get(usize::try_from(i).unwrap_or(usize::MAX))
                            .cloned()
                            .ok_or_else(|| err(format!("index out of range: {i}")))?
                    }
                    (Value::Object(m), k) => m.get(&as_str(k)).cloned().unwrap_or(Value::Null),
                    (Value::Null, _) => Value::Null,
                    (other, _) => {
                        return Err(err(format!(
                            "can't index item of type {}",
                            type_name(other)
                        )))
                    }
                };
            }
            cur
        }
        "slice" => {
            let (first, bounds) = args
                .split_first()
                .ok_or_else(|| err("slice: missing argument"))?;
            let b: Vec<usize> = bounds
                .iter()
                .map(|v| as_int(v, name).map(|i| i.max(0) as usize))
                .collect::<Result<_, _>>()?;
            match first {
                Value::String(s) => {
                    let lo = b.first().copied().unwrap_or(0);
                    let hi = b.get(1).copied().unwrap_or(s.len());
                    Value::from(
                        s.get(lo..hi)
                            .ok_or_else(|| err("slice: index out of range"))?,
                    )
                }
                Value::Array(a) => {
                    let lo = b.first().copied().unwrap_or(0);
                    let hi = b.get(1).copied().unwrap_or(a.len());
                    Value::Array(
                        a.get(lo..hi)
                            .ok_or_else(|| err("slice: index out of range"))?
                            .to_vec(),
                    )
                }
                other => {
                    return Err(err(format!(
                        "can't slice item of type {}",
                        type_name(other)
                    )))
                }
            }
        }
        "not" => {
            arity(name, args, 1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "eq" => {
            let (first, rest) = args
                .split_first()
                .ok_or_else(|| err("eq: missing argument"))?;
            Value::Bool(rest.iter().any(|v| equal(first, v)))
        }
        "ne" => {
            arity(name, args, 2)?;
            Value::Bool(!equal(&args[0], &args[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, args, 2)?;
            let ord = compare(&args[0], &args[1])
                .ok_or_else(|| err(format!("{name}: incompatible types for comparison")))?;
            use std::cmp::Ordering::*;
            Value::Bool(match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            })
        }
        _ => return Err(err(format!("function {name:?} not defined"))),
    })
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Go's `Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&as_str(a));
    }
    out
}

/// The verbs people use in Docker templates: `%s %v %d %q %%`, with a width.
fn sprintf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = args.iter();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut width = String::new();
        let mut precision: Option<String> = None;
        while let Some(&d) = chars.peek() {
            match (d, precision.as_mut()) {
                ('-', None) => left = true,
                ('.', None) => precision = Some(String::new()),
                (d, None) if d.is_ascii_digit() => width.push(d),
                (d, Some(p)) if d.is_ascii_digit() => p.push(d),
                _ => break,
            }
            chars.next();
        }
        let Some(verb) = chars.next() else {
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
        let mut text = match verb {
            'q' => serde_json::to_string(&as_str(arg)).unwrap_or_default(),
            _ => as_str(arg),
        };
        if let Some(p) = precision.and_then(|p| p.parse::<usize>().ok()) {
            if verb == 's' || verb == 'v' {
                text = text.chars().take(p).collect();
            }
        }
        let w: usize = width.parse().unwrap_or(0);
        let pad = w.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&text);
        }
    }
    out
}
