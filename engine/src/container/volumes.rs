//! A new container's volumes: `-v NAME:/path` and `-v /path` become volumes in
//! the store (created on first use, filled from the image when new), and each
//! path the image declares with VOLUME that no `-v` covers gets an anonymous one.
//! `--volumes-from` adds another container's mounts.

use std::path::{Path, PathBuf};

use super::options::{RunOptions, Volume};
use super::Result;
use crate::store::Store;
use crate::volume;

/// Resolves `requested` (and the image's VOLUME paths) to host directories.
/// Returns the mounts and the names of the volumes this call created, which the
/// caller removes again if the container cannot be made.
pub fn resolve(
    store: &Store,
    opts: &RunOptions,
    image_volumes: &[String],
    lowers: &[PathBuf],
) -> Result<(Vec<Volume>, Vec<String>)> {
    let mut mounts: Vec<Volume> = opts.volumes.clone();
    // --volumes-from: the other container's mounts, as they are (or all ro/rw)
    for spec in &opts.volumes_from {
        let (name, mode) = match spec.rsplit_once(':') {
            Some((n, m)) if m == "ro" || m == "rw" => (n, Some(m == "ro")),
            _ => (spec.as_str(), None),
        };
        let other = super::Container::find(store, name)?;
        for v in &other.options.volumes {
            if mounts.iter().any(|m| m.destination == v.destination) {
                continue;
            }
            let mut v = v.clone();
            if let Some(ro) = mode {
                v.read_only = ro;
            }
            mounts.push(v);
        }
    }
    for path in image_volumes {
        let covered = mounts.iter().any(|m| m.destination == Path::new(path));
        if !covered && path.starts_with('/') {
            mounts.push(Volume {
                source: PathBuf::new(),
                destination: PathBuf::from(path),
                read_only: false,
                name: None,
            });
        }
    }
    let mut created = Vec::new();
    let result = (|| -> Result<()> {
        for m in mounts.iter_mut().filter(|m| !m.is_bind()) {
            let (v, new) = volume::create(store, m.name.as_deref())?;
            if new {
                created.push(v.name.clone());
            }
            if new || volume::is_empty_dir(&v.mountpoint) {
                volume::copy_up(store, lowers, &m.destination, &v.mountpoint)?;
            }
            m.source = v.mountpoint;
            m.name = Some(v.name);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok((mounts, created)),
        Err(e) => {
            forget(store, &created);
            Err(e)
        }
    }
}

/// Removes volumes made for a container that never came to be (the caller
/// holds the store lock).
pub fn forget(store: &Store, created: &[String]) {
    for name in created {
        let _ = volume::remove_unchecked(store, name);
    }
}

/// `rm -v` and `--rm`: the container's anonymous volumes go with it (named
/// ones stay). Call after the container's record is gone.
pub fn remove_anonymous(container: &super::Container) {
    // containers/<id> lives in the store root
    let Some(root) = container.dir.parent().and_then(Path::parent) else {
        return;
    };
    if let Ok(store) = Store::open(root) {
        volume::remove_anonymous_of(&store, container);
    }
}
