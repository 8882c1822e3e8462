//! `RUN --mount=...`: BuildKit's mounts. A cache mount is a directory kept in
//! the store across builds (keyed by its id, never part of the cache key or the
//! layer), a bind mount shows context or stage files, tmpfs is scratch space, a
//! secret is a file or an env var from `build --secret` that never reaches a
//! layer, the history or the config.
//!
//! Options are checked as BuildKit checks them: an option that has no meaning
//! for the mount's type is refused, never silently dropped.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bind {
        source: Option<String>,
        from: Option<String>,
        rw: bool,
    },
    Cache(Cache),
    Tmpfs {
        /// `size=`: the tmpfs's size limit in bytes (none: the kernel's default).
        size: Option<u64>,
        read_only: bool,
    },
    Secret(Secret),
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

/// A secret mount's options: a file (at the target, or /run/secrets/ID when
/// neither a target nor `env` is given) and/or an env var for this RUN only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    /// Fail the build when `build --secret` did not pass it.
    pub required: bool,
    /// `env=NAME`: the value in the RUN's environment as NAME.
    pub env: Option<String>,
    /// The file's mode and owner (BuildKit: 0400, root).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Secret {
    /// Where the secret's file goes: the target, or /run/secrets/ID unless the
    /// secret is only asked as an env var.
    pub fn file_target(&self, target: &str) -> Option<String> {
        if !target.is_empty() {
            Some(target.to_string())
        } else if self.env.is_none() {
            Some(format!("/run/secrets/{}", self.id))
        } else {
            None
        }
    }
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

/// A mount made ready for the container. Scratch it made (a staged bind
/// source, a secret's file, a private cache) goes away when it is dropped.
#[derive(Debug)]
pub enum Prepared {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
        /// Held while the step runs: a cache's lock (shared or exclusive).
        hold: Option<std::fs::File>,
        /// A directory of scratch removed after the step.
        scratch: Option<PathBuf>,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
        read_only: bool,
    },
    /// A variable in the step's environment only (a secret's `env=`).
    Env { name: String, value: String },
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Prepared::Bind {
            scratch: Some(dir), ..
        } = self
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// BuildKit's booleans (Go's strconv.ParseBool).
fn boolean(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("--mount: {key}={v:?} is not true or false")),
    }
}

