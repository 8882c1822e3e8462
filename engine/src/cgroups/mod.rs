//! cgroups: resource limits and usage for one container, v1 and v2 behind one interface.
//!
//! A [`Cgroup`] names one container's cgroup by a path relative to the cgroup
//! filesystem root (normally `/sys/fs/cgroup`), e.g. `twinbox/<id>`. On cgroup v2
//! that is one directory; on v1 it is one directory in every controller hierarchy
//! (`memory/twinbox/<id>`, `cpu/twinbox/<id>`, ...). Everything is plain file I/O,
//! so the unit tests run against a fake cgroupfs in a temporary directory.
//!
//! Docker's conventions are kept: `--memory-swap` is memory *plus* swap, a memory
//! limit without a swap limit means "no swap", `--cpus 0.5` is a quota of 50 ms per
//! 100 ms period, and a pids limit of 0 or less means unlimited.

mod device_filter;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

pub use device_filter::DeviceFilterError;

/// Where the cgroup filesystem is normally mounted.
pub const DEFAULT_FS_ROOT: &str = "/sys/fs/cgroup";

/// Docker's smallest accepted `--memory`: below this the container's own runtime
/// (and the process that joins the cgroup before exec) is OOM-killed at once.
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// Docker's default CFS period for `--cpus`.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// How long `destroy` keeps retrying a busy cgroup directory. A SIGKILLed
/// process leaves its cgroup only once it has exited, which on a loaded
/// machine (page reclaim, a process in uninterruptible I/O) can take seconds;
/// giving up sooner leaked container cgroups under CI load.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A child of a cgroup, as `Cgroup::children` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCgroup {
    pub name: String,
    /// Time since the directory last changed: its creation for a leaf cgroup
    /// (the kernel does not stamp it when files inside are written).
    pub age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup filesystem found at {root}: mount cgroup2 there (mount -t cgroup2 none {root}) or mount the v1 controllers under it")]
    NoCgroupFs { root: PathBuf },
    #[error(
        "cgroup controller {controller} is not mounted at {path}: mount it or run without {flag}"
    )]
    ControllerNotMounted {
        controller: &'static str,
        path: PathBuf,
        flag: &'static str,
    },
    #[error("cgroup v2 controller {controller} is not available in {file}: enable it in the parent's cgroup.subtree_control or run without {flag}")]
    ControllerUnavailable {
        controller: &'static str,
        file: PathBuf,
        flag: &'static str,
    },
    #[error("cannot enable cgroup controllers {controllers} in {path}: {source}: a cgroup v2 parent must not hold processes itself, so move them to a leaf cgroup or use another parent")]
    EnableControllers {
        path: PathBuf,
        controllers: String,
        source: io::Error,
    },
    #[error("refusing to use the root cgroup {path}: give a relative path such as twinbox/<id>")]
    RootCgroup { path: PathBuf },
    #[error("cgroup {path} does not exist: create it first")]
    NotCreated { path: PathBuf },
    #[error("cannot create cgroup directory {path}: {source}: run as root with the cgroup filesystem mounted read-write")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup {path}: {source}: processes are still inside, stop them (kill_all) and retry")]
    RemoveDir { path: PathBuf, source: io::Error },
    #[error("cannot list {path}: {source}: is the cgroup filesystem mounted?")]
    ReadDir { path: PathBuf, source: io::Error },
    #[error(
        "cannot read {path}: {source}: is the cgroup filesystem mounted and the cgroup created?"
    )]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}: check the value is within the kernel's range and that you are root")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot move process {pid} into {path}: {source}: {hint}")]
    Join {
        pid: i32,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("unexpected content {content:?} in {path}: expected a number (is this really a cgroup filesystem?)")]
    Parse { path: PathBuf, content: String },
    #[error("cannot send signal {signal} to process {pid}: {source}")]
    Signal {
        pid: i32,
        signal: i32,
        source: Errno,
    },
    #[error("invalid signal number {signal}: use a signal such as 9 (SIGKILL) or 15 (SIGTERM)")]
    InvalidSignal { signal: i32 },
    #[error(
        "invalid memory size {input:?}: use a number with an optional unit b, k, m or g (e.g. 64m)"
    )]
    InvalidMemorySize { input: String },
    #[error("invalid --cpus {cpus}: use a positive number of CPUs such as 0.5 or 1.5")]
    InvalidCpus { cpus: f64 },
    #[error("--cpus {cpus} is too small: use at least 0.01")]
    TooFewCpus { cpus: f64 },
    #[error(
        "--cpus {cpus} is more than the {host} CPUs of this host: use a value from 0.01 to {host}"
    )]
    TooManyCpus { cpus: f64, host: usize },
    #[error("invalid resource limits: {0}")]
    InvalidResources(String),
    #[error(transparent)]
    DeviceFilter(#[from] DeviceFilterError),
}

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
pub enum CgroupMode {
    /// Controllers mounted one per hierarchy; `hybrid` when a controller-less
    /// cgroup2 is also mounted at `<root>/unified` (systemd's hybrid layout).
    V1 { hybrid: bool },
    /// The unified hierarchy at the root.
    V2,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgroupMode::V1 { hybrid: false } => f.write_str("v1"),
            CgroupMode::V1 { hybrid: true } => f.write_str("v1 (hybrid)"),
            CgroupMode::V2 => f.write_str("v2"),
        }
    }
}

