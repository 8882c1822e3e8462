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
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        index.manifests.retain(|m| m.full_name() != Some(name));
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_FULL_NAME.to_string(), name.to_string());
        annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        index.manifests.push(IndexEntry {
            media_type: media_type.to_string(),
            digest: manifest.to_string(),
            size,
            annotations,
        });
        atomic::write_json_atomic(&self.root.join("index.json"), &index)
    }
}
