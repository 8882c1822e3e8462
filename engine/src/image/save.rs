//! `save`: images as one tar that both kinds of tools read. It is an OCI image
//! layout (oci-layout, index.json, blobs/sha256/...) that also carries Docker's
//! manifest.json and repositories, pointing at the same blobs, as `docker save`
//! writes since Docker 25. Blobs are copied byte for byte, so digests and image
//! ids stay what they are in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

// root-owned, zero mtime: the same images give the same archive bytes
use super::bootstrap::header;
use super::{Image, ImageError, Reference, Result};
use crate::store::refs::{ANNOTATION_FULL_NAME, ANNOTATION_REF_NAME};
use crate::store::{atomic, Digest, Store, StoreError};

/// One image to save and the names to save it under (full form).
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: Image,
    pub names: Vec<String>,
}

/// Resolves what the user named: a name saves that name, an id every name the
/// image has (Docker's rule).
pub fn resolve_items(store: &Store, inputs: &[String]) -> Result<Vec<SaveItem>> {
    let mut items: Vec<SaveItem> = Vec::new();
    for input in inputs {
        let image = Image::resolve(store, input)?;
        let names = match Reference::parse(input).ok().map(|r| r.full()) {
            Some(full) if image.names.contains(&full) => vec![full],
            _ => image.names.clone(),
        };
        match items
            .iter_mut()
            .find(|i| i.image.manifest_digest == image.manifest_digest)
        {
            Some(existing) => {
                for n in names {
                    if !existing.names.contains(&n) {
                        existing.names.push(n);
                    }
                }
            }
            None => items.push(SaveItem { image, names }),
        }
    }
    Ok(items)
}

/// Writes the archive for `items` to `out`.
pub fn write_archive(store: &Store, items: &[SaveItem], out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let io_err = |e: io::Error| ImageError::Io {
        path: "archive".into(),
        source: e,
    };
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_err)?;

    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    for item in items {
        let img = &item.image;
        let index_entry = store.index_entry(&img.manifest_digest)?;
        let (media_type, size) = match index_entry {
            Some(e) => (e.media_type().to_string(), e.size()),
            None => (
                crate::oci::media::OCI_MANIFEST.to_string(),
                std::fs::metadata(store.blob_path(&img.manifest_digest))
                    .map(|m| m.len())
                    .unwrap_or(0),
            ),
        };
        blobs.insert(img.manifest_digest.clone());
        blobs.insert(img.id.clone());
        blobs.extend(img.layers.iter().map(|l| l.blob.clone()));
        let mut repo_tags = Vec::new();
        let refs: Vec<Reference> = item
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .collect();
        for r in &refs {
            let tag = r
                .tag
                .clone()
                .or_else(|| r.digest.clone())
                .unwrap_or_default();
            index_entries.push(json!({
                "mediaType": media_type,
                "digest": img.manifest_digest.to_string(),
                "size": size,
                "annotations": {
                    ANNOTATION_FULL_NAME: r.full(),
                    ANNOTATION_REF_NAME: tag,
                },
            }));
            if let Some(t) = &r.tag {
                repo_tags.push(r.familiar());
                if let Some(top) = img.layers.last() {
                    repositories
                        .entry(r.familiar_repository())
                        .or_default()
                        .insert(t.clone(), top.blob.hex().to_string());
                }
            }
        }
        if refs.is_empty() {
            index_entries.push(json!({
                "mediaType": media_type,
                "digest": img.manifest_digest.to_string(),
                "size": size,
            }));
        }
        docker_manifest.push(json!({
            "Config": blob_name(&img.id),
            "RepoTags": repo_tags,
            "Layers": img.layers.iter().map(|l| blob_name(&l.blob)).collect::<Vec<_>>(),
        }));
    }

    add_dir(&mut tar, "blobs/").map_err(io_err)?;
    add_dir(&mut tar, "blobs/sha256/").map_err(io_err)?;
    for d in &blobs {
        let path = store.blob_path(d);
        let mut f = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::MissingBlob(d.to_string()),
            _ => StoreError::io(&path, e),
        })?;
        let len = f.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        let mut h = header(tar::EntryType::Regular, 0o644, len);
        tar.append_data(&mut h, blob_name(d), &mut f)
            .map_err(io_err)?;
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::media::OCI_INDEX,
        "manifests": index_entries,
    });
    add_bytes(&mut tar, "index.json", &serde_json::to_vec(&index).unwrap()).map_err(io_err)?;
    add_bytes(
        &mut tar,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).unwrap(),
    )
    .map_err(io_err)?;
    if !repositories.is_empty() {
        add_bytes(
            &mut tar,
            "repositories",
            &serde_json::to_vec(&repositories).unwrap(),
        )
        .map_err(io_err)?;
    }
    tar.into_inner().map_err(io_err)?.flush().map_err(io_err)?;
    Ok(())
}

/// Saves to a file, written whole under a temp name and renamed, so a failed
/// save never leaves a half archive under the name asked for.
pub fn save_to_file(store: &Store, items: &[SaveItem], path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "archive".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", crate::util::id::random_hex(4)));
    let io_err = |e| ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let result = (|| {
        let file = File::create(&tmp).map_err(io_err)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, file);
        write_archive(store, items, &mut w)?;
        let file = w.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        std::fs::rename(&tmp, path).map_err(io_err)?;
        atomic::sync_dir(dir).map_err(io_err)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    tar.append_data(&mut h, name, data)
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut h, name, io::empty())
}
