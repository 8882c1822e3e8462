//! Turning a tar stream into a stored layer: a gzip blob (by digest), its diff id,
//! and the unpacked directory overlayfs uses (by chain id). Also writing the
//! config + manifest that tie layers into an image.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use oci_spec::image::ImageConfiguration;

use super::manifest::{
    Descriptor, Manifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST,
};
use super::{Image, ImageError, LayerInfo, Reference, Result};
use crate::store::blobs::HashingWriter;
use crate::store::{unpack, Digest, Store, StoreError};

/// Stores an uncompressed layer tar: compresses it into a blob and unpacks it on
/// top of `parent` (the chain id of the layers below). Nothing is kept on error.
pub fn commit_layer(store: &Store, tar: &[u8], parent: Option<&Digest>) -> Result<LayerInfo> {
    let diff_id = Digest::of(tar);
    let chain_id = Digest::chain(parent, &diff_id);

    let tmp = store.temp_dir("layer")?;
    let result = (|| -> Result<LayerInfo> {
        let blob_tmp = tmp.join("blob");
        let file = File::create(&blob_tmp).map_err(|e| StoreError::io(&blob_tmp, e))?;
        let mut gz = GzEncoder::new(HashingWriter::new(file), Compression::fast());
        gz.write_all(tar)
            .map_err(|e| StoreError::io(&blob_tmp, e))?;
        let (_, blob, blob_size) = gz
            .finish()
            .map_err(|e| StoreError::io(&blob_tmp, e))?
            .finish();
        if !store.has_blob(&blob) {
            store.adopt_blob(&blob_tmp, &blob)?;
        }
        ensure_unpacked(store, &chain_id, tar, &tmp)?;
        Ok(LayerInfo {
            blob,
            blob_size,
            media_type: MEDIA_TYPE_LAYER_GZIP.to_string(),
            diff_id,
            chain_id,
        })
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Unpacks a layer into layers/<chain-id> unless it is already there; the rename
/// makes it visible only once complete.
fn ensure_unpacked(
    store: &Store,
    chain_id: &Digest,
    tar: &[u8],
    tmp: &std::path::Path,
) -> Result<()> {
    let dest = store.layer_dir(chain_id);
    if dest.exists() {
        return Ok(());
    }
    let staging = tmp.join("rootfs");
    fs::create_dir_all(&staging).map_err(|e| StoreError::io(&staging, e))?;
    unpack::unpack_layer(tar, &staging)?;
    match fs::rename(&staging, &dest) {
        Ok(()) => Ok(()),
        // another process unpacked the same layer first: theirs is as good as ours
        Err(_) if dest.exists() => Ok(()),
        Err(e) => Err(StoreError::io(&dest, e).into()),
    }
}

/// Reads a possibly gzip-compressed tar file fully into memory, uncompressed.
pub fn read_tar_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let io_err = |e| ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = BufReader::new(File::open(path).map_err(io_err)?);
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(io_err)?;
    let mut data = magic[..n].to_vec();
    file.read_to_end(&mut data).map_err(io_err)?;
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&data[..])
            .read_to_end(&mut out)
            .map_err(|e| ImageError::Io {
                path: path.to_path_buf(),
                source: io::Error::new(e.kind(), format!("corrupted gzip stream: {e}")),
            })?;
        data = out;
    }
    Ok(data)
}

/// Writes the config and manifest for `layers` and points `reference` at them.
pub fn write_image(
    store: &Store,
    reference: &Reference,
    config: &ImageConfiguration,
    layers: Vec<LayerInfo>,
) -> Result<Image> {
    let config_bytes = serde_json::to_vec(config).map_err(|e| ImageError::BadConfig {
        digest: "(new)".into(),
        message: e.to_string(),
    })?;
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
        config: Descriptor {
            media_type: MEDIA_TYPE_CONFIG.to_string(),
            digest: config_digest.to_string(),
            size: config_bytes.len() as u64,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: l.media_type.clone(),
                digest: l.blob.to_string(),
                size: l.blob_size,
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = store.put_blob(&manifest_bytes)?;
    store.set_ref(
        &reference.full(),
        reference.tag.as_deref().unwrap_or("latest"),
        &manifest_digest,
        manifest_bytes.len() as u64,
        MEDIA_TYPE_MANIFEST,
    )?;
    Image::load(store, &manifest_digest)
}

/// Now, as image configs and history write it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
