//! The refs index: index.json maps image names to manifest digests, as an OCI
//! image layout does (`org.opencontainers.image.ref.name` holds the tag, and
//! `io.containerd.image.name` the full reference, as containerd writes it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{atomic, Digest, Result, Store};

pub const EMPTY_INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
pub const ANNOTATION_FULL_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl IndexEntry {
    pub fn full_name(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_FULL_NAME)
            .map(String::as_str)
    }
}

impl Store {
    pub fn read_index(&self) -> Result<Index> {
        atomic::read_json(&self.root.join("index.json"))
    }

    /// Points `name` (a full reference such as docker.io/library/busybox:latest)
    /// at a manifest, replacing any earlier target of that name.
    pub fn set_ref(
        &self,
        name: &str,
        tag: &str,
        manifest: &Digest,
        size: u64,
        media_type: &str,
    ) -> Result<()> {
        self.set_refs(&[(name, tag)], manifest, size, media_type)
    }

    /// Points several names (full reference, tag or digest) at one manifest in a
    /// single index write. With no names the manifest is still recorded, unnamed,
    /// so it is kept and can be found by id (a `load` of an untagged image).
    pub fn set_refs(
        &self,
        names: &[(&str, &str)],
        manifest: &Digest,
        size: u64,
        media_type: &str,
    ) -> Result<()> {
        self.update_index(|index| {
            index.manifests.retain(|m| match m.full_name() {
                Some(n) => !names.iter().any(|(name, _)| *name == n),
                // an unnamed entry for this manifest is replaced by what follows
                None => m.digest != manifest.as_str(),
            });
            let entry = |annotations| IndexEntry {
                media_type: media_type.to_string(),
                digest: manifest.to_string(),
                size,
                annotations,
            };
            if names.is_empty()
                && !index
                    .manifests
                    .iter()
                    .any(|m| m.digest == manifest.as_str())
            {
                index.manifests.push(entry(BTreeMap::new()));
            }
            for (name, tag) in names {
                let mut annotations = BTreeMap::new();
                annotations.insert(ANNOTATION_FULL_NAME.to_string(), name.to_string());
                annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
                index.manifests.push(entry(annotations));
            }
            Ok(())
        })
    }

    /// Removes the name; returns the entry it had, or None when there was none.
    pub fn remove_ref(&self, name: &str) -> Result<Option<IndexEntry>> {
        self.update_index(|index| {
            let pos = index
                .manifests
                .iter()
                .position(|m| m.full_name() == Some(name));
            Ok(pos.map(|i| index.manifests.remove(i)))
        })
    }

    /// Removes every index entry (named or not) that points at `manifest`.
    pub fn remove_manifest_refs(&self, manifest: &Digest) -> Result<Vec<IndexEntry>> {
        self.update_index(|index| {
            let (gone, kept) = std::mem::take(&mut index.manifests)
                .into_iter()
                .partition(|m| m.digest == manifest.as_str());
            index.manifests = kept;
            Ok(gone)
        })
    }

    /// The index entry a full name points at.
    pub fn lookup_ref(&self, name: &str) -> Result<Option<IndexEntry>> {
        Ok(self
            .read_index()?
            .manifests
            .into_iter()
            .find(|m| m.full_name() == Some(name)))
    }

    /// Read-modify-write of index.json under the store lock, written atomically.
    fn update_index<R>(&self, f: impl FnOnce(&mut Index) -> Result<R>) -> Result<R> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        atomic::write_json_atomic(&self.root.join("index.json"), &index)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_move_and_remove_refs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        store
            .set_ref("docker.io/library/x:1", "1", &a, 1, "m")
            .unwrap();
        store
            .set_refs(
                &[
                    ("docker.io/library/x:1", "1"),
                    ("docker.io/library/x:2", "2"),
                ],
                &b,
                1,
                "m",
            )
            .unwrap();
        let index = store.read_index().unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert!(index.manifests.iter().all(|m| m.digest == b.as_str()));
        assert!(store.remove_ref("docker.io/library/x:1").unwrap().is_some());
        assert!(store.remove_ref("docker.io/library/x:1").unwrap().is_none());
        assert!(store.lookup_ref("docker.io/library/x:2").unwrap().is_some());
        store.set_refs(&[], &a, 1, "m").unwrap();
        store.set_refs(&[], &a, 1, "m").unwrap();
        assert_eq!(store.read_index().unwrap().manifests.len(), 2);
        assert_eq!(store.remove_manifest_refs(&a).unwrap().len(), 1);
    }
}
