//! What /proc says about a process: start time (to detect pid reuse), RSS, and
//! the command line, for `ps`, `top` and `inspect`.

use std::fs;

/// Field 22 of /proc/PID/stat: start time in clock ticks after boot, or None
/// when there is no such process or it is a zombie (dead, not yet reaped).
pub fn start_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command may contain spaces and ')': fields start after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Resident set size in bytes (VmRSS).
pub fn rss_bytes(pid: i32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// Proportional set size in bytes: shared pages (the binary's text, libc) are
/// divided among the processes that map them, so N supervisors count once.
pub fn pss_bytes(pid: i32) -> Option<u64> {
    smaps_rollup_bytes(pid, &["Pss:"])
}

/// Pages only this process holds (anonymous and private file pages), in bytes.
pub fn private_bytes(pid: i32) -> Option<u64> {
    smaps_rollup_bytes(pid, &["Private_Clean:", "Private_Dirty:"])
}

/// The sum of some kB fields of /proc/PID/smaps_rollup, in bytes.
fn smaps_rollup_bytes(pid: i32, fields: &[&str]) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let mut total = 0;
    for field in fields {
        let kb: u64 = rollup
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        total += kb;
    }
    Some(total * 1024)
}

/// A kB-valued field of `/proc/PID/status` (e.g. `VmHWM:`), in KiB.
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// (uid, ppid) of a process.
pub fn owner_and_parent(pid: i32) -> Option<(u32, i32)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    Some((get("Uid:")?.parse().ok()?, get("PPid:")?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(pss_bytes(me).unwrap() > 0);
        assert!(private_bytes(me).unwrap() <= rss_bytes(me).unwrap() + 4096);
        assert!(!cmdline(me).is_empty());
    }
}
