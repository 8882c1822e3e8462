//! What a registry hands back for a reference: an image manifest, or an index
//! (manifest list) of per-platform manifests, in OCI or Docker media types. The
//! documents themselves are [`crate::oci`]'s.

use serde::Deserialize;

use super::{RegistryError, Result};

pub use crate::oci::media::{
    DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// Classifies a manifest by its media type (the Content-Type header, else the
/// document's own `mediaType`, else its shape, as OCI allows the field to be absent).
pub fn classify(
    content_type: Option<&str>,
    body: &[u8],
    what: &str,
) -> Result<(ManifestKind, String)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Peek {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
        schema_version: Option<u32>,
    }
    let peek: Peek = serde_json::from_slice(body).map_err(|e| RegistryError::BadResponse {
        what: what.to_string(),
        message: format!("manifest is not valid json: {e}"),
    })?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
    let media_type = match (header, peek.media_type) {
        (_, Some(m)) => m,
        (Some(h), None) => h,
        (None, None) if peek.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) if peek.layers.is_some() => OCI_MANIFEST.to_string(),
        (None, None) => String::new(),
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok((ManifestKind::Image, media_type)),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok((ManifestKind::Index, media_type)),
        _ if peek.schema_version == Some(1) => Err(RegistryError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: format!("{media_type} (docker schema 1 is deprecated: push the image again with a current tool)"),
        }),
        _ => Err(RegistryError::UnsupportedMediaType {
            what: what.to_string(),
            media_type,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_manifests() {
        let oci = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            classify(None, oci, "x").unwrap(),
            (ManifestKind::Image, OCI_MANIFEST.into())
        );
        let list =
            format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[]}}"#);
        assert_eq!(
            classify(Some("application/json"), list.as_bytes(), "x")
                .unwrap()
                .0,
            ManifestKind::Index
        );
        assert_eq!(
            classify(
                Some(&format!("{DOCKER_MANIFEST}; charset=utf-8")),
                br#"{"schemaVersion":2}"#,
                "x"
            )
            .unwrap(),
            (ManifestKind::Image, DOCKER_MANIFEST.into())
        );
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        let err = classify(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            v1,
            "x",
        )
        .unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
        assert!(classify(None, b"not json", "x").is_err());
    }
}
