//! The overlay root of a container with a user namespace, built on the host
//! side before clone(2): each image layer is cloned as an idmapped mount
//! (mount_setattr MOUNT_ATTR_IDMAP with the container's mapping), so a file
//! owned by uid 0 on disk shows as owned by the container's root (host uid N)
//! without a copy; overlayfs is assembled over those detached mounts (5.19+
//! takes idmapped lower layers, 6.15+ takes detached ones) with the host's
//! credentials, so whiteouts and opaque directories read as usual; the init
//! attaches the finished overlay at its root with move_mount(2).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, Spec};

// linux/mount.h
const OPEN_TREE_CLONE: u32 = 1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const FSOPEN_CLOEXEC: u32 = 1;
const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;
const FSMOUNT_CLOEXEC: u32 = 1;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 4;

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

fn check(rc: libc::c_long, what: &str) -> io::Result<libc::c_long> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(rc)
}

/// A user namespace holding the spec's mappings, to give mount_setattr: made
/// by a short-lived child that unshares one, mapped from here, then killed
/// (the namespace lives on in the returned descriptor).
pub fn userns_of(spec: &Spec) -> io::Result<OwnedFd> {
    let linux = spec.linux().as_ref();
    userns_for(
        &linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default(),
        &linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default(),
    )
}

/// [`userns_of`] from the mappings themselves.
pub fn userns_for(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> io::Result<OwnedFd> {
    let mut stack = vec![0u8; 64 << 10];
    // SAFETY: without CLONE_VM the child runs on its own copy of memory; it
    // only sleeps until killed, and never returns into the parent's frames.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(|| loop {
                libc::pause();
            }),
            &mut stack,
            nix::sched::CloneFlags::CLONE_NEWUSER,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!("clone a user namespace: {e}"),
        )
    })?;
    let result = super::userns::write_map_lists(pid.as_raw(), uids, gids)
        .map_err(io::Error::other)
        .and_then(|_| {
            std::fs::File::open(format!("/proc/{}/ns/user", pid.as_raw())).map(OwnedFd::from)
        });
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(pid, None);
    result
}

/// A detached copy of `dir`'s mount, shown through `userns`'s mapping.
fn idmapped_clone(dir: &Path, userns: &OwnedFd) -> io::Result<OwnedFd> {
    let path = cstr(&dir.to_string_lossy())?;
    let fd = check(
        // SAFETY: open_tree with a NUL-terminated path and flags; returns a new fd.
        unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
            )
        },
        &format!("open_tree {}", dir.display()),
    )?;
    // SAFETY: fd was just returned to us by open_tree and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    super::mounts::mount_setattr(
        fd.as_raw_fd(),
        c"",
        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
        MOUNT_ATTR_IDMAP,
        0,
        userns.as_raw_fd() as u64,
    )
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "idmap {} (the kernel or the file system may not allow idmapped mounts): {e}",
                dir.display()
            ),
        )
    })?;
    Ok(fd)
}

fn fsconfig(fs: &OwnedFd, key: &str, value: &str) -> io::Result<()> {
    let (k, v) = (cstr(key)?, cstr(value)?);
    check(
        // SAFETY: fsconfig on our fs context with NUL-terminated key and value.
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        },
        &format!("overlay {key}"),
    )?;
    Ok(())
}

fn fsconfig_flag(fs: &OwnedFd, key: &str) -> io::Result<()> {
    let k = cstr(key)?;
    check(
        // SAFETY: fsconfig on our fs context with a NUL-terminated key and no value.
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_FLAG,
                k.as_ptr(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        },
        &format!("overlay {key}"),
    )?;
    Ok(())
}

/// The container's overlay (`lower` topmost first) over idmapped layers, as
/// a detached mount for [`attach`].
pub fn overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    userns: &OwnedFd,
    volatile: bool,
) -> io::Result<OwnedFd> {
    let layers = lower
        .iter()
        .map(|l| idmapped_clone(l, userns))
        .collect::<io::Result<Vec<_>>>()?;
    detached_overlay(&layers, upper, work, volatile)
}

