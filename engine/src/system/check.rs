//! `twinbox system check [--repair]`: verifies everything the store holds and
//! reports each problem in one line, like fsck.
//!
//! What is checked, in order: every blob's digest; every image's manifest,
//! config and layer blobs (present, sizes as the descriptors say) and its
//! unpacked layers; every container record against live processes, cgroups and
//! mounts, and a running container's networks (CNI CHECK); leftovers (scratch of dead processes, unused blobs and layers, empty
//! cgroups nobody owns, dead address leases of any store), and counts what `image prune` would reclaim. `--repair` fixes what can be fixed without losing a
//! committed image or a volume: a missing unpacked layer is unpacked again from
//! its blob; a corrupt blob, a dangling name, a dead container's cgroup, a stale
//! mount and scratch are removed, a dead address lease is released; and it
//! says what it did.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::recover::{self, owner_is_alive, owner_is_dead, release_cgroup};
use crate::cgroups::{Cgroup, DEFAULT_FS_ROOT};
use crate::container::{Container, State, Status};
use crate::image::gc::{self, Candidates};
use crate::image::ingest::{self, LayerSource};
use crate::oci::{Descriptor, ImageConfiguration, Manifest};
use crate::store::atomic::read_json;
use crate::store::refs::RefName;
use crate::store::{Digest, Store, StoreError};

/// One thing found wrong, and what `--repair` did about it.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The thing, e.g. `blob sha256:0123…` or `container web`.
    pub subject: String,
    /// What is wrong with it, and what a user can do when repair cannot.
    pub detail: String,
    /// Set when `--repair` fixed it: what was done.
    pub repaired: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.detail)?;
        if let Some(r) = &self.repaired {
            write!(f, " (repaired: {r})")?;
        }
        Ok(())
    }
}

/// Everything one check saw.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub blobs: usize,
    pub images: usize,
    pub layers: usize,
    pub containers: usize,
    pub problems: Vec<Problem>,
    /// Blobs and layers nothing uses: not damage, reclaimable by `image prune`.
    pub reclaimable: usize,
    /// How many of those `--repair` removed.
    pub reclaimed: usize,
    /// Address leases (host-wide, any store's) whose owner is provably gone:
    /// not damage to this store, so not problems; `--repair` releases them.
    pub dead_leases: Vec<DeadLease>,
}

/// A dead address lease, and whether `--repair` released it.
#[derive(Debug, Clone)]
pub struct DeadLease {
    pub lease: crate::network::leases::Lease,
    pub released: bool,
}

impl std::fmt::Display for DeadLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // a container's 64-hex id as ps shows it; build steps' and VMs' whole
        let owner = &self.lease.owner;
        let hex_id = owner.len() == 64 && owner.bytes().all(|b| b.is_ascii_hexdigit());
        let owner = if hex_id { &owner[..12] } else { owner };
        write!(
            f,
            "lease {} (network {}, owner {owner}): its address is in no network namespace",
            self.lease.address, self.lease.network
        )?;
        if self.released {
            f.write_str(" (released)")?;
        }
        Ok(())
    }
}

impl CheckReport {
    /// Problems `--repair` did not (or could not) fix.
    pub fn unrepaired(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.repaired.is_none())
            .count()
    }

    fn found(&mut self, subject: impl Into<String>, detail: impl Into<String>) -> &mut Problem {
        self.problems.push(Problem {
            subject: subject.into(),
            detail: detail.into(),
            repaired: None,
        });
        self.problems.last_mut().expect("just pushed")
    }
}

/// Checks the store; with `repair`, fixes what can be fixed safely.
pub fn check(store: &Store, repair: bool) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport::default();
    let corrupt = check_blobs(store, repair, &mut report)?;
    check_images(store, repair, &corrupt, &mut report)?;
    check_shifted_layers(store, repair, &mut report);
    check_vm_cache(store, repair, &mut report);
    check_containers(store, repair, &mut report)?;
    check_leftovers(store, repair, &mut report)?;
    Ok(report)
}

