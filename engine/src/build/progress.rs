//! Build progress the way BuildKit's plain mode prints it:
//!
//! ```text
//! #3 [build 2/4] RUN make
//! #3 0.412 cc -o app main.c
//! #3 DONE 1.2s
//! #4 [build 3/4] COPY . .
//! #4 CACHED
//! ```

use std::io::Write;
use std::time::Duration;

pub trait Progress {
    fn step_started(&mut self, id: usize, label: &str);
    fn step_cached(&mut self, id: usize);
    fn step_output(&mut self, id: usize, elapsed: Duration, line: &str);
    fn step_done(&mut self, id: usize, elapsed: Duration);
    fn step_failed(&mut self, id: usize, elapsed: Duration, message: &str);
    /// A line about the whole build (a warning, the result).
    fn note(&mut self, text: &str);
}

/// `--progress plain` (and `auto`): every event on its own line.
pub struct Plain<W: Write> {
    out: W,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W) -> Self {
        Plain { out }
    }
}

impl<W: Write> Progress for Plain<W> {
    fn step_started(&mut self, id: usize, label: &str) {
        let _ = writeln!(self.out, "#{id} {label}");
    }
    fn step_cached(&mut self, id: usize) {
        let _ = writeln!(self.out, "#{id} CACHED\n");
    }
    fn step_output(&mut self, id: usize, elapsed: Duration, line: &str) {
        let _ = writeln!(self.out, "#{id} {:.3} {line}", elapsed.as_secs_f64());
    }
    fn step_done(&mut self, id: usize, elapsed: Duration) {
        let _ = writeln!(self.out, "#{id} DONE {:.1}s\n", elapsed.as_secs_f64());
    }
    fn step_failed(&mut self, id: usize, elapsed: Duration, message: &str) {
        let _ = writeln!(
            self.out,
            "#{id} ERROR: {message} ({:.1}s)\n",
            elapsed.as_secs_f64()
        );
    }
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }
}

/// `--progress quiet` / `-q`: nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn step_started(&mut self, _: usize, _: &str) {}
    fn step_cached(&mut self, _: usize) {}
    fn step_output(&mut self, _: usize, _: Duration, _: &str) {}
    fn step_done(&mut self, _: usize, _: Duration) {}
    fn step_failed(&mut self, _: usize, _: Duration, _: &str) {}
    fn note(&mut self, _: &str) {}
}

/// Records events, for tests.
#[derive(Debug, Default)]
pub struct Recorder {
    pub lines: Vec<String>,
}

impl Progress for Recorder {
    fn step_started(&mut self, id: usize, label: &str) {
        self.lines.push(format!("#{id} {label}"));
    }
    fn step_cached(&mut self, id: usize) {
        self.lines.push(format!("#{id} CACHED"));
    }
    fn step_output(&mut self, id: usize, _: Duration, line: &str) {
        self.lines.push(format!("#{id} | {line}"));
    }
    fn step_done(&mut self, id: usize, _: Duration) {
        self.lines.push(format!("#{id} DONE"));
    }
    fn step_failed(&mut self, id: usize, _: Duration, message: &str) {
        self.lines.push(format!("#{id} ERROR {message}"));
    }
    fn note(&mut self, text: &str) {
        self.lines.push(text.to_string());
    }
}
