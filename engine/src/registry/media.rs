//! What a registry hands back for a reference: an image manifest, or an index
//! (manifest list) of per-platform manifests, in OCI or Docker media types; and
//! the platform (`os/arch[/variant]`) chosen from an index.

use std::fmt;

use serde::{Deserialize, Serialize};

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

/// An OCI image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformJson {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A platform as `--platform` names it: `linux/amd64`, `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    /// linux/amd64: what this engine runs.
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

/// Go's names for architectures, which indexes use.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

/// The variant an architecture means when none is written.
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(RegistryError::BadPlatform(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    fn matches(&self, p: &PlatformJson) -> bool {
        if p.os != self.os || normalize_arch(&p.architecture) != self.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let have = p.variant.as_deref().or(default_variant(&self.architecture));
                have == Some(want.as_str())
            }
        }
    }

    /// Picks the manifest for this platform. Without a wanted variant, the entry
    /// with the architecture's default variant (or none) wins over others.
    pub fn select<'a>(&self, index: &'a Index, what: &str) -> Result<&'a IndexEntry> {
        let candidates: Vec<&IndexEntry> = index
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_some_and(|p| self.matches(p)))
            .collect();
        let preferred = candidates.iter().find(|m| {
            let v = m.platform.as_ref().and_then(|p| p.variant.as_deref());
            v.is_none() || v == default_variant(&self.architecture)
        });
        if let Some(m) = preferred.or(candidates.first()) {
            return Ok(m);
        }
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            // attestation manifests carry unknown/unknown: not a platform
            .filter(|p| p.os != "unknown")
            .map(|p| match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            })
            .collect();
        Err(RegistryError::NoPlatform {
            what: what.to_string(),
            wanted: self.to_string(),
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, (os, arch, variant))| IndexEntry {
                    media_type: OCI_MANIFEST.into(),
                    digest: format!("sha256:{i:064}"),
                    size: 1,
                    platform: Some(PlatformJson {
                        os: os.to_string(),
                        architecture: arch.to_string(),
                        variant: variant.map(str::to_string),
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn parses_platforms() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::default());
        let p = Platform::parse("linux/aarch64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selects_platforms() {
        let idx = index(&[
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("unknown", "unknown", None),
        ]);
        let pick = |s: &str| {
            Platform::parse(s)
                .unwrap()
                .select(&idx, "x")
                .map(|m| m.digest.clone())
        };
        assert_eq!(pick("linux/amd64").unwrap(), idx.manifests[2].digest);
        assert_eq!(pick("linux/arm64").unwrap(), idx.manifests[3].digest);
        assert_eq!(pick("linux/arm64/v8").unwrap(), idx.manifests[3].digest);
        assert_eq!(pick("linux/arm").unwrap(), idx.manifests[1].digest);
        assert_eq!(pick("linux/arm/v6").unwrap(), idx.manifests[0].digest);
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(
            err.contains("linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8"),
            "{err}"
        );
    }

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
