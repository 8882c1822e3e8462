//! Streaming ingest of one layer, the single way layer bytes enter the store.
//!
//! A layer arrives as a stream (a registry response, an archive member, a
//! command's output). It is read once: the compressed bytes are hashed, counted and
//! copied to a temp blob while the decompressed tar is hashed (its diff id) and
//! unpacked into a temp dir by the safe unpacker. Only when the digest, the size
//! and the diff id all match does the blob move into blobs/ and the dir into
//! layers/<chain-id>; on any error both temps are deleted, so a refused or broken
//! layer leaves the store exactly as it was.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;

use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

use super::{ImageError, LayerInfo, Result};
use crate::oci::media;
use crate::store::blobs::HashingWriter;
use crate::store::unpack::{self, UnpackStats};
use crate::store::{Digest, Store, StoreError};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression a layer media type names. Non-distributable (OCI) and
    /// foreign (Docker) layers are read as their base type.
    pub fn of_media_type(media_type: &str) -> Result<Self> {
        match media_type {
            media::OCI_LAYER_TAR
            | media::OCI_LAYER_NONDIST_TAR
            | media::DOCKER_LAYER_TAR
            | media::DOCKER_FOREIGN_LAYER_TAR => Ok(Compression::None),
            media::OCI_LAYER_GZIP
            | media::OCI_LAYER_NONDIST_GZIP
            | media::DOCKER_LAYER_GZIP
            | media::DOCKER_FOREIGN_LAYER_GZIP => Ok(Compression::Gzip),
            media::OCI_LAYER_ZSTD | media::OCI_LAYER_NONDIST_ZSTD | media::DOCKER_LAYER_ZSTD => {
                Ok(Compression::Zstd)
            }
            other => Err(ImageError::UnsupportedMediaType(other.to_string())),
        }
    }

    /// Guesses from the first bytes (Docker archives do not say).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI media type of a layer stored with this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => media::OCI_LAYER_TAR,
            Compression::Gzip => media::OCI_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        }
    }
}

/// What the manifest and the image config promise about a layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerSource<'a> {
    pub media_type: &'a str,
    /// Digest of the blob as it arrives (compressed).
    pub digest: &'a Digest,
    /// Size of the blob as the manifest gives it; None when unknown.
    pub size: Option<u64>,
    /// Digest of the uncompressed tar (the config's rootfs.diff_ids entry).
    pub diff_id: &'a Digest,
}

/// A layer that is now in the store.
#[derive(Debug, Clone)]
pub struct IngestedLayer {
    pub layer: LayerInfo,
    /// True when blob and unpacked layer were already there and nothing was read.
    pub skipped: bool,
    /// What the unpacker wrote; None when the layer dir already existed.
    pub unpacked: Option<UnpackStats>,
}

/// True when both the blob and the unpacked layer are already in the store, so a
/// caller can skip fetching the bytes at all.
pub fn layer_present(store: &Store, parent_chain: Option<&Digest>, src: &LayerSource) -> bool {
    store.has_blob(src.digest)
        && store
            .layer_dir(&crate::oci::chain_id(parent_chain, src.diff_id))
            .is_dir()
}

