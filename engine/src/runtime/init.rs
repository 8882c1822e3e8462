//! The container's init, from clone(2) to execve(2). Each step is one function
//! call, in the order the kernel needs them; read top to bottom, this is what
//! "a container" is.

use std::ffi::CString;
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{chdir, sethostname, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Process, User};

use super::failure::{InitError, Step};
use super::security::{self, seccomp::CompiledFilter};
use super::{exec, mounts, namespaces::NamespacePlan, sync::Channel, Launch, RootfsSource, Stdio};
use crate::cgroups::Cgroup;

pub struct InitContext<'a> {
    pub launch: &'a Launch,
    pub plan: &'a NamespacePlan,
    pub cgroup: Option<&'a Cgroup>,
    pub filter: Option<&'a CompiledFilter>,
    pub root: &'a Path,
    pub channel: &'a Channel,
    /// The socket to send the terminal's master on (`Launch::console`).
    pub console: Option<RawFd>,
    /// The overlay root already assembled by the runtime (over idmapped
    /// layers, for a user namespace), to attach instead of mounting one.
    pub root_mount: Option<RawFd>,
    /// The cgroup's join files, opened by the runtime as root before the
    /// clone (`Cgroup::join_files`).
    pub cgroup_files: &'a [(std::path::PathBuf, std::fs::File)],
}