fn short(d: &str) -> &str {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    &hex[..hex.len().min(12)]
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Every blob's content against its name. Returns the corrupt ones (hex).
fn check_blobs(
    store: &Store,
    repair: bool,
    report: &mut CheckReport,
) -> Result<HashSet<String>, StoreError> {
    let dir = store.root().join("blobs/sha256");
    let rd = fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let mut corrupt = HashSet::new();
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(owner) = atomic_write_owner(&name) {
            if gc::process_exists(owner) {
                continue; // a write under way
            }
            let p = report.found(
                format!("blobs/sha256/{name}"),
                "half-written file of a process that died",
            );
            if repair && fs::remove_file(&path).is_ok() {
                p.repaired = Some("removed".into());
            }
            continue;
        }
        report.blobs += 1;
        if Digest::parse(&format!("sha256:{name}")).is_err() {
            let p = report.found(
                format!("blobs/sha256/{name}"),
                "not a blob (its name is not a sha256 digest)",
            );
            if repair && fs::remove_file(&path).is_ok() {
                p.repaired = Some("removed".into());
            }
            continue;
        }
        let actual = match hash_file(&path) {
            Ok(h) => h,
            Err(e) => {
                report.found(
                    format!("blob sha256:{}", short(&name)),
                    format!("unreadable: {e}"),
                );
                continue;
            }
        };
        if actual != name {
            corrupt.insert(name.clone());
            let p = report.found(
                format!("blob sha256:{}", short(&name)),
                format!(
                    "corrupt: its content hashes to sha256:{}; pull or load the image again",
                    short(&actual)
                ),
            );
            // a corrupt blob can never be right again; removing it lets a pull
            // or load put the real one back
            if repair && fs::remove_file(&path).is_ok() {
                p.repaired = Some("removed the corrupt blob".into());
            }
        }
    }
    Ok(corrupt)
}

/// The writer's pid of a temp file `write_atomic` names `.NAME.tmp-PID-HEX`.
fn atomic_write_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    tail.split('-').next()?.parse().ok()
}

/// Size of a blob file, None when it is missing.
fn blob_len(store: &Store, digest: &Digest) -> Option<u64> {
    fs::metadata(store.blob_path(digest)).ok().map(|m| m.len())
}

/// Checks one descriptor's blob: present, not corrupt, the size it claims.
fn check_descriptor(
    store: &Store,
    image: &str,
    what: &str,
    desc: &Descriptor,
    corrupt: &HashSet<String>,
    report: &mut CheckReport,
) -> Option<Digest> {
    let Ok(digest) = crate::oci::digest_of(desc) else {
        report.found(
            format!("image {image}"),
            format!(
                "{what} has an invalid digest {:?}",
                desc.digest().to_string()
            ),
        );
        return None;
    };
    if corrupt.contains(digest.hex()) {
        return None; // reported with the blobs
    }
    match blob_len(store, &digest) {
        None => {
            report.found(
                format!("image {image}"),
                format!(
                    "{what} blob sha256:{} is missing; pull or load the image again",
                    short(digest.hex())
                ),
            );
            None
        }
        Some(len) if len != desc.size() => {
            report.found(
                format!("image {image}"),
                format!(
                    "{what} blob sha256:{} has {len} bytes, its descriptor says {}",
                    short(digest.hex()),
                    desc.size()
                ),
            );
            None
        }
        Some(_) => Some(digest),
    }
}

