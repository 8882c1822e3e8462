//! Disk usage of the store (`system df`): images, their layers, containers and
//! volumes, with layers shared by several images counted once.
//!
//! Sizes are apparent bytes (what `du --apparent-size` says), with hard links
//! inside a tree counted once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::container::{Container, Status};
use crate::image::{Image, ImageError};
use crate::store::{Digest, Store, VM_CACHE_DIRS};

#[derive(Debug, Clone)]
pub struct ImageUsage {
    pub id: Digest,
    pub manifest: Digest,
    /// Full names pointing at it (empty for an unnamed image).
    pub names: Vec<String>,
    pub created: Option<String>,
    /// Unpacked bytes of all its layers (what `docker images` calls SIZE).
    pub size: u64,
    /// Bytes of its layers that another image also uses.
    pub shared: u64,
    /// `size - shared`: what removing only this image would free (unpacked).
    pub unique: u64,
    /// Compressed blobs of its layers.
    pub blob_bytes: u64,
    /// Its config and manifest blobs.
    pub metadata_bytes: u64,
    pub containers: usize,
}

#[derive(Debug, Clone)]
pub struct LayerUsage {
    pub chain_id: Digest,
    pub diff_id: Digest,
    /// The stored (compressed) blob; the first one when the same layer is stored
    /// with several compressions.
    pub blob: Digest,
    /// Bytes of every blob stored for this layer.
    pub blob_bytes: u64,
    /// The unpacked directory under layers/.
    pub bytes: u64,
    /// Its copies with owners shifted for `--userns=auto` containers, made
    /// where idmapped mounts cannot be used (layers-shifted/, one per id range).
    pub shifted_bytes: u64,
    /// Images whose stack includes this layer.
    pub images: usize,
    /// Containers whose root filesystem stacks this layer.
    pub containers: usize,
}

#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub id: String,
    pub name: String,
    pub image: String,
    pub running: bool,
    /// The writable layer (what the container changed).
    pub writable_bytes: u64,
    /// Everything else in its directory: logs, spec, state.
    pub other_bytes: u64,
}

/// A file derived from one image and kept for VMs (`cache/disks`: the
/// image's root disk; `cache/initramfs`: its layers as an initramfs part).
#[derive(Debug, Clone)]
pub struct VmCacheUsage {
    /// `disks/<manifest-hex>.ext4`, `initramfs/<manifest-hex>.cpio.gz`, ...
    pub name: String,
    /// Blocks allocated (the disks are sparse).
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct VolumeUsage {
    pub name: String,
    pub bytes: u64,
}

/// One line of the summary: how many, how many in use, bytes, bytes freeable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub total: usize,
    pub active: usize,
    pub bytes: u64,
    pub reclaimable: u64,
}

#[derive(Debug, Clone)]
pub struct DiskUsage {
    pub images: Vec<ImageUsage>,
    pub layers: Vec<LayerUsage>,
    pub containers: Vec<ContainerUsage>,
    pub volumes: Vec<VolumeUsage>,
    /// VM disks and initramfs parts built from images (removed with them).
    pub vm_cache: Vec<VmCacheUsage>,
    /// Blobs nothing in the index reaches (what `image prune` frees).
    pub dangling_blob_bytes: u64,
}

impl DiskUsage {
    /// Images: every layer counted once (unpacked + blob), configs and manifests.
    /// Active: used by a container. Reclaimable: layers no container uses.
    pub fn images_summary(&self) -> Summary {
        let bytes: u64 = self
            .layers
            .iter()
            .map(|l| l.bytes + l.shifted_bytes + l.blob_bytes)
            .sum::<u64>()
            + self.image_metadata_bytes();
        let reclaimable = self
            .layers
            .iter()
            .filter(|l| l.containers == 0)
            .map(|l| l.bytes + l.shifted_bytes + l.blob_bytes)
            .sum::<u64>()
            + self.dangling_blob_bytes;
        Summary {
            total: self.images.len(),
            active: self.images.iter().filter(|i| i.containers > 0).count(),
            bytes: bytes + self.dangling_blob_bytes,
            reclaimable,
        }
    }

