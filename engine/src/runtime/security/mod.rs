//! Hardening a container's init applies just before `execve`, as Docker does by
//! default: capability sets, a seccomp filter, masked and read-only paths under
//! `/proc` and `/sys`, and `no_new_privs` when asked.
//!
//! The order matters; the container init is expected to do this:
//!
//! ```text
//! let filter = seccomp::compile(..)         in the parent, before clone/fork: compile allocates
//! (inside the new namespaces, after pivot_root, still root with all capabilities)
//! paths::mask_path / paths::readonly_path   for every masked / read-only path (needs CAP_SYS_ADMIN)
//! capabilities::prepare_user_switch()       keep the permitted set across setuid
//! setgroups / setgid / setuid               the spec's user
//! capabilities::apply(&caps)                bounding set, then inheritable/permitted/effective, then ambient
//! set_no_new_privs()                        when process.noNewPrivileges (`--security-opt
//!                                           no-new-privileges`; off by default, as Docker)
//! seccomp::install(&filter)                 last: afterwards the process only needs execve
//! execve
//! ```
//!
//! Without `no_new_privs`, the kernel only takes a seccomp filter from a process
//! holding `CAP_SYS_ADMIN`: then `seccomp::install` must come *before*
//! `capabilities::apply` (runc does the same), and the filter must allow the
//! calls the init makes afterwards (Docker's profile does: `setuid`, `capset`,
//! `prctl`, `close`, `execve`).
//!
//! Everything that runs between `fork`/`clone` and `execve` (`set_no_new_privs`,
//! `prepare_user_switch`, `capabilities::apply`, `seccomp::install`, `mask_path`,
//! `readonly_path`) performs no heap allocation on its success path, so it is safe
//! to call in a child forked from a multi-threaded parent.

use std::io;
use std::path::PathBuf;

pub mod capabilities;
pub mod paths;
pub mod seccomp;

pub use capabilities::{default_capabilities, DOCKER_DEFAULT_CAPABILITIES};
pub use paths::{mask_path, readonly_path, DOCKER_MASKED_PATHS, DOCKER_READONLY_PATHS};
pub use seccomp::{docker_default_profile, CompiledFilter};

