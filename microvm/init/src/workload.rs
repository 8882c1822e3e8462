//! Starting the workload the way a container runtime would, and waiting for it
//! as PID 1 must: reaping every child, not only our own.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use twinbox_init::{
    exit_code_from_wait_status, GuestConfig, EXIT_INIT_FAILED, EXIT_NOT_FOUND, EXIT_NOT_RUNNABLE,
    STOP_POLL_MS,
};

use crate::console::CONSOLE;
use crate::failure::{errno_text, Failure};
use crate::report;
use crate::sys;
use crate::users::User;

/// Docker's PATH when the environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Forks the workload; returns its pid. The boot timer and the start marker
/// fire right before the fork.
pub fn spawn(config: &GuestConfig, user: &User) -> Result<libc::pid_t, Failure> {
    if config.argv.is_empty() {
        return Err(Failure::msg(
            "start the workload",
            "the command line is empty",
        ));
    }
    let workdir = Path::new(if config.workdir.is_empty() {
        "/"
    } else {
        &config.workdir
    });
    // Like Docker, a WorkingDir the image lacks is created (owned by root).
    std::fs::create_dir_all(workdir).map_err(|e| {
        Failure::io(
            format!("create working directory {}", workdir.display()),
            &e,
        )
    })?;

    report::workload_started();
    // SAFETY: the init is single-threaded, so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(Failure::last_os("fork the workload")),
        0 => {
            let Err((code, failure)) = become_workload(config, workdir, user);
            sys::print_failure(&failure);
            // SAFETY: leaving the child without running PID 1's exit paths.
            unsafe { libc::_exit(i32::from(code)) }
        }
        pid => Ok(pid),
    }
}

type ChildError = (u8, Failure);

fn setup(what: &str) -> impl Fn(Failure) -> ChildError + '_ {
    move |f| {
        (
            EXIT_INIT_FAILED,
            Failure::msg(format!("{what}: {}", f.what), f.why),
        )
    }
}

