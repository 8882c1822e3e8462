//! Turning a tar stream into a stored layer: a gzip blob (by digest), its diff id,
//! and the unpacked directory overlayfs uses (by chain id). Also writing the
//! config + manifest that tie layers into an image.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use serde::Serialize;

use super::ingest;
use super::{Image, ImageError, LayerInfo, Reference, Result};
use crate::oci::{digest_of, media, ImageConfiguration, ImageDocuments, Manifest};
use crate::store::{Digest, Store};

/// Stores an uncompressed layer tar: compresses it into a blob and unpacks it on
/// top of `parent` (the chain id of the layers below). Nothing is kept on error.
pub fn commit_layer(store: &Store, tar: &[u8], parent: Option<&Digest>) -> Result<LayerInfo> {
    Ok(ingest::ingest_tar(store, parent, tar, &mut |_| {})?.layer)
}

/// Opens a tar file for streaming, decompressing it when it is gzip or zstd.
pub fn open_tar_file(path: &std::path::Path) -> Result<Box<dyn Read>> {
    let io_err = |e| ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(io_err)?);
    let head = file.fill_buf().map_err(io_err)?;
    Ok(match ingest::Compression::sniff(head) {
        ingest::Compression::None => Box::new(file),
        ingest::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        ingest::Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(io_err)?)
        }
    })
}

/// Writes the config and manifest for `layers` and points `reference` at them.
pub fn write_image(
    store: &Store,
    reference: &Reference,
    config: &ImageConfiguration,
    layers: Vec<LayerInfo>,
) -> Result<Image> {
    write_image_named(store, std::slice::from_ref(reference), config, &layers)
}

/// [`write_image`] with any number of names; none keeps the image unnamed. The
/// one writer of new images (bootstrap, import, commit, build): `config` is an
/// [`ImageConfiguration`] or a JSON value keeping fields oci-spec does not know
/// (a build's Healthcheck, Shell, OnBuild), its rootfs already naming `layers`.
pub fn write_image_named(
    store: &Store,
    names: &[Reference],
    config: &impl Serialize,
    layers: &[LayerInfo],
) -> Result<Image> {
    let docs = ImageDocuments::new(config, layers.iter().map(LayerInfo::descriptor).collect())
        .map_err(|e| ImageError::BadConfig {
            digest: "(new)".into(),
            message: e.to_string(),
        })?;
    commit_image(
        store,
        names,
        &ImageBlobs {
            manifest: &docs.manifest,
            manifest_media_type: media::OCI_MANIFEST,
            config: &docs.config,
        },
    )
}

/// An image's manifest and config exactly as a registry or an archive holds
/// them (their digests are the image's identity, so they are stored byte for byte).
#[derive(Debug, Clone, Copy)]
pub struct ImageBlobs<'a> {
    pub manifest: &'a [u8],
    /// OCI or Docker manifest media type, recorded in index.json.
    pub manifest_media_type: &'a str,
    pub config: &'a [u8],
}

/// Stores config + manifest and points every name at the manifest in one index
/// write, after checking that the config matches the manifest and that every
/// layer is already in the store (blob and unpacked dir): a ref never points at
/// a half image. With no names the image is kept unnamed (found by id).
pub fn commit_image(store: &Store, names: &[Reference], blobs: &ImageBlobs) -> Result<Image> {
    let manifest_digest = Digest::of(blobs.manifest);
    let config_digest = Digest::of(blobs.config);
    let bad = |message: String| ImageError::BadConfig {
        digest: config_digest.to_string(),
        message,
    };
    let manifest: Manifest =
        serde_json::from_slice(blobs.manifest).map_err(|e| ImageError::BadManifest {
            digest: manifest_digest.to_string(),
            message: e.to_string(),
        })?;
    if manifest.config().digest().as_ref() != config_digest.as_str() {
        return Err(ImageError::BadManifest {
            digest: manifest_digest.to_string(),
            message: format!(
                "it names config {} but the config given is {config_digest}",
                manifest.config().digest()
            ),
        });
    }
    let config: ImageConfiguration =
        serde_json::from_slice(blobs.config).map_err(|e| bad(e.to_string()))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(format!(
            "{} diff ids for {} layers",
            diff_ids.len(),
            manifest.layers().len()
        )));
    }
    let diff_ids = diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for (desc, chain_id) in manifest
        .layers()
        .iter()
        .zip(crate::oci::chain_ids(&diff_ids))
    {
        let blob = digest_of(desc)?;
        if !store.has_blob(&blob) || !store.layer_dir(&chain_id).is_dir() {
            return Err(ImageError::Layer {
                digest: blob.to_string(),
                message: "is not in the store yet: ingest every layer before the image".into(),
            });
        }
    }
    {
        let _lock = store.lock()?;
        store.lease(&[&manifest_digest, &config_digest])?;
    }
    store.put_blob(blobs.config)?;
    store.put_blob(blobs.manifest)?;
    crate::fault::point("image.before-ref");
    let full: Vec<(String, String)> = names
        .iter()
        .map(|r| {
            let tag = r
                .tag
                .clone()
                .or_else(|| r.digest.clone())
                .unwrap_or_else(|| "latest".into());
            (r.full(), tag)
        })
        .collect();
    let pairs: Vec<(&str, &str)> = full.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    store.set_refs(
        &pairs,
        &manifest_digest,
        blobs.manifest.len() as u64,
        blobs.manifest_media_type,
    )?;
    Image::load(store, &manifest_digest)
}
