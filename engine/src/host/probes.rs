//! The container side's probes: each looks at the host and says what it
//! found as a [`Check`].

use std::fs;
use std::path::{Path, PathBuf};

use super::Check;
use crate::cgroups::{self, CgroupMode};
use crate::util::path::{find_busybox, find_in_path, is_static_elf};

/// Oldest kernel release the engine is written for (overlayfs, cgroup features).
pub const MIN_KERNEL: (u32, u32) = (5, 4);
/// Namespaces the container runtime creates.
const RUNTIME_NAMESPACES: [&str; 6] = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];
/// cgroup controllers behind `--memory`, `--cpus` and `--pids-limit`.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
/// Where kernel modules live, per release.
pub(super) const MODULES_DIR: &str = "/lib/modules";

/// Every container-side check, in the order doctor prints them.
pub fn checks() -> Vec<Check> {
    let release = kernel_release();
    let mut checks = vec![
        check_root(),
        check_kernel(&release),
        check_overlayfs(&release),
    ];
    let mode = cgroups::detect_mode(Path::new(cgroups::DEFAULT_FS_ROOT));
    checks.push(match &mode {
        Ok(mode) => Check::ok("cgroups", mode.to_string()),
        Err(e) => Check::fail(
            "cgroups",
            e.to_string(),
            "mount cgroup2 or the cgroup v1 hierarchies at /sys/fs/cgroup",
        ),
    });
    if let Ok(mode) = mode {
        checks.push(check_controllers(mode));
    }
    checks.extend([
        check_namespaces(),
        check_user_namespaces(),
        check_busybox(),
        check_runc(),
    ]);
    checks
}

fn check_root() -> Check {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Check::ok("root", "running as root")
    } else {
        Check::fail(
            "root",
            format!("running as uid {euid}"),
            "containers and VMs need root: run twinbox with sudo",
        )
    }
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data, for which all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is a valid utsname to fill with NUL-terminated strings.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// "6.1.0-18-amd64" → (6, 1).
pub fn parse_major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_kernel(release: &str) -> Check {
    match parse_major_minor(release) {
        Some(v) if v >= MIN_KERNEL => Check::ok("kernel", release),
        Some(_) => Check::warn(
            "kernel",
            format!("{release} is older than {}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
            "some overlayfs and cgroup features may be missing: use kernel 5.4 or newer",
        ),
        None => Check::warn(
            "kernel",
            format!("cannot read the kernel release ({release:?})"),
            "check `uname -r`",
        ),
    }
}

/// Whether the running kernel has overlayfs registered right now.
pub fn overlayfs_available() -> bool {
    fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
}

fn check_overlayfs(release: &str) -> Check {
    if overlayfs_available() {
        return Check::ok("overlayfs", "overlay in /proc/filesystems");
    }
    if let Some(module) = overlay_module(release) {
        return Check::ok(
            "overlayfs",
            format!("module {} (loads on first mount)", module.display()),
        );
    }
    Check::fail(
        "overlayfs",
        "not in /proc/filesystems and no overlay.ko module",
        "container root filesystems need overlayfs: use a kernel with CONFIG_OVERLAY_FS",
    )
}

/// `/lib/modules/<release>/kernel/fs/overlayfs/overlay.ko*` (any compression).
fn overlay_module(release: &str) -> Option<PathBuf> {
    let dir = Path::new(MODULES_DIR)
        .join(release)
        .join("kernel/fs/overlayfs");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("overlay.ko"))
        })
}

fn check_controllers(mode: CgroupMode) -> Check {
    const NAME: &str = "cgroup controllers";
    let available = cgroup_controllers(mode);
    let (present, missing): (Vec<&str>, Vec<&str>) = CONTROLLERS
        .iter()
        .partition(|c| available.iter().any(|a| a == *c));
    let detail = if missing.is_empty() {
        format!("{} present", present.join(" "))
    } else {
        format!(
            "present: {}; missing: {}",
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(" ")
            },
            missing.join(" ")
        )
    };
    if missing.is_empty() {
        return Check::ok(NAME, detail);
    }
    let flags: Vec<&str> = missing
        .iter()
        .map(|c| match *c {
            "memory" => "--memory",
            "cpu" => "--cpus",
            _ => "--pids-limit",
        })
        .collect();
    Check::warn(
        NAME,
        detail,
        format!(
            "{} will not work: enable the controllers in the kernel or mount them",
            flags.join("/")
        ),
    )
}