/// In the child: its own session with the console as stdio (no controlling
/// terminal), the working directory, the user, then `execve` with exactly the given env.
fn become_workload(
    config: &GuestConfig,
    workdir: &Path,
    user: &User,
) -> Result<Infallible, ChildError> {
    default_signals();
    // SAFETY: the child is not a process group leader, so setsid succeeds.
    if unsafe { libc::setsid() } < 0 {
        return Err(setup("workload")(Failure::last_os("setsid")));
    }
    console_stdio().map_err(setup("workload"))?;
    std::env::set_current_dir(workdir).map_err(|e| {
        (
            EXIT_INIT_FAILED,
            Failure::io(format!("chdir to {}", workdir.display()), &e),
        )
    })?;
    switch_user(user).map_err(setup("workload"))?;

    let program = find_program(&config.argv[0], &config.env)?;
    let to_c = |items: &[String]| -> Result<Vec<CString>, ChildError> {
        items
            .iter()
            .map(|s| sys::cstring(s, "workload argument or variable"))
            .collect::<Result<_, _>>()
            .map_err(|f| (EXIT_INIT_FAILED, f))
    };
    let argv = to_c(&config.argv)?;
    let env = to_c(&config.env)?;
    let prog = sys::cpath(&program).map_err(|f| (EXIT_INIT_FAILED, f))?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated strings in NULL-terminated arrays, all alive here.
    unsafe { libc::execve(prog.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let code = match err.raw_os_error() {
        Some(libc::ENOENT) => EXIT_NOT_FOUND,
        _ => EXIT_NOT_RUNNABLE,
    };
    Err((
        code,
        Failure::msg(format!("exec {:?}", config.argv[0]), errno_text(&err)),
    ))
}

/// PID 1's signal mask and dispositions must not leak into the workload.
fn default_signals() {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the calls
    // only change this process's signal state.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMIN() {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The console becomes the workload's stdin, stdout and stderr, but not its
/// controlling terminal: when a session leader with a controlling serial tty
/// exits, Linux hangs the tty up and throws away output not yet sent (seen as
/// a lost last line with 2 vCPUs). Like `docker run` without `-t`, the
/// workload runs without a terminal of its own.
fn console_stdio() -> Result<(), Failure> {
    let c = sys::cstring(CONSOLE, CONSOLE)?;
    // SAFETY: open with a valid path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(Failure::last_os(format!("open {CONSOLE}")));
    }
    for target in 0..=2 {
        // SAFETY: dup2 of an open fd onto a standard descriptor.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(Failure::last_os(format!("dup2 {CONSOLE}")));
        }
    }
    if fd > 2 {
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn switch_user(user: &User) -> Result<(), Failure> {
    // SAFETY: plain credential syscalls; the order (groups, gid, uid) keeps
    // the right to change each until the uid is dropped.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(Failure::last_os("setgroups"));
        }
        if libc::setgid(user.gid) != 0 {
            return Err(Failure::last_os(format!("setgid {}", user.gid)));
        }
        if libc::setuid(user.uid) != 0 {
            return Err(Failure::last_os(format!("setuid {}", user.uid)));
        }
    }
    Ok(())
}

/// `argv[0]` looked up like execvp, in the workload's own PATH.
fn find_program(cmd: &str, env: &[String]) -> Result<PathBuf, ChildError> {
    let not_found = |why: &str| {
        (
            EXIT_NOT_FOUND,
            Failure::msg(format!("exec {cmd:?}"), why.to_string()),
        )
    };
    if cmd.contains('/') {
        return match std::fs::symlink_metadata(cmd) {
            Ok(_) => Ok(PathBuf::from(cmd)),
            Err(_) => Err(not_found("no such file or directory")),
        };
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| not_found("executable file not found in $PATH"))
}

/// Waits for every child (PID 1 inherits orphans) until `workload` is gone;
/// returns its exit code (128 + signal when a signal ended it). Meanwhile it
/// asks the host every [`STOP_POLL_MS`] whether to stop the workload, and then
/// sends it SIGTERM once, like `docker stop`.
pub fn reap_until_exit(workload: libc::pid_t) -> Result<u8, Failure> {
    // SIGCHLD stays pending while blocked, so an exit between the non-blocking
    // wait and the timed wait below is never missed.
    // SAFETY: sigset_t is plain data set up by sigemptyset/sigaddset; the call
    // only changes this process's signal mask.
    let chld = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let poll = libc::timespec {
        tv_sec: 0,
        tv_nsec: STOP_POLL_MS * 1_000_000,
    };
    let mut stop_sent = false;
    loop {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status of any reaped child into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == workload {
                return Ok(exit_code_from_wait_status(status));
            }
            if pid > 0 {
                continue;
            }
            if pid < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(Failure::io("wait for the workload", &err));
                }
            }
            break;
        }
        if !stop_sent && report::stop_requested() {
            // SAFETY: kill(2) on the workload's pid, which is not reaped yet.
            unsafe { libc::kill(workload, libc::SIGTERM) };
            stop_sent = true;
        }
        // SAFETY: waits on a valid signal set with a valid timeout; no siginfo wanted.
        unsafe { libc::sigtimedwait(&chld, std::ptr::null_mut(), &poll) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_in_the_workload_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let sh = find_program("sh", &env).unwrap();
        assert!(sh.ends_with("sh"), "{}", sh.display());
        let (code, f) = find_program("no-such-program-here", &env).unwrap_err();
        assert_eq!(code, EXIT_NOT_FOUND);
        assert_eq!(
            f.to_string(),
            "exec \"no-such-program-here\": executable file not found in $PATH"
        );
        let (code, _) = find_program("/no/such/file", &env).unwrap_err();
        assert_eq!(code, EXIT_NOT_FOUND);
        assert_eq!(
            find_program("/bin/sh", &[]).unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    #[test]
    fn an_empty_path_finds_nothing_in_the_cwd() {
        let env = vec!["PATH=".to_string()];
        assert!(find_program("definitely-not-here", &env).is_err());
    }
}
