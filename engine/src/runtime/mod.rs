//! The OCI runtime: a runtime spec (config.json) becomes an isolated process.
//!
//! [`spawn`] is the whole story in one call. The parent side (this file) prepares
//! what must exist before the clone: the cgroup and the compiled seccomp filter.
//! The child side, in [`init`], runs the isolation steps in the order a student
//! would read them: cgroup, mounts, pivot_root, hostname, network, user,
//! capabilities, no_new_privs, seccomp, exec.

pub mod console;
pub mod devices;
pub mod enter;
pub mod exec;
pub mod failure;
pub mod features;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod inroot;
pub mod loopback;
pub mod mounts;
pub mod namespaces;
pub mod oci;
pub mod security;
pub mod sync;
pub mod userns;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::cgroups::{Cgroup, CgroupError, Resources};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime spec: {0}")]
    Spec(String),
    /// A container in the wrong state for the verb, or no such container.
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Hook(#[from] hooks::HookError),
    #[error("{0}")]
    Cgroup(#[from] CgroupError),
    #[error("{0}")]
    Security(#[from] security::SecurityError),
    #[error("cannot create the container process: {0}")]
    Clone(nix::Error),
    /// The container's init failed before exec; `exit_code` follows Docker:
    /// 125 for a setup failure, 126 for a command that cannot run, 127 for not found.
    #[error("{message}")]
    Init { exit_code: i32, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// The exit code Docker would give for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            RuntimeError::Init { exit_code, .. } => *exit_code,
            _ => 125,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// File descriptors in the caller that become the container's 0, 1 and 2.
#[derive(Debug, Clone, Copy)]
pub struct Stdio {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

/// Where the root filesystem comes from.
#[derive(Debug, Clone)]
pub enum RootfsSource {
    /// `spec.root.path` is already a complete tree (an OCI bundle's rootfs).
    Prepared,
    /// Mount overlayfs on `spec.root.path` inside the container's own mount
    /// namespace, so the mount disappears with the container.
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
    },
}

/// Everything [`spawn`] needs; built with chained setters.
#[derive(Debug, Clone)]
pub struct Launch {
    pub spec: Spec,
    pub rootfs: RootfsSource,
    pub stdio: Stdio,
    pub cgroup_fs_root: PathBuf,
    /// OCI `create`: stop before exec until the fifo is opened by `start`.
    pub exec_fifo: Option<PathBuf>,
    /// Kill the container when the spawning process dies (the supervisor's case).
    pub die_with_parent: bool,
    /// Run the spec's OCI hooks (the OCI runtime CLI's case).
    pub run_hooks: bool,
    /// Enter the root with MS_MOVE + chroot instead of pivot_root (runc's --no-pivot).
    pub no_pivot: bool,
    /// Descriptors after stderr passed on to the workload (runc's --preserve-fds).
    pub preserve_fds: u32,
    /// Give the workload a terminal from the container's own devpts instead
    /// of `stdio`; its master comes back in [`Spawned::console`].
    pub console: bool,
    /// With a user namespace: the overlay's lower dirs are already owned by
    /// its ids (copies chowned into its range), so they are not idmapped.
    pub layers_shifted: bool,
    /// Mount the overlay `volatile`: its unmount skips syncing the upper's
    /// whole file system (a writeback of everything dirty on it and a disk
    /// flush, paid between the workload's exit and its parent's wait). Only
    /// for a writable layer thrown away after one run (`--rm`): after a
    /// crash its contents may be incomplete, and the kernel refuses to mount
    /// that work dir again until [`clear_volatile_mark`] has run.
    pub volatile_upper: bool,
}

impl Launch {
    pub fn new(spec: Spec, stdio: Stdio) -> Self {
        Launch {
            spec,
            rootfs: RootfsSource::Prepared,
            stdio,
            cgroup_fs_root: PathBuf::from(crate::cgroups::DEFAULT_FS_ROOT),
            exec_fifo: None,
            die_with_parent: false,
            run_hooks: false,
            no_pivot: false,
            preserve_fds: 0,
            console: false,
            layers_shifted: false,
            volatile_upper: false,
        }
    }
    pub fn volatile_upper(mut self, yes: bool) -> Self {
        self.volatile_upper = yes;
        self
    }
    pub fn layers_shifted(mut self, yes: bool) -> Self {
        self.layers_shifted = yes;
        self
    }
    pub fn console(mut self, yes: bool) -> Self {
        self.console = yes;
        self
    }
    pub fn run_hooks(mut self, yes: bool) -> Self {
        self.run_hooks = yes;
        self
    }
    pub fn rootfs(mut self, source: RootfsSource) -> Self {
        self.rootfs = source;
        self
    }
    pub fn exec_fifo(mut self, fifo: impl Into<PathBuf>) -> Self {
        self.exec_fifo = Some(fifo.into());
        self
    }
    pub fn die_with_parent(mut self, yes: bool) -> Self {
        self.die_with_parent = yes;
        self
    }
    pub fn cgroup_fs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.cgroup_fs_root = root.into();
        self
    }
}

/// A started container init.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub cgroup: Option<Cgroup>,
    /// The master of the workload's terminal (with [`Launch::console`]).
    pub console: Option<OwnedFd>,
}

/// The cgroup limits a spec asks for, in the cgroups module's terms.
pub fn resources_of(spec: &Spec) -> Resources {
    match spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        Some(res) => resources_from(res),
        None => Resources::default(),
    }
}

/// `linux.resources` (or runc's `update --resources` document) in the cgroups
/// module's terms.
pub fn resources_from(res: &oci_spec::runtime::LinuxResources) -> Resources {
    let mut r = Resources::default();
    if let Some(m) = res.memory() {
        r.memory_bytes = m.limit().filter(|v| *v > 0).map(|v| v as u64);
        r.memory_swap_bytes = m.swap().filter(|v| *v > 0).map(|v| v as u64);
    }
    if let Some(c) = res.cpu() {
        r.cpu_quota_us = c.quota().filter(|q| *q > 0);
        r.cpu_period_us = c.period();
        r.cpu_shares = c.shares();
    }
    if let Some(p) = res.pids() {
        r.pids_max = Some(p.limit()).filter(|l| *l > 0);
    }
    if let Some(u) = res.unified() {
        r.unified = u.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        r.unified.sort();
    }
    // "a *:* rwm": the OCI rule's fields, with * for any
    for d in res.devices().iter().flatten() {
        let typ = d
            .typ()
            .map_or_else(|| "a".to_string(), |t| t.as_str().to_string());
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        let access = d.access().clone().unwrap_or_else(|| "rwm".into());
        r.device_rules.push((
            d.allow(),
            format!("{typ} {}:{} {access}", num(d.major()), num(d.minor())),
        ));
    }
    r
}

/// Where a `volatile` overlay marks its work dir (`work/work/incompat/volatile`):
/// the kernel refuses to mount that work dir again while the mark is there.
/// Removed before each volatile mount, so a `--rm` container whose first start
/// failed after its mount can still be started.
pub fn clear_volatile_mark(work: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(work.join("work").join("incompat")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Waits for a process this one started (a container's init, an exec'd
/// process, a build step); its exit code, or 128+N when signal N killed it, as
/// a shell reports it.
pub fn wait_exit(pid: Pid) -> i32 {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
            Err(_) => return 255,
        }
    }
}

/// Creates the container's init process. Returns once it has exec'd the
/// workload (or, with an exec fifo, once it waits for `start`).
pub fn spawn(launch: &Launch) -> Result<Spawned> {
    spawn_with(launch, &mut |_, _| {
        Err("this launch has no hooks and no seccomp agent".into())
    })
}

/// [`spawn`], calling `answer` with the init's pid for what the init asks of
/// the runtime: its runtime-side hooks (prestart, createRuntime; only with
/// `run_hooks`), answered with the state JSON for the container-side hooks;
/// or its seccomp listener for the agent. An `Err` fails the create.
pub fn spawn_with(
    launch: &Launch,
    answer: &mut dyn FnMut(Pid, sync::Request) -> std::result::Result<String, String>,
) -> Result<Spawned> {
    let spec = &launch.spec;
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| RuntimeError::Spec("root.path is missing".into()))?;
    if !root.is_absolute() {
        return Err(RuntimeError::Spec(format!(
            "root.path {} must be absolute here",
            root.display()
        )));
    }
    if spec.process().is_none() {
        return Err(RuntimeError::Spec("process is missing".into()));
    }
    let plan = namespaces::NamespacePlan::from_spec(spec)?;
    userns::validate(spec, &plan)?;

    // before the cgroup is made: a refused profile must leave none behind
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(security::seccomp::compile(profile)?),
        None => None,
    };
    let cgroup = match spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) {
        Some(path) => {
            let rel = path.strip_prefix("/").unwrap_or(&path).to_path_buf();
            let cg = Cgroup::new(&launch.cgroup_fs_root, &rel)?;
            cg.create(&resources_of(spec))?;
            Some(cg)
        }
        None => None,
    };

    // a user namespace's root: its layers idmapped (or already chowned into
    // its range), assembled here with the host's credentials
    let root_mount = match &launch.rootfs {
        RootfsSource::Overlay { lower, upper, work }
            if plan.has_new(oci_spec::runtime::LinuxNamespaceType::User) =>
        {
            let volatile = launch.volatile_upper;
            let made = if launch.layers_shifted {
                idmap::plain_overlay(lower, upper, work, volatile)
            } else {
                idmap::userns_of(spec)
                    .and_then(|userns| idmap::overlay(lower, upper, work, &userns, volatile))
            };
            match made {
                Ok(fd) => Some(fd),
                Err(e) => {
                    if let Some(cg) = &cgroup {
                        let _ = cg.destroy();
                    }
                    return Err(RuntimeError::Init {
                        exit_code: 125,
                        message: if launch.layers_shifted {
                            format!("container root over chowned layers: {e}")
                        } else {
                            format!("container root over idmapped layers: {e}")
                        },
                    });
                }
            }
        }
        _ => None,
    };
    let result = clone_init(
        launch,
        &plan,
        cgroup.as_ref(),
        filter.as_ref(),
        &root,
        root_mount.as_ref().map(|fd| fd.as_raw_fd()),
        answer,
    );
    drop(root_mount);
    match result {
        Ok((pid, console)) => Ok(Spawned {
            pid,
            cgroup,
            console,
        }),
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.destroy();
            }
            Err(e)
        }
    }
}

