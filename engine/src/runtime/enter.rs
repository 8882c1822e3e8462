//! Another process inside a running container (`exec`): it joins every
//! namespace and the cgroup of the container's init, then takes the same
//! confinement steps as the init ([`init::drop_privileges`]): user,
//! capabilities, no_new_privs, seccomp. Masked and read-only paths come with the
//! mount namespace it joins.
//!
//! The PID namespace is the one a process cannot enter itself: `setns` on it
//! only decides where the caller's *children* go. So the caller enters it and
//! forks; the child is born inside the container's PID namespace and stays the
//! caller's child (waitpid and signal forwarding work as usual).

use std::os::fd::OwnedFd;

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{chdir, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, LinuxPersonality, LinuxSeccomp, Process};

use super::failure::InitError;
use super::init;
use super::security::{self, seccomp::CompiledFilter};
use super::sync::{Channel, ChildReport};
use super::{exec, RuntimeError, Stdio};
use crate::cgroups::Cgroup;

/// What to start inside the container whose init is `target`.
pub struct Enter<'a> {
    /// The container's init, as the host sees it.
    pub target: Pid,
    /// Args, env, cwd, user, capabilities, no_new_privs and terminal.
    pub process: &'a Process,
    pub seccomp: Option<&'a LinuxSeccomp>,
    pub cgroup: Option<&'a Cgroup>,
    pub stdio: Stdio,
    /// Killed when the caller dies (an attached `exec`), or left running (`-d`).
    pub die_with_parent: bool,
    /// Descriptors after stderr passed on to the process (runc's --preserve-fds).
    pub preserve_fds: u32,
    /// The container's linux.personality, which its exec'd processes share.
    pub personality: Option<&'a LinuxPersonality>,
}

/// Namespaces in the order they are joined: the time namespace before the
/// user namespace (the host's user namespace owns it, so entering it needs
/// the host's CAP_SYS_ADMIN), then the user namespace (it owns the others,
/// and joining it gives the capabilities to enter them), the cgroup namespace
/// after the cgroup (so the cgroup is its root), the mount namespace last (it
/// replaces our root and working directory).
const JOIN_ORDER: [(&str, LinuxNamespaceType); 7] = [
    ("time", LinuxNamespaceType::Time),
    ("user", LinuxNamespaceType::User),
    ("cgroup", LinuxNamespaceType::Cgroup),
    ("ipc", LinuxNamespaceType::Ipc),
    ("uts", LinuxNamespaceType::Uts),
    ("net", LinuxNamespaceType::Network),
    ("mnt", LinuxNamespaceType::Mount),
];

fn io_err(what: &str, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        path: what.into(),
        source,
    }
}

/// The namespaces of `target` that differ from ours, opened now (before any
/// setns changes what /proc shows us).
fn open_namespaces(target: Pid) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>, RuntimeError> {
    let mut out = Vec::new();
    for (name, typ) in JOIN_ORDER {
        let theirs = format!("/proc/{target}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        if std::fs::read_link(&theirs).ok() == std::fs::read_link(&ours).ok() {
            continue;
        }
        let f = std::fs::File::open(&theirs).map_err(|e| io_err(&theirs, e))?;
        out.push((typ, f.into()));
    }
    Ok(out)
}

fn flag_of(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        _ => CloneFlags::empty(),
    }
}

/// Starts the process; returns its host pid once it has exec'd, or the error
/// (with Docker's exit code: 126 not runnable, 127 not found) that stopped it.
pub fn enter(e: &Enter) -> Result<Pid, RuntimeError> {
    let filter = match e.seccomp {
        Some(profile) => Some(security::seccomp::compile(profile)?),
        None => None,
    };
    let namespaces = open_namespaces(e.target)?;
    let pid_ns = format!("/proc/{}/ns/pid", e.target);
    if std::fs::read_link(&pid_ns).ok() != std::fs::read_link("/proc/self/ns/pid").ok() {
        let f = std::fs::File::open(&pid_ns).map_err(|err| io_err(&pid_ns, err))?;
        setns(f, CloneFlags::CLONE_NEWPID).map_err(RuntimeError::Clone)?;
    }
    let channel = Channel::new().map_err(|err| io_err("pipe", err))?;
    // SAFETY: the twinbox CLI is single-threaded when it execs into a container;
    // the child only makes system calls and execs or _exits.
    match unsafe { nix::unistd::fork() }.map_err(RuntimeError::Clone)? {
        ForkResult::Child => {
            let err = match join_and_exec(e, &namespaces, filter.as_ref()) {
                Ok(never) => match never {},
                Err(err) => err,
            };
            channel.report_failure(err.exit_code, &err.message);
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(err.exit_code) }
        }
        ForkResult::Parent { child } => {
            channel.close_child_end();
            match channel.wait_for_child() {
                ChildReport::Execed | ChildReport::Ready => Ok(child),
                ChildReport::Failed { exit_code, message } => {
                    let _ = waitpid(child, None);
                    Err(RuntimeError::Init { exit_code, message })
                }
            }
        }
    }
}

/// True when the user namespace owning namespace `fd` is the one we are in.
fn owned_by_our_userns(fd: &OwnedFd) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::MetadataExt;
    const NS_GET_USERNS: libc::c_ulong = 0xb701; // _IO(0xb7, 0x1)
                                                 // SAFETY: ioctl on a namespace fd we hold; returns a new fd or -1.
    let owner = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_USERNS) };
    if owner < 0 {
        return false;
    }
    // SAFETY: a new fd from the ioctl, owned by nobody else.
    let owner = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(owner) });
    match (owner.metadata(), std::fs::metadata("/proc/self/ns/user")) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

fn join_and_exec(
    e: &Enter,
    namespaces: &[(LinuxNamespaceType, OwnedFd)],
    filter: Option<&CompiledFilter>,
) -> Result<std::convert::Infallible, InitError> {
    if e.die_with_parent {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    if let Some(cg) = e.cgroup {
        // a forked child, one thread: the cheap way in
        cg.join_self()
            .map_err(|err| InitError::setup("join cgroup", err))?;
    }
    // a namespace our user namespace owns (a CNI network's, in a container
    // with a user namespace of its own) is entered while we still may
    let ours: Vec<bool> = namespaces
        .iter()
        .map(|(typ, fd)| *typ != LinuxNamespaceType::User && owned_by_our_userns(fd))
        .collect();
    for early in [true, false] {
        for ((typ, fd), _) in namespaces.iter().zip(&ours).filter(|(_, o)| **o == early) {
            setns(fd, flag_of(*typ))
                .map_err(|err| InitError::setup(&format!("setns {typ}"), err))?;
        }
    }
    init::set_stdio(e.stdio)?;
    if e.process.terminal().unwrap_or(false) {
        init::take_controlling_terminal()?;
    }
    let cwd = e.process.cwd();
    chdir(cwd).map_err(|err| InitError::setup(&format!("chdir to {}", cwd.display()), err))?;
    let argv = e.process.args().clone().unwrap_or_default();
    let env = e.process.env().clone().unwrap_or_default();
    let program = exec::resolve(&argv, &env)?;
    init::apply_process_limits(e.process)?;
    init::set_personality(e.personality)?;
    // No agent for an exec'd process: its listener is closed, so calls its
    // profile sends to a listener fail with ENOSYS instead of waiting forever.
    init::drop_privileges(e.process, filter, e.preserve_fds, &|_| true)?;
    Err(exec::execve(&program, &argv, &env))
}
