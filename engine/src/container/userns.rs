//! `--userns=auto`: the container gets a user namespace of its own whose root
//! is an unprivileged id on the host, as Podman's `--userns=auto` does. Each
//! container takes a range of 65536 host ids that no other container holds,
//! from the `/etc/subuid` and `/etc/subgid` entries of a user named `twinbox`
//! (or Podman's `containers`), else from a fixed pool starting at
//! [`FIXED_BASE`]. The range is kept in the container's record, so removing
//! the container frees it. The image's files keep their owners on disk and
//! are shown through idmapped mounts (the runtime's `idmap`).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};
use serde::{Deserialize, Serialize};

use super::{Container, ContainerError, Result};
use crate::store::Store;

/// Ids per container: 0-65535 inside, as Podman's auto.
pub const RANGE_SIZE: u32 = 65536;
/// Without /etc/subuid entries: host ids from 2^31, far above the ids
/// distributions hand to users (and to systemd-nspawn's 0x80000-0x6fffffff
/// pool's common use, which starts lower), up to [`FIXED_RANGES`] containers.
pub const FIXED_BASE: u32 = 0x8000_0000;
pub const FIXED_RANGES: u32 = 16384;
/// The users whose subordinate ids twinbox takes, in order.
const POOL_USERS: [&str; 2] = ["twinbox", "containers"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsernsMode {
    /// The host's user namespace (Docker's default).
    #[default]
    Host,
    /// A user namespace with a range of its own.
    Auto,
}

pub fn parse_mode(s: &str) -> Result<UsernsMode> {
    match s {
        "" | "host" => Ok(UsernsMode::Host),
        "auto" => Ok(UsernsMode::Auto),
        other => Err(ContainerError::BadOption(format!(
            "--userns {other:?}: use auto (root inside is an unprivileged id on the host) or host"
        ))),
    }
}

/// The host ids a container's ids 0..size map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

impl IdRange {
    pub fn mappings(&self) -> (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>) {
        let map = |host: u32| {
            vec![LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(self.size)
                .build()
                .expect("id mapping")]
        };
        (map(self.uid), map(self.gid))
    }

    fn overlaps(&self, other: &IdRange) -> bool {
        let apart = |a: u32, b: u32| a + self.size <= b || b + other.size <= a;
        !(apart(self.uid, other.uid) && apart(self.gid, other.gid))
    }
}

/// `name:start:count` lines of a subordinate id file for the first user of
/// [`POOL_USERS`] that has any: the blocks of [`RANGE_SIZE`] they hold.
fn pool_from(text: &str) -> Vec<u32> {
    for user in POOL_USERS {
        let blocks: Vec<u32> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.trim().split(':');
                let (name, start, count) = (f.next()?, f.next()?, f.next()?);
                (name == user).then_some(())?;
                Some((start.parse::<u64>().ok()?, count.parse::<u64>().ok()?))
            })
            .flat_map(|(start, count)| {
                (0..count / RANGE_SIZE as u64)
                    .map(move |i| start + i * RANGE_SIZE as u64)
                    .filter(|b| b + RANGE_SIZE as u64 <= u32::MAX as u64)
                    .map(|b| b as u32)
            })
            .collect();
        if !blocks.is_empty() {
            return blocks;
        }
    }
    Vec::new()
}

fn fixed_pool() -> Vec<u32> {
    (0..FIXED_RANGES)
        .map(|i| FIXED_BASE + i * RANGE_SIZE)
        .collect()
}

/// The candidate ranges, in order of preference.
fn candidates(subuid: &str, subgid: &str) -> Result<Vec<IdRange>> {
    let (uids, gids) = (pool_from(subuid), pool_from(subgid));
    let (uids, gids) = match (uids.is_empty(), gids.is_empty()) {
        (true, true) => (fixed_pool(), fixed_pool()),
        (false, false) => (uids, gids),
        _ => {
            return Err(ContainerError::BadOption(
                "--userns=auto: /etc/subuid and /etc/subgid must both give the twinbox (or containers) user ids, or neither".into(),
            ))
        }
    };
    Ok(uids
        .into_iter()
        .zip(gids)
        .map(|(uid, gid)| IdRange {
            uid,
            gid,
            size: RANGE_SIZE,
        })
        .collect())
}

