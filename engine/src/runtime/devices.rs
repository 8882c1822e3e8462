//! The container's /dev: a fresh tmpfs (mounted from the spec) filled with the
//! standard device nodes and links, never the host's /dev.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sys::stat::{fstat, makedev, mknodat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

use super::failure::InitError;
use super::inroot::{self, InRoot, InRootError};

/// (name, major, minor): what Docker gives every container.
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// An allow rule of the device cgroup.
pub fn allow_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The device cgroup's default allow list, runc 1.1's AllowedDevices and
/// Docker's: mknod of any character or block device, and null, random,
/// full, tty, zero, urandom, console, the pts and ptmx.
pub fn default_allowed() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{B, C};
    vec![
        allow_rule(C, None, None, "m"),
        allow_rule(B, None, None, "m"),
        allow_rule(C, Some(1), Some(3), "rwm"),
        allow_rule(C, Some(1), Some(8), "rwm"),
        allow_rule(C, Some(1), Some(7), "rwm"),
        allow_rule(C, Some(5), Some(0), "rwm"),
        allow_rule(C, Some(1), Some(5), "rwm"),
        allow_rule(C, Some(1), Some(9), "rwm"),
        allow_rule(C, Some(5), Some(1), "rwm"),
        allow_rule(C, Some(136), None, "rwm"),
        allow_rule(C, Some(5), Some(2), "rwm"),
    ]
}

const LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// linux.devices: extra nodes the spec asks for, with their mode and owner.
fn add_spec_devices(inroot: &InRoot, spec: &Spec) -> Result<(), InitError> {
    use oci_spec::runtime::LinuxDeviceType as T;
    let devices = spec.linux().as_ref().and_then(|l| l.devices().clone());
    for d in devices.unwrap_or_default() {
        // /dev/ptmx stays the link to the container's own devpts (as runc does)
        if d.path() == Path::new("/dev/ptmx") {
            continue;
        }
        let name = d.path().display().to_string();
        let kind = match d.typ() {
            T::C | T::U => SFlag::S_IFCHR,
            T::B => SFlag::S_IFBLK,
            T::P => SFlag::S_IFIFO,
            T::A => continue,
        };
        let (Some(parent), Some(file)) = (d.path().parent(), d.path().file_name()) else {
            return Err(InitError::setup(
                &format!("device {name}"),
                "is no file path: give the device a path such as /dev/name",
            ));
        };
        let dir = inroot
            .mkdir_all(parent)
            .map_err(|e| InitError::setup_chain(&format!("mkdir for {name}"), &e))?;
        let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
        let _ = unlinkat(&dir, file, UnlinkatFlags::NoRemoveDir);
        let node = make_node(
            &dir,
            file,
            kind,
            mode,
            makedev(d.major() as u64, d.minor() as u64),
            d.path(),
        )
        .map_err(|e| InitError::setup(&format!("mknod {name}"), e))?;
        let Node::Made(node) = node else {
            continue; // the host's node, with the host's mode and owner
        };
        let node = inroot::proc_path(&node);
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &node,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| InitError::setup(&format!("chmod {name}"), e))?;
        nix::unistd::chown(
            &node,
            d.uid().map(nix::unistd::Uid::from_raw),
            d.gid().map(nix::unistd::Gid::from_raw),
        )
        .map_err(|e| InitError::setup(&format!("chown {name}"), e))?;
    }
    Ok(())
}

/// A node made in the container's /dev, held by an O_PATH descriptor (its
/// mode and owner are set through it), or the host's bound there.
enum Node {
    Made(OwnedFd),
    Bound,
}

