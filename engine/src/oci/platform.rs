//! A platform as `--platform` names it (`linux/amd64`, `linux/arm64/v8`), and
//! the choice of one manifest from an image index (manifest list) by it.

use std::fmt;

use oci_spec::image::{Descriptor, ImageIndex};

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")]
    Bad(String),
    #[error("{what} has no image for platform {wanted} (it has: {available})")]
    Missing {
        what: String,
        wanted: String,
        available: String,
    },
}

/// A wanted platform: os, Go's name of the architecture, and a variant.
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
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(PlatformError::Bad(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture: normalize_arch(&parts[1].to_ascii_lowercase()).to_string(),
            variant: parts.get(2).map(|v| v.to_ascii_lowercase()),
        })
    }

    /// Linux on the architecture this binary runs on.
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: normalize_arch(std::env::consts::ARCH).to_string(),
            variant: None,
        }
    }

    fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        if p.os().to_string() != self.os
            || normalize_arch(&p.architecture().to_string()) != self.architecture
        {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let have = p
                    .variant()
                    .as_deref()
                    .or(default_variant(&self.architecture));
                have == Some(want.as_str())
            }
        }
    }

    /// Picks the manifest for this platform. Without a wanted variant, the entry
    /// with the architecture's default variant (or none) wins over others.
    pub fn select<'a>(
        &self,
        index: &'a ImageIndex,
        what: &str,
    ) -> Result<&'a Descriptor, PlatformError> {
        let candidates: Vec<&Descriptor> = index
            .manifests()
            .iter()
            .filter(|m| m.platform().as_ref().is_some_and(|p| self.matches(p)))
            .collect();
        let preferred = candidates.iter().find(|m| {
            let v = m.platform().as_ref().and_then(|p| p.variant().as_deref());
            v.is_none() || v == default_variant(&self.architecture)
        });
        if let Some(m) = preferred.or(candidates.first()) {
            return Ok(m);
        }
        let available: Vec<String> = index
            .manifests()
            .iter()
            .filter_map(|m| m.platform().as_ref())
            // attestation manifests carry unknown/unknown: not a platform
            .filter(|p| p.os().to_string() != "unknown")
            .map(|p| match p.variant() {
                Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
                None => format!("{}/{}", p.os(), p.architecture()),
            })
            .collect();
        Err(PlatformError::Missing {
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
    use crate::oci::media::{OCI_INDEX, OCI_MANIFEST};

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, variant))| {
                let mut platform = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    platform["variant"] = serde_json::json!(v);
                }
                serde_json::json!({"mediaType": OCI_MANIFEST,
                    "digest": format!("sha256:{i:064}"), "size": 1, "platform": platform})
            })
            .collect();
        serde_json::from_value(
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": manifests}),
        )
        .unwrap()
    }

    #[test]
    fn parses_platforms() {
        assert_eq!(Platform::parse("linux/amd64").unwrap(), Platform::default());
        let p = Platform::parse("linux/aarch64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Platform::host().os, "linux");
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
                .map(|m| m.digest().clone())
        };
        let digest = |i: usize| idx.manifests()[i].digest().clone();
        assert_eq!(pick("linux/amd64").unwrap(), digest(2));
        assert_eq!(pick("linux/arm64").unwrap(), digest(3));
        assert_eq!(pick("linux/arm64/v8").unwrap(), digest(3));
        assert_eq!(pick("linux/arm").unwrap(), digest(1));
        assert_eq!(pick("linux/arm/v6").unwrap(), digest(0));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(
            err.contains("linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8"),
            "{err}"
        );
    }
}
