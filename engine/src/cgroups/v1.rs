//! cgroup v1: one directory per controller hierarchy (`<root>/memory/<relative>`,
//! `<root>/cpu/<relative>`, ...). Co-mounted controllers such as `cpu,cpuacct`
//! share one directory and are handled once.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::{
    collect_procs, create_dir_all, join_dir, read_string, remove_cgroup_dir, signal_pids,
    usage_keyed, usage_u64, write_value, CgroupError, Resources, Usage,
};

/// The hierarchies a container is placed in, when mounted: the controllers, and
/// name=systemd (mounted at `systemd`), where runc and Docker place it too, so
/// the container's `/sys/fs/cgroup/systemd` shows its own cgroup, not the host's.
pub(super) const CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "cpuset", "blkio", "devices", "freezer", "systemd",
];

/// The kernel reports "no memory limit" as LONG_MAX rounded down to a page
/// (9223372036854771712 with 4 KiB pages); anything this large is unlimited.
const UNLIMITED_THRESHOLD: u64 = 1 << 62;

/// How long kill_all waits for the freezer before signalling without it.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);

/// One mounted v1 hierarchy and the controllers (of [`CONTROLLERS`]) it carries.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Hierarchy {
    pub controllers: Vec<&'static str>,
    pub mount: PathBuf,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.contains(&controller)
    }

    /// True for a hierarchy with a resource controller (not only name=systemd).
    pub(super) fn controls(&self) -> bool {
        self.controllers.iter().any(|c| *c != "systemd")
    }
}

/// The v1 hierarchies mounted under `fs_root`, in [`CONTROLLERS`] order, with
/// co-mounted controllers merged. `cpu` may be a directory or a symlink to
/// `cpu,cpuacct` (systemd's layout), or only `cpu,cpuacct` may exist.
/// A missing `fs_root` yields an empty list.
pub(super) fn discover(fs_root: &Path) -> Result<Vec<Hierarchy>, CgroupError> {
    let names: Vec<String> = match std::fs::read_dir(fs_root) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::ReadDir {
                path: fs_root.to_path_buf(),
                source,
            })
        }
    };
    let mut found: Vec<(Hierarchy, Option<(u64, u64)>)> = Vec::new();
    for &controller in CONTROLLERS {
        let name = if names.iter().any(|n| n == controller) {
            controller.to_string()
        } else if let Some(n) = names
            .iter()
            .find(|n| n.split(',').any(|part| part == controller))
        {
            n.clone()
        } else {
            continue;
        };
        let mount = fs_root.join(&name);
        // Symlinks (cpu -> cpu,cpuacct) resolve to the same hierarchy: the
        // same directory, found by one stat (canonicalize read every link
        // of the path, nine times over, on every run)
        let same = std::fs::metadata(&mount).ok().map(|m| (m.dev(), m.ino()));
        match found
            .iter_mut()
            .find(|(h, c)| same.is_some_and(|s| *c == Some(s)) || h.mount == mount)
        {
            Some((h, _)) => h.controllers.push(controller),
            None => found.push((
                Hierarchy {
                    controllers: vec![controller],
                    mount,
                },
                same,
            )),
        }
    }
    Ok(found.into_iter().map(|(h, _)| h).collect())
}

pub(super) struct V1 {
    fs_root: PathBuf,
    relative: PathBuf,
    /// The mounted hierarchies, found once per cgroup: hosts do not remount
    /// them under a running container, and each discovery costs a
    /// directory listing and a stat per controller.
    found: OnceLock<Vec<Hierarchy>>,
}

impl V1 {
    pub(super) fn new(fs_root: &Path, relative: &Path) -> Self {
        Self {
            fs_root: fs_root.to_path_buf(),
            relative: relative.to_path_buf(),
            found: OnceLock::new(),
        }
    }

    /// Takes the hierarchies already discovered (by `detect_mode`) instead
    /// of finding them again; a no-op once they are known.
    pub(super) fn remember_hierarchies(&self, hierarchies: Vec<Hierarchy>) {
        let _ = self.found.set(hierarchies);
    }

    fn hierarchies(&self) -> Result<Vec<Hierarchy>, CgroupError> {
        if let Some(found) = self.found.get() {
            return Ok(found.clone());
        }
        // an error (no cgroup fs yet) is not remembered: a later call retries
        let found = discover(&self.fs_root)?;
        let _ = self.found.set(found.clone());
        Ok(found)
    }