/// The first range no existing container holds. Called under the store lock.
pub fn allocate(existing: &[Container]) -> Result<IdRange> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let taken: Vec<IdRange> = existing.iter().filter_map(|c| c.id_range).collect();
    candidates(&read("/etc/subuid"), &read("/etc/subgid"))?
        .into_iter()
        .find(|r| !taken.iter().any(|t| t.overlaps(r)))
        .ok_or_else(|| {
            ContainerError::BadOption(
                "--userns=auto: every id range is held by a container: remove some, or give the twinbox user more ids in /etc/subuid and /etc/subgid".into(),
            )
        })
}

/// Set to `1`, `--userns=auto` copies the layers with shifted owners even
/// where idmapped mounts work: a switch for tests and for diagnosis.
pub const FORCE_CHOWN_ENV: &str = "TWINBOX_USERNS_FORCE_CHOWN";

/// How a `--userns=auto` container is shown its image's files as its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerOwnership {
    /// The layers themselves, through idmapped mounts.
    Idmapped,
    /// Copies of the layers chowned into the range.
    Chowned,
}

/// The probe's answer, kept in the store: asked again only when the kernel
/// or the store's file system changes.
#[derive(Debug, Serialize, Deserialize)]
struct Probe {
    kernel: String,
    fs_type: String,
    idmapped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn probe_path(store: &Store) -> PathBuf {
    store.root().join("cache").join("userns-layers.json")
}

/// Idmapped where this kernel can idmap the store's layers, else chowned
/// copies; probed once (a user namespace, an idmapped mount and an overlay,
/// a few milliseconds) and remembered.
pub fn layer_ownership(store: &Store) -> Result<LayerOwnership> {
    if std::env::var(FORCE_CHOWN_ENV).is_ok_and(|v| v == "1") {
        return Ok(LayerOwnership::Chowned);
    }
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let layers = store.root().join("layers");
    let fs_type = nix::sys::statfs::statfs(&layers)
        .map(|s| format!("{:x}", s.filesystem_type().0))
        .unwrap_or_default();
    let path = probe_path(store);
    if let Ok(p) = crate::store::atomic::read_json::<Probe>(&path) {
        if p.kernel == kernel && p.fs_type == fs_type {
            return Ok(if p.idmapped {
                LayerOwnership::Idmapped
            } else {
                LayerOwnership::Chowned
            });
        }
    }
    let scratch = store.temp_dir("idmap-probe")?;
    let answer = crate::runtime::idmap::probe(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = &answer {
        tracing::info!(error = %e, "no idmapped layers on this store: --userns=auto copies them chowned");
    }
    let probe = Probe {
        kernel,
        fs_type,
        idmapped: answer.is_ok(),
        error: answer.err().map(|e| e.to_string()),
    };
    // not kept, it is asked again next time
    let _ = crate::store::atomic::write_json_atomic(&path, &probe);
    Ok(if probe.idmapped {
        LayerOwnership::Idmapped
    } else {
        LayerOwnership::Chowned
    })
}

/// The container's lower dirs for [`LayerOwnership::Chowned`]: for each
/// image layer (`layers/<hex>`) its copy for `range`, made now if the store
/// has none (`layers-shifted/<hex>/<uid>-<gid>-<size>`). Called under the
/// store lock, so no collection removes a layer while it is copied.
pub fn shifted_layers(store: &Store, lower: &[PathBuf], range: &IdRange) -> Result<Vec<PathBuf>> {
    let shift = crate::layer::shift::Shift {
        uid: range.uid,
        gid: range.gid,
        size: range.size,
    };
    let name = format!("{}-{}-{}", range.uid, range.gid, range.size);
    let mut out = Vec::with_capacity(lower.len());
    for layer in lower {
        let hex = layer
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = store.shifted_layers_dir(&hex).join(&name);
        if !dest.is_dir() {
            let started = std::time::Instant::now();
            let tmp = store.temp_dir("shift")?;
            let staged = tmp.join("layer");
            let made =
                crate::layer::shift::copy_shifted(layer, &staged, &shift).and_then(|stats| {
                    // the copy is durable before it is visible, as an unpacked layer
                    let f = std::fs::File::open(&staged)?;
                    // SAFETY: syncfs on a descriptor owned by `f`.
                    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    std::fs::create_dir_all(dest.parent().expect("layers-shifted/<hex>"))?;
                    std::fs::rename(&staged, &dest)?;
                    Ok(stats)
                });
            let _ = std::fs::remove_dir_all(&tmp);
            let stats = made.map_err(|e| {
                ContainerError::io(
                    &dest,
                    std::io::Error::new(
                        e.kind(),
                        format!(
                            "copy layer {} with owners shifted into the container's range: {e}",
                            layer.display()
                        ),
                    ),
                )
            })?;
            tracing::info!(
                layer = %hex,
                entries = stats.entries,
                bytes = stats.bytes,
                reflinked = stats.reflinked,
                ms = started.elapsed().as_millis() as u64,
                "layer copied with shifted owners"
            );
        }
        out.push(dest);
    }
    Ok(out)
}

/// The container's root is an unprivileged host id: it must be able to
/// walk to its root file system, so every directory from `/` down to the
/// store's containers must let others search it. A store made with
/// `mktemp -d` (mode 700) does not, and the init would fail later with a bare
/// "permission denied" when it mounts its root.
pub fn check_reachable(store: &Store) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = store.containers_dir();
    for d in dir.ancestors() {
        let Ok(md) = std::fs::metadata(d) else {
            continue;
        };
        if md.mode() & 0o001 == 0 {
            return Err(ContainerError::BadOption(format!(
                "--userns=auto: the container's root, an unprivileged host user, cannot reach {} (mode {:o}): let others search it (chmod o+x {}) or use a store below directories that do",
                d.display(),
                md.mode() & 0o7777,
                d.display()
            )));
        }
    }
    Ok(())
}

/// Adds the user namespace and its mappings to the container's spec.
pub fn apply(spec: &mut oci_spec::runtime::Spec, range: &IdRange) {
    use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType};
    let Some(linux) = spec.linux_mut() else {
        return;
    };
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .expect("namespace"),
    );
    linux.set_namespaces(Some(namespaces));
    let (uids, gids) = range.mappings();
    linux.set_uid_mappings(Some(uids));
    linux.set_gid_mappings(Some(gids));
}