/// Runs in the child. Never returns on success (execve replaces it).
pub fn run(ctx: &InitContext) -> isize {
    let err = match setup_and_exec(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    ctx.channel.report_failure(err.exit_code, &err.message);
    // SAFETY: leave without running the parent's atexit handlers or destructors,
    // which belong to the parent's copy of this memory.
    unsafe { libc::_exit(err.exit_code) }
}

fn setup_and_exec(ctx: &InitContext) -> Step<std::convert::Infallible> {
    let spec = &ctx.launch.spec;
    let process = spec.process().as_ref().expect("checked by spawn");

    // 0. Never outlive the supervisor: its death means nobody records our exit.
    if ctx.launch.die_with_parent {
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }

    // The start fifo, opened while the host's paths are still ours to reach.
    let exec_fifo = match &ctx.launch.exec_fifo {
        Some(p) => Some(StartFifo::open(p)?),
        None => None,
    };

    // 1. Identity and resource limits. We enter the cgroup ourselves through
    //    files the runtime opened (as root, so this works from a user
    //    namespace not yet mapped; one thread moving itself, so no RCU grace
    //    period on v1). A new user namespace is mapped by the parent; then we
    //    become its root. Then the cgroup becomes our cgroup namespace's root.
    if !ctx.cgroup_files.is_empty() {
        Cgroup::join_with(ctx.cgroup_files).map_err(|e| InitError::setup("join cgroup", e))?;
    }
    if ctx.plan.has_new(LinuxNamespaceType::User) {
        if !ctx.channel.request_id_maps() {
            return Err(InitError {
                exit_code: 125,
                message: "container init: the user namespace's id maps were not written".into(),
            });
        }
        super::userns::become_root()?;
    }
    if ctx.plan.new_cgroup {
        unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| InitError::setup("unshare cgroup namespace", e))?;
    }
    for (typ, path) in &ctx.plan.join {
        if ctx.plan.joined_by_parent(*typ) {
            continue;
        }
        join_namespace(*typ, path)?;
    }

    // 2. The root filesystem, in our private mount namespace.
    let start = if ctx.plan.has_new(LinuxNamespaceType::Mount) {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| InitError::setup("make / private", e))?;
        match &ctx.launch.rootfs {
            RootfsSource::Overlay { lower, upper, work } => match ctx.root_mount {
                Some(fd) => super::idmap::attach(fd, ctx.root)
                    .map_err(|e| InitError::setup("mount the root", e))?,
                None => {
                    mounts::mount_overlay(ctx.root, lower, upper, work, ctx.launch.volatile_upper)?
                }
            },
            RootfsSource::Prepared => mounts::bind_self(ctx.root)?,
        }
        mounts::mount_all(ctx.root, spec, ctx.plan.shares_host_network())?;
        super::devices::populate_dev(ctx.root, spec, ctx.console.is_none())?;
        let hook_state = runtime_hooks(ctx)?;
        if ctx.launch.no_pivot {
            mounts::move_into(ctx.root)?;
        } else {
            mounts::pivot_into(ctx.root)?;
        }
        mounts::apply_masks(spec)?;
        mounts::make_cwd(process.cwd())?;
        if spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false)
        {
            mounts::remount_root_readonly()?;
        }
        (exec_fifo, hook_state)
    } else {
        // no mount namespace of our own: the fifo is reachable where it is,
        // and `create` must still wait for `start` (ns_itype). As runc does,
        // the root is bound onto itself (in the mount namespace we share) and
        // entered with chroot: pivot_root would move everyone's root.
        let hook_state = runtime_hooks(ctx)?;
        if ctx.root != Path::new("/") {
            if matches!(ctx.launch.rootfs, RootfsSource::Prepared) {
                mounts::bind_self(ctx.root)?;
            }
            nix::unistd::chroot(ctx.root).map_err(|e| InitError::setup("chroot", e))?;
            chdir("/").map_err(|e| InitError::setup("chdir /", e))?;
        }
        (exec_fifo, hook_state)
    };

    // 3. Identity: hostname, network.
    if ctx.plan.has_new(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            sethostname(h).map_err(|e| InitError::setup("sethostname", e))?;
        }
        if let Some(d) = spec.domainname() {
            // SAFETY: a pointer and length of a live string; the kernel copies it.
            let rc = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
            if rc != 0 {
                return Err(InitError::setup("setdomainname", nix::errno::Errno::last()));
            }
        }
    }
    if ctx.plan.has_new(LinuxNamespaceType::Network) {
        super::loopback::bring_up_loopback().map_err(|e| InitError::setup("bring up lo", e))?;
    }

    // 4. Standard streams, working directory, and what to exec (resolved now,
    //    while we may still read every directory as root).
    match ctx.console {
        Some(sock) => {
            super::console::make_terminal(sock, process.user().uid())
                .map_err(|e| InitError::setup("open a terminal on /dev/ptmx", e))?;
            if ctx.plan.has_new(LinuxNamespaceType::Mount) {
                mounts::bind_console()?;
            }
        }
        None => set_stdio(ctx.launch.stdio)?,
    }
    if ctx.console.is_some() || process.terminal().unwrap_or(false) {
        take_controlling_terminal()?;
    }
    chdir(process.cwd())
        .map_err(|e| InitError::setup(&format!("chdir to {}", process.cwd().display()), e))?;
    let argv = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let program = exec::resolve(&argv, &env)?;

    // 5. Privileges. As with runc, everything is in place before `create`
    //    returns: `start` only lets the exec happen.
    apply_process_limits(process)?;
    set_personality(spec.linux().as_ref().and_then(|l| l.personality().as_ref()))?;
    set_memory_policy(
        spec.linux()
            .as_ref()
            .and_then(|l| l.memory_policy().as_ref()),
    )?;
    drop_privileges(process, ctx.filter, ctx.launch.preserve_fds, &|fd| {
        ctx.channel.hand_over_listener(fd)
    })?;

    // 6. Wait for `start` (OCI create), then become the workload.
    let (exec_fifo, hook_state) = start;
    run_until_start(ctx, exec_fifo, hook_state.as_deref())?;
    Err(exec::execve(&program, &argv, &env))
}

/// Switches user (keeping capabilities across setuid), sets the process's
/// capabilities, forbids gaining privileges when the spec asks, and installs
/// the syscall filter. `exec` runs the same steps, so an exec'd process is
/// exactly as confined as the container's own.
///
/// With `no_new_privs` the filter comes last (it also filters our own calls).
/// Without it the kernel takes a filter only from a holder of CAP_SYS_ADMIN, so
/// it comes first, while we still hold every capability, as runc does; the
/// filter must then allow the calls below (Docker's profile does). A filter
/// with notify rules gives a listener descriptor: `hand_over` passes it to the
/// runtime (false: it could not), and our copy is closed.
pub(super) fn drop_privileges(
    process: &Process,
    filter: Option<&CompiledFilter>,
    preserve_fds: u32,
    hand_over: &dyn Fn(RawFd) -> bool,
) -> Step {
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs {
        install_filter(filter, hand_over)?;
    }
    security::capabilities::prepare_user_switch()
        .map_err(|e| InitError::setup("keep capabilities", e))?;
    switch_user(process.user())?;
    if let Some(caps) = process.capabilities() {
        security::capabilities::apply(caps)
            .map_err(|e| InitError::setup_chain("capabilities", &e))?;
    }
    close_other_fds(preserve_fds);
    if no_new_privs {
        security::set_no_new_privs().map_err(|e| InitError::setup("no_new_privs", e))?;
        install_filter(filter, hand_over)?;
    }
    Ok(())
}