/// Where this process sees the cgroup2 hierarchy's root mounted:
/// `/sys/fs/cgroup` on pure v2 hosts, `/sys/fs/cgroup/unified` on hybrid
/// ones; None when no cgroup2 root is mounted.
pub fn v2_mount() -> std::io::Result<Option<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let v2 = right.split(' ').next() == Some("cgroup2") && f.get(3) == Some(&"/");
        v2.then(|| f.get(4).map(PathBuf::from)).flatten()
    }))
}

/// Find out whether `fs_root` (normally [`DEFAULT_FS_ROOT`]) holds cgroup v2 or v1.
pub fn detect_mode(fs_root: &Path) -> Result<CgroupMode, CgroupError> {
    detect(fs_root).map(|(mode, _)| mode)
}

/// [`detect_mode`], with the v1 hierarchies it found on the way.
fn detect(fs_root: &Path) -> Result<(CgroupMode, Vec<v1::Hierarchy>), CgroupError> {
    // cgroup.controllers only exists at the root of a cgroup2 mount.
    if fs_root.join("cgroup.controllers").is_file() {
        return Ok((CgroupMode::V2, Vec::new()));
    }
    let hierarchies = v1::discover(fs_root)?;
    if !hierarchies.iter().any(v1::Hierarchy::controls) {
        return Err(CgroupError::NoCgroupFs {
            root: fs_root.to_path_buf(),
        });
    }
    let hybrid = fs_root.join("unified/cgroup.controllers").is_file();
    Ok((CgroupMode::V1 { hybrid }, hierarchies))
}

/// Limits to apply to a container's cgroup. `None` leaves the kernel default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// `--memory`: hard memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// `--memory-swap`: memory *plus* swap in bytes, like Docker. When
    /// `memory_bytes` is set and this is `None`, it equals `memory_bytes` (no swap)
    /// where the kernel accounts swap. `u64::MAX` means unlimited swap
    /// (Docker's `--memory-swap -1`): the kernel clamps it to "no limit".
    pub memory_swap_bytes: Option<u64>,
    /// CFS quota per period in µs; negative (-1) means unlimited.
    pub cpu_quota_us: Option<i64>,
    /// CFS period in µs (1000 to 1000000).
    pub cpu_period_us: Option<u64>,
    /// `--cpu-shares` relative weight (v1 shares, converted to cpu.weight on v2);
    /// 0 means the default.
    pub cpu_shares: Option<u64>,
    /// `--pids-limit`; 0 or less means unlimited.
    pub pids_max: Option<i64>,
    /// Device access rules in order, as the v1 device controller takes them:
    /// (allow, "TYPE MAJOR:MINOR ACCESS"), e.g. (false, "a *:* rwm").
    pub device_rules: Vec<(bool, String)>,
    /// OCI `linux.resources.unified`: cgroup v2 files and the values written
    /// to them as given, after the limits above (v2 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unified: Vec<(String, String)>,
}

