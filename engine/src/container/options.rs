//! What the user asked for on `run`/`create`, parsed and checked before anything
//! is written to the store.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ContainerError, Result};
use crate::network::NetworkMode;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunOptions {
    pub name: Option<String>,
    /// KEY=VALUE, in order (later wins); env files already expanded.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// UID[:GID] or a user name from the image's /etc/passwd.
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub entrypoint: Option<String>,
    pub network: NetworkMode,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub interactive: bool,
    pub tty: bool,
    pub auto_remove: bool,
    /// host-path:container-path[:ro]
    pub volumes: Vec<Volume>,
    /// Replaces the image's Cmd when not empty.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub restart: super::restart::RestartPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// The host directory; empty until a named or anonymous volume is resolved.
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
    /// The volume's name (None for a bind mount of a host path, and for an
    /// anonymous volume not made yet).
    #[serde(default)]
    pub name: Option<String>,
}

impl Volume {
    /// A bind mount of a host path (not a volume in the store).
    pub fn is_bind(&self) -> bool {
        self.name.is_none() && !self.source.as_os_str().is_empty()
    }
}

/// `-v /host/dir:/in/container[:ro|rw]`, `-v NAME:/in/container[:ro|rw]` (a
/// named volume, created on first use) or `-v /in/container` (anonymous).
pub fn parse_volume(s: &str) -> Result<Volume> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = |why: &str| ContainerError::BadOption(format!("volume {s:?}: {why}"));
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => ("", *dst, "rw"),
        [src, dst] => (*src, *dst, "rw"),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => {
            return Err(bad(
                "use NAME:/container/path[:ro] or /host/path:/container/path[:ro]",
            ))
        }
    };
    if !dst.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        other => return Err(bad(&format!("unknown mode {other:?}: use ro or rw"))),
    };
    let destination = PathBuf::from(dst);
    if src.is_empty() {
        return Ok(Volume {
            source: PathBuf::new(),
            destination,
            read_only,
            name: None,
        });
    }
    if !src.starts_with('/') {
        crate::volume::validate_name(src).map_err(|_| {
            bad("a volume name uses letters, digits, '_', '.' and '-'; a host path starts with /")
        })?;
        return Ok(Volume {
            source: PathBuf::new(),
            destination,
            read_only,
            name: Some(src.to_string()),
        });
    }
    if !Path::new(src).exists() {
        return Err(bad("the host path does not exist"));
    }
    Ok(Volume {
        source: PathBuf::from(src),
        destination,
        read_only,
        name: None,
    })
}

/// `-e KEY=VALUE`, or `-e KEY` to pass the caller's value (dropped when unset).
pub fn parse_env_arg(arg: &str) -> Result<Option<String>> {
    if arg.is_empty() || arg.starts_with('=') {
        return Err(ContainerError::BadOption(format!(
            "environment variable {arg:?}: use KEY=VALUE"
        )));
    }
    if arg.contains('=') {
        return Ok(Some(arg.to_string()));
    }
    Ok(std::env::var(arg).ok().map(|v| format!("{arg}={v}")))
}

/// An env file as Docker reads it: KEY=VALUE lines, `#` comments, blank lines,
/// bare KEY taken from the caller's environment. No quote processing.
pub fn parse_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| ContainerError::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_env_arg(line) {
            Ok(Some(kv)) => out.push(kv),
            Ok(None) => {}
            Err(_) => {
                return Err(ContainerError::BadOption(format!(
                    "env file {} line {}: {line:?} is not KEY=VALUE",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    Ok(out)
}

/// Merges KEY=VALUE lists: later entries replace earlier ones with the same key.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in base.iter().chain(overrides) {
        let key = kv.split('=').next().unwrap_or("");
        if let Some(slot) = out.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            *slot = kv.clone();
        } else {
            out.push(kv.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "# comment\nA=1\n\n  B=two words\nC=x=y\n").unwrap();
        assert_eq!(
            parse_env_file(&f).unwrap(),
            vec!["A=1", "B=two words", "C=x=y"]
        );
        std::fs::write(&f, "=bad\n").unwrap();
        let err = parse_env_file(&f).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn env_merge_later_wins() {
        let merged = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
        );
        assert_eq!(merged, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn volumes() {
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.destination, PathBuf::from("/data"));
        let named = parse_volume("named:/data").unwrap();
        assert_eq!(named.name.as_deref(), Some("named"));
        assert!(!named.is_bind());
        assert!(parse_volume("/data").unwrap().name.is_none());
        assert!(parse_volume("bad name:/data").is_err());
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/x:rx").is_err());
        assert!(parse_volume("/does/not/exist:/x").is_err());
    }
}
