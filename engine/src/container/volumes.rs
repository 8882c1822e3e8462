//! A new container's volumes: `-v NAME:/path` and `-v /path` become volumes in
//! the store (created on first use, filled from the image when new), and each
//! path the image declares with VOLUME that no `-v` covers gets an anonymous one.
//! `--volumes-from` adds another container's mounts. The volume verbs that
//! must know which containers mount a volume (rm, prune, inspect's users) are
//! here too: the volume store below knows no containers.

use std::path::{Path, PathBuf};

use super::options::{RunOptions, Volume};
use super::{Container, Result};
use crate::store::Store;
use crate::volume::{self, find, list, remove_unchecked, VolumeError};

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
        let other = Container::find(store, name)?;
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
        let _ = remove_unchecked(store, name);
    }
}

/// `rm -v` and `--rm`: the container's anonymous volumes go with it (named
/// ones stay). Call after the container's record is gone.
pub fn remove_anonymous(container: &Container) {
    // containers/<id> lives in the store root
    let Some(root) = container.dir.parent().and_then(Path::parent) else {
        return;
    };
    if let Ok(store) = Store::open(root) {
        remove_anonymous_of(&store, container);
    }
}

/// The anonymous volumes of a container that no other container mounts.
fn remove_anonymous_of(store: &Store, container: &Container) {
    for v in &container.options.volumes {
        let Some(name) = &v.name else { continue };
        if let Ok(vol) = find(store, name) {
            let others = users(store, name)
                .into_iter()
                .filter(|u| *u != container.name)
                .count();
            if vol.anonymous && others == 0 {
                let _ = remove_unchecked(store, name);
            }
        }
    }
}

/// Names of the containers (running or not) that mount the volume.
pub fn users(store: &Store, name: &str) -> Vec<String> {
    Container::list(store)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c.options
                .volumes
                .iter()
                .any(|v| v.name.as_deref() == Some(name))
        })
        .map(|c| c.name)
        .collect()
}

/// A volume as `docker volume inspect` shows it (plus the containers using it).
pub fn describe(store: &Store, v: &volume::Volume) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": v.created,
        "Driver": "local",
        "Labels": {},
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": {},
        "Scope": "local",
        "Anonymous": v.anonymous,
        "UsedBy": users(store, &v.name),
    })
}

/// Removes a volume and its data (`volume rm`); refused while a container
/// uses it.
pub fn remove(store: &Store, name: &str) -> volume::Result<()> {
    let _lock = store.lock()?;
    let v = find(store, name)?;
    let users = users(store, &v.name);
    if !users.is_empty() {
        return Err(VolumeError::InUse {
            name: v.name,
            containers: users.join(", "),
        });
    }
    remove_unchecked(store, &v.name)
}

/// Removes unused volumes: anonymous ones, or every unused one with `all`
/// (Docker 23's `volume prune` and `--all`). Returns the removed names.
pub fn prune(store: &Store, all: bool) -> volume::Result<Vec<String>> {
    let _lock = store.lock()?;
    let mut removed = Vec::new();
    for v in list(store)? {
        if (all || v.anonymous) && users(store, &v.name).is_empty() {
            remove_unchecked(store, &v.name)?;
            removed.push(v.name);
        }
    }
    Ok(removed)
}