/// Streams one layer from `reader` into the store, verifying digest, size and
/// diff id. `progress` gets the compressed bytes read so far.
pub fn ingest_layer(
    store: &Store,
    parent_chain: Option<&Digest>,
    src: &LayerSource,
    reader: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestedLayer> {
    let compression = Compression::of_media_type(src.media_type)?;
    let chain_id = crate::oci::chain_id(parent_chain, src.diff_id);
    let (has_blob, has_layer) = {
        let _lock = store.lock()?;
        store.lease(&[src.digest, &chain_id])?;
        (
            store.has_blob(src.digest),
            store.layer_dir(&chain_id).is_dir(),
        )
    };
    let mut layer = LayerInfo {
        blob: src.digest.clone(),
        blob_size: src.size.unwrap_or(0),
        media_type: src.media_type.to_string(),
        diff_id: src.diff_id.clone(),
        chain_id,
    };
    if has_blob && has_layer {
        if src.size.is_none() {
            layer.blob_size = fs::metadata(store.blob_path(src.digest))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        return Ok(IngestedLayer {
            layer,
            skipped: true,
            unpacked: None,
        });
    }
    let tmp = store.temp_dir("ingest")?;
    let result = stream_verified(
        store,
        src,
        compression,
        &layer.chain_id,
        (has_blob, has_layer),
        reader,
        progress,
        &tmp,
    );
    let _ = fs::remove_dir_all(&tmp);
    let (blob_size, unpacked) = result?;
    layer.blob_size = blob_size;
    Ok(IngestedLayer {
        layer,
        skipped: false,
        unpacked,
    })
}

/// Unpacks a layer whose blob is already stored (its dir was lost or never made).
pub fn ingest_stored_blob(
    store: &Store,
    parent_chain: Option<&Digest>,
    src: &LayerSource,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestedLayer> {
    let path = store.blob_path(src.digest);
    let file = File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => StoreError::MissingBlob(src.digest.to_string()),
        _ => StoreError::io(&path, e),
    })?;
    ingest_layer(
        store,
        parent_chain,
        src,
        BufReader::with_capacity(1 << 16, file),
        progress,
    )
}

/// Makes a new layer from an uncompressed tar stream (a bootstrap, an import, a
/// build step): gzip-compresses it into a blob and unpacks it on top of
/// `parent_chain`, in one pass. `progress` gets the tar bytes read so far.
pub fn ingest_tar(
    store: &Store,
    parent_chain: Option<&Digest>,
    reader: impl Read,
    progress: &mut dyn FnMut(u64),
) -> Result<IngestedLayer> {
    let tmp = store.temp_dir("layer")?;
    let result = (|| {
        let blob_tmp = tmp.join("blob");
        let file = File::create(&blob_tmp).map_err(|e| StoreError::io(&blob_tmp, e))?;
        let staging = tmp.join("rootfs");
        fs::create_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
        let errors = ErrorSlot::default();
        let mut tee = CompressingReader {
            inner: reader,
            hasher: Sha256::new(),
            count: 0,
            gz: GzEncoder::new(HashingWriter::new(file), flate2::Compression::fast()),
            progress,
            errors: errors.clone(),
        };
        let label = "new layer";
        let stats = unpack::unpack_layer(&mut tee, &staging)
            .map_err(|e| layer_error(label, &errors, store_message(e)))?;
        io::copy(&mut tee, &mut io::sink())
            .map_err(|e| layer_error(label, &errors, e.to_string()))?;
        let diff_id = Digest::from_hasher(tee.hasher);
        let (file, blob, blob_size) = tee
            .gz
            .finish()
            .map_err(|e| StoreError::io(&blob_tmp, e))?
            .finish();
        drop(file);
        let chain_id = crate::oci::chain_id(parent_chain, &diff_id);
        commit(store, &blob, Some(&blob_tmp), &chain_id, Some(&staging))?;
        Ok(IngestedLayer {
            layer: LayerInfo {
                blob,
                blob_size,
                media_type: media::OCI_LAYER_GZIP.to_string(),
                diff_id,
                chain_id,
            },
            skipped: false,
            unpacked: Some(stats),
        })
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// The one pass of [`ingest_layer`]: returns the blob size and unpack stats.
#[allow(clippy::too_many_arguments)]
fn stream_verified(
    store: &Store,
    src: &LayerSource,
    compression: Compression,
    chain_id: &Digest,
    (has_blob, has_layer): (bool, bool),
    reader: impl Read,
    progress: &mut dyn FnMut(u64),
    tmp: &Path,
) -> Result<(u64, Option<UnpackStats>)> {
    let label = src.digest.to_string();
    let blob_tmp = tmp.join("blob");
    let copy = if has_blob {
        None
    } else {
        Some(File::create(&blob_tmp).map_err(|e| StoreError::io(&blob_tmp, e))?)
    };
    let staging = tmp.join("rootfs");
    let errors = ErrorSlot::default();
    let source = SourceReader {
        inner: reader,
        hasher: Sha256::new(),
        count: 0,
        limit: src.size,
        copy,
        progress,
        errors: errors.clone(),
    };
    let mut decoded = Decompress::new(compression, source, errors.clone())
        .map_err(|e| layer_error(&label, &errors, e.to_string()))?;
    let mut diff = DiffHasher {
        inner: &mut decoded,
        hasher: Sha256::new(),
    };
    let stats = if has_layer {
        None
    } else {
        fs::create_dir(&staging).map_err(|e| StoreError::io(&staging, e))?;
        Some(
            unpack::unpack_layer(&mut diff, &staging)
                .map_err(|e| layer_error(&label, &errors, store_message(e)))?,
        )
    };
    // Whatever follows the tar's end marker still counts for the diff id.
    io::copy(&mut diff, &mut io::sink())
        .map_err(|e| layer_error(&label, &errors, format!("corrupted tar stream: {e}")))?;
    let diff_id = Digest::from_hasher(diff.hasher);
    let mut source = decoded.into_inner();
    io::copy(&mut source, &mut io::sink())
        .map_err(|e| layer_error(&label, &errors, format!("reading the blob: {e}")))?;
    let digest = Digest::from_hasher(source.hasher);
    let size = source.count;
    if let Some(f) = source.copy.take() {
        drop(f);
    }

    let mismatch = |m: String| ImageError::Layer {
        digest: label.clone(),
        message: format!("{m}: nothing was kept"),
    };
    if let Some(expected) = src.size {
        if expected != size {
            return Err(mismatch(format!(
                "size mismatch: expected {expected} bytes, got {size}"
            )));
        }
    }
    if &digest != src.digest {
        return Err(mismatch(format!("digest mismatch: the blob is {digest}")));
    }
    if &diff_id != src.diff_id {
        return Err(mismatch(format!(
            "diff id mismatch: the image config says {}, the uncompressed tar is {diff_id}",
            src.diff_id
        )));
    }
    commit(
        store,
        src.digest,
        (!has_blob).then_some(blob_tmp.as_path()),
        chain_id,
        (!has_layer).then_some(staging.as_path()),
    )?;
    Ok((size, stats))
}

/// Moves a verified blob and unpacked dir into place. Something that is already
/// there (another process got there first) is kept and ours dropped.
fn commit(
    store: &Store,
    blob: &Digest,
    blob_tmp: Option<&Path>,
    chain_id: &Digest,
    staging: Option<&Path>,
) -> Result<()> {
    crate::fault::point("ingest.staged");
    if let Some(dir) = staging {
        // The rename below publishes the layer: its files must be on disk first.
        sync_filesystem(dir)?;
    }
    let _lock = store.lock()?;
    store.lease(&[blob, chain_id])?;
    if let Some(tmp) = blob_tmp {
        store.install_blob(tmp, blob)?;
    }
    crate::fault::point("ingest.blob-installed");
    if let Some(dir) = staging {
        let dest = store.layer_dir(chain_id);
        if !dest.exists() {
            fs::rename(dir, &dest).map_err(|e| StoreError::io(&dest, e))?;
            crate::store::atomic::sync_dir(dest.parent().expect("layers/"))
                .map_err(|e| StoreError::io(&dest, e))?;
        }
    }
    Ok(())
}

fn sync_filesystem(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| StoreError::io(dir, e))?;
    // SAFETY: syncfs on a descriptor owned by `f`.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(StoreError::io(dir, io::Error::last_os_error()).into());
    }
    Ok(())
}

/// The first error seen below the unpacker (reading the source, decompressing):
/// it explains a failure better than the tar reader's view of it.
type ErrorSlot = Rc<RefCell<Option<String>>>;

fn note(slot: &ErrorSlot, message: String) {
    slot.borrow_mut().get_or_insert(message);
}

fn layer_error(label: &str, slot: &ErrorSlot, fallback: String) -> ImageError {
    ImageError::Layer {
        digest: label.to_string(),
        message: slot.borrow_mut().take().unwrap_or(fallback),
    }
}

fn store_message(e: StoreError) -> String {
    match e {
        StoreError::Unpack(m) => m,
        other => other.to_string(),
    }
}

/// Counts, hashes and (unless the blob is already stored) copies the raw bytes.
struct SourceReader<'p, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    limit: Option<u64>,
    copy: Option<File>,
    progress: &'p mut dyn FnMut(u64),
    errors: ErrorSlot,
}

impl<R: Read> Read for SourceReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                note(&self.errors, format!("reading the blob: {e}"));
                return Err(e);
            }
        };
        if let Some(limit) = self.limit {
            if self.count + n as u64 > limit {
                let m = format!("the blob is larger than the {limit} bytes the manifest gives");
                note(&self.errors, format!("{m}: nothing was kept"));
                return Err(io::Error::other(m));
            }
        }
        self.hasher.update(&buf[..n]);
        if let Some(f) = &mut self.copy {
            if let Err(e) = f.write_all(&buf[..n]) {
                note(&self.errors, format!("writing the blob to the store: {e}"));
                return Err(e);
            }
        }
        self.count += n as u64;
        if n > 0 {
            (self.progress)(self.count);
        }
        Ok(n)
    }
}

