//! The OCI runtime command line (`twinbox runtime create|start|state|kill|
//! delete|run|exec|pause|resume|ps`) over bundles, so other tools (containerd's
//! shim, conformance suites) can drive the runtime as they drive runc. State
//! lives in `<state-root>/<id>/state.json`; the state root is runc's `--root`.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, LinuxResources, Process, Spec};
use serde::{Deserialize, Serialize};

use super::enter::{enter, Enter};
use super::security::seccomp;
use super::sync::Request;
use super::{hooks, spawn_with, Launch, Result, RuntimeError, Stdio};
use crate::cgroups::{Cgroup, DEFAULT_FS_ROOT};
use crate::store::atomic::{read_json, write_json_atomic};
use crate::util::procfs;

pub const DEFAULT_STATE_ROOT: &str = "/run/twinbox-runtime";

/// The state document the OCI runtime spec defines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// runc's extras, which callers such as containerd's go-runc read.
    #[serde(default)]
    pub rootfs: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Not in the spec: lets a reused pid be told apart.
    #[serde(default, rename = "twinboxStartTicks")]
    pub start_ticks: Option<u64>,
}

/// runc's `create` flags.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// runc's `exec` flags.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// A process.json replacing everything below.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Capabilities added to the process's bounding, effective and permitted sets.
    pub caps: Vec<String>,
    /// (uid, gid) to run as.
    pub user: Option<(u32, Option<u32>)>,
    pub no_new_privs: bool,
    /// Exec into a paused container instead of refusing.
    pub ignore_paused: bool,
}

/// runc's `update` flags: a linux.resources document (a file, or `-` for
/// stdin) with single limits on top.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    pub resources: Option<PathBuf>,
    /// Bytes, or with a unit (64m, 1g).
    pub memory: Option<String>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
}

impl UpdateOptions {
    /// The resources to apply: the document, then the flags over it.
    pub fn resources(&self) -> Result<LinuxResources> {
        use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids};
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            RuntimeError::Spec(format!("{what}: not an OCI linux.resources JSON: {e}"))
        };
        let mut res: LinuxResources = match &self.resources {
            Some(p) if p == Path::new("-") => serde_json::from_reader(std::io::stdin().lock())
                .map_err(|e| bad("the resources on stdin", &e))?,
            Some(p) => {
                let data = fs::read(p).map_err(|e| io(p, e))?;
                serde_json::from_slice(&data).map_err(|e| bad(&p.display().to_string(), &e))?
            }
            None => LinuxResources::default(),
        };
        if let Some(m) = &self.memory {
            let bytes = crate::cgroups::parse_memory_size(m)?;
            let mut mem: LinuxMemory = res.memory().unwrap_or_default();
            mem.set_limit(Some(bytes as i64));
            res.set_memory(Some(mem));
        }
        if self.cpu_quota.is_some() || self.cpu_period.is_some() || self.cpu_shares.is_some() {
            let mut cpu: LinuxCpu = res.cpu().clone().unwrap_or_default();
            if self.cpu_quota.is_some() {
                cpu.set_quota(self.cpu_quota);
            }
            if self.cpu_period.is_some() {
                cpu.set_period(self.cpu_period);
            }
            if self.cpu_shares.is_some() {
                cpu.set_shares(self.cpu_shares);
            }
            res.set_cpu(Some(cpu));
        }
        if let Some(limit) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(limit);
            res.set_pids(Some(pids));
        }
        Ok(res)
    }
}

