//! Garbage collection of blobs and unpacked layers nothing uses any more.
//!
//! "Used" means reachable from index.json (manifests, their configs and layers,
//! nested indexes), a lower dir of some container, or leased by a live process
//! (an ingest whose image is not committed yet). Everything runs under the store
//! lock; a layer dir is first renamed into tmp/ so it vanishes in one step.
//!
//! Containers, the build cache and build steps' networks are built on the
//! image store, so this module cannot look at them: every collection is told
//! by its caller through [`Holders`] (the engine's answer is `system::InUse`).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::Result;
use crate::oci::{digest_of, ImageConfiguration, Index, Manifest};
use crate::store::{Digest, Store, StoreError};

/// What a collection removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub layers: Vec<Digest>,
    /// Leftover temp entries of processes that died mid-work.
    pub temp_entries: usize,
    pub bytes_freed: u64,
}

/// Which things a collection may consider; everything else is left alone.
#[derive(Debug, Clone)]
pub enum Candidates {
    /// Every blob, layer and stale temp entry in the store (`image prune`).
    All,
    /// Only these blobs and layers (chain ids), e.g. those of a removed image.
    Only {
        blobs: HashSet<Digest>,
        layers: HashSet<Digest>,
    },
}

/// What the layers above the image store hold of it.
pub trait Holders {
    /// Every container (running or not), with its image and lower dirs.
    fn containers(&self, store: &Store) -> Result<Vec<Holder>>;
    /// Blobs went: records that pointed at them (the build cache) go too.
    fn blobs_removed(&self, store: &Store);
    /// A dead process's scratch directory is about to go: what it holds
    /// outside the store (a build step's network address) is given back first.
    fn release_scratch(&self, dir: &Path);
}

/// A container as the collector sees it.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The image's id (`sha256:...`).
    pub image_id: String,
    /// `SHORTID (name)`, for messages.
    pub label: String,
    /// The overlayfs lower dirs it mounts (`layers/<chain-id hex>`).
    pub lower_dirs: Vec<std::path::PathBuf>,
}

/// Blobs (hex) and layers (chain id hex) the store still needs.
#[derive(Debug, Default)]
pub struct Reachable {
    pub blobs: HashSet<String>,
    pub layers: HashSet<String>,
}

/// Everything the index and the containers reach, plus what live leases hold.
pub fn reachable(store: &Store, holders: &dyn Holders) -> Result<Reachable> {
    reachable_with(store, holders, false)
}

fn reachable_with(store: &Store, holders: &dyn Holders, skip_own_lease: bool) -> Result<Reachable> {
    let mut r = Reachable::default();
    for entry in store.read_index()?.manifests() {
        if let Ok(d) = digest_of(entry) {
            walk(store, &d, &mut r, 0);
        }
    }
    for c in holders.containers(store)? {
        for dir in &c.lower_dirs {
            if let Some(name) = dir.file_name() {
                r.layers.insert(name.to_string_lossy().into_owned());
            }
        }
    }
    let leased = if skip_own_lease {
        store.leased_by_others()?
    } else {
        store.leased()?
    };
    for hex in leased {
        r.blobs.insert(hex.clone());
        r.layers.insert(hex);
    }
    Ok(r)
}

fn walk(store: &Store, digest: &Digest, r: &mut Reachable, depth: u32) {
    if !r.blobs.insert(digest.hex().to_string()) || depth > 8 {
        return;
    }
    // an index leads to more manifests, a manifest to its config and layers; a
    // missing or foreign blob has nothing to follow
    if let Ok(index) = store.read_json_blob::<Index>(digest) {
        for d in index.manifests().iter().filter_map(|m| digest_of(m).ok()) {
            walk(store, &d, r, depth + 1);
        }
        return;
    }
    let Ok(manifest) = store.read_json_blob::<Manifest>(digest) else {
        return;
    };
    for d in manifest.layers().iter().filter_map(|l| digest_of(l).ok()) {
        r.blobs.insert(d.hex().to_string());
    }
    let Ok(config) = digest_of(manifest.config()) else {
        return;
    };
    r.blobs.insert(config.hex().to_string());
    let Ok(cfg) = store.read_json_blob::<ImageConfiguration>(&config) else {
        return;
    };
    // The layers under the first unreadable diff id still count as reachable.
    let diff_ids: Vec<Digest> = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .map_while(|d| Digest::parse(d).ok())
        .collect();
    for id in crate::oci::chain_ids(&diff_ids) {
        r.layers.insert(id.hex().to_string());
    }
}

/// Removes the candidates nothing reaches. Safe to run while other processes
/// ingest, commit or create containers.
pub fn collect(store: &Store, candidates: &Candidates, holders: &dyn Holders) -> Result<GcReport> {
    collect_with(store, candidates, holders, false)
}

/// Takes back what a failed command of this process added: like [`collect`],
/// but this process's own lease does not protect anything.
pub fn collect_ignoring_own_lease(
    store: &Store,
    candidates: &Candidates,
    holders: &dyn Holders,
) -> Result<GcReport> {
    collect_with(store, candidates, holders, true)
}

