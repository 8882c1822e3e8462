//! Images: references, the stored manifest + config + layers, and the ways an
//! image enters the store (ingest of layers, bootstrap, import, load) and leaves
//! it (save, export, rmi and garbage collection).

pub mod bootstrap;
pub mod changes;
pub mod debian;
pub mod export;
pub mod gc;
pub mod import;
pub mod ingest;
pub mod inspect;
pub mod iperf3;
pub mod layer;
pub mod listing;
pub mod load;
pub mod postgres;
pub mod reference;
pub mod remove;
pub mod save;

use std::path::PathBuf;

use crate::oci::{digest_of, ImageConfiguration, Manifest};
use crate::store::refs::RefName;
use crate::store::{Digest, Store, StoreError};
pub use reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {input:?}: {why}")]
    BadReference { input: String, why: String },
    #[error("no such image: {0} (see `twinbox images`, or create it with `twinbox image bootstrap busybox`)")]
    NotFound(String),
    #[error("image id prefix {0:?} matches more than one image: give more digits")]
    Ambiguous(String),
    #[error("{what}: {message}")]
    Bootstrap { what: String, message: String },
    #[error("image manifest {digest}: {message}")]
    BadManifest { digest: String, message: String },
    #[error("image config {digest}: {message}")]
    BadConfig { digest: String, message: String },
    #[error("unsupported layer media type {0:?}: twinbox reads OCI and Docker layers (tar, tar+gzip, tar+zstd)")]
    UnsupportedMediaType(String),
    #[error("layer {digest}: {message}")]
    Layer { digest: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("--change {change:?}: {why}")]
    BadChange { change: String, why: String },
    #[error("image archive: {0}")]
    Archive(String),
    #[error("{0}")]
    Container(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl LayerInfo {
    /// The layer's descriptor in a manifest.
    pub fn descriptor(&self) -> crate::oci::Descriptor {
        crate::oci::descriptor(&self.media_type, &self.blob, self.blob_size)
    }
}

/// One layer of a stored image.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed).
    pub blob: Digest,
    pub blob_size: u64,
    pub media_type: String,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Identity of the stack up to and including this layer: names the unpacked dir.
    pub chain_id: Digest,
}

/// An image resolved from the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The names pointing at this image, full form (docker.io/library/busybox:latest).
    pub names: Vec<String>,
    pub manifest_digest: Digest,
    /// The config digest: Docker's image id.
    pub id: Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerInfo>,
}

impl Image {
    /// Finds an image by name (`busybox`, `busybox:latest`, full form) or id prefix.
    pub fn resolve(store: &Store, input: &str) -> Result<Image> {
        let index = store.read_index()?;
        let wanted = input.strip_prefix("sha256:").unwrap_or(input);
        let maybe_id = wanted.len() >= 4 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
        match Reference::parse(input) {
            Ok(reference) => {
                let full = reference.full();
                if let Some(entry) = index
                    .manifests()
                    .iter()
                    .find(|m| m.full_name() == Some(&full))
                {
                    return Image::load(store, &digest_of(entry)?);
                }
            }
            Err(e) if !maybe_id => return Err(e),
            Err(_) => {}
        }
        if maybe_id {
            let mut found: Option<Image> = None;
            for entry in index.manifests() {
                let img = Image::load(store, &digest_of(entry)?)?;
                if img.id.hex().starts_with(wanted) {
                    match &found {
                        Some(f) if f.id != img.id => {
                            return Err(ImageError::Ambiguous(input.to_string()))
                        }
                        _ => found = Some(img),
                    }
                }
            }
            if let Some(img) = found {
                return Ok(img);
            }
        }
        Err(ImageError::NotFound(input.to_string()))
    }

    /// Loads the image a manifest describes, with every name that points at it.
    pub fn load(store: &Store, manifest_digest: &Digest) -> Result<Image> {
        let manifest: Manifest = store.read_json_blob(manifest_digest)?;
        let id = digest_of(manifest.config())?;
        let config: ImageConfiguration = store.read_json_blob(&id)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::BadConfig {
                digest: id.to_string(),
                message: format!(
                    "{} diff ids for {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            });
        }
        let diff_ids = diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let chain_ids = crate::oci::chain_ids(&diff_ids);
        let mut layers = Vec::new();
        for ((desc, diff_id), chain_id) in manifest.layers().iter().zip(diff_ids).zip(chain_ids) {
            layers.push(LayerInfo {
                blob: digest_of(desc)?,
                blob_size: desc.size(),
                media_type: desc.media_type().to_string(),
                diff_id,
                chain_id,
            });
        }
        let names = store
            .read_index()?
            .manifests()
            .iter()
            .filter(|m| m.digest_str() == manifest_digest.as_str())
            .filter_map(|m| m.full_name().map(str::to_string))
            .collect();
        Ok(Image {
            names,
            manifest_digest: manifest_digest.clone(),
            id,
            config,
            layers,
        })
    }

    /// Every image in the store, one entry per name.
    pub fn list(store: &Store) -> Result<Vec<(String, Image)>> {
        let mut out = Vec::new();
        for entry in store.read_index()?.manifests() {
            let Some(name) = entry.full_name().map(str::to_string) else {
                continue;
            };
            out.push((name, Image::load(store, &digest_of(entry)?)?));
        }
        Ok(out)
    }

    /// Lower directories for overlayfs, topmost first (the order overlayfs wants).
    pub fn lower_dirs(&self, store: &Store) -> Vec<PathBuf> {
        self.layers
            .iter()
            .rev()
            .map(|l| store.layer_dir(&l.chain_id))
            .collect()
    }

    /// Bytes of the unpacked layers (what the store spends on this image's files).
    pub fn unpacked_size(&self, store: &Store) -> u64 {
        self.layers
            .iter()
            .map(|l| dir_size(&store.layer_dir(&l.chain_id)))
            .sum()
    }

    pub fn created(&self) -> Option<&str> {
        self.config.created().as_deref()
    }
}

/// Apparent size of a directory tree, not following symlinks.
pub fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !md.is_dir() {
        return md.len();
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}