    /// The unpacked layers alone, each once.
    pub fn layers_summary(&self) -> Summary {
        Summary {
            total: self.layers.len(),
            active: self.layers.iter().filter(|l| l.containers > 0).count(),
            bytes: self.layers.iter().map(|l| l.bytes + l.shifted_bytes).sum(),
            reclaimable: self
                .layers
                .iter()
                .filter(|l| l.containers == 0)
                .map(|l| l.bytes + l.shifted_bytes)
                .sum(),
        }
    }

    pub fn containers_summary(&self) -> Summary {
        let bytes = |c: &ContainerUsage| c.writable_bytes + c.other_bytes;
        Summary {
            total: self.containers.len(),
            active: self.containers.iter().filter(|c| c.running).count(),
            bytes: self.containers.iter().map(bytes).sum(),
            reclaimable: self
                .containers
                .iter()
                .filter(|c| !c.running)
                .map(bytes)
                .sum(),
        }
    }

    pub fn volumes_summary(&self) -> Summary {
        Summary {
            total: self.volumes.len(),
            active: 0,
            bytes: self.volumes.iter().map(|v| v.bytes).sum(),
            reclaimable: self.volumes.iter().map(|v| v.bytes).sum(),
        }
    }

    /// Every VM cache file is rebuilt on demand, so all of it is reclaimable.
    pub fn vm_cache_summary(&self) -> Summary {
        let bytes = self.vm_cache.iter().map(|c| c.bytes).sum();
        Summary {
            total: self.vm_cache.len(),
            active: 0,
            bytes,
            reclaimable: bytes,
        }
    }

    fn image_metadata_bytes(&self) -> u64 {
        self.images.iter().map(|i| i.metadata_bytes).sum()
    }
}