/// What can go wrong while hardening a container process.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A Docker JSON seccomp profile that cannot be used.
    #[error("seccomp profile: {0}")]
    SeccompProfile(String),

    /// A capability name that is not one of Linux's `CAP_*` names.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),

    /// `PR_CAPBSET_DROP` failed (usually: `CAP_SETPCAP` is not in the effective set).
    #[error("cannot drop {cap} from the bounding capability set")]
    DropBoundingCapability {
        cap: &'static str,
        #[source]
        source: io::Error,
    },

    /// `capget(2)` failed.
    #[error("cannot read the capability sets of the process")]
    ReadCapabilities(#[source] io::Error),

    /// `capset(2)` failed (e.g. a capability outside the permitted set was requested).
    #[error("cannot set the effective, permitted and inheritable capability sets")]
    SetCapabilities(#[source] io::Error),

    /// `PR_CAP_AMBIENT_CLEAR_ALL` failed.
    #[error("cannot clear the ambient capability set")]
    ClearAmbientCapabilities(#[source] io::Error),

    /// `PR_CAP_AMBIENT_RAISE` failed (the capability must be permitted and inheritable).
    #[error("cannot raise ambient capability {cap}")]
    RaiseAmbientCapability {
        cap: &'static str,
        #[source]
        source: io::Error,
    },

    /// `PR_SET_KEEPCAPS` failed.
    #[error("cannot set keep-capabilities (PR_SET_KEEPCAPS)")]
    KeepCapabilities(#[source] io::Error),

    /// `PR_SET_NO_NEW_PRIVS` failed.
    #[error("cannot set no_new_privs")]
    NoNewPrivs(#[source] io::Error),

    /// A seccomp action twinbox does not implement where it is used.
    #[error("unsupported seccomp action {0}")]
    UnsupportedSeccompAction(String),

    /// `SCMP_ACT_NOTIFY` rules without `listenerPath`: nobody would answer.
    #[error(
        "seccomp action SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath (the agent's socket)"
    )]
    SeccompNotifyWithoutListener,

    /// The seccomp agent at `listenerPath` did not take the listener descriptor.
    #[error("cannot hand the seccomp listener to {}", .path.display())]
    SeccompAgent {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `errnoRet` given for an action that cannot return an errno (the OCI spec requires failing).
    #[error("seccomp action {action} of syscall {syscall} cannot carry an errno return value")]
    SeccompErrnoNotAllowed { action: String, syscall: String },

    /// An errno that does not fit the 16-bit data field of a seccomp return value.
    #[error("seccomp errno return value {errno} of {syscall} is out of range (0-65535)")]
    SeccompErrnoOutOfRange { errno: u32, syscall: String },

    /// A rule compares an argument index beyond the six syscall arguments.
    #[error("seccomp rule for syscall {syscall} compares argument {index}, but syscalls have arguments 0-5")]
    SeccompArgumentIndex { syscall: String, index: usize },

    /// A seccomp filter flag twinbox does not implement.
    #[error("unsupported seccomp filter flag {0}")]
    UnsupportedSeccompFlag(String),

    /// The generated BPF program exceeds the kernel's limit.
    #[error("seccomp filter is too large: {0} instructions (the kernel accepts at most 4096)")]
    SeccompFilterTooLarge(usize),

    /// The kernel refused the filter because `no_new_privs` is not set and the
    /// process lacks `CAP_SYS_ADMIN`.
    #[error(
        "cannot install the seccomp filter: no_new_privs is not set (call set_no_new_privs first)"
    )]
    SeccompNeedsNoNewPrivs,

    /// `SECCOMP_FILTER_FLAG_TSYNC` could not synchronize another thread.
    #[error("cannot install the seccomp filter: thread {0} could not be synchronized")]
    SeccompThreadSync(i64),

    /// `seccomp(2)` failed.
    #[error("cannot install the seccomp filter")]
    SeccompInstall(#[source] io::Error),

    /// `/dev/null` (the source of file masks) is not the null character device.
    #[error("refusing to mask {}: /dev/null is not the null character device", .path.display())]
    DevNullNotCharDevice { path: PathBuf },

    /// Masking a path failed.
    #[error("cannot mask {}", .path.display())]
    MaskPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Making a path read-only failed.
    #[error("cannot make {} read-only", .path.display())]
    ReadonlyPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Sets `no_new_privs` on the calling thread (inherited by children and kept
/// across `execve`): set-user-ID bits and file capabilities no longer grant
/// privileges, and an unprivileged process may install a seccomp filter.
pub fn set_no_new_privs() -> Result<(), SecurityError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SecurityError::NoNewPrivs(io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `no_new_privs` is set on the calling thread.
pub fn no_new_privs() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 }
}

/// Test helpers shared by the modules: running a check in a forked child.
#[cfg(test)]
pub(crate) mod testutil {
    /// Whether the tests run as root (the kernel tests need it).
    pub fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Forks; the child runs `child` and `_exit`s with its return value; the
    /// parent returns that exit status (or 128 + signal).
    ///
    /// The test binary is multi-threaded: `child` must only make plain system
    /// calls (no allocation, no locks, no printing).
    pub fn in_child(child: impl FnOnce() -> i32) -> i32 {
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        // SAFETY: the child only runs `child`, which by contract makes only
        // async-signal-safe system calls, then `_exit`s.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = child();
                // SAFETY: terminating the child without running destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, code) => code,
                WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
                other => panic!("unexpected wait status {other:?}"),
            },
        }
    }

    /// In a child: a private mount namespace, so nothing mounted leaks to
    /// the host. Plain system calls only, as `in_child` asks.
    pub fn private_mount_namespace() -> bool {
        // SAFETY: unshare and mount on constant, NUL-terminated strings.
        unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
        }
    }

    /// The calling thread's errno.
    pub fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::in_child;
    use super::*;

    #[test]
    fn security_errors_are_lowercase_and_name_the_thing() {
        let e = SecurityError::UnknownCapability("CAP_FLY".into());
        assert_eq!(e.to_string(), "unknown capability \"CAP_FLY\"");
        let e = SecurityError::MaskPath {
            path: "/proc/kcore".into(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(e.to_string(), "cannot mask /proc/kcore");
        let e = SecurityError::DropBoundingCapability {
            cap: "CAP_SYS_ADMIN",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(e.to_string().contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn security_no_new_privs_in_child() {
        let code = in_child(|| {
            if no_new_privs() {
                return 2; // inherited from whoever started the tests; nothing to learn
            }
            if set_no_new_privs().is_err() {
                return 3;
            }
            if !no_new_privs() {
                return 4;
            }
            0
        });
        assert!(code == 0 || code == 2, "child exit code {code}");
    }
}
