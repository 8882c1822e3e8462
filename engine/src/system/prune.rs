//! `system prune`: stopped containers, unused networks, (with `volumes`) unused
//! anonymous volumes, dangling images (every image no container uses with
//! `all`) and build cache, in Docker's order, with the space each gave back.

use std::collections::BTreeSet;
use std::fs;

use crate::container::{self, Container, Status};
use crate::image::{dir_size, gc, remove, Image};
use crate::store::refs::RefName;
use crate::store::Store;

#[derive(Debug, Default, Clone, Copy)]
pub struct PruneOptions {
    /// `-a`: every image without a container, and all build cache
    pub all: bool,
    /// `--volumes`: unused anonymous volumes too
    pub volumes: bool,
}

/// What went, in Docker's words.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// `untagged: NAME` and `deleted: ID` lines
    pub images: Vec<String>,
    pub build_cache: Vec<String>,
    pub reclaimed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("{0}")]
    Container(#[from] container::ContainerError),
    #[error("{0}")]
    Volume(#[from] crate::volume::VolumeError),
    #[error("{0}")]
    Image(#[from] crate::image::ImageError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// The warning Docker prints before asking for confirmation.
pub fn warning(o: &PruneOptions) -> String {
    let mut lines = vec![
        "WARNING! This will remove:",
        "  - all stopped containers",
        "  - all networks not used by at least one container",
    ];
    if o.volumes {
        lines.push("  - all anonymous volumes not used by at least one container");
    }
    if o.all {
        lines.push("  - all images without at least one container associated to them");
        lines.push("  - all build cache");
    } else {
        lines.push("  - all dangling images");
        lines.push("  - unused build cache");
    }
    lines.join("\n") + "\n"
}

fn cache_entries(store: &Store) -> BTreeSet<String> {
    fs::read_dir(store.root().join("cache/build"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn prune(store: &Store, o: &PruneOptions) -> Result<PruneReport, PruneError> {
    let mut r = PruneReport::default();
    // containers: their writable layers are what they give back
    let sizes: Vec<(String, u64)> = Container::list(store)?
        .iter()
        .filter(|c| c.state().is_ok_and(|s| s.status != Status::Running))
        .map(|c| (c.id.clone(), dir_size(&c.upper())))
        .collect();
    r.containers = container::prune::prune(store)?;
    r.reclaimed_bytes += sizes
        .iter()
        .filter(|(id, _)| r.containers.contains(id))
        .map(|(_, b)| b)
        .sum::<u64>();
    r.networks = container::network::prune_networks(store)?;
    if o.volumes {
        let sizes: Vec<(String, u64)> = crate::volume::list(store)?
            .iter()
            .map(|v| (v.name.clone(), dir_size(&v.mountpoint)))
            .collect();
        r.volumes = container::volumes::prune(store, false)?;
        r.reclaimed_bytes += sizes
            .iter()
            .filter(|(n, _)| r.volumes.contains(n))
            .map(|(_, b)| b)
            .sum::<u64>();
    }
    let (images, bytes) = prune_images(store, o.all)?;
    r.images = images;
    r.reclaimed_bytes += bytes;
    // build cache: records whose layers went above, or every record with `all`
    let before = cache_entries(store);
    if o.all {
        crate::build::cache::clear(store);
    }
    let gc = gc::collect(store, &gc::Candidates::All, &super::InUse)?;
    r.reclaimed_bytes += gc.bytes_freed;
    let after = cache_entries(store);
    r.build_cache = before.difference(&after).cloned().collect();
    Ok(r)
}

/// Docker's image prune: unnamed (dangling) images, or with `all` every image,
/// that no container uses; `untagged: NAME` and `deleted: ID` lines and the
/// bytes freed.
pub fn prune_images(store: &Store, all: bool) -> Result<(Vec<String>, u64), PruneError> {
    let mut lines = Vec::new();
    let mut freed = 0;
    // images: unnamed ones (dangling), or with `all` every one no container uses
    let used: BTreeSet<String> = Container::list(store)?
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let mut candidates: Vec<Image> = Vec::new();
    for m in store.read_index()?.manifests() {
        let unnamed = m.full_name().is_none();
        if unnamed || all {
            let digest = crate::oci::digest_of(m)?;
            let img = Image::load(store, &digest)?;
            if !used.contains(img.id.as_str())
                && !candidates
                    .iter()
                    .any(|c| c.manifest_digest == img.manifest_digest)
            {
                candidates.push(img);
            }
        }
    }
    for img in candidates {
        let rep = remove::remove(store, img.id.as_str(), true, &super::InUse)?;
        lines.extend(rep.untagged.iter().map(|u| format!("untagged: {u}")));
        if let Some(id) = rep.deleted {
            lines.push(format!("deleted: {id}"));
        }
        freed += rep.collected.bytes_freed;
    }
    Ok((lines, freed))
}