enum Decoder<R: Read> {
    Plain(R),
    Gzip(flate2::read::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<R>>),
}

/// The decompressor for a layer's media type, noting its errors by name.
struct Decompress<R: Read> {
    decoder: Decoder<R>,
    errors: ErrorSlot,
}

impl<R: Read> Decompress<R> {
    fn new(compression: Compression, inner: R, errors: ErrorSlot) -> io::Result<Self> {
        let decoder = match compression {
            Compression::None => Decoder::Plain(inner),
            Compression::Gzip => Decoder::Gzip(flate2::read::MultiGzDecoder::new(inner)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(inner)?),
        };
        Ok(Decompress { decoder, errors })
    }

    fn into_inner(self) -> R {
        match self.decoder {
            Decoder::Plain(r) => r,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish().into_inner(),
        }
    }
}

impl<R: Read> Read for Decompress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (result, what) = match &mut self.decoder {
            Decoder::Plain(r) => (r.read(buf), ""),
            Decoder::Gzip(d) => (d.read(buf), "gzip"),
            Decoder::Zstd(d) => (d.read(buf), "zstd"),
        };
        if let Err(e) = &result {
            if !what.is_empty() && e.kind() != io::ErrorKind::Interrupted {
                note(&self.errors, format!("corrupted {what} stream: {e}"));
            }
        }
        result
    }
}