impl Resources {
    /// Check the limits the way Docker does before touching the kernel, so a bad
    /// flag gives a clear message instead of an EINVAL half-way through `create`.
    pub fn validate(&self) -> Result<(), CgroupError> {
        let bad = |m: String| Err(CgroupError::InvalidResources(m));
        for (file, _) in &self.unified {
            // a file of this cgroup, never one of its parent's or children's
            if file.is_empty() || file.contains('/') || file.starts_with('.') {
                return bad(format!(
                    "linux.resources.unified key {file:?} is not a cgroup file name: use e.g. cpu.max"
                ));
            }
        }
        if let Some(m) = self.memory_bytes {
            if m < MIN_MEMORY_BYTES {
                return bad(format!(
                    "memory limit {m} bytes is too small: use at least 6m"
                ));
            }
        }
        if let Some(s) = self.memory_swap_bytes {
            match self.memory_bytes {
                None => return bad("--memory-swap needs --memory: set a memory limit too".into()),
                Some(m) if s < m => {
                    return bad(format!(
                        "memory+swap limit {s} is smaller than the memory limit {m}: --memory-swap is the total of memory and swap, so use at least {m}"
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(q) = self.cpu_quota_us {
            if (0..1000).contains(&q) {
                return bad(format!(
                    "cpu quota {q} µs is too small: use at least 1000 (1 ms), or -1 for no limit"
                ));
            }
        }
        if let Some(p) = self.cpu_period_us {
            if !(1000..=1_000_000).contains(&p) {
                return bad(format!(
                    "cpu period {p} µs is out of range: use 1000 to 1000000 (1 ms to 1 s)"
                ));
            }
        }
        Ok(())
    }

    /// The controllers these limits need, with the CLI flag to name in errors.
    fn needed_controllers(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.memory_bytes.is_some() || self.memory_swap_bytes.is_some() {
            out.push(("memory", "--memory"));
        }
        if self.cpu_quota_us.is_some()
            || self.cpu_period_us.is_some()
            || self.cpu_shares.is_some_and(|s| s > 0)
        {
            out.push(("cpu", "--cpus and --cpu-shares"));
        }
        if self.pids_max.is_some() {
            out.push(("pids", "--pids-limit"));
        }
        out
    }
}

/// Resource usage read back from a cgroup. A value the kernel does not provide
/// (missing controller or file, older kernel) is `None`, never 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub memory_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
    pub pids_current: Option<u64>,
    /// `None` when unlimited.
    pub pids_max: Option<u64>,
}

enum Backend {
    V1(v1::V1),
    V2(v2::V2),
}

/// One container's cgroup.
pub struct Cgroup {
    mode: CgroupMode,
    fs_root: PathBuf,
    relative: PathBuf,
    backend: Backend,
}

impl fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cgroup")
            .field("mode", &self.mode)
            .field("fs_root", &self.fs_root)
            .field("relative", &self.relative)
            .finish()
    }
}

impl Cgroup {
    /// A cgroup at `relative` (e.g. `twinbox/<id>`) under `fs_root`, detecting the mode.
    pub fn new(fs_root: &Path, relative: &Path) -> Result<Self, CgroupError> {
        let (mode, hierarchies) = detect(fs_root)?;
        let cg = Self::with_mode(fs_root, relative, mode);
        if let Backend::V1(v1) = &cg.backend {
            // what detection found is what the cgroup uses: not found twice
            v1.remember_hierarchies(hierarchies);
        }
        Ok(cg)
    }

    /// A cgroup with a known mode (tests, or a mode detected once and reused).
    /// Only the normal components of `relative` are kept: a leading `/` is
    /// ignored and `..` is dropped, so the cgroup never escapes `fs_root`.
    pub fn with_mode(fs_root: &Path, relative: &Path, mode: CgroupMode) -> Self {
        let relative: PathBuf = relative
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let backend = match mode {
            CgroupMode::V1 { .. } => Backend::V1(v1::V1::new(fs_root, &relative)),
            CgroupMode::V2 => Backend::V2(v2::V2::new(fs_root, &relative)),
        };
        Self {
            mode,
            fs_root: fs_root.to_path_buf(),
            relative,
            backend,
        }
    }

    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    pub fn fs_root(&self) -> &Path {
        &self.fs_root
    }

    pub fn relative(&self) -> &Path {
        &self.relative
    }

    /// The main directory: the v2 directory, or the v1 memory hierarchy's.
    pub fn path(&self) -> PathBuf {
        match &self.backend {
            Backend::V1(b) => b.main_dir(),
            Backend::V2(b) => b.dir(),
        }
    }

    /// Whether the cgroup directory exists (in any hierarchy on v1).
    pub fn exists(&self) -> bool {
        match &self.backend {
            Backend::V1(b) => b.exists(),
            Backend::V2(b) => b.dir().is_dir(),
        }
    }

    /// Create the cgroup (mkdir -p in every needed hierarchy) and write the limits.
    /// Calling it again on an existing cgroup updates the limits. If the cgroup
    /// did not exist and a step fails, what was created is removed again.
    pub fn create(&self, res: &Resources) -> Result<(), CgroupError> {
        self.refuse_root()?;
        res.validate()?;
        let existed = self.exists();
        let result = match &self.backend {
            Backend::V1(b) => b.create(res),
            Backend::V2(b) => b.create(res),
        };
        if result.is_err() && !existed {
            // Best effort: the original error is the one worth reporting.
            let _ = self.destroy();
        }
        result
    }

    /// Move process `pid` into the cgroup (every hierarchy on v1). `pid` 0 means
    /// the calling process: the kernel reads "0" in cgroup.procs as "myself",
    /// which works from inside a new PID namespace where our own pid is 1.
    pub fn join(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(b) => b.join(pid),
            Backend::V2(b) => b.join(pid),
        }
    }

    /// Moves the calling process into the cgroup; it must have one thread
    /// (a child just cloned, before it execs). On v1 it writes "0" to each
    /// hierarchy's `tasks` rather than `cgroup.procs`: a thread moving itself
    /// needs no stable thread group, so the kernel (6.0+) skips the global
    /// threadgroup lock, whose write side waits for an RCU grace period:
    /// 7-15 ms of every container start here, measured. A single thread is
    /// the whole process, so the outcome is the same as [`Cgroup::join`]`(0)`.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        match &self.backend {
            Backend::V1(b) => b.join_self(),
            Backend::V2(b) => b.join(0),
        }
    }

    /// The files [`Cgroup::join_with`] writes, opened here (by root, on the
    /// host): a child cloned after this, even one in a user namespace that
    /// does not own them, joins through them, since the kernel checks the
    /// credentials they were opened with (5.16+). On v1 each hierarchy's
    /// `tasks` (see [`Cgroup::join_self`]), on v2 `cgroup.procs`.
    pub fn join_files(&self) -> Result<Vec<(PathBuf, std::fs::File)>, CgroupError> {
        let paths = match &self.backend {
            Backend::V1(b) => b.join_self_files()?,
            Backend::V2(b) => vec![b.procs_file()?],
        };
        paths
            .into_iter()
            .map(|p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map(|f| (p.clone(), f))
                    .map_err(|source| CgroupError::Join {
                        pid: 0,
                        path: p,
                        source,
                        hint: "run as root and check that the cgroup exists",
                    })
            })
            .collect()
    }

    /// On v2, the cgroup's directory opened for `clone3(CLONE_INTO_CGROUP)`:
    /// the child is born in the cgroup, so nobody migrates it (no write to
    /// cgroup.procs, no wait on the threadgroup lock). `None` on v1.
    pub fn clone_into_fd(&self) -> Option<std::os::fd::OwnedFd> {
        match &self.backend {
            Backend::V1(_) => None,
            Backend::V2(b) => device_filter::open_cgroup(&b.dir()).ok(),
        }
    }

    /// The calling process (one thread, as for [`Cgroup::join_self`]) joins
    /// through files [`Cgroup::join_files`] opened.
    pub fn join_with(files: &[(PathBuf, std::fs::File)]) -> Result<(), CgroupError> {
        use std::io::Write;
        for (path, f) in files {
            (&*f).write_all(b"0").map_err(|source| CgroupError::Join {
                pid: 0,
                path: path.clone(),
                source,
                hint: "on cgroup v1 cpuset.cpus and cpuset.mems must be set; on v2 the pids or cpuset limit may refuse it",
            })?;
        }
        Ok(())
    }

    /// Current usage; values that cannot be read are `None`.
    pub fn usage(&self) -> Result<Usage, CgroupError> {
        match &self.backend {
            Backend::V1(b) => b.usage(),
            Backend::V2(b) => b.usage(),
        }
    }

    /// Every process in the cgroup and its descendants, sorted (host pids).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        match &self.backend {
            Backend::V1(b) => b.pids(),
            Backend::V2(b) => b.pids(),
        }
    }

    /// Send `signal` to every process in the cgroup. v2 uses cgroup.kill for
    /// SIGKILL when the kernel has it; v1 freezes the cgroup around the signals
    /// when the freezer is mounted, so a fork bomb cannot outrun us.
    pub fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        self.refuse_root()?;
        if signal != 0 {
            Signal::try_from(signal).map_err(|_| CgroupError::InvalidSignal { signal })?;
        }
        match &self.backend {
            Backend::V1(b) => b.kill_all(signal),
            Backend::V2(b) => b.kill_all(signal),
        }
    }

    /// Freeze (`pause`) or thaw (`unpause`) every process in the cgroup: the
    /// v1 freezer controller, or cgroup.freeze on v2. Returns once the kernel
    /// reports the new state.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        self.refuse_root()?;
        match &self.backend {
            Backend::V1(b) => b.set_frozen(frozen),
            Backend::V2(b) => b.set_frozen(frozen),
        }
    }

    /// Whether the cgroup is frozen now.
    pub fn is_frozen(&self) -> bool {
        match &self.backend {
            Backend::V1(b) => b.is_frozen(),
            Backend::V2(b) => b.is_frozen(),
        }
    }

    /// The cgroups directly below this one (in the hierarchy `path` names),
    /// empty when it does not exist.
    pub fn children(&self) -> Vec<ChildCgroup> {
        let Ok(rd) = std::fs::read_dir(self.path()) else {
            return Vec::new();
        };
        let now = std::time::SystemTime::now();
        rd.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| ChildCgroup {
                name: e.file_name().to_string_lossy().into_owned(),
                age: e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Remove the cgroup (and any child cgroups) in every hierarchy. Busy
    /// directories are retried for about a second, as dying processes leave
    /// slowly; directories that do not exist are fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        self.refuse_root()?;
        match &self.backend {
            Backend::V1(b) => b.destroy(),
            Backend::V2(b) => b.destroy(),
        }
    }

    fn refuse_root(&self) -> Result<(), CgroupError> {
        if self.relative.as_os_str().is_empty() {
            return Err(CgroupError::RootCgroup {
                path: self.fs_root.clone(),
            });
        }
        Ok(())
    }
}

