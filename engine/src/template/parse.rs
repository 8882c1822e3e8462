//! Go `text/template` syntax, the subset Docker users write: text, `{{pipelines}}`
//! with fields, variables, literals, functions and `|`, `if`/`else`/`range`/`with`
//! blocks, `{{- -}}` trimming and `{{/* comments */}}`.

use super::TemplateError;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    Break,
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// `$x :=` or `$i, $e :=` (range); empty for a plain pipeline
    pub decl: Vec<String>,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub args: Vec<Operand>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `.` followed by zero or more field names: `.`, `.State.Status`
    Dot(Vec<String>),
    /// `$name` (`$` alone is the root) followed by fields
    Var(String, Vec<String>),
    /// `(pipeline)` followed by fields
    Sub(Box<Pipeline>, Vec<String>),
    Func(String),
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
    Nil,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(String),
    Dot,
    Var(String),
    Ident(String),
    Str(String),
    Num(serde_json::Number),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// A token and whether whitespace came before it (`.A.B` is one chain, `.A .B` two args).
type Spanned = (Tok, bool);

fn err(msg: impl Into<String>) -> TemplateError {
    TemplateError::Parse(msg.into())
}

fn lex(src: &str) -> Result<Vec<Spanned>, TemplateError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let mut space = false;
        while i < chars.len() && chars[i].is_whitespace() {
            space = true;
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let c = chars[i];
        let word = |start: usize| -> (String, usize) {
            let mut j = start;
            while j < chars.len() && ident_char(chars[j]) {
                j += 1;
            }
            (chars[start..j].iter().collect(), j)
        };
        let tok = match c {
            '.' if i + 1 < chars.len() && ident_char(chars[i + 1]) => {
                let (w, j) = word(i + 1);
                i = j;
                Tok::Field(w)
            }
            '.' => {
                i += 1;
                Tok::Dot
            }
            '$' => {
                let (w, j) = word(i + 1);
                i = j;
                Tok::Var(w)
            }
            '(' | ')' | '|' | ',' | '=' => {
                i += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '|' => Tok::Pipe,
                    ',' => Tok::Comma,
                    _ => Tok::Assign,
                }
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Tok::Declare
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err("unterminated quoted string")),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            s.push(match chars.get(i) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some('\\') => '\\',
                                Some('"') => '"',
                                Some('\'') => '\'',
                                Some('0') => '\0',
                                _ => return Err(err("bad escape in quoted string")),
                            });
                        }
                        Some(&ch) => s.push(ch),
                    }
                    i += 1;
                }
                i += 1;
                Tok::Str(s)
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&ch| ch == '`')
                    .ok_or_else(|| err("unterminated raw quoted string"))?;
                i = start + end + 1;
                Tok::Str(chars[start..start + end].iter().collect())
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let num = text
                    .parse::<i64>()
                    .map(serde_json::Number::from)
                    .ok()
                    .or_else(|| {
                        text.parse::<f64>()
                            .ok()
                            .and_then(serde_json::Number::from_f64)
                    })
                    .ok_or_else(|| err(format!("bad number syntax: {text:?}")))?;
                Tok::Num(num)
            }
            c if ident_char(c) => {
                let (w, j) = word(i);
                i = j;
                Tok::Ident(w)
            }
            other => return Err(err(format!("unexpected {other:?} in command"))),
        };
        out.push((tok, space));
    }
    Ok(out)
}

/// One `{{ }}` action: its tokens, or a keyword with its pipeline.
enum Action {
    Pipe(Pipeline),
    If(Pipeline),
    ElseIf(Pipeline),
    ElseWith(Pipeline),
    Else,
    End,
    Range(Pipeline),
    With(Pipeline),
    Break,
    Continue,
}

struct Tokens {
    toks: Vec<Spanned>,
    pos: usize,
}

impl Tokens {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }
    /// The next token when it follows the previous one without a space.
    fn peek_adjacent(&self) -> Option<&Tok> {
        self.toks.get(self.pos).filter(|(_, s)| !s).map(|(t, _)| t)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }
}

