//! `twinbox pull REF`: manifest (an index picks the platform), config, then the
//! layers, three at a time, each streamed through the layer ingest (digest, size
//! and diff id checked while it unpacks). The image gets its name only after every
//! layer is in place, so an interrupted pull leaves no image and no half layer:
//! the next pull starts the missing layers again.

use oci_spec::image::ImageConfiguration;

use super::auth::repository_scope;
use super::client::{Client, ConnectOptions};
use super::media::{self, ManifestKind};
use super::progress::Progress;
use super::workers::{run_all, Abortable};
use super::{sources, RegistryError, Result};
use crate::image::ingest::{ingest_layer, layer_present, Compression, LayerSource};
use crate::image::layer::{commit_image, ImageBlobs};
use crate::image::{Image, Reference};
use crate::oci::{digest_of, Index, Manifest, Platform, PlatformError};
use crate::store::{Digest, Store};

/// Layers downloaded at once, as Docker does by default.
const PARALLEL_DOWNLOADS: usize = 3;

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index; None means linux/amd64, and a
    /// single-platform image of another platform is then only warned about.
    pub platform: Option<Platform>,
    pub connect: ConnectOptions,
}

/// What a pull did.
#[derive(Debug)]
pub struct Pulled {
    pub reference: Reference,
    pub image: Image,
    pub manifest_digest: Digest,
    pub downloaded: usize,
    pub already_present: usize,
}

/// Fails the stream when it ends before the size the manifest gives, so a cut
/// blob is reported as such rather than as whatever the decompressor makes of it.
struct ExactSize<R> {
    inner: R,
    expected: u64,
    seen: u64,
}

impl<R> ExactSize<R> {
    fn new(inner: R, expected: u64) -> Self {
        ExactSize {
            inner,
            expected,
            seen: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if n == 0 && !buf.is_empty() && self.seen < self.expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "truncated blob: the registry sent {} of the {} bytes the manifest gives",
                    self.seen, self.expected
                ),
            ));
        }
        Ok(n)
    }
}

/// Checks that `data` is what `expected` names.
fn verify_digest(data: &[u8], expected: &str, what: &str) -> Result<Digest> {
    let actual = Digest::of(data);
    if actual.as_str() != expected {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(actual)
}

fn bad_manifest(what: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::BadResponse {
        what: what.to_string(),
        message: message.into(),
    }
}

/// Resolves the reference to one image manifest: (bytes, media type).
fn fetch_image_manifest(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    progress: &dyn Progress,
) -> Result<(Vec<u8>, String)> {
    let what = reference.familiar();
    let by = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (bytes, content_type) =
        client.get_manifest(&reference.repository, &by, &format!("manifest for {what}"))?;
    if let Some(d) = &reference.digest {
        verify_digest(&bytes, d, &format!("manifest of {what}"))?;
    }
    let (kind, media_type) = media::classify(content_type.as_deref(), &bytes, &what)?;
    if kind == ManifestKind::Image {
        return Ok((bytes, media_type));
    }
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| bad_manifest(&what, format!("invalid image index: {e}")))?;
    let entry = platform.select(&index, &what)?;
    progress.message(&format!(
        "{what}: platform {platform} is {}",
        entry.digest()
    ));
    let (bytes, content_type) = client.get_manifest(
        &reference.repository,
        entry.digest().as_ref(),
        &format!("manifest for {what} ({platform})"),
    )?;
    verify_digest(
        &bytes,
        entry.digest().as_ref(),
        &format!("manifest of {what} for {platform}"),
    )?;
    let (kind, media_type) = media::classify(content_type.as_deref(), &bytes, &what)?;
    if kind != ManifestKind::Image {
        return Err(bad_manifest(&what, "the index points at another index"));
    }
    Ok((bytes, media_type))
}

