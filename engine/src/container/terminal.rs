//! Pseudo-terminals for `-t`: the container's process gets the slave side of a
//! fresh pty as its stdin, stdout, stderr and controlling terminal; twinbox keeps
//! the master and copies between it and the user's own terminal, which it puts
//! in raw mode for the session (restored on every way out). The user's terminal
//! itself is never handed to the container.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::termios::{self, SetArg, Termios};
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::logs::LogWriter;
use super::{signals, ContainerError, Result};
use crate::cgroups::Cgroup;
use crate::runtime::console::Pty;
use crate::runtime::enter::{enter, Enter};
use crate::runtime::{wait_exit, Stdio};
use crate::util::poll;

/// A new pty from the devpts instance whose multiplexer is `ptmx`
/// (`/proc/PID/root/dev/pts/ptmx` for a running container's, so the process
/// sees its terminal in its /dev/pts).
fn open_pty(ptmx: &Path) -> Result<Pty> {
    crate::runtime::console::open_pty(ptmx).map_err(|e| ContainerError::io(ptmx, e))
}

/// The user's terminal in raw mode until dropped (then exactly as it was).
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Raw mode on our stdin when it is a terminal; nothing otherwise.
    pub fn enter() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, saved);
        }
    }
}

/// Copies our terminal's window size (from stdin, else stdout) to `master`.
pub(super) fn copy_window_size(master: RawFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [0, 1] {
        // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a pointer to a live winsize.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            // SAFETY: as above, on our master.
            unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
            return;
        }
    }
}

/// The write end of the self-pipe that wakes the relay on SIGWINCH (-1: none).
static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte.
        unsafe { libc::write(fd, b"w".as_ptr().cast(), 1) };
    }
}

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// Every process holding the terminal has closed it.
    Closed,
    /// The user typed the detach keys (ctrl-p ctrl-q).
    Detached,
}

/// The key sequence that detaches a client from a terminal without touching
/// the process (Docker's `--detach-keys`, default ctrl-p,ctrl-q).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl Default for DetachKeys {
    fn default() -> Self {
        DetachKeys(vec![0x10, 0x11])
    }
}

impl DetachKeys {
    /// Docker's syntax: comma-separated keys, each one character or `ctrl-X`
    /// with X one of a-z, @, [, \, ], ^, _.
    pub fn parse(text: &str) -> Result<DetachKeys> {
        let bad = || {
            ContainerError::BadOption(format!(
                "invalid detach keys {text:?}: use keys like ctrl-p,ctrl-q (ctrl- plus a-z, @, [, \\, ], ^ or _, or single characters)"
            ))
        };
        let mut keys = Vec::new();
        for key in text.split(',') {
            let bytes = key.as_bytes();
            if let Some(rest) = key.strip_prefix("ctrl-") {
                let [c] = rest.as_bytes() else {
                    return Err(bad());
                };
                let c = c.to_ascii_lowercase();
                keys.push(match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => return Err(bad()),
                });
            } else if bytes.len() == 1 {
                keys.push(bytes[0]);
            } else {
                return Err(bad());
            }
        }
        if keys.is_empty() {
            return Err(bad());
        }
        Ok(DetachKeys(keys))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Finds the detach sequence in typed input, holding back a partial match
/// across reads (and letting it through once the next byte breaks it).
#[derive(Debug)]
pub struct DetachMatcher {
    keys: DetachKeys,
    held: usize,
}

impl DetachMatcher {
    pub fn new(keys: DetachKeys) -> DetachMatcher {
        DetachMatcher { keys, held: 0 }
    }

