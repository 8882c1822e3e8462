//! The container's /dev: a fresh tmpfs (mounted from the spec) filled with the
//! standard device nodes and links, never the host's /dev.

use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::Spec;

use super::init::InitError;

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

pub fn populate_dev(root: &Path, spec: &Spec) -> Result<(), InitError> {
    let dev = root.join("dev");
    if !dev.is_dir() {
        return Ok(());
    }
    for (name, major, minor) in DEFAULT_DEVICES {
        let path = dev.join(name);
        let _ = std::fs::remove_file(&path);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        )
        .map_err(|e| InitError::setup(&format!("mknod /dev/{name}"), e))?;
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
        let path = dev.join(name);
        if path.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &path)
                .map_err(|e| InitError::setup(&format!("link /dev/{name}"), e))?;
        }
    }
    // A terminal session gets the terminal as /dev/console, as `docker run -t` does.
    if spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
    {
        if let Ok(tty) = std::fs::read_link("/proc/self/fd/0") {
            let console = dev.join("console");
            std::fs::write(&console, b"")
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
