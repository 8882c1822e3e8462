//! The Dockerfile language, below both of its users (the builder, and the
//! `--change` instructions of `commit` and `import`): the `parse-dockerfile` crate does the syntax
//! (directives, continuations, heredocs, JSON vs shell form, flags, spans); this
//! module turns its tree into steps with line numbers and the text Docker shows.
//!
//! Where the crate stops short of what the builder needs, it is finished here:
//! shell-form commands come back with the escape+newline and the comment lines
//! of a continuation still in them (Docker removes both), spans are byte offsets
//! (lines are counted here), and ENV/LABEL/ARG arrive as raw text (split into
//! name/value pairs here, expanded later by the builder).

pub mod expand;

use parse_dockerfile as pd;

/// A parse or check problem, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
    /// BuildKit's rule name for warnings (`JSONArgsRecommended`), None for errors.
    pub rule: Option<&'static str>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Some(rule) => write!(f, "line {}: warning {rule}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// JSON array: run as is.
    Exec(Vec<String>),
    /// A string for the stage's SHELL.
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    Path(String),
    /// `COPY <<EOF dest`: a file made from the heredoc's body.
    Heredoc {
        body: String,
        expand: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub flags: Vec<Flag>,
    pub sources: Vec<CopySource>,
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instr {
    Run {
        flags: Vec<Flag>,
        command: CommandForm,
    },
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Expose(String),
    Workdir(String),
    User(String),
    /// Raw paths: a JSON array's elements, or the string form's text to split.
    Volume {
        json: Option<Vec<String>>,
        text: String,
    },
    Copy(CopySpec),
    Add(CopySpec),
    Stopsignal(String),
    Healthcheck {
        flags: Vec<Flag>,
        /// None for `HEALTHCHECK NONE`.
        test: Option<CommandForm>,
    },
    Shell(Vec<String>),
    /// The trigger text, stored in the config and run by the child image.
    Onbuild(String),
    Maintainer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    /// The instruction as one logical line (`RUN apt-get update && ...`).
    pub text: String,
    pub instr: Instr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: Option<String>,
    /// The FROM image, before substitution of global ARGs.
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    pub text: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub syntax: Option<String>,
    /// ARGs before the first FROM: usable in FROM lines, and in stages that redeclare them.
    pub global_args: Vec<Step>,
    pub stages: Vec<Stage>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One logical line from physical ones: the escape + newline of a continuation
/// removed, comment and empty lines inside the continuation dropped.
pub fn logical_line(raw: &str, escape: char) -> String {
    let mut out = String::new();
    for (i, line) in raw.split('\n').enumerate() {
        let trimmed = line.trim_start();
        if i > 0 && (trimmed.starts_with('#') || trimmed.is_empty()) {
            continue;
        }
        let body = line.trim_end_matches(['\r', ' ', '\t']);
        match body.strip_suffix(escape) {
            Some(kept) => out.push_str(kept),
            None => out.push_str(line.trim_end_matches('\r')),
        }
    }
    out.trim().to_string()
}

fn keyword_span(i: &pd::Instruction) -> std::ops::Range<usize> {
    use pd::Instruction as I;
    match i {
        I::Add(x) => x.add.span.clone(),
        I::Arg(x) => x.arg.span.clone(),
        I::Cmd(x) => x.cmd.span.clone(),
        I::Copy(x) => x.copy.span.clone(),
        I::Entrypoint(x) => x.entrypoint.span.clone(),
        I::Env(x) => x.env.span.clone(),
        I::Expose(x) => x.expose.span.clone(),
        I::From(x) => x.from.span.clone(),
        I::Healthcheck(x) => x.healthcheck.span.clone(),
        I::Label(x) => x.label.span.clone(),
        I::Maintainer(x) => x.maintainer.span.clone(),
        I::Onbuild(x) => x.onbuild.span.clone(),
        I::Run(x) => x.run.span.clone(),
        I::Shell(x) => x.shell.span.clone(),
        I::Stopsignal(x) => x.stopsignal.span.clone(),
        I::User(x) => x.user.span.clone(),
        I::Volume(x) => x.volume.span.clone(),
        I::Workdir(x) => x.workdir.span.clone(),
        _ => 0..0,
    }
}

fn flags(list: &[pd::Flag]) -> Vec<Flag> {
    list.iter()
        .map(|f| Flag {
            name: f.name.value.to_string(),
            value: f.value.as_ref().map(|v| v.value.to_string()),
        })
        .collect()
}

const ALLOWED_FLAGS: &[(&str, &[&str])] = &[
    ("FROM", &["platform"]),
    ("RUN", &["mount", "network", "security"]),
    (
        "COPY",
        &["from", "chown", "chmod", "link", "parents", "exclude"],
    ),
    (
        "ADD",
        &[
            "chown",
            "chmod",
            "checksum",
            "keep-git-dir",
            "link",
            "exclude",
            "unpack",
        ],
    ),
    (
        "HEALTHCHECK",
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    ),
];

struct Converter<'t> {
    text: &'t str,
    escape: char,
    problems: Vec<Problem>,
}

impl Converter<'_> {
    fn command(&self, c: &pd::Command) -> CommandForm {
        match c {
            pd::Command::Exec(v) => {
                CommandForm::Exec(v.value.iter().map(|s| s.value.to_string()).collect())
            }
            pd::Command::Shell(s) => CommandForm::Shell(logical_line(s.value, self.escape)),
            _ => CommandForm::Shell(String::new()),
        }
    }

    fn check_flags(&mut self, keyword: &str, line: usize, list: &[Flag]) {
        let allowed = ALLOWED_FLAGS
            .iter()
            .find(|(k, _)| *k == keyword)
            .map(|(_, f)| *f)
            .unwrap_or(&[]);
        for f in list {
            if !allowed.contains(&f.name.as_str()) {
                self.problems.push(Problem {
                    line,
                    message: format!("unknown flag --{} for {keyword}", f.name),
                    rule: None,
                });
            }
        }
    }

    fn pairs(&mut self, keyword: &str, line: usize, raw: &str) -> Vec<(String, String)> {
        match expand::name_values(raw, self.escape) {
            Ok(p) => p,
            Err(e) => {
                self.problems.push(Problem {
                    line,
                    message: format!("{keyword} {e}"),
                    rule: None,
                });
                Vec::new()
            }
        }
    }

    /// The instruction's source text, up to where the next one starts.
    fn source(&self, start: usize, end: usize) -> String {
        logical_line(&self.text[start..end], self.escape)
    }

    fn step(&mut self, i: &pd::Instruction, end: usize) -> Option<Step> {
        use pd::Instruction as I;
        let span = keyword_span(i);
        let line = line_of(self.text, span.start);
        let has_heredoc = match i {
            I::Run(r) => !r.here_docs.is_empty(),
            I::Copy(c) => c.src.iter().any(|s| matches!(s, pd::Source::HereDoc(_))),
            I::Add(c) => c.src.iter().any(|s| matches!(s, pd::Source::HereDoc(_))),
            _ => false,
        };
        let text = if has_heredoc {
            // the instruction line itself, without the heredoc bodies
            let first_end = self.text[span.start..end]
                .find('\n')
                .map_or(end, |n| span.start + n);
            self.source(span.start, first_end)
        } else {
            self.source(span.start, end)
        };
        let instr = match i {
            I::Run(r) => {
                let f = flags(&r.options);
                self.check_flags("RUN", line, &f);
                let command = if r.here_docs.is_empty() {
                    self.command(&r.arguments)
                } else {
                    self.run_heredoc(r, end)
                };
                Instr::Run { flags: f, command }
            }
            I::Cmd(c) => Instr::Cmd(self.command(&c.arguments)),
            I::Entrypoint(c) => Instr::Entrypoint(self.command(&c.arguments)),
            I::Env(e) => Instr::Env(self.pairs("ENV", line, &e.arguments.value)),
            I::Label(l) => Instr::Label(self.pairs("LABEL", line, &l.arguments.value)),
            I::Arg(a) => {
                let words = expand::raw_words(&a.arguments.value, self.escape);
                if words.is_empty() {
                    self.problems.push(Problem {
                        line,
                        message: "ARG needs a name".into(),
                        rule: None,
                    });
                }
                Instr::Arg(
                    words
                        .into_iter()
                        .map(|w| match w.split_once('=') {
                            Some((k, v)) => (k.to_string(), Some(v.to_string())),
                            None => (w, None),
                        })
                        .collect(),
                )
            }
            I::Expose(e) => Instr::Expose(
                e.arguments
                    .iter()
                    .map(|s| s.value.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            I::Workdir(w) => Instr::Workdir(w.arguments.value.to_string()),
            I::User(u) => Instr::User(u.arguments.value.to_string()),
            I::Volume(v) => match &v.arguments {
                pd::JsonOrStringArray::Json(j) => Instr::Volume {
                    json: Some(j.value.iter().map(|s| s.value.to_string()).collect()),
                    text: String::new(),
                },
                pd::JsonOrStringArray::String(s) => Instr::Volume {
                    json: None,
                    text: s
                        .iter()
                        .map(|s| s.value.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                },
            },
            I::Copy(c) => {
                let f = flags(&c.options);
                self.check_flags("COPY", line, &f);
                Instr::Copy(CopySpec {
                    flags: f,
                    sources: c.src.iter().map(copy_source).collect(),
                    dest: c.dest.value.to_string(),
                })
            }
            I::Add(c) => {
                let f = flags(&c.options);
                self.check_flags("ADD", line, &f);
                Instr::Add(CopySpec {
                    flags: f,
                    sources: c.src.iter().map(copy_source).collect(),
                    dest: c.dest.value.to_string(),
                })
            }
            I::Stopsignal(s) => Instr::Stopsignal(s.arguments.value.to_string()),
            I::Healthcheck(h) => {
                let f = flags(&h.options);
                self.check_flags("HEALTHCHECK", line, &f);
                let test = match &h.arguments {
                    pd::HealthcheckArguments::Cmd { arguments, .. } => {
                        Some(self.command(arguments))
                    }
                    _ => None,
                };
                Instr::Healthcheck { flags: f, test }
            }
            I::Shell(s) => Instr::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect()),
            I::Onbuild(o) => {
                let inner = keyword_span(&o.instruction);
                let trigger = self.source(inner.start, end);
                let first = trigger.split_whitespace().next().unwrap_or("");
                if ["ONBUILD", "FROM", "MAINTAINER"].contains(&first.to_ascii_uppercase().as_str())
                {
                    self.problems.push(Problem {
                        line,
                        message: format!("{first} is not allowed as an ONBUILD trigger"),
                        rule: None,
                    });
                }
                Instr::Onbuild(trigger)
            }
            I::Maintainer(m) => Instr::Maintainer(m.name.value.to_string()),
            I::From(_) => return None,
            _ => {
                self.problems.push(Problem {
                    line,
                    message: "instruction not supported".into(),
                    rule: None,
                });
                return None;
            }
        };
        Some(Step { line, text, instr })
    }

    /// `RUN <<EOF` alone runs the heredoc's body as the script; `RUN cmd <<EOF`
    /// hands the shell the heredoc itself (it redirects it).
    fn run_heredoc(&self, r: &pd::RunInstruction, end: usize) -> CommandForm {
        let command = match &r.arguments {
            pd::Command::Shell(s) => s.value.trim(),
            _ => "",
        };
        if command.is_empty() && r.here_docs.len() == 1 {
            return CommandForm::Shell(r.here_docs[0].value.to_string());
        }
        // the source from after the flags to the end of the last terminator
        let start = r
            .options
            .last()
            .map(|f| f.span().end)
            .unwrap_or(r.run.span.end);
        CommandForm::Shell(self.text[start..end].trim().to_string())
    }
}

fn copy_source(s: &pd::Source) -> CopySource {
    match s {
        pd::Source::Path(p) => CopySource::Path(p.value.to_string()),
        pd::Source::HereDoc(h) => CopySource::Heredoc {
            body: h.value.to_string(),
            expand: h.expand,
        },
        _ => CopySource::Path(String::new()),
    }
}

/// Parses a Dockerfile. Errors come back as problems with line numbers; the
/// builder refuses to start while there is any error.
pub fn parse(text: &str) -> Result<Dockerfile, Vec<Problem>> {
    let (file, problems) = parse_with_problems(text);
    let errors: Vec<Problem> = problems.into_iter().filter(|p| p.rule.is_none()).collect();
    match file {
        Some(f) if errors.is_empty() => Ok(f),
        _ => Err(errors),
    }
}

/// Parses and returns every problem found, errors and warnings.
pub fn parse_with_problems(text: &str) -> (Option<Dockerfile>, Vec<Problem>) {
    let rewritten = heredoc_markers_first(text);
    let text = rewritten.as_str();
    let parsed = match pd::parse(text) {
        Ok(p) => p,
        Err(e) => {
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_string();
            return (
                None,
                vec![Problem {
                    line: e.line(),
                    message,
                    rule: None,
                }],
            );
        }
    };
    let escape = parsed
        .parser_directives
        .escape
        .as_ref()
        .map(|d| d.value.value)
        .unwrap_or('\\');
    let syntax = parsed
        .parser_directives
        .syntax
        .as_ref()
        .map(|d| d.value.value.to_string());
    let mut conv = Converter {
        text,
        escape,
        problems: Vec::new(),
    };
    let starts: Vec<usize> = parsed
        .instructions
        .iter()
        .map(|i| keyword_span(i).start)
        .collect();
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (n, instr) in parsed.instructions.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(text.len());
        let end = trim_trailing_comments(text, keyword_span(instr).start, end);
        if let pd::Instruction::From(f) = instr {
            let line = line_of(text, f.from.span.start);
            let fl = flags(&f.options);
            conv.check_flags("FROM", line, &fl);
            let platform = fl
                .iter()
                .find(|f| f.name == "platform")
                .and_then(|f| f.value.clone());
            stages.push(Stage {
                name: f.as_.as_ref().map(|(_, n)| n.value.to_string()),
                base: f.image.value.to_string(),
                platform,
                line,
                text: conv.source(f.from.span.start, end),
                steps: Vec::new(),
            });
            continue;
        }
        let Some(step) = conv.step(instr, end) else {
            continue;
        };
        match stages.last_mut() {
            Some(stage) => stage.steps.push(step),
            None if matches!(step.instr, Instr::Arg(_)) => global_args.push(step),
            None => conv.problems.push(Problem {
                line: step.line,
                message: "only ARG may come before the first FROM".into(),
                rule: None,
            }),
        }
    }
    if stages.is_empty() {
        conv.problems.push(Problem {
            line: 1,
            message:
                "the Dockerfile has no FROM: every build starts with FROM IMAGE (or FROM scratch)"
                    .into(),
            rule: None,
        });
    }
    let file = Dockerfile {
        escape,
        syntax,
        global_args,
        stages,
    };
    let mut problems = conv.problems;
    problems.extend(lint(&file));
    problems.sort_by_key(|p| p.line);
    (Some(file), problems)
}

/// parse-dockerfile only sees a heredoc that opens the RUN command (`RUN <<EOF
/// cmd`), while BuildKit takes it anywhere (`RUN python3 <<EOF`). A shell
/// allows a redirection anywhere in a simple command, so moving the markers to
/// the front (after the flags) means the same and lets the crate parse it.
fn heredoc_markers_first(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&move_markers(line).unwrap_or_else(|| line.to_string()));
    }
    out
}

