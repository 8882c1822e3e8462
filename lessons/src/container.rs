//! The container half of a lesson, driven through the engine library the way
//! `twinbox run -d` drives it: a small supervisor process (the twinbox binary
//! re-executed) creates and owns the container, and the lesson watches it from
//! outside. Never in this process: a lesson has threads (VM consoles,
//! samplers), and the runtime's clone of a multi-threaded process could
//! inherit a lock another thread held.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_engine::cgroups::Usage;
use twinbox_engine::container::logs::read_log;
use twinbox_engine::container::{self as engine, lifecycle, Container, RunOptions, Status};
use twinbox_engine::store::Store;

use crate::measure::disk::ContainerFootprint;
use crate::measure::memory::{container_memory, process_memory, ContainerMemory, ProcessMemory};
use crate::measure::time::ms_between;
use crate::LessonError;
use twinbox_engine::util::time::now_rfc3339;

/// How much longer than the engine's own wait a killed container may take
/// to be recorded as stopped.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// How one finished container run went.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerRun {
    pub id: String,
    pub name: String,
    pub exit_code: Option<i32>,
    /// stdout and stderr as logged, in order.
    pub output: String,
    /// From the start of `run` (before the container exists) to the
    /// workload's `execve`, by the record's wall-clock timestamp.
    pub to_workload_ms: Option<f64>,
    /// From the start of `run` to the recorded exit.
    pub total_ms: Option<f64>,
    pub memory_peak_bytes: Option<u64>,
    pub oom_killed: bool,
    /// Set when twinbox stopped the workload because it ran too long.
    pub timed_out: bool,
}

/// A container's whole log as one text, stdout and stderr in the order logged.
pub fn logged_output(log: &Path) -> String {
    read_log(log).into_iter().map(|l| l.log).collect()
}

/// A detached container (`twinbox run -d`): its own small supervisor process
/// owns it, so the lesson can measure it from outside while it runs.
pub struct Detached {
    pub container: Container,
    pub pid: i32,
    /// From the start of `run -d` to the workload's `execve`.
    pub to_workload_ms: Option<f64>,
    /// The supervisor's memory at the last look before it exited.
    pub last_supervisor: Option<ProcessMemory>,
    t0_wall: String,
    log_shown: usize,
    removed: bool,
}

