//! A whole QEMU machine run from its start to its power-off, with its serial
//! console read as it comes: for the lessons whose VM is not the usual
//! workload VM (an arm64 machine, a Linux VM that runs twinbox). The guest's
//! init prints `MARK name rest` lines; each is kept with the moment it came.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

/// What the guest said, and when.
#[derive(Debug, Clone)]
pub struct Console {
    pub text: String,
    /// `(name, rest, ms since QEMU started)` for each `MARK name rest` line.
    pub marks: Vec<(String, String, f64)>,
    pub total_ms: f64,
}

impl Console {
    /// The rest of the first `MARK name ...` line.
    pub fn mark(&self, name: &str) -> Option<&str> {
        self.marks
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, rest, _)| rest.as_str())
    }

    /// When the first `MARK name` line came.
    pub fn at(&self, name: &str) -> Option<f64> {
        self.marks
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, ms)| *ms)
    }

    /// The last few non-empty console lines, for an error.
    pub fn tail(&self) -> String {
        tail(&self.text)
    }
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}

/// Runs `emulator ARGS` until it exits or `timeout` passes (then it is
/// killed and this is an error with the console's last lines). `live` gets
/// every marked line as it comes.
pub fn run(
    emulator: &Path,
    args: &[String],
    mark: &str,
    timeout: Duration,
    live: &mut dyn FnMut(&str, &str),
) -> Result<Console, String> {
    let t0 = Instant::now();
    let mut child = Command::new(emulator)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", emulator.display()))?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no pipe to the emulator's console".into());
    };
    let (tx, rx) = channel::<(Vec<u8>, Instant)>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send((buf[..n].to_vec(), Instant::now())).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    let prefix = format!("{mark} ");
    let mut text = String::new();
    let mut pending = String::new();
    let mut marks = Vec::new();
    let deadline = t0 + timeout;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((bytes, at)) => {
                let chunk = String::from_utf8_lossy(&bytes);
                text.push_str(&chunk);
                pending.push_str(&chunk);
                while let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    let line = line.trim_end_matches(['\n', '\r']);
                    if let Some(rest) = line.find(&prefix).map(|j| &line[j + prefix.len()..]) {
                        let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                        live(name, rest);
                        let ms = at.duration_since(t0).as_secs_f64() * 1e3;
                        marks.push((name.to_string(), rest.to_string(), ms));
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                if Instant::now() > deadline {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    let errors = errors.join().unwrap_or_default();
    let console = Console {
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
        text,
        marks,
    };
    if timed_out {
        return Err(format!(
            "the guest did not finish within {} s and {} was stopped; last console lines: {}",
            timeout.as_secs(),
            emulator.display(),
            console.tail()
        ));
    }
    if !status.success() && console.marks.is_empty() {
        return Err(format!(
            "{} exited with {status}: {}",
            emulator.display(),
            tail(&format!("{errors}\n{}", console.text))
        ));
    }
    Ok(console)
}

/// A program on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