fn move_markers(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let body = &line[indent..];
    if !body
        .get(..4)
        .is_some_and(|k| k.eq_ignore_ascii_case("RUN "))
    {
        return None;
    }
    let mut pos = 4;
    // skip the flags
    loop {
        let rest = &body[pos..];
        let skipped = rest.len() - rest.trim_start().len();
        pos += skipped;
        if !body[pos..].starts_with("--") {
            break;
        }
        pos += body[pos..]
            .find(char::is_whitespace)
            .unwrap_or(body.len() - pos);
    }
    let command = &body[pos..];
    if command.starts_with("<<") || !command.contains("<<") {
        return None;
    }
    let mut kept = String::new();
    let mut markers = Vec::new();
    let mut quote: Option<char> = None;
    let chars: Vec<char> = command.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '<'
                && chars.get(i + 1) == Some(&'<')
                && chars.get(i + 2) != Some(&'<') =>
            {
                let start = i;
                let mut j = i + 2;
                if chars.get(j) == Some(&'-') {
                    j += 1;
                }
                let word_start = j;
                while j < chars.len() && !chars[j].is_whitespace() && !"<>|;&".contains(chars[j]) {
                    j += 1;
                }
                let word: String = chars[word_start..j].iter().collect();
                let bare = word.trim_matches(['"', '\'']);
                if !bare.is_empty() && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    markers.push(chars[start..j].iter().collect::<String>());
                    i = j;
                    continue;
                }
            }
            None => {}
        }
        kept.push(c);
        i += 1;
    }
    if markers.is_empty() {
        return None;
    }
    Some(format!(
        "{}{}{} {}",
        &line[..indent],
        &body[..pos],
        markers.join(" "),
        kept.trim_start()
    ))
}

