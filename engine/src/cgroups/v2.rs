//! cgroup v2: one directory in the unified hierarchy. A controller is usable in
//! a cgroup only when every ancestor lists it in cgroup.subtree_control, so
//! `create` enables what it needs from the root down.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{
    collect_procs, device_filter, join_dir, read_string, remove_cgroup_dir, shares_to_weight,
    signal_pids, usage_keyed, usage_u64, write_value, CgroupError, Resources, Usage,
};

/// Enabled whenever the host offers them, so usage() has numbers even for a
/// container without limits. cpu is only enabled when a cpu limit asks for it:
/// enabling it fails on hosts running realtime tasks outside the root cgroup.
const STATS_CONTROLLERS: &[&str] = &["memory", "pids"];

pub(super) struct V2 {
    fs_root: PathBuf,
    relative: PathBuf,
}

impl V2 {
    pub(super) fn new(fs_root: &Path, relative: &Path) -> Self {
        Self {
            fs_root: fs_root.to_path_buf(),
            relative: relative.to_path_buf(),
        }
    }

    pub(super) fn dir(&self) -> PathBuf {
        self.fs_root.join(&self.relative)
    }

    fn existing_dir(&self) -> Result<PathBuf, CgroupError> {
        let dir = self.dir();
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(CgroupError::NotCreated { path: dir })
        }
    }

    pub(super) fn create(&self, res: &Resources) -> Result<(), CgroupError> {
        let root_file = self.fs_root.join("cgroup.controllers");
        let available: BTreeSet<String> = read_string(&root_file)?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let needed = res.needed_controllers();
        for &(controller, flag) in &needed {
            if !available.contains(controller) {
                return Err(CgroupError::ControllerUnavailable {
                    controller,
                    file: root_file,
                    flag,
                });
            }
        }
        let wanted: Vec<&str> = ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|c| {
                available.contains(*c)
                    && (STATS_CONTROLLERS.contains(c) || needed.iter().any(|(n, _)| n == c))
            })
            .collect();

        // Walk down from the root: enable in the parent, then make the child.
        // The child's available controllers are what its parent enabled.
        let mut parent = self.fs_root.clone();
        let mut parent_available = available;
        for component in self.relative.components() {
            let want: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|c| parent_available.contains(*c))
                .collect();
            parent_available = enable_controllers(&parent, &want)?;
            let child = parent.join(component);
            match std::fs::create_dir(&child) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(CgroupError::CreateDir {
                        path: child,
                        source,
                    })
                }
            }
            parent = child;
        }
        for &(controller, flag) in &needed {
            if !parent_available.contains(controller) {
                return Err(CgroupError::ControllerUnavailable {
                    controller,
                    file: parent.join("cgroup.controllers"),
                    flag,
                });
            }
        }

        let dir = self.dir();
        write_memory(&dir, res)?;
        write_cpu(&dir, res)?;
        if let Some(max) = res.pids_max {
            let value = if max <= 0 {
                "max".to_string()
            } else {
                max.to_string()
            };
            write_value(&dir.join("pids.max"), &value)?;
        }
        // No rules (an update of the limits) keeps the filter already attached.
        if !res.device_rules.is_empty() {
            device_filter::apply(&dir, &res.device_rules)?;
        }
        for (file, value) in &res.unified {
            write_value(&dir.join(file), value)?;
        }
        Ok(())
    }

    pub(super) fn procs_file(&self) -> Result<PathBuf, CgroupError> {
        Ok(self.existing_dir()?.join("cgroup.procs"))
    }

    pub(super) fn join(&self, pid: i32) -> Result<(), CgroupError> {
        join_dir(&self.existing_dir()?, pid)
    }

    pub(super) fn usage(&self) -> Result<Usage, CgroupError> {
        let dir = self.existing_dir()?;
        Ok(Usage {
            memory_bytes: usage_u64(&dir.join("memory.current")),
            // memory.peak appeared in Linux 5.19.
            memory_peak_bytes: usage_u64(&dir.join("memory.peak")),
            memory_limit_bytes: usage_u64(&dir.join("memory.max")),
            oom_kills: usage_keyed(&dir.join("memory.events"), "oom_kill"),
            cpu_usage_ns: usage_keyed(&dir.join("cpu.stat"), "usage_usec")
                .map(|us| us.saturating_mul(1000)),
            pids_current: usage_u64(&dir.join("pids.current")),
            pids_max: usage_u64(&dir.join("pids.max")),
        })
    }

    pub(super) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        collect_procs(&self.existing_dir()?, &mut pids)?;
        Ok(pids.into_iter().collect())
    }

    pub(super) fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let dir = self.existing_dir()?;
        write_value(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        // cgroup.events says "frozen 1" once every task has stopped
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let events = read_string(&dir.join("cgroup.events")).unwrap_or_default();
            if events.lines().any(|l| l.trim() == want) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(CgroupError::Read {
                    path: dir.join("cgroup.events"),
                    source: std::io::Error::other("the processes did not change state in time"),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    pub(super) fn is_frozen(&self) -> bool {
        read_string(&self.dir().join("cgroup.freeze")).is_ok_and(|s| s == "1")
    }

    pub(super) fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Ok(());
        }
        // cgroup.kill (Linux 5.14) kills the whole subtree atomically, so
        // nothing forked meanwhile can escape.
        let kill_file = dir.join("cgroup.kill");
        if signal == libc::SIGKILL && kill_file.is_file() {
            return write_value(&kill_file, "1");
        }
        let mut pids = BTreeSet::new();
        collect_procs(&dir, &mut pids)?;
        signal_pids(pids, signal)
    }

    pub(super) fn destroy(&self) -> Result<(), CgroupError> {
        remove_cgroup_dir(&self.dir())
    }
}

