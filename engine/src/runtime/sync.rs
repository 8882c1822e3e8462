//! The parent/child pipe. The child writes one report: "ready" (waiting for
//! `start`), or an error with the exit code Docker would use. A successful exec
//! closes the pipe (it is CLOEXEC), which the parent reads as "execed".
//! When the spec has hooks that must run between namespace setup and
//! pivot_root, the child also asks "hooks" and waits on a second pipe for the
//! parent's go-ahead.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

pub enum ChildReport {
    Execed,
    Ready,
    Failed { exit_code: i32, message: String },
}

pub struct Channel {
    read: OwnedFd,
    write: Mutex<Option<OwnedFd>>,
    go_read: Mutex<Option<OwnedFd>>,
    go_write: Mutex<Option<OwnedFd>>,
}

impl Channel {
    pub fn new() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        Ok(Channel {
            read,
            write: Mutex::new(Some(write)),
            go_read: Mutex::new(Some(go_read)),
            go_write: Mutex::new(Some(go_write)),
        })
    }

    /// Parent: drop our copy of the write end so EOF means "the child execed".
    pub fn close_child_end(&self) {
        self.write.lock().unwrap().take();
        self.go_read.lock().unwrap().take();
    }

    /// Child: ask the parent to run its hooks and wait for its answer: the
    /// container's state JSON (for the child's own hooks), or `None` when the
    /// parent refused (a hook failed) or went away.
    pub fn request_hooks(&self) -> Option<String> {
        self.go_write.lock().unwrap().take();
        self.send("H\n");
        let r = self.go_read.lock().unwrap().take()?;
        let mut answer = String::new();
        std::fs::File::from(r).read_to_string(&mut answer).ok()?;
        answer.strip_prefix('G').map(str::to_string)
    }

    fn answer_hooks(&self, answer: &Result<String, String>) {
        if let Some(w) = self.go_write.lock().unwrap().take() {
            let mut f = std::fs::File::from(w);
            let _ = match answer {
                Ok(state) => f.write_all(format!("G{state}").as_bytes()),
                Err(_) => f.write_all(b"N"),
            };
        }
    }

    fn send(&self, msg: &str) {
        if let Some(w) = self.write.lock().unwrap().as_ref() {
            let mut f = std::fs::File::from(w.try_clone().expect("dup sync pipe"));
            let _ = f.write_all(msg.as_bytes());
        }
    }

    /// Child: setup is done and it now waits for `start`.
    pub fn report_ready(&self) {
        self.send("R\n");
    }

    /// Child: setup failed.
    pub fn report_failure(&self, exit_code: i32, message: &str) {
        self.send(&format!("E{exit_code}\n{message}"));
    }

    pub fn wait_for_child(&self) -> ChildReport {
        self.wait_for_child_with(&mut || Ok(String::new()))
    }

    /// Like [`Channel::wait_for_child`], running `hooks` when the child asks;
    /// a hook's error becomes the child's failure.
    pub fn wait_for_child_with(
        &self,
        hooks: &mut dyn FnMut() -> Result<String, String>,
    ) -> ChildReport {
        let mut hook_error = None;
        let mut f = std::fs::File::from(self.read.try_clone().expect("dup sync pipe"));
        let mut buf = Vec::new();
        let mut byte = [0u8; 256];
        loop {
            match f.read(&mut byte) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&byte[..n]);
                    if buf.starts_with(b"H\n") {
                        buf.drain(..2);
                        let result = hooks();
                        self.answer_hooks(&result);
                        hook_error = result.err();
                    }
                    if buf == b"R\n" {
                        return ChildReport::Ready;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if let Some(message) = hook_error {
            return ChildReport::Failed {
                exit_code: 125,
                message,
            };
        }
        let text = String::from_utf8_lossy(&buf);
        match text.strip_prefix('E') {
            Some(rest) => {
                let (code, message) = rest.split_once('\n').unwrap_or((rest, ""));
                ChildReport::Failed {
                    exit_code: code.parse().unwrap_or(125),
                    message: message.to_string(),
                }
            }
            None => ChildReport::Execed,
        }
    }
}
