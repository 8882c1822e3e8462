//! Filling a new volume with what the image has at the mount point, as Docker
//! does: the image's layers are merged by a read-only overlayfs mount (so
//! whiteouts and opaque directories count), and the subtree is copied with its
//! owners, modes and symlinks. Symlinks are copied as links, never followed; a
//! mount point that is itself reached through a symlink in the image is left
//! alone, so nothing outside the image is ever read.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{Result, VolumeError};
use crate::store::Store;

/// Copies `dest` (a path inside the image) from the image's layers (topmost
/// first) into `data`. Nothing happens when the image has no directory there.
pub fn copy_up(
    store: &Store,
    lowers: &[std::path::PathBuf],
    dest: &Path,
    data: &Path,
) -> Result<()> {
    let present: Vec<_> = lowers.iter().filter(|l| l.is_dir()).collect();
    match present.as_slice() {
        [] => Ok(()),
        // overlayfs wants two lower layers when it has no upper one
        [single] => copy_from(single, dest, data),
        _ => {
            // named like every scratch entry (owner pid inside), so a crash here is
            // cleaned by the next command; the mount is read-only, so that
            // cleaning can never delete layer files through it
            let merged = store.temp_dir("copy-up")?;
            let lowerdir = present
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let mounted = mount(
                Some("overlay"),
                &merged,
                Some("overlay"),
                MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
                Some(format!("lowerdir={lowerdir}").as_str()),
            );
            let result = match mounted {
                Ok(()) => copy_from(&merged, dest, data),
                Err(e) => Err(VolumeError::io(&merged, e.into())),
            };
            let _ = umount2(&merged, MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(&merged);
            result
        }
    }
}

fn copy_from(root: &Path, dest: &Path, data: &Path) -> Result<()> {
    // walk down without following anything: every component must be a real dir
    let mut src = root.to_path_buf();
    for c in dest.components() {
        match c {
            Component::Normal(n) => src.push(n),
            Component::RootDir | Component::CurDir => continue,
            _ => return Ok(()),
        }
        match fs::symlink_metadata(&src) {
            Ok(md) if md.is_dir() => {}
            _ => return Ok(()),
        }
    }
    copy_tree(&src, data).map_err(|e| VolumeError::io(&src, e))?;
    // the mount point keeps the image directory's owner and mode
    let md = fs::symlink_metadata(&src).map_err(|e| VolumeError::io(&src, e))?;
    std::os::unix::fs::chown(data, Some(md.uid()), Some(md.gid()))
        .and_then(|_| fs::set_permissions(data, md.permissions()))
        .map_err(|e| VolumeError::io(data, e))
}

/// Copies the contents of `from` into the existing directory `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let md = fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        } else if ft.is_file() {
            fs::copy(&src, &dst)?;
        } else {
            // devices, fifos and sockets are not data
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if ft.is_file() {
            // chown clears set-id bits: the mode goes last
            fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}
