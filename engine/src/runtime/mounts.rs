//! Filesystem steps of the container init: the overlay root, the spec's mounts
//! (proc, sys, dev, volumes), pivot_root, masked and read-only paths.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root};
use oci_spec::runtime::{Mount, Spec};

use super::failure::{InitError, Step};
use super::inroot::{self, InRoot, InRootError};
use super::security::paths;

pub fn mount_overlay(
    root: &Path,
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
) -> Step {
    let lowers: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lowers.join(":"),
        upper.display(),
        work.display(),
        if volatile { ",volatile" } else { "" }
    );
    mount(
        Some("overlay"),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| InitError::setup(&format!("mount overlayfs on {}", root.display()), e))
}

/// pivot_root needs the new root to be a mount point.
pub fn bind_self(root: &Path) -> Step {
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| InitError::setup(&format!("bind {}", root.display()), e))
}

struct MountOptions {
    flags: MsFlags,
    propagation: MsFlags,
    data: Vec<String>,
    bind: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...) for mount_setattr(2).
    attr_set: u64,
    attr_clr: u64,
}

// mount_setattr(2) attributes (linux/mount.h)
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

/// (set, clear) for a recursive mount option, or None for any other option.
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME_MASK),
        "rnorelatime" => (0, 0),
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK),
        // the atime modes are one field, not flags: the kernel refuses a
        // partial mask in attr_clr (EINVAL), so clearing noatime or
        // strictatime clears the field, which leaves relatime
        "ratime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME_MASK),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK),
        "rnostrictatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME_MASK),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// mount_setattr(2): sets the `set` attributes and clears the `clr` ones of
/// the mount at `path` from `dirfd` (with AT_EMPTY_PATH in `flags`, of the
/// mount `dirfd` is); `userns_fd` is the user namespace for MOUNT_ATTR_IDMAP,
/// else 0. The kernel's error as it is.
pub(super) fn mount_setattr(
    dirfd: std::os::fd::RawFd,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
    set: u64,
    clr: u64,
    userns_fd: u64,
) -> std::io::Result<()> {
    // linux/mount.h's struct mount_attr
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd,
    };
    // SAFETY: mount_setattr with a NUL-terminated path, flags and a mount_attr
    // of the size we pass, all alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Applies recursive attributes to `dest` and every mount below it.
fn set_recursive_attrs(dest: &Path, set: u64, clr: u64, what: &str) -> Step {
    let c = std::ffi::CString::new(dest.as_os_str().as_encoded_bytes())
        .map_err(|e| InitError::setup(what, e))?;
    mount_setattr(
        libc::AT_FDCWD,
        &c,
        libc::AT_RECURSIVE as libc::c_uint,
        set,
        clr,
        0,
    )
    .map_err(|e| InitError::setup(&format!("{what}: recursive attributes"), e))
}

fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        attr_set: 0,
        attr_clr: 0,
    };
    for opt in options {
        if let Some((set, clr)) = recursive_attr(opt) {
            o.attr_set |= set;
            o.attr_clr |= clr;
            continue;
        }
        match opt.as_str() {
            "ro" => o.flags |= MsFlags::MS_RDONLY,
            "rw" => o.flags &= !MsFlags::MS_RDONLY,
            "nosuid" => o.flags |= MsFlags::MS_NOSUID,
            "nodev" => o.flags |= MsFlags::MS_NODEV,
            "noexec" => o.flags |= MsFlags::MS_NOEXEC,
            "suid" | "dev" | "exec" | "defaults" => {}
            "strictatime" => o.flags |= MsFlags::MS_STRICTATIME,
            "relatime" => o.flags |= MsFlags::MS_RELATIME,
            "noatime" => o.flags |= MsFlags::MS_NOATIME,
            "nodiratime" => o.flags |= MsFlags::MS_NODIRATIME,
            "nosymfollow" => o.flags |= MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            "unbindable" => o.propagation = MsFlags::MS_UNBINDABLE,
            "runbindable" => o.propagation = MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            "sync" => o.flags |= MsFlags::MS_SYNCHRONOUS,
            "bind" => o.bind = true,
            "rbind" => {
                o.bind = true;
                o.flags |= MsFlags::MS_REC;
            }
            "private" => o.propagation = MsFlags::MS_PRIVATE,
            "rprivate" => o.propagation = MsFlags::MS_PRIVATE | MsFlags::MS_REC,
            "slave" => o.propagation = MsFlags::MS_SLAVE,
            "rslave" => o.propagation = MsFlags::MS_SLAVE | MsFlags::MS_REC,
            "shared" => o.propagation = MsFlags::MS_SHARED,
            "rshared" => o.propagation = MsFlags::MS_SHARED | MsFlags::MS_REC,
            other => o.data.push(other.to_string()),
        }
    }
    o
}