/// Parse a Docker memory size: "64m", "1g", "512k", "100b", "1024" (bytes),
/// case-insensitive, with an optional "b" after the unit ("64mb") and an optional
/// fraction ("1.5g"). Units are binary (1k = 1024).
pub fn parse_memory_size(s: &str) -> Result<u64, CgroupError> {
    let invalid = || CgroupError::InvalidMemorySize {
        input: s.to_string(),
    };
    let lower = s.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let multiplier: u64 = match unit.trim_start() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => return Err(invalid()),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) if !f.is_empty() && !f.contains('.') => (w, Some(f)),
        Some(_) => return Err(invalid()),
        None => (number, None),
    };
    if whole.is_empty() {
        return Err(invalid());
    }
    let whole: u64 = whole.parse().map_err(|_| invalid())?;
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(invalid)?;
    if let Some(f) = fraction {
        // Exact integer arithmetic so "1.5g" is exactly 1.5 GiB; digits past
        // what a u64 can hold do not matter for a byte count.
        let f = &f[..f.len().min(12)];
        let numerator: u64 = f.parse().map_err(|_| invalid())?;
        let denominator = 10u64.pow(f.len() as u32);
        let extra =
            (u128::from(numerator) * u128::from(multiplier) / u128::from(denominator)) as u64;
        bytes = bytes.checked_add(extra).ok_or_else(invalid)?;
    }
    Ok(bytes)
}

