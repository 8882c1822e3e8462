//! `load`: images from an OCI image layout tar (`skopeo copy oci-archive:`, our
//! `save`, Docker 25+) or a Docker archive (`docker save`: manifest.json, a config
//! and layer tars, compressed or not).
//!
//! The outer tar is never extracted: it is indexed (name → offset, size) and each
//! blob is read in place and streamed through [`ingest`], which verifies digests
//! and diff ids and unpacks safely. Input from a pipe is spooled to a temp file
//! in the store first. A load that fails removes what it added: the store is as
//! it was.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::gc::{self, Candidates, Holders};
use super::ingest::{self, Compression, LayerSource};
use super::layer::{commit_image, ImageBlobs};
use super::{ImageError, Reference, Result};
use crate::oci::{
    descriptor, digest_of, media, Descriptor, ImageConfiguration, ImageDocuments, Index, Manifest,
    Platform,
};
use crate::store::refs::{ANNOTATION_FULL_NAME, ANNOTATION_REF_NAME};
use crate::store::{Digest, Store, StoreError};

/// Manifests and configs are small; anything bigger is not one.
const MAX_JSON_BYTES: u64 = 32 << 20;

/// One image the load put in the store.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// Familiar names (busybox:latest); empty for an untagged image.
    pub names: Vec<String>,
    pub id: Digest,
    pub layers_added: usize,
    pub layers_reused: usize,
}

/// Progress of a load: which layer, compressed bytes read so far.
pub type LoadProgress<'a> = &'a mut dyn FnMut(&Digest, u64);

fn bad(message: impl Into<String>) -> ImageError {
    ImageError::Archive(message.into())
}

/// Loads every image in the archive at `path` (a gzip or zstd compressed
/// archive is decompressed into tmp/ first). What a failed load added is taken
/// back unless `holders` (or an image) came to use it meanwhile.
pub fn load_file(
    store: &Store,
    path: &Path,
    progress: LoadProgress,
    holders: &dyn Holders,
) -> Result<Vec<LoadedImage>> {
    let io_err = |e| ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    match Compression::sniff(&head[..n]) {
        Compression::None => load_seekable(store, file, progress, holders),
        _ => load_reader(store, file, progress, holders),
    }
}

