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
    Cache(Cache),
    Tmpfs,
    Secret {
        id: String,
        required: bool,
    },
}

/// A cache mount's options, as BuildKit reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// Which cache (default: the target path).
    pub id: Option<String>,
    pub sharing: Sharing,
    /// A stage or image whose files seed a new cache (`source` in it).
    pub from: Option<String>,
    pub source: Option<String>,
    /// Mode and owner of a new cache directory (0755, root).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub read_only: bool,
}

/// How concurrent builds use one cache: all at once (`shared`, the default),
/// one after another (`locked`), or a fresh one while it is in use (`private`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    #[default]
    Shared,
    Private,
    Locked,
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
        /// Held while the step runs: a cache's lock (shared or exclusive).
        hold: Option<std::fs::File>,
        /// A private cache made because the cache was in use: removed after.
        discard: bool,
    },
    Tmpfs {
        target: String,
    },
}

impl Prepared {
    /// Removes the temp copy a bind mount of context or stage files used.
    pub fn cleanup(self) {
        if let Prepared::Bind {
            source, discard, ..
        } = self
        {
            if discard {
                // the private cache and the scratch directory holding it
                let _ = std::fs::remove_dir_all(source.parent().unwrap_or(&source));
                return;
            }
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
    let mut rw: Option<bool> = None;
    let mut required = false;
    let mut sharing = Sharing::Shared;
    let mut mode = None;
    let mut uid = None;
    let mut gid = None;
    let number = |k: &str, v: &str, radix: u32| {
        u32::from_str_radix(v, radix).map_err(|_| format!("--mount: {k}={v:?} is not a number"))
    };
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = v.to_string(),
            "target" | "dst" | "destination" => target = Some(v.to_string()),
            "source" | "src" => source = Some(v.to_string()),
            "from" => from = Some(v.to_string()),
            "id" => id = Some(v.to_string()),
            "rw" | "readwrite" => rw = Some(v.is_empty() || v == "true"),
            "ro" | "readonly" => rw = Some(!(v.is_empty() || v == "true")),
            "required" => required = v.is_empty() || v == "true",
            "sharing" => {
                sharing = match v {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(format!(
                            "--mount: sharing={v:?} is not one of shared, private, locked"
                        ))
                    }
                }
            }
            "mode" => mode = Some(number(k, v, 8)?),
            "uid" => uid = Some(number(k, v, 10)?),
            "gid" => gid = Some(number(k, v, 10)?),
            // accepted and not needed here
            "size" | "env" => {}
            other => return Err(format!("--mount: unknown option {other:?}")),
        }
    }
    let kind = match typ.as_str() {
        "bind" => Kind::Bind {
            source,
            from,
            rw: rw.unwrap_or(false),
        },
        "cache" => Kind::Cache(Cache {
            id,
            sharing,
            from,
            source,
            mode: mode.unwrap_or(0o755),
            uid: uid.unwrap_or(0),
            gid: gid.unwrap_or(0),
            // a cache mount is writable unless it says otherwise
            read_only: rw == Some(false),
        }),
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
                kind: Kind::Cache(Cache {
                    id: Some("pip".into()),
                    sharing: Sharing::Locked,
                    from: None,
                    source: None,
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                    read_only: false,
                }),
                target: "/root/.cache".into()
            }
        );
        let Kind::Cache(c) =
            parse("type=cache,target=/c,from=base,source=/seed,mode=0700,uid=1000,gid=50,ro")
                .unwrap()
                .kind
        else {
            panic!("a cache mount");
        };
        assert_eq!(
            (
                c.from.as_deref(),
                c.source.as_deref(),
                c.mode,
                c.uid,
                c.gid,
                c.read_only
            ),
            (Some("base"), Some("/seed"), 0o700, 1000, 50, true)
        );
        assert!(parse("type=cache,target=/c,sharing=sometimes").is_err());
        assert!(parse("type=cache,target=/c,uid=me").is_err());
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
