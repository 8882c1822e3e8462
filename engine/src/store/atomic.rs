//! Crash-safe writes: temp file in the same directory, fsync, rename, fsync dir.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::{Result, StoreError};

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // the pid in the name tells a crash's leftover from a write under way
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        super::random_hex(4)
    ));
    write_via(&tmp, path, data)
}

/// Writes `data` to `tmp`, then renames it to `path` (same filesystem).
pub fn write_via(tmp: &Path, path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let result = (|| {
        let mut f = File::create(tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result.map_err(|e| StoreError::io(path, e))
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &data)
}

/// [`write_json_atomic`] without the fsyncs: the rename still makes it
/// all-or-nothing for a process that dies (kill -9), but a power cut may lose
/// it. For records nothing needs after a reboot (a `--rm` container's: the
/// container itself does not survive one, and a directory whose
/// `container.json` is missing or torn reads as a create that never finished).
pub fn write_json_volatile<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        super::random_hex(4)
    ));
    let result = fs::write(&tmp, &data).and_then(|_| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| StoreError::io(path, e))
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(|e| StoreError::io(path, e))?;
    serde_json::from_slice(&data).map_err(|e| StoreError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Makes a rename durable: the directory entry itself must reach the disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
