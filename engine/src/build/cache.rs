//! The build cache: one small record per step that made a layer, named by the
//! step's key (its parent, its instruction after substitution, the build args,
//! env, user and workdir it ran with, and for COPY/ADD the content and metadata
//! of its sources). Records live in `cache/build/` of the store, so they survive
//! restarts. A record only points at a layer; when `rmi` or `image prune` takes
//! that layer away the record no longer hits and is dropped on the next lookup
//! (or by [`forget_missing`]), so cache and store never disagree.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::image::LayerInfo;
use crate::store::{atomic, Digest, Store};

/// What a cached step produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// None when the step changed nothing (an empty layer, left out of the image).
    pub layer: Option<StoredLayer>,
    /// When the step first ran: reused so an unchanged rebuild gives the same image id.
    pub created: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredLayer {
    pub blob: String,
    pub blob_size: u64,
    pub media_type: String,
    pub diff_id: String,
}

/// A cache key under construction: fields are length-prefixed, so no two
/// different inputs hash alike.
#[derive(Clone)]
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    pub fn new(op: &str, parent: Option<&Digest>) -> Self {
        let mut k = KeyBuilder(Sha256::new());
        k.field("twinbox-build-cache-v1");
        k.field(op);
        k.field(parent.map(Digest::as_str).unwrap_or("scratch"));
        k
    }

    pub fn field(&mut self, value: &str) -> &mut Self {
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value.as_bytes());
        self
    }

    pub fn list(&mut self, values: &[String]) -> &mut Self {
        self.field(&values.len().to_string());
        for v in values {
            self.field(v);
        }
        self
    }

    pub fn hasher(&mut self) -> &mut Sha256 {
        &mut self.0
    }

    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.0)
    }
}

fn dir(store: &Store) -> PathBuf {
    store.root().join("cache/build")
}

fn path(store: &Store, key: &Digest) -> PathBuf {
    dir(store).join(format!("{}.json", key.hex()))
}

impl StoredLayer {
    pub fn from_info(l: &LayerInfo) -> Self {
        StoredLayer {
            blob: l.blob.to_string(),
            blob_size: l.blob_size,
            media_type: l.media_type.clone(),
            diff_id: l.diff_id.to_string(),
        }
    }

    pub fn info(&self, parent: Option<&Digest>) -> Option<LayerInfo> {
        let diff_id = Digest::parse(&self.diff_id).ok()?;
        Some(LayerInfo {
            blob: Digest::parse(&self.blob).ok()?,
            blob_size: self.blob_size,
            media_type: self.media_type.clone(),
            chain_id: crate::oci::chain_id(parent, &diff_id),
            diff_id,
        })
    }
}

/// The record for `key` when its layer (blob and unpacked dir on top of
/// `parent`) is still in the store; the layer is leased so a concurrent prune
/// cannot take it before the image that uses it is committed.
pub fn lookup(
    store: &Store,
    key: &Digest,
    parent: Option<&Digest>,
) -> Option<(Record, Option<LayerInfo>)> {
    let p = path(store, key);
    let record: Record = atomic::read_json(&p).ok()?;
    let Some(stored) = &record.layer else {
        return Some((record, None));
    };
    let info = stored.info(parent)?;
    let _lock = store.lock().ok()?;
    if !store.has_blob(&info.blob) {
        drop(_lock);
        let _ = fs::remove_file(&p);
        return None;
    }
    // the blob is there but not unpacked on this parent (a --link layer met
    // on a new base, or a pruned layer dir): a miss, the record stays
    if !store.layer_dir(&info.chain_id).is_dir() {
        return None;
    }
    store.lease(&[&info.blob, &info.chain_id]).ok()?;
    Some((record, Some(info)))
}

/// The record for `key`, whatever the state of its layer.
pub fn read(store: &Store, key: &Digest) -> Option<Record> {
    atomic::read_json(&path(store, key)).ok()
}

pub fn save(store: &Store, key: &Digest, record: &Record) {
    let d = dir(store);
    if fs::create_dir_all(&d).is_ok() {
        if let Err(e) = atomic::write_json_atomic(&path(store, key), record) {
            tracing::warn!("build cache record not saved: {e}");
        }
    }
}

/// Drops records whose blob is gone (after a garbage collection); returns how many.
pub fn forget_missing(store: &Store) -> usize {
    let Ok(rd) = fs::read_dir(dir(store)) else {
        return 0;
    };
    let mut dropped = 0;
    for e in rd.flatten() {
        let Ok(record) = atomic::read_json::<Record>(&e.path()) else {
            continue;
        };
        let gone = record
            .layer
            .as_ref()
            .is_some_and(|l| Digest::parse(&l.blob).map_or(true, |b| !store.has_blob(&b)));
        if gone && fs::remove_file(e.path()).is_ok() {
            dropped += 1;
        }
    }
    dropped
}

/// Removes every record (`builder prune`).
pub fn clear(store: &Store) -> usize {
    let n = fs::read_dir(dir(store)).map(|rd| rd.count()).unwrap_or(0);
    let _ = fs::remove_dir_all(dir(store));
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_fields() {
        let a = {
            let mut k = KeyBuilder::new("run", None);
            k.field("ab").field("c");
            k.finish()
        };
        let b = {
            let mut k = KeyBuilder::new("run", None);
            k.field("a").field("bc");
            k.finish()
        };
        assert_ne!(a, b);
        let parent = Digest::of(b"p");
        let c = KeyBuilder::new("run", Some(&parent)).finish();
        assert_ne!(c, KeyBuilder::new("run", None).finish());
    }

    #[test]
    fn a_record_without_its_layer_does_not_hit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = Digest::of(b"k");
        let tar = {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            b.append_data(&mut h, "f", &b"x"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let layer = crate::image::layer::commit_layer(&store, &tar, None).unwrap();
        let record = Record {
            layer: Some(StoredLayer::from_info(&layer)),
            created: "2026-01-01T00:00:00Z".into(),
        };
        save(&store, &key, &record);
        let (_, hit) = lookup(&store, &key, None).expect("hit");
        assert_eq!(hit.unwrap().chain_id, layer.chain_id);
        fs::remove_file(store.blob_path(&layer.blob)).unwrap();
        assert_eq!(forget_missing(&store), 1);
        assert!(lookup(&store, &key, None).is_none());
        let empty = Record {
            layer: None,
            created: "x".into(),
        };
        save(&store, &key, &empty);
        assert!(lookup(&store, &key, None).unwrap().1.is_none());
    }
}