pub struct OciRuntime {
    state_root: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

fn state_err(msg: String) -> RuntimeError {
    RuntimeError::State(msg)
}

/// Alive and not a zombie: a zombie init has stopped, whoever reaps it.
fn running(pid: i32, ticks: Option<u64>) -> bool {
    if ticks.is_none() || procfs::start_ticks(pid) != ticks {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("Z");
    state != "Z" && state != "X"
}

/// Where a container without `linux.cgroupsPath` gets its cgroup.
pub const DEFAULT_CGROUP_PARENT: &str = "twinbox-runtime";

/// `linux.cgroupsPath`, or when it is absent `/twinbox-runtime/<id>`: runc
/// gives every container a cgroup named after its id, and `pause`, `kill
/// --all`, `ps`, `update` and `exec --ignore-paused` need one. None without a
/// `linux` section.
fn cgroup_path_of(spec: &Spec, id: &str) -> Option<PathBuf> {
    let linux = spec.linux().as_ref()?;
    Some(
        linux
            .cgroups_path()
            .clone()
            .unwrap_or_else(|| Path::new("/").join(DEFAULT_CGROUP_PARENT).join(id)),
    )
}

/// The spec the init is launched from, completed as runc completes it: the
/// cgroup path filled in, and after the spec's own device rules runc's
/// default allow list (mknod of anything, the standard nodes, terminals) and
/// each `linux.devices` node. Without them the "deny all" rule that `runc
/// spec` writes left even /dev/null and the container's ptmx unusable.
fn as_runc_runs_it(mut spec: Spec, id: &str) -> Spec {
    use oci_spec::runtime::LinuxDeviceType as T;
    let path = cgroup_path_of(&spec, id);
    let Some(linux) = spec.linux_mut().as_mut() else {
        return spec;
    };
    linux.set_cgroups_path(path);
    let nodes: Vec<(T, i64, i64)> = linux
        .devices()
        .iter()
        .flatten()
        .filter_map(|d| match d.typ() {
            T::B => Some((T::B, d.major(), d.minor())),
            // the device cgroup knows only b and c ("u" is a character device)
            T::C | T::U => Some((T::C, d.major(), d.minor())),
            _ => None,
        })
        .collect();
    let Some(rules) = linux
        .resources_mut()
        .as_mut()
        .and_then(|r| r.devices_mut().as_mut())
        .filter(|r| !r.is_empty())
    else {
        // no rules: the device cgroup allows everything already
        return spec;
    };
    rules.extend(super::devices::default_allowed());
    for (typ, major, minor) in nodes {
        rules.push(super::devices::allow_rule(
            typ,
            Some(major),
            Some(minor),
            "rwm",
        ));
    }
    spec
}

/// The container's cgroup (the bundle is re-read by each verb, so the
/// default is derived again from the id).
fn the_cgroup(spec: &Spec, id: &str) -> Option<Cgroup> {
    let p = cgroup_path_of(spec, id)?;
    Cgroup::new(
        Path::new(DEFAULT_FS_ROOT),
        p.strip_prefix("/").unwrap_or(&p),
    )
    .ok()
}

/// Hands the init's seccomp listener to the agent at `linux.seccomp.listenerPath`
/// with the container's state (status `creating`), as runc does.
fn send_listener(spec: &Spec, state: &OciState, fd: &OwnedFd) -> std::result::Result<(), String> {
    use std::os::fd::AsFd;
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Err("a seccomp listener without linux.seccomp".into());
    };
    let Some(path) = seccomp.listener_path() else {
        return Err("a seccomp listener without linux.seccomp.listenerPath".into());
    };
    let mut value = serde_json::to_value(state).map_err(|e| e.to_string())?;
    if let Some(map) = value.as_object_mut() {
        map.remove("twinboxStartTicks");
    }
    let doc = seccomp::process_state(value, state.pid, seccomp.listener_metadata().as_deref());
    seccomp::send_to_agent(path, &doc, fd.as_fd()).map_err(|e| {
        let mut msg = e.to_string();
        if let Some(src) = std::error::Error::source(&e) {
            msg.push_str(&format!(": {src}"));
        }
        msg
    })
}

fn hooks_of(spec: &Spec, pick: fn(&oci_spec::runtime::Hooks) -> Option<Vec<Hook>>) -> Vec<Hook> {
    spec.hooks().as_ref().and_then(pick).unwrap_or_default()
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::store::atomic::write_atomic(path, pid.to_string().as_bytes())
        .map_err(|e| io(path, std::io::Error::other(e.to_string())))
}

/// Hands a terminal's master to the caller's console socket (runc's
/// protocol: one SCM_RIGHTS message).
fn send_console(console_socket: &Path, master: &OwnedFd) -> Result<()> {
    let sock = std::os::unix::net::UnixStream::connect(console_socket)
        .map_err(|e| io(console_socket, e))?;
    super::console::send_fd(sock.as_raw_fd(), master.as_raw_fd(), b"/dev/ptmx")
        .map_err(|e| io(console_socket, e))
}

/// A new pty from the devpts of the container whose init is `pid`, its master
/// sent to the console socket; the slave is returned for the process.
fn pty_for(console_socket: &Path, pid: i32) -> Result<OwnedFd> {
    let ptmx = PathBuf::from(format!("/proc/{pid}/root/dev/pts/ptmx"));
    let pty = super::console::open_pty(&ptmx).map_err(|e| io(&ptmx, e))?;
    send_console(console_socket, &pty.master)?;
    Ok(pty.slave)
}

/// The process's stdio: the slave of a new pty when it wants a terminal and a
/// console socket takes the master, else this process's own. The fd returned
/// keeps the slave open until the process has it.
fn stdio_for(
    console_socket: Option<&Path>,
    terminal: bool,
    pid: i32,
) -> Result<(Option<OwnedFd>, Stdio)> {
    let slave = match (console_socket, terminal) {
        (Some(sock), true) => Some(pty_for(sock, pid)?),
        _ => None,
    };
    let stdio = match &slave {
        Some(fd) => Stdio {
            stdin: fd.as_raw_fd(),
            stdout: fd.as_raw_fd(),
            stderr: fd.as_raw_fd(),
        },
        None => Stdio {
            stdin: 0,
            stdout: 1,
            stderr: 2,
        },
    };
    Ok((slave, stdio))
}

impl OciRuntime {
    pub fn new(state_root: impl Into<PathBuf>) -> Self {
        OciRuntime {
            state_root: state_root.into(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.state_root.join(id)
    }

    fn load_spec(bundle: &Path) -> Result<(Spec, PathBuf)> {
        let bundle = fs::canonicalize(bundle).map_err(|e| io(bundle, e))?;
        let mut spec: Spec = read_json(&bundle.join("config.json"))
            .map_err(|e| RuntimeError::Spec(e.to_string()))?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .ok_or_else(|| RuntimeError::Spec("root.path is missing".into()))?;
        let abs = if root.is_absolute() {
            root
        } else {
            bundle.join(root)
        };
        if let Some(r) = spec.root_mut().as_mut() {
            r.set_path(abs);
        }
        Ok((spec, bundle))
    }

    /// ociVersion must be a runtime-spec version (SemVer, major 1): a config
    /// written for another major version means fields we would misread.
    fn check_version(spec: &Spec) -> Result<()> {
        let v = spec.version();
        let core = v.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<&str> = core.split('.').collect();
        let numeric = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !numeric || parts[0] != "1" {
            return Err(RuntimeError::Spec(format!(
                "ociVersion {v:?} is not a runtime-spec 1.x version: write e.g. \"1.0.2\""
            )));
        }
        Ok(())
    }

    fn check_id(&self, id: &str) -> Result<()> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(state_err(format!(
                "invalid container id {id:?}: use letters, digits, '-', '_' or '.'"
            )));
        }
        if self.dir(id).exists() {
            return Err(state_err(format!(
                "container {id:?} already exists: delete it first"
            )));
        }
        Ok(())
    }