/// Parses one `--mount` value: `type=cache,target=/root/.cache,id=pip`.
pub fn parse(value: &str) -> Result<Mount, String> {
    let fields: Vec<(String, Option<&str>)> = value
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| match f.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (f.to_ascii_lowercase(), None),
        })
        .collect();
    let typ = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.unwrap_or("").to_ascii_lowercase())
        .unwrap_or_else(|| "bind".into());
    match typ.as_str() {
        "bind" | "cache" | "tmpfs" | "secret" => {}
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
    }
    let mut target = None;
    let mut source = None;
    let mut from = None;
    let mut id = None;
    let mut rw: Option<bool> = None;
    let mut required = false;
    let mut sharing = None;
    let mut mode = None;
    let mut uid = None;
    let mut gid = None;
    let mut size = None;
    let mut env = None;
    let number = |k: &str, v: &str, radix: u32| {
        u32::from_str_radix(v, radix).map_err(|_| format!("--mount: {k}={v:?} is not a number"))
    };
    // an option that means nothing for this type is an error, as in BuildKit
    let only = |k: &str, types: &[&str]| -> Result<(), String> {
        if types.contains(&typ.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "--mount: {k} is not an option of type={typ} (it is for {})",
                types.join(", ")
            ))
        }
    };
    for (k, v) in &fields {
        let Some(v) = *v else {
            match k.as_str() {
                "ro" | "readonly" => rw = Some(false),
                "rw" | "readwrite" => rw = Some(true),
                "required" => {
                    only(k, &["secret"])?;
                    required = true;
                }
                _ => return Err(format!("--mount: {k:?} must be a key=value pair")),
            }
            continue;
        };
        match k.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => target = Some(v.to_string()),
            "source" | "src" => {
                only(k, &["bind", "cache", "secret"])?;
                source = Some(v.to_string())
            }
            "from" => {
                only(k, &["bind", "cache"])?;
                from = Some(v.to_string())
            }
            "id" => {
                only(k, &["cache", "secret"])?;
                id = Some(v.to_string())
            }
            "rw" | "readwrite" => rw = Some(boolean(k, v)?),
            "ro" | "readonly" => rw = Some(!boolean(k, v)?),
            "required" => {
                only(k, &["secret"])?;
                required = boolean(k, v)?
            }
            "sharing" => {
                only(k, &["cache"])?;
                sharing = Some(match v.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(format!(
                            "--mount: sharing={v:?} is not one of shared, private, locked"
                        ))
                    }
                })
            }
            "mode" => {
                only(k, &["cache", "secret"])?;
                mode = Some(number(k, v, 8)?)
            }
            "uid" => {
                only(k, &["cache", "secret"])?;
                uid = Some(number(k, v, 10)?)
            }
            "gid" => {
                only(k, &["cache", "secret"])?;
                gid = Some(number(k, v, 10)?)
            }
            "size" => {
                only(k, &["tmpfs"])?;
                size = Some(crate::cgroups::parse_memory_size(v).map_err(|_| {
                    format!("--mount: size={v:?} is not a size (give bytes or 64k, 100m, 1g)")
                })?)
            }
            "env" => {
                only(k, &["secret"])?;
                if v.is_empty() || v.contains('=') {
                    return Err(format!("--mount: env={v:?} is not a variable name"));
                }
                env = Some(v.to_string())
            }
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
            sharing: sharing.unwrap_or_default(),
            from,
            source,
            mode: mode.unwrap_or(0o755),
            uid: uid.unwrap_or(0),
            gid: gid.unwrap_or(0),
            // a cache mount is writable unless it says otherwise
            read_only: rw == Some(false),
        }),
        "tmpfs" => Kind::Tmpfs {
            size,
            read_only: rw == Some(false),
        },
        _ => {
            if rw == Some(true) {
                return Err("--mount=type=secret: a secret is always read-only (drop rw)".into());
            }
            if source.is_some() && id.is_some() {
                return Err("--mount=type=secret: give id or source, not both".into());
            }
            // BuildKit: the id defaults to the target's file name
            let id = id
                .or(source)
                .or_else(|| {
                    target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .filter(|n| !n.is_empty())
                        .map(String::from)
                })
                .ok_or("--mount=type=secret needs an id or a target")?;
            return Ok(Mount {
                kind: Kind::Secret(Secret {
                    id,
                    required,
                    env,
                    mode: mode.unwrap_or(0o400),
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                }),
                target: target.unwrap_or_default(),
            });
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
        let Kind::Secret(secret) = &s.kind else {
            panic!("a secret");
        };
        assert_eq!(
            (
                secret.id.as_str(),
                secret.required,
                secret.mode,
                &secret.env
            ),
            ("token", false, 0o400, &None)
        );
        assert_eq!(
            secret.file_target(&s.target).as_deref(),
            Some("/run/secrets/token")
        );
        // env= alone: no file; env= and a target: both
        let s = parse("type=secret,id=aws,env=AWS_KEY,required").unwrap();
        let Kind::Secret(secret) = &s.kind else {
            panic!("a secret");
        };
        assert!(secret.required && secret.env.as_deref() == Some("AWS_KEY"));
        assert_eq!(secret.file_target(&s.target), None);
        let s = parse("type=secret,id=aws,env=K,target=/k,mode=0440,uid=7,gid=8").unwrap();
        let Kind::Secret(secret) = &s.kind else {
            panic!("a secret");
        };
        assert_eq!(secret.file_target(&s.target).as_deref(), Some("/k"));
        assert_eq!((secret.mode, secret.uid, secret.gid), (0o440, 7, 8));
        // the id defaults to the target's name; source is another word for id
        let s = parse("type=secret,target=/etc/npmrc,required=false").unwrap();
        assert!(matches!(&s.kind, Kind::Secret(x) if x.id == "npmrc" && !x.required));
        let s = parse("type=secret,source=tok").unwrap();
        assert!(matches!(&s.kind, Kind::Secret(x) if x.id == "tok"));
        assert_eq!(
            parse("type=tmpfs,target=/t,size=64m").unwrap().kind,
            Kind::Tmpfs {
                size: Some(64 << 20),
                read_only: false
            }
        );
        assert_eq!(
            parse("TYPE=tmpfs,target=/t,size=4096").unwrap().kind,
            Kind::Tmpfs {
                size: Some(4096),
                read_only: false
            }
        );
        // options that mean nothing for the type are refused, each named
        for (bad, named) in [
            ("type=tmpfs", "target"),
            ("type=tmpfs,target=/t,size=lots", "size"),
            ("type=cache,target=/c,size=1m", "size"),
            ("type=bind,target=/b,env=X", "env"),
            ("type=bind,target=/b,required", "required"),
            ("type=cache,target=/c,required=true", "required"),
            ("type=bind,target=/b,mode=0700", "mode"),
            ("type=tmpfs,target=/t,uid=1", "uid"),
            ("type=bind,target=/b,id=x", "id"),
            ("type=tmpfs,target=/t,from=base", "from"),
            ("type=secret,id=a,from=base", "from"),
            ("type=secret,id=a,sharing=locked", "sharing"),
            ("type=secret,id=a,rw", "read-only"),
            ("type=secret,id=a,source=b", "not both"),
            ("type=secret,id=a,required=maybe", "required"),
            ("type=secret,id=a,env=", "env"),
            ("type=secret", "id"),
            ("type=ssh", "ssh"),
            ("type=volume,target=/v", "volume"),
            ("type=cache,target=/x,bogus=1", "bogus"),
            ("type=cache,target=/x,bogus", "bogus"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(named), "{bad}: {e}");
        }
    }
}