/// Loads from a stream (stdin): spooled to tmp/ first, since an archive's parts
/// are needed in an order the tar does not keep. Compressed input is accepted.
pub fn load_reader(
    store: &Store,
    reader: impl Read,
    progress: LoadProgress,
    holders: &dyn Holders,
) -> Result<Vec<LoadedImage>> {
    let tmp = store.temp_dir("load")?;
    let result = (|| {
        let spool = tmp.join("archive.tar");
        let mut out = File::create(&spool).map_err(|e| StoreError::io(&spool, e))?;
        let mut input = io::BufReader::with_capacity(1 << 16, reader);
        let head = io::BufRead::fill_buf(&mut input)
            .map_err(|e| bad(format!("cannot read the archive: {e}")))?;
        let copied = match Compression::sniff(head) {
            Compression::None => io::copy(&mut input, &mut out),
            Compression::Gzip => io::copy(&mut flate2::read::MultiGzDecoder::new(input), &mut out),
            Compression::Zstd => zstd::stream::read::Decoder::with_buffer(input)
                .and_then(|mut d| io::copy(&mut d, &mut out)),
        };
        copied.map_err(|e| bad(format!("cannot read the archive: {e}")))?;
        drop(out);
        let file = File::open(&spool).map_err(|e| StoreError::io(&spool, e))?;
        load_seekable(store, file, progress, holders)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// What `load_seekable` added, so a failure can take it back.
#[derive(Default)]
struct Added {
    blobs: HashSet<Digest>,
    layers: HashSet<Digest>,
}

fn load_seekable(
    store: &Store,
    file: File,
    progress: LoadProgress,
    holders: &dyn Holders,
) -> Result<Vec<LoadedImage>> {
    let mut archive = Archive::index(file)?;
    let mut added = Added::default();
    let result = if archive.contains("index.json") {
        load_oci(store, &mut archive, &mut added, progress)
    } else if archive.contains("manifest.json") {
        load_docker(store, &mut archive, &mut added, progress)
    } else {
        Err(bad(
            "not an image archive: it has neither index.json (OCI layout) nor manifest.json (docker save)",
        ))
    };
    if result.is_err() && !(added.blobs.is_empty() && added.layers.is_empty()) {
        let undo = Candidates::Only {
            blobs: added.blobs,
            layers: added.layers,
        };
        if let Err(e) = gc::collect_ignoring_own_lease(store, &undo, holders) {
            tracing::warn!("could not remove what the failed load added: {e}");
        }
    }
    result
}

/// An image about to be committed: its manifest and config bytes and names.
struct Pending {
    manifest: Vec<u8>,
    manifest_media_type: String,
    config: Vec<u8>,
    names: Vec<Reference>,
    layers_added: usize,
    layers_reused: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn load_oci(
    store: &Store,
    archive: &mut Archive,
    added: &mut Added,
    progress: LoadProgress,
) -> Result<Vec<LoadedImage>> {
    let index: Index = serde_json::from_slice(&archive.read("index.json")?)
        .map_err(|e| bad(format!("index.json: {e}")))?;
    // Docker's manifest.json, when present, names images whose index entries
    // carry only a tag
    let docker_tags: HashMap<String, Vec<String>> = match archive.contains("manifest.json") {
        true => docker_entries(archive)?
            .into_iter()
            .map(|e| (e.config, e.repo_tags.unwrap_or_default()))
            .collect(),
        false => HashMap::new(),
    };
    let mut by_manifest: Vec<(Digest, String, u64, Vec<Reference>)> = Vec::new();
    for desc in index.manifests() {
        let (digest, media_type, size) = pick_platform(archive, desc, 0)?;
        let names = oci_names(desc);
        match by_manifest.iter_mut().find(|(d, ..)| *d == digest) {
            Some(entry) => entry.3.extend(names),
            None => by_manifest.push((digest, media_type, size, names)),
        }
    }
    let mut pending = Vec::new();
    for (digest, media_type, size, mut names) in by_manifest {
        let manifest_bytes = archive.read_blob(&digest, size)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| bad(format!("manifest {digest}: {e}")))?;
        let config_digest = parse_digest(manifest.config())?;
        let config = archive.read_blob(&config_digest, manifest.config().size())?;
        if names.is_empty() {
            let key = format!("blobs/sha256/{}", config_digest.hex());
            for t in docker_tags.get(&key).into_iter().flatten() {
                names.push(Reference::parse(t)?);
            }
        }
        let diff_ids = diff_ids(&config, &config_digest)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(bad(format!(
                "image config {config_digest} lists {} diff ids for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            )));
        }
        let mut counts = (0, 0);
        let mut parent: Option<Digest> = None;
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            let blob = parse_digest(layer)?;
            let src = LayerSource {
                media_type: layer.media_type().as_ref(),
                digest: &blob,
                size: Some(layer.size()),
                diff_id,
            };
            let name = format!("blobs/sha256/{}", blob.hex());
            parent = Some(ingest_one(
                store,
                archive,
                &name,
                parent.as_ref(),
                &src,
                added,
                &mut counts,
                progress,
            )?);
        }
        pending.push(Pending {
            manifest: manifest_bytes,
            manifest_media_type: if media_type.is_empty() {
                media::OCI_MANIFEST.to_string()
            } else {
                media_type
            },
            config,
            names,
            layers_added: counts.0,
            layers_reused: counts.1,
        });
    }
    commit_all(store, pending)
}

fn load_docker(
    store: &Store,
    archive: &mut Archive,
    added: &mut Added,
    progress: LoadProgress,
) -> Result<Vec<LoadedImage>> {
    let mut pending = Vec::new();
    for entry in docker_entries(archive)? {
        let config = archive.read(&entry.config)?;
        let config_digest = Digest::of(&config);
        let diff_ids = diff_ids(&config, &config_digest)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(format!(
                "manifest.json: image config {} lists {} diff ids for {} layers",
                entry.config,
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut counts = (0, 0);
        let mut parent: Option<Digest> = None;
        let mut descriptors = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let (head, size) = archive.head(name)?;
            let compression = Compression::sniff(&head);
            // an uncompressed layer's digest is its diff id; a compressed one's
            // must be measured before it can be verified
            let blob = match compression {
                Compression::None => diff_id.clone(),
                _ => archive.digest_of(name)?,
            };
            let media_type = compression.media_type();
            let src = LayerSource {
                media_type,
                digest: &blob,
                size: Some(size),
                diff_id,
            };
            parent = Some(ingest_one(
                store,
                archive,
                name,
                parent.as_ref(),
                &src,
                added,
                &mut counts,
                progress,
            )?);
            descriptors.push(descriptor(media_type, &blob, size));
        }
        // docker save's config bytes are kept as they are: they are the image id
        let docs = ImageDocuments::from_config_bytes(config, descriptors)
            .map_err(|e| bad(format!("image config {}: {e}", entry.config)))?;
        let names = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>>>()?;
        pending.push(Pending {
            manifest: docs.manifest,
            manifest_media_type: media::OCI_MANIFEST.to_string(),
            config: docs.config,
            names,
            layers_added: counts.0,
            layers_reused: counts.1,
        });
    }
    commit_all(store, pending)
}

/// Every layer of every image is in; only now do names appear.
fn commit_all(store: &Store, pending: Vec<Pending>) -> Result<Vec<LoadedImage>> {
    let mut out = Vec::new();
    for p in pending {
        let image = commit_image(
            store,
            &p.names,
            &ImageBlobs {
                manifest: &p.manifest,
                manifest_media_type: &p.manifest_media_type,
                config: &p.config,
            },
        )?;
        out.push(LoadedImage {
            names: p.names.iter().map(Reference::familiar).collect(),
            id: image.id,
            layers_added: p.layers_added,
            layers_reused: p.layers_reused,
        });
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn ingest_one(
    store: &Store,
    archive: &mut Archive,
    name: &str,
    parent: Option<&Digest>,
    src: &LayerSource,
    added: &mut Added,
    counts: &mut (usize, usize),
    progress: LoadProgress,
) -> Result<Digest> {
    let chain_id = crate::oci::chain_id(parent, src.diff_id);
    let had_blob = store.has_blob(src.digest);
    let had_layer = store.layer_dir(&chain_id).is_dir();
    let reader = archive.section(name)?;
    let digest = src.digest.clone();
    let got = ingest::ingest_layer(store, parent, src, reader, &mut |n| progress(&digest, n))?;
    if !had_blob {
        added.blobs.insert(src.digest.clone());
    }
    if !had_layer {
        added.layers.insert(chain_id.clone());
    }
    if got.skipped {
        counts.1 += 1;
    } else {
        counts.0 += 1;
    }
    Ok(got.layer.chain_id)
}

fn docker_entries(archive: &mut Archive) -> Result<Vec<DockerEntry>> {
    serde_json::from_slice(&archive.read("manifest.json")?)
        .map_err(|e| bad(format!("manifest.json: {e}")))
}

fn diff_ids(config: &[u8], digest: &Digest) -> Result<Vec<Digest>> {
    let c: ImageConfiguration =
        serde_json::from_slice(config).map_err(|e| ImageError::BadConfig {
            digest: digest.to_string(),
            message: e.to_string(),
        })?;
    c.rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            Digest::parse(d)
                .map_err(|_| bad(format!("unsupported digest {d:?}: only sha256 is read")))
        })
        .collect()
}

fn parse_digest(desc: &Descriptor) -> Result<Digest> {
    digest_of(desc).map_err(|_| {
        bad(format!(
            "unsupported digest {:?}: only sha256 is read",
            desc.digest().to_string()
        ))
    })
}

/// Names an OCI index entry gives: the full name containerd and we write, or a
/// ref name that is a whole reference (skopeo writes what it was given).
fn oci_names(desc: &Descriptor) -> Vec<Reference> {
    let Some(annotations) = desc.annotations() else {
        return Vec::new();
    };
    if let Some(r) = annotations
        .get(ANNOTATION_FULL_NAME)
        .and_then(|n| Reference::parse(n).ok())
    {
        return vec![r];
    }
    annotations
        .get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains(':') || n.contains('/'))
        .and_then(|n| Reference::parse(n).ok())
        .into_iter()
        .collect()
}

/// Follows nested indexes (multi-platform images) down to this host's manifest.
fn pick_platform(
    archive: &mut Archive,
    desc: &Descriptor,
    depth: u32,
) -> Result<(Digest, String, u64)> {
    let digest = parse_digest(desc)?;
    let media_type = desc.media_type().to_string();
    if ![media::OCI_INDEX, media::DOCKER_MANIFEST_LIST].contains(&media_type.as_str()) {
        return Ok((digest, media_type, desc.size()));
    }
    if depth > 4 {
        return Err(bad("image indexes nest too deep"));
    }
    let index: Index = serde_json::from_slice(&archive.read_blob(&digest, desc.size())?)
        .map_err(|e| bad(format!("index {digest}: {e}")))?;
    let host = Platform::host();
    match host.select(&index, &format!("image index {digest}")) {
        Ok(m) => pick_platform(archive, m, depth + 1),
        Err(_) => Err(bad(format!("image index {digest} has no {host} image"))),
    }
}

/// The outer tar, indexed once: member name → where its bytes are.
struct Archive {
    file: File,
    len: u64,
    members: HashMap<String, (u64, u64)>,
}

impl Archive {
    fn index(mut file: File) -> Result<Self> {
        let len = file
            .seek(SeekFrom::End(0))
            .and_then(|l| file.seek(SeekFrom::Start(0)).map(|_| l))
            .map_err(|e| bad(format!("cannot read the archive: {e}")))?;
        let mut members = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        {
            let mut tar = tar::Archive::new(BufReader::new(&mut file));
            let entries = tar
                .entries_with_seek()
                .map_err(|e| bad(format!("corrupted archive: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad(format!("corrupted archive: {e}")))?;
                let raw = entry
                    .path()
                    .map_err(|e| bad(format!("corrupted archive: bad member name: {e}")))?
                    .into_owned();
                let Some(name) = normalize(&raw) else {
                    continue; // never looked up, and never written anywhere
                };
                match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let size = entry.size();
                        let offset = entry.raw_file_position();
                        if offset.checked_add(size).is_none_or(|end| end > len) {
                            return Err(bad(format!(
                                "archive member {name:?} claims {size} bytes past the end of the archive: it is truncated"
                            )));
                        }
                        members.insert(name, (offset, size));
                    }
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        if let Ok(Some(target)) = entry.link_name() {
                            let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                                Path::new(&name)
                                    .parent()
                                    .unwrap_or(Path::new(""))
                                    .join(target)
                            } else {
                                target.into_owned()
                            };
                            if let Some(t) = normalize(&target) {
                                links.push((name, t));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        // old `docker save` links layer.tar files to each other
        for _ in 0..4 {
            for (name, target) in &links {
                if let Some(m) = members.get(target).copied() {
                    members.entry(name.clone()).or_insert(m);
                }
            }
        }
        Ok(Archive { file, len, members })
    }

    fn contains(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    fn member(&self, name: &str) -> Result<(u64, u64)> {
        let key = normalize(Path::new(name)).unwrap_or_default();
        self.members.get(&key).copied().ok_or_else(|| {
            bad(format!(
                "archive member {name:?} is missing (the archive's manifest names it)"
            ))
        })
    }

    fn section(&mut self, name: &str) -> Result<io::Take<BufReader<File>>> {
        let (offset, size) = self.member(name)?;
        debug_assert!(offset + size <= self.len);
        let mut f = self
            .file
            .try_clone()
            .map_err(|e| bad(format!("cannot read the archive: {e}")))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| bad(format!("cannot read the archive: {e}")))?;
        Ok(BufReader::with_capacity(1 << 16, f).take(size))
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let (_, size) = self.member(name)?;
        if size > MAX_JSON_BYTES {
            return Err(bad(format!(
                "archive member {name:?} is {size} bytes: too big for a manifest or config"
            )));
        }
        let mut out = Vec::with_capacity(size as usize);
        self.section(name)?
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("cannot read {name:?}: {e}")))?;
        Ok(out)
    }

    /// A JSON blob by digest, checked against it (and the size, when given).
    fn read_blob(&mut self, digest: &Digest, size: u64) -> Result<Vec<u8>> {
        let data = self.read(&format!("blobs/sha256/{}", digest.hex()))?;
        let actual = Digest::of(&data);
        if &actual != digest || size != data.len() as u64 {
            return Err(bad(format!(
                "blob {digest} does not match its digest or size (it is {actual}, {} bytes): the archive is corrupted",
                data.len()
            )));
        }
        Ok(data)
    }

    /// The first bytes of a member (to sniff its compression) and its size.
    fn head(&mut self, name: &str) -> Result<(Vec<u8>, u64)> {
        let (_, size) = self.member(name)?;
        let mut head = Vec::new();
        self.section(name)?
            .take(8)
            .read_to_end(&mut head)
            .map_err(|e| bad(format!("cannot read {name:?}: {e}")))?;
        Ok((head, size))
    }

    fn digest_of(&mut self, name: &str) -> Result<Digest> {
        use sha2::Digest as _;
        let mut r = self.section(name)?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| bad(format!("cannot read {name:?}: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(Digest::from_hasher(h))
    }
}

/// An archive member name as a plain relative path; None for names that could
/// only be meant to escape (they are then never looked up).
fn normalize(p: &Path) -> Option<String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let s = out.to_string_lossy().into_owned();
    (!s.is_empty()).then_some(s)
}