/// Cuts comment and blank lines that sit between one instruction and the next.
fn trim_trailing_comments(text: &str, start: usize, end: usize) -> usize {
    let mut end = end;
    loop {
        let body = text[start..end].trim_end_matches(['\n', '\r', ' ', '\t']);
        let cut = start + body.len();
        let line_start = text[..cut].rfind('\n').map(|n| n + 1).unwrap_or(0);
        if line_start > start && text[line_start..cut].trim_start().starts_with('#') {
            // a comment line ends the instruction unless the line before continues
            let prev = text[start..line_start].trim_end_matches(['\n', '\r']);
            if !prev.trim_end().ends_with('\\') && !prev.trim_end().ends_with('`') {
                end = line_start;
                continue;
            }
        }
        return cut;
    }
}

/// BuildKit-style checks that do not stop a build.
fn lint(file: &Dockerfile) -> Vec<Problem> {
    let mut out = Vec::new();
    let warn = |line, rule, message: String| Problem {
        line,
        message,
        rule: Some(rule),
    };
    let mut names: Vec<String> = Vec::new();
    for stage in &file.stages {
        let words: Vec<&str> = stage.text.split_whitespace().collect();
        if let (Some(from), Some(as_kw)) = (words.first(), words.iter().rev().nth(1)) {
            if as_kw.eq_ignore_ascii_case("as") && stage.name.is_some() {
                let upper = |w: &str| w.chars().all(|c| !c.is_ascii_lowercase());
                if upper(from) != upper(as_kw) {
                    out.push(warn(
                        stage.line,
                        "FromAsCasing",
                        format!("'{as_kw}' and '{from}' keywords' casing do not match"),
                    ));
                }
            }
        }
        if let Some(name) = &stage.name {
            let lower = name.to_ascii_lowercase();
            if names.contains(&lower) {
                out.push(Problem {
                    line: stage.line,
                    message: format!("duplicate stage name {name:?}"),
                    rule: None,
                });
            }
            if name != &lower {
                out.push(warn(
                    stage.line,
                    "StageNameCasing",
                    format!("stage name {name:?} should be lowercase"),
                ));
            }
            if lower == "context" || lower == "scratch" {
                out.push(Problem {
                    line: stage.line,
                    message: format!("{name:?} is a reserved stage name"),
                    rule: None,
                });
            }
            names.push(lower);
        }
        let mut seen: Vec<&str> = Vec::new();
        for step in &stage.steps {
            let (key, form) = match &step.instr {
                Instr::Cmd(f) => ("CMD", Some(f)),
                Instr::Entrypoint(f) => ("ENTRYPOINT", Some(f)),
                Instr::Healthcheck { .. } => ("HEALTHCHECK", None),
                Instr::Maintainer(_) => {
                    out.push(warn(
                        step.line,
                        "MaintainerDeprecated",
                        "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=..."
                            .into(),
                    ));
                    continue;
                }
                _ => continue,
            };
            if seen.contains(&key) {
                out.push(warn(
                    step.line,
                    "MultipleInstructionsDisallowed",
                    format!(
                        "multiple {key} instructions in one stage: only the last one takes effect"
                    ),
                ));
            }
            seen.push(key);
            if let Some(CommandForm::Shell(s)) = form {
                let message = if s.trim_start().starts_with('[') {
                    format!("{key} looks like a JSON array but is not valid JSON, so it runs in a shell: {s}")
                } else {
                    format!("JSON arguments recommended for {key} to keep OS signals working")
                };
                out.push(warn(step.line, "JSONArgsRecommended", message));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_case() {
        let f = parse(
            "# syntax=docker/dockerfile:1\nfrom busybox AS Base\nrun echo a \\\n  # a comment\n\n  && echo b\n# trailing\nCmd [\"sh\", \"-c\", \"echo $HOME\"]\n",
        )
        .unwrap();
        assert_eq!(f.syntax.as_deref(), Some("docker/dockerfile:1"));
        let s = &f.stages[0];
        assert_eq!(s.name.as_deref(), Some("Base"));
        assert_eq!(s.steps[0].line, 3);
        assert_eq!(
            s.steps[0].instr,
            Instr::Run {
                flags: vec![],
                command: CommandForm::Shell("echo a   && echo b".into())
            }
        );
        assert_eq!(s.steps[1].line, 8);
        assert_eq!(
            s.steps[1].instr,
            Instr::Cmd(CommandForm::Exec(vec![
                "sh".into(),
                "-c".into(),
                "echo $HOME".into()
            ]))
        );
    }

    #[test]
    fn escape_directive() {
        let f = parse("# escape=`\nFROM scratch\nRUN dir `\n  c:\\x\n").unwrap();
        assert_eq!(f.escape, '`');
        assert_eq!(
            f.stages[0].steps[0].instr,
            Instr::Run {
                flags: vec![],
                command: CommandForm::Shell("dir   c:\\x".into())
            }
        );
    }

    #[test]
    fn exec_vs_shell_form() {
        let f = parse("FROM a\nENTRYPOINT [\"x\", 'y']\nCMD [ \"a b\" ]\n").unwrap();
        let steps = &f.stages[0].steps;
        assert_eq!(
            steps[0].instr,
            Instr::Entrypoint(CommandForm::Shell("[\"x\", 'y']".into()))
        );
        assert_eq!(
            steps[1].instr,
            Instr::Cmd(CommandForm::Exec(vec!["a b".into()]))
        );
    }

    #[test]
    fn heredocs() {
        let f = parse(
            "FROM a\nRUN <<EOF\necho one\necho two\nEOF\nRUN cat <<EOT > /f\nhi $X\nEOT\nCOPY <<A <<'B' /d/\nx $Y\nA\nz\nB\n",
        )
        .unwrap();
        let steps = &f.stages[0].steps;
        assert_eq!(
            steps[0].instr,
            Instr::Run {
                flags: vec![],
                command: CommandForm::Shell("echo one\necho two\n".into())
            }
        );
        assert_eq!(
            steps[1].instr,
            Instr::Run {
                flags: vec![],
                command: CommandForm::Shell("<<EOT cat  > /f\nhi $X\nEOT".into())
            }
        );
        let Instr::Copy(c) = &steps[2].instr else {
            panic!("{:?}", steps[2]);
        };
        assert_eq!(c.dest, "/d/");
        assert_eq!(
            c.sources,
            vec![
                CopySource::Heredoc {
                    body: "x $Y\n".into(),
                    expand: true
                },
                CopySource::Heredoc {
                    body: "z\n".into(),
                    expand: false
                }
            ]
        );
    }

    #[test]
    fn flags_args_and_pairs() {
        let f = parse(
            "ARG V=1\nFROM --platform=linux/amd64 base:$V AS b\nARG A B=2\nENV K=v L=\"x y\"\nCOPY --from=b --chown=1:1 a b /c/\nRUN --mount=type=cache,target=/c --network=none true\nONBUILD RUN echo hi\n",
        )
        .unwrap();
        assert_eq!(f.global_args.len(), 1);
        let s = &f.stages[0];
        assert_eq!(s.platform.as_deref(), Some("linux/amd64"));
        assert_eq!(s.base, "base:$V");
        assert_eq!(
            s.steps[0].instr,
            Instr::Arg(vec![("A".into(), None), ("B".into(), Some("2".into()))])
        );
        assert_eq!(
            s.steps[1].instr,
            Instr::Env(vec![
                ("K".into(), "v".into()),
                ("L".into(), "\"x y\"".into())
            ])
        );
        let Instr::Copy(c) = &s.steps[2].instr else {
            panic!()
        };
        assert_eq!(c.flags.len(), 2);
        let Instr::Run { flags, .. } = &s.steps[3].instr else {
            panic!()
        };
        assert_eq!(flags[1].value.as_deref(), Some("none"));
        assert_eq!(s.steps[4].instr, Instr::Onbuild("RUN echo hi".into()));
    }

    #[test]
    fn errors_have_line_numbers() {
        let errs = parse("FROM a\nRUN true\nBOGUS x\n").unwrap_err();
        assert_eq!(errs[0].line, 3);
        assert!(errs[0].message.contains("BOGUS"), "{:?}", errs);
        let errs = parse("FROM a\nENV A=1 B\nCOPY --frm=x a b\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!((errs[0].line, errs[1].line), (2, 3));
        assert!(errs[1].message.contains("--frm"));
        let errs = parse("RUN x\n").unwrap_err();
        assert!(!errs.is_empty());
        assert!(parse("# only a comment\n").is_err());
    }

    #[test]
    fn warnings_do_not_stop_a_build() {
        let text = "FROM a AS Build\nCMD echo hi\nCMD [\"x\"]\nMAINTAINER me\nFROM b as c\n";
        let (file, problems) = parse_with_problems(text);
        assert!(file.is_some());
        let rules: Vec<_> = problems.iter().filter_map(|p| p.rule).collect();
        assert_eq!(
            rules,
            vec![
                "StageNameCasing",
                "JSONArgsRecommended",
                "MultipleInstructionsDisallowed",
                "MaintainerDeprecated",
                "FromAsCasing"
            ]
        );
        assert!(parse(text).is_ok());
    }
}
