//! `run --init`: the same static binary as a container's PID 1, the way Docker
//! uses tini (`/sbin/docker-init -- CMD ARG...`).
//!
//! A shell or server run as PID 1 seldom reaps orphans, and the kernel drops
//! signals PID 1 has no handler for, so `docker stop` waits out its timeout.
//! The reaper forks the command, forwards every signal it gets to it, reaps
//! every child that ends (orphans re-parent to PID 1), and exits with the
//! command's code (128 + N when signal N ended it) once the command is gone.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use twinbox_init::{exit_code_from_wait_status, EXIT_NOT_FOUND, EXIT_NOT_RUNNABLE};

use crate::failure::{errno_text, Failure};

/// The name the binary has inside a container (Docker's path, so scripts that
/// look for it find it).
pub const CONTAINER_NAME: &str = "docker-init";

/// Signals the kernel raises for a fault of the process itself: never waited
/// for, never forwarded. SIGTTIN/SIGTTOU stay with the terminal rules.
const SYNCHRONOUS: &[libc::c_int] = &[
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGABRT,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

/// Whether argv[0] asks for the reaper (the binary mounted as docker-init).
pub fn wanted(argv0: &OsStr) -> bool {
    argv0.as_bytes().rsplit(|b| *b == b'/').next() == Some(CONTAINER_NAME.as_bytes())
}

/// Runs `args` (after an optional `--`) under the reaper; returns the exit code.
pub fn run(args: &[OsString]) -> u8 {
    let args = match args.first() {
        Some(a) if a == "--" => &args[1..],
        _ => args,
    };
    if args.is_empty() {
        eprintln!("{CONTAINER_NAME}: no command given: use {CONTAINER_NAME} -- CMD [ARG...]");
        return 1;
    }
    let argv = match args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(v) => v,
        Err(_) => {
            eprintln!("{CONTAINER_NAME}: an argument holds a NUL byte");
            return 1;
        }
    };
    let (waited, old_mask) = block_signals();
    // SAFETY: the reaper is single-threaded, so the child may run any code.
    let child = unsafe { libc::fork() };
    match child {
        -1 => {
            let f = Failure::last_os("fork the command");
            eprintln!("{CONTAINER_NAME}: {f}");
            1
        }
        0 => {
            let (code, f) = become_command(&argv, &old_mask);
            eprintln!("{CONTAINER_NAME}: {f}");
            // SAFETY: leaving the forked child without the parent's exit paths.
            unsafe { libc::_exit(i32::from(code)) }
        }
        pid => reap_until_exit(pid, &waited),
    }
}

/// Blocks every asynchronous signal (so they queue for `sigtimedwait`, which
/// works for PID 1 too: blocked signals are never discarded) and ignores the
/// terminal's background-job signals. Returns the waited set and the old mask.
fn block_signals() -> (libc::sigset_t, libc::sigset_t) {
    // SAFETY: sigset_t is plain data set up by sigfillset/sigdelset; the calls
    // only change this process's signal mask and dispositions.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in SYNCHRONOUS {
            libc::sigdelset(&mut set, *sig);
        }
        libc::sigprocmask(libc::SIG_SETMASK, &set, &mut old);
        libc::signal(libc::SIGTTIN, libc::SIG_IGN);
        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        (set, old)
    }
}

/// In the child: its own process group, in the terminal's foreground when
/// stdin is one (so ctrl-c reaches it), the caller's signal state, then execvp.
fn become_command(argv: &[CString], old_mask: &libc::sigset_t) -> (u8, Failure) {
    // SAFETY: process-group and terminal calls on our own pid and stdin; errors
    // (stdin not a terminal) leave the command in the reaper's group, harmless.
    unsafe {
        libc::setpgid(0, 0);
        if libc::isatty(0) == 1 {
            libc::tcsetpgrp(0, libc::getpgrp());
        }
        libc::signal(libc::SIGTTIN, libc::SIG_DFL);
        libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, old_mask, std::ptr::null_mut());
    }
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated strings in a NULL-terminated array, alive here.
    unsafe { libc::execvp(ptrs[0], ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = match err.raw_os_error() {
        Some(libc::ENOENT) => EXIT_NOT_FOUND,
        _ => EXIT_NOT_RUNNABLE,
    };
    let name = argv[0].to_string_lossy();
    (
        code,
        Failure::msg(format!("exec {name:?}"), errno_text(&err)),
    )
}

/// Forwards what arrives to `child`, reaps whatever ends, and returns the
/// child's exit code once it has ended.
fn reap_until_exit(child: libc::pid_t, waited: &libc::sigset_t) -> u8 {
    let tick = libc::timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    loop {
        // SAFETY: a zeroed siginfo_t is valid for the kernel to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid signal set, siginfo and timeout pointers.
        let sig = unsafe { libc::sigtimedwait(waited, &mut info, &tick) };
        if sig > 0 && sig != libc::SIGCHLD {
            // SAFETY: kill(2) on the command's pid, not yet reaped by us.
            unsafe { libc::kill(child, sig) };
        }
        // reap on every wake-up: SIGCHLDs from several exits merge into one
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status of a reaped child into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == child {
                return exit_code_from_wait_status(status);
            }
            if pid <= 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_selects_the_reaper() {
        let w = |s: &str| wanted(OsStr::new(s));
        assert!(w("/sbin/docker-init"));
        assert!(w("docker-init"));
        assert!(!w("/twinbox/init"));
        assert!(!w("/sbin/docker-init-x"));
    }
}
