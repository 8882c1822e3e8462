//! The container's /dev: a fresh tmpfs (mounted from the spec) filled with the
//! standard device nodes and links, never the host's /dev.

use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::Spec;

use super::failure::InitError;

/// (name, major, minor): what Docker gives every container.
pub const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

const LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];

/// linux.devices: extra nodes the spec asks for, with their mode and owner.
fn add_spec_devices(root: &Path, spec: &Spec) -> Result<(), InitError> {
    use oci_spec::runtime::LinuxDeviceType as T;
    let devices = spec.linux().as_ref().and_then(|l| l.devices().clone());
    for d in devices.unwrap_or_default() {
        // /dev/ptmx stays the link to the container's own devpts (as runc does)
        if d.path() == Path::new("/dev/ptmx") {
            continue;
        }
        let name = d.path().display().to_string();
        let path = super::mounts::secure_join(root, d.path())
            .map_err(|e| InitError::setup(&format!("find {name} in the root"), e))?;
        let kind = match d.typ() {
            T::C | T::U => SFlag::S_IFCHR,
            T::B => SFlag::S_IFBLK,
            T::P => SFlag::S_IFIFO,
            T::A => continue,
        };
        let mode = Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| InitError::setup(&format!("mkdir for {name}"), e))?;
        }
        let _ = std::fs::remove_file(&path);
        if make_node(
            &path,
            kind,
            mode,
            makedev(d.major() as u64, d.minor() as u64),
            d.path(),
        )
        .map_err(|e| InitError::setup(&format!("mknod {name}"), e))?
            == Node::Bound
        {
            continue; // the host's node, with the host's mode and owner
        }
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &path,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| InitError::setup(&format!("chmod {name}"), e))?;
        nix::unistd::chown(
            &path,
            d.uid().map(nix::unistd::Uid::from_raw),
            d.gid().map(nix::unistd::Gid::from_raw),
        )
        .map_err(|e| InitError::setup(&format!("chown {name}"), e))?;
    }
    Ok(())
}

#[derive(PartialEq, Eq)]
enum Node {
    Made,
    Bound,
}

/// mknod, or where that is not allowed (a user namespace: no device may be
/// created there) a bind mount of the host's node at `host` on an empty file,
/// as runc does.
fn make_node(
    path: &Path,
    kind: SFlag,
    mode: Mode,
    dev: libc::dev_t,
    host: &Path,
) -> Result<Node, nix::Error> {
    match mknod(path, kind, mode, dev) {
        Ok(()) => Ok(Node::Made),
        Err(nix::errno::Errno::EPERM) => {
            // create_new: mknod refused, so nothing is there; never follow or
            // truncate something that appeared meanwhile
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            nix::mount::mount(
                Some(host),
                path,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(Node::Bound)
        }
        Err(e) => Err(e),
    }
}

/// Fills the container's /dev. `console_from_stdin`: a terminal session whose
/// stdin already is its terminal gets it as /dev/console (with a console
/// socket the init binds its new terminal there itself, later).
pub fn populate_dev(root: &Path, spec: &Spec, console_from_stdin: bool) -> Result<(), InitError> {
    // Resolved inside the root: this runs before pivot_root, where an image's
    // `dev -> /etc` joined plainly would put the nodes in the host's /etc.
    let dev = super::mounts::secure_join(root, Path::new("/dev"))
        .map_err(|e| InitError::setup("find /dev in the root", e))?;
    if !dev.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = dev.join(name);
        let _ = std::fs::remove_file(&path);
        let made = make_node(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
            &Path::new("/dev").join(name),
        )
        .map_err(|e| InitError::setup(&format!("mknod /dev/{name}"), e))?;
        if made == Node::Bound {
            continue;
        }
        // mknod honours the umask; the nodes must be world-usable.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &path,
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
        let path = dev.join(name);
        if path.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &path)
                .map_err(|e| InitError::setup(&format!("link /dev/{name}"), e))?;
        }
    }
    add_spec_devices(root, spec)?;
    // A terminal session gets the terminal as /dev/console, as `docker run -t` does.
    if console_from_stdin
        && spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
    {
        if let Ok(tty) = std::fs::read_link("/proc/self/fd/0") {
            let console = dev.join("console");
            // a /dev that is the image's own (no tmpfs in the spec) may hold a
            // `console -> /host/file` link, which a plain create would follow
            let _ = std::fs::remove_file(&console);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&console)
                .map_err(|e| InitError::setup("create /dev/console", e))?;
            nix::mount::mount(
                Some(&tty),
                &console,
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