/// Make sure `controllers` are enabled in `dir/cgroup.subtree_control` and
/// return everything enabled there afterwards (what its children may use).
/// Only the missing ones are written, in one write.
fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<BTreeSet<String>, CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    // The kernel lists "memory pids"; a fake tree may hold what we wrote ("+memory").
    let mut enabled: BTreeSet<String> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .split_whitespace()
        .map(|c| c.trim_start_matches('+').to_string())
        .collect();
    let missing: Vec<&str> = controllers
        .iter()
        .copied()
        .filter(|c| !enabled.contains(*c))
        .collect();
    if missing.is_empty() {
        return Ok(enabled);
    }
    let value = missing
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    tracing::debug!(path = %file.display(), value, "enable cgroup controllers");
    std::fs::write(&file, &value).map_err(|source| CgroupError::EnableControllers {
        path: file.clone(),
        controllers: value.clone(),
        source,
    })?;
    enabled.extend(missing.into_iter().map(str::to_string));
    Ok(enabled)
}

/// memory.max, and memory.swap.max which on v2 is swap alone (Docker's
/// memory-swap minus memory); 0 swap when only a memory limit is given.
fn write_memory(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    let Some(memory) = res.memory_bytes else {
        return Ok(());
    };
    write_value(&dir.join("memory.max"), &memory.to_string())?;
    let swap = res
        .memory_swap_bytes
        .unwrap_or(memory)
        .saturating_sub(memory);
    let swap_file = dir.join("memory.swap.max");
    if swap_file.is_file() {
        write_value(&swap_file, &swap.to_string())?;
    } else if swap > 0 {
        tracing::warn!(
            file = %swap_file.display(),
            "swap accounting is off: the memory+swap limit is ignored"
        );
    }
    Ok(())
}

