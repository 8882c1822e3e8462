//! `RUN --mount=...`: BuildKit's mounts. A cache mount is a directory kept in
//! the store across builds (keyed by its id, never part of the cache key or the
//! layer), a bind mount shows context or stage files, tmpfs is scratch space, a
//! secret is a file from `build --secret` that never reaches a layer or history.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bind {
        source: Option<String>,
        from: Option<String>,
        rw: bool,
    },
    Cache {
        id: Option<String>,
    },
    Tmpfs,
    Secret {
        id: String,
        required: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: Kind,
    pub target: String,
}

impl Mount {
    /// What of the mount goes into the RUN's cache key (a cache mount's
    /// contents and a secret's value never do).
    pub fn key_text(&self) -> String {
        format!("{:?}:{}", self.kind, self.target)
    }
}

/// A mount made ready for the container.
#[derive(Debug)]
pub enum Prepared {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
    },
}

impl Prepared {
    /// Removes the temp copy a bind mount of context or stage files used.
    pub fn cleanup(self) {
        if let Prepared::Bind { source, .. } = self {
            if let Some(parent) = source.parent() {
                let is_temp = parent
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("build-bind-"));
                if is_temp {
                    let _ = std::fs::remove_dir_all(parent);
                }
            }
        }
    }
}

/// Parses one `--mount` value: `type=cache,target=/root/.cache,id=pip`.
pub fn parse(value: &str) -> Result<Mount, String> {
    let mut typ = "bind".to_string();
    let mut target = None;
    let mut source = None;
    let mut from = None;
    let mut id = None;
    let mut rw = false;
    let mut required = false;
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = v.to_string(),
            "target" | "dst" | "destination" => target = Some(v.to_string()),
            "source" | "src" => source = Some(v.to_string()),
            "from" => from = Some(v.to_string()),
            "id" => id = Some(v.to_string()),
            "rw" | "readwrite" => rw = v.is_empty() || v == "true",
            "ro" | "readonly" => rw = !(v.is_empty() || v == "true"),
            "required" => required = v.is_empty() || v == "true",
            // accepted and not needed here: one builder at a time shares a cache dir
            "sharing" | "mode" | "uid" | "gid" | "size" | "env" => {}
            other => return Err(format!("--mount: unknown option {other:?}")),
        }
    }
    let kind = match typ.as_str() {
        "bind" => Kind::Bind { source, from, rw },
        "cache" => Kind::Cache { id },
        "tmpfs" => Kind::Tmpfs,
        "secret" => {
            let id = id
                .or_else(|| {
                    target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .map(String::from)
                })
                .ok_or("--mount=type=secret needs an id")?;
            return Ok(Mount {
                kind: Kind::Secret { id, required },
                target: target.unwrap_or_default(),
            });
        }
        "ssh" => {
            return Err(
                "--mount=type=ssh is not supported: there is no SSH agent forwarding".into(),
            )
        }
        other => {
            return Err(format!(
                "--mount: unknown type {other:?} (use bind, cache, tmpfs or secret)"
            ))
        }
    };
    let target = target.ok_or_else(|| format!("--mount={value}: a target is required"))?;
    Ok(Mount { kind, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_forms() {
        assert_eq!(
            parse("type=cache,target=/root/.cache,id=pip,sharing=locked").unwrap(),
            Mount {
                kind: Kind::Cache {
                    id: Some("pip".into())
                },
                target: "/root/.cache".into()
            }
        );
        assert_eq!(
            parse("target=/src,from=build,rw").unwrap().kind,
            Kind::Bind {
                source: None,
                from: Some("build".into()),
                rw: true
            }
        );
        let s = parse("type=secret,id=token").unwrap();
        assert_eq!(
            s.kind,
            Kind::Secret {
                id: "token".into(),
                required: false
            }
        );
        assert!(parse("type=tmpfs").is_err());
        assert!(parse("type=ssh").is_err());
        assert!(parse("type=cache,target=/x,bogus=1").is_err());
    }
}