    /// Sets up the container and leaves its init waiting for `start`.
    pub fn create(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<OciState> {
        self.check_id(id)?;
        let (spec, bundle) = Self::load_spec(bundle)?;
        Self::check_version(&spec)?;
        let spec = as_runc_runs_it(spec, id);
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(RuntimeError::Spec(
                "process.terminal is set: pass --console-socket to receive the terminal".into(),
            ));
        }
        let dir = self.dir(id);
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let fifo = dir.join("exec.fifo");
        let result = (|| {
            // writable by the container's user, who opens it after dropping
            // root (as runc's 0622); the state directory guards it
            nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
                .map_err(|e| io(&fifo, e.into()))?;
            // mkfifo honours the umask, which would leave it 0600: the init
            // of a user namespace (or a non-root user) could not open it
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&fifo, fs::Permissions::from_mode(0o622))
                    .map_err(|e| io(&fifo, e))?;
            }
            // with a terminal, the init makes it in the container's devpts
            let stdio = Stdio {
                stdin: 0,
                stdout: 1,
                stderr: 2,
            };
            let mut launch = Launch::new(spec.clone(), stdio)
                .exec_fifo(&fifo)
                .run_hooks(true)
                .console(terminal);
            launch.no_pivot = opts.no_pivot;
            launch.preserve_fds = opts.preserve_fds;
            let mut state = OciState {
                oci_version: spec.version().clone(),
                id: id.to_string(),
                status: "created".into(),
                pid: 0,
                bundle: bundle.clone(),
                annotations: spec.annotations().clone().unwrap_or_default(),
                rootfs: spec
                    .root()
                    .as_ref()
                    .map(|r| r.path().clone())
                    .unwrap_or_default(),
                created: Some(
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                ),
                start_ticks: None,
            };
            let mut answer = |pid: Pid, req: Request| -> std::result::Result<String, String> {
                let mut s = state.clone();
                s.pid = pid.as_raw();
                s.status = "creating".into();
                let json = serde_json::to_string(&s).map_err(|e| e.to_string())?;
                if let Request::SeccompListener(fd) = req {
                    return send_listener(&spec, &s, &fd).map(|_| String::new());
                }
                hooks::run_all(
                    "prestart",
                    &hooks_of(&spec, |h| h.prestart().clone()),
                    &json,
                )
                .and_then(|_| {
                    hooks::run_all(
                        "createRuntime",
                        &hooks_of(&spec, |h| h.create_runtime().clone()),
                        &json,
                    )
                })
                .map_err(|e| e.to_string())?;
                Ok(json)
            };
            let spawned = spawn_with(&launch, &mut answer)?;
            if let (Some(master), Some(sock)) = (&spawned.console, &opts.console_socket) {
                if let Err(e) = send_console(sock, master) {
                    let _ = nix::sys::signal::kill(spawned.pid, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(spawned.pid, None);
                    if let Some(cg) = &spawned.cgroup {
                        let _ = cg.destroy();
                    }
                    return Err(e);
                }
            }
            state.pid = spawned.pid.as_raw();
            state.start_ticks = procfs::start_ticks(spawned.pid.as_raw());
            write_json_atomic(&dir.join("state.json"), &state)
                .map_err(|e| RuntimeError::Spec(e.to_string()))?;
            if let Some(p) = &opts.pid_file {
                write_pid_file(p, state.pid)?;
            }
            Ok(state)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Lets a created container exec its process, then runs poststart hooks.
    pub fn start(&self, id: &str) -> Result<()> {
        let state = self.state(id)?;
        if state.status != "created" {
            return Err(state_err(format!(
                "cannot start container {id}: it is {}, not created",
                state.status
            )));
        }
        let fifo = self.dir(id).join("exec.fifo");
        // Opening for read releases the init blocked in its open-for-write.
        let data = fs::read(&fifo).map_err(|e| io(&fifo, e))?;
        let _ = fs::remove_file(&fifo);
        if data.is_empty() {
            return Err(state_err(format!(
                "container {id} exited before it could start"
            )));
        }
        let (spec, _) = Self::load_spec(&state.bundle)?;
        let poststart = hooks_of(&spec, |h| h.poststart().clone());
        if !poststart.is_empty() {
            let mut s = state.clone();
            s.status = "running".into();
            let json = serde_json::to_string(&s).map_err(|e| RuntimeError::Spec(e.to_string()))?;
            if let Err(e) = hooks::run_all("poststart", &poststart, &json) {
                let _ = kill(Pid::from_raw(state.pid), Signal::SIGKILL);
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The current state, with the status derived from the process itself.
    pub fn state(&self, id: &str) -> Result<OciState> {
        if id.is_empty() {
            return Err(state_err("container id cannot be empty".into()));
        }
        let path = self.dir(id).join("state.json");
        if !path.exists() {
            return Err(state_err(format!("container {id} does not exist")));
        }
        let mut state: OciState =
            read_json(&path).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        let alive = running(state.pid, state.start_ticks);
        let paused = alive
            && Self::load_spec(&state.bundle)
                .ok()
                .and_then(|(s, _)| the_cgroup(&s, id))
                .is_some_and(|cg| cg.is_frozen());
        state.status = if !alive {
            "stopped"
        } else if self.dir(id).join("exec.fifo").exists() {
            "created"
        } else if paused {
            "paused"
        } else {
            "running"
        }
        .into();
        Ok(state)
    }

    /// Signals the init, or with `all` every process of the container's cgroup.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let state = self.state(id)?;
        // `--all` signals the cgroup, which may still hold processes after the
        // init stopped (no PID namespace); runc allows it, and containerd's
        // `task delete -f` of a stopped task depends on that
        if state.status == "stopped" && !all {
            return Err(state_err(format!("container {id} is not running")));
        }
        let sig = Signal::try_from(signal)
            .map_err(|_| RuntimeError::Spec(format!("invalid signal {signal}")))?;
        if all {
            if let Some(cg) = Self::load_spec(&state.bundle)
                .ok()
                .and_then(|(s, _)| the_cgroup(&s, id))
            {
                return cg.kill_all(signal).map_err(Into::into);
            }
        }
        if state.status == "stopped" {
            // no cgroup to signal, and the init's pid may belong to another
            // process by now
            return Ok(());
        }
        kill(Pid::from_raw(state.pid), sig).map_err(|e| io(Path::new("kill"), e.into()))
    }

    /// Removes a stopped or created container; a running one only with `force`.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let state = self.state(id)?;
        if state.status != "stopped" && state.status != "created" && !force {
            return Err(state_err(format!(
                "cannot delete container {id}: it is {}: stop it first or use --force",
                state.status
            )));
        }
        if state.status != "stopped" {
            let _ = kill(Pid::from_raw(state.pid), Signal::SIGKILL);
            for _ in 0..500 {
                if !running(state.pid, state.start_ticks) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // the bundle may be gone already; then there is no cgroup path or hook
        let spec = Self::load_spec(&state.bundle)
            .map(|(s, _)| s)
            .unwrap_or_default();
        // without a mount namespace the root was bound onto itself in ours
        let own_mount_ns = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .is_none_or(|ns| {
                ns.iter()
                    .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount)
            });
        if !own_mount_ns {
            if let Some(root) = spec.root().as_ref().map(|r| r.path().clone()) {
                let _ = nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if let Some(cg) = the_cgroup(&spec, id) {
            let _ = cg.set_frozen(false);
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        let dir = self.dir(id);
        fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let poststop = hooks_of(&spec, |h| h.poststop().clone());
        if !poststop.is_empty() {
            let mut s = state;
            s.status = "stopped".into();
            let json = serde_json::to_string(&s).unwrap_or_default();
            // the container is gone either way: a failing poststop is only reported
            if let Err(e) = hooks::run_all("poststop", &poststop, &json) {
                tracing::warn!("{e}");
            }
        }
        Ok(())
    }

    pub fn pause(&self, id: &str, frozen: bool) -> Result<()> {
        let state = self.state(id)?;
        let want = if frozen { "running" } else { "paused" };
        if state.status != want {
            return Err(state_err(format!(
                "container {id} is {}, not {want}",
                state.status
            )));
        }
        let (spec, _) = Self::load_spec(&state.bundle)?;
        let cg = the_cgroup(&spec, id).ok_or_else(|| {
            state_err(format!(
                "container {id} has no cgroup (linux.cgroupsPath) to freeze"
            ))
        })?;
        cg.set_frozen(frozen).map_err(Into::into)
    }

    /// Changes the running container's cgroup limits (runc's `update`): the
    /// memory, CPU and pids fields of `resources`; device rules are left alone.
    pub fn update(&self, id: &str, opts: &UpdateOptions) -> Result<()> {
        let resources = opts.resources()?;
        let state = self.state(id)?;
        if state.status == "stopped" {
            return Err(state_err(format!("container {id} is not running")));
        }
        let (spec, _) = Self::load_spec(&state.bundle)?;
        let cg = the_cgroup(&spec, id).ok_or_else(|| {
            state_err(format!(
                "container {id} has no cgroup (linux.cgroupsPath) to update"
            ))
        })?;
        let mut res = super::resources_from(&resources);
        res.device_rules.clear();
        cg.create(&res).map_err(Into::into)
    }

    /// runc's `events --stats` document: `{"type":"stats","id":..,"data":{cpu,
    /// memory, pids}}` read from the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let state = self.state(id)?;
        if state.status == "stopped" {
            return Err(state_err(format!("container {id} is not running")));
        }
        let (spec, _) = Self::load_spec(&state.bundle)?;
        let usage = match the_cgroup(&spec, id) {
            Some(cg) => cg.usage()?,
            None => Default::default(),
        };
        let n = |v: Option<u64>| v.unwrap_or(0);
        Ok(serde_json::json!({
            "type": "stats",
            "id": id,
            "data": {
                "cpu": {"usage": {"total": n(usage.cpu_usage_ns), "kernel": 0, "user": 0},
                        "throttling": {}},
                "memory": {"usage": {"usage": n(usage.memory_bytes),
                                     "max": n(usage.memory_peak_bytes),
                                     "limit": usage.memory_limit_bytes.unwrap_or(u64::MAX),
                                     "failcnt": 0},
                           "swap": {"limit": 0, "failcnt": 0},
                           "kernel": {"limit": 0, "failcnt": 0},
                           "kernelTCP": {"limit": 0, "failcnt": 0}},
                "pids": {"current": n(usage.pids_current), "limit": n(usage.pids_max)},
                "blkio": {},
                "hugetlb": {}
            }
        }))
    }

    /// Host pids of the container's processes (its cgroup, or just the init).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let state = self.state(id)?;
        let (spec, _) = Self::load_spec(&state.bundle)?;
        match the_cgroup(&spec, id) {
            Some(cg) => cg.pids().map_err(Into::into),
            None if state.status == "stopped" => Ok(vec![]),
            None => Ok(vec![state.pid]),
        }
    }

    /// Another process in a created or running container; returns its exit
    /// code, or 0 once started with `detach`.
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        let state = self.state(id)?;
        if state.status == "stopped" || (state.status == "paused" && !opts.ignore_paused) {
            return Err(state_err(format!(
                "cannot exec in container {id}: it is {}",
                state.status
            )));
        }
        let (spec, _) = Self::load_spec(&state.bundle)?;
        let mut process: Process = match &opts.process {
            Some(p) => read_json(p)
                .map_err(|e| RuntimeError::Spec(format!("process file {}: {e}", p.display())))?,
            None => {
                if opts.args.is_empty() {
                    return Err(RuntimeError::Spec(
                        "exec needs a command (or --process FILE)".into(),
                    ));
                }
                let mut p = spec.process().clone().unwrap_or_default();
                p.set_args(Some(opts.args.clone()));
                p.set_terminal(Some(opts.tty));
                if let Some(cwd) = &opts.cwd {
                    p.set_cwd(cwd.clone());
                }
                p
            }
        };
        if !opts.env.is_empty() {
            let mut env = process.env().clone().unwrap_or_default();
            for kv in &opts.env {
                let key = kv.split('=').next().unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(key));
                env.push(kv.clone());
            }
            process.set_env(Some(env));
        }
        if let Some((uid, gid)) = opts.user {
            let mut user = process.user().clone();
            user.set_uid(uid);
            if let Some(g) = gid {
                user.set_gid(g);
            }
            process.set_user(user);
        }
        if opts.no_new_privs {
            process.set_no_new_privileges(Some(true));
        }
        if !opts.caps.is_empty() {
            let mut caps = process.capabilities().clone().unwrap_or_default();
            for name in &opts.caps {
                let cap = super::security::capabilities::capability_from_name(name)?;
                let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                    let mut s = s.clone().unwrap_or_default();
                    s.insert(cap);
                    Some(s)
                };
                let (b, e, p) = (
                    add(caps.bounding()),
                    add(caps.effective()),
                    add(caps.permitted()),
                );
                caps.set_bounding(b);
                caps.set_effective(e);
                caps.set_permitted(p);
            }
            process.set_capabilities(Some(caps));
        }
        let terminal = process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(RuntimeError::Spec(
                "exec with a terminal needs --console-socket".into(),
            ));
        }
        let (slave, stdio) = stdio_for(opts.console_socket.as_deref(), terminal, state.pid)?;
        let cgroup = the_cgroup(&spec, id);
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let child = enter(&Enter {
            target: Pid::from_raw(state.pid),
            process: &process,
            seccomp: seccomp.as_ref(),
            cgroup: cgroup.as_ref(),
            stdio,
            die_with_parent: !opts.detach,
            preserve_fds: opts.preserve_fds,
            personality: spec.linux().as_ref().and_then(|l| l.personality().as_ref()),
        })?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, child.as_raw())?;
        }
        if opts.detach {
            return Ok(0);
        }
        drop(slave);
        Ok(super::wait_exit(child))
    }