fn clone_init(
    launch: &Launch,
    plan: &namespaces::NamespacePlan,
    cgroup: Option<&Cgroup>,
    filter: Option<&security::seccomp::CompiledFilter>,
    root: &Path,
    root_mount: Option<RawFd>,
    answer: &mut dyn FnMut(Pid, sync::Request) -> std::result::Result<String, String>,
) -> Result<(Pid, Option<OwnedFd>)> {
    let channel = sync::Channel::new().map_err(|e| RuntimeError::Io {
        path: "pipe".into(),
        source: e,
    })?;
    let console = match launch.console {
        true => Some(console::channel().map_err(|e| RuntimeError::Io {
            path: "console socket".into(),
            source: e,
        })?),
        false => None,
    };
    let ctx = init::InitContext {
        launch,
        plan,
        cgroup,
        filter,
        root,
        channel: &channel,
        console: console.as_ref().map(|(_, init_end)| init_end.as_raw_fd()),
        root_mount,
        cgroup_files: &[],
    };
    let flags = plan.clone_flags();
    // cgroup v2: born in the cgroup (clone3 with CLONE_INTO_CGROUP, 5.7+)
    let into = cgroup.and_then(Cgroup::clone_into_fd);
    let born_in = match &into {
        Some(fd) => {
            let entered = ParentJoins::enter(plan)?;
            let born = clone_into_cgroup(flags, fd, &ctx);
            entered.leave()?;
            born
        }
        // nothing to be born in: the joins are entered once, below
        None => None,
    };
    let pid = match born_in {
        Some(pid) => pid?,
        None => {
            // v1, or a kernel without clone3's cgroup: the init joins
            // through files opened here, as root
            let cgroup_files = match cgroup {
                Some(cg) => cg.join_files()?,
                None => Vec::new(),
            };
            let ctx = init::InitContext {
                cgroup_files: &cgroup_files,
                ..ctx
            };
            let mut stack = ChildStack::new(8 << 20).map_err(|e| RuntimeError::Io {
                path: "clone stack".into(),
                source: e,
            })?;
            let entered = ParentJoins::enter(plan)?;
            // SAFETY: without CLONE_VM the child runs `init::run` on its own copy of
            // memory; the callback never returns into the parent's frames (it execs or
            // exits with _exit).
            let pid = unsafe {
                nix::sched::clone(
                    Box::new(|| init::run(&ctx)),
                    stack.as_mut_slice(),
                    flags,
                    Some(libc::SIGCHLD),
                )
            }
            .map_err(RuntimeError::Clone);
            entered.leave()?;
            pid?
        }
    };
    channel.close_child_end();
    let console = console.map(|(ours, init_end)| {
        drop(init_end);
        ours
    });
    let mut handle = |req| match req {
        // the child's new user namespace: map it (the child joined its
        // cgroup itself, through files opened here)
        sync::Request::IdMaps => {
            userns::write_maps(pid.as_raw(), &launch.spec)?;
            Ok(String::new())
        }
        other => answer(pid, other),
    };
    match channel.wait_for_child_with(pid.as_raw(), &mut handle) {
        sync::ChildReport::Execed | sync::ChildReport::Ready => {
            // the init sent the master before it reported (or execed)
            let master = match &console {
                Some(sock) => match console::recv_fd(sock.as_raw_fd(), false) {
                    Ok(fd) => Some(fd),
                    Err(e) => {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        return Err(RuntimeError::Io {
                            path: "console socket".into(),
                            source: e,
                        });
                    }
                },
                None => None,
            };
            Ok((pid, master))
        }
        sync::ChildReport::Failed { exit_code, message } => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            Err(RuntimeError::Init { exit_code, message })
        }
    }
}