/// The cgroup controllers this host offers in `mode`.
pub fn cgroup_controllers(mode: CgroupMode) -> Vec<String> {
    match mode {
        CgroupMode::V1 { .. } => v1_controllers(),
        CgroupMode::V2 => v2_controllers(),
    }
}

/// Controllers of the v1 hierarchies mounted on this host (from mountinfo).
fn v1_controllers() -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            // "... - <fstype> <source> <super options>"
            let (_, after) = line.split_once(" - ")?;
            let mut fields = after.split_whitespace();
            (fields.next()? == "cgroup").then_some(())?;
            let options = fields.nth(1)?;
            Some(options.split(',').map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// Controllers the v2 root offers (`cgroup.controllers`).
fn v2_controllers() -> Vec<String> {
    let path = Path::new(cgroups::DEFAULT_FS_ROOT).join("cgroup.controllers");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn check_namespaces() -> Check {
    const NAME: &str = "namespaces";
    let exists = |ns: &&str| Path::new("/proc/self/ns").join(ns).exists();
    let missing: Vec<&str> = RUNTIME_NAMESPACES
        .iter()
        .filter(|ns| !exists(ns))
        .copied()
        .collect();
    let user = exists(&"user");
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("missing: {}", missing.join(" ")),
            "the container runtime needs mnt, pid, uts, ipc, net and cgroup namespaces: use a kernel built with them",
        );
    }
    let found = RUNTIME_NAMESPACES.join(" ");
    if user {
        Check::ok(NAME, format!("{found} user"))
    } else {
        Check::warn(
            NAME,
            format!("{found} (no user)"),
            "user namespaces are missing: containers run without them, but --userns=auto needs them: use a kernel built with CONFIG_USER_NS",
        )
    }
}

fn check_user_namespaces() -> Check {
    const NAME: &str = "user namespaces";
    match fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(s) => {
            let max = s.trim();
            if max == "0" {
                Check::warn(
                    NAME,
                    format!("max_user_namespaces = {max} (disabled)"),
                    "--userns=auto cannot run: set the sysctl user.max_user_namespaces above 0",
                )
            } else {
                Check::ok(
                    NAME,
                    format!("max_user_namespaces = {max}, used by --userns=auto"),
                )
            }
        }
        Err(e) => Check::ok(NAME, format!("cannot read max_user_namespaces: {e}")),
    }
}

fn check_busybox() -> Check {
    const NAME: &str = "busybox";
    match find_busybox() {
        Some(p) if is_static_elf(&p) => Check::ok(NAME, format!("{} (static)", p.display())),
        Some(p) => Check::fail(
            NAME,
            format!("{} is not statically linked", p.display()),
            "apt-get install busybox-static (the base image and the VM initramfs need it)",
        ),
        None => Check::fail(
            NAME,
            "no busybox found",
            "apt-get install busybox-static (the base image and the VM initramfs need it)",
        ),
    }
}

fn check_runc() -> Check {
    match find_in_path("runc") {
        Some(p) => Check::ok("runc", format!("{} (peer for benchmarks)", p.display())),
        None => Check::warn(
            "runc",
            "runc not on PATH",
            "apt-get install runc (only the benchmarks compare against it)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_major_minor("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_major_minor("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_major_minor("4.19.0"), Some((4, 19)));
        assert_eq!(parse_major_minor(""), None);
        assert!(parse_major_minor("4.19.0").unwrap() < MIN_KERNEL);
        assert!(parse_major_minor("5.10.0").unwrap() >= MIN_KERNEL);
    }

    #[test]
    fn this_host_has_what_the_engine_needs() {
        let checks = checks();
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        for name in ["root", "kernel", "overlayfs", "cgroups", "namespaces"] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(overlayfs_available() || checks.iter().any(|c| c.name == "overlayfs"));
        assert!(!kernel_release().is_empty());
    }
}