/// Mounts every entry of `spec.mounts` under `root`, in order. Each
/// destination is held as a descriptor inside the root and mounted on through
/// it (see `inroot`): a path swapped after we looked cannot move the mount.
pub fn mount_all(root: &Path, spec: &Spec, host_network: bool) -> Step {
    let host_cgroup2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let inroot = InRoot::open(root).map_err(|e| InitError::setup_chain("open the root", &e))?;
    for m in spec.mounts().as_deref().unwrap_or_default() {
        mount_one(&inroot, root, m, host_network, host_cgroup2)?;
    }
    Ok(())
}

fn mount_one(
    inroot: &InRoot,
    root: &Path,
    m: &Mount,
    host_network: bool,
    host_cgroup2: bool,
) -> Step {
    let typ = m.typ().clone().unwrap_or_default();
    refuse_symlinked_kernel_fs(root, m.destination(), &typ)?;
    let opts = parse_options(m.options().as_deref().unwrap_or_default());
    let what = format!("mount {} on {}", typ, m.destination().display());
    let in_root = |e: InRootError| InitError::setup_chain(&what, &e);
    let dest = m.destination().as_path();
    let bind = opts.bind || typ == "bind";
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));

    if typ == "cgroup" || typ == "cgroup2" {
        // cgroup2 (with our cgroup namespace) shows the container its own limits
        if !host_cgroup2 {
            return cgroup_v1_view(inroot, dest, opts.flags, &what);
        }
        let under = inroot.mkdir_all(dest).map_err(in_root)?;
        return mount(
            Some("cgroup2"),
            &inroot::proc_path(&under),
            Some("cgroup2"),
            opts.flags,
            None::<&str>,
        )
        .map_err(|e| InitError::setup(&what, e));
    }
    let bind_host_sys = |under: &OwnedFd| -> Step {
        mount(
            Some("/sys"),
            &inroot::proc_path(under),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| InitError::setup(&what, e))?;
        let top = inroot.after_mount(dest, under).map_err(in_root)?;
        remount_bind(
            &inroot::proc_path(&top),
            opts.flags | MsFlags::MS_RDONLY,
            &what,
        )
    };
    if typ == "sysfs" && host_network {
        // sysfs shows the network namespace of whoever mounts it; with the host's
        // network, bind the host's /sys read-only instead, as runc does.
        let under = inroot.mkdir_all(dest).map_err(in_root)?;
        return bind_host_sys(&under);
    }
    if typ == "sysfs" {
        // in a user namespace that does not own the network namespace (a
        // CNI network's), sysfs cannot be mounted: bind it, as runc does
        let under = inroot.mkdir_all(dest).map_err(in_root)?;
        return match mount(
            Some("sysfs"),
            &inroot::proc_path(&under),
            Some("sysfs"),
            opts.flags,
            None::<&str>,
        ) {
            Err(nix::errno::Errno::EPERM) => bind_host_sys(&under),
            other => other.map_err(|e| InitError::setup(&what, e)),
        };
    }

    let under = if bind {
        let src_meta = fs::metadata(&source)
            .map_err(|e| InitError::setup(&format!("bind mount source {}", source.display()), e))?;
        let under = if src_meta.is_dir() {
            inroot.mkdir_all(dest)
        } else {
            // made relative to its parent's descriptor: never truncates what
            // is there, never follows a link put there since
            inroot.create_file(dest)
        }
        .map_err(in_root)?;
        mount(
            Some(&source),
            &inroot::proc_path(&under),
            None::<&str>,
            MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(|e| {
            InitError::setup(
                &format!("bind {} on {}", source.display(), m.destination().display()),
                e,
            )
        })?;
        under
    } else {
        let under = inroot.mkdir_all(dest).map_err(in_root)?;
        let data = opts.data.join(",");
        mount(
            Some(&source),
            &inroot::proc_path(&under),
            Some(typ.as_str()),
            opts.flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| InitError::setup(&what, e))?;
        under
    };
    let extra = opts.flags & !MsFlags::MS_REC;
    let more = (bind && !extra.is_empty())
        || !opts.propagation.is_empty()
        || opts.attr_set != 0
        || opts.attr_clr != 0;
    if !more {
        return Ok(());
    }
    // the descriptor from before names the directory under the new mount;
    // what follows changes the mount, found again at the same place
    let top = inroot.after_mount(dest, &under).map_err(in_root)?;
    let top = inroot::proc_path(&top);
    if bind && !extra.is_empty() {
        remount_bind(&top, extra, &what)?;
    }
    if !opts.propagation.is_empty() {
        mount(
            None::<&str>,
            &top,
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .map_err(|e| InitError::setup(&what, e))?;
    }
    if opts.attr_set != 0 || opts.attr_clr != 0 {
        set_recursive_attrs(&top, opts.attr_set, opts.attr_clr, &what)?;
    }
    Ok(())
}

/// procfs or sysfs mounted through a symlink in the image lands wherever the
/// link points (the CVE-2019-19921 family); runc refuses such a rootfs, so do we.
fn refuse_symlinked_kernel_fs(root: &Path, dest: &Path, typ: &str) -> Step {
    if typ != "proc" && typ != "sysfs" {
        return Ok(());
    }
    let inside = root.join(dest.strip_prefix("/").unwrap_or(dest));
    match fs::symlink_metadata(&inside) {
        Ok(meta) if meta.file_type().is_symlink() => Err(InitError::setup(
            &format!("mount {typ} on {}", dest.display()),
            "must be mounted on ordinary directory, and the rootfs has a symlink there: replace it with a directory",
        )),
        _ => Ok(()),
    }
}

/// Remounts a bind mount with `flags`. In a user namespace the mount's
/// nosuid/nodev/noexec and access-time flags are locked and a remount that
/// drops them fails with EPERM: then it is retried keeping them, as runc does.
/// `/sys/fs/cgroup` on a v1 host, as runc makes it for Docker: a tmpfs holding
/// one read-only mount per v1 hierarchy of the host, each rooted at the
/// container's own cgroup (the root of our cgroup namespace), and the host's
/// links for co-mounted controllers (`cpu -> cpu,cpuacct`). The hybrid layout's
/// controller-less cgroup2 (`unified`) is left out, as Docker's.
fn cgroup_v1_view(inroot: &InRoot, dest: &Path, flags: MsFlags, what: &str) -> Step {
    let setup = |e: std::io::Error| InitError::setup(what, e);
    let in_root = |e: InRootError| InitError::setup_chain(what, &e);
    let hierarchies = host_v1_hierarchies();
    let under = inroot.mkdir_all(dest).map_err(in_root)?;
    let rw = flags & !MsFlags::MS_RDONLY;
    mount(
        Some("tmpfs"),
        &inroot::proc_path(&under),
        Some("tmpfs"),
        rw,
        Some("mode=755"),
    )
    .map_err(|e| InitError::setup(what, e))?;
    // a fresh tmpfs in our own mount namespace: nobody else reaches below it,
    // so its entries are named by path from its descriptor
    let top = inroot.after_mount(dest, &under).map_err(in_root)?;
    let dest = &inroot::proc_path(&top);
    for (name, subsystems) in &hierarchies {
        let dir = dest.join(name);
        fs::create_dir(&dir).map_err(setup)?;
        if let Err(e) = mount(
            Some("cgroup"),
            &dir,
            Some("cgroup"),
            rw,
            Some(subsystems.as_str()),
        ) {
            // e.g. in a user namespace, where v1 hierarchies cannot be mounted
            tracing::debug!("cgroup view: {name} not mounted: {e}");
            let _ = fs::remove_dir(&dir);
            continue;
        }
        remount_bind(&dir, flags | MsFlags::MS_RDONLY, what)?;
    }
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            if let Ok(target) = fs::read_link(e.path()) {
                if hierarchies.iter().any(|(n, _)| Path::new(n) == target) {
                    let _ = std::os::unix::fs::symlink(&target, dest.join(e.file_name()));
                }
            }
        }
    }
    // as Docker's: read and search for everyone, written by nobody but root
    fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o555)).map_err(setup)
}