fn install_filter(filter: Option<&CompiledFilter>, hand_over: &dyn Fn(RawFd) -> bool) -> Step {
    let Some(filter) = filter else {
        return Ok(());
    };
    let listener =
        security::seccomp::install(filter).map_err(|e| InitError::setup_chain("seccomp", &e))?;
    if let Some(fd) = listener {
        use std::os::fd::AsRawFd;
        if !hand_over(fd.as_raw_fd()) {
            return Err(InitError {
                exit_code: 125,
                message: "container init: seccomp listener could not be handed to the agent".into(),
            });
        }
    }
    Ok(())
}

/// Makes the given descriptors our 0, 1 and 2.
pub(super) fn set_stdio(stdio: Stdio) -> Step {
    for (fd, target) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
        // SAFETY: dup2 on descriptors the caller handed us; 0..2 are ours to replace.
        if fd != target && unsafe { libc::dup2(fd, target) } < 0 {
            return Err(InitError::setup(
                "set up stdio",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// A terminal session: a new session whose controlling terminal is our stdin,
/// so ctrl-c on the terminal reaches us and our children. Nothing to do when
/// stdin is not a terminal.
pub(super) fn take_controlling_terminal() -> Step {
    // SAFETY: isatty on fd 0.
    if unsafe { libc::isatty(0) } != 1 {
        return Ok(());
    }
    nix::unistd::setsid().map_err(|e| InitError::setup("setsid", e))?;
    // SAFETY: TIOCSCTTY on fd 0 with an integer argument.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(InitError::setup(
            "set the controlling terminal",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

pub(super) fn join_namespace(typ: LinuxNamespaceType, path: &Path) -> Step {
    let file = std::fs::File::open(path)
        .map_err(|e| InitError::setup(&format!("open namespace {}", path.display()), e))?;
    let flag = match typ {
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        _ => CloneFlags::empty(),
    };
    setns(file, flag).map_err(|e| InitError::setup(&format!("setns {}", path.display()), e))
}

/// The start fifo, held open as O_PATH so it stays reachable after pivot_root
/// or chroot hides it, with our /proc/self/fd directory of the host's /proc, to
/// reopen it for writing through even when the new root has no /proc (a
/// container without a mount namespace of its own gets none).
struct StartFifo {
    path: RawFd,
    fd_dir: RawFd,
}

impl StartFifo {
    fn open(p: &Path) -> Step<Self> {
        let open = |path: &Path, flags: libc::c_int, what: &str| {
            let c = CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|e| InitError::setup(what, e))?;
            // SAFETY: open(2) with a valid C string; the fd is ours until exec closes it.
            let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(InitError::setup(what, std::io::Error::last_os_error()));
            }
            Ok(fd)
        };
        Ok(StartFifo {
            path: open(p, libc::O_PATH, &format!("open exec fifo {}", p.display()))?,
            fd_dir: open(
                Path::new("/proc/self/fd"),
                libc::O_PATH | libc::O_DIRECTORY,
                "open /proc/self/fd",
            )?,
        })
    }

    /// Blocks in open(2) until `start` opens the fifo for reading.
    fn open_for_write(&self) -> Step<std::fs::File> {
        let name = CString::new(self.path.to_string()).expect("digits have no NUL");
        // SAFETY: openat on our own descriptors with a valid C string.
        let fd =
            unsafe { libc::openat(self.fd_dir, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(InitError::setup(
                "wait for start",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a new descriptor we own.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}

impl Drop for StartFifo {
    fn drop(&mut self) {
        // SAFETY: closing the two descriptors opened in open().
        unsafe {
            libc::close(self.path);
            libc::close(self.fd_dir);
        }
    }
}

/// The hooks of the OCI create: the parent runs prestart and createRuntime
/// (in the runtime's namespaces), then we run createContainer here, in the
/// container's mount namespace before pivot_root. Returns the state JSON the
/// parent sent, for startContainer; `None` when there are no hooks.
fn runtime_hooks(ctx: &InitContext) -> Step<Option<String>> {
    let Some(hooks) = ctx
        .launch
        .spec
        .hooks()
        .as_ref()
        .filter(|_| ctx.launch.run_hooks)
    else {
        return Ok(None);
    };
    let state = ctx.channel.request_hooks().ok_or_else(|| InitError {
        exit_code: 125,
        message: "a prestart or createRuntime hook failed".into(),
    })?;
    let create_container = hooks.create_container().clone().unwrap_or_default();
    super::hooks::run_all("createContainer", &create_container, &state)
        .map_err(|e| InitError::setup("hooks", e))?;
    Ok(Some(state))
}

/// With an exec fifo (OCI create/start), tell the parent we are ready and block
/// until `start` opens the fifo for reading; then run the startContainer hooks
/// (as runc: after `start` has its answer, so a failing one ends the container
/// but `start` and the poststart hooks still happen).
fn run_until_start(ctx: &InitContext, fifo: Option<StartFifo>, hook_state: Option<&str>) -> Step {
    let Some(fifo) = fifo else {
        return Ok(());
    };
    ctx.channel.report_ready();
    let mut f = fifo.open_for_write()?;
    use std::io::Write;
    f.write_all(b"0")
        .map_err(|e| InitError::setup("wait for start", e))?;
    drop(f);
    if let (Some(state), Some(hooks)) = (hook_state, ctx.launch.spec.hooks().as_ref()) {
        let start_container = hooks.start_container().clone().unwrap_or_default();
        let env = ctx
            .launch
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default();
        super::hooks::run_all_in_container("startContainer", &start_container, state, &env)
            .map_err(|e| InitError::setup("hooks", e))?;
    }
    Ok(())
}

fn switch_user(user: &User) -> Step {
    let gids: Vec<Gid> = user
        .additional_gids()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&gids).map_err(|e| InitError::setup("setgroups", e))?;
    nix::unistd::setresgid(
        Gid::from_raw(user.gid()),
        Gid::from_raw(user.gid()),
        Gid::from_raw(user.gid()),
    )
    .map_err(|e| InitError::setup(&format!("setgid {}", user.gid()), e))?;
    nix::unistd::setresuid(
        Uid::from_raw(user.uid()),
        Uid::from_raw(user.uid()),
        Uid::from_raw(user.uid()),
    )
    .map_err(|e| InitError::setup(&format!("setuid {}", user.uid()), e))?;
    if let Some(mask) = user.umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

/// Nothing of the runtime's own may leak into the workload, except the
/// `preserve` descriptors after stderr the caller passed on purpose.
fn close_other_fds(preserve: u32) {
    // SAFETY: close_range only marks descriptors >= 3 + preserve close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32.saturating_add(preserve),
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// linux.personality: the execution domain (LINUX32 makes `uname -m` say i686),
/// for the init and for each process exec'd into the container.
pub(super) fn set_personality(p: Option<&oci_spec::runtime::LinuxPersonality>) -> Step {
    use oci_spec::runtime::LinuxPersonalityDomain as D;
    let Some(p) = p else {
        return Ok(());
    };
    let persona: libc::c_ulong = match p.domain() {
        D::PerLinux => 0x0000,
        D::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) with a plain integer.
    if unsafe { libc::personality(persona) } < 0 {
        return Err(InitError::setup(
            "personality",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// linux.memoryPolicy through set_mempolicy(2): the NUMA policy the
/// container's memory is allocated under.
fn set_memory_policy(policy: Option<&oci_spec::runtime::LinuxMemoryPolicy>) -> Step {
    use oci_spec::runtime::{MemoryPolicyFlagType as F, MemoryPolicyModeType as M};
    let Some(policy) = policy else {
        return Ok(());
    };
    let mut mode: libc::c_long = match policy.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    for flag in policy.flags().iter().flatten() {
        mode |= match flag {
            F::MpolFNumaBalancing => 1 << 13,
            F::MpolFRelativeNodes => 1 << 14,
            F::MpolFStaticNodes => 1 << 15,
        };
    }
    let mask = node_mask(policy.nodes().as_deref().unwrap_or_default())
        .map_err(|e| InitError::setup("linux.memoryPolicy.nodes", e))?;
    let (ptr, maxnode) = match mask.is_empty() {
        true => (std::ptr::null(), 0),
        false => (mask.as_ptr(), mask.len() as libc::c_ulong * 64 + 1),
    };
    // SAFETY: set_mempolicy(2) reads `maxnode` bits from our live mask.
    if unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) } != 0 {
        return Err(InitError::setup(
            "set_mempolicy",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// "0-3,5" as a node bitmask (64 nodes a word); Linux has at most 1024 nodes.
fn node_mask(nodes: &str) -> Result<Vec<u64>, String> {
    const MAX_NODES: u64 = 1024;
    let mut mask = Vec::new();
    for part in nodes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("{part:?} is not a node number or range"))
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if first > last || last >= MAX_NODES {
            return Err(format!("{part:?}: nodes go from 0 to {}", MAX_NODES - 1));
        }
        for n in first..=last {
            let word = (n / 64) as usize;
            if mask.len() <= word {
                mask.resize(word + 1, 0);
            }
            mask[word] |= 1 << (n % 64);
        }
    }
    Ok(mask)
}

/// process.ioPriority through ioprio_set(2): class in the top bits, level below.
fn set_io_priority(process: &Process) -> Step {
    use oci_spec::runtime::IOPriorityClass as C;
    let Some(io) = process.io_priority() else {
        return Ok(());
    };
    let class: libc::c_long = match io.class() {
        C::IoprioClassRt => 1,
        C::IoprioClassBe => 2,
        C::IoprioClassIdle => 3,
    };
    if !(0..8).contains(&io.priority()) {
        return Err(InitError::setup(
            "process.ioPriority",
            format!("priority {} is not 0 to 7", io.priority()),
        ));
    }
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: ioprio_set(2) on ourselves with integer arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            (class << IOPRIO_CLASS_SHIFT) | io.priority() as libc::c_long,
        )
    };
    if rc != 0 {
        return Err(InitError::setup(
            "ioprio_set",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// process.scheduler through sched_setattr(2).
fn set_scheduler(process: &Process) -> Step {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let Some(s) = process.scheduler() else {
        return Ok(());
    };
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let flags = s
        .flags()
        .clone()
        .unwrap_or_default()
        .iter()
        .fold(0u64, |acc, f| {
            acc | match f {
                F::SchedResetOnFork => 0x01,
                F::SchedFlagReclaim => 0x02,
                F::SchedFlagDLOverrun => 0x04,
                F::SchedFlagKeepPolicy => 0x08,
                F::SchedFlagKeepParams => 0x10,
                F::SchedFlagUtilClampMin => 0x20,
                F::SchedFlagUtilClampMax => 0x40,
            }
        });
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        util_min: 0,
        util_max: 0,
    };
    // SAFETY: sched_setattr on ourselves (pid 0) with a sched_attr of the size it says.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        return Err(InitError::setup(
            "scheduler",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// process.oomScoreAdj, process.rlimits and process.scheduler: per-process
/// settings that exec keeps.
pub(super) fn apply_process_limits(process: &Process) -> Step {
    set_scheduler(process)?;
    set_io_priority(process)?;
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| InitError::setup("oom_score_adj", e))?;
    }
    for r in process.rlimits().as_deref().unwrap_or_default() {
        let limit = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        let resource = rlimit_number(r.typ());
        // SAFETY: setrlimit with a valid resource number and a struct on our stack.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(InitError::setup(
                &format!("rlimit {:?}", r.typ()),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

fn rlimit_number(t: oci_spec::runtime::PosixRlimitType) -> libc::__rlimit_resource_t {
    use oci_spec::runtime::PosixRlimitType as T;
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::node_mask;

    #[test]
    fn node_lists_become_bitmasks() {
        assert_eq!(node_mask(""), Ok(vec![]));
        assert_eq!(node_mask("0"), Ok(vec![1]));
        assert_eq!(node_mask("0-3,5"), Ok(vec![0b10_1111]));
        assert_eq!(node_mask("64"), Ok(vec![0, 1]));
        assert!(node_mask("0-9876543210").is_err());
        assert!(node_mask("3-1").is_err());
        assert!(node_mask("x").is_err());
    }
}
