//! `twinbox lesson NAME --steps`: an exercise as steps a student types one by
//! one. Each step says what to type and what to expect, waits for the student
//! to run it, then checks its effect on this host (a container running, a
//! port answering, a query's result) and says what is wrong when it is not
//! there yet. `--auto` types each step itself (the same text, through `sh`),
//! for tests and demonstrations; without a terminal the steps are printed.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_engine::store::Store;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "detail")]
pub enum Checked {
    /// The step had its effect: what was seen.
    Ok(String),
    /// Not (yet): what is missing.
    Wrong(String),
    /// The step cannot run on this host, and why.
    NotHere(String),
}

/// A check of a step's effect, given the store; it may wait a little for a
/// server to come up, and says what it saw.
pub type Check = Box<dyn Fn(&Store) -> Checked>;

/// One step of an exercise.
pub struct GuidedStep {
    /// What the student should see, in plain words.
    pub expect: String,
    /// What to type (one or more shell lines).
    pub command: String,
    pub check: Check,
    /// Set when the step cannot run on this host (then it is shown, not
    /// checked, and `--auto` does not type it).
    pub not_here: Option<String>,
}

/// An exercise: a heading and its steps in order.
pub struct Guided {
    pub intro: String,
    pub steps: Vec<GuidedStep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Print every step and check nothing (no terminal to wait on).
    Print,
    /// Wait for the student after each step (Enter), then check it.
    Interactive,
    /// Type each step itself through `sh`, then check it.
    Auto,
}

/// How one step went.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub step: usize,
    pub command: String,
    pub expect: String,
    /// None: not checked (printed only, skipped by the student, or quit).
    pub checked: Option<Checked>,
    /// `--auto`: what typing the step printed, and its exit status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typed: Option<Typed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Typed {
    pub exit_code: Option<i32>,
    pub output: String,
}

impl Guided {
    /// The steps as text, numbered, for printing.
    pub fn text(&self) -> String {
        let mut out = format!("{}\n\n", self.intro);
        for (i, s) in self.steps.iter().enumerate() {
            out.push_str(&step_text(i, s));
            out.push('\n');
        }
        out
    }
}

fn step_text(i: usize, s: &GuidedStep) -> String {
    let mut out = format!("{}. {}\n", i + 1, s.expect);
    for line in s.command.lines() {
        out.push_str(&format!("   {line}\n"));
    }
    if let Some(why) = &s.not_here {
        out.push_str(&format!("   (cannot run on this host: {why})\n"));
    }
    out
}

/// What `--steps` needs besides the steps.
pub struct Session<'a> {
    pub store: &'a Store,
    pub mode: Mode,
    /// The twinbox binary: `--auto` puts its directory first on PATH, so
    /// that the typed `twinbox` is this one.
    pub exe: PathBuf,
    /// Where the student's words go (stdout; stderr with `--json`).
    pub out: &'a mut dyn Write,
}

/// Runs the exercise in `mode`; every step's outcome, in order.
pub fn run(guided: &Guided, session: Session) -> Vec<StepOutcome> {
    let Session {
        store,
        mode,
        exe,
        out,
    } = session;
    let mut outcomes = Vec::new();
    let _ = writeln!(out, "{}\n", guided.intro);
    if mode == Mode::Interactive {
        let _ = writeln!(
            out,
            "Type each step in another terminal; press Enter here when it is done and the lesson checks it (s: skip the step, q: stop).\n"
        );
    }
    let work = (mode == Mode::Auto).then(AutoShell::new);
    let mut stdin = std::io::stdin().lock();
    let mut quit = false;
    for (i, step) in guided.steps.iter().enumerate() {
        let _ = write!(out, "{}", step_text(i, step));
        let mut outcome = StepOutcome {
            step: i + 1,
            command: step.command.clone(),
            expect: step.expect.clone(),
            checked: None,
            typed: None,
        };
        if quit || mode == Mode::Print {
            outcomes.push(outcome);
            let _ = writeln!(out);
            continue;
        }
        if let Some(why) = &step.not_here {
            outcome.checked = Some(Checked::NotHere(why.clone()));
            let _ = writeln!(out, "   - not checked here\n");
            outcomes.push(outcome);
            continue;
        }
        match &work {
            Some(Ok(shell)) => {
                let typed = shell.type_in(&step.command, &exe, store.root());
                for line in typed.output.lines() {
                    let _ = writeln!(out, "   | {line}");
                }
                outcome.typed = Some(typed);
                let checked = (step.check)(store);
                say_checked(out, &checked);
                outcome.checked = Some(checked);
            }
            Some(Err(why)) => {
                let checked = Checked::Wrong(format!("cannot type the step: {why}"));
                say_checked(out, &checked);
                outcome.checked = Some(checked);
            }
            None => loop {
                let _ = write!(out, "   [Enter: check, s: skip, q: stop] ");
                let _ = out.flush();
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        quit = true;
                        let _ = writeln!(out, "\n   (no more input: stopping here)");
                        break;
                    }
                    Ok(_) => {}
                }
                match line.trim() {
                    "q" => {
                        quit = true;
                        break;
                    }
                    "s" => break,
                    _ => {}
                }
                let checked = (step.check)(store);
                say_checked(out, &checked);
                let done = !matches!(checked, Checked::Wrong(_));
                outcome.checked = Some(checked);
                if done {
                    break;
                }
                let _ = writeln!(out, "   fix it and press Enter to check again");
            },
        }
        let _ = writeln!(out);
        outcomes.push(outcome);
    }
    outcomes
}