/// cpu.max is "<quota|max> <period>"; a missing half keeps the current value.
fn write_cpu(dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    let max_file = dir.join("cpu.max");
    if res.cpu_quota_us.is_some() || res.cpu_period_us.is_some() {
        let quota = match res.cpu_quota_us {
            Some(q) if q < 0 => "max".to_string(),
            Some(q) => q.to_string(),
            None => std::fs::read_to_string(&max_file)
                .ok()
                .and_then(|s| s.split_whitespace().next().map(str::to_string))
                .unwrap_or_else(|| "max".to_string()),
        };
        let value = match res.cpu_period_us {
            Some(p) => format!("{quota} {p}"),
            None => quota,
        };
        write_value(&max_file, &value)?;
    }
    if let Some(shares) = res.cpu_shares.filter(|&s| s > 0) {
        write_value(
            &dir.join("cpu.weight"),
            &shares_to_weight(shares).to_string(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Cgroup, CgroupMode};
    use super::*;

    const ALL: &str = "cpuset cpu io memory hugetlb pids rdma misc";

    fn tokens(path: &Path) -> BTreeSet<String> {
        read(path)
            .split_whitespace()
            .map(|t| t.trim_start_matches('+').to_string())
            .collect()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn create_enables_controllers_down_the_tree_and_writes_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v2(root, ALL);
        // The kernel would create memory.swap.max in the new directory.
        write(&root.join("twinbox/c1/memory.swap.max"), "max\n");
        let cg = Cgroup::new(root, Path::new("twinbox/c1")).unwrap();
        assert_eq!(cg.mode(), CgroupMode::V2);
        cg.create(&Resources {
            memory_bytes: Some(64 << 20),
            memory_swap_bytes: Some(96 << 20),
            cpu_quota_us: Some(50_000),
            cpu_period_us: Some(100_000),
            cpu_shares: Some(1024),
            pids_max: Some(10),
            device_rules: Vec::new(),
            unified: vec![("cpu.max".into(), "500000 1000000".into())],
        })
        .unwrap();
        let want = set(&["memory", "cpu", "pids"]);
        assert_eq!(tokens(&root.join("cgroup.subtree_control")), want);
        assert_eq!(tokens(&root.join("twinbox/cgroup.subtree_control")), want);
        // Never in the leaf: a cgroup with controllers enabled below it may
        // not hold processes.
        let leaf = root.join("twinbox/c1");
        assert!(!leaf.join("cgroup.subtree_control").exists());
        assert_eq!(read(&leaf.join("memory.max")), "67108864");
        assert_eq!(read(&leaf.join("memory.swap.max")), "33554432");
        // linux.resources.unified is written last, over the limits
        assert_eq!(read(&leaf.join("cpu.max")), "500000 1000000");
        assert_eq!(read(&leaf.join("cpu.weight")), "100");
        assert_eq!(read(&leaf.join("pids.max")), "10");
        assert_eq!(cg.path(), leaf);
    }

    #[test]
    fn only_missing_controllers_are_enabled_and_cpu_only_on_demand() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v2(root, ALL);
        write(&root.join("cgroup.subtree_control"), "memory pids\n");
        let cg = Cgroup::new(root, Path::new("a/b")).unwrap();
        cg.create(&Resources {
            memory_bytes: Some(64 << 20),
            ..Default::default()
        })
        .unwrap();
        // Already enabled at the root: left untouched (no write happened).
        assert_eq!(read(&root.join("cgroup.subtree_control")), "memory pids");
        assert_eq!(
            tokens(&root.join("a/cgroup.subtree_control")),
            set(&["memory", "pids"])
        );
        // No swap file in this fake leaf (swap accounting off): skipped quietly.
        assert!(!root.join("a/b/memory.swap.max").exists());

        let cg = Cgroup::new(root, Path::new("a/c")).unwrap();
        cg.create(&Resources {
            cpu_quota_us: Some(20_000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+cpu");
        assert_eq!(read(&root.join("a/cgroup.subtree_control")), "+cpu");
        assert_eq!(read(&root.join("a/c/cpu.max")), "20000");
    }

    #[test]
    fn unavailable_controller_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v2(root, "cpu memory");
        let cg = Cgroup::new(root, Path::new("x")).unwrap();
        let err = cg
            .create(&Resources {
                pids_max: Some(5),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cgroup v2 controller pids is not available in {}: enable it in the parent's cgroup.subtree_control or run without --pids-limit",
                root.join("cgroup.controllers").display()
            )
        );
        assert!(!root.join("x").exists());
        // Without a pids limit the container runs, just without pids stats.
        cg.create(&Resources::default()).unwrap();
        assert_eq!(
            tokens(&root.join("cgroup.subtree_control")),
            set(&["memory"])
        );
    }

    #[test]
    fn cpu_max_keeps_the_half_not_given() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v2(root, ALL);
        write(&root.join("q/cpu.max"), "max 100000\n");
        let cg = Cgroup::new(root, Path::new("q")).unwrap();
        cg.create(&Resources {
            cpu_period_us: Some(50_000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(read(&root.join("q/cpu.max")), "max 50000");
        cg.create(&Resources {
            cpu_quota_us: Some(-1),
            cpu_period_us: Some(20_000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(read(&root.join("q/cpu.max")), "max 20000");
    }

    #[test]
    fn usage_reads_v2_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v2(root, ALL);
        let dir = root.join("u");
        write(&dir.join("memory.current"), "1048576\n");
        write(&dir.join("memory.peak"), "2097152\n");
        write(&dir.join("memory.max"), "max\n");
        write(
            &dir.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        write(
            &dir.join("cpu.stat"),
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
        );
        write(&dir.join("pids.current"), "2\n");
        write(&dir.join("pids.max"), "10\n");
        let cg = Cgroup::new(root, Path::new("u")).unwrap();
        assert_eq!(
            cg.usage().unwrap(),
            Usage {
                memory_bytes: Some(1 << 20),
                memory_peak_bytes: Some(2 << 20),
                memory_limit_bytes: None,
                oom_kills: Some(1),
                cpu_usage_ns: Some(2_500_000),
                pids_current: Some(2),
                pids_max: Some(10),
            }
        );
        std::fs::remove_file(dir.join("memory.peak")).unwrap();
        write(&dir.join("memory.max"), "67108864\n");
        let usage = cg.usage().unwrap();
        assert_eq!(usage.memory_peak_bytes, None);
        assert_eq!(usage.memory_limit_bytes, Some(64 << 20));
    }

    #[test]
    fn join_pids_kill_and_destroy() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_v2(root, ALL);
        let cg = Cgroup::new(root, Path::new("twinbox/k")).unwrap();
        assert!(matches!(cg.join(1), Err(CgroupError::NotCreated { .. })));
        cg.create(&Resources::default()).unwrap();
        cg.join(0).unwrap();
        let dir = root.join("twinbox/k");
        assert_eq!(read(&dir.join("cgroup.procs")), "0");

        write(&dir.join("cgroup.procs"), "12\n");
        write(&dir.join("sub/cgroup.procs"), "34\n");
        assert_eq!(cg.pids().unwrap(), vec![12, 34]);

        // SIGKILL goes through cgroup.kill when the kernel has it.
        write(&dir.join("cgroup.kill"), "");
        cg.kill_all(libc::SIGKILL).unwrap();
        assert_eq!(read(&dir.join("cgroup.kill")), "1");

        for f in ["cgroup.procs", "cgroup.kill", "sub/cgroup.procs"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        cg.destroy().unwrap();
        assert!(!dir.exists());
        assert!(root.join("twinbox").is_dir());
        cg.destroy().unwrap();
        // Nothing to signal in a cgroup that is gone.
        cg.kill_all(libc::SIGTERM).unwrap();
    }
}
