//! The on-disk store: an OCI image layout (blobs + index.json) plus the unpacked
//! layers that overlayfs uses as lower directories, and the containers' records.
//!
//! Every write goes through [`atomic::write_atomic`] (temp file, fsync, rename) and
//! every mutation holds the store lock, so a crash at any point leaves it usable.

pub mod atomic;
pub mod blobs;
pub mod grave;
pub mod lease;
pub mod lock;
pub mod refs;
pub mod unpack;

use crate::util::id::random_hex;
use std::fs;
use std::path::{Path, PathBuf};

pub use blobs::Digest;
pub use lock::StoreLock;

/// Default location, like /var/lib/docker.
pub const DEFAULT_ROOT: &str = "/var/lib/twinbox";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {0} is not in the store")]
    MissingBlob(String),
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    BadDigest(String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("invalid json in {path}: {message}")]
    Json { path: PathBuf, message: String },
    #[error("layer archive: {0}")]
    Unpack(String),
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Directories under `cache/` whose files are named by an image's manifest
/// digest and derived from it (VM disks and initramfs): gone when the image is.
pub const VM_CACHE_DIRS: &[&str] = &["disks", "initramfs"];

/// Top directory of the layers copied with shifted owners.
pub const SHIFTED_LAYERS: &str = "layers-shifted";

/// A handle on the store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the layout on first use.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        for dir in [
            "blobs/sha256",
            "layers",
            "containers",
            "volumes",
            "tmp",
            "cache",
        ] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(|e| StoreError::io(&p, e))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            atomic::write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let lock = root.join("lock");
        if !lock.exists() {
            fs::File::create(&lock).map_err(|e| StoreError::io(&lock, e))?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            atomic::write_atomic(&index, refs::EMPTY_INDEX.as_bytes())?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store-wide lock for a mutation (released on drop).
    pub fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.root.join("lock"))
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Directory of an unpacked layer, keyed by its chain id.
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    /// Where a layer's copies with owners shifted into a user namespace's
    /// range live (`--userns=auto` without idmapped mounts): one directory
    /// per layer, gone with the layer.
    pub fn shifted_layers_dir(&self, chain_hex: &str) -> PathBuf {
        self.root.join(SHIFTED_LAYERS).join(chain_hex)
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// A fresh private directory under tmp/ for work that is renamed into place.
    /// Its name carries our pid so a cleanup can tell a live one from debris.
    pub fn temp_dir(&self, prefix: &str) -> Result<PathBuf> {
        let p = self.root.join("tmp").join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            random_hex(8)
        ));
        fs::create_dir_all(&p).map_err(|e| StoreError::io(&p, e))?;
        Ok(p)
    }
}

/// Where a directory of the store goes to be deleted: `<root>/tmp/rm-<pid>-<hex>`.
/// A rename there makes it vanish in one step; a crash mid-delete leaves scratch
/// named by a dead pid, which recovery reclaims.
pub fn grave_path(root: &Path) -> PathBuf {
    root.join("tmp")
        .join(format!("rm-{}-{}", std::process::id(), random_hex(8)))
}
