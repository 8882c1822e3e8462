//! The file systems every workload expects, mounted where the initramfs has
//! not already got them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::failure::Failure;
use crate::sys;

const NOSUID: libc::c_ulong = libc::MS_NOSUID;
const NODEV: libc::c_ulong = libc::MS_NODEV;
const NOEXEC: libc::c_ulong = libc::MS_NOEXEC;

struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: libc::c_ulong,
    data: &'static str,
}

/// In mount order: parents before children.
const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID | NODEV | NOEXEC,
        data: "",
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID | NODEV | NOEXEC,
        data: "",
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: NOSUID,
        data: "mode=0755",
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: NOSUID | NOEXEC,
        data: "gid=5,mode=0620,ptmxmode=0666",
    },
    Mount {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID | NODEV,
        data: "mode=1777",
    },
];

/// cgroup v2 goes on sysfs's own /sys/fs/cgroup directory (present when the
/// kernel has cgroups), so the guest can read its memory use like a host.
const CGROUP2: Mount = Mount {
    source: "cgroup2",
    target: "/sys/fs/cgroup",
    fstype: "cgroup2",
    flags: NOSUID | NODEV | NOEXEC,
    data: "",
};

pub fn mount_basics() -> Result<(), Failure> {
    for m in MOUNTS {
        mount_if_missing(m, true)?;
    }
    if Path::new(CGROUP2.target).is_dir() {
        mount_if_missing(&CGROUP2, false)?;
    }
    // /tmp stays a directory of the root file system, which is already in
    // RAM: a tmpfs on top would hide what the image keeps in /tmp.
    make_dir(Path::new("/tmp"), 0o1777)
}

/// Devtmpfs on /dev before anything else, for a console when the initramfs
/// has no /dev/console node.
pub fn mount_devtmpfs() -> Result<(), Failure> {
    let dev = MOUNTS.iter().find(|m| m.target == "/dev").expect("listed");
    make_dir(Path::new(dev.target), 0o755)?;
    sys::mount(
        dev.source,
        Path::new(dev.target),
        dev.fstype,
        dev.flags,
        dev.data,
    )
}

fn mount_if_missing(m: &Mount, create: bool) -> Result<(), Failure> {
    let target = Path::new(m.target);
    if is_mount_point(target) {
        return Ok(());
    }
    if create {
        make_dir(target, 0o755)?;
    }
    sys::mount(m.source, target, m.fstype, m.flags, m.data)
}

/// True when `path` is listed in /proc/self/mounts (false before /proc exists).
fn is_mount_point(path: &Path) -> bool {
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let found = mount_points(&mounts).any(|p| Path::new(p) == path);
    found
}

fn mount_points(mounts: &str) -> impl Iterator<Item = &str> {
    mounts.lines().filter_map(|l| l.split(' ').nth(1))
}

/// Creates `path` (and parents) with `mode` when it does not exist yet.
fn make_dir(path: &Path, mode: u32) -> Result<(), Failure> {
    if path.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(path).map_err(|e| Failure::io(format!("create {}", path.display()), &e))?;
    // Set explicitly: the umask would clear the sticky and group bits.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Failure::io(format!("chmod {}", path.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mount_points() {
        let text = "rootfs / rootfs rw 0 0\nproc /proc proc rw,nosuid 0 0\ndevtmpfs /dev devtmpfs rw 0 0\n";
        let points: Vec<&str> = mount_points(text).collect();
        assert_eq!(points, ["/", "/proc", "/dev"]);
    }

    #[test]
    fn parents_are_mounted_before_children() {
        for (i, m) in MOUNTS.iter().enumerate() {
            let parent = Path::new(m.target).parent().unwrap();
            if parent != Path::new("/") {
                let pos = MOUNTS.iter().position(|p| Path::new(p.target) == parent);
                assert!(matches!(pos, Some(p) if p < i), "{}", m.target);
            }
        }
    }
}
