//! Bytes on disk, counted as `twinbox system df` counts them: apparent sizes,
//! each hard-linked file once, each layer once however many containers use it.

use std::path::Path;

use serde::Serialize;
use twinbox_engine::container::Container;
use twinbox_engine::image::Image;
use twinbox_engine::store::Store;
use twinbox_engine::system::usage::tree_bytes;

#[derive(Debug, Clone, Serialize)]
pub struct LayerBytes {
    pub chain_id: String,
    /// The unpacked directory containers stack (overlayfs lower dir).
    pub unpacked: u64,
    /// The compressed blob kept for push and save.
    pub blob: u64,
}

/// What the store keeps for one image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageFootprint {
    pub layers: Vec<LayerBytes>,
    /// Config and manifest.
    pub metadata: u64,
}

impl ImageFootprint {
    pub fn unpacked(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked).sum()
    }

    pub fn total(&self) -> u64 {
        self.layers.iter().map(|l| l.unpacked + l.blob).sum::<u64>() + self.metadata
    }
}

pub fn image_footprint(store: &Store, image: &Image) -> ImageFootprint {
    ImageFootprint {
        layers: image
            .layers
            .iter()
            .map(|l| LayerBytes {
                chain_id: l.chain_id.short().to_string(),
                unpacked: tree_bytes(&store.layer_dir(&l.chain_id)),
                blob: file_bytes(&store.blob_path(&l.blob)),
            })
            .collect(),
        metadata: file_bytes(&store.blob_path(&image.id))
            + file_bytes(&store.blob_path(&image.manifest_digest)),
    }
}

/// What one container adds on top of its image.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ContainerFootprint {
    /// The overlayfs upper dir: every file the container wrote or changed.
    pub writable: u64,
    /// Its record, spec, /etc files and log.
    pub other: u64,
}

pub fn container_footprint(c: &Container) -> ContainerFootprint {
    let total = tree_bytes(&c.dir);
    let writable = tree_bytes(&c.upper());
    ContainerFootprint {
        writable,
        other: total.saturating_sub(writable),
    }
}

pub fn file_bytes(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| m.len())
        .unwrap_or(0)
}