/// Measures the whole store. Reads only; safe while other commands run.
pub fn disk_usage(store: &Store) -> Result<DiskUsage, ImageError> {
    let containers = super::in_use::containers(store)?;
    // image by manifest digest, with all its names
    let mut images: BTreeMap<Digest, Image> = BTreeMap::new();
    for entry in store.read_index()?.manifests() {
        let Ok(d) = crate::oci::digest_of(entry) else {
            continue;
        };
        if images.contains_key(&d) {
            continue;
        }
        if let Ok(img) = Image::load(store, &d) {
            images.insert(d, img);
        }
    }

    // layers by chain id, with how many images and containers stack them
    let mut layer_images: HashMap<Digest, usize> = HashMap::new();
    // chain id → (diff id, the blobs stored for it: one per compression seen)
    let mut layer_info: BTreeMap<Digest, (Digest, Vec<Digest>)> = BTreeMap::new();
    for img in images.values() {
        let mut seen = HashSet::new();
        for l in &img.layers {
            if seen.insert(l.chain_id.clone()) {
                *layer_images.entry(l.chain_id.clone()).or_default() += 1;
            }
            let info = layer_info
                .entry(l.chain_id.clone())
                .or_insert_with(|| (l.diff_id.clone(), Vec::new()));
            if !info.1.contains(&l.blob) {
                info.1.push(l.blob.clone());
            }
        }
    }
    let mut layer_containers: HashMap<String, usize> = HashMap::new();
    for c in &containers {
        for dir in &c.lower_dirs {
            if let Some(n) = dir.file_name() {
                *layer_containers
                    .entry(n.to_string_lossy().into_owned())
                    .or_default() += 1;
            }
        }
    }
    let mut layers = Vec::new();
    let mut layer_bytes: HashMap<Digest, u64> = HashMap::new();
    let mut counted_blobs: HashSet<Digest> = HashSet::new();
    for (chain_id, (diff_id, blobs)) in layer_info {
        let bytes = tree_bytes(&store.layer_dir(&chain_id));
        // a blob shared by two chain ids (same layer on different bases) counts once
        let blob_bytes = blobs
            .iter()
            .filter(|b| counted_blobs.insert((*b).clone()))
            .map(|b| file_bytes(&store.blob_path(b)))
            .sum();
        let blob = blobs[0].clone();
        let chain_id_hex = &chain_id.hex().to_string();
        layer_bytes.insert(chain_id.clone(), bytes);
        layers.push(LayerUsage {
            images: layer_images.get(&chain_id).copied().unwrap_or(0),
            containers: layer_containers.get(chain_id.hex()).copied().unwrap_or(0),
            chain_id,
            diff_id,
            blob,
            blob_bytes,
            bytes,
            shifted_bytes: tree_bytes(&store.shifted_layers_dir(chain_id_hex)),
        });
    }

    let mut image_usage = Vec::new();
    for (manifest, img) in &images {
        let mut size = 0;
        let mut shared = 0;
        for l in &img.layers {
            let b = layer_bytes.get(&l.chain_id).copied().unwrap_or(0);
            size += b;
            if layer_images.get(&l.chain_id).copied().unwrap_or(0) > 1 {
                shared += b;
            }
        }
        let blob_bytes = img
            .layers
            .iter()
            .map(|l| file_bytes(&store.blob_path(&l.blob)))
            .sum::<u64>();
        image_usage.push(ImageUsage {
            id: img.id.clone(),
            manifest: manifest.clone(),
            names: img.names.clone(),
            created: img.created().map(str::to_string),
            size,
            shared,
            unique: size - shared,
            blob_bytes,
            metadata_bytes: file_bytes(&store.blob_path(&img.id))
                + file_bytes(&store.blob_path(manifest)),
            containers: containers
                .iter()
                .filter(|c| c.image_id == img.id.as_str())
                .count(),
        });
    }

    let container_usage = containers
        .iter()
        .map(|c| {
            let total = tree_bytes(&c.dir);
            let writable = tree_bytes(&c.upper());
            ContainerUsage {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                running: running(c),
                writable_bytes: writable,
                other_bytes: total.saturating_sub(writable),
            }
        })
        .collect();

    let volumes_dir = store.root().join("volumes");
    let mut volumes: Vec<VolumeUsage> = std::fs::read_dir(&volumes_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| VolumeUsage {
                    name: e.file_name().to_string_lossy().into_owned(),
                    bytes: tree_bytes(&e.path()),
                })
                .collect()
        })
        .unwrap_or_default();
    volumes.sort_by(|a, b| a.name.cmp(&b.name));

    let reachable = crate::image::gc::reachable(store, &super::InUse).ok();
    let dangling_blob_bytes = match reachable {
        Some(r) => std::fs::read_dir(store.root().join("blobs/sha256"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| !r.blobs.contains(&*e.file_name().to_string_lossy()))
                    .map(|e| file_bytes(&e.path()))
                    .sum()
            })
            .unwrap_or(0),
        None => 0,
    };
    Ok(DiskUsage {
        images: image_usage,
        layers,
        containers: container_usage,
        volumes,
        vm_cache: vm_cache(store),
        dangling_blob_bytes,
    })
}

fn vm_cache(store: &Store) -> Vec<VmCacheUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for dir in VM_CACHE_DIRS {
        let Ok(rd) = std::fs::read_dir(store.root().join("cache").join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            if let Ok(md) = e.metadata() {
                if md.is_file() {
                    out.push(VmCacheUsage {
                        name: format!("{dir}/{}", e.file_name().to_string_lossy()),
                        bytes: md.blocks() * 512,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn running(c: &Container) -> bool {
    c.state()
        .map(|s| s.status == Status::Running)
        .unwrap_or(false)
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Apparent bytes of a tree, not following symlinks, each hard-linked inode once.
pub fn tree_bytes(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
            continue;
        }
        if md.nlink() > 1 && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        total += md.len();
    }
    total
}