    /// The bytes to forward from `data`, and whether the sequence completed.
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let keys = self.keys.bytes();
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == keys[self.held] {
                self.held += 1;
                if self.held == keys.len() {
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&keys[..self.held]);
            self.held = 0;
            if b == keys[0] {
                self.held = 1;
                if keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// Copies between the user's stdio and `master` until the terminal closes.
/// `input`: forward our stdin (`-i`). `echo`: copy the output to our stdout.
/// `detach`: these keys end the relay without touching the process.
/// `log`: a copy of the output.
pub fn relay(
    master: &OwnedFd,
    input: bool,
    echo: bool,
    detach: Option<DetachKeys>,
    log: Option<&mut LogWriter>,
) -> RelayEnd {
    relay_stream(master, master.as_raw_fd(), input, echo, detach, log)
}

/// As `relay`, with the terminal's data on `stream` (the pty master itself, or
/// a socket to the supervisor that holds it) and its window size set on
/// `winsize_fd`.
pub fn relay_stream(
    stream: &OwnedFd,
    winsize_fd: RawFd,
    input: bool,
    echo: bool,
    detach: Option<DetachKeys>,
    mut log: Option<&mut LogWriter>,
) -> RelayEnd {
    let (winch_r, winch_w) =
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(_) => return RelayEnd::Closed,
        };
    WINCH_PIPE.store(winch_w.as_raw_fd(), Ordering::Relaxed);
    // SAFETY: the handler only writes to the self-pipe.
    unsafe { libc::signal(libc::SIGWINCH, on_winch as *const () as libc::sighandler_t) };
    copy_window_size(winsize_fd);

    let Ok(dup) = stream.try_clone() else {
        return RelayEnd::Closed;
    };
    let mut master_file = File::from(dup);
    let mut winch = File::from(winch_r);
    let mut stdin_open = input;
    let mut buf = vec![0u8; 16 * 1024];
    let mut matcher = detach.map(DetachMatcher::new);
    let end = loop {
        let fds = [
            stream.as_raw_fd(),
            if stdin_open { 0 } else { -1 },
            winch.as_raw_fd(),
        ];
        let Ok(ready) = poll::wait_readable(&fds, None) else {
            break RelayEnd::Closed;
        };
        if ready[2] {
            let _ = winch.read(&mut buf);
            copy_window_size(winsize_fd);
        }
        if ready[0] {
            // EIO once the last slave descriptor is closed
            match master_file.read(&mut buf) {
                Ok(0) | Err(_) => break RelayEnd::Closed,
                Ok(k) => {
                    if echo {
                        let mut out = std::io::stdout();
                        let _ = out.write_all(&buf[..k]).and_then(|_| out.flush());
                    }
                    if let Some(log) = log.as_deref_mut() {
                        let _ = log.feed(0, &buf[..k]);
                    }
                }
            }
        }
        if ready[1] {
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(k) => match matcher.as_mut() {
                    Some(m) => {
                        let (data, detached) = m.feed(&buf[..k]);
                        let _ = master_file.write_all(&data);
                        if detached {
                            break RelayEnd::Detached;
                        }
                    }
                    None => {
                        let _ = master_file.write_all(&buf[..k]);
                    }
                },
            }
        }
    };
    WINCH_PIPE.store(-1, Ordering::Relaxed);
    // SAFETY: back to the default disposition; the self-pipe closes below.
    unsafe { libc::signal(libc::SIGWINCH, libc::SIG_DFL) };
    drop(winch_w);
    end
}

/// `exec -t`: the process gets a terminal from the container's own devpts.
pub fn exec_with_terminal(
    pid: i32,
    process: &Process,
    seccomp: Option<&LinuxSeccomp>,
    cgroup: Option<&Cgroup>,
    interactive: bool,
) -> Result<i32> {
    let ptmx = format!("/proc/{pid}/root/dev/pts/ptmx");
    let pty = open_pty(Path::new(&ptmx))?;
    let slave = pty.slave.as_raw_fd();
    let child = enter(&Enter {
        target: nix::unistd::Pid::from_raw(pid),
        process,
        seccomp,
        cgroup,
        stdio: Stdio {
            stdin: slave,
            stdout: slave,
            stderr: slave,
        },
        die_with_parent: true,
        preserve_fds: 0,
        personality: None,
    })?;
    drop(pty.slave);
    signals::forward_to(child.as_raw());
    let raw = if interactive {
        Some(RawMode::enter())
    } else {
        None
    };
    relay(&pty.master, interactive, true, None, None);
    drop(raw);
    let code = wait_exit(child);
    signals::stop_forwarding();
    Ok(code)
}
