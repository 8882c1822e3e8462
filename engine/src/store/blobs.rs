//! Content-addressed blobs under blobs/sha256/.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{atomic, Result, Store, StoreError};

/// A `sha256:<hex>` content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Self> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| StoreError::BadDigest(s.to_string()))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(StoreError::BadDigest(s.to_string()));
        }
        Ok(Digest(s.to_string()))
    }

    pub fn of(data: &[u8]) -> Self {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    pub fn from_hasher(h: Sha256) -> Self {
        Digest(format!("sha256:{}", hex::encode(h.finalize())))
    }

    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 12-character id Docker shows.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Store {
    /// Stores `data` as a blob and returns its digest (no-op when already present).
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::of(data);
        let path = self.blob_path(&digest);
        if !path.exists() {
            // staged in tmp/ under our pid: a crash leaves scratch that recovery
            // reclaims, never a stray file among the blobs
            let tmp = self.root().join("tmp").join(format!(
                "blob-{}-{}",
                std::process::id(),
                super::random_hex(8)
            ));
            atomic::write_via(&tmp, &path, data)?;
        }
        Ok(digest)
    }

    /// Moves a file already written under tmp/ into the blob store, checking its digest.
    pub fn adopt_blob(&self, tmp: &Path, expected: &Digest) -> Result<()> {
        let mut f = File::open(tmp).map_err(|e| StoreError::io(tmp, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| StoreError::io(tmp, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let actual = Digest::from_hasher(h);
        if &actual != expected {
            let _ = fs::remove_file(tmp);
            return Err(StoreError::DigestMismatch {
                what: tmp.display().to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        f.sync_all().map_err(|e| StoreError::io(tmp, e))?;
        let dest = self.blob_path(expected);
        fs::rename(tmp, &dest).map_err(|e| StoreError::io(&dest, e))?;
        atomic::sync_dir(dest.parent().unwrap()).map_err(|e| StoreError::io(&dest, e))
    }

    /// Moves a file whose digest the caller has already verified while writing it
    /// into the blob store (fsync, rename, fsync dir). Keeps an existing blob.
    pub fn install_blob(&self, tmp: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| StoreError::io(tmp, e))?;
        fs::rename(tmp, &dest).map_err(|e| StoreError::io(&dest, e))?;
        atomic::sync_dir(dest.parent().unwrap()).map_err(|e| StoreError::io(&dest, e))
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        match fs::read(&path) {
            Ok(d) => Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::MissingBlob(digest.to_string()))
            }
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    pub fn read_json_blob<T: serde::de::DeserializeOwned>(&self, digest: &Digest) -> Result<T> {
        let data = self.read_blob(digest)?;
        serde_json::from_slice(&data).map_err(|e| StoreError::Json {
            path: self.blob_path(digest),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_parse() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(
            "md5:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        )
        .is_err());
        assert_eq!(d.short(), "2cf24dba5fb0");
    }
}
