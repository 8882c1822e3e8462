//! Recovery: what a SIGKILLed twinbox leaves, finished by the next command.
//!
//! A container directory without its record is a create that died halfway
//! (create writes the record last, holding the store lock): it is removed.
//! A container's state says `running` together with its supervisor's pid and
//! start time. When that supervisor is gone (killed, crashed, the machine
//! rebooted), the container's own processes died with it (parent-death signal),
//! but its record, cgroup and scratch stay. The next command that opens the store
//! finds it here: a `--rm` container is removed as `--rm` promised, any other one
//! is recorded as exited, and its cgroup goes either way.
//!
//! The scan reads one small `state.json` per container and takes the store lock
//! only when something is stale, so a healthy store pays a directory listing.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroups::{Cgroup, DEFAULT_FS_ROOT};
use crate::container::{Container, State, Status};
use crate::store::atomic::read_json;
use crate::store::Store;
use crate::util::procfs;

/// What one recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// `--rm` containers whose owner died, removed.
    pub removed: Vec<String>,
    /// Containers whose owner died, now recorded as exited (exit code unknown).
    pub marked_exited: Vec<String>,
    /// Scratch entries in tmp/ whose owner process is gone.
    pub temp_entries: usize,
    /// Container directories a create left without a record.
    pub unfinished_creates: usize,
    /// Cgroups nothing owns any more: build steps whose build process is
    /// gone, empty container cgroups no record names.
    pub cgroups: usize,
}

impl Recovered {
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.marked_exited.is_empty()
            && self.temp_entries == 0
            && self.unfinished_creates == 0
            && self.cgroups == 0
    }
}

/// True when a record says running but the supervisor that owned it is gone,
/// or says created with an owner (the creator of a `--rm` container, or the
/// supervisor starting any container) that is gone.
pub(crate) fn owner_is_dead(state: &State) -> bool {
    let owned = match state.status {
        Status::Running => true,
        Status::Created => state.supervisor_pid.is_some(),
        _ => false,
    };
    if !owned {
        return false;
    }
    !supervisor_alive(state)
}

/// True when the record names a supervisor and that very process still runs
/// (pid and start time: a reused pid is not it).
pub(crate) fn owner_is_alive(state: &State) -> bool {
    state.supervisor_pid.is_some() && supervisor_alive(state)
}

fn supervisor_alive(state: &State) -> bool {
    match (state.supervisor_pid, state.supervisor_start_ticks) {
        (Some(pid), Some(ticks)) => procfs::start_ticks(pid) == Some(ticks),
        _ => false,
    }
}

