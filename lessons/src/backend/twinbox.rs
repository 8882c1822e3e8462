//! twinbox's own KVM VMM as the VM half: the guest boots inside this process
//! (as `twinbox vm run` does), so its memory is measured from the inside by
//! Firecracker's method and its phases by the boot-timer device.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use twinbox_engine::util::text::last_lines;
use twinbox_microvm::host::GuestKernel;
use twinbox_microvm::instance::{self, Mode, RunRequest, Started};

use super::{Phase, Prepared, VmBackend, VmMemory, VmRequest, VmRun};
use crate::report::{BackendNote, Measured};
use crate::LessonError;

pub struct OwnVmm {
    note: BackendNote,
    kernel: GuestKernel,
}

impl OwnVmm {
    pub fn new(reason: String) -> Result<OwnVmm, LessonError> {
        let kernel = instance::choose_kernel(None).map_err(LessonError::Instance)?;
        Ok(OwnVmm {
            note: BackendNote {
                name: "twinbox".into(),
                description: format!("twinbox's own KVM VMM, guest kernel {}", kernel.version),
                reason,
                emulated: false,
            },
            kernel,
        })
    }
}

/// Copies the workload's output to the live writer and keeps it.
pub(crate) struct Tee {
    pub live: Box<dyn Write + Send>,
    pub kept: Arc<Mutex<Vec<u8>>>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        // a closed terminal must not end the VM
        let _ = self.live.write_all(buf).and_then(|()| self.live.flush());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.live.flush();
        Ok(())
    }
}

impl VmBackend for OwnVmm {
    fn note(&self) -> &BackendNote {
        &self.note
    }

    fn prepare(&self, req: &VmRequest) -> Result<Prepared, LessonError> {
        super::prepare_guest(req, &self.kernel)
    }

    fn command_line(&self, req: &VmRequest) -> String {
        super::vm_run_line(req)
    }

    fn run(&self, req: &VmRequest, live: Box<dyn Write + Send>) -> Result<VmRun, LessonError> {
        let (run, output) = run_instance(req, live, instance::Backend::Twinbox, String::new())?;
        let memory = match run.outcome.memory {
            Some(m) => VmMemory {
                configured_bytes: req.memory_mib << 20,
                process_rss: Measured::Value(m.process_rss),
                guest_resident: Measured::Value(m.guest_resident),
                vmm_overhead: Measured::Value(m.vmm_overhead),
                method: "twinbox's VMM runs inside the lesson process: its resident set \
                         is read from /proc/self/smaps as the guest ends, and guest RAM \
                         the guest touched is subtracted (Firecracker's method); the rest \
                         is the VMM, and it includes the lesson program itself"
                    .into(),
            },
            None => {
                let why = "the VMM could not read /proc/self/smaps".to_string();
                VmMemory {
                    configured_bytes: req.memory_mib << 20,
                    process_rss: Measured::Failed(why.clone()),
                    guest_resident: Measured::Failed(why.clone()),
                    vmm_overhead: Measured::Failed(why),
                    method: String::new(),
                }
            }
        };
        Ok(vm_run(run, output, memory, false))
    }
}

/// One VM through `instance::run` in the foreground (twinbox's VMM, or QEMU
/// with the same record, disks and network); its output goes to `live` and
/// is also returned. `kernel_args` are added to the guest's command line.
pub(super) fn run_instance(
    req: &VmRequest,
    live: Box<dyn Write + Send>,
    backend: instance::Backend,
    kernel_args: String,
) -> Result<(instance::Finished, String), LessonError> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let tee = Tee {
        live,
        kept: kept.clone(),
    };
    let request = RunRequest {
        store: req.store,
        name: None,
        image_ref: req.image_ref.to_string(),
        image: req.image,
        options: req.options.clone(),
        kernel: None,
        kernel_args,
        memory_mib: req.memory_mib,
        vcpus: req.vcpus,
        boot_timeout: req.boot_timeout,
        run_timeout: Some(req.run_timeout),
        auto_remove: true,
        rootfs: req.rootfs,
        disks: Vec::new(),
        backend,
    };
    let mode = Mode::Foreground {
        live: Box::new(tee),
        stop: req.stop.clone(),
    };
    let run = match instance::run(request, mode) {
        Ok(Started::Finished(run)) => run,
        Ok(Started::Detached(_)) => return Err(LessonError::Backend("the VM was detached".into())),
        Err(e) => return Err(LessonError::Instance(e)),
    };
    let output =
        String::from_utf8_lossy(&kept.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    Ok((*run, output))
}

/// A finished instance in the lessons' terms: exit, failure with the
/// console's last lines, the boot phases the timeline has.
pub(super) fn vm_run(
    run: instance::Finished,
    output: String,
    memory: VmMemory,
    emulated: bool,
) -> VmRun {
    let exit_code = run.exit_code.map(i32::from);
    let failure = run.ending().failure().map(|f| {
        let tail = last_lines(run.boot_tail.trim(), 3);
        if tail.is_empty() {
            f
        } else {
            format!(
                "{f}; last console lines: {}",
                tail.lines().collect::<Vec<_>>().join(" | ")
            )
        }
    });
    let (outcome, started, initrd_ms) = (&run.outcome, run.started, run.initrd_ms);
    let t = outcome.timeline.timings();
    let to_workload_ms = outcome
        .timeline
        .events
        .workload_started
        .map(|at| at.saturating_duration_since(started).as_secs_f64() * 1e3);
    VmRun {
        exit_code,
        output,
        failure,
        to_workload_ms,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        phases: vec![
            Phase {
                name: "initramfs (cached image part + config)".into(),
                ms: Some(initrd_ms),
            },
            Phase {
                name: "VMM setup".into(),
                ms: t.vmm_setup_ms.map(|ms| ms - initrd_ms),
            },
            Phase {
                name: "kernel boot to init".into(),
                ms: t.boot_to_init_ms,
            },
            Phase {
                name: "init to workload".into(),
                ms: t.init_to_workload_ms,
            },
            Phase {
                name: "workload".into(),
                ms: t.workload_ms,
            },
        ],
        memory,
        kernel: run.kernel.version.clone(),
        emulated,
    }
}