/// clone3(2)'s arguments (linux/sched.h, version 2 with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Creates the init inside the cgroup `dir` refers to. Like fork(2): no new
/// stack, the child goes on with a copy of this one and never returns from
/// here (it execs or exits). `None` when this kernel has no clone3 or no
/// CLONE_INTO_CGROUP (the caller then clones the usual way).
fn clone_into_cgroup(
    flags: CloneFlags,
    dir: &OwnedFd,
    ctx: &init::InitContext,
) -> Option<Result<Pid>> {
    let args = CloneArgs {
        flags: flags.bits() as u32 as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with a valid, fully initialised argument struct of the
    // size given; without CLONE_VM or a stack the child runs on a private
    // copy of this address space, as after fork(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        0 => {
            let code = init::run(ctx);
            // SAFETY: the child leaves without unwinding into the parent's frames.
            unsafe { libc::_exit(code as i32) }
        }
        pid if pid > 0 => Some(Ok(Pid::from_raw(pid as i32))),
        _ => match nix::errno::Errno::last() {
            // no clone3 (before 5.3), a struct too new for it (E2BIG, before
            // 5.7), or flags it does not know
            nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG | nix::errno::Errno::EINVAL => {
                None
            }
            e => Some(Err(RuntimeError::Clone(e))),
        },
    }
}

