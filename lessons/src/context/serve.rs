//! A server in a microVM, measured from the host while it runs: the VM boots
//! in a thread, the lesson reaches it through its published port (or its
//! address on the bridge), and the VM is stopped once the lesson has what it
//! needs. The container half of the same lessons runs detached; this is its
//! twin for the VM backends, which run a VM from its boot to its end.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{BootSpinner, Context};
use crate::backend::twinbox::Tee;
use crate::backend::{VmRequest, VmRun};
use crate::report::{LessonReport, Measured, Side, Step};

/// What the lesson's probe gets while the VM runs.
pub struct Serving<'a> {
    /// When the VM was asked to start (before its VMM existed).
    pub started: Instant,
    /// The guest's console so far (its workload's output).
    output: &'a Mutex<Vec<u8>>,
    running: &'a dyn Fn() -> bool,
}

impl Serving<'_> {
    /// Whether the VM still runs (a probe stops waiting when it ended).
    pub fn running(&self) -> bool {
        (self.running)()
    }

    /// What the workload printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits until the workload printed `needle`; false when the VM ended
    /// or `timeout` passed first.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            if !self.running() {
                return self.output().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Milliseconds since the VM was asked to start.
    pub fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }
}

/// A served VM: what the probe found, and how the VM's run went.
pub struct VmServed<T> {
    pub found: T,
    pub run: VmRun,
}

impl Context {
    /// Why a server in a VM cannot be reached from the host with this
    /// backend, when it cannot.
    pub fn vm_cannot_serve(&self) -> Option<String> {
        match self.vm() {
            Ok(vm) => vm.serves().err(),
            Err(why) => Some(why),
        }
    }

    /// Boots `req` (its options carry the network and `-p`), runs `probe`
    /// from the host while the VM runs, then stops the VM and records the
    /// step. The probe's error, or a VM that could not start, is the result's
    /// failure.
    pub fn vm_serving<T>(
        &self,
        report: &mut LessonReport,
        req: &VmRequest,
        probe: impl FnOnce(&Serving) -> Result<T, String>,
    ) -> Measured<VmServed<T>> {
        let vm = match self.vm() {
            Ok(vm) => vm,
            Err(why) => return Measured::Failed(why),
        };
        if let Err(why) = vm.serves() {
            return Measured::Failed(why);
        }
        let command = format!("{} &", vm.command_line(req));
        self.show(Side::Vm, &command);
        let live = BootSpinner::new(if vm.note().emulated {
            "booting the VM under software emulation…"
        } else {
            "booting the VM…"
        });
        let kept = Arc::new(Mutex::new(Vec::new()));
        let tee = Tee {
            live: Box::new(live),
            kept: kept.clone(),
        };
        let started = Instant::now();
        let (found, run) = std::thread::scope(|s| {
            let handle = s.spawn(move || vm.run(req, Box::new(tee)).map_err(|e| e.to_string()));
            let running = || !handle.is_finished();
            let serving = Serving {
                started,
                output: &kept,
                running: &running,
            };
            let found = probe(&serving);
            req.stop.store(true, Ordering::Release);
            let run = handle
                .join()
                .unwrap_or_else(|_| Err("the VM thread panicked".to_string()));
            (found, run)
        });
        let _ = std::io::stdout().flush();
        let output =
            String::from_utf8_lossy(&kept.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        let (exit_code, error) = match &run {
            Ok(r) => (r.exit_code, None),
            Err(why) => (None, Some(why.clone())),
        };
        report.steps.push(Step {
            side: Side::Vm,
            command,
            output,
            exit_code,
            error: error.clone().or_else(|| found.as_ref().err().cloned()),
            duration_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
        });
        match (found, run) {
            (Ok(found), Ok(run)) => Measured::Value(VmServed { found, run }),
            (Err(why), Ok(run)) => {
                let why = match &run.failure {
                    // the VM's own failure says more than "no answer"
                    Some(f) if !f.is_empty() => format!("{why}; the VM: {f}"),
                    _ => why,
                };
                self.say.failure(&format!("failed: {why}"));
                Measured::Failed(why)
            }
            (_, Err(why)) => {
                self.say.failure(&format!("failed: {why}"));
                Measured::Failed(why)
            }
        }
    }
}