/// Docker's `--cpus`: 0.5 becomes a quota of 50000 µs per 100000 µs period.
pub fn cpus_to_quota(cpus: f64) -> Result<(i64, u64), CgroupError> {
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(CgroupError::InvalidCpus { cpus });
    }
    let host = thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > host as f64 {
        return Err(CgroupError::TooManyCpus { cpus, host });
    }
    let quota = (cpus * DEFAULT_CPU_PERIOD_US as f64).round() as i64;
    // The kernel refuses quotas under 1 ms.
    if quota < 1000 {
        return Err(CgroupError::TooFewCpus { cpus });
    }
    Ok((quota, DEFAULT_CPU_PERIOD_US))
}

// ---- helpers shared by v1 and v2 ----

/// Read a control file, trimmed.
fn read_string(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Read a control file holding one number, or "max" (returned as `None`).
fn read_u64_or_max(path: &Path) -> Result<Option<u64>, CgroupError> {
    let content = read_string(path)?;
    if content == "max" {
        return Ok(None);
    }
    content.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content,
    })
}

/// For usage(): a number when the file is there and sane, otherwise `None`.
fn usage_u64(path: &Path) -> Option<u64> {
    read_u64_or_max(path).ok().flatten()
}

/// For usage(): the value of `key` in a flat-keyed file such as memory.events
/// ("oom_kill 3") or cpu.stat ("usage_usec 1234").
fn usage_keyed(path: &Path, key: &str) -> Option<u64> {
    parse_keyed(&std::fs::read_to_string(path).ok()?, key)
}

fn parse_keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            words.next()?.parse().ok()
        } else {
            None
        }
    })
}

/// Write a control file. It is created when missing, which only happens in a
/// fake tree: real cgroupfs refuses to create files, and callers check that a
/// controller is present before writing its files.
fn write_value(path: &Path, value: &str) -> Result<(), CgroupError> {
    tracing::debug!(path = %path.display(), value, "cgroup write");
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// mkdir -p, mapping the error to the directory that failed.
fn create_dir_all(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Write a pid into `dir/cgroup.procs`.
fn join_dir(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    join_file(&dir.join("cgroup.procs"), pid)
}

fn join_file(path: &Path, pid: i32) -> Result<(), CgroupError> {
    let path = path.to_path_buf();
    std::fs::write(&path, pid.to_string()).map_err(|source| {
        let hint = match source.raw_os_error() {
            Some(libc::ESRCH) => "the process has already exited",
            Some(libc::ENOSPC) => {
                "on cgroup v1 cpuset.cpus and cpuset.mems must be set; on v2 the pids or cpuset limit refuses it"
            }
            Some(libc::EBUSY) => {
                "on cgroup v2 a process may not join a cgroup whose subtree_control has controllers enabled"
            }
            _ => "run as root and check that the cgroup exists",
        };
        CgroupError::Join {
            pid,
            path: path.clone(),
            source,
            hint,
        }
    })
}

/// The pids in `dir/cgroup.procs` and in every child cgroup below it.
fn collect_procs(dir: &Path, out: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let content = match std::fs::read_to_string(&procs) {
        Ok(c) => c,
        // Removed meanwhile (or a fake tree without the file): no processes.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: procs,
                source,
            })
        }
    };
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid = line.parse().map_err(|_| CgroupError::Parse {
            path: procs.clone(),
            content: line.to_string(),
        })?;
        out.insert(pid);
    }
    for child in child_dirs(dir)? {
        collect_procs(&child, out)?;
    }
    Ok(())
}

