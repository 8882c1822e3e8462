//! The refs index: index.json maps image names to manifest digests, as an OCI
//! image layout does (`org.opencontainers.image.ref.name` holds the tag, and
//! `io.containerd.image.name` the full reference, as containerd writes it).

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use super::{atomic, Digest, Result, Store, StoreError};

pub const EMPTY_INDEX: &str =
    r#"{"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
pub const ANNOTATION_FULL_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_REF_NAME: &str = oci_spec::image::ANNOTATION_REF_NAME;

/// The name an index entry gives its image, as [`ANNOTATION_FULL_NAME`] holds it.
pub trait RefName {
    /// The full reference (docker.io/library/busybox:latest); None when unnamed.
    fn full_name(&self) -> Option<&str>;
    /// The manifest digest, as written.
    fn digest_str(&self) -> &str;
}

impl RefName for Descriptor {
    fn full_name(&self) -> Option<&str> {
        self.annotations()
            .as_ref()?
            .get(ANNOTATION_FULL_NAME)
            .map(String::as_str)
    }

    fn digest_str(&self) -> &str {
        self.digest().as_ref()
    }
}

impl Store {
    pub fn read_index(&self) -> Result<ImageIndex> {
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
        let digest = manifest
            .as_str()
            .parse::<oci_spec::image::Digest>()
            .map_err(|_| StoreError::BadDigest(manifest.to_string()))?;
        self.update_index(|manifests| {
            manifests.retain(|m| match m.full_name() {
                Some(n) => !names.iter().any(|(name, _)| *name == n),
                // an unnamed entry for this manifest is replaced by what follows
                None => m.digest_str() != manifest.as_str(),
            });
            let entry = || Descriptor::new(MediaType::from(media_type), size, digest.clone());
            if names.is_empty()
                && !manifests
                    .iter()
                    .any(|m| m.digest_str() == manifest.as_str())
            {
                manifests.push(entry());
            }
            for (name, tag) in names {
                let mut e = entry();
                e.set_annotations(Some(HashMap::from([
                    (ANNOTATION_FULL_NAME.to_string(), name.to_string()),
                    (ANNOTATION_REF_NAME.to_string(), tag.to_string()),
                ])));
                manifests.push(e);
            }
            Ok(())
        })
    }

    /// Removes the name; returns the entry it had, or None when there was none.
    pub fn remove_ref(&self, name: &str) -> Result<Option<Descriptor>> {
        self.update_index(|manifests| {
            let pos = manifests.iter().position(|m| m.full_name() == Some(name));
            Ok(pos.map(|i| manifests.remove(i)))
        })
    }

    /// Removes every index entry (named or not) that points at `manifest`.
    pub fn remove_manifest_refs(&self, manifest: &Digest) -> Result<Vec<Descriptor>> {
        self.update_index(|manifests| {
            let (gone, kept) = std::mem::take(manifests)
                .into_iter()
                .partition(|m| m.digest_str() == manifest.as_str());
            *manifests = kept;
            Ok(gone)
        })
    }

    /// The index entry a full name points at.
    pub fn lookup_ref(&self, name: &str) -> Result<Option<Descriptor>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .find(|m| m.full_name() == Some(name))
            .cloned())
    }

    /// The first index entry (named or not) that points at `manifest`.
    pub fn index_entry(&self, manifest: &Digest) -> Result<Option<Descriptor>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .find(|m| m.digest_str() == manifest.as_str())
            .cloned())
    }

    /// Read-modify-write of index.json under the store lock, written atomically.
    /// Written through a JSON value, whose keys are sorted, so that the same
    /// index is the same bytes (oci-spec keeps annotations in a hash map).
    fn update_index<R>(&self, f: impl FnOnce(&mut Vec<Descriptor>) -> Result<R>) -> Result<R> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        let sorted = serde_json::to_value(&index).map_err(|e| StoreError::Json {
            path: self.root.join("index.json"),
            message: e.to_string(),
        })?;
        atomic::write_json_atomic(&self.root.join("index.json"), &sorted)?;
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
        assert_eq!(index.manifests().len(), 2);
        assert!(index
            .manifests()
            .iter()
            .all(|m| m.digest_str() == b.as_str()));
        // the same index is always the same bytes, annotations sorted
        let text = std::fs::read_to_string(dir.path().join("index.json")).unwrap();
        let full = text.find(ANNOTATION_FULL_NAME).unwrap();
        assert!(full < text.find(ANNOTATION_REF_NAME).unwrap(), "{text}");
        assert!(
            text.find("annotations").unwrap() < text.find("digest").unwrap(),
            "{text}"
        );
        assert!(store.remove_ref("docker.io/library/x:1").unwrap().is_some());
        assert!(store.remove_ref("docker.io/library/x:1").unwrap().is_none());
        assert!(store.lookup_ref("docker.io/library/x:2").unwrap().is_some());
        store.set_refs(&[], &a, 1, "m").unwrap();
        store.set_refs(&[], &a, 1, "m").unwrap();
        assert_eq!(store.read_index().unwrap().manifests().len(), 2);
        assert_eq!(store.remove_manifest_refs(&a).unwrap().len(), 1);
    }
}
