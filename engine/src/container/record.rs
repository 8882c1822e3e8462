//! The container record on disk: `containers/<id>/container.json` (what was
//! asked, written once) and `state.json` (what happened, written by whoever owns
//! the process). Both are replaced atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::options::RunOptions;
use super::{ContainerError, Result};
use crate::store::atomic::{read_json, write_json_atomic};
use crate::store::Store;
use crate::util::procfs;

/// The init layer containers share: `<root>/cache/init-layer` (its files are
/// the same for every container, so one copy serves all, and a `run --rm`
/// makes and frees six fewer inodes).
pub fn shared_init_layer(store_root: &Path) -> PathBuf {
    store_root.join("cache/init-layer")
}

/// Where every container's root is mounted: `<root>/cache/rootfs`, an empty
/// directory. The overlay is mounted on it inside the container's own mount
/// namespace only (made private first), so all containers can share it.
pub fn root_mount_point(store_root: &Path) -> PathBuf {
    store_root.join("cache/rootfs")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's init (PID 1 inside).
    pub pid: Option<i32>,
    pub supervisor_pid: Option<i32>,
    /// Start time of the supervisor (clock ticks since boot), so a reused pid is
    /// never mistaken for it.
    pub supervisor_start_ticks: Option<u64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// None while running, and when the exit could not be recorded.
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub memory_peak_bytes: Option<u64>,
    pub error: Option<String>,
    /// Restarts by the restart policy since the last user start.
    #[serde(default)]
    pub restart_count: u32,
}

impl State {
    pub fn created() -> Self {
        State {
            status: Status::Created,
            pid: None,
            supervisor_pid: None,
            supervisor_start_ticks: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            memory_peak_bytes: None,
            error: None,
            restart_count: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    pub image_id: String,
    pub created: String,
    pub args: Vec<String>,
    pub hostname: String,
    pub options: RunOptions,
    /// Unpacked image layers, topmost first (overlayfs lowerdir order).
    pub lower_dirs: Vec<PathBuf>,
    /// The host ids of its user namespace (`--userns=auto`); held until rm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_range: Option<super::userns::IdRange>,
    /// With `id_range` where layers cannot be idmapped: the copies of
    /// `lower_dirs` chowned into the range, mounted in their place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shifted_lower_dirs: Vec<PathBuf>,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
    pub fn spec_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    /// Docker's init layer: what every container has above the image and
    /// below its own changes (not in `diff` or `commit`): /etc/mtab. A
    /// container's own one exists only where its owners are shifted (the
    /// chowned `--userns=auto` fallback) and in older stores; the others
    /// share the store's ([`shared_init_layer`]).
    pub fn init_layer(&self) -> PathBuf {
        self.dir.join("init")
    }
    /// The store this container's directory is in.
    fn store_root(&self) -> Option<&Path> {
        self.dir.parent().and_then(|containers| containers.parent())
    }
    /// The overlay's lower dirs: the init layer (its own, else the store's
    /// shared one) over the image's layers (or their chowned copies).
    pub fn overlay_lowers(&self) -> Vec<PathBuf> {
        let own = self.init_layer();
        let init = if own.is_dir() {
            Some(own)
        } else {
            self.store_root()
                .map(shared_init_layer)
                .filter(|shared| shared.is_dir())
        };
        let mut lowers = Vec::with_capacity(self.lower_dirs.len() + 1);
        lowers.extend(init);
        if self.shifted_lower_dirs.is_empty() {
            lowers.extend(self.lower_dirs.iter().cloned());
        } else {
            lowers.extend(self.shifted_lower_dirs.iter().cloned());
        }
        lowers
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn cgroup_path(&self) -> PathBuf {
        PathBuf::from("twinbox").join(&self.id)
    }

    /// Removes the container's directory in one step as far as anyone can see:
    /// it is renamed into the store's tmp/ under a name carrying our pid (so
    /// a crash mid-delete leaves scratch that recovery reclaims, never half a
    /// record) and deleted there.
    pub fn discard(&self) -> Result<()> {
        // its network first (CNI DEL, the pinned namespace unmounted): a mount
        // point would keep the directory from going; idempotent when done
        let _ = crate::network::detach(&self.dir);
        let root = self.store_root().ok_or_else(|| {
            ContainerError::io(&self.dir, std::io::Error::other("not in a store"))
        })?;
        let grave = crate::store::grave_path(root);
        match std::fs::rename(&self.dir, &grave) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ContainerError::io(&self.dir, e)),
        }
        crate::store::grave::remove_grave(&grave).map_err(|e| ContainerError::io(&grave, e))
    }

    pub fn save(&self) -> Result<()> {
        self.write_record(&self.dir.join("container.json"), self)
    }

    /// Writes one of its records: durably, unless the container is `--rm`
    /// (gone after a reboot anyway, so its records skip the fsyncs, a few
    /// milliseconds of every `run --rm`).
    pub fn write_record<T: serde::Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        if self.options.auto_remove {
            Ok(crate::store::atomic::write_json_volatile(path, value)?)
        } else {
            Ok(write_json_atomic(path, value)?)
        }
    }

