//! Variable substitution as BuildKit's shell lexer does it: `$VAR`, `${VAR}`,
//! `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`,
//! quotes (removed, single quotes literal) and the escape character. Only the
//! instructions Docker substitutes in call this; RUN/CMD/ENTRYPOINT leave `$` to
//! the shell.

use std::iter::Peekable;
use std::str::Chars;

/// A variable lookup: the stage's ENV and ARG values in scope, later wins.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<String>;
}

/// `KEY=VALUE` pairs, the last one with a key winning.
impl Lookup for [String] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| v.to_string())
        })
    }
}

impl Lookup for Vec<String> {
    fn get(&self, name: &str) -> Option<String> {
        Lookup::get(self.as_slice(), name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated quote ({0}) in {1:?}")]
    UnterminatedQuote(char, String),
    #[error("missing '}}' in {0:?}")]
    MissingBrace(String),
    #[error("bad substitution {0:?}: use ${{NAME}}, ${{NAME:-word}} or ${{NAME:+word}}")]
    BadSubstitution(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// Expands one word: quotes removed, variables substituted (`ENV A="$B c"` → one value).
pub fn word(input: &str, env: &dyn Lookup, escape: char) -> Result<String, ExpandError> {
    let mut lex = Lexer {
        chars: input.chars().peekable(),
        env,
        escape,
        input,
    };
    let words = lex.run(None, false)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expands and splits on unquoted whitespace (`EXPOSE $PORTS`, `VOLUME /a $B`).
pub fn words(input: &str, env: &dyn Lookup, escape: char) -> Result<Vec<String>, ExpandError> {
    let mut lex = Lexer {
        chars: input.chars().peekable(),
        env,
        escape,
        input,
    };
    lex.run(None, true)
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    env: &'a dyn Lookup,
    escape: char,
    input: &'a str,
}

impl Lexer<'_> {
    /// Reads until `stop` (consumed) or the end. With `split`, unquoted
    /// whitespace ends a word and empty unquoted words are dropped.
    fn run(&mut self, stop: Option<char>, split: bool) -> Result<Vec<String>, ExpandError> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        loop {
            let Some(c) = self.chars.next() else {
                if stop.is_some() {
                    return Err(ExpandError::MissingBrace(self.input.to_string()));
                }
                break;
            };
            if Some(c) == stop {
                break;
            }
            match c {
                '\'' => {
                    quoted = true;
                    self.single_quoted(&mut cur)?;
                }
                '"' => {
                    quoted = true;
                    self.double_quoted(&mut cur)?;
                }
                '$' => {
                    let value = self.dollar()?;
                    if split {
                        // an unquoted expansion splits on whitespace like the shell
                        let mut parts = value.split(char::is_whitespace).peekable();
                        while let Some(p) = parts.next() {
                            cur.push_str(p);
                            if parts.peek().is_some() && (!cur.is_empty() || quoted) {
                                out.push(std::mem::take(&mut cur));
                                quoted = false;
                            }
                        }
                    } else {
                        cur.push_str(&value);
                    }
                }
                c if c == self.escape => match self.chars.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                },
                c if split && c.is_whitespace() => {
                    if !cur.is_empty() || quoted {
                        out.push(std::mem::take(&mut cur));
                    }
                    quoted = false;
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() || quoted || !split {
            out.push(cur);
        }
        Ok(out)
    }

    fn single_quoted(&mut self, cur: &mut String) -> Result<(), ExpandError> {
        loop {
            match self.chars.next() {
                Some('\'') => return Ok(()),
                Some(c) => cur.push(c),
                None => return Err(ExpandError::UnterminatedQuote('\'', self.input.to_string())),
            }
        }
    }

    fn double_quoted(&mut self, cur: &mut String) -> Result<(), ExpandError> {
        loop {
            match self.chars.next() {
                Some('"') => return Ok(()),
                Some('$') => {
                    let v = self.dollar()?;
                    cur.push_str(&v);
                }
                Some(c) if c == self.escape => match self.chars.next() {
                    // inside double quotes the escape only protects these
                    Some(n) if n == '"' || n == '$' || n == self.escape => cur.push(n),
                    Some(n) => {
                        cur.push(c);
                        cur.push(n);
                    }
                    None => {
                        return Err(ExpandError::UnterminatedQuote('"', self.input.to_string()))
                    }
                },
                Some(c) => cur.push(c),
                None => return Err(ExpandError::UnterminatedQuote('"', self.input.to_string())),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.chars.next();
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`: the value it stands for.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.chars.peek() != Some(&'{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.env.get(&name).unwrap_or_default());
        }
        self.chars.next();
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution(self.input.to_string()));
        }
        let value = self.env.get(&name);
        match self.chars.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let op = self.chars.next();
                let word = self.run(Some('}'), false)?.concat();
                let set = value.as_deref().is_some_and(|v| !v.is_empty());
                self.apply(op, &name, value, set, word)
            }
            Some(op @ ('-' | '+' | '?')) => {
                let word = self.run(Some('}'), false)?.concat();
                let set = value.is_some();
                self.apply(Some(op), &name, value, set, word)
            }
            None => Err(ExpandError::MissingBrace(self.input.to_string())),
            Some(_) => Err(ExpandError::BadSubstitution(self.input.to_string())),
        }
    }

    fn apply(
        &self,
        op: Option<char>,
        name: &str,
        value: Option<String>,
        set: bool,
        word: String,
    ) -> Result<String, ExpandError> {
        match op {
            Some('-') => Ok(if set { value.unwrap_or_default() } else { word }),
            Some('+') => Ok(if set { word } else { String::new() }),
            Some('?') if set => Ok(value.unwrap_or_default()),
            Some('?') => Err(ExpandError::Required {
                name: name.to_string(),
                message: if word.is_empty() {
                    "is not set".into()
                } else {
                    word
                },
            }),
            _ => Err(ExpandError::BadSubstitution(self.input.to_string())),
        }
    }
}

/// Splits `ENV`/`LABEL`/`ARG` text into its words, keeping quotes and escapes
/// for [`word`] to process later (Docker's `parseWords`).
pub fn raw_words(input: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        cur.push(c);
        if c == escape && quote != Some('\'') {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `KEY=VALUE ...` or the old `KEY VALUE WITH SPACES` form, still unexpanded.
pub fn name_values(input: &str, escape: char) -> Result<Vec<(String, String)>, String> {
    let words = raw_words(input, escape);
    let Some(first) = words.first() else {
        return Err("needs at least one argument".into());
    };
    if !first.contains('=') {
        let rest = input.trim_start()[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!("{first:?} has no value: use {first}=VALUE"));
        }
        return Ok(vec![(first.clone(), rest.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{w:?}: the name is empty")),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!("{w:?} has no '=': use NAME=VALUE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<String> {
        vec![
            "A=apple".into(),
            "EMPTY=".into(),
            "SP=x y".into(),
            "A=avocado".into(),
        ]
    }

    fn w(s: &str) -> String {
        word(s, &env(), '\\').unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A"), "avocado");
        assert_eq!(w("${A}s"), "avocados");
        assert_eq!(w("$A.txt"), "avocado.txt");
        assert_eq!(w("$NOPE-x"), "-x");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$ a"), "$ a");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${NOPE:-dflt}"), "dflt");
        assert_eq!(w("${EMPTY:-dflt}"), "dflt");
        assert_eq!(w("${EMPTY-dflt}"), "");
        assert_eq!(w("${A:-dflt}"), "avocado");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${EMPTY:+set}"), "");
        assert_eq!(w("${EMPTY+set}"), "set");
        assert_eq!(w("${NOPE:+set}"), "");
        assert_eq!(w("${NOPE:-$A/b}"), "avocado/b");
        assert_eq!(w("${NOPE:-${A:+yes}}"), "yes");
        let err = word("${NOPE:?must be given}", &env(), '\\').unwrap_err();
        assert_eq!(err.to_string(), "NOPE: must be given");
        assert!(word("${A", &env(), '\\').is_err());
        assert!(word("${}", &env(), '\\').is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w(r#""$A b""#), "avocado b");
        assert_eq!(w("'$A b'"), "$A b");
        assert_eq!(w(r"\$A"), "$A");
        assert_eq!(w(r#""\$A \n \"q\"""#), r#"$A \n "q""#);
        assert_eq!(w(r"a\ b"), "a b");
        assert_eq!(word("`$A", &env(), '`').unwrap(), "$A");
        assert_eq!(word(r"C:\dir", &env(), '`').unwrap(), r"C:\dir");
        assert!(word("'open", &env(), '\\').is_err());
    }

    #[test]
    fn word_splitting() {
        let ws = |s: &str| words(s, &env(), '\\').unwrap();
        assert_eq!(ws("80  443/udp"), vec!["80", "443/udp"]);
        assert_eq!(ws("$SP z"), vec!["x", "y", "z"]);
        assert_eq!(ws(r#""$SP" z"#), vec!["x y", "z"]);
        assert_eq!(ws(r#"'' a"#), vec!["", "a"]);
        assert_eq!(ws("$NOPE a"), vec!["a"]);
    }

    #[test]
    fn env_forms() {
        assert_eq!(
            name_values(r#"A=1 B="x y" C=a\ b"#, '\\').unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), r#""x y""#.into()),
                ("C".into(), r"a\ b".into())
            ]
        );
        assert_eq!(
            name_values("C d  e", '\\').unwrap(),
            vec![("C".into(), "d  e".into())]
        );
        assert!(name_values("A=1 B", '\\').is_err());
        assert!(name_values("=1", '\\').is_err());
        assert!(name_values("ALONE", '\\').is_err());
    }
}