/// Container directories needing recovery, read without the lock: those whose
/// recorded owner is dead, and those without a record (a create that died).
fn stale_dirs(store: &Store) -> (Vec<String>, Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(store.containers_dir()) else {
        return (Vec::new(), Vec::new());
    };
    let (mut dead_owner, mut unfinished) = (Vec::new(), Vec::new());
    for e in rd.flatten() {
        let dir = e.path();
        if !dir.join("container.json").exists() {
            unfinished.push(dir);
        } else if read_json::<State>(&dir.join("state.json")).is_ok_and(|s| owner_is_dead(&s)) {
            dead_owner.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    (dead_owner, unfinished)
}

/// Finishes what dead twinbox processes left. Never fails: recovery is best
/// effort and must not stop the command the user asked for.
pub fn recover(store: &Store) -> Recovered {
    let mut done = Recovered {
        temp_entries: crate::image::gc::clean_temp(store, &super::InUse),
        cgroups: release_orphan_cgroups(store),
        ..Recovered::default()
    };
    let (stale, unfinished) = stale_dirs(store);
    if stale.is_empty() && unfinished.is_empty() {
        return done;
    }
    let Ok(_lock) = store.lock() else {
        return done;
    };
    // create holds the store lock until it writes container.json last: under
    // the lock, a directory still without it was left by a create that died
    for dir in unfinished {
        if dir.is_dir() && !dir.join("container.json").exists() {
            let _ = crate::network::detach(&dir);
            let grave = crate::store::grave_path(store.root());
            if fs::rename(&dir, &grave).is_ok() && fs::remove_dir_all(&grave).is_ok() {
                done.unfinished_creates += 1;
            }
        }
    }
    for id in stale {
        // re-read under the lock: another command may have recovered it already
        let Ok(container) = Container::load(store, &id) else {
            continue;
        };
        let Ok(state) = read_json::<State>(&container.state_path()) else {
            continue;
        };
        if !owner_is_dead(&state) {
            continue;
        }
        release_cgroup(&container);
        // the supervisor could not run CNI DEL: give back the address and ports
        let _ = crate::network::detach(&container.dir);
        if container.options.auto_remove {
            if container.discard().is_ok() {
                crate::container::volumes::remove_anonymous(&container);
                done.removed.push(container.name.clone());
            }
        } else {
            let mut exited = state;
            exited.status = Status::Exited;
            exited.pid = None;
            exited.exit_code = None;
            exited.error = Some("the supervisor died; the exit code is unknown".into());
            if container.write_state(&exited).is_ok() {
                done.marked_exited.push(container.name.clone());
            }
        }
    }
    done
}

/// How old an empty container cgroup that no record names must be before it
/// counts as left behind: younger ones may belong to a start in progress (the
/// cgroup is made just before the container's first process joins it).
pub(crate) const ORPHAN_CGROUP_AGE: Duration = Duration::from_secs(60);

/// Cgroups under twinbox/ that nothing owns any more, killed and removed:
/// - a build step's, `build-<builder pid>-<random>` (build/run.rs), whose
///   builder is gone (a killed build); the pid tells, so any store may do it
///   (a reused pid keeps it until that process ends);
/// - a container's, named by its id, that is empty, older than
///   `ORPHAN_CGROUP_AGE` and not a container of this store: its processes are
///   gone and whoever made it could not remove it (a removal that gave up on
///   a busy directory, a store deleted underneath). Empty means nothing runs
///   in it, so removing it cannot hurt another store's container: a container
///   has a cgroup only while it runs.
fn release_orphan_cgroups(store: &Store) -> usize {
    let Ok(parent) = Cgroup::new(Path::new(DEFAULT_FS_ROOT), Path::new("twinbox")) else {
        return 0;
    };
    let children = parent.children();
    if children.is_empty() {
        return 0;
    }
    let ours = container_ids(store);
    let mut released = 0;
    for child in children {
        let builder = build_cgroup_owner(&child.name);
        let orphan = match builder {
            Some(pid) => !crate::image::gc::process_exists(pid),
            None => {
                is_container_id(&child.name)
                    && child.age >= ORPHAN_CGROUP_AGE
                    && !ours.contains(&child.name)
            }
        };
        if !orphan {
            continue;
        }
        let Ok(cg) = Cgroup::new(
            Path::new(DEFAULT_FS_ROOT),
            &Path::new("twinbox").join(&child.name),
        ) else {
            continue;
        };
        if builder.is_some() {
            let _ = cg.kill_all(libc::SIGKILL);
        } else if !cg.pids().is_ok_and(|p| p.is_empty()) || !cg.children().is_empty() {
            continue; // processes (or cgroups of their own) live in it: another store's container
        }
        if cg.destroy().is_ok() {
            released += 1;
        }
    }
    released
}

/// The ids of this store's containers (their directory names).
pub(crate) fn container_ids(store: &Store) -> HashSet<String> {
    fs::read_dir(store.containers_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A container id: 64 lowercase hex digits.
pub(crate) fn is_container_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The builder's pid in a build step's cgroup name, `build-<pid>-<random>`.
fn build_cgroup_owner(name: &str) -> Option<i32> {
    let (pid, _) = name.strip_prefix("build-")?.split_once('-')?;
    pid.parse().ok().filter(|p| *p > 0)
}

/// Kills whatever is left in the container's cgroup and removes it.
pub(crate) fn release_cgroup(container: &Container) {
    let Ok(cg) = Cgroup::new(Path::new(DEFAULT_FS_ROOT), &container.cgroup_path()) else {
        return;
    };
    if cg.exists() {
        let _ = cg.kill_all(libc::SIGKILL);
        let _ = cg.destroy();
    }
}

#[cfg(test)]
mod tests {
    use super::build_cgroup_owner;

    #[test]
    fn a_build_steps_cgroup_names_its_builder() {
        assert_eq!(build_cgroup_owner("build-3305-a70899843a53"), Some(3305));
        for other in [
            "build-x-1",
            "build-3305",
            "3305-a",
            "build--1",
            "build-0-a",
            "abc",
        ] {
            assert_eq!(build_cgroup_owner(other), None, "{other}");
        }
    }
}
