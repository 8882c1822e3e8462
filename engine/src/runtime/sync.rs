//! The parent/child pipe. The child writes one report: "ready" (waiting for
//! `start`), or an error with the exit code Docker would use. A successful exec
//! closes the pipe (it is CLOEXEC), which the parent reads as "execed".

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
}

impl Channel {
    pub fn new() -> io::Result<Self> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        Ok(Channel {
            read,
            write: Mutex::new(Some(write)),
        })
    }

    /// Parent: drop our copy of the write end so EOF means "the child execed".
    pub fn close_child_end(&self) {
        self.write.lock().unwrap().take();
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
        let mut f = std::fs::File::from(self.read.try_clone().expect("dup sync pipe"));
        let mut buf = Vec::new();
        let mut byte = [0u8; 256];
        loop {
            match f.read(&mut byte) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&byte[..n]);
                    if buf == b"R\n" {
                        return ChildReport::Ready;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
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
