//! The parent/child pipe. The child writes one report: "ready" (waiting for
//! `start`), or an error with the exit code Docker would use. A successful exec
//! closes the pipe (it is CLOEXEC), which the parent reads as "execed".
//! Before that the child may ask the parent for things only the parent can do,
//! and wait on a second pipe for each answer (NUL-terminated): run the hooks
//! that belong between namespace setup and pivot_root ("H"), take the
//! seccomp listener descriptor and hand it to the agent ("S<fd>"), or write
//! the id maps of its new user namespace ("M").

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;

pub enum ChildReport {
    Execed,
    Ready,
    Failed { exit_code: i32, message: String },
}

/// What the child asks of the parent before it is ready.
pub enum Request {
    /// Write our uid_map and gid_map (and put us in the cgroup): a process in a
    /// new user namespace cannot map itself to anything but its own id, and
    /// once mapped it no longer owns the host's cgroup files.
    IdMaps,
    /// Run prestart and createRuntime; answer with the state JSON.
    Hooks,
    /// The seccomp notify listener, copied out of the child: pass it to the agent.
    SeccompListener(OwnedFd),
}

/// The parent's side of [`Request`]s: an answer for the child, or the error
/// that fails the container.
pub type Answerer<'a> = dyn FnMut(Request) -> Result<String, String> + 'a;

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
        self.request("H\n")
    }

    /// Child: ask the parent to write our id maps; `false` when it could not.
    pub fn request_id_maps(&self) -> bool {
        self.request("M\n").is_some()
    }

    /// Child: the parent copies `fd` (our seccomp listener) with pidfd_getfd
    /// and hands it to the agent; `false` when that failed.
    pub fn hand_over_listener(&self, fd: RawFd) -> bool {
        self.request(&format!("S{fd}\n")).is_some()
    }

    /// Child: one request, then block until the parent's answer (`None`: it
    /// refused or went away).
    fn request(&self, msg: &str) -> Option<String> {
        // our copy of the answer pipe's write end must go, or a dead parent
        // would leave us waiting forever
        self.go_write.lock().unwrap().take();
        self.send(msg);
        let guard = self.go_read.lock().unwrap();
        let fd = guard.as_ref()?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(fd, &mut byte) {
                Ok(0) => return None,
                Ok(_) if byte[0] == 0 => break,
                Ok(_) => answer.push(byte[0]),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
        }
        let answer = String::from_utf8(answer).ok()?;
        answer.strip_prefix('G').map(str::to_string)
    }

    fn answer(&self, answer: &Result<String, String>) {
        if let Some(w) = self.go_write.lock().unwrap().as_ref() {
            let mut f = std::fs::File::from(w.try_clone().expect("dup sync pipe"));
            let _ = match answer {
                Ok(state) => f.write_all(format!("G{state}\0").as_bytes()),
                Err(_) => f.write_all(b"N\0"),
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
        self.wait_for_child_with(0, &mut |_| Err("the runtime expected no requests".into()))
    }

    /// Like [`Channel::wait_for_child`], answering the child's [`Request`]s
    /// with `answer` (`child` is its pid, for copying its listener); an
    /// answer's error becomes the child's failure.
    pub fn wait_for_child_with(&self, child: i32, answer: &mut Answerer) -> ChildReport {
        let mut request_error = None;
        let mut f = std::fs::File::from(self.read.try_clone().expect("dup sync pipe"));
        let mut buf = Vec::new();
        let mut byte = [0u8; 256];
        loop {
            match f.read(&mut byte) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&byte[..n]);
                    while let Some(request) = take_request(&mut buf) {
                        let result = match request {
                            Ok(ParsedRequest::Hooks) => answer(Request::Hooks),
                            Ok(ParsedRequest::IdMaps) => answer(Request::IdMaps),
                            Ok(ParsedRequest::Listener(fd)) => copy_fd(child, fd)
                                .map_err(|e| format!("copy the seccomp listener: {e}"))
                                .and_then(|fd| answer(Request::SeccompListener(fd))),
                            Err(e) => Err(e),
                        };
                        self.answer(&result);
                        if let Err(e) = result {
                            request_error.get_or_insert(e);
                        }
                    }
                    if buf == b"R\n" {
                        return ChildReport::Ready;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if let Some(message) = request_error {
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

enum ParsedRequest {
    Hooks,
    IdMaps,
    Listener(RawFd),
}

/// The first complete request at the start of `buf`, removed from it.
fn take_request(buf: &mut Vec<u8>) -> Option<Result<ParsedRequest, String>> {
    if !matches!(buf.first(), Some(b'H' | b'S' | b'M')) {
        return None;
    }
    let end = buf.iter().position(|b| *b == b'\n')?;
    let line: Vec<u8> = buf.drain(..=end).collect();
    let line = String::from_utf8_lossy(&line[..end]).into_owned();
    if line == "M" {
        return Some(Ok(ParsedRequest::IdMaps));
    }
    Some(match line.strip_prefix('S') {
        None => Ok(ParsedRequest::Hooks),
        Some(n) => n
            .parse()
            .map(ParsedRequest::Listener)
            .map_err(|_| format!("bad request from the container init: {line:?}")),
    })
}

/// A copy of descriptor `fd` of process `pid` (pidfd_getfd(2), Linux 5.6).
fn copy_fd(pid: i32, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open with a pid and no flags; the result is a new descriptor.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd is a descriptor we just got and now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd with our pidfd, the child's fd number and no flags.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor (close-on-exec) that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(copy as RawFd) })
}