/// Subdirectories of a cgroup directory, i.e. its child cgroups.
fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Send `signal` (0 = existence check) to each pid, skipping ourselves and
/// processes that exited meanwhile.
fn signal_pids(pids: impl IntoIterator<Item = i32>, signal: i32) -> Result<(), CgroupError> {
    let sig = if signal == 0 {
        None
    } else {
        Some(Signal::try_from(signal).map_err(|_| CgroupError::InvalidSignal { signal })?)
    };
    let me = std::process::id() as i32;
    for pid in pids {
        // Never kill the caller, should it have joined the cgroup itself.
        if pid == me || pid <= 0 {
            continue;
        }
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(source) => {
                return Err(CgroupError::Signal {
                    pid,
                    signal,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// rmdir a cgroup and its child cgroups (deepest first), retrying EBUSY for
/// about a second: after SIGKILL the kernel still needs a moment to reap.
/// A directory that is already gone is fine.
fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    if !dir.is_dir() {
        return Ok(());
    }
    for child in child_dirs(dir)? {
        remove_cgroup_dir(&child)?;
    }
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    let mut pause = Duration::from_millis(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Map v1 cpu.shares (2..262144, default 1024) onto v2 cpu.weight (1..10000,
/// default 100) with runc's log-quadratic curve, so the defaults line up
/// (1024 -> 100); the older linear formula turned 1024 into 39.
fn shares_to_weight(shares: u64) -> u64 {
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Fake cgroup trees in a temporary directory. Unlike cgroupfs, mkdir here
    //! does not create control files: tests write the ones they read.
    use std::path::Path;

    pub fn write(path: &Path, content: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    pub fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// A v1 layout: one directory per controller plus name=systemd, the root
    /// cpuset populated, and a controller-less cgroup2 at unified/ when hybrid.
    pub fn fake_v1(root: &Path, hybrid: bool) {
        for c in super::v1::CONTROLLERS {
            std::fs::create_dir_all(root.join(c)).unwrap();
            write(&root.join(c).join("cgroup.procs"), "");
        }
        write(&root.join("cpuset/cpuset.cpus"), "0-1\n");
        write(&root.join("cpuset/cpuset.mems"), "0\n");
        if hybrid {
            write(&root.join("unified/cgroup.controllers"), "\n");
        }
    }

    /// A v2 layout offering `controllers` at the root.
    pub fn fake_v2(root: &Path, controllers: &str) {
        write(
            &root.join("cgroup.controllers"),
            &format!("{controllers}\n"),
        );
        write(&root.join("cgroup.subtree_control"), "\n");
        write(&root.join("cgroup.procs"), "1\n");
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn memory_sizes_follow_docker_syntax() {
        let mib = 1024 * 1024;
        assert_eq!(parse_memory_size("64m").unwrap(), 64 * mib);
        assert_eq!(parse_memory_size("64M").unwrap(), 64 * mib);
        assert_eq!(parse_memory_size("64mb").unwrap(), 64 * mib);
        assert_eq!(parse_memory_size("64MB").unwrap(), 64 * mib);
        assert_eq!(parse_memory_size("1g").unwrap(), 1024 * mib);
        assert_eq!(parse_memory_size("1.5g").unwrap(), 1536 * mib);
        assert_eq!(parse_memory_size("512k").unwrap(), 512 * 1024);
        assert_eq!(parse_memory_size("512kb").unwrap(), 512 * 1024);
        assert_eq!(parse_memory_size("100b").unwrap(), 100);
        assert_eq!(parse_memory_size("1024").unwrap(), 1024);
        assert_eq!(parse_memory_size(" 2 g ").unwrap(), 2048 * mib);
        for bad in [
            "",
            "abc",
            "m",
            "64x",
            "64mm",
            "-1m",
            "1..5g",
            "1.g",
            ".5g",
            "64 m b",
            "99999999999999999999g",
        ] {
            assert!(
                parse_memory_size(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            parse_memory_size("abc").unwrap_err().to_string(),
            "invalid memory size \"abc\": use a number with an optional unit b, k, m or g (e.g. 64m)"
        );
    }

    #[test]
    fn cpus_become_quota_and_period() {
        assert_eq!(cpus_to_quota(0.5).unwrap(), (50_000, 100_000));
        assert_eq!(cpus_to_quota(1.0).unwrap(), (100_000, 100_000));
        assert_eq!(cpus_to_quota(0.01).unwrap(), (1_000, 100_000));
        let host = thread::available_parallelism().unwrap().get();
        assert_eq!(
            cpus_to_quota(host as f64).unwrap(),
            (host as i64 * 100_000, 100_000)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 0.001] {
            assert!(cpus_to_quota(bad).is_err(), "{bad} should be rejected");
        }
        let err = cpus_to_quota(host as f64 + 1.0).unwrap_err().to_string();
        assert!(
            err.contains(&format!("the {host} CPUs of this host")),
            "{err}"
        );
        assert!(cpus_to_quota(0.0)
            .unwrap_err()
            .to_string()
            .contains("positive"));
    }

    #[test]
    fn detects_v2_v1_and_hybrid_layouts() {
        let v2 = tempfile::tempdir().unwrap();
        fake_v2(v2.path(), "cpu memory pids");
        assert_eq!(detect_mode(v2.path()).unwrap(), CgroupMode::V2);

        let hybrid = tempfile::tempdir().unwrap();
        fake_v1(hybrid.path(), true);
        assert_eq!(
            detect_mode(hybrid.path()).unwrap(),
            CgroupMode::V1 { hybrid: true }
        );

        let legacy = tempfile::tempdir().unwrap();
        fake_v1(legacy.path(), false);
        assert_eq!(
            detect_mode(legacy.path()).unwrap(),
            CgroupMode::V1 { hybrid: false }
        );

        // Only a controller-less name=systemd hierarchy: nothing usable.
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("systemd")).unwrap();
        let err = detect_mode(empty.path()).unwrap_err();
        assert!(matches!(err, CgroupError::NoCgroupFs { .. }), "{err}");
        let missing = empty.path().join("nope");
        assert!(matches!(
            detect_mode(&missing),
            Err(CgroupError::NoCgroupFs { .. })
        ));
    }

    #[test]
    fn mode_serializes_and_displays() {
        assert_eq!(
            serde_json::to_string(&CgroupMode::V1 { hybrid: true }).unwrap(),
            r#"{"version":"v1","hybrid":true}"#
        );
        assert_eq!(
            serde_json::to_string(&CgroupMode::V2).unwrap(),
            r#"{"version":"v2"}"#
        );
        assert_eq!(CgroupMode::V1 { hybrid: true }.to_string(), "v1 (hybrid)");
    }

    #[test]
    fn validation_rejects_what_docker_rejects() {
        let mib = 1024 * 1024;
        let ok = Resources {
            memory_bytes: Some(64 * mib),
            memory_swap_bytes: Some(128 * mib),
            cpu_quota_us: Some(-1),
            cpu_period_us: Some(100_000),
            cpu_shares: Some(512),
            pids_max: Some(0),
            device_rules: Vec::new(),
            unified: Vec::new(),
        };
        ok.validate().unwrap();
        let bad = [
            Resources {
                memory_bytes: Some(mib),
                ..Default::default()
            },
            Resources {
                memory_swap_bytes: Some(64 * mib),
                ..Default::default()
            },
            Resources {
                memory_bytes: Some(64 * mib),
                memory_swap_bytes: Some(32 * mib),
                ..Default::default()
            },
            Resources {
                cpu_quota_us: Some(0),
                ..Default::default()
            },
            Resources {
                cpu_period_us: Some(10),
                ..Default::default()
            },
            Resources {
                unified: vec![("../cpu.max".into(), "max".into())],
                ..Default::default()
            },
        ];
        for r in bad {
            assert!(
                matches!(r.validate(), Err(CgroupError::InvalidResources(_))),
                "{r:?}"
            );
        }
    }

    #[test]
    fn oom_kill_and_keyed_values_parse() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(oom_control, "oom_kill"), Some(3));
        assert_eq!(parse_keyed(oom_control, "oom_kill_disable"), Some(0));
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_keyed(events, "oom_kill"), Some(2));
        assert_eq!(parse_keyed("under_oom 0\n", "oom_kill"), None);
        assert_eq!(parse_keyed("oom_kill x\n", "oom_kill"), None);
    }

    #[test]
    fn shares_map_onto_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 20), 10_000);
        assert!(shares_to_weight(512) < 100 && shares_to_weight(2048) > 100);
    }

    #[test]
    fn relative_paths_stay_below_the_root() {
        let cg = Cgroup::with_mode(
            Path::new("/fake"),
            Path::new("/twinbox/../../abc"),
            CgroupMode::V2,
        );
        assert_eq!(cg.relative(), Path::new("twinbox/abc"));
        assert_eq!(cg.path(), Path::new("/fake/twinbox/abc"));
        let root = Cgroup::with_mode(Path::new("/fake"), Path::new("/"), CgroupMode::V2);
        assert!(matches!(
            root.destroy(),
            Err(CgroupError::RootCgroup { .. })
        ));
        assert!(matches!(
            root.create(&Resources::default()),
            Err(CgroupError::RootCgroup { .. })
        ));
    }

    #[test]
    fn missing_controller_error_names_it_and_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("cpu")).unwrap();
        let cg = Cgroup::new(tmp.path(), Path::new("twinbox/x")).unwrap();
        let err = cg
            .create(&Resources {
                memory_bytes: Some(64 << 20),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cgroup controller memory is not mounted at {}: mount it or run without --memory",
                tmp.path().join("memory").display()
            )
        );
        // Nothing is left behind after a failed create.
        assert!(!tmp.path().join("cpu/twinbox/x").exists());
    }

    #[test]
    fn kill_all_signals_every_listed_process() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), true);
        let cg = Cgroup::new(tmp.path(), Path::new("twinbox/k")).unwrap();
        cg.create(&Resources::default()).unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id().to_string();
        write(&tmp.path().join("memory/twinbox/k/cgroup.procs"), &pid);
        // A process present in only one hierarchy is still found.
        write(&tmp.path().join("devices/twinbox/k/cgroup.procs"), "");
        cg.kill_all(libc::SIGKILL).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        // The fake freezer was frozen around the signal and thawed after.
        assert_eq!(
            read(&tmp.path().join("freezer/twinbox/k/freezer.state")),
            "THAWED"
        );
        assert!(matches!(
            cg.kill_all(12345),
            Err(CgroupError::InvalidSignal { signal: 12345 })
        ));
    }

    /// Skip reasons for the real-cgroup test; `None` when it can run.
    fn real_cgroup_unavailable(root: &Path) -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some("not running as root".into());
        }
        match detect_mode(root) {
            Err(e) => Some(e.to_string()),
            Ok(CgroupMode::V2) => {
                let controllers =
                    std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                let have: Vec<&str> = controllers.split_whitespace().collect();
                (!have.contains(&"memory") || !have.contains(&"pids"))
                    .then(|| format!("cgroup v2 at {} lacks memory or pids", root.display()))
            }
            Ok(CgroupMode::V1 { .. }) => (!root.join("memory").is_dir()
                || !root.join("pids").is_dir())
            .then(|| format!("cgroup v1 at {} lacks memory or pids", root.display())),
        }
    }

    /// Kills the child and removes the cgroup even when an assertion fails.
    struct Cleanup<'a>(&'a Cgroup, Option<std::process::Child>);

    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            if let Some(child) = &mut self.1 {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = self.0.destroy();
        }
    }

    #[test]
    fn real_cgroup_limits_join_usage_kill_destroy() {
        let root = Path::new(DEFAULT_FS_ROOT);
        if let Some(why) = real_cgroup_unavailable(root) {
            eprintln!("skipping the real cgroup test: {why}");
            return;
        }
        let relative = PathBuf::from(format!("twinbox-test-{}", std::process::id()));
        let cg = Cgroup::new(root, &relative).unwrap();
        let mut res = Resources {
            memory_bytes: Some(64 << 20),
            pids_max: Some(10),
            ..Default::default()
        };
        let cpu_available = match cg.mode() {
            CgroupMode::V1 { .. } => root.join("cpu").is_dir(),
            CgroupMode::V2 => std::fs::read_to_string(root.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == "cpu"),
        };
        if cpu_available {
            res.cpu_quota_us = Some(50_000);
            res.cpu_period_us = Some(100_000);
            res.cpu_shares = Some(512);
        }
        cg.create(&res).unwrap();
        let mut guard = Cleanup(&cg, None);
        assert!(cg.exists());

        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        guard.1 = Some(child);
        cg.join(pid).unwrap();

        let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let needle = format!("/{}", relative.display());
        assert!(
            proc_cgroup
                .lines()
                .any(|l| l.contains("memory") && l.ends_with(&needle))
                || (cg.mode() == CgroupMode::V2 && proc_cgroup.contains(&needle)),
            "{proc_cgroup}"
        );

        let usage = cg.usage().unwrap();
        eprintln!("usage of {}: {usage:?}", cg.path().display());
        assert_eq!(usage.pids_current, Some(1));
        assert_eq!(usage.pids_max, Some(10));
        assert_eq!(usage.memory_limit_bytes, Some(64 << 20));
        assert!(usage.memory_bytes.is_some());
        assert!(usage.cpu_usage_ns.is_some());
        assert_eq!(usage.oom_kills, Some(0));
        assert_eq!(cg.pids().unwrap(), vec![pid]);

        if let CgroupMode::V1 { .. } = cg.mode() {
            let memsw = cg.path().join("memory.memsw.limit_in_bytes");
            if memsw.is_file() {
                assert_eq!(read(&memsw), (64u64 << 20).to_string());
            }
            if cpu_available {
                let cpu = root.join("cpu").join(&relative);
                assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
                assert_eq!(read(&cpu.join("cpu.shares")), "512");
            }
        }

        cg.kill_all(libc::SIGKILL).unwrap();
        let status = guard.1.as_mut().unwrap().wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        cg.destroy().unwrap();
        assert!(!cg.exists());
        // Destroying twice is fine.
        cg.destroy().unwrap();
    }

    /// On a hybrid host, drive the controller-less cgroup2 at unified/ as a v2
    /// tree: exercises real mkdir, cgroup.procs, cpu.stat and cgroup.kill.
    #[test]
    fn real_unified_hierarchy_join_and_kill() {
        let root = Path::new(DEFAULT_FS_ROOT);
        if !nix::unistd::geteuid().is_root()
            || detect_mode(root).ok() != Some(CgroupMode::V1 { hybrid: true })
        {
            eprintln!("skipping the real unified-hierarchy test: needs root on a hybrid host");
            return;
        }
        let unified = root.join("unified");
        let relative = PathBuf::from(format!("twinbox-test-unified-{}", std::process::id()));
        let cg = Cgroup::new(&unified, &relative).unwrap();
        assert_eq!(cg.mode(), CgroupMode::V2);
        cg.create(&Resources::default()).unwrap();
        let mut guard = Cleanup(&cg, None);
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        guard.1 = Some(child);
        cg.join(pid).unwrap();
        assert_eq!(cg.pids().unwrap(), vec![pid]);
        let usage = cg.usage().unwrap();
        // No memory or pids controller in this hierarchy: unknown, not zero.
        assert_eq!(usage.memory_bytes, None);
        assert_eq!(usage.pids_current, None);
        assert!(usage.cpu_usage_ns.is_some());
        // A limit needing a controller this hierarchy lacks is refused by name.
        let err = cg
            .create(&Resources {
                pids_max: Some(5),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::ControllerUnavailable {
                    controller: "pids",
                    ..
                }
            ),
            "{err}"
        );
        cg.kill_all(libc::SIGKILL).unwrap();
        let status = guard.1.as_mut().unwrap().wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        cg.destroy().unwrap();
        assert!(!cg.exists());
    }
}
