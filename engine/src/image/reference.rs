//! Image references as Docker reads them: `busybox` is
//! `docker.io/library/busybox:latest`; `host:5000/team/app:v1@sha256:...` is whole.

use std::fmt;

use super::ImageError;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn bad(input: &str, why: &str) -> ImageError {
    ImageError::BadReference {
        input: input.to_string(),
        why: why.to_string(),
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or '-'s, as the distribution grammar says
    !c.is_empty()
        && c.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Reference {
    pub fn parse(input: &str) -> Result<Self, ImageError> {
        if input.is_empty() {
            return Err(bad(input, "it is empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad(input, "the digest must start with sha256:"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(input, "the digest must be sha256: and 64 hex digits"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(bad(
                    input,
                    &format!(
                        "tag {t:?} may only hold letters, digits, '_', '.' and '-' (at most 128)"
                    ),
                ));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let path = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad(input, "repository names must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(bad(
                input,
                "use lowercase letters, digits and '.', '_', '-' between '/'-separated parts",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// The full name stored in the index, e.g. `docker.io/library/busybox:latest`.
    pub fn full(&self) -> String {
        self.to_string()
    }

    /// The short form Docker prints: `busybox:latest`, `localhost:5000/app:v1`.
    pub fn familiar(&self) -> String {
        let repo = self.familiar_repository();
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => format!("{repo}:{t}@{d}"),
            (Some(t), None) => format!("{repo}:{t}"),
            (None, Some(d)) => format!("{repo}@{d}"),
            (None, None) => repo,
        }
    }

    /// The familiar repository without tag (the REPOSITORY column of `images`).
    pub fn familiar_repository(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.full(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("team/app:v1").unwrap();
        assert_eq!(r.full(), "docker.io/team/app:v1");
    }

    #[test]
    fn registry_with_port_and_digest() {
        let r = Reference::parse("localhost:5000/app:v2").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/x/y@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = Reference::parse("localhost:5000/app").unwrap();
        assert_eq!(r.tag.as_deref(), Some("latest"));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busy box",
            "a//b",
            "x@sha256:12",
            "app:-x",
            "-app",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