fn collect_with(
    store: &Store,
    candidates: &Candidates,
    holders: &dyn Holders,
    skip_own_lease: bool,
) -> Result<GcReport> {
    let mut report = GcReport::default();
    let mut doomed_dirs = Vec::new();
    {
        let _lock = store.lock()?;
        let keep = reachable_with(store, holders, skip_own_lease)?;
        let (blobs, layers) = match candidates {
            Candidates::All => (list_digests(&store.root().join("blobs/sha256"))?, {
                list_digests(&store.root().join("layers"))?
            }),
            Candidates::Only { blobs, layers } => (
                blobs.iter().cloned().collect(),
                layers.iter().cloned().collect(),
            ),
        };
        for d in blobs {
            if keep.blobs.contains(d.hex()) {
                continue;
            }
            let path = store.blob_path(&d);
            if let Ok(md) = fs::symlink_metadata(&path) {
                fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                report.bytes_freed += md.len();
                report.blobs.push(d);
            }
        }
        for id in layers {
            if keep.layers.contains(id.hex()) {
                continue;
            }
            let path = store.layer_dir(&id);
            if !path.exists() {
                continue;
            }
            let grave = store.temp_dir("gc")?.join("layer");
            fs::rename(&path, &grave).map_err(|e| StoreError::io(&path, e))?;
            report.bytes_freed += super::dir_size(&grave);
            doomed_dirs.push(grave);
            report.layers.push(id);
        }
        // a layer's copies with shifted owners go with it (and any whose
        // layer went before, in a crash between the two renames)
        for copies in orphan_shifted_layers(store) {
            let grave = store.temp_dir("gc")?.join("layer");
            if fs::rename(&copies, &grave).is_ok() {
                report.bytes_freed += super::dir_size(&grave);
                doomed_dirs.push(grave);
            }
        }
    }
    for grave in doomed_dirs {
        if let Some(parent) = grave.parent() {
            let _ = fs::remove_dir_all(parent);
        }
    }
    if matches!(candidates, Candidates::All) {
        report.temp_entries = clean_temp(store, holders);
    }
    report.bytes_freed += forget_vm_cache(store);
    if !report.blobs.is_empty() {
        holders.blobs_removed(store);
    }
    Ok(report)
}

/// `layers-shifted/<hex>` directories whose layer is not in the store.
pub(crate) fn orphan_shifted_layers(store: &Store) -> Vec<std::path::PathBuf> {
    let Ok(rd) = fs::read_dir(store.root().join(crate::store::SHIFTED_LAYERS)) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| !store.root().join("layers").join(e.file_name()).exists())
        .map(|e| e.path())
        .collect()
}

/// VM cache files (`cache/disks/<manifest-hex>.erofs`, ...) whose image
/// manifest is no longer stored. Files being built (dot-names) are their
/// builder's.
pub(crate) fn orphan_vm_cache(store: &Store) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for dir in crate::store::VM_CACHE_DIRS {
        let Ok(rd) = fs::read_dir(store.root().join("cache").join(dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or_default();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            if !store.root().join("blobs/sha256").join(hex).exists() {
                out.push(e.path());
            }
        }
    }
    out
}

/// Removes the orphaned VM cache files; returns the bytes freed.
fn forget_vm_cache(store: &Store) -> u64 {
    let mut freed = 0;
    for path in orphan_vm_cache(store) {
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if fs::remove_file(&path).is_ok() {
            freed += bytes;
        }
    }
    freed
}

/// Digests named by the entries of blobs/sha256 or layers/ (others are ignored).
fn list_digests(dir: &Path) -> Result<Vec<Digest>> {
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
    let mut out: Vec<Digest> = rd
        .flatten()
        .filter_map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).ok())
        .collect();
    out.sort();
    Ok(out)
}

/// tmp/ entries whose owner process is gone (their names end in
/// `-<pid>-<hex>`); entries of live processes and lease files are not listed.
pub(crate) fn stale_temp_entries(store: &Store) -> Vec<std::path::PathBuf> {
    let tmp = store.root().join("tmp");
    let Ok(rd) = fs::read_dir(&tmp) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("lease-") {
                return false; // `leased()` handles those under the lock
            }
            let owner = name.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            owner.is_some_and(|pid| !process_exists(pid))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes tmp/ entries whose owner process is gone; returns how many.
pub(crate) fn clean_temp(store: &Store, holders: &dyn Holders) -> usize {
    stale_temp_entries(store)
        .into_iter()
        .filter(|p| remove_scratch(p, holders).is_ok())
        .count()
}

/// Removes a scratch file or directory of a dead process. A directory may
/// still hold what that process mounted (a VM disk build mounts the image's
/// layers there) or attached to a network (a build step): those come off
/// first, so the removal never walks into them and no lease stays behind.
pub(crate) fn remove_scratch(path: &Path, holders: &dyn Holders) -> std::io::Result<()> {
    if path.is_dir() {
        holders.release_scratch(path);
        unmount_below(path);
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// Detaches every mount at or below `path` in this mount namespace, deepest first.
pub(crate) fn unmount_below(path: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut points: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&path))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

pub(crate) fn process_exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
