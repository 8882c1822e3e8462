//! Memory as each side reports it: a process's resident set (the container's
//! supervisor, the VMM), `/proc/meminfo` as a guest sees it, and a container's
//! memory on the host (its cgroup's peak plus its supervisor).

use serde::Serialize;
use twinbox_engine::util::procfs;

use crate::report::Measured;

/// The shell line a lesson runs inside a VM to hear what the guest uses.
pub const MEMINFO_SCRIPT: &str = "cat /proc/meminfo";

/// The lines of `/proc/meminfo` the lessons quote, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
    pub free: u64,
}

impl MemInfo {
    /// What `free` calls used, near enough: total minus what is available
    /// to new programs without swapping.
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.available)
    }
}

/// Finds `MemTotal`, `MemFree` and `MemAvailable` in text that contains a
/// copy of `/proc/meminfo` (other lines around it are ignored).
pub fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
            .map(|kib| kib * 1024)
    };
    let total = field("MemTotal").ok_or("no MemTotal line in the guest's /proc/meminfo output")?;
    let free = field("MemFree").ok_or("no MemFree line in the guest's /proc/meminfo output")?;
    let available = field("MemAvailable").unwrap_or(free);
    Ok(MemInfo {
        total,
        available,
        free,
    })
}

/// One look at a process's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessMemory {
    pub rss: u64,
    /// Shared pages divided among the processes that map them.
    pub pss: Option<u64>,
    /// Pages only this process holds.
    pub private: Option<u64>,
    /// The most the process ever had resident (VmHWM).
    pub peak_rss: Option<u64>,
}

/// Reads `/proc/PID`; `None` once the process is gone.
pub fn process_memory(pid: i32) -> Option<ProcessMemory> {
    Some(ProcessMemory {
        rss: procfs::rss_bytes(pid)?,
        pss: procfs::pss_bytes(pid),
        private: procfs::private_bytes(pid),
        peak_rss: procfs::status_kib(pid, "VmHWM:").map(|k| k * 1024),
    })
}

/// The host's own `/proc/meminfo`.
pub fn host_meminfo() -> Result<MemInfo, String> {
    let text =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("/proc/meminfo: {e}"))?;
    parse_meminfo(&text)
}

/// Container memory: what its cgroup charged at the peak, plus the
/// supervisor process that owns it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerMemory {
    pub cgroup_peak: Measured<u64>,
    pub supervisor_rss: Measured<u64>,
    pub supervisor_pss: Measured<u64>,
    pub total: Measured<u64>,
}

impl ContainerMemory {
    /// Every part failed, for the same reason.
    pub fn failed(why: &str) -> ContainerMemory {
        let f = || Measured::failed(why);
        ContainerMemory {
            cgroup_peak: f(),
            supervisor_rss: f(),
            supervisor_pss: f(),
            total: f(),
        }
    }
}

/// A container's memory from its cgroup's peak and the last look at its
/// supervisor (either may be missing, each with its reason).
pub fn container_memory(
    cgroup_peak: Option<u64>,
    supervisor: Option<ProcessMemory>,
) -> ContainerMemory {
    let peak = Measured::from_option(
        cgroup_peak,
        "the cgroup reported no peak (memory controller missing?)",
    );
    let rss = Measured::from_option(
        supervisor.map(|m| m.rss),
        "the container ended before its supervisor could be sampled: give a command that runs a little longer",
    );
    let pss = match supervisor {
        Some(m) => Measured::from_option(m.pss, "no smaps_rollup for the supervisor"),
        None => Measured::failed("the supervisor was not sampled"),
    };
    let total = match (peak.value(), rss.value()) {
        (Some(p), Some(r)) => Measured::Value(p + r),
        _ => Measured::failed("needs both the cgroup peak and the supervisor's RSS"),
    };
    ContainerMemory {
        cgroup_peak: peak,
        supervisor_rss: rss,
        supervisor_pss: pss,
        total,
    }
}

/// The median of the values that were measured; when none was, the first
/// reason (or `none`). Several runs of a memory sample come down to one number.
pub fn median_measured<'a>(
    samples: impl IntoIterator<Item = &'a Measured<u64>>,
    none: &str,
) -> Measured<u64> {
    let mut vals = Vec::new();
    let mut why = None;
    for s in samples {
        match s {
            Measured::Value(v) => vals.push(*v),
            Measured::Failed(w) => {
                why.get_or_insert_with(|| w.clone());
            }
        }
    }
    vals.sort_unstable();
    match vals.get(vals.len().saturating_sub(1) / 2) {
        Some(v) => Measured::Value(*v),
        None => Measured::failed(why.unwrap_or_else(|| none.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_inside_other_output() {
        let text = "hello\nMemTotal:         246012 kB\nMemFree:          200000 kB\nMemAvailable:     210000 kB\nBuffers: 0 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 246012 * 1024);
        assert_eq!(m.used(), (246012 - 210000) * 1024);
        assert!(parse_meminfo("nothing").is_err());
        // a MemTotalX line must not be taken for MemTotal
        assert!(parse_meminfo("MemTotalX: 5 kB\nMemFree: 1 kB").is_err());
    }

    #[test]
    fn median_of_what_was_measured() {
        let m = [
            Measured::Value(5),
            Measured::failed("gone"),
            Measured::Value(1),
            Measured::Value(3),
        ];
        assert_eq!(median_measured(&m, "none"), Measured::Value(3));
        let f: [Measured<u64>; 1] = [Measured::failed("gone")];
        assert_eq!(median_measured(&f, "none"), Measured::failed("gone"));
        assert_eq!(median_measured(&[], "none"), Measured::failed("none"));
    }

    #[test]
    fn reads_this_process() {
        let m = process_memory(std::process::id() as i32).unwrap();
        assert!(m.rss > 0);
        assert!(m.peak_rss.unwrap() >= m.rss);
        assert!(host_meminfo().unwrap().total > 0);
    }
}