impl Detached {
    pub fn start(
        store: &Store,
        image: &str,
        opts: &RunOptions,
        supervisor_exe: &Path,
    ) -> Result<Detached, LessonError> {
        let mut opts = opts.clone();
        opts.auto_remove = false;
        let t0_wall = now_rfc3339();
        let container = engine::create(store, image, &opts)?;
        let pid = match lifecycle::start_detached(store, &container, supervisor_exe) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = lifecycle::remove(&container, true);
                return Err(e.into());
            }
        };
        let started = container.state().ok().and_then(|s| s.started_at);
        Ok(Detached {
            to_workload_ms: started.as_deref().and_then(|s| ms_between(&t0_wall, s)),
            last_supervisor: None,
            t0_wall,
            container,
            pid,
            log_shown: 0,
            removed: false,
        })
    }

    pub fn supervisor_pid(&self) -> Option<i32> {
        self.container.state().ok()?.supervisor_pid
    }

    /// The supervisor's memory now; `None` when it is gone.
    pub fn supervisor_memory(&self) -> Option<ProcessMemory> {
        process_memory(self.supervisor_pid()?)
    }

    pub fn is_running(&self) -> bool {
        self.container
            .state()
            .map(|s| s.status == Status::Running)
            .unwrap_or(false)
    }

    /// The cgroup's counters while the container runs.
    pub fn cgroup_usage(&self) -> Option<Usage> {
        lifecycle::cgroup_of(&self.container)?.usage().ok()
    }

    /// Host pids of every process in the container.
    pub fn pids(&self) -> Vec<i32> {
        lifecycle::cgroup_of(&self.container)
            .and_then(|cg| cg.pids().ok())
            .unwrap_or_default()
    }

    /// Log lines not shown yet, as text (for live output while waiting).
    pub fn new_output(&mut self) -> String {
        let lines = read_log(&self.container.log_path());
        let new: String = lines
            .iter()
            .skip(self.log_shown)
            .map(|l| l.log.as_str())
            .collect();
        self.log_shown = lines.len();
        new
    }

    pub fn output(&self) -> String {
        logged_output(&self.container.log_path())
    }

    /// Waits (showing new output through `live`) until the workload prints
    /// `needle` or exits; false on timeout.
    pub fn wait_for_output(
        &mut self,
        needle: &str,
        timeout: Duration,
        live: &mut dyn Write,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let new = self.new_output();
            let _ = live.write_all(new.as_bytes());
            if self.output().contains(needle) {
                return true;
            }
            if !self.is_running() || Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit (showing output); stops the container at the
    /// timeout. Returns the exit code and the recorded state.
    pub fn wait(
        &mut self,
        timeout: Duration,
        live: &mut dyn Write,
    ) -> Result<(Option<i32>, bool), LessonError> {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        while self.is_running() {
            if let Some(m) = self.supervisor_memory() {
                self.last_supervisor = Some(m);
            }
            let _ = live.write_all(self.new_output().as_bytes());
            if Instant::now() >= deadline {
                timed_out = true;
                lifecycle::stop(&self.container, Duration::from_secs(1))?;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = live.write_all(self.new_output().as_bytes());
        let state = self.container.state()?;
        Ok((state.exit_code, timed_out))
    }

    /// From the start of `run -d` to the recorded exit.
    pub fn total_ms(&self) -> Option<f64> {
        let state = self.container.state().ok()?;
        ms_between(&self.t0_wall, state.finished_at.as_deref()?)
    }

    pub fn state(&self) -> Result<twinbox_engine::container::State, LessonError> {
        Ok(self.container.state()?)
    }

    /// SIGTERM, SIGKILL after 2 s. The engine waits 10 s more for the exit
    /// to be recorded; on a slow machine (the nested environment emulates its
    /// CPU) the supervisor's network teardown alone can take longer, so a
    /// killed container is given up to [`STOP_GRACE`] more before it counts
    /// as failed.
    pub fn stop(&self) -> Result<(), LessonError> {
        match lifecycle::stop(&self.container, Duration::from_secs(2)) {
            Err(e @ engine::ContainerError::Timeout { .. }) => {
                let deadline = Instant::now() + STOP_GRACE;
                while self.is_running() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if self.is_running() {
                    Err(e.into())
                } else {
                    Ok(())
                }
            }
            r => Ok(r?),
        }
    }

    pub fn remove(mut self) -> Result<(), LessonError> {
        self.removed = true;
        Ok(lifecycle::remove(&self.container, true)?)
    }

    pub fn dir(&self) -> PathBuf {
        self.container.dir.clone()
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        // a lesson that fails half-way leaves nothing running behind
        if !self.removed {
            let _ = lifecycle::remove(&self.container, true);
        }
    }
}

/// What a detached container left behind once it ended.
#[derive(Debug, Clone)]
pub struct DetachedEnd {
    pub exit_code: Option<i32>,
    pub output: String,
    pub state: twinbox_engine::container::State,
    pub to_workload_ms: Option<f64>,
    pub total_ms: Option<f64>,
    /// The supervisor's memory at the last look before it exited.
    pub supervisor: Option<ProcessMemory>,
    pub footprint: ContainerFootprint,
    pub timed_out: bool,
}

impl DetachedEnd {
    /// Its memory on the host: the cgroup's peak plus its supervisor.
    pub fn memory(&self) -> ContainerMemory {
        container_memory(self.state.memory_peak_bytes, self.supervisor)
    }
}
