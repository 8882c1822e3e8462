//! The OCI runtime command line (`twinbox runtime create|start|state|kill|delete|run`)
//! over bundles, so other tools and conformance tests can drive the runtime as
//! they drive runc. State lives in `<state-root>/<id>/state.json`.

use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::{spawn, Launch, Result, RuntimeError, Stdio};
use crate::cgroups::{Cgroup, DEFAULT_FS_ROOT};
use crate::host::procfs;
use crate::store::atomic::{read_json, write_json_atomic};

pub const DEFAULT_STATE_ROOT: &str = "/run/twinbox-runtime";

/// The state document the OCI runtime spec defines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// Not in the spec: lets a reused pid be told apart.
    #[serde(default, rename = "twinboxStartTicks")]
    pub start_ticks: Option<u64>,
}

pub struct OciRuntime {
    state_root: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl OciRuntime {
    pub fn new(state_root: impl Into<PathBuf>) -> Self {
        OciRuntime {
            state_root: state_root.into(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.state_root.join(id)
    }

    fn load_spec(bundle: &Path) -> Result<(Spec, PathBuf)> {
        let bundle = fs::canonicalize(bundle).map_err(|e| io(bundle, e))?;
        let mut spec: Spec = read_json(&bundle.join("config.json"))
            .map_err(|e| RuntimeError::Spec(e.to_string()))?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .ok_or_else(|| RuntimeError::Spec("root.path is missing".into()))?;
        let abs = if root.is_absolute() {
            root
        } else {
            bundle.join(root)
        };
        if let Some(r) = spec.root_mut().as_mut() {
            r.set_path(abs);
        }
        Ok((spec, bundle))
    }

    fn check_id(&self, id: &str) -> Result<()> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(RuntimeError::Spec(format!("invalid container id {id:?}")));
        }
        if self.dir(id).exists() {
            return Err(RuntimeError::Spec(format!(
                "container {id:?} already exists: delete it first"
            )));
        }
        Ok(())
    }

    /// Sets up the container and leaves its init waiting for `start`.
    pub fn create(&self, id: &str, bundle: &Path) -> Result<OciState> {
        self.check_id(id)?;
        let (spec, bundle) = Self::load_spec(bundle)?;
        let dir = self.dir(id);
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let fifo = dir.join("exec.fifo");
        let result = (|| {
            nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
                .map_err(|e| io(&fifo, e.into()))?;
            let launch = Launch::new(
                spec.clone(),
                Stdio {
                    stdin: 0,
                    stdout: 1,
                    stderr: 2,
                },
            )
            .exec_fifo(&fifo);
            let spawned = spawn(&launch)?;
            let state = OciState {
                oci_version: spec.version().clone(),
                id: id.to_string(),
                status: "created".into(),
                pid: spawned.pid.as_raw(),
                bundle,
                annotations: spec.annotations().clone().unwrap_or_default(),
                start_ticks: procfs::start_ticks(spawned.pid.as_raw()),
            };
            write_json_atomic(&dir.join("state.json"), &state)
                .map_err(|e| RuntimeError::Spec(e.to_string()))?;
            Ok(state)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Lets a created container exec its process.
    pub fn start(&self, id: &str) -> Result<()> {
        let state = self.state(id)?;
        if state.status != "created" {
            return Err(RuntimeError::Spec(format!(
                "container {id} is {}, not created",
                state.status
            )));
        }
        let fifo = self.dir(id).join("exec.fifo");
        // Opening for read releases the init blocked in its open-for-write.
        let data = fs::read(&fifo).map_err(|e| io(&fifo, e))?;
        let _ = fs::remove_file(&fifo);
        if data.is_empty() {
            return Err(RuntimeError::Spec(format!(
                "container {id} exited before it could start"
            )));
        }
        Ok(())
    }

    /// The current state, with the status derived from the process itself.
    pub fn state(&self, id: &str) -> Result<OciState> {
        let path = self.dir(id).join("state.json");
        if !path.exists() {
            return Err(RuntimeError::Spec(format!(
                "container {id:?} does not exist"
            )));
        }
        let mut state: OciState =
            read_json(&path).map_err(|e| RuntimeError::Spec(e.to_string()))?;
        let alive = procfs::start_ticks(state.pid).is_some()
            && procfs::start_ticks(state.pid) == state.start_ticks;
        state.status = if !alive {
            "stopped"
        } else if self.dir(id).join("exec.fifo").exists() {
            "created"
        } else {
            "running"
        }
        .into();
        Ok(state)
    }

    pub fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let state = self.state(id)?;
        if state.status == "stopped" {
            return Err(RuntimeError::Spec(format!("container {id} is not running")));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(state.pid),
            nix::sys::signal::Signal::try_from(signal)
                .map_err(|_| RuntimeError::Spec(format!("invalid signal {signal}")))?,
        )
        .map_err(|e| io(Path::new("kill"), e.into()))
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let state = self.state(id)?;
        if state.status != "stopped" {
            if !force {
                return Err(RuntimeError::Spec(format!(
                    "container {id} is {}: kill it first or use --force",
                    state.status
                )));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(state.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            for _ in 0..200 {
                if procfs::start_ticks(state.pid).is_none() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        // the bundle may be gone already; then there is no cgroup path to clean up
        let spec = Self::load_spec(&state.bundle)
            .map(|(s, _)| s)
            .unwrap_or_default();
        if let Some(cg) = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .and_then(|p| {
                Cgroup::new(
                    Path::new(DEFAULT_FS_ROOT),
                    p.strip_prefix("/").unwrap_or(&p),
                )
                .ok()
            })
        {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        let dir = self.dir(id);
        fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))
    }

    /// create + start + wait + delete, with the workload on our stdio.
    pub fn run(&self, id: &str, bundle: &Path) -> Result<i32> {
        self.check_id(id)?;
        let (spec, _) = Self::load_spec(bundle)?;
        let spawned = spawn(&Launch::new(
            spec,
            Stdio {
                stdin: 0,
                stdout: 1,
                stderr: 2,
            },
        ))?;
        let code = loop {
            match nix::sys::wait::waitpid(spawned.pid, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => break c,
                Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => break 128 + s as i32,
                Err(nix::errno::Errno::EINTR) | Ok(_) => continue,
                Err(_) => break 255,
            }
        };
        if let Some(cg) = spawned.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        Ok(code)
    }
}