fn say_checked(out: &mut dyn Write, c: &Checked) {
    let _ = match c {
        Checked::Ok(what) => writeln!(out, "   ✓ {what}"),
        Checked::Wrong(what) => writeln!(out, "   ✗ {what}"),
        Checked::NotHere(why) => writeln!(out, "   - cannot run on this host: {why}"),
    };
}

/// True when every checked step is fine (not-here steps count as fine).
pub fn all_passed(outcomes: &[StepOutcome]) -> bool {
    outcomes
        .iter()
        .all(|o| !matches!(o.checked, Some(Checked::Wrong(_))))
}

/// A working directory for `--auto`, kept across steps the way a student's
/// shell keeps it (a step that does `cd` moves the next one too).
struct AutoShell {
    dir: PathBuf,
    cwd_file: PathBuf,
}

/// How long one typed step may run.
const TYPE_TIMEOUT: Duration = Duration::from_secs(300);

impl AutoShell {
    fn new() -> Result<AutoShell, String> {
        let dir = std::env::temp_dir().join(format!(
            "twinbox-steps-{}",
            twinbox_engine::util::id::random_hex(6)
        ));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cwd_file = dir.join(".cwd");
        std::fs::write(&cwd_file, dir.display().to_string())
            .map_err(|e| format!("writing {}: {e}", cwd_file.display()))?;
        Ok(AutoShell { dir, cwd_file })
    }

    /// Runs `command` with `sh -e` in the directory the last step ended in,
    /// with this twinbox first on PATH and its store as TWINBOX_ROOT.
    fn type_in(&self, command: &str, exe: &Path, root: &Path) -> Typed {
        let cwd = std::fs::read_to_string(&self.cwd_file).unwrap_or_default();
        let cwd = if Path::new(cwd.trim()).is_dir() {
            PathBuf::from(cwd.trim())
        } else {
            self.dir.clone()
        };
        let path = format!(
            "{}:{}",
            exe.parent().unwrap_or(Path::new("/")).display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = format!(
            "{command}\npwd > {}\n",
            crate::shell::quote(&self.cwd_file.display().to_string())
        );
        let child = Command::new("sh")
            .args(["-ec", &script])
            .current_dir(&cwd)
            .env("PATH", path)
            .env("TWINBOX_ROOT", root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return Typed {
                    exit_code: None,
                    output: format!("cannot run sh: {e}"),
                }
            }
        };
        let deadline = Instant::now() + TYPE_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let mut output = String::new();
        use std::io::Read;
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut output);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut output);
        }
        Typed {
            exit_code: status,
            output,
        }
    }
}

impl Drop for AutoShell {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Retries `probe` until it is not `Wrong` or `timeout` passes; the last
/// answer. For effects that take a moment (a server starting).
pub fn within(timeout: Duration, mut probe: impl FnMut() -> Checked) -> Checked {
    let deadline = Instant::now() + timeout;
    loop {
        let c = probe();
        if !matches!(c, Checked::Wrong(_)) || Instant::now() >= deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_check_passes() {
        let mut n = 0;
        let c = within(Duration::from_secs(5), || {
            n += 1;
            if n < 3 {
                Checked::Wrong("not yet".into())
            } else {
                Checked::Ok("there".into())
            }
        });
        assert_eq!(c, Checked::Ok("there".into()));
        let c = within(Duration::from_millis(10), || Checked::Wrong("never".into()));
        assert_eq!(c, Checked::Wrong("never".into()));
    }

    #[test]
    fn outcomes_pass_unless_a_check_is_wrong() {
        let o = |c: Option<Checked>| StepOutcome {
            step: 1,
            command: String::new(),
            expect: String::new(),
            checked: c,
            typed: None,
        };
        assert!(all_passed(&[
            o(Some(Checked::Ok("x".into()))),
            o(None),
            o(Some(Checked::NotHere("y".into())))
        ]));
        assert!(!all_passed(&[o(Some(Checked::Wrong("z".into())))]));
    }
}