/// Pulls `input` (e.g. `127.0.0.1:5000/app:v1`, `busybox`, `repo@sha256:...`).
pub fn pull(
    store: &Store,
    input: &str,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let reference = Reference::parse(input)?;
    let what = reference.familiar();
    let platform = options.platform.clone().unwrap_or_default();
    let client = Client::connect(
        &reference.registry,
        vec![repository_scope(&reference.repository, false)],
        &options.connect,
    )?;
    let (manifest_bytes, manifest_media_type) =
        fetch_image_manifest(&client, &reference, &platform, progress)?;
    let manifest_digest = Digest::of(&manifest_bytes);
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad_manifest(&what, format!("invalid image manifest: {e}")))?;
    let config_type = manifest.config().media_type().to_string();
    if ![media::OCI_CONFIG, media::DOCKER_CONFIG].contains(&config_type.as_str()) {
        // an artifact (a helm chart, a signature) is not a container image
        return Err(RegistryError::UnsupportedMediaType {
            what: format!("{what} config"),
            media_type: config_type,
        });
    }
    for layer in manifest.layers() {
        Compression::of_media_type(layer.media_type().as_ref())?;
    }

    let config_digest = digest_of(manifest.config())?;
    let config_bytes = client.get_small_blob(
        &reference.repository,
        &config_digest,
        manifest.config().size(),
        &format!("config of {what}"),
    )?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| bad_manifest(&format!("config of {what}"), e.to_string()))?;
    let image_platform = format!("{}/{}", config.os(), config.architecture());
    let wanted = format!("{}/{}", platform.os, platform.architecture);
    if image_platform != wanted {
        if options.platform.is_some() {
            return Err(PlatformError::Missing {
                what,
                wanted: platform.to_string(),
                available: image_platform,
            }
            .into());
        }
        progress.message(&format!(
            "warning: {what} is for {image_platform}, not {wanted}"
        ));
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad_manifest(
            &format!("config of {what}"),
            format!(
                "{} diff ids for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            ),
        ));
    }

    // Each layer's parent chain comes from the config alone, so the layers can
    // arrive in any order.
    struct Job {
        media_type: String,
        digest: Digest,
        size: u64,
        diff_id: Digest,
        parent: Option<Digest>,
    }
    let mut jobs = Vec::new();
    let diff_ids = diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let chain_ids = crate::oci::chain_ids(&diff_ids);
    let mut already_present = 0;
    for (i, (desc, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
        let job = Job {
            media_type: desc.media_type().to_string(),
            digest: digest_of(desc)?,
            size: desc.size(),
            diff_id,
            parent: i.checked_sub(1).map(|p| chain_ids[p].clone()),
        };
        let src = LayerSource {
            media_type: &job.media_type,
            digest: &job.digest,
            size: Some(job.size),
            diff_id: &job.diff_id,
        };
        if layer_present(store, job.parent.as_ref(), &src) {
            already_present += 1;
            progress.finish(job.digest.short(), "already exists");
        } else {
            jobs.push(job);
        }
    }
    let downloaded = jobs.len();
    run_all(jobs, PARALLEL_DOWNLOADS, |job, stop| {
        let id = job.digest.short();
        let src = LayerSource {
            media_type: &job.media_type,
            digest: &job.digest,
            size: Some(job.size),
            diff_id: &job.diff_id,
        };
        progress.start(id, "downloading", job.size);
        let blob = client.get_blob(
            &reference.repository,
            &job.digest,
            &format!("layer {} of {what}", job.digest),
        )?;
        let mut seen = 0u64;
        let mut report = |total: u64| {
            progress.advance(id, total.saturating_sub(seen));
            seen = total;
        };
        let reader = Abortable {
            inner: ExactSize::new(blob.reader, job.size),
            stop,
        };
        let ingested = ingest_layer(store, job.parent.as_ref(), &src, reader, &mut report)?;
        progress.finish(
            id,
            if ingested.skipped {
                "already exists"
            } else {
                "pull complete"
            },
        );
        Ok(())
    })?;

    let image = commit_image(
        store,
        std::slice::from_ref(&reference),
        &ImageBlobs {
            manifest: &manifest_bytes,
            manifest_media_type: &manifest_media_type,
            config: &config_bytes,
        },
    )?;
    let blobs: Vec<Digest> = image
        .layers
        .iter()
        .map(|l| l.blob.clone())
        .chain([image.id.clone()])
        .collect();
    sources::record(
        store,
        &format!("{}/{}", reference.registry, reference.repository),
        &blobs,
    );
    Ok(Pulled {
        reference,
        image,
        manifest_digest,
        downloaded,
        already_present,
    })
}
