//! Persistent network namespaces: a fresh namespace bind-mounted on a file, so CNI
//! plugins can enter it by path before the container exists and after it is gone.

use std::fs;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use super::{NetworkError, Result};
use crate::runtime::loopback::bring_up_loopback;

/// Creates a namespace with `lo` up and pins it at `path`.
pub fn create(path: &Path) -> Result<()> {
    let err =
        |what: &str, e: String| NetworkError::Netns(format!("{what} {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| err("create dir for", e.to_string()))?;
    }
    fs::write(path, b"").map_err(|e| err("create", e.to_string()))?;
    let target = path.to_path_buf();
    // a thread of our own: unshare(CLONE_NEWNET) moves only that thread
    let made = std::thread::spawn(move || -> std::result::Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        bring_up_loopback().map_err(|e| format!("lo up: {e}"))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mount: {e}"))
    })
    .join()
    .unwrap_or_else(|_| Err("thread panicked".into()));
    if let Err(e) = made {
        let _ = fs::remove_file(path);
        return Err(err("pin", e));
    }
    Ok(())
}

/// Unpins and removes the file; a missing one is fine.
pub fn remove(path: &Path) {
    let _ = umount2(path, MntFlags::MNT_DETACH);
    let _ = fs::remove_file(path);
}
