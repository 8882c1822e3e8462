//! Descriptors and the one writer of an image's documents: the config bytes and
//! the manifest that names them and the layers. The manifest is written in the
//! field order and with the omitted empty fields twinbox has always written, so
//! an image written again from the same parts has the same digest.

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};
use serde::Serialize;

use super::media;
use crate::store::{Digest, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("image config cannot be written: {0}")]
    Config(#[source] serde_json::Error),
    #[error("image manifest cannot be written: {0}")]
    Manifest(#[source] oci_spec::OciSpecError),
}

/// A descriptor of a blob: what it is, its digest and its size in bytes.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    Descriptor::new(MediaType::from(media_type), size, oci_digest(digest))
}

/// The store's digest of the blob a descriptor names (only sha256 is stored).
pub fn digest_of(desc: &Descriptor) -> Result<Digest, StoreError> {
    Digest::parse(desc.digest().as_ref())
}

/// Our digests are `sha256:` and 64 lowercase hex digits, which the OCI
/// digest grammar always accepts.
fn oci_digest(digest: &Digest) -> oci_spec::image::Digest {
    digest
        .as_str()
        .parse()
        .expect("a sha256 digest is a valid OCI digest")
}

/// An image's config and manifest, byte for byte as they are stored: their
/// digests are the image's id and the manifest digest.
#[derive(Debug, Clone)]
pub struct ImageDocuments {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl ImageDocuments {
    /// Serialises `config` (an [`ImageConfiguration`](oci_spec::image::ImageConfiguration),
    /// or a JSON value that keeps fields oci-spec does not know, as a build's does)
    /// and writes the OCI manifest naming it and `layers`, bottom first.
    pub fn new(config: &impl Serialize, layers: Vec<Descriptor>) -> Result<Self, OciError> {
        let config = serde_json::to_vec(config).map_err(OciError::Config)?;
        Self::from_config_bytes(config, layers)
    }

    /// The manifest for config bytes kept as they are (a `docker save` archive's
    /// config, whose digest is the image id).
    pub fn from_config_bytes(config: Vec<u8>, layers: Vec<Descriptor>) -> Result<Self, OciError> {
        let config_desc = descriptor(media::OCI_CONFIG, &Digest::of(&config), config.len() as u64);
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers)
            .build()
            .map_err(OciError::Manifest)?;
        let manifest = serde_json::to_vec(&manifest).map_err(OciError::Config)?;
        Ok(ImageDocuments { config, manifest })
    }

    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    pub fn config_digest(&self) -> Digest {
        Digest::of(&self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    /// The manifest bytes twinbox wrote before it used oci-spec's types (and
    /// the digest they hash to): images already in stores and registries keep
    /// their ids only while these bytes stay the same.
    #[test]
    fn manifest_bytes_are_the_ones_written_before() {
        let config = serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [LAYER]}});
        let layer = descriptor(media::OCI_LAYER_GZIP, &Digest::parse(LAYER).unwrap(), 42);
        let docs = ImageDocuments::new(&config, vec![layer]).unwrap();
        assert_eq!(
            String::from_utf8(docs.config.clone()).unwrap(),
            format!(
                r#"{{"architecture":"amd64","os":"linux","rootfs":{{"diff_ids":["{LAYER}"],"type":"layers"}}}}"#
            )
        );
        let config_digest = docs.config_digest();
        let want = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"#,
                r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":42}}]}}"#
            ),
            config_digest,
            docs.config.len(),
            LAYER
        );
        assert_eq!(String::from_utf8(docs.manifest.clone()).unwrap(), want);
        assert_eq!(
            docs.manifest_digest().to_string(),
            "sha256:494045aa6c3524c0db500097ebef020f427d68f2775334c90bbbd39d1d68eca5"
        );
    }

    /// A manifest read from a store or registry and written again is the same
    /// bytes, Docker media types and all, as long as it was written compactly
    /// in the spec's field order (as twinbox, Docker and the registry write them).
    #[test]
    fn stored_manifests_round_trip_byte_for_byte() {
        let docker = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","#,
                r#""config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{0}","size":7}},"#,
                r#""layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{0}","size":9}}]}}"#
            ),
            LAYER
        );
        let m: ImageManifest = serde_json::from_str(&docker).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), docker);
        assert_eq!(digest_of(m.config()).unwrap().as_str(), LAYER);
        assert_eq!(m.config().media_type().as_ref(), media::DOCKER_CONFIG);
    }
}
