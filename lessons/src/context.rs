//! What every lesson gets: the store, the number of runs, the VM backend, the
//! narrator; and the helpers that run one step (a container, a VM, a look at
//! the host), show it live, and record it in the report.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use twinbox_engine::container::RunOptions;
use twinbox_engine::image::{Image, ImageError};
use twinbox_engine::store::Store;

use crate::backend::{self, BackendChoice, Prepared, VmBackend, VmRequest, VmRun};
use crate::container::{ContainerRun, Detached, DetachedEnd};
use crate::measure::disk::container_footprint;
use crate::render::terminal::Narrator;
use crate::report::{LessonReport, Side, Step};
use crate::shell;
use crate::LessonError;

mod build;
mod series;
mod serve;
mod watch;
pub use build::{BuildDir, Built};
pub use series::{ContainerSeries, VmSeries};
pub use serve::{Serving, VmServed};

/// The image most lessons run: made from this host's busybox, no registry needed.
pub const BUSYBOX: &str = "busybox";
/// Guest RAM for lesson VMs unless a lesson needs another size.
pub const VM_MEMORY_MIB: u64 = 256;
/// How long a guest may take to reach its init: `TWINBOX_BOOT_TIMEOUT`, as
/// for `vm run`, else 180 s. Generous: under software emulation a stock
/// kernel takes seconds to boot (and minutes nested under emulation).
pub fn boot_timeout() -> Duration {
    twinbox_engine::util::time::env_timeout("TWINBOX_BOOT_TIMEOUT")
        .unwrap_or(Duration::from_secs(180))
}
/// How long a lesson's workload may run, in a container or a VM.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--runs`; each lesson has its own default.
    pub runs: Option<usize>,
    pub backend: BackendChoice,
    /// The twinbox binary, re-executed as the supervisor of detached containers.
    pub supervisor_exe: PathBuf,
    /// `--count`: how many containers the scale lesson starts.
    pub count: Option<usize>,
    /// `--vm-budget`: the guest RAM the scale lesson may give VMs, in MiB.
    pub vm_budget_mib: Option<u64>,
}

pub struct Context {
    pub store: Store,
    pub settings: Settings,
    pub say: Narrator,
    vm: Option<Result<Box<dyn VmBackend>, String>>,
}

impl Context {
    pub fn new(store: Store, settings: Settings) -> Context {
        Context {
            store,
            settings,
            say: Narrator::new(),
            vm: None,
        }
    }

    pub fn runs(&self, default: usize) -> usize {
        self.settings.runs.unwrap_or(default).max(1)
    }

    /// Chooses the VM backend once. An explicit choice that cannot work here
    /// is an error; with `auto`, a host where no backend works still runs the
    /// container half, and the VM half shows as failed with the reason.
    pub fn select_backend(&mut self) -> Result<(), LessonError> {
        if self.vm.is_some() {
            return Ok(());
        }
        match backend::select(self.settings.backend) {
            Ok(b) => self.vm = Some(Ok(b)),
            Err(e) if self.settings.backend != BackendChoice::Auto => return Err(e),
            Err(e) => self.vm = Some(Err(e.to_string())),
        }
        Ok(())
    }

    /// The VM backend, or why there is none.
    pub fn vm(&self) -> Result<&dyn VmBackend, String> {
        match &self.vm {
            Some(Ok(b)) => Ok(b.as_ref()),
            Some(Err(why)) => Err(why.clone()),
            None => Err("no VM backend was chosen".into()),
        }
    }

    pub fn emulated(&self) -> bool {
        self.vm().map(|b| b.note().emulated).unwrap_or(false)
    }