/// mknod `name` in `dir`, or where that is not allowed (a user namespace: no
/// device may be created there) a bind mount of the host's node at `host` on
/// an empty file, as runc does. Everything relative to `dir`'s descriptor, the
/// mount onto the file's own descriptor: a link swapped in is never followed.
fn make_node(
    dir: &OwnedFd,
    name: &OsStr,
    kind: SFlag,
    mode: Mode,
    dev: libc::dev_t,
    host: &Path,
) -> io::Result<Node> {
    match mknodat(dir, name, kind, mode, dev) {
        Ok(()) => Ok(Node::Made(inroot::open_entry(dir, name)?)),
        Err(nix::errno::Errno::EPERM) => {
            inroot::create_new(dir, name)?;
            let file = inroot::open_entry(dir, name)?;
            nix::mount::mount(
                Some(host),
                &inroot::proc_path(&file),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(Node::Bound)
        }
        Err(e) => Err(e.into()),
    }
}

/// Fills the container's /dev. `console_from_stdin`: a terminal session whose
/// stdin already is its terminal gets it as /dev/console (with a console
/// socket the init binds its new terminal there itself, later).
pub fn populate_dev(root: &Path, spec: &Spec, console_from_stdin: bool) -> Result<(), InitError> {
    // Resolved inside the root and held open: this runs before pivot_root,
    // where an image's `dev -> /etc` joined plainly, or a path swapped by
    // someone sharing a volume, would put the nodes in the host's /etc.
    let inroot = InRoot::open(root).map_err(|e| InitError::setup_chain("open the root", &e))?;
    let dev = match inroot.open_path(Path::new("/dev")) {
        Ok(dev) => dev,
        Err(InRootError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(InitError::setup_chain("find /dev in the root", &e)),
    };
    if !fstat(&dev)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
    {
        return Ok(());
    }
    for (name, major, minor) in DEFAULT_DEVICES {
        let _ = unlinkat(&dev, *name, UnlinkatFlags::NoRemoveDir);
        let made = make_node(
            &dev,
            OsStr::new(name),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
            &Path::new("/dev").join(name),
        )
        .map_err(|e| InitError::setup(&format!("mknod /dev/{name}"), e))?;
        let Node::Made(node) = made else {
            continue;
        };
        // mknod honours the umask; the nodes must be world-usable.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &inroot::proc_path(&node),
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| InitError::setup(&format!("chmod /dev/{name}"), e))?;
    }
    for (name, target) in LINKS {
        // runc links /dev/core only where the kernel has /proc/kcore
        if *name == "core" && !Path::new(target).exists() {
            continue;
        }
        match nix::unistd::symlinkat(*target, &dev, *name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(InitError::setup(&format!("link /dev/{name}"), e)),
        }
    }
    add_spec_devices(&inroot, spec)?;
    // A terminal session gets the terminal as /dev/console, as `docker run -t` does.
    if console_from_stdin
        && spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    {
        if let Ok(tty) = std::fs::read_link("/proc/self/fd/0") {
            // a /dev that is the image's own (no tmpfs in the spec) may hold a
            // `console -> /host/file` link, which a plain create would follow
            let _ = unlinkat(&dev, "console", UnlinkatFlags::NoRemoveDir);
            let console = inroot::create_new(&dev, OsStr::new("console"))
                .and_then(|()| inroot::open_entry(&dev, OsStr::new("console")))
                .map_err(|e| InitError::setup("create /dev/console", e))?;
            nix::mount::mount(
                Some(&tty),
                &inroot::proc_path(&console),
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| InitError::setup("bind /dev/console", e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose /dev is a link to a host directory: the nodes and links
    /// must not land there (populate_dev runs before pivot_root). Needs root for
    /// mknod, as the container init has.
    #[test]
    fn dev_link_in_the_image_stays_inside() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mknod needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("tty"), b"keep").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("dev")).unwrap();
        let mut spec = Spec::default();
        spec.set_linux(None);
        populate_dev(&root, &spec, false).unwrap();
        let left: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, ["tty"]);
        assert_eq!(std::fs::read(outside.join("tty")).unwrap(), b"keep");

        // a link that stays inside the root is followed there, as runc does
        std::fs::remove_file(root.join("dev")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("dev")).unwrap();
        populate_dev(&root, &spec, false).unwrap();
        assert!(root.join("etc/null").symlink_metadata().is_ok());
        assert!(root.join("etc/fd").symlink_metadata().is_ok());
    }
}