    pub fn load(store: &Store, id: &str) -> Result<Container> {
        let dir = store.containers_dir().join(id);
        let mut c: Container = read_json(&dir.join("container.json"))?;
        c.dir = dir;
        Ok(c)
    }

    pub fn write_state(&self, state: &State) -> Result<()> {
        self.write_record(&self.state_path(), state)
    }

    /// The recorded state, corrected by what is true now: a container whose
    /// supervisor is gone is not running any more, whatever the file says.
    pub fn state(&self) -> Result<State> {
        let mut state: State = match read_json(&self.state_path()) {
            Ok(s) => s,
            Err(_) => State::created(),
        };
        if state.status == Status::Running {
            let alive = match (state.supervisor_pid, state.supervisor_start_ticks) {
                (Some(pid), Some(ticks)) => procfs::start_ticks(pid) == Some(ticks),
                _ => false,
            };
            if !alive {
                // the supervisor could not run CNI DEL: the first command to notice does
                let _ = crate::network::detach(&self.dir);
                state.status = Status::Exited;
                state.exit_code = None;
                state.pid = None;
                if state.error.is_none() {
                    state.error = Some("the supervisor died; the exit code is unknown".into());
                }
            }
        }
        Ok(state)
    }

    /// Between two runs of its restart policy (Docker's `restarting`): exited
    /// with a code the policy restarts on, or being set up again after such an
    /// exit, its supervisor alive.
    pub fn restarting(&self, state: &State) -> bool {
        let between = match state.status {
            Status::Exited => state.exit_code.is_some_and(|code| {
                self.options
                    .restart
                    .wants_restart(code, state.restart_count)
            }),
            Status::Created => state.restart_count > 0,
            Status::Running => false,
        };
        between
            && matches!((state.supervisor_pid, state.supervisor_start_ticks),
                (Some(pid), Some(ticks)) if procfs::start_ticks(pid) == Some(ticks))
            && !super::restart::stopped_by_user(self)
    }

    /// Every container in the store, oldest first.
    pub fn list(store: &Store) -> Result<Vec<Container>> {
        let dir = store.containers_dir();
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&dir).map_err(|e| ContainerError::io(&dir, e))?;
        for entry in rd.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            // a directory without container.json is a create that did not finish
            if let Ok(c) = Container::load(store, &id) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Finds a container by name, full id or unique id prefix, as Docker does.
    pub fn find(store: &Store, key: &str) -> Result<Container> {
        Container::find_in(&Container::list(store)?, key).cloned()
    }

    /// [`Container::find`] among containers already listed.
    pub fn find_in<'a>(all: &'a [Container], key: &str) -> Result<&'a Container> {
        let key = key.strip_prefix('/').unwrap_or(key);
        if let Some(c) = all.iter().find(|c| c.id == key || c.name == key) {
            return Ok(c);
        }
        let matches: Vec<&Container> = all
            .iter()
            .filter(|c| !key.is_empty() && c.id.starts_with(key))
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(ContainerError::NotFound(key.to_string())),
            _ => Err(ContainerError::Ambiguous(key.to_string())),
        }
    }
}