/// Gives `path` to the container's root (the overlay's upper directory, the
/// /etc files bound into it).
pub fn own(path: &Path, range: &IdRange) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(range.uid), Some(range.gid))
        .map_err(|e| ContainerError::io(path, e))
}

/// Shifts every owner under `dir` into the range (a volume this container
/// made and filled from its image), as Podman does for its volumes.
pub fn shift_tree(dir: &Path, range: &IdRange) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = dir
        .symlink_metadata()
        .map_err(|e| ContainerError::io(dir, e))?;
    let (uid, gid) = (md.uid(), md.gid());
    if uid < range.size && gid < range.size {
        std::os::unix::fs::lchown(dir, Some(range.uid + uid), Some(range.gid + gid))
            .map_err(|e| ContainerError::io(dir, e))?;
        // lchown clears setuid/setgid bits: put the mode back
        if !md.file_type().is_symlink() && md.mode() & 0o6000 != 0 {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(|e| ContainerError::io(dir, e))?;
        }
    }
    if md.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(|e| ContainerError::io(dir, e))? {
            let entry = entry.map_err(|e| ContainerError::io(dir, e))?;
            shift_tree(&entry.path(), range)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_takes_the_twinbox_user_then_containers() {
        let text = "alice:100000:65536\ncontainers:200000:131072\n";
        assert_eq!(pool_from(text), vec![200000, 265536]);
        let text = "twinbox:300000:70000\ncontainers:200000:65536\n";
        assert_eq!(pool_from(text), vec![300000]);
        assert!(pool_from("alice:100000:65536\n").is_empty());
    }

    #[test]
    fn without_entries_the_fixed_pool_is_used_and_half_entries_are_refused() {
        let c = candidates("", "").unwrap();
        assert_eq!(c[0].uid, FIXED_BASE);
        assert_eq!(c[1].uid, FIXED_BASE + RANGE_SIZE);
        assert_eq!(c.len(), FIXED_RANGES as usize);
        assert!(candidates("twinbox:100000:65536\n", "").is_err());
    }

    #[test]
    fn ranges_overlap_when_uids_or_gids_meet() {
        let r = |uid, gid| IdRange {
            uid,
            gid,
            size: RANGE_SIZE,
        };
        assert!(r(100000, 100000).overlaps(&r(100000 + 65535, 500000)));
        assert!(r(100000, 100000).overlaps(&r(900000, 100000)));
        assert!(!r(100000, 100000).overlaps(&r(165536, 165536)));
    }

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("auto").unwrap(), UsernsMode::Auto);
        assert_eq!(parse_mode("host").unwrap(), UsernsMode::Host);
        assert!(parse_mode("keep-id").is_err());
    }
}