/// Every name in index.json: its manifest, config, layer blobs and unpacked layers.
fn check_images(
    store: &Store,
    repair: bool,
    corrupt: &HashSet<String>,
    report: &mut CheckReport,
) -> Result<(), StoreError> {
    let index = match store.read_index() {
        Ok(i) => i,
        Err(e) => {
            report.found("index.json", format!("unreadable: {e}"));
            return Ok(());
        }
    };
    let mut seen = HashSet::new();
    let mut dangling = Vec::new();
    for entry in index.manifests() {
        let name = entry.full_name().unwrap_or(entry.digest_str()).to_string();
        report.images += 1;
        let Some(manifest_digest) =
            check_descriptor(store, &name, "manifest", entry, corrupt, report)
        else {
            if blob_len(
                store,
                &crate::oci::digest_of(entry).unwrap_or_else(|_| Digest::of(b"")),
            )
            .is_none()
            {
                dangling.push(name);
            }
            continue;
        };
        if !seen.insert(manifest_digest.hex().to_string()) {
            continue; // another name of an image already checked
        }
        let manifest: Manifest = match store.read_json_blob(&manifest_digest) {
            Ok(m) => m,
            Err(e) => {
                report.found(format!("image {name}"), format!("manifest unreadable: {e}"));
                continue;
            }
        };
        let config = check_descriptor(store, &name, "config", manifest.config(), corrupt, report);
        let mut blobs = Vec::new();
        for (i, layer) in manifest.layers().iter().enumerate() {
            blobs.push(check_descriptor(
                store,
                &name,
                &format!("layer {}", i + 1),
                layer,
                corrupt,
                report,
            ));
        }
        let Some(config) = config else { continue };
        let diff_ids = match store.read_json_blob::<ImageConfiguration>(&config) {
            Ok(c) => c.rootfs().diff_ids().clone(),
            Err(e) => {
                report.found(format!("image {name}"), format!("config unreadable: {e}"));
                continue;
            }
        };
        if diff_ids.len() != manifest.layers().len() {
            report.found(
                format!("image {name}"),
                format!(
                    "{} diff ids for {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            );
            continue;
        }
        check_unpacked_layers(store, repair, &name, &manifest, &diff_ids, &blobs, report);
    }
    if repair && !dangling.is_empty() {
        let _lock = store.lock()?;
        for name in dangling {
            if store.remove_ref(&name).ok().flatten().is_some() {
                if let Some(p) = report
                    .problems
                    .iter_mut()
                    .rev()
                    .find(|p| p.subject == format!("image {name}") && p.repaired.is_none())
                {
                    p.repaired = Some("removed the name: its manifest is gone".into());
                }
            }
        }
    }
    Ok(())
}

/// Each layer of an image unpacked under layers/<chain-id>; a missing one is
/// unpacked again from its blob when repairing.
fn check_unpacked_layers(
    store: &Store,
    repair: bool,
    image: &str,
    manifest: &Manifest,
    diff_ids: &[String],
    blobs: &[Option<Digest>],
    report: &mut CheckReport,
) {
    let mut chain: Option<Digest> = None;
    for (i, (diff, blob)) in diff_ids.iter().zip(blobs).enumerate() {
        let Ok(diff_id) = Digest::parse(diff) else {
            report.found(
                format!("image {image}"),
                format!("invalid diff id {diff:?}"),
            );
            return;
        };
        let chain_id = crate::oci::chain_id(chain.as_ref(), &diff_id);
        report.layers += 1;
        if !store.layer_dir(&chain_id).is_dir() {
            let p = report.found(
                format!("image {image}"),
                format!(
                    "unpacked layer {} ({}) is missing",
                    i + 1,
                    short(chain_id.hex())
                ),
            );
            if repair {
                if let Some(blob) = blob {
                    let src = LayerSource {
                        media_type: manifest.layers()[i].media_type().as_ref(),
                        digest: blob,
                        size: Some(manifest.layers()[i].size()),
                        diff_id: &diff_id,
                    };
                    match ingest::ingest_stored_blob(store, chain.as_ref(), &src, &mut |_| {}) {
                        Ok(_) => p.repaired = Some("unpacked again from its blob".into()),
                        Err(e) => p
                            .detail
                            .push_str(&format!("; unpacking it again failed: {e}")),
                    }
                } else {
                    p.detail
                        .push_str("; its blob is gone too: pull or load the image again");
                }
            }
        }
        chain = Some(chain_id);
    }
}

/// Copies of layers with owners shifted for `--userns=auto` (layers-shifted/)
/// whose layer is gone: `rmi` removes the layer first, so a crash between the
/// two removals leaves them (the next prune takes them too).
fn check_shifted_layers(store: &Store, repair: bool, report: &mut CheckReport) {
    for copies in gc::orphan_shifted_layers(store) {
        let name = copies
            .strip_prefix(store.root())
            .unwrap_or(&copies)
            .display()
            .to_string();
        let p = report.found(name, "copies with shifted owners of a layer that is gone");
        if repair && fs::remove_dir_all(&copies).is_ok() {
            p.repaired = Some("removed".into());
        }
    }
}

/// VM disks and initramfs parts (cache/) built from an image that is gone:
/// `rmi` removes the image first, so a crash between the two leaves them.
fn check_vm_cache(store: &Store, repair: bool, report: &mut CheckReport) {
    for file in gc::orphan_vm_cache(store) {
        let name = file
            .strip_prefix(store.root())
            .unwrap_or(&file)
            .display()
            .to_string();
        let p = report.found(name, "built for VMs from an image that is gone");
        if repair && fs::remove_file(&file).is_ok() {
            p.repaired = Some("removed".into());
        }
    }
}

/// Every container record: complete, its layers present, its state true.
fn check_containers(
    store: &Store,
    repair: bool,
    report: &mut CheckReport,
) -> Result<(), StoreError> {
    let dir = store.containers_dir();
    let rd = fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    for path in entries {
        let id = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        report.containers += 1;
        if !path.join("container.json").is_file() {
            // create writes container.json last, under the store lock: without it
            // and with the lock held, this is a create that died halfway
            let p = report.found(
                format!("containers/{id}"),
                "unfinished create (no container.json)",
            );
            if repair {
                let _lock = store.lock()?;
                if !path.join("container.json").is_file() && fs::remove_dir_all(&path).is_ok() {
                    p.repaired = Some("removed".into());
                }
            }
            continue;
        }
        let container = match Container::load(store, &id) {
            Ok(c) => c,
            Err(e) => {
                report.found(
                    format!("containers/{id}"),
                    format!("unreadable record: {e}"),
                );
                continue;
            }
        };
        let subject = format!("container {}", container.name);
        for lower in &container.lower_dirs {
            if !lower.is_dir() {
                report.found(
                    subject.clone(),
                    format!(
                        "its image layer {} is missing; remove the container (`twinbox rm {}`)",
                        lower.display(),
                        container.name
                    ),
                );
            }
        }
        let state: State = read_json(&container.state_path()).unwrap_or_else(|_| State::created());
        if owner_is_dead(&state) {
            let p = report.found(
                subject.clone(),
                "recorded as running, but its supervisor is gone",
            );
            if repair {
                let r = super::recover(store);
                if r.removed.contains(&container.name) {
                    p.repaired = Some("removed (it was started with --rm)".into());
                } else if r.marked_exited.contains(&container.name) {
                    p.repaired = Some("recorded as exited, its cgroup removed".into());
                }
            }
            continue;
        }
        // a running container's networks: CNI CHECK against the cached results
        if state.status == Status::Running && owner_is_alive(&state) {
            for (network, e) in crate::network::check(&path) {
                report.found(
                    subject.clone(),
                    format!(
                        "its attachment to network {network} is broken ({e}); restart it (`twinbox restart {}`)",
                        container.name
                    ),
                );
            }
        }
        // a created container may be starting right now (its cgroup comes
        // first): only an exited one's cgroup, or live processes, are wrong,
        // and only once no live supervisor is between the two states
        if state.status != Status::Running && !owner_is_alive(&state) {
            let cg = Cgroup::new(Path::new(DEFAULT_FS_ROOT), &container.cgroup_path());
            let busy = |cg: &Cgroup| cg.pids().is_ok_and(|p| !p.is_empty());
            let wrong = cg
                .as_ref()
                .is_ok_and(|cg| cg.exists() && (state.status == Status::Exited || busy(cg)));
            if wrong {
                let p = report.found(
                    subject.clone(),
                    "not running, but its cgroup is still there",
                );
                if repair {
                    release_cgroup(&container);
                    if !cg.as_ref().is_ok_and(|cg| cg.exists()) {
                        p.repaired = Some("cgroup removed".into());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Scratch of dead processes, stale mounts, unused blobs and layers, empty
/// cgroups no container of this store owns, and dead address leases.
fn check_leftovers(
    store: &Store,
    repair: bool,
    report: &mut CheckReport,
) -> Result<(), StoreError> {
    for path in gc::stale_temp_entries(store) {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let p = report.found(format!("tmp/{name}"), "scratch left by a process that died");
        if repair && gc::remove_scratch(&path, &super::InUse).is_ok() {
            p.repaired = Some("removed".into());
        }
    }
    check_mounts(store, repair, report);
    // blobs and layers nothing uses (an abandoned build stage, a pull that died
    // before its image was committed) are not damage: `image prune` reclaims them
    let keep = gc::reachable(store, &super::InUse)
        .map_err(|e| StoreError::io(store.root(), std::io::Error::other(e.to_string())))?;
    for (dir, kept) in [("blobs/sha256", &keep.blobs), ("layers", &keep.layers)] {
        let path = store.root().join(dir);
        for entry in fs::read_dir(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !kept.contains(&name) {
                report.reclaimable += 1;
            }
        }
    }
    if repair && report.reclaimable > 0 {
        let gc = gc::collect(store, &Candidates::All, &super::InUse)
            .map_err(|e| StoreError::io(store.root(), std::io::Error::other(e.to_string())))?;
        report.reclaimed = gc.blobs.len() + gc.layers.len();
    }
    check_cgroups(store, repair, report);
    check_leases(Path::new(crate::network::IPAM_DIR), repair, report);
    Ok(())
}

/// Leases host-local keeps for twinbox's networks whose address no network
/// namespace holds any more (their owner died and its store went before DEL).
fn check_leases(ipam_dir: &Path, repair: bool, report: &mut CheckReport) {
    use crate::network::leases;
    let mut dead = leases::dead(ipam_dir);
    dead.sort_by(|a, b| (&a.network, a.address).cmp(&(&b.network, b.address)));
    for lease in dead {
        let released = repair && leases::release(&lease).unwrap_or(false);
        report.dead_leases.push(DeadLease { lease, released });
    }
}

/// Mounts below the store whose container is neither running nor created (a
/// crash between mount and unmount). Containers mount in their own namespace, so there should be none.
fn check_mounts(store: &Store, repair: bool, report: &mut CheckReport) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let root = fs::canonicalize(store.root()).unwrap_or_else(|_| store.root().to_path_buf());
    // a created container keeps its pinned network namespace until start or
    // rm (a `run` killed between create and start leaves one), so its mounts
    // are as legitimate as a running one's
    let running: HashSet<PathBuf> = Container::list(store)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| {
            c.state()
                .is_ok_and(|s| matches!(s.status, Status::Running | Status::Created))
        })
        .map(|c| c.dir)
        .collect();
    // deepest first, so nested mounts come off before their parents
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&root) && p != &root)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    // scratch of a live process (a VM disk build mounts the image's layers
    // under tmp/) is that process's business
    let tmp = root.join("tmp");
    let stale: Vec<PathBuf> = gc::stale_temp_entries(store)
        .into_iter()
        .map(|p| tmp.join(p.file_name().unwrap_or_default()))
        .collect();
    for point in points {
        if running.iter().any(|d| point.starts_with(d)) {
            continue;
        }
        if point.starts_with(&tmp) && !stale.iter().any(|s| point.starts_with(s)) {
            continue;
        }
        let p = report.found(
            format!("mount {}", point.display()),
            "left mounted by a process that died",
        );
        if repair && nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            p.repaired = Some("unmounted".into());
        }
    }
}

/// Empty cgroups under twinbox/ that no container of this store names (the
/// ones recovery could not remove, since every command recovers first).
fn check_cgroups(store: &Store, repair: bool, report: &mut CheckReport) {
    let Ok(parent) = Cgroup::new(Path::new(DEFAULT_FS_ROOT), Path::new("twinbox")) else {
        return;
    };
    let ours = recover::container_ids(store);
    for child in parent.children() {
        if ours.contains(&child.name) || child.age < recover::ORPHAN_CGROUP_AGE {
            continue;
        }
        let Ok(cg) = Cgroup::new(
            Path::new(DEFAULT_FS_ROOT),
            &Path::new("twinbox").join(&child.name),
        ) else {
            continue;
        };
        if !cg.pids().map(|p| p.is_empty()).unwrap_or(false) {
            continue; // processes live in it: another store's container, not ours to touch
        }
        let p = report.found(
            format!("cgroup twinbox/{}", child.name),
            "empty and owned by no container",
        );
        if repair && cg.destroy().is_ok() {
            p.repaired = Some("removed".into());
        }
    }
}