    fn dir_in(&self, h: &Hierarchy) -> PathBuf {
        h.mount.join(&self.relative)
    }

    /// This cgroup's directory in the hierarchy carrying `controller`, if mounted.
    fn dir_of(&self, hs: &[Hierarchy], controller: &str) -> Option<PathBuf> {
        hs.iter()
            .find(|h| h.has(controller))
            .map(|h| self.dir_in(h))
    }

    /// Directories of this cgroup that exist, one per hierarchy.
    fn existing_dirs(&self, hs: &[Hierarchy]) -> Vec<PathBuf> {
        hs.iter()
            .map(|h| self.dir_in(h))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// The memory hierarchy's directory (where it would be, if not mounted).
    pub(super) fn main_dir(&self) -> PathBuf {
        self.hierarchies()
            .ok()
            .and_then(|hs| self.dir_of(&hs, "memory"))
            .unwrap_or_else(|| self.fs_root.join("memory").join(&self.relative))
    }

    pub(super) fn exists(&self) -> bool {
        self.hierarchies()
            .is_ok_and(|hs| !self.existing_dirs(&hs).is_empty())
    }

    pub(super) fn create(&self, res: &Resources) -> Result<(), CgroupError> {
        if let Some((file, _)) = res.unified.first() {
            return Err(CgroupError::InvalidResources(format!(
                "linux.resources.unified ({file}) needs cgroup v2, and this host mounts v1"
            )));
        }
        let hs = self.hierarchies()?;
        if !hs.iter().any(Hierarchy::controls) {
            return Err(CgroupError::NoCgroupFs {
                root: self.fs_root.clone(),
            });
        }
        for (controller, flag) in res.needed_controllers() {
            if !hs.iter().any(|h| h.has(controller)) {
                return Err(CgroupError::ControllerNotMounted {
                    controller,
                    path: self.fs_root.join(controller),
                    flag,
                });
            }
        }
        for h in &hs {
            if h.has("cpuset") {
                self.create_cpuset_dirs(h)?;
            } else {
                create_dir_all(&self.dir_in(h))?;
            }
        }
        if let Some(dir) = self.dir_of(&hs, "memory") {
            write_memory(&dir, res)?;
        }
        if let Some(dir) = self.dir_of(&hs, "cpu") {
            write_cpu(&dir, res)?;
        }
        if let (Some(dir), Some(max)) = (self.dir_of(&hs, "pids"), res.pids_max) {
            let value = if max <= 0 {
                "max".to_string()
            } else {
                max.to_string()
            };
            write_value(&dir.join("pids.max"), &value)?;
        }
        if let Some(dir) = self.dir_of(&hs, "devices") {
            for (allow, rule) in &res.device_rules {
                let file = if *allow {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write_value(&dir.join(file), rule)?;
            }
        }
        Ok(())
    }

    /// A new cpuset cgroup starts with empty cpuset.cpus and cpuset.mems, and the
    /// kernel refuses to let any process join it (ENOSPC) until both are set, so
    /// every level we pass through inherits its parent's values.
    fn create_cpuset_dirs(&self, h: &Hierarchy) -> Result<(), CgroupError> {
        let mut dir = h.mount.clone();
        for component in self.relative.components() {
            let parent = dir.clone();
            dir.push(component);
            create_dir_all(&dir)?;
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = dir.join(file);
                let inherited = parent.join(file);
                // Absent only in a fake tree or a kernel without cpuset files.
                if !own.is_file() && !inherited.is_file() {
                    continue;
                }
                let current = if own.is_file() {
                    read_string(&own)?
                } else {
                    String::new()
                };
                if current.is_empty() {
                    let value = read_string(&inherited)?;
                    if !value.is_empty() {
                        write_value(&own, &value)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn join(&self, pid: i32) -> Result<(), CgroupError> {
        let hs = self.hierarchies()?;
        let dirs = self.existing_dirs(&hs);
        if dirs.is_empty() {
            return Err(CgroupError::NotCreated {
                path: self.main_dir(),
            });
        }
        for dir in dirs {
            join_dir(&dir, pid)?;
        }
        Ok(())
    }

    /// [`super::Cgroup::join_self`]: "0" into each hierarchy's `tasks`
    /// (`cgroup.procs` where a tree has no `tasks`).
    pub(super) fn join_self(&self) -> Result<(), CgroupError> {
        for file in self.join_self_files()? {
            super::join_file(&file, 0)?;
        }
        Ok(())
    }

    /// Each hierarchy's `tasks` (`cgroup.procs` where a tree has none).
    pub(super) fn join_self_files(&self) -> Result<Vec<PathBuf>, CgroupError> {
        let hs = self.hierarchies()?;
        let dirs = self.existing_dirs(&hs);
        if dirs.is_empty() {
            return Err(CgroupError::NotCreated {
                path: self.main_dir(),
            });
        }
        Ok(dirs
            .into_iter()
            .map(|dir| {
                let tasks = dir.join("tasks");
                if tasks.is_file() {
                    tasks
                } else {
                    dir.join("cgroup.procs")
                }
            })
            .collect())
    }

    pub(super) fn usage(&self) -> Result<Usage, CgroupError> {
        let hs = self.hierarchies()?;
        if self.existing_dirs(&hs).is_empty() {
            return Err(CgroupError::NotCreated {
                path: self.main_dir(),
            });
        }
        let mut usage = Usage::default();
        if let Some(dir) = self.dir_of(&hs, "memory") {
            usage.memory_bytes = usage_u64(&dir.join("memory.usage_in_bytes"));
            usage.memory_peak_bytes = usage_u64(&dir.join("memory.max_usage_in_bytes"));
            usage.memory_limit_bytes = usage_u64(&dir.join("memory.limit_in_bytes"))
                .filter(|&limit| limit < UNLIMITED_THRESHOLD);
            // "oom_kill N" appeared in memory.oom_control with Linux 4.13.
            usage.oom_kills = usage_keyed(&dir.join("memory.oom_control"), "oom_kill");
        }
        if let Some(dir) = self.dir_of(&hs, "cpuacct") {
            usage.cpu_usage_ns = usage_u64(&dir.join("cpuacct.usage"));
        }
        if let Some(dir) = self.dir_of(&hs, "pids") {
            usage.pids_current = usage_u64(&dir.join("pids.current"));
            usage.pids_max = usage_u64(&dir.join("pids.max"));
        }
        Ok(usage)
    }

    pub(super) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let hs = self.hierarchies()?;
        // memory and pids are always joined together; any other hierarchy
        // is a fallback for hosts without them.
        let dir = ["memory", "pids"]
            .iter()
            .filter_map(|c| self.dir_of(&hs, c))
            .find(|d| d.is_dir())
            .or_else(|| self.existing_dirs(&hs).into_iter().next())
            .ok_or_else(|| CgroupError::NotCreated {
                path: self.main_dir(),
            })?;
        let mut pids = BTreeSet::new();
        collect_procs(&dir, &mut pids)?;
        Ok(pids.into_iter().collect())
    }

    fn freezer_dir(&self) -> Result<PathBuf, CgroupError> {
        let hs = self.hierarchies()?;
        self.dir_of(&hs, "freezer")
            .filter(|d| d.is_dir())
            .ok_or_else(|| CgroupError::NotCreated {
                path: self.main_dir(),
            })
    }

    pub(super) fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.freezer_dir()?;
        if frozen {
            if freeze(&dir) {
                return Ok(());
            }
            return Err(CgroupError::Read {
                path: dir.join("freezer.state"),
                source: std::io::Error::other("the processes did not freeze in time"),
            });
        }
        write_value(&dir.join("freezer.state"), "THAWED")
    }

    pub(super) fn is_frozen(&self) -> bool {
        self.freezer_dir()
            .and_then(|d| read_string(&d.join("freezer.state")))
            .is_ok_and(|s| s == "FROZEN")
    }

    pub(super) fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let hs = self.hierarchies()?;
        let dirs = self.existing_dirs(&hs);
        // Nothing in any hierarchy (the usual case after a container's init
        // and, with it, its PID namespace are gone): nothing can fork either,
        // so the freezer's round trips are skipped.
        let mut present = BTreeSet::new();
        for dir in &dirs {
            collect_procs(dir, &mut present)?;
        }
        if present.is_empty() {
            return Ok(());
        }
        let freezer = self.dir_of(&hs, "freezer").filter(|d| d.is_dir());
        let frozen = match &freezer {
            Some(dir) if !contains_self(dir) => freeze(dir),
            _ => false,
        };
        let result = (|| {
            // Union over every hierarchy: a process that joined only some of
            // them must not survive.
            let mut pids = BTreeSet::new();
            for dir in &dirs {
                collect_procs(dir, &mut pids)?;
            }
            signal_pids(pids, signal)
        })();
        // Signals (even SIGKILL) take effect once the tasks run again.
        let thawed = match (&freezer, frozen) {
            (Some(dir), true) => write_value(&dir.join("freezer.state"), "THAWED"),
            _ => Ok(()),
        };
        result.and(thawed)
    }

    pub(super) fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        for h in &self.hierarchies()? {
            // Keep going so one busy hierarchy does not leak all the others.
            if let Err(e) = remove_cgroup_dir(&self.dir_in(h)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Memory limits. memory.memsw.limit_in_bytes (memory + swap) must never be
/// below memory.limit_in_bytes, so when the limit grows past the current memsw
/// value memsw is written first, otherwise second. memsw is missing when swap
/// accounting is off; then only the memory limit applies.
fn write_memory(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    let Some(memory) = res.memory_bytes else {
        return Ok(());
    };
    let limit_file = dir.join("memory.limit_in_bytes");
    let memsw_file = dir.join("memory.memsw.limit_in_bytes");
    let memsw = res.memory_swap_bytes.unwrap_or(memory);
    if !memsw_file.is_file() {
        if memsw != memory {
            tracing::warn!(
                file = %memsw_file.display(),
                "swap accounting is off (boot with swapaccount=1): the memory+swap limit is ignored"
            );
        }
        return write_value(&limit_file, &memory.to_string());
    }
    if memsw_first(memory, usage_u64(&memsw_file)) {
        write_value(&memsw_file, &memsw.to_string())?;
        write_value(&limit_file, &memory.to_string())
    } else {
        write_value(&limit_file, &memory.to_string())?;
        write_value(&memsw_file, &memsw.to_string())
    }
}

/// Whether memsw must be written before the memory limit: a limit above the
/// current memsw value would be refused.
fn memsw_first(new_memory: u64, current_memsw: Option<u64>) -> bool {
    current_memsw.is_some_and(|current| new_memory > current)
}

/// CFS period before quota: the kernel checks the quota against the period.
fn write_cpu(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    if let Some(period) = res.cpu_period_us {
        write_value(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
    }
    if let Some(quota) = res.cpu_quota_us {
        let quota = if quota < 0 { -1 } else { quota };
        write_value(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
    }
    if let Some(shares) = res.cpu_shares.filter(|&s| s > 0) {
        write_value(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    Ok(())
}

/// Whether the calling process sits in `dir`: freezing it would freeze us.
fn contains_self(dir: &Path) -> bool {
    let mut pids = BTreeSet::new();
    collect_procs(dir, &mut pids).is_err() || pids.contains(&(std::process::id() as i32))
}

/// Freeze the cgroup so nothing forks while we signal. Returns whether it froze;
/// on timeout it thaws again and the caller signals without the freezer.
fn freeze(dir: &Path) -> bool {
    let state = dir.join("freezer.state");
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    loop {
        // Re-writing FROZEN retries tasks that were busy the first time.
        if write_value(&state, "FROZEN").is_err() {
            return false;
        }
        match read_string(&state) {
            Ok(s) if s == "FROZEN" => return true,
            Ok(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => {
                tracing::warn!(path = %dir.display(), "cgroup did not freeze; signalling without the freezer");
                let _ = write_value(&state, "THAWED");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Cgroup, CgroupMode};
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn limits() -> Resources {
        Resources {
            memory_bytes: Some(64 * MIB),
            memory_swap_bytes: None,
            cpu_quota_us: Some(50_000),
            cpu_period_us: Some(100_000),
            cpu_shares: Some(512),
            pids_max: Some(10),
            device_rules: vec![(false, "a *:* rwm".into()), (true, "c 1:3 rwm".into())],
            unified: Vec::new(),
        }
    }

    #[test]
    fn create_writes_each_limit_into_its_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v1(root, true);
        // Swap accounting on: the kernel would show memsw in the new directory.
        write(
            &root.join("memory/twinbox/c1/memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        );
        let cg = Cgroup::new(root, Path::new("twinbox/c1")).unwrap();
        assert_eq!(cg.mode(), CgroupMode::V1 { hybrid: true });
        cg.create(&limits()).unwrap();

        let dir = |c: &str| root.join(c).join("twinbox/c1");
        assert_eq!(
            read(&dir("memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        // No --memory-swap: memory+swap equals memory, i.e. no swap.
        assert_eq!(
            read(&dir("memory").join("memory.memsw.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read(&dir("cpu").join("cpu.cfs_period_us")), "100000");
        assert_eq!(read(&dir("cpu").join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(&dir("cpu").join("cpu.shares")), "512");
        assert_eq!(read(&dir("pids").join("pids.max")), "10");
        // deny everything, then allow (the fake keeps the last write of each)
        assert_eq!(read(&dir("devices").join("devices.deny")), "a *:* rwm");
        assert_eq!(read(&dir("devices").join("devices.allow")), "c 1:3 rwm");
        for c in CONTROLLERS {
            assert!(dir(c).is_dir(), "no directory in the {c} hierarchy");
        }
        // cpuset values are inherited at every level so processes may join.
        for d in [root.join("cpuset/twinbox"), dir("cpuset")] {
            assert_eq!(read(&d.join("cpuset.cpus")), "0-1");
            assert_eq!(read(&d.join("cpuset.mems")), "0");
        }
        assert!(root.join("systemd/twinbox").is_dir());
        assert!(!root.join("unified/twinbox").exists());
        assert_eq!(cg.path(), dir("memory"));
    }

    #[test]
    fn unified_files_need_cgroup_v2() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), true);
        let cg = Cgroup::new(tmp.path(), Path::new("twinbox/u")).unwrap();
        let res = Resources {
            unified: vec![("cpu.max".into(), "max".into())],
            ..limits()
        };
        let err = cg.create(&res).unwrap_err().to_string();
        assert!(err.contains("needs cgroup v2"), "{err}");
        assert!(!cg.exists(), "nothing left behind");
    }

    #[test]
    fn memsw_is_skipped_without_swap_accounting() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), false);
        let cg = Cgroup::new(tmp.path(), Path::new("c2")).unwrap();
        let res = Resources {
            memory_bytes: Some(64 * MIB),
            memory_swap_bytes: Some(128 * MIB),
            ..Default::default()
        };
        cg.create(&res).unwrap();
        let dir = tmp.path().join("memory/c2");
        assert_eq!(read(&dir.join("memory.limit_in_bytes")), "67108864");
        assert!(!dir.join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn raising_memory_writes_memsw_first() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), false);
        let dir = tmp.path().join("memory/c3");
        // An existing cgroup limited to 64m with no swap, raised to 256m + 256m swap.
        write(&dir.join("memory.limit_in_bytes"), "67108864");
        write(&dir.join("memory.memsw.limit_in_bytes"), "67108864");
        let cg = Cgroup::new(tmp.path(), Path::new("c3")).unwrap();
        let res = Resources {
            memory_bytes: Some(256 * MIB),
            memory_swap_bytes: Some(512 * MIB),
            ..Default::default()
        };
        cg.create(&res).unwrap();
        assert_eq!(read(&dir.join("memory.limit_in_bytes")), "268435456");
        assert_eq!(read(&dir.join("memory.memsw.limit_in_bytes")), "536870912");
        // Raising past the current memsw needs memsw first; anything else
        // (lowering, a new unlimited cgroup) needs the limit first.
        assert!(memsw_first(256 * MIB, Some(64 * MIB)));
        assert!(!memsw_first(32 * MIB, Some(64 * MIB)));
        assert!(!memsw_first(64 * MIB, Some(9_223_372_036_854_771_712)));
        assert!(!memsw_first(64 * MIB, None));
    }

    #[test]
    fn join_writes_the_pid_into_every_hierarchy() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), true);
        let cg = Cgroup::new(tmp.path(), Path::new("twinbox/j")).unwrap();
        assert!(matches!(cg.join(0), Err(CgroupError::NotCreated { .. })));
        cg.create(&Resources::default()).unwrap();
        cg.join(0).unwrap();
        for c in CONTROLLERS {
            let procs = tmp.path().join(c).join("twinbox/j/cgroup.procs");
            assert_eq!(read(&procs), "0", "{c}");
        }
        assert!(!tmp.path().join("unified/twinbox/j").exists());
    }

    #[test]
    fn co_mounted_controllers_share_one_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in ["cpu,cpuacct", "memory", "pids"] {
            std::fs::create_dir(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).unwrap();
        let hs = discover(root).unwrap();
        let names: Vec<Vec<&str>> = hs.iter().map(|h| h.controllers.clone()).collect();
        assert_eq!(
            names,
            vec![vec!["memory"], vec!["cpu", "cpuacct"], vec!["pids"]]
        );

        // Without the symlinks the combined directory is still found.
        std::fs::remove_file(root.join("cpu")).unwrap();
        std::fs::remove_file(root.join("cpuacct")).unwrap();
        let hs = discover(root).unwrap();
        assert_eq!(hs[1].mount, root.join("cpu,cpuacct"));
        assert_eq!(hs[1].controllers, vec!["cpu", "cpuacct"]);

        let cg = Cgroup::new(root, Path::new("x")).unwrap();
        cg.create(&Resources {
            cpu_shares: Some(100),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(read(&root.join("cpu,cpuacct/x/cpu.shares")), "100");
        write(&root.join("cpu,cpuacct/x/cpuacct.usage"), "123456789\n");
        assert_eq!(cg.usage().unwrap().cpu_usage_ns, Some(123_456_789));
    }

    #[test]
    fn usage_reads_v1_files_and_leaves_unknowns_none() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v1(root, true);
        let mem = root.join("memory/u");
        write(&mem.join("memory.usage_in_bytes"), "1048576\n");
        write(&mem.join("memory.max_usage_in_bytes"), "2097152\n");
        write(&mem.join("memory.limit_in_bytes"), "67108864\n");
        write(
            &mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        );
        write(&root.join("cpuacct/u/cpuacct.usage"), "5000000\n");
        write(&root.join("pids/u/pids.current"), "3\n");
        write(&root.join("pids/u/pids.max"), "max\n");
        let cg = Cgroup::new(root, Path::new("u")).unwrap();
        assert_eq!(
            cg.usage().unwrap(),
            Usage {
                memory_bytes: Some(1 << 20),
                memory_peak_bytes: Some(2 << 20),
                memory_limit_bytes: Some(64 << 20),
                oom_kills: Some(4),
                cpu_usage_ns: Some(5_000_000),
                pids_current: Some(3),
                pids_max: None,
            }
        );

        // Unlimited memory reads as None; unreadable values are None, not 0.
        write(&mem.join("memory.limit_in_bytes"), "9223372036854771712\n");
        write(
            &mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        );
        std::fs::remove_file(root.join("cpuacct/u/cpuacct.usage")).unwrap();
        write(&root.join("pids/u/pids.current"), "garbage\n");
        let usage = cg.usage().unwrap();
        assert_eq!(usage.memory_limit_bytes, None);
        assert_eq!(usage.oom_kills, None);
        assert_eq!(usage.cpu_usage_ns, None);
        assert_eq!(usage.pids_current, None);

        let gone = Cgroup::new(root, Path::new("gone")).unwrap();
        assert!(matches!(gone.usage(), Err(CgroupError::NotCreated { .. })));
    }

    #[test]
    fn pids_include_child_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        fake_v1(tmp.path(), false);
        let mem = tmp.path().join("memory/p");
        write(&mem.join("cgroup.procs"), "42\n7\n");
        write(&mem.join("inner/cgroup.procs"), "99\n");
        let cg = Cgroup::new(tmp.path(), Path::new("p")).unwrap();
        assert_eq!(cg.pids().unwrap(), vec![7, 42, 99]);
        write(&mem.join("cgroup.procs"), "x\n");
        assert!(matches!(cg.pids(), Err(CgroupError::Parse { .. })));
    }

    #[test]
    fn destroy_removes_every_hierarchy_and_tolerates_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for c in ["memory", "cpu", "cpuacct", "pids"] {
            std::fs::create_dir(root.join(c)).unwrap();
        }
        let cg = Cgroup::new(root, Path::new("twinbox/d")).unwrap();
        cg.create(&Resources::default()).unwrap();
        std::fs::create_dir(root.join("memory/twinbox/d/nested")).unwrap();
        std::fs::remove_dir(root.join("pids/twinbox/d")).unwrap();
        assert!(cg.exists());
        cg.destroy().unwrap();
        assert!(!cg.exists());
        // The shared parent stays for other containers.
        assert!(root.join("memory/twinbox").is_dir());
        cg.destroy().unwrap();
    }
}
