//! Named and anonymous volumes: directories in the store (`volumes/<name>/_data`)
//! that outlive containers. A new, empty volume mounted over a path the image
//! fills gets the image's content there first, as Docker does. Which
//! containers use a volume is the containers' knowledge: removing, pruning and
//! inspecting with users are in `container::volumes`.

mod copy_up;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::atomic::{read_json, write_json_atomic};
use crate::store::Store;

pub use copy_up::copy_up;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("no such volume: {0}")]
    NotFound(String),
    #[error("invalid volume name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    BadName(String),
    #[error("volume {name} is in use by container {containers}: remove the container first")]
    InUse { name: String, containers: String },
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VolumeError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// `volumes/<name>/volume.json`, plus the data in `_data` beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CreatedAt")]
    pub created: String,
    /// Made for one container (image VOLUME, `-v /path`): goes with `rm -v`/`--rm`.
    #[serde(rename = "Anonymous")]
    pub anonymous: bool,
    #[serde(rename = "Mountpoint")]
    pub mountpoint: PathBuf,
}

fn volumes_dir(store: &Store) -> PathBuf {
    store.root().join("volumes")
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if first_ok && rest_ok && name.len() >= 2 && name.len() <= 255 {
        Ok(())
    } else {
        Err(VolumeError::BadName(name.to_string()))
    }
}

/// An existing volume.
pub fn find(store: &Store, name: &str) -> Result<Volume> {
    validate_name(name).map_err(|_| VolumeError::NotFound(name.to_string()))?;
    let record = volumes_dir(store).join(name).join("volume.json");
    if !record.exists() {
        return Err(VolumeError::NotFound(name.to_string()));
    }
    Ok(read_json(&record)?)
}

/// Creates a volume (a random name when `None`: an anonymous volume). Creating
/// one that exists returns it unchanged, as `docker volume create` does.
/// Returns the volume and whether it is new.
pub fn create(store: &Store, name: Option<&str>) -> Result<(Volume, bool)> {
    let (name, anonymous) = match name {
        Some(n) => {
            validate_name(n)?;
            (n.to_string(), false)
        }
        None => (crate::util::id::random_hex(32), true),
    };
    if let Ok(v) = find(store, &name) {
        return Ok((v, false));
    }
    let dir = volumes_dir(store).join(&name);
    let data = dir.join("_data");
    fs::create_dir_all(&data).map_err(|e| VolumeError::io(&data, e))?;
    let v = Volume {
        name,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        anonymous,
        mountpoint: data,
    };
    // written last: a directory without it is not a volume yet
    write_json_atomic(&dir.join("volume.json"), &v)?;
    Ok((v, true))
}

/// Every volume, by name.
pub fn list(store: &Store) -> Result<Vec<Volume>> {
    let dir = volumes_dir(store);
    let mut out: Vec<Volume> = fs::read_dir(&dir)
        .map_err(|e| VolumeError::io(&dir, e))?
        .flatten()
        .filter_map(|e| read_json(&e.path().join("volume.json")).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A volume as `docker volume ls --format` rows see it: every field a string.
pub fn row(v: &Volume) -> serde_json::Value {
    serde_json::json!({
        "Driver": "local",
        "Labels": "",
        "Links": "N/A",
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Scope": "local",
        "Size": "N/A",
    })
}

/// Docker's default `volume ls` table and its column titles.
pub const LS_TABLE: &str = "{{.Driver}}\\t{{.Name}}";
pub fn titles() -> serde_json::Value {
    serde_json::json!({"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
        "Labels": "LABELS", "Links": "LINKS", "Scope": "SCOPE", "Size": "SIZE"})
}

/// Removes a volume's record and data, without the lock (callers hold it) or
/// the in-use check (`container::volumes::remove` makes it: only containers
/// know which volumes they mount).
pub(crate) fn remove_unchecked(store: &Store, name: &str) -> Result<()> {
    let dir = volumes_dir(store).join(name);
    // the record goes first: a half-removed directory is no volume any more
    let record = dir.join("volume.json");
    fs::remove_file(&record).map_err(|e| VolumeError::io(&record, e))?;
    fs::remove_dir_all(&dir).map_err(|e| VolumeError::io(&dir, e))
}

/// True when the directory has no entries (or cannot be read).
pub fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}
