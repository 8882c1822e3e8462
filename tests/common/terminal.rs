//! A pseudo-terminal for driving the binary as a person at a keyboard would:
//! the child gets the slave as its stdin, stdout and stderr; the test types
//! into the master and reads what the child printed.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Lab;

pub struct Terminal {
    pub master: std::fs::File,
    pub slave: OwnedFd,
    /// What the child printed and [`Terminal::expect`] has not consumed yet.
    pub seen: Vec<u8>,
}

impl Terminal {
    pub fn new() -> Terminal {
        let ws = nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        Terminal {
            master: pty.master.into(),
            slave: pty.slave,
            seen: Vec::new(),
        }
    }

    pub fn spawn(&self, lab: &Lab, args: &[&str]) -> std::process::Child {
        let fd = |f: &OwnedFd| std::process::Stdio::from(f.try_clone().unwrap());
        lab.cmd(args)
            .stdin(fd(&self.slave))
            .stdout(fd(&self.slave))
            .stderr(fd(&self.slave))
            .spawn()
            .unwrap()
    }

    /// As [`Terminal::spawn`], with the slave as the child's controlling
    /// terminal in a session of its own, as a shell at a real terminal runs
    /// a command: the kernel then signals it (SIGWINCH) when the window
    /// changes size.
    pub fn spawn_controlling(&self, lab: &Lab, args: &[&str]) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let fd = |f: &OwnedFd| std::process::Stdio::from(f.try_clone().unwrap());
        let mut cmd = lab.cmd(args);
        cmd.stdin(fd(&self.slave))
            .stdout(fd(&self.slave))
            .stderr(fd(&self.slave));
        // SAFETY: between fork and exec the child only makes async-signal-safe
        // calls (setsid, ioctl) on its own stdin.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// Gives the window a new size, as a person resizing it does.
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives
        // for the call.
        let r = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&self.master),
                libc::TIOCSWINSZ,
                &ws,
            )
        };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
    }

    /// Reads until `text` shows up (after what earlier calls consumed), 20 s
    /// at most; returns what came before it.
    pub fn expect(&mut self, text: &str) -> String {
        self.expect_within(text, Duration::from_secs(20))
    }

    pub fn expect_within(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(pos) = find(&self.seen, text.as_bytes()) {
                let before = String::from_utf8_lossy(&self.seen[..pos]).into_owned();
                self.seen.drain(..pos + text.len());
                return before;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; got {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            let mut pfd = [nix::poll::PollFd::new(
                self.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut pfd, 200u16).unwrap_or(0) > 0 {
                match self.master.read(&mut buf) {
                    Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new()
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