fn parse_pipeline(t: &mut Tokens, allow_decl: bool) -> Result<Pipeline, TemplateError> {
    let mut decl = Vec::new();
    if allow_decl {
        // `$x :=`, `$i, $e :=`
        let save = t.pos;
        let mut names = Vec::new();
        while let Some(Tok::Var(v)) = t.peek().cloned() {
            t.next();
            names.push(v);
            match t.peek() {
                Some(Tok::Comma) => {
                    t.next();
                }
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    t.next();
                    decl = names;
                    break;
                }
                _ => break,
            }
        }
        if decl.is_empty() {
            t.pos = save;
        }
    }
    let mut commands = Vec::new();
    loop {
        let mut args = Vec::new();
        while let Some(tok) = t.peek() {
            if matches!(tok, Tok::Pipe | Tok::RParen) {
                break;
            }
            args.push(parse_operand(t)?);
        }
        if args.is_empty() {
            return Err(err("missing value for command"));
        }
        commands.push(Command { args });
        match t.peek() {
            Some(Tok::Pipe) => {
                t.next();
            }
            _ => break,
        }
    }
    Ok(Pipeline { decl, commands })
}

fn fields(t: &mut Tokens) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(Tok::Field(f)) = t.peek_adjacent().cloned() {
        t.next();
        out.push(f);
    }
    out
}

fn parse_operand(t: &mut Tokens) -> Result<Operand, TemplateError> {
    Ok(match t.next() {
        Some(Tok::Dot) => Operand::Dot(Vec::new()),
        Some(Tok::Field(f)) => {
            let mut chain = vec![f];
            chain.extend(fields(t));
            Operand::Dot(chain)
        }
        Some(Tok::Var(v)) => Operand::Var(v, fields(t)),
        Some(Tok::LParen) => {
            let p = parse_pipeline(t, false)?;
            if t.next() != Some(Tok::RParen) {
                return Err(err("unclosed left paren"));
            }
            Operand::Sub(Box::new(p), fields(t))
        }
        Some(Tok::Str(s)) => Operand::Str(s),
        Some(Tok::Num(n)) => Operand::Num(n),
        Some(Tok::Ident(w)) => match w.as_str() {
            "true" => Operand::Bool(true),
            "false" => Operand::Bool(false),
            "nil" => Operand::Nil,
            _ => Operand::Func(w),
        },
        Some(other) => return Err(err(format!("unexpected {other:?} in operand"))),
        None => return Err(err("missing value for command")),
    })
}

fn parse_action(src: &str) -> Result<Option<Action>, TemplateError> {
    let trimmed = src.trim();
    if trimmed.starts_with("/*") {
        if !trimmed.ends_with("*/") {
            return Err(err("unclosed comment"));
        }
        return Ok(None);
    }
    let mut t = Tokens {
        toks: lex(src)?,
        pos: 0,
    };
    let keyword = match t.peek() {
        Some(Tok::Ident(w)) => Some(w.clone()),
        _ => None,
    };
    let done = |t: &Tokens, a: Action| -> Result<Option<Action>, TemplateError> {
        match t.toks.get(t.pos) {
            None => Ok(Some(a)),
            Some((tok, _)) => Err(err(format!("unexpected {tok:?} in action"))),
        }
    };
    let action = match keyword.as_deref() {
        Some("if") => {
            t.next();
            Action::If(parse_pipeline(&mut t, true)?)
        }
        Some("range") => {
            t.next();
            Action::Range(parse_pipeline(&mut t, true)?)
        }
        Some("with") => {
            t.next();
            Action::With(parse_pipeline(&mut t, true)?)
        }
        Some("end") => {
            t.next();
            Action::End
        }
        Some("break") => {
            t.next();
            Action::Break
        }
        Some("continue") => {
            t.next();
            Action::Continue
        }
        Some("else") => {
            t.next();
            match t.peek() {
                Some(Tok::Ident(w)) if w == "if" => {
                    t.next();
                    Action::ElseIf(parse_pipeline(&mut t, true)?)
                }
                Some(Tok::Ident(w)) if w == "with" => {
                    t.next();
                    Action::ElseWith(parse_pipeline(&mut t, true)?)
                }
                _ => Action::Else,
            }
        }
        Some(k @ ("define" | "template" | "block")) => {
            return Err(err(format!("{k:?} is not supported here")))
        }
        _ => Action::Pipe(parse_pipeline(&mut t, true)?),
    };
    done(&t, action)
}

