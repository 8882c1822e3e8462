//! `twinbox push REF`: every layer, then the config, then the manifest. A blob
//! the repository already has is skipped (HEAD); one seen in another repository
//! of the same registry is mounted from there; the rest is uploaded, streamed
//! from the store. The manifest goes up byte for byte, so its digest is the one
//! `twinbox images` shows.

use std::fs::File;
use std::io::BufReader;

use super::auth::repository_scope;
use super::client::{Client, ConnectOptions, Mount};
use super::media;
use super::progress::{Progress, ProgressReader};
use super::workers::{run_all, Abortable};
use super::{sources, RegistryError, Result};
use crate::image::{Image, Reference};
use crate::oci::Manifest;
use crate::store::{Digest, Store, StoreError};

/// Layers uploaded at once.
const PARALLEL_UPLOADS: usize = 3;
/// Blobs up to this size go up in one PUT; bigger ones are streamed.
const MONOLITHIC_LIMIT: u64 = 1 << 20;

#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub connect: ConnectOptions,
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    pub reference: Reference,
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub uploaded: usize,
    pub mounted: usize,
    pub already_present: usize,
}

/// How one blob got there.
enum Outcome {
    Existed,
    Mounted,
    Uploaded,
}

/// Pushes one blob from the store into `repository`.
fn push_blob(
    client: &Client,
    store: &Store,
    repository: &str,
    mount_from: &[String],
    digest: &Digest,
    progress: &dyn Progress,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Outcome> {
    let id = digest.short();
    let what = format!("blob {digest}");
    if client.has_blob(repository, digest)?.is_some() {
        progress.finish(id, "layer already exists");
        return Ok(Outcome::Existed);
    }
    // One mount attempt: a registry that will not mount opens an ordinary upload
    // session instead, which is then used.
    let mut location = None;
    if let Some(from) = mount_from.first() {
        match client.mount_blob(repository, digest, from, &what)? {
            Mount::Mounted => {
                progress.finish(id, &format!("mounted from {from}"));
                return Ok(Outcome::Mounted);
            }
            Mount::Upload(l) => location = Some(l),
        }
    }
    let location = match location {
        Some(l) => l,
        None => client.start_upload(repository, &what)?,
    };
    let path = store.blob_path(digest);
    let file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::MissingBlob(digest.to_string()),
        _ => StoreError::io(&path, e),
    })?;
    let size = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
    progress.start(id, "pushing", size);
    if size <= MONOLITHIC_LIMIT {
        let data = store.read_blob(digest)?;
        client.upload_bytes(&location, digest, &data, &what)?;
        progress.advance(id, size);
    } else {
        let reader = Abortable {
            inner: BufReader::with_capacity(1 << 16, file),
            stop,
        };
        let mut reader = ProgressReader::new(reader, progress, id);
        client.upload_stream(&location, digest, &mut reader, &what)?;
    }
    progress.finish(id, "pushed");
    Ok(Outcome::Uploaded)
}

/// Pushes the stored image named `input` to the registry its name gives.
pub fn push(
    store: &Store,
    input: &str,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let reference = Reference::parse(input)?;
    let image = Image::resolve(store, input)?;
    let manifest_bytes = store.read_blob(&image.manifest_digest)?;
    let manifest: Manifest = store.read_json_blob(&image.manifest_digest)?;
    let media_type = match manifest.media_type() {
        Some(m) => m.to_string(),
        None => store
            .read_index()?
            .manifests()
            .iter()
            .find(|e| e.digest().as_ref() == image.manifest_digest.as_str())
            .map(|e| e.media_type().to_string())
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string()),
    };
    let here = format!("{}/{}", reference.registry, reference.repository);
    let registry_prefix = format!("{}/", reference.registry);

    // Blobs in upload order: layers, then the config (the manifest refers to both).
    let mut blobs: Vec<Digest> = Vec::new();
    for d in image.layers.iter().map(|l| &l.blob).chain([&image.id]) {
        if !blobs.contains(d) {
            blobs.push(d.clone());
        }
    }
    // Other repositories of this registry known to hold each blob: mount sources.
    let mount_from: Vec<Vec<String>> = blobs
        .iter()
        .map(|d| {
            sources::lookup(store, d)
                .into_iter()
                .filter(|s| s != &here)
                .filter_map(|s| s.strip_prefix(&registry_prefix).map(str::to_string))
                .collect()
        })
        .collect();
    let mut scopes = vec![repository_scope(&reference.repository, true)];
    for repo in mount_from.iter().flatten() {
        let scope = repository_scope(repo, false);
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let client = Client::connect(&reference.registry, scopes, &options.connect)?;

    let (config, layers) = blobs.split_last().expect("an image has a config");
    let outcomes = std::sync::Mutex::new(Vec::new());
    let jobs: Vec<(&Digest, &Vec<String>)> = layers.iter().zip(&mount_from).collect();
    run_all(jobs, PARALLEL_UPLOADS, |(digest, from), stop| {
        let outcome = push_blob(
            &client,
            store,
            &reference.repository,
            from,
            digest,
            progress,
            stop,
        )?;
        outcomes.lock().unwrap().push(outcome);
        Ok(())
    })?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let config_from = mount_from.last().expect("config sources");
    let config_outcome = push_blob(
        &client,
        store,
        &reference.repository,
        config_from,
        config,
        progress,
        &stop,
    )?;
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.push(config_outcome);

    let tag = reference
        .tag
        .clone()
        .unwrap_or_else(|| image.manifest_digest.to_string());
    let what = format!("manifest of {}", reference.familiar());
    let returned = client.put_manifest(
        &reference.repository,
        &tag,
        &media_type,
        &manifest_bytes,
        &what,
    )?;
    if let Some(r) = returned {
        if r != image.manifest_digest.as_str() {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: image.manifest_digest.to_string(),
                actual: r,
            });
        }
    }
    sources::record(store, &here, &blobs);
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    Ok(Pushed {
        manifest_digest: image.manifest_digest.clone(),
        manifest_size: manifest_bytes.len() as u64,
        uploaded: count(|o| matches!(o, Outcome::Uploaded)),
        mounted: count(|o| matches!(o, Outcome::Mounted)),
        already_present: count(|o| matches!(o, Outcome::Existed)),
        reference,
    })
}
