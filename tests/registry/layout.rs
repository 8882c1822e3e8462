//! Builds OCI image layouts on disk (layers, configs, manifests, indexes), so the
//! registry tests and the pull benchmark can hand skopeo images twinbox never saw.
//! Everything is deterministic: same input, same digests.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One entry of a layer tar.
pub enum Entry {
    File(String, Vec<u8>, u32),
    Symlink(String, String),
    Dir(String),
}

/// A blob written into the layout.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
}

pub struct Layout {
    pub dir: PathBuf,
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tar bytes of `entries`, with fixed owners and times.
pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(path, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
            Entry::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The host's static busybox with a few applet links: enough to run `sh -c`.
pub fn busybox_entries() -> Vec<Entry> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (apt-get install busybox-static)");
    let mut entries = vec![
        Entry::Dir("bin".into()),
        Entry::File("bin/busybox".into(), fs::read(path).unwrap(), 0o755),
    ];
    for applet in [
        "sh", "cat", "echo", "ls", "wc", "test", "uname", "sleep", "true",
    ] {
        entries.push(Entry::Symlink(format!("bin/{applet}"), "busybox".into()));
    }
    entries
}

/// Bytes that gzip cannot shrink much, from a simple deterministic generator.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545F4914F6CDD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl Layout {
    pub fn create(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn blob(&self, data: &[u8]) -> Blob {
        let digest = sha256(data);
        fs::write(self.blob_path(&digest), data).unwrap();
        Blob {
            digest,
            size: data.len() as u64,
        }
    }

    /// A gzip layer of `entries`.
    pub fn layer(&self, entries: &[Entry]) -> Layer {
        let tar = tar_of(entries);
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        Layer {
            blob: self.blob(&gz.finish().unwrap()),
            diff_id: sha256(&tar),
        }
    }

    /// Config + manifest of an image; returns the manifest blob.
    pub fn image(&self, arch: &str, layers: &[&Layer], cmd: &[&str]) -> Blob {
        let config = json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": cmd,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
        });
        let config = self.blob(&serde_json::to_vec(&config).unwrap());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layers.iter().map(|l| json!({
                "mediaType": OCI_LAYER_GZIP, "digest": l.blob.digest, "size": l.blob.size,
            })).collect::<Vec<_>>(),
        });
        self.blob(&serde_json::to_vec(&manifest).unwrap())
    }

    /// A nested image index over per-platform manifests: (manifest, arch).
    pub fn platform_index(&self, manifests: &[(&Blob, &str)]) -> Blob {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests.iter().map(|(m, arch)| json!({
                "mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.size,
                "platform": {"architecture": arch, "os": "linux"},
            })).collect::<Vec<_>>(),
        });
        self.blob(&serde_json::to_vec(&index).unwrap())
    }

    /// Writes index.json naming each (blob, media type, ref name), as `oci:DIR:REF` finds them.
    pub fn name(&self, refs: &[(&Blob, &str, &str)]) {
        let index: Value = json!({
            "schemaVersion": 2,
            "manifests": refs.iter().map(|(b, media_type, name)| json!({
                "mediaType": media_type, "digest": b.digest, "size": b.size,
                "annotations": {"org.opencontainers.image.ref.name": name},
            })).collect::<Vec<_>>(),
        });
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}