/// Hashes the uncompressed tar on its way to the unpacker: the diff id.
struct DiffHasher<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for DiffHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// For new layers: hashes the tar (diff id) and gzips it into the blob file as
/// the unpacker reads it.
struct CompressingReader<'p, R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    gz: GzEncoder<HashingWriter<File>>,
    progress: &'p mut dyn FnMut(u64),
    errors: ErrorSlot,
}

impl<R: Read> Read for CompressingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                note(&self.errors, format!("reading the tar stream: {e}"));
                return Err(e);
            }
        };
        self.hasher.update(&buf[..n]);
        if let Err(e) = self.gz.write_all(&buf[..n]) {
            note(&self.errors, format!("writing the blob to the store: {e}"));
            return Err(e);
        }
        self.count += n as u64;
        if n > 0 {
            (self.progress)(self.count);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let name = p.strip_prefix(root).unwrap().display().to_string();
                if name.starts_with("tmp/lease-") {
                    continue;
                }
                out.push(name);
                if e.file_type().unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::of_media_type(media::DOCKER_LAYER_GZIP).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::of_media_type(
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            )
            .unwrap(),
            Compression::Zstd
        );
        let err = Compression::of_media_type("application/x-rar")
            .unwrap_err()
            .to_string();
        assert!(err.contains("application/x-rar"), "{err}");
        assert_eq!(Compression::sniff(&gzip(b"x")), Compression::Gzip);
    }

    #[test]
    fn every_compression_is_verified_and_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = layer_tar(&[("hello.txt", b"hello")]);
        let diff_id = Digest::of(&tar);
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        for (media_type, blob) in [
            (media::OCI_LAYER_TAR, tar.clone()),
            (media::DOCKER_LAYER_GZIP, gzip(&tar)),
            (media::OCI_LAYER_ZSTD, zst),
        ] {
            let digest = Digest::of(&blob);
            let src = LayerSource {
                media_type,
                digest: &digest,
                size: Some(blob.len() as u64),
                diff_id: &diff_id,
            };
            let mut seen = 0;
            let got = ingest_layer(&store, None, &src, &blob[..], &mut |n| seen = n).unwrap();
            assert_eq!(got.layer.chain_id, diff_id);
            assert!(store.has_blob(&digest));
            // the plain tar's blob already made the layer dir: later ones only add blobs
            if media_type == media::OCI_LAYER_TAR {
                assert_eq!(seen, blob.len() as u64);
                assert!(got.unpacked.is_some());
            } else {
                assert!(got.unpacked.is_none());
            }
            let again = ingest_layer(&store, None, &src, &blob[..], &mut |_| {}).unwrap();
            assert!(again.skipped);
        }
        assert_eq!(
            fs::read(store.layer_dir(&diff_id).join("hello.txt")).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn a_mismatch_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = listing(dir.path());
        let tar = layer_tar(&[("a", b"a")]);
        let blob = gzip(&tar);
        let digest = Digest::of(&blob);
        let diff_id = Digest::of(&tar);
        let wrong = Digest::of(b"something else");
        let cases: [(&Digest, Option<u64>, &Digest, &str); 3] = [
            (&wrong, None, &diff_id, "digest mismatch"),
            (&digest, Some(3), &diff_id, "larger than"),
            (&digest, None, &wrong, "diff id mismatch"),
        ];
        for (d, size, diff, want) in cases {
            let src = LayerSource {
                media_type: media::OCI_LAYER_GZIP,
                digest: d,
                size,
                diff_id: diff,
            };
            let err = ingest_layer(&store, None, &src, &blob[..], &mut |_| {})
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err}");
            assert_eq!(listing(dir.path()), before);
        }
        // truncated gzip
        let src = LayerSource {
            media_type: media::OCI_LAYER_GZIP,
            digest: &digest,
            size: None,
            diff_id: &diff_id,
        };
        let err = ingest_layer(&store, None, &src, &blob[..blob.len() / 2], &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("gzip") || err.contains("tar"), "{err}");
        assert_eq!(listing(dir.path()), before);
    }

    #[test]
    fn new_layers_from_a_tar_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = layer_tar(&[("x", b"12345")]);
        let got = ingest_tar(&store, None, &tar[..], &mut |_| {}).unwrap();
        assert_eq!(got.layer.diff_id, Digest::of(&tar));
        let blob = store.read_blob(&got.layer.blob).unwrap();
        assert_eq!(blob.len() as u64, got.layer.blob_size);
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, tar);
        let parent = got.layer.chain_id.clone();
        let upper = ingest_tar(&store, Some(&parent), &tar[..], &mut |_| {}).unwrap();
        assert_ne!(upper.layer.chain_id, parent);
        assert!(store.layer_dir(&upper.layer.chain_id).join("x").is_file());
    }
}