    /// An image from the store, with what to do when it is missing.
    pub fn image(&self, name: &str) -> Result<Image, LessonError> {
        match Image::resolve(&self.store, name) {
            Ok(i) => Ok(i),
            Err(ImageError::NotFound(_)) => Err(LessonError::MissingImage {
                image: name.to_string(),
                hint: match name {
                    BUSYBOX => "create it with `twinbox image bootstrap busybox`".into(),
                    n if n.starts_with("debian") => {
                        "build it with `twinbox image bootstrap debian` (needs mmdebstrap and the Debian mirror)".into()
                    }
                    n => format!("pull it with `twinbox pull {n}` or build it"),
                },
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Shows a command as the student would type it.
    pub fn show(&self, side: Side, command: &str) {
        self.say.command(side, command);
    }

    /// `twinbox run --rm IMAGE ...`: runs it to its end with live output and
    /// records the step. (Started detached and waited for, which is what
    /// `run --rm` amounts to, with the supervisor in its own process.)
    pub fn container(
        &self,
        report: &mut LessonReport,
        image: &str,
        opts: &RunOptions,
    ) -> Result<ContainerRun, LessonError> {
        self.container_within(report, image, opts, RUN_TIMEOUT)
    }

    /// [`Context::container`] with its own time limit, for work whose length
    /// the lesson measured (a slow, emulated machine needs longer).
    pub fn container_within(
        &self,
        report: &mut LessonReport,
        image: &str,
        opts: &RunOptions,
        timeout: Duration,
    ) -> Result<ContainerRun, LessonError> {
        let mut shown = opts.clone();
        shown.auto_remove = true;
        let command = shell::container_run(image, &shown, false);
        self.show(Side::Container, &command);
        let d = Detached::start(&self.store, image, opts, &self.settings.supervisor_exe)?;
        report.steps.push(Step {
            side: Side::Container,
            command,
            output: String::new(),
            exit_code: None,
            error: None,
            duration_ms: None,
        });
        let id = d.container.id.clone();
        let name = d.container.name.clone();
        let end = self.finish_detached(report, d, timeout)?;
        Ok(ContainerRun {
            id,
            name,
            exit_code: end.exit_code,
            output: end.output,
            to_workload_ms: end.to_workload_ms,
            total_ms: end.total_ms,
            memory_peak_bytes: end.state.memory_peak_bytes,
            oom_killed: end.state.oom_killed,
            timed_out: end.timed_out,
        })
    }

    /// `twinbox run -d IMAGE ...`: starts it and returns the handle; the
    /// step's output is filled in by [`Context::finish_detached`].
    pub fn detached(
        &self,
        report: &mut LessonReport,
        image: &str,
        opts: &RunOptions,
    ) -> Result<Detached, LessonError> {
        let command = shell::container_run(image, opts, true);
        self.show(Side::Container, &command);
        let d = Detached::start(&self.store, image, opts, &self.settings.supervisor_exe)?;
        self.say.output(&format!("{}\n", d.container.id));
        report.steps.push(Step {
            side: Side::Container,
            command,
            output: String::new(),
            exit_code: None,
            error: None,
            duration_ms: d.to_workload_ms,
        });
        Ok(d)
    }

    /// Waits for a detached container, shows its output, records the step
    /// (the last container step still without output), measures what it left
    /// behind, and removes it.
    pub fn finish_detached(
        &self,
        report: &mut LessonReport,
        mut d: Detached,
        timeout: Duration,
    ) -> Result<DetachedEnd, LessonError> {
        let mut out = std::io::stdout();
        let (code, timed_out) = d.wait(timeout, &mut out)?;
        let _ = out.flush();
        let end = DetachedEnd {
            exit_code: code,
            output: d.output(),
            state: d.state()?,
            to_workload_ms: d.to_workload_ms,
            total_ms: d.total_ms(),
            supervisor: d.last_supervisor,
            footprint: container_footprint(&d.container),
            timed_out,
        };
        if let Some(step) = report
            .steps
            .iter_mut()
            .rev()
            .find(|s| s.side == Side::Container && s.output.is_empty() && s.exit_code.is_none())
        {
            step.output = end.output.clone();
            step.exit_code = code;
            step.duration_ms = end.total_ms;
            if timed_out {
                step.error = Some(format!("stopped after {} s", timeout.as_secs()));
            }
        }
        d.remove()?;
        Ok(end)
    }

    /// Runs a container to its end (showing its output) and keeps it, for
    /// looking at what it left; the caller removes it.
    pub fn container_kept(
        &self,
        report: &mut LessonReport,
        image: &str,
        opts: &RunOptions,
    ) -> Result<Detached, LessonError> {
        let mut d = self.detached(report, image, opts)?;
        let mut out = std::io::stdout();
        let (code, timed_out) = d.wait(RUN_TIMEOUT, &mut out)?;
        if let Some(step) = report.steps.last_mut() {
            step.output = d.output();
            step.exit_code = code;
            step.duration_ms = d.total_ms();
            if timed_out {
                step.error = Some(format!("stopped after {} s", RUN_TIMEOUT.as_secs()));
            }
        }
        Ok(d)
    }

    /// A request for the VM half: the same image and options as the container.
    pub fn vm_request<'a>(
        &'a self,
        image_ref: &'a str,
        image: &'a Image,
        opts: &RunOptions,
        memory_mib: u64,
    ) -> VmRequest<'a> {
        VmRequest {
            store: &self.store,
            image_ref,
            image,
            options: opts.clone(),
            memory_mib,
            vcpus: 1,
            boot_timeout: boot_timeout(),
            run_timeout: RUN_TIMEOUT,
            stop: Default::default(),
            rootfs: Default::default(),
        }
    }

    /// Builds (or finds cached) the guest's initramfs before anything is
    /// timed, and says so.
    pub fn prepare_vm(&self, req: &VmRequest) -> Result<Prepared, String> {
        let vm = self.vm()?;
        let p = vm.prepare(req).map_err(|e| e.to_string())?;
        self.say.note(&format!(
            "(guest kernel {}, {} {} ready in {})",
            p.kernel_release,
            match req.rootfs {
                twinbox_microvm::instance::Rootfs::Initramfs => "initramfs",
                twinbox_microvm::instance::Rootfs::Disk { .. } => "image disk",
            },
            crate::report::format_bytes(p.initramfs_bytes),
            crate::report::format_ms(p.build_ms)
        ));
        Ok(p)
    }

    /// Boots the workload in a VM: live output, recorded as a step. A boot
    /// that fails is a recorded step with the reason, not an error.
    pub fn vm_run(&self, report: &mut LessonReport, req: &VmRequest) -> Result<VmRun, String> {
        self.boot(report, req, None)
    }

    /// The same, and while the VM still runs, `on_ready` is called once when
    /// its output first contains `needle` (to look at the host meanwhile).
    pub fn vm_run_watching(
        &self,
        report: &mut LessonReport,
        req: &VmRequest,
        needle: &str,
        on_ready: &mut dyn FnMut(),
    ) -> Result<VmRun, String> {
        self.boot(report, req, Some((needle, on_ready)))
    }

    fn boot(
        &self,
        report: &mut LessonReport,
        req: &VmRequest,
        watch: Option<(&str, &mut dyn FnMut())>,
    ) -> Result<VmRun, String> {
        let vm = self.vm()?;
        let command = vm.command_line(req);
        self.show(Side::Vm, &command);
        let live = BootSpinner::new(if vm.note().emulated {
            "booting the VM under software emulation…"
        } else {
            "booting the VM…"
        });
        let result = match watch {
            None => vm.run(req, Box::new(live)).map_err(|e| e.to_string()),
            Some((needle, on_ready)) => watch::boot(vm, req, Box::new(live), needle, on_ready),
        };
        let run = match result {
            Ok(run) => run,
            Err(why) => {
                self.say.failure(&format!("failed: {why}"));
                report.steps.push(Step {
                    side: Side::Vm,
                    command,
                    output: String::new(),
                    exit_code: None,
                    error: Some(why.clone()),
                    duration_ms: None,
                });
                return Err(why);
            }
        };
        if let Some(why) = &run.failure {
            self.say.failure(&format!("failed: {why}"));
        }
        let _ = std::io::stdout().flush();
        report.steps.push(Step {
            side: Side::Vm,
            command,
            output: run.output.clone(),
            exit_code: run.exit_code,
            error: run.failure.clone(),
            duration_ms: Some(run.total_ms),
        });
        Ok(run)
    }

    /// Shows what a command shown before it ran printed (its output, then
    /// its failure) and keeps the step for the report.
    pub fn record(&self, report: &mut LessonReport, step: Step) {
        self.say.output(&step.output);
        if let Some(e) = &step.error {
            self.say.failure(&format!("failed: {e}"));
        }
        report.steps.push(step);
    }

    /// Records something the lesson looked at on the host.
    pub fn host_step(&self, report: &mut LessonReport, command: &str, output: &str) {
        self.show(Side::Host, command);
        self.say.output(output);
        report.steps.push(Step {
            side: Side::Host,
            command: command.to_string(),
            output: output.to_string(),
            exit_code: Some(0),
            error: None,
            duration_ms: None,
        });
    }
}

/// The VM's live output, with a spinner on a terminal until the first byte
/// arrives (a boot under emulation prints nothing for seconds).
struct BootSpinner {
    bar: Option<indicatif::ProgressBar>,
}

impl BootSpinner {
    fn new(message: &'static str) -> BootSpinner {
        use std::io::IsTerminal;
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner().with_message(message);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        BootSpinner { bar }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Write for BootSpinner {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.clear();
        let mut out = std::io::stdout().lock();
        out.write_all(buf)?;
        out.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl Drop for BootSpinner {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `sh -c SCRIPT` as a command vector.
pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Run options on the default network with one TCP port published, as
/// `--network bridge -p [HOST_IP:]HOST_PORT:CONTAINER_PORT` gives them.
pub fn published(
    host_ip: Option<std::net::IpAddr>,
    host_port: u16,
    container_port: u16,
) -> RunOptions {
    RunOptions {
        network: twinbox_engine::network::NetworkMode::Cni(
            twinbox_engine::network::DEFAULT_NETWORK.to_string(),
        ),
        ports: vec![twinbox_engine::network::PortMapping {
            host_ip,
            host_port,
            container_port,
            protocol: "tcp".into(),
        }],
        ..Default::default()
    }
}

/// Run options with just a command.
pub fn cmd_opts(cmd: Vec<String>) -> RunOptions {
    RunOptions {
        cmd,
        ..Default::default()
    }
}