/// The host's v1 hierarchies mounted directly under /sys/fs/cgroup, in mount
/// order: (directory name, the options naming it: controllers and `name=`).
fn host_v1_hierarchies() -> Vec<(String, String)> {
    let subsystems: Vec<String> = fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(super_opts)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        let point = Path::new(point);
        if *fstype != "cgroup" || point.parent() != Some(Path::new("/sys/fs/cgroup")) {
            continue;
        }
        let naming: Vec<&str> = super_opts
            .split(',')
            .filter(|o| o.starts_with("name=") || subsystems.iter().any(|s| s == o))
            .collect();
        let name = point.file_name().unwrap_or_default().to_string_lossy();
        if !naming.is_empty() && !out.iter().any(|(n, _)| *n == name) {
            out.push((name.into_owned(), naming.join(",")));
        }
    }
    out
}

fn remount_bind(dest: &Path, flags: MsFlags, what: &str) -> Step {
    let remount = |flags: MsFlags| {
        mount(
            None::<&str>,
            dest,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
    };
    match remount(flags) {
        Err(nix::errno::Errno::EPERM) => remount(flags | paths::locked_flags(dest)),
        other => other,
    }
    .map_err(|e| InitError::setup(&format!("{what} (remount)"), e))
}

/// Binds our terminal (stdin, the slave of the pty just made) on
/// /dev/console, as runc does for a terminal.
pub fn bind_console() -> Step {
    let console = Path::new("/dev/console");
    if !Path::new("/dev").is_dir() {
        return Ok(());
    }
    let pts = fs::read_link("/proc/self/fd/0")
        .map_err(|e| InitError::setup("find the terminal's name", e))?;
    if console.symlink_metadata().is_err() {
        fs::write(console, b"").map_err(|e| InitError::setup("create /dev/console", e))?;
    }
    mount(
        Some(&pts),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| InitError::setup("bind /dev/console", e))
}

/// pivot_root(".", ".") then detach the old root: the host's tree is gone.
pub fn pivot_into(root: &Path) -> Step {
    chdir(root).map_err(|e| InitError::setup(&format!("chdir {}", root.display()), e))?;
    pivot_root(".", ".").map_err(|e| InitError::setup("pivot_root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| InitError::setup("detach the old root", e))?;
    chdir("/").map_err(|e| InitError::setup("chdir /", e))
}

/// `--no-pivot`: move the root onto / and chroot, for roots where pivot_root
/// is impossible (a ramfs root). The old root stays reachable underneath,
/// which is why pivot_root is the default.
pub fn move_into(root: &Path) -> Step {
    chdir(root).map_err(|e| InitError::setup(&format!("chdir {}", root.display()), e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| InitError::setup("move the root onto /", e))?;
    nix::unistd::chroot(".").map_err(|e| InitError::setup("chroot", e))?;
    chdir("/").map_err(|e| InitError::setup("chdir /", e))
}

pub fn apply_masks(spec: &Spec) -> Step {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    for p in linux.masked_paths().as_deref().unwrap_or_default() {
        paths::mask_path(Path::new(p)).map_err(|e| InitError::setup(&format!("mask {p}"), e))?;
    }
    for p in linux.readonly_paths().as_deref().unwrap_or_default() {
        paths::readonly_path(Path::new(p))
            .map_err(|e| InitError::setup(&format!("make {p} read-only"), e))?;
    }
    Ok(())
}

/// Docker creates a missing WorkingDir.
pub fn make_cwd(cwd: &Path) -> Step {
    fs::create_dir_all(cwd)
        .map_err(|e| InitError::setup(&format!("create working directory {}", cwd.display()), e))
}

pub fn remount_root_readonly() -> Step {
    remount_bind(Path::new("/"), MsFlags::MS_RDONLY, "read-only root")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_options() {
        let o = parse_options(&[
            "nosuid".into(),
            "ro".into(),
            "rbind".into(),
            "mode=755".into(),
        ]);
        assert!(o.bind);
        assert!(o
            .flags
            .contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_REC));
        assert_eq!(o.data, vec!["mode=755".to_string()]);
    }
}