/// The namespaces [`namespaces::NamespacePlan::joined_by_parent`] names,
/// entered by this thread for the clone and left right after it.
struct ParentJoins(Vec<(CloneFlags, OwnedFd)>);

impl ParentJoins {
    fn enter(plan: &namespaces::NamespacePlan) -> Result<Self> {
        let mut back = ParentJoins(Vec::new());
        for (typ, path) in plan.join.iter().filter(|(t, _)| plan.joined_by_parent(*t)) {
            let (flag, name) = match typ {
                oci_spec::runtime::LinuxNamespaceType::Network => (CloneFlags::CLONE_NEWNET, "net"),
                oci_spec::runtime::LinuxNamespaceType::Ipc => (CloneFlags::CLONE_NEWIPC, "ipc"),
                _ => (CloneFlags::CLONE_NEWUTS, "uts"),
            };
            let io = |p: &Path, e: std::io::Error| RuntimeError::Io {
                path: p.to_path_buf(),
                source: e,
            };
            let ours = PathBuf::from(format!("/proc/thread-self/ns/{name}"));
            let entered = std::fs::File::open(&ours)
                .map_err(|e| io(&ours, e))
                .and_then(|current| {
                    let target = std::fs::File::open(path).map_err(|e| io(path, e))?;
                    nix::sched::setns(&target, flag).map_err(|e| io(path, e.into()))?;
                    Ok(current)
                });
            match entered {
                Ok(current) => back.0.push((flag, OwnedFd::from(current))),
                Err(e) => {
                    back.leave()?;
                    return Err(e);
                }
            }
        }
        if plan.new_time {
            if let Err(e) = back.new_time_for_children(plan) {
                back.leave()?;
                return Err(e);
            }
        }
        Ok(back)
    }

