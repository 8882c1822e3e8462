//! The lessons' database client: the host's own `psql`, run as a student
//! would run it, with a timeout so a server that never answers cannot hang a
//! lesson.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The host's psql: the program itself (not Debian's Perl wrapper, which
/// adds its own start-up time to every call), else whatever `psql` is on PATH.
pub fn find_client() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.is_file())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("psql"))
                .find(|p| p.is_file())
        })
    })
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: PathBuf,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// What one psql call printed, and how long it took from start to exit.
#[derive(Debug, Clone)]
pub struct Answer {
    pub output: String,
    pub wall_ms: f64,
}

impl Target {
    /// `PGPASSWORD=... psql -h HOST -p PORT -U USER ARGS...`, as a student types it.
    pub fn shown(&self, args: &[&str]) -> String {
        let mut words: Vec<String> = vec![
            "psql".into(),
            "-h".into(),
            self.host.clone(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            self.user.clone(),
        ];
        words.extend(args.iter().map(|a| a.to_string()));
        format!(
            "PGPASSWORD={} {}",
            crate::shell::quote(&self.password),
            crate::shell::join(&words)
        )
    }

    /// Runs psql with ARGS; an error carries what psql said.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<Answer, String> {
        let t0 = Instant::now();
        let mut child = Command::new(&self.client)
            .args(["-X", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &self.host, "-p", &self.port.to_string()])
            .args(["-U", &self.user])
            .args(args)
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.client.display()))?;
        let deadline = t0 + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("psql gave no answer in {} s", timeout.as_secs()));
                }
                Err(e) => return Err(format!("waiting for psql: {e}")),
            }
        };
        let wall_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        if status.success() {
            Ok(Answer {
                output: out,
                wall_ms,
            })
        } else {
            Err(err
                .trim()
                .lines()
                .last()
                .unwrap_or("psql failed")
                .to_string())
        }
    }

    /// Tries `select 1` until the server answers; the time from `since` to
    /// the first answer. `alive` says whether waiting still makes sense;
    /// `progress` is any counter that moves while the server is still
    /// getting ready (its output, its CPU time): waiting goes on while it
    /// moves, up to `patience.cap` in all, and stops after `patience.idle`
    /// without an answer or a move (initdb on an emulated CPU takes minutes,
    /// a server that hangs should not).
    pub fn wait_ready(
        &self,
        since: Instant,
        patience: Patience,
        mut alive: impl FnMut() -> bool,
        mut progress: impl FnMut() -> u64,
    ) -> Result<f64, String> {
        let mut last = String::from("no answer yet");
        let mut seen = progress();
        let mut moved = Instant::now();
        while since.elapsed() < patience.cap {
            match self.run(&["-tAc", "select 1"], Duration::from_secs(5)) {
                Ok(a) if a.output.trim() == "1" => {
                    return Ok(since.elapsed().as_secs_f64() * 1000.0)
                }
                Ok(a) => last = format!("unexpected answer {:?}", a.output.trim()),
                Err(e) => last = e,
            }
            if !alive() {
                return Err(format!("the server stopped before it answered ({last})"));
            }
            let now = progress();
            if now != seen {
                seen = now;
                moved = Instant::now();
            } else if moved.elapsed() > patience.idle {
                return Err(format!(
                    "no answer, and no progress for {} s ({last})",
                    patience.idle.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "no answer within {} s ({last})",
            patience.cap.as_secs()
        ))
    }
}

/// How long [`Target::wait_ready`] waits: `idle` without any progress,
/// `cap` in all.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub idle: Duration,
    pub cap: Duration,
}

/// The times psql's `\timing` printed ("Time: 0.456 ms"), in order.
pub fn timings(output: &str) -> Vec<f64> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Time: "))
        .filter_map(|t| t.split_whitespace().next()?.parse().ok())
        .collect()
}

/// True when `path` can be bound on every address (nobody listens there).
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// `psql` on PATH or at its Debian place, for messages.
pub fn client_hint(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_lines_are_read() {
        let out = "Timing is on.\n 1\n\nTime: 0.456 ms\n 1\nTime: 12.5 ms (00:00.012)\n";
        assert_eq!(timings(out), vec![0.456, 12.5]);
    }

    #[test]
    fn shown_command_is_what_a_student_types() {
        let t = Target {
            client: "/usr/bin/psql".into(),
            host: "0.0.0.0".into(),
            port: 5432,
            user: "postgres".into(),
            password: "mysecretpassword".into(),
        };
        assert_eq!(
            t.shown(&["-c", "select 1"]),
            "PGPASSWORD=mysecretpassword psql -h 0.0.0.0 -p 5432 -U postgres -c 'select 1'"
        );
    }
}