    /// create + start + wait + delete, with the workload on our stdio. Without
    /// hooks or a terminal it skips the state directory and the start fifo.
    pub fn run(&self, id: &str, bundle: &Path, opts: &CreateOptions) -> Result<i32> {
        self.check_id(id)?;
        let (spec, _) = Self::load_spec(bundle)?;
        Self::check_version(&spec)?;
        let spec = as_runc_runs_it(spec, id);
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if spec.hooks().is_some() || terminal {
            self.create(id, bundle, opts)?;
            if let Err(e) = self.start(id) {
                let _ = self.delete(id, true);
                return Err(e);
            }
            let state = self.state(id)?;
            let code = super::wait_exit(Pid::from_raw(state.pid));
            self.delete(id, true)?;
            return Ok(code);
        }
        let mut launch = Launch::new(
            spec,
            Stdio {
                stdin: 0,
                stdout: 1,
                stderr: 2,
            },
        );
        launch.no_pivot = opts.no_pivot;
        launch.preserve_fds = opts.preserve_fds;
        let spawned = super::spawn(&launch)?;
        if let Some(p) = &opts.pid_file {
            write_pid_file(p, spawned.pid.as_raw())?;
        }
        let code = super::wait_exit(spawned.pid);
        if let Some(cg) = spawned.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        Ok(code)
    }
}
