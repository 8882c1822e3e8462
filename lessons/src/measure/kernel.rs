//! What a kernel says about itself: its release (`uname -r`), its version
//! string (`/proc/version`) and the random id it picked at boot (`boot_id`).
//! Two views with the same boot_id are the same running kernel.

use serde::Serialize;

pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The shell line a lesson runs inside a container or VM to see its kernel.
pub const PROBE_SCRIPT: &str = "uname -r; cat /proc/sys/kernel/random/boot_id; cat /proc/version";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelView {
    pub release: String,
    pub boot_id: String,
    pub version: String,
}

/// The host's own view, read directly.
pub fn host_view() -> Result<KernelView, String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{p}: {e}"))
    };
    Ok(KernelView {
        release: read("/proc/sys/kernel/osrelease")?,
        boot_id: read(BOOT_ID_PATH)?,
        version: read("/proc/version")?,
    })
}

/// Reads the output of [`PROBE_SCRIPT`]: the release on its own line, a UUID
/// line, and the `Linux version ...` line, wherever other output is around them.
pub fn parse_probe(output: &str) -> Result<KernelView, String> {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    let boot_at = lines.iter().position(|l| is_uuid(l)).ok_or_else(|| {
        format!(
            "no boot_id (a UUID line) in the output: {}",
            snippet(output)
        )
    })?;
    let release = boot_at
        .checked_sub(1)
        .map(|i| lines[i])
        .filter(|l| !l.is_empty() && !l.contains(' '))
        .ok_or_else(|| format!("no `uname -r` line before the boot_id: {}", snippet(output)))?;
    let version = lines
        .iter()
        .find(|l| l.starts_with("Linux version "))
        .ok_or_else(|| format!("no /proc/version line in the output: {}", snippet(output)))?;
    Ok(KernelView {
        release: release.to_string(),
        boot_id: lines[boot_at].to_string(),
        version: version.to_string(),
    })
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn snippet(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "(no output)".into();
    }
    let cut: String = t.chars().take(120).collect();
    if cut.len() < t.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_probe_output() {
        let out = "6.1.0-56-amd64\n0d6c1f40-3a2b-4c5d-8e9f-0123456789ab\nLinux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP\n";
        let v = parse_probe(out).unwrap();
        assert_eq!(v.release, "6.1.0-56-amd64");
        assert_eq!(v.boot_id, "0d6c1f40-3a2b-4c5d-8e9f-0123456789ab");
        assert!(v.version.starts_with("Linux version 6.1.0-56-amd64"));
        assert!(parse_probe("").unwrap_err().contains("no output"));
        assert!(parse_probe("6.1\nnot-a-uuid\n").is_err());
    }

    #[test]
    fn host_view_reads_this_kernel() {
        let v = host_view().unwrap();
        assert!(is_uuid(&v.boot_id), "{v:?}");
        assert!(v.version.contains(&v.release));
    }
}