/// Splits the source into text and actions, applying `{{-` and `-}}` trimming.
fn split(src: &str) -> Result<Vec<Result<String, String>>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            parts.push(Ok(text.to_string()));
        }
        let inner_start = if trim_before { 1 } else { 0 };
        // a `}}` inside a quoted string does not close the action
        let close = find_close(&after[inner_start..]).ok_or_else(|| err("unclosed action"))?;
        let mut inner = &after[inner_start..inner_start + close];
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        parts.push(Err(inner.to_string()));
        rest = &after[inner_start + close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        parts.push(Ok(text.to_string()));
    }
    Ok(parts)
}

fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
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
                } else if b[i..].starts_with(b"}}") {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Parses a whole template into nodes.
pub fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
    let mut items = Vec::new();
    for part in split(src)? {
        match part {
            Ok(text) => items.push(Item::Text(text)),
            Err(action) => {
                if let Some(a) = parse_action(&action)? {
                    items.push(Item::Action(a));
                }
            }
        }
    }
    let mut it = items.into_iter();
    let (nodes, end) = parse_block(&mut it)?;
    match end {
        None => Ok(nodes),
        Some(_) => Err(err("unexpected {{end}} or {{else}}")),
    }
}

enum Item {
    Text(String),
    Action(Action),
}

/// What ended a block: `{{end}}`, `{{else}}`, `{{else if ...}}` or `{{else with ...}}`.
enum BlockEnd {
    End,
    Else,
    ElseIf(Pipeline),
    ElseWith(Pipeline),
}

fn parse_block(
    it: &mut impl Iterator<Item = Item>,
) -> Result<(Vec<Node>, Option<BlockEnd>), TemplateError> {
    let mut nodes = Vec::new();
    while let Some(item) = it.next() {
        let action = match item {
            Item::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Item::Action(a) => a,
        };
        match action {
            Action::Pipe(p) => nodes.push(Node::Action(p)),
            Action::Break => nodes.push(Node::Break),
            Action::Continue => nodes.push(Node::Continue),
            Action::End => return Ok((nodes, Some(BlockEnd::End))),
            Action::Else => return Ok((nodes, Some(BlockEnd::Else))),
            Action::ElseIf(p) => return Ok((nodes, Some(BlockEnd::ElseIf(p)))),
            Action::ElseWith(p) => return Ok((nodes, Some(BlockEnd::ElseWith(p)))),
            Action::If(p) => nodes.push(parse_conditional(it, p, Node::If)?),
            Action::With(p) => nodes.push(parse_conditional(it, p, Node::With)?),
            Action::Range(p) => {
                let (body, end) = parse_block(it)?;
                let otherwise = match end {
                    Some(BlockEnd::End) => Vec::new(),
                    Some(BlockEnd::Else) => expect_end(it)?,
                    _ => return Err(err("range without a matching {{end}}")),
                };
                nodes.push(Node::Range(p, body, otherwise));
            }
        }
    }
    Ok((nodes, None))
}

type Make = fn(Pipeline, Vec<Node>, Vec<Node>) -> Node;

/// `if`/`with` with their `else`, `else if` and `else with` chains.
fn parse_conditional(
    it: &mut impl Iterator<Item = Item>,
    p: Pipeline,
    make: Make,
) -> Result<Node, TemplateError> {
    let (body, end) = parse_block(it)?;
    let otherwise = match end {
        Some(BlockEnd::End) => Vec::new(),
        Some(BlockEnd::Else) => expect_end(it)?,
        Some(BlockEnd::ElseIf(q)) => vec![parse_conditional(it, q, Node::If)?],
        Some(BlockEnd::ElseWith(q)) => vec![parse_conditional(it, q, Node::With)?],
        None => return Err(err("unexpected EOF: missing {{end}}")),
    };
    Ok(make(p, body, otherwise))
}

fn expect_end(it: &mut impl Iterator<Item = Item>) -> Result<Vec<Node>, TemplateError> {
    match parse_block(it)? {
        (nodes, Some(BlockEnd::End)) => Ok(nodes),
        (_, None) => Err(err("unexpected EOF: missing {{end}}")),
        _ => Err(err("expected {{end}} after {{else}}")),
    }
}
