//! `--init`: a small static reaper runs as the container's PID 1 and starts the
//! command, as Docker does with tini. The binary (twinbox's guest init, which
//! turns into the reaper when named `docker-init`) is kept in the store and
//! bind-mounted read-only at Docker's path.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{ContainerError, Result};
use crate::store::Store;

/// Where the reaper appears inside the container (Docker's path).
pub const CONTAINER_PATH: &str = "/sbin/docker-init";

/// The store's copy of the reaper: `<root>/cache/init/docker-init`.
pub fn store_path(store: &Store) -> PathBuf {
    store.root().join("cache/init/docker-init")
}

/// Copies `binary` into the store unless the copy there is the same, and
/// returns the store's path. A new copy replaces the old one with a rename, so
/// running containers keep the file they started with.
pub fn install(store: &Store, binary: &Path) -> Result<PathBuf> {
    let dest = store_path(store);
    let data = fs::read(binary).map_err(|e| ContainerError::io(binary, e))?;
    if fs::read(&dest).is_ok_and(|have| have == data) {
        return Ok(dest);
    }
    let dir = dest.parent().unwrap_or(store.root());
    fs::create_dir_all(dir).map_err(|e| ContainerError::io(dir, e))?;
    let tmp = dir.join(format!(".docker-init.tmp-{}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o755)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&data).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, &dest));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(ContainerError::io(&dest, e));
    }
    Ok(dest)
}

/// The process arguments with the reaper in front: `docker-init -- CMD ARG...`.
pub fn wrap(args: Vec<String>) -> Vec<String> {
    [CONTAINER_PATH.to_string(), "--".to_string()]
        .into_iter()
        .chain(args)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_copies_once_and_wrap_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let bin = dir.path().join("bin");
        fs::write(&bin, b"\x7fELF one").unwrap();
        let p = install(&store, &bin).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"\x7fELF one");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
        fs::write(&bin, b"\x7fELF two").unwrap();
        assert_eq!(install(&store, &bin).unwrap(), p);
        assert_eq!(fs::read(&p).unwrap(), b"\x7fELF two");
        assert!(install(&store, &dir.path().join("missing")).is_err());
        assert_eq!(
            wrap(vec!["sh".into(), "-c".into()]),
            ["/sbin/docker-init", "--", "sh", "-c"]
        );
    }
}
