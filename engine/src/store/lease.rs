//! Leases: what a running process has written to the store but not yet tied to a
//! ref (a pulled layer waiting for its manifest, say). Garbage collection must not
//! take those away.
//!
//! Each process holds one file `tmp/lease-<pid>-<random>` under an exclusive flock
//! for as long as it lives and appends the digests it protects. The kernel drops the
//! flock when the process ends (even on kill -9), so a lease file nobody holds is
//! stale and the collector deletes it. Leases are created and read under the store
//! lock, so a collector never misses one that is being written.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::{Result, Store, StoreError};

const LEASE_PREFIX: &str = "lease-";

/// This process's lease files, one per store root.
fn leases() -> &'static Mutex<HashMap<PathBuf, File>> {
    static LEASES: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    LEASES.get_or_init(|| Mutex::new(HashMap::new()))
}

fn try_flock_exclusive(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

impl Store {
    /// Protects blobs and layers (by digest or chain id) from garbage collection
    /// until this process exits. The caller must hold the store lock.
    pub fn lease(&self, digests: &[&super::Digest]) -> Result<()> {
        let mut map = leases().lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(self.root()) {
            let path = self.root().join("tmp").join(format!(
                "{LEASE_PREFIX}{}-{}",
                std::process::id(),
                super::random_hex(4)
            ));
            let file = OpenOptions::new()
                .create_new(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            if !try_flock_exclusive(&file).map_err(|e| StoreError::io(&path, e))? {
                return Err(StoreError::io(
                    &path,
                    std::io::Error::other("a fresh lease file is locked by someone else"),
                ));
            }
            map.insert(self.root().to_path_buf(), file);
        }
        let file = map.get_mut(self.root()).expect("inserted above");
        let mut lines = String::new();
        for d in digests {
            lines.push_str(d.hex());
            lines.push('\n');
        }
        // No fsync: a lease only matters while its process lives.
        file.write_all(lines.as_bytes())
            .map_err(|e| StoreError::io(self.root().join("tmp"), e))
    }

    /// Ends this process's lease on this store: call when everything it wrote is
    /// tied to a ref (or taken back), and no other thread is still ingesting.
    pub fn release_lease(&self) {
        let mut map = leases().lock().unwrap_or_else(|e| e.into_inner());
        if map.remove(self.root()).is_some() {
            let own = format!("{LEASE_PREFIX}{}-", std::process::id());
            if let Ok(rd) = fs::read_dir(self.root().join("tmp")) {
                for e in rd.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&own) {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
        }
    }

    /// Hex digests every live lease protects; deletes the stale lease files.
    /// The caller must hold the store lock.
    pub fn leased(&self) -> Result<HashSet<String>> {
        self.leases_read(false)
    }

    /// Like [`Store::leased`] without this process's own lease: for taking back
    /// what a failed command of ours added.
    pub fn leased_by_others(&self) -> Result<HashSet<String>> {
        self.leases_read(true)
    }

    fn leases_read(&self, skip_own: bool) -> Result<HashSet<String>> {
        let own = format!("{LEASE_PREFIX}{}-", std::process::id());
        let tmp = self.root().join("tmp");
        let mut out = HashSet::new();
        let entries = fs::read_dir(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(LEASE_PREFIX) || (skip_own && name.starts_with(&own)) {
                continue;
            }
            let path = entry.path();
            if let Some(held) = read_if_held(&path)? {
                out.extend(held.lines().map(str::to_string));
            } else {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(out)
    }
}

/// The lease's contents when a live process holds it, None when it is stale.
fn read_if_held(path: &Path) -> Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if try_flock_exclusive(&file).map_err(|e| StoreError::io(path, e))? {
        return Ok(None);
    }
    let mut s = String::new();
    file.read_to_string(&mut s)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Digest;

    #[test]
    fn a_live_lease_is_seen_and_a_stale_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"layer");
        store.lease(&[&d]).unwrap();
        // our own lease is held by an open file description this check does not own
        assert!(store.leased().unwrap().contains(d.hex()));
        let stale = dir.path().join("tmp/lease-1-dead");
        fs::write(&stale, "abc\n").unwrap();
        let seen = store.leased().unwrap();
        assert!(!seen.contains("abc"));
        assert!(!stale.exists());
    }
}
