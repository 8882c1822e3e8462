//! Finding the workload's program in the container's PATH, and the exit codes
//! Docker uses when it cannot: 127 not found, 126 not runnable.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::failure::InitError;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn not_found(cmd: &str, why: &str) -> InitError {
    InitError {
        exit_code: 127,
        message: format!("exec: {cmd:?}: {why}"),
    }
}

/// The path to execve for `argv[0]`, looked up like execvp in the env's PATH.
pub fn resolve(argv: &[String], env: &[String]) -> Result<PathBuf, InitError> {
    let cmd = argv.first().ok_or_else(|| InitError {
        exit_code: 125,
        message: "no command given and the image has no Entrypoint or Cmd: add a command after the image name".into(),
    })?;
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        return match std::fs::metadata(&p) {
            Ok(_) => Ok(p),
            Err(_) => Err(not_found(cmd, "no such file or directory")),
        };
    }
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        if let Ok(md) = std::fs::metadata(&candidate) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(not_found(cmd, "executable file not found in $PATH"))
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, InitError> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| InitError::setup("exec", "an argument or variable holds a NUL byte"))
}

/// Every signal back to its default action and none blocked. execve keeps
/// ignored signals ignored, and with no daemon in between the workload would
/// inherit whatever the user's twinbox inherited: a shell's `cmd &` ignores
/// SIGINT, and then ctrl-c could not stop anything in the container.
fn default_signals() {
    // the kernel's struct sigaction (x86_64, aarch64): the C library's
    // wrapper refuses the signals it keeps for itself (32, 33), the kernel does not
    #[repr(C)]
    struct KernelSigaction {
        handler: libc::sighandler_t,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads one valid struct of the kernel's layout
        // (8-byte mask) and installs no handler.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    // SAFETY: an empty set, initialised by sigemptyset before it is read.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Replaces the process; returns only the error that stopped it.
pub fn execve(program: &Path, argv: &[String], env: &[String]) -> InitError {
    let (Ok(prog), Ok(args), Ok(envs)) = (
        CString::new(program.as_os_str().as_encoded_bytes()),
        cstrings(argv),
        cstrings(env),
    ) else {
        return InitError::setup("exec", "an argument or variable holds a NUL byte");
    };
    default_signals();
    let err = match nix::unistd::execve(&prog, &args, &envs) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let cmd = argv.first().map(String::as_str).unwrap_or("");
    match err {
        nix::errno::Errno::ENOENT => not_found(cmd, "no such file or directory"),
        nix::errno::Errno::EACCES | nix::errno::Errno::EPERM => InitError {
            exit_code: 126,
            message: format!("exec: {cmd:?}: permission denied"),
        },
        nix::errno::Errno::ENOEXEC => InitError {
            exit_code: 126,
            message: format!("exec: {cmd:?}: exec format error"),
        },
        e => InitError {
            exit_code: 126,
            message: format!("exec: {cmd:?}: {e}"),
        },
    }
}