    /// A new time namespace for the children we clone next, with the spec's
    /// offsets: they can only be written before a process enters it, and
    /// clone(2) has no flag for it.
    fn new_time_for_children(&mut self, plan: &namespaces::NamespacePlan) -> Result<()> {
        let io = |p: &str, e: std::io::Error| RuntimeError::Io {
            path: p.into(),
            source: e,
        };
        let ours = "/proc/thread-self/ns/time_for_children";
        let current = std::fs::File::open(ours).map_err(|e| io(ours, e))?;
        // SAFETY: unshare with a flag; it only changes our children's namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWTIME) } != 0 {
            return Err(io(
                "unshare time namespace",
                std::io::Error::last_os_error(),
            ));
        }
        // from here on `leave` puts our own namespace back for later children
        self.0.push((TIME_NS, OwnedFd::from(current)));
        if !plan.time_offsets.is_empty() {
            let lines: String = plan
                .time_offsets
                .iter()
                .map(|(clock, secs, nanos)| format!("{clock} {secs} {nanos}\n"))
                .collect();
            let path = "/proc/self/timens_offsets";
            std::fs::write(path, lines).map_err(|e| io(path, e))?;
        }
        Ok(())
    }

    fn leave(self) -> Result<()> {
        for (flag, fd) in self.0.into_iter().rev() {
            if flag == TIME_NS {
                // setns to a time namespace needs a single-threaded caller;
                // failing that, later children (hooks) share the container's
                // clocks, which is no reason to fail the container
                if let Err(e) = nix::sched::setns(&fd, flag) {
                    tracing::warn!("back to our time namespace: {e}");
                }
                continue;
            }
            nix::sched::setns(&fd, flag).map_err(|e| RuntimeError::Io {
                path: "/proc/thread-self/ns".into(),
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

const TIME_NS: CloneFlags = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);

/// The child's stack. The child gets a copy of this address space (no
/// CLONE_VM), so any writable memory will do; it is mapped directly rather than
/// taken from the heap because freeing an 8 MiB heap block raises glibc's trim
/// threshold, and a long-lived supervisor would then keep its heap resident.
struct ChildStack {
    ptr: *mut u8,
    len: usize,
}

impl ChildStack {
    fn new(len: usize) -> std::io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping; pages are only allocated when touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ChildStack {
            ptr: ptr.cast(),
            len,
        })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is our mapping, alive until drop, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in new().
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On cgroup v2 the init is born in its cgroup (clone3 with
    /// CLONE_INTO_CGROUP). Run where a cgroup2 hierarchy is mounted: the
    /// root of a v2 host, or the controller-less `unified` one of a v1
    /// hybrid (this project's CI machines); as root.
    #[test]
    fn the_init_starts_in_its_v2_cgroup() {
        let fs_root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(Path::new)
            .find(|r| r.join("cgroup.controllers").is_file());
        let Some(fs_root) = fs_root else {
            eprintln!("skipped: no cgroup2 hierarchy mounted");
            return;
        };
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root to make a cgroup");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("cgroup");
        let rel = format!("twinbox-unit-{}/c", std::process::id());
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "/"},
            "process": {
                "cwd": "/",
                "user": {"uid": 0, "gid": 0},
                "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                "args": ["/bin/sh", "-c", format!("cat /proc/self/cgroup > {}", out.display())],
            },
            "linux": {"namespaces": [{"type": "pid"}], "cgroupsPath": rel},
        }))
        .unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let fd = devnull.as_raw_fd();
        let launch = Launch::new(
            spec,
            Stdio {
                stdin: fd,
                stdout: fd,
                stderr: fd,
            },
        )
        .cgroup_fs_root(fs_root);
        let spawned = spawn(&launch).unwrap();
        let code = wait_exit(spawned.pid);
        let cg = spawned.cgroup.unwrap();
        let _ = cg.destroy();
        let _ = std::fs::remove_dir(fs_root.join(format!("twinbox-unit-{}", std::process::id())));
        assert_eq!(code, 0);
        let seen = std::fs::read_to_string(&out).unwrap();
        assert!(
            seen.lines().any(|l| l == format!("0::/{rel}")),
            "not in {rel}: {seen}"
        );
    }
}
