//! Masked and read-only paths: the parts of `/proc` and `/sys` that show or
//! change the *host* (kernel memory, keyrings, timers, firmware, sysctls) are
//! hidden or frozen inside the container, as Docker does.
//!
//! Both functions run inside the container's mount namespace after `pivot_root`,
//! with `/proc`, `/sys` and `/dev` already mounted, and before capabilities are
//! dropped (mounting needs `CAP_SYS_ADMIN`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, stat, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};

use super::SecurityError;

/// Paths Docker masks by default (moby `oci/defaults.go`).
pub const DOCKER_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker makes read-only by default (moby `oci/defaults.go`).
pub const DOCKER_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Hides `path`: a file gets `/dev/null` bind-mounted over it (reads are empty,
/// writes vanish), a directory gets an empty read-only tmpfs. A path that does
/// not exist is fine (nothing to hide).
///
/// `/dev/null` is checked to really be the null device (1:3) and mounted through
/// the checked file descriptor, so a container image cannot substitute a file or
/// symlink of its own for it (the runc CVE-2025-31133 pattern).
pub fn mask_path(path: &Path) -> Result<(), SecurityError> {
    let fail = |source: Errno| SecurityError::MaskPath {
        path: path.to_path_buf(),
        source: io::Error::from(source),
    };
    let target = match stat(path) {
        Ok(target) => target,
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(fail(e)),
    };
    if SFlag::from_bits_truncate(target.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        return match mount(Some("tmpfs"), path, Some("tmpfs"), flags, None::<&str>) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(fail(e)),
        };
    }

    let null = open_dev_null().map_err(fail)?;
    let null_stat = fstat(&null).map_err(fail)?;
    let is_char = SFlag::from_bits_truncate(null_stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || null_stat.st_rdev != libc::makedev(1, 3) {
        return Err(SecurityError::DevNullNotCharDevice {
            path: path.to_path_buf(),
        });
    }
    let mut buf = [0u8; 32];
    let source = proc_self_fd(null.as_raw_fd(), &mut buf);
    let result = match mount(
        Some(source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        // No /proc to reach the descriptor through: fall back to the (checked) path.
        Err(Errno::ENOENT) if !Path::new("/proc/self/fd").exists() => mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ),
        other => other,
    };
    match result {
        Ok(()) => Ok(()),
        // Gone between stat and mount: nothing to hide any more.
        Err(Errno::ENOENT) if !path.exists() => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// Makes `path` read-only: bind-mounts it onto itself, then remounts that bind
/// `MS_RDONLY`, keeping the `nosuid`/`nodev`/`noexec` (and access-time) flags the
/// mount already had: in a user namespace those flags are locked and a remount
/// that drops them fails. A path that does not exist is fine.
pub fn readonly_path(path: &Path) -> Result<(), SecurityError> {
    let fail = |source: Errno| SecurityError::ReadonlyPath {
        path: path.to_path_buf(),
        source: io::Error::from(source),
    };
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(fail(e)),
    }
    statvfs(path).map_err(fail)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(path);
    mount(Some(path), path, None::<&str>, flags, None::<&str>).map_err(fail)
}

/// The `nosuid`/`nodev`/`noexec` and access-time flags the mount at `path`
/// has: a remount in a user namespace must keep them (they are locked).
pub fn locked_flags(path: &Path) -> MsFlags {
    let Ok(existing) = statvfs(path).map(|s| s.flags()) else {
        return MsFlags::empty();
    };
    let mut flags = MsFlags::empty();
    for (has, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if existing.contains(has) {
            flags |= keep;
        }
    }
    flags
}

/// `/dev/null` opened without following a final symlink, as an `O_PATH` descriptor.
fn open_dev_null() -> Result<OwnedFd, Errno> {
    open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Writes `/proc/self/fd/<fd>` into `buf` without allocating and returns it.
fn proc_self_fd(fd: i32, buf: &mut [u8; 32]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..count {
        buf[PREFIX.len() + i] = digits[count - 1 - i];
    }
    Path::new(std::ffi::OsStr::from_bytes(&buf[..PREFIX.len() + count]))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    use super::super::testutil::{errno, in_child, is_root, private_mount_namespace};
    use super::*;

    #[test]
    fn security_docker_default_paths() {
        assert_eq!(DOCKER_MASKED_PATHS.len(), 11);
        assert!(DOCKER_MASKED_PATHS.contains(&"/proc/kcore"));
        assert!(DOCKER_MASKED_PATHS.contains(&"/sys/firmware"));
        assert_eq!(DOCKER_READONLY_PATHS.len(), 5);
        assert!(DOCKER_READONLY_PATHS.contains(&"/proc/sysrq-trigger"));
    }

    #[test]
    fn security_proc_self_fd_formats_without_allocating() {
        let mut buf = [0u8; 32];
        assert_eq!(proc_self_fd(0, &mut buf), Path::new("/proc/self/fd/0"));
        assert_eq!(
            proc_self_fd(1234, &mut buf),
            Path::new("/proc/self/fd/1234")
        );
        assert_eq!(
            proc_self_fd(i32::MAX, &mut buf),
            Path::new("/proc/self/fd/2147483647")
        );
    }

    /// A scratch directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "twinbox-security-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn cstring(path: &Path) -> CString {
        CString::new(path.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn security_mask_path_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let scratch = Scratch::new("mask");
        let secret = scratch.0.join("secret");
        fs::write(&secret, b"host secret").unwrap();
        let dir = scratch.0.join("dir");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("inner"), b"x").unwrap();
        let missing = scratch.0.join("missing");
        let (secret_c, dir_c) = (cstring(&secret), cstring(&dir));
        let code = in_child(|| {
            if !private_mount_namespace() {
                return 10;
            }
            if mask_path(&secret).is_err() || mask_path(&dir).is_err() {
                return 11;
            }
            if mask_path(&missing).is_err() {
                return 12;
            }
            let mut buf = [0u8; 16];
            // SAFETY: plain system calls with valid buffers.
            unsafe {
                let fd = libc::open(secret_c.as_ptr(), libc::O_RDONLY);
                if fd < 0 {
                    return 13;
                }
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                libc::close(fd);
                if n != 0 {
                    return 14; // reads as empty, like /dev/null
                }
                // The directory is an empty, read-only tmpfs.
                let d = libc::opendir(dir_c.as_ptr());
                if d.is_null() {
                    return 15;
                }
                let mut entries = 0;
                while !libc::readdir(d).is_null() {
                    entries += 1;
                }
                libc::closedir(d);
                if entries != 2 {
                    return 16; // only . and ..
                }
                let fd = libc::openat(
                    libc::AT_FDCWD,
                    dir_c.as_ptr(),
                    libc::O_TMPFILE | libc::O_WRONLY,
                    0o600,
                );
                if fd >= 0 || errno() != libc::EROFS {
                    return 17;
                }
            }
            0
        });
        assert_eq!(code, 0, "child failed at step {code}");
        // The host view is untouched.
        assert_eq!(fs::read(&secret).unwrap(), b"host secret");
        assert!(dir.join("inner").exists());
    }

    #[test]
    fn security_readonly_path_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let scratch = Scratch::new("ro");
        let dir = scratch.0.join("dir");
        fs::create_dir(&dir).unwrap();
        let file = dir.join("file");
        fs::write(&file, b"x").unwrap();
        let missing = scratch.0.join("missing");
        let file_c = cstring(&file);
        let code = in_child(|| {
            if !private_mount_namespace() {
                return 10;
            }
            if readonly_path(&dir).is_err() {
                return 11;
            }
            if readonly_path(&missing).is_err() {
                return 12;
            }
            // SAFETY: plain system calls with valid arguments.
            unsafe {
                let fd = libc::open(file_c.as_ptr(), libc::O_WRONLY);
                if fd >= 0 || errno() != libc::EROFS {
                    return 13;
                }
                let fd = libc::open(file_c.as_ptr(), libc::O_RDONLY);
                if fd < 0 {
                    return 14;
                }
                libc::close(fd);
            }
            0
        });
        assert_eq!(code, 0, "child failed at step {code}");
        fs::write(&file, b"still writable on the host").unwrap();
    }

    #[test]
    fn security_readonly_path_keeps_nosuid_nodev_noexec_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let scratch = Scratch::new("roflags");
        let dir = scratch.0.join("tmpfs");
        fs::create_dir(&dir).unwrap();
        let dir_c = cstring(&dir);
        let code = in_child(|| {
            if !private_mount_namespace() {
                return 10;
            }
            // SAFETY: plain system call with valid strings.
            let rc = unsafe {
                libc::mount(
                    c"tmpfs".as_ptr(),
                    dir_c.as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                )
            };
            if rc != 0 {
                return 11;
            }
            if readonly_path(&dir).is_err() {
                return 12;
            }
            let Ok(vfs) = statvfs(dir.as_path()) else {
                return 13;
            };
            let want =
                FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_NOEXEC;
            if !vfs.flags().contains(want) {
                return 14;
            }
            0
        });
        assert_eq!(code, 0, "child failed at step {code}");
    }
}