/// The container's overlay over layers whose owners are already the user
/// namespace's (copies chowned into its range), made here with the host's
/// credentials as [`overlay`] is (a mount inside the user namespace would
/// read the layers' overlay xattrs as that namespace), for [`attach`].
pub fn plain_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
) -> io::Result<OwnedFd> {
    let layers = lower
        .iter()
        .map(|l| {
            fs_open_path(l)
                .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", l.display())))
        })
        .collect::<io::Result<Vec<_>>>()?;
    detached_overlay(&layers, upper, work, volatile)
}

fn fs_open_path(dir: &Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
}

/// Whether this kernel gives a container's root over idmapped layers on the
/// file system of `scratch` (an empty directory there, left empty): an
/// idmapped clone of a directory under an overlay made from descriptors.
/// Kernels before 5.19 idmap no overlay lower layer, before 6.3 no tmpfs,
/// before 6.15 no detached layers; the answer is the kernel's own.
pub fn probe(scratch: &Path) -> io::Result<()> {
    let map = |host: u32| {
        vec![LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(65536u32)
            .build()
            .expect("id mapping")]
    };
    let userns = userns_for(&map(0x8000_0000), &map(0x8000_0000))?;
    let (lower, upper, work) = (
        scratch.join("lower"),
        scratch.join("upper"),
        scratch.join("work"),
    );
    for d in [&lower, &upper, &work] {
        std::fs::create_dir(d)?;
    }
    let made = overlay(&[lower], &upper, &work, &userns, false).map(drop);
    for d in ["lower", "upper", "work"] {
        let _ = std::fs::remove_dir_all(scratch.join(d));
    }
    made
}

/// An overlay over `layers` (descriptors of directories or detached mounts,
/// topmost first), as a detached mount. `lowerdir+` takes one layer at a
/// time (6.8+); older kernels get them joined in one `lowerdir` (up to the
/// 256 bytes fsconfig takes: about 15 layers).
fn detached_overlay(
    layers: &[OwnedFd],
    upper: &Path,
    work: &Path,
    volatile: bool,
) -> io::Result<OwnedFd> {
    // the layers are reached through our descriptors for them
    let me = std::process::id();
    let paths: Vec<String> = layers
        .iter()
        .map(|l| format!("/proc/{me}/fd/{}", l.as_raw_fd()))
        .collect();
    let fs = new_overlay_context()?;
    let one_by_one = paths.iter().try_for_each(|p| fsconfig(&fs, "lowerdir+", p));
    let fs = match one_by_one {
        Ok(()) => fs,
        Err(plus) => {
            // a kernel without `lowerdir+`: a fresh context, all layers at once
            let fs = new_overlay_context()?;
            fsconfig(&fs, "lowerdir", &paths.join(":"))
                .map_err(|e| io::Error::new(e.kind(), format!("{plus}; {e}")))?;
            fs
        }
    };
    finish_overlay(fs, upper, work, volatile)
}

fn new_overlay_context() -> io::Result<OwnedFd> {
    let fs = check(
        // SAFETY: fsopen with a NUL-terminated file system name.
        unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen overlay",
    )?;
    // SAFETY: a new fd from fsopen, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fs as i32) })
}

fn finish_overlay(fs: OwnedFd, upper: &Path, work: &Path, volatile: bool) -> io::Result<OwnedFd> {
    fsconfig(&fs, "upperdir", &upper.to_string_lossy())?;
    fsconfig(&fs, "workdir", &work.to_string_lossy())?;
    if volatile {
        fsconfig_flag(&fs, "volatile")?;
    }
    check(
        // SAFETY: fsconfig command with no key or value.
        unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        },
        "create the overlay",
    )?;
    let mnt = check(
        // SAFETY: fsmount on a created context; returns a new fd.
        unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0) },
        "fsmount overlay",
    )?;
    // SAFETY: a new fd from fsmount, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(mnt as i32) })
}

/// Init: mounts the detached overlay made by [`overlay`] on `root`.
pub fn attach(mount: libc::c_int, root: &Path) -> io::Result<()> {
    let to = cstr(&root.to_string_lossy())?;
    check(
        // SAFETY: move_mount of a detached mount fd onto a NUL-terminated path.
        unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mount,
                c"".as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        },
        &format!("attach the overlay on {}", root.display()),
    )?;
    Ok(())
}
