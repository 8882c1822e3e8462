//! Booting the same guest (kernel + twinbox initramfs) with QEMU: the VM half
//! of the lessons on hosts where twinbox's own VMM cannot boot a stock kernel
//! (no KVM, or PVM), and the peer twinbox's VMM is measured against.
//!
//! QEMU uses KVM only where KVM can boot a stock kernel
//! ([`host::can_boot_stock_kernel`]); otherwise it emulates the CPU (TCG), and
//! the outcome says its timings are emulated. The workload's exit code and
//! start time come from the init's console markers, as QEMU has no twinbox
//! boot-timer device.
//!
//! Machine: with KVM, `-M microvm` (no PCI, no firmware tables to probe,
//! qboot instead of SeaBIOS) where this QEMU has it. Under TCG, `q35`: the
//! kernel calibrates the TSC against the PIT, which fails when the emulating
//! host is busy, and microvm then has no HPET or ACPI PM timer to fall back on
//! (measured on a loaded 2-core host: 6 of 6 microvm boots hung after
//! "tsc: Marking TSC unstable", q35 booted every time in 6-9 s). microvm
//! under TCG does boot when the kernel is told the TSC's frequency
//! (`tsc_early_khz`: TCG's TSC is the host's, measured here), which it gets
//! when [`MACHINE_ENV`] asks for microvm: how tests cover microvm's device
//! path on hosts without a usable KVM. microvm has
//! no i8042 either, so there `reboot=k` would end the VM only after the
//! kernel's fallbacks (about 1.5 s): it gets `reboot=t` (triple fault), which
//! `-no-reboot` turns into QEMU's exit just the same.
//!
//! Disks and the network card are the same as under twinbox's VMM: raw files
//! as virtio-blk (in guest order, /dev/vda first), and a tap the caller
//! opened in the VM's network namespace, handed to QEMU as an open file
//! (`-netdev tap,fd=N`), so QEMU needs no privileges and no namespace of its
//! own. On `-M microvm` they are virtio-mmio devices (which QEMU describes in
//! its ACPI tables, as twinbox does), on q35 virtio PCI devices. QEMU dies
//! with the thread that started it (PR_SET_PDEATHSIG), so a killed twinbox
//! leaves no QEMU holding the tap.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_init::{ConsoleFilter, ConsoleItem, Marker, INIT_PATH};

use crate::host::{self, GuestKernel};
use crate::vmm::memory::{self, VmmMemory};
use crate::vmm::DiskConfig;

pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// Overrides the machine type (`microvm` or `q35`), to test and measure the
/// other machine's device path on a host where it is not the choice.
pub const MACHINE_ENV: &str = "TWINBOX_QEMU_MACHINE";

/// How long QEMU may take to exit after the workload's exit was reported.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// Console lines quoted in errors.
const TAIL_LINES: usize = 12;
/// After a stop request: how long QEMU gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often the console loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error(
        "{QEMU_BINARY} not found on PATH: install qemu-system-x86 (scripts/install-deps.sh does)"
    )]
    NotFound,
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the guest did not finish within {secs} s ({stage}): QEMU was stopped; last console lines:\n{tail}")]
    Timeout {
        secs: u64,
        stage: &'static str,
        tail: String,
    },
    #[error("the guest did not reach its workload within {secs} s: QEMU was stopped ({stage}); last console lines:\n{tail}")]
    BootTimeout {
        secs: u64,
        stage: &'static str,
        tail: String,
    },
    #[error("QEMU was stopped before the guest reported an exit code ({stage})")]
    Stopped { stage: &'static str },
    #[error("QEMU ended ({status}) before the guest reported an exit code ({stage}){stderr}; last console lines:\n{tail}")]
    NoExitCode {
        status: String,
        stage: &'static str,
        stderr: String,
        tail: String,
    },
    #[error("{MACHINE_ENV}={0}: use microvm or q35")]
    UnknownMachine(String),
    #[error("{MACHINE_ENV}=microvm: this QEMU has no microvm machine: unset it")]
    NoMicrovm,
}

/// CPU emulation or hardware virtualization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// The QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    Microvm,
    Q35,
}

impl Machine {
    fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }

    /// The kernel's way to reset this machine (see the module comment).
    fn reboot_arg(self) -> &'static str {
        match self {
            Machine::Microvm => "reboot=t",
            Machine::Q35 => "reboot=k",
        }
    }

    /// The guest kernel module that finds this machine's virtio devices.
    pub fn virtio_transport(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio_mmio",
            Machine::Q35 => "virtio_pci",
        }
    }

    /// QEMU's device name for a virtio device of `kind` (`blk`, `net`).
    fn virtio_device(self, kind: &str) -> String {
        match self {
            Machine::Microvm => format!("virtio-{kind}-device"),
            Machine::Q35 => format!("virtio-{kind}-pci"),
        }
    }
}

/// A network card on a tap the caller opened (and keeps open while QEMU runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuNet {
    pub tap_fd: RawFd,
    pub mac: [u8; 6],
}

/// Size and limits of one QEMU run.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    pub memory_mib: u32,
    pub cpus: u32,
    /// From starting QEMU to its exit; QEMU is killed after that.
    pub timeout: Duration,
    /// Added to the kernel command line.
    pub extra_cmdline: Vec<String>,
    /// How long the guest may take to start its workload; `None`: up to `timeout`.
    pub boot_timeout: Option<Duration>,
    /// virtio-blk disks in guest order (/dev/vda, /dev/vdb, ...).
    pub disks: Vec<DiskConfig>,
    /// A virtio-net card on an open tap.
    pub net: Option<QemuNet>,
    /// Setting it stops QEMU (SIGTERM, then SIGKILL).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions {
            memory_mib: 256,
            cpus: 1,
            timeout: Duration::from_secs(120),
            extra_cmdline: Vec::new(),
            boot_timeout: None,
            disks: Vec::new(),
            net: None,
            stop: None,
        }
    }
}

/// How a run with the raw console went ([`QemuRunner::run_console`]).
#[derive(Debug, Clone)]
pub struct QemuRun {
    /// When the QEMU process was started.
    pub qemu_started: Instant,
    pub workload_started: Option<Instant>,
    pub workload_exited: Option<Instant>,
    pub exit_code: Option<u8>,
    pub ended: Instant,
    pub end: QemuEnd,
    /// QEMU's memory by the memory lesson's method, last sampled before it ended.
    pub memory: Option<VmmMemory>,
}

/// Why QEMU ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QemuEnd {
    /// It exited by itself (the guest reset or powered off, or QEMU failed:
    /// then there is no exit code, and `stderr` says why).
    Exited {
        status: std::process::ExitStatus,
        stderr: String,
    },
    /// The stop flag or the overall timeout stopped it.
    Stopped,
    /// The guest did not start its workload within the boot timeout.
    BootTimeout,
}

/// Host-side times of one run, all measured from starting the QEMU process.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QemuTimings {
    /// Until the init reported the workload start (QEMU start-up, firmware,
    /// kernel boot, init).
    pub to_workload_start: Option<Duration>,
    /// From the workload start to its reported exit.
    pub workload: Option<Duration>,
    /// Until QEMU exited.
    pub total: Duration,
    /// The guest's own clock at the workload start (time since its kernel
    /// started, in the guest's view).
    pub guest_monotonic_at_start: Option<Duration>,
}

/// What a QEMU run produced.
#[derive(Debug, Clone, Serialize)]
pub struct QemuOutcome {
    /// The workload's exit code (128 + signal; 125 when the guest init failed).
    pub exit_code: u8,
    /// What the workload wrote to its stdout and stderr (the console).
    pub output: Vec<u8>,
    /// Console output before the workload started (kernel and init messages).
    pub boot_log: Vec<u8>,
    pub timings: QemuTimings,
    /// True under TCG: timings are of an emulated CPU.
    pub emulated: bool,
    pub accel: Accel,
    pub machine: Machine,
    /// QEMU's memory by the memory lesson's method, last sampled before it ended.
    pub memory: Option<VmmMemory>,
}

/// A QEMU binary and the way to run it on this host.
#[derive(Debug, Clone)]
pub struct QemuRunner {
    pub binary: PathBuf,
    pub accel: Accel,
    pub machine: Machine,
}

impl QemuRunner {
    /// Finds QEMU on PATH, picks KVM when it can boot a stock kernel here and
    /// TCG otherwise, and the machine type that boots reliably with that
    /// (see the module comment).
    pub fn find() -> Result<QemuRunner, QemuError> {
        let binary =
            twinbox_engine::util::path::find_in_path(QEMU_BINARY).ok_or(QemuError::NotFound)?;
        let accel = match host::can_boot_stock_kernel(&host::kvm_kind()) {
            Ok(()) => Accel::Kvm,
            Err(why) => {
                tracing::debug!("qemu: software emulation: {why}");
                Accel::Tcg
            }
        };
        let machine = match std::env::var(MACHINE_ENV).ok().as_deref() {
            None => {
                if accel == Accel::Kvm && has_machine(&binary, "microvm") {
                    Machine::Microvm
                } else {
                    Machine::Q35
                }
            }
            Some("microvm") if has_machine(&binary, "microvm") => Machine::Microvm,
            Some("microvm") => return Err(QemuError::NoMicrovm),
            Some("q35") => Machine::Q35,
            Some(other) => return Err(QemuError::UnknownMachine(other.to_string())),
        };
        Ok(QemuRunner {
            binary,
            accel,
            machine,
        })
    }

    /// The kernel command line for a twinbox guest on this machine.
    pub fn kernel_cmdline(&self, opts: &QemuOptions) -> String {
        let mut args = vec![
            "console=ttyS0".to_string(),
            self.machine.reboot_arg().to_string(),
            "panic=-1".to_string(),
            format!("rdinit={INIT_PATH}"),
            "quiet".to_string(),
        ];
        if self.accel == Accel::Tcg {
            // An emulated guest on a busy host can miss the IO-APIC timer check
            // in early boot and panic ("8254 timer not connected"); the check
            // proves nothing about an emulated board, so skip it.
            args.push("no_timer_check".to_string());
        }
        if (self.machine, self.accel) == (Machine::Microvm, Accel::Tcg) {
            // No timer to calibrate the TSC against (see the module comment).
            if let Some(khz) = host_tsc_khz() {
                args.push(format!("tsc_early_khz={khz}"));
            }
        }
        args.extend(opts.extra_cmdline.iter().cloned());
        args.join(" ")
    }

    /// The full QEMU command line (printed by lessons so students can type it).
    pub fn args(&self, kernel: &Path, initrd: &Path, opts: &QemuOptions) -> Vec<String> {
        let mut args: Vec<String> = vec!["-M".into(), self.machine.name().into()];
        match self.accel {
            Accel::Kvm => args.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
            Accel::Tcg => args.extend(["-accel", "tcg"].map(String::from)),
        }
        let memory = opts.memory_mib.to_string();
        let cpus = opts.cpus.to_string();
        let (kernel, initrd) = (kernel.display().to_string(), initrd.display().to_string());
        let cmdline = self.kernel_cmdline(opts);
        #[rustfmt::skip]
        let rest = [
            "-m", &memory, "-smp", &cpus,
            // Only the devices asked for; no configuration files.
            "-nodefaults", "-no-user-config", "-display", "none",
            // The guest's reset ends QEMU.
            "-no-reboot",
            "-serial", "stdio",
            "-kernel", &kernel, "-initrd", &initrd, "-append", &cmdline,
        ];
        args.extend(rest.map(String::from));
        args.extend(self.device_args(opts));
        args
    }

    /// `-drive`/`-device` per disk and `-netdev`/`-device` for the card.
    fn device_args(&self, opts: &QemuOptions) -> Vec<String> {
        let mut args = Vec::new();
        for (index, disk) in opts.disks.iter().enumerate() {
            // A comma in an option value is written twice.
            let file = disk.path.display().to_string().replace(',', ",,");
            // Writable disks pass the guest's discards on (holes in the file).
            let readonly = if disk.read_only {
                ",readonly=on"
            } else {
                ",discard=unmap"
            };
            args.push("-drive".into());
            args.push(format!(
                "file={file},format=raw,if=none,id=vd{index}{readonly}"
            ));
            args.push("-device".into());
            args.push(format!(
                "{},drive=vd{index},serial={}",
                self.machine.virtio_device("blk"),
                disk.id.replace(',', ",,")
            ));
        }
        if let Some(net) = opts.net {
            args.push("-netdev".into());
            args.push(format!("tap,id=net0,fd={}", net.tap_fd));
            args.push("-device".into());
            args.push(format!(
                "{},netdev=net0,mac={}",
                self.machine.virtio_device("net"),
                crate::hostnet::format_mac(net.mac)
            ));
        }
        args
    }

    /// Boots `kernel` with `initrd` (a twinbox initramfs with console markers
    /// on) and waits for the workload's exit code. The workload's output goes
    /// to `live` as it arrives, when given.
    pub fn run(
        &self,
        kernel: &GuestKernel,
        initrd: &[u8],
        opts: &QemuOptions,
        live: Option<&mut dyn Write>,
    ) -> Result<QemuOutcome, QemuError> {
        let mut watch = ConsoleWatch::new(live);
        let (started, ended, stderr_text, memory) =
            self.follow(kernel, initrd, opts, &mut watch)?;
        let total = started.elapsed();
        let status = match ended {
            Ok(status) => status,
            Err(FollowEnd::TimedOut) => {
                return Err(QemuError::Timeout {
                    secs: opts.timeout.as_secs(),
                    stage: watch.stage(),
                    tail: watch.tail(),
                })
            }
            Err(FollowEnd::BootTimedOut(limit)) => {
                return Err(QemuError::BootTimeout {
                    secs: limit.as_secs(),
                    stage: watch.stage(),
                    tail: watch.tail(),
                })
            }
            Err(FollowEnd::Stopped) => {
                return Err(QemuError::Stopped {
                    stage: watch.stage(),
                })
            }
            Err(FollowEnd::Wait(source)) => {
                return Err(QemuError::Io {
                    path: self.binary.clone(),
                    source,
                })
            }
        };
        let Some(exit_code) = watch.exit_code else {
            let stderr = String::from_utf8_lossy(&stderr_text).trim().to_string();
            return Err(QemuError::NoExitCode {
                status: status.to_string(),
                stage: watch.stage(),
                stderr: if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                },
                tail: watch.tail(),
            });
        };
        let timings = QemuTimings {
            to_workload_start: watch.started_at.map(|t| t - started),
            workload: watch
                .started_at
                .zip(watch.exited_at)
                .map(|(s, e)| e.saturating_duration_since(s)),
            total,
            guest_monotonic_at_start: watch.guest_ns.map(Duration::from_nanos),
        };
        Ok(QemuOutcome {
            exit_code,
            output: watch.output,
            boot_log: watch.boot_log,
            timings,
            emulated: self.accel == Accel::Tcg,
            accel: self.accel,
            machine: self.machine,
            memory,
        })
    }

    /// Boots like [`QemuRunner::run`], but every console byte goes to
    /// `console` (which keeps the log and picks out the workload's output),
    /// and any end of the guest is an outcome, not an error: the VM path of
    /// `vm run --backend qemu`.
    pub fn run_console(
        &self,
        kernel: &GuestKernel,
        initrd: &[u8],
        opts: &QemuOptions,
        console: &mut dyn Write,
    ) -> Result<QemuRun, QemuError> {
        let mut watch = ConsoleWatch::new(None);
        watch.raw = Some(console);
        let (started, ended, stderr_text, memory) =
            self.follow(kernel, initrd, opts, &mut watch)?;
        let end = match ended {
            Ok(status) => QemuEnd::Exited {
                status,
                stderr: String::from_utf8_lossy(&stderr_text).trim().to_string(),
            },
            Err(FollowEnd::TimedOut | FollowEnd::Stopped) => QemuEnd::Stopped,
            Err(FollowEnd::BootTimedOut(_)) => QemuEnd::BootTimeout,
            Err(FollowEnd::Wait(source)) => {
                return Err(QemuError::Io {
                    path: self.binary.clone(),
                    source,
                })
            }
        };
        Ok(QemuRun {
            qemu_started: started,
            workload_started: watch.started_at,
            workload_exited: watch.exited_at,
            exit_code: watch.exit_code,
            ended: Instant::now(),
            end,
            memory,
        })
    }

    /// Starts QEMU and follows its console with `watch` until it ends.
    /// Returns when QEMU started, how following ended, and its stderr.
    fn follow(
        &self,
        kernel: &GuestKernel,
        initrd: &[u8],
        opts: &QemuOptions,
        watch: &mut ConsoleWatch,
    ) -> Result<FollowResult, QemuError> {
        let initrd_file = InitrdFile::write(initrd)?;
        let args = self.args(&kernel.path, &initrd_file.path(), opts);
        tracing::debug!("running {} {}", self.binary.display(), args.join(" "));
        let mut cmd = Command::new(&self.binary);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let tap_fd = opts.net.map(|n| n.tap_fd);
        let initrd_fd = initrd_file.raw_fd();
        // SAFETY: only async-signal-safe calls (prctl, fcntl) on the child's
        // own state between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // QEMU goes when the thread that started (and waits for) it
                // does; in a process group of its own, a terminal's Ctrl-C
                // reaches twinbox only, which stops QEMU itself.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                    || libc::setpgid(0, 0) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The tap is inherited (`-netdev tap,fd=N`), and so is the
                // initrd (`-initrd /proc/self/fd/N`).
                for fd in tap_fd.into_iter().chain([initrd_fd]) {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| QemuError::Spawn {
            path: self.binary.clone(),
            source,
        })?;
        let console = spawn_reader(child.stdout.take().expect("piped"));
        let stderr = spawn_reader(child.stderr.take().expect("piped"));
        let sampler = MemorySampler::start(child.id() as i32, u64::from(opts.memory_mib) << 20);
        let limits = Limits {
            deadline: far_deadline(started, opts.timeout),
            boot: opts.boot_timeout.map(|b| (far_deadline(started, b), b)),
            stop: opts.stop.clone(),
        };
        let ended = watch.follow(&console, &mut child, &limits);
        let memory = sampler.finish();
        // The readers end once QEMU is gone and its pipes close.
        let stderr_text: Vec<u8> = stderr.iter().flat_map(|(_, chunk)| chunk).collect();
        Ok((started, ended, stderr_text, memory))
    }
}

type FollowResult = (
    Instant,
    Result<std::process::ExitStatus, FollowEnd>,
    Vec<u8>,
    Option<VmmMemory>,
);

/// How often QEMU's memory is sampled while it runs.
const MEMORY_SAMPLE: Duration = Duration::from_millis(50);

/// Samples the QEMU process's memory ([`memory::measure_process`]) while it
/// runs. QEMU is another process, so it cannot measure itself at the guest's
/// end as twinbox's VMM does: the last whole sample before it exits stands in.
struct MemorySampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<VmmMemory>>>,
}

impl MemorySampler {
    fn start(pid: i32, guest_bytes: u64) -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("qemu-memory".into())
            .spawn(move || {
                let mut last = None;
                while !flag.load(Ordering::Acquire) {
                    // A look at a process tearing down has no guest mapping
                    // and does not replace the last whole one.
                    if let Some(m) = memory::measure_process(pid, guest_bytes) {
                        last = Some(m);
                    }
                    std::thread::sleep(MEMORY_SAMPLE);
                }
                last
            })
            .map_err(|e| tracing::warn!("cannot sample QEMU's memory: {e}"))
            .ok();
        MemorySampler { stop, thread }
    }

    fn finish(self) -> Option<VmmMemory> {
        self.stop.store(true, Ordering::Release);
        self.thread.and_then(|t| t.join().ok()).flatten()
    }
}

/// `start + limit`, where a limit too large for the clock means "never".
fn far_deadline(start: Instant, limit: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start
        .checked_add(limit.min(CENTURY))
        .unwrap_or(start + CENTURY)
}

/// When following a run ends early.
struct Limits {
    deadline: Instant,
    /// The boot deadline and the limit it came from.
    boot: Option<(Instant, Duration)>,
    stop: Option<Arc<AtomicBool>>,
}

enum FollowEnd {
    TimedOut,
    BootTimedOut(Duration),
    Stopped,
    Wait(io::Error),
}

/// The console as the run goes: markers, output, when things happened.
struct ConsoleWatch<'w> {
    filter: ConsoleFilter,
    live: Option<&'w mut dyn Write>,
    /// Every console byte, markers included.
    raw: Option<&'w mut dyn Write>,
    any_output: bool,
    started_at: Option<Instant>,
    exited_at: Option<Instant>,
    guest_ns: Option<u64>,
    exit_code: Option<u8>,
    output: Vec<u8>,
    boot_log: Vec<u8>,
}

impl<'w> ConsoleWatch<'w> {
    fn new(live: Option<&'w mut dyn Write>) -> Self {
        ConsoleWatch {
            filter: ConsoleFilter::new(),
            live,
            raw: None,
            any_output: false,
            started_at: None,
            exited_at: None,
            guest_ns: None,
            exit_code: None,
            output: Vec::new(),
            boot_log: Vec::new(),
        }
    }

    /// Reads console chunks until QEMU exits, the deadline or the boot
    /// deadline passes, or the stop flag is set (then QEMU is stopped). A QEMU
    /// that lingers after the exit marker is stopped after [`EXIT_GRACE`].
    fn follow(
        &mut self,
        console: &mpsc::Receiver<(Instant, Vec<u8>)>,
        child: &mut Child,
        limits: &Limits,
    ) -> Result<std::process::ExitStatus, FollowEnd> {
        let deadline = limits.deadline;
        loop {
            let limit = match self.exited_at {
                Some(t) => deadline.min(t + EXIT_GRACE),
                None => deadline,
            };
            let now = Instant::now();
            if now >= limit {
                let _ = child.kill();
                let status = child.wait().map_err(FollowEnd::Wait)?;
                return if self.exit_code.is_some() {
                    Ok(status)
                } else {
                    Err(FollowEnd::TimedOut)
                };
            }
            if let Some((boot_deadline, boot_limit)) = limits.boot {
                if self.started_at.is_none() && now >= boot_deadline {
                    let _ = child.kill();
                    child.wait().map_err(FollowEnd::Wait)?;
                    return Err(FollowEnd::BootTimedOut(boot_limit));
                }
            }
            if limits
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Acquire))
            {
                let status = stop_child(child).map_err(FollowEnd::Wait)?;
                self.drain(console);
                return if self.exit_code.is_some() {
                    Ok(status)
                } else {
                    Err(FollowEnd::Stopped)
                };
            }
            let wait = (limit - now).min(if limits.stop.is_some() || limits.boot.is_some() {
                STOP_POLL
            } else {
                limit - now
            });
            match console.recv_timeout(wait) {
                Ok((at, chunk)) => self.take(at, &chunk),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let mut items = Vec::new();
                    self.filter.finish(&mut items);
                    self.handle(Instant::now(), items);
                    return self.wait_until(child, deadline);
                }
            }
        }
    }

    /// Takes what QEMU wrote before it ended.
    fn drain(&mut self, console: &mpsc::Receiver<(Instant, Vec<u8>)>) {
        while let Ok((at, chunk)) = console.recv_timeout(Duration::from_millis(200)) {
            self.take(at, &chunk);
        }
    }

    /// QEMU closed its output: it is exiting. Waits for that, but never past
    /// the deadline.
    fn wait_until(
        &self,
        child: &mut Child,
        deadline: Instant,
    ) -> Result<std::process::ExitStatus, FollowEnd> {
        loop {
            if let Some(status) = child.try_wait().map_err(FollowEnd::Wait)? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                child.wait().map_err(FollowEnd::Wait)?;
                return Err(FollowEnd::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn take(&mut self, at: Instant, chunk: &[u8]) {
        self.any_output = true;
        if let Some(raw) = self.raw.as_mut() {
            // A failing log must not stop the run.
            let _ = raw.write_all(chunk);
        }
        let mut items = Vec::new();
        self.filter.push(chunk, &mut items);
        self.handle(at, items);
    }

    fn handle(&mut self, at: Instant, items: Vec<ConsoleItem>) {
        for item in items {
            match item {
                ConsoleItem::Marker(Marker::Started { monotonic_ns }) => {
                    self.started_at = Some(at);
                    self.guest_ns = Some(monotonic_ns);
                }
                ConsoleItem::Marker(Marker::Exit { code }) => {
                    self.exited_at = Some(at);
                    self.exit_code = Some(code);
                }
                // After the exit: the kernel's "reboot: Restarting system".
                ConsoleItem::Output(_) if self.exit_code.is_some() => {}
                ConsoleItem::Output(bytes) if self.started_at.is_some() => {
                    if let Some(live) = self.live.as_mut() {
                        // A closed live writer must not stop the run.
                        let _ = live.write_all(&bytes).and_then(|()| live.flush());
                    }
                    self.output.extend_from_slice(&bytes);
                }
                ConsoleItem::Output(bytes) => self.boot_log.extend_from_slice(&bytes),
            }
        }
    }

    fn stage(&self) -> &'static str {
        match (self.any_output, self.started_at, self.exit_code) {
            (_, _, Some(_)) => "the workload exited",
            (_, Some(_), None) => "the workload was still running",
            (true, None, None) => "the kernel started but the init never started the workload",
            (false, None, None) => "no console output at all: the kernel did not start",
        }
    }

    /// The last console lines, boot log and output together.
    fn tail(&self) -> String {
        let text = if self.started_at.is_some() {
            [&self.boot_log[..], &self.output[..]].concat()
        } else {
            self.boot_log.clone()
        };
        last_lines(&String::from_utf8_lossy(&text), TAIL_LINES)
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let tail = twinbox_engine::util::text::last_lines(text, n);
    if tail.trim().is_empty() {
        "(none)".to_string()
    } else {
        tail
    }
}

/// SIGTERM (QEMU exits cleanly on it), SIGKILL after [`STOP_GRACE`].
fn stop_child(child: &mut Child) -> io::Result<std::process::ExitStatus> {
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads a pipe on its own thread, passing timestamped chunks on.
fn spawn_reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<(Instant, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

/// Whether `qemu -machine help` lists `name`.
/// The host's TSC frequency in kHz, measured once against CLOCK_MONOTONIC
/// over 50 ms (TCG's guest TSC is the host's).
fn host_tsc_khz() -> Option<u64> {
    static KHZ: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *KHZ.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: rdtsc reads the time-stamp counter; no memory is touched.
            let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
            let (t0, c0) = (Instant::now(), tsc());
            std::thread::sleep(Duration::from_millis(50));
            let (c1, t1) = (tsc(), Instant::now());
            let micros = t1.duration_since(t0).as_micros() as u64;
            (micros > 0 && c1 > c0).then(|| (c1 - c0) * 1000 / micros)
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    })
}

fn has_machine(binary: &Path, name: &str) -> bool {
    Command::new(binary)
        .args(["-machine", "help"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name))
        })
        .unwrap_or(false)
}

/// The initrd for `-initrd`, in a memfd QEMU inherits and opens by its
/// own `/proc/self/fd/N`. Nothing is on disk, so a killed VM process leaves
/// nothing behind (a temp file outlived `vm stop` and kill -9).
struct InitrdFile {
    file: fs::File,
}

impl InitrdFile {
    fn write(bytes: &[u8]) -> Result<InitrdFile, QemuError> {
        let io = |source| QemuError::Io {
            path: PathBuf::from("memfd:twinbox-initrd"),
            source,
        };
        // SAFETY: memfd_create takes a NUL-terminated name and returns a new
        // descriptor or -1; nothing else is touched.
        let fd = unsafe { libc::memfd_create(c"twinbox-initrd".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io(io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by no
        // one else; the File closes it.
        let mut file = unsafe { fs::File::from_raw_fd(fd) };
        file.write_all(bytes).map_err(io)?;
        Ok(InitrdFile { file })
    }

    fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The path QEMU opens: the same descriptor number in its own process.
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(machine: Machine, accel: Accel) -> QemuRunner {
        QemuRunner {
            binary: PathBuf::from("/usr/bin/qemu-system-x86_64"),
            accel,
            machine,
        }
    }

    #[test]
    fn command_line_for_tcg_microvm() {
        let r = runner(Machine::Microvm, Accel::Tcg);
        let opts = QemuOptions {
            cpus: 2,
            ..Default::default()
        };
        let args = r.args(Path::new("/boot/vmlinuz"), Path::new("/tmp/i"), &opts);
        let joined = args.join(" ");
        assert!(
            joined.starts_with("-M microvm -accel tcg -m 256 -smp 2 "),
            "{joined}"
        );
        assert!(joined.contains("-no-reboot"), "{joined}");
        assert!(
            joined.contains("-kernel /boot/vmlinuz -initrd /tmp/i"),
            "{joined}"
        );
        let cmdline = args.last().unwrap();
        // microvm under TCG is told the TSC's frequency (nothing to calibrate it with)
        let khz = host_tsc_khz().expect("the TSC's frequency");
        assert!(khz > 100_000, "{khz} kHz");
        assert_eq!(
            *cmdline,
            format!(
                "console=ttyS0 reboot=t panic=-1 rdinit=/twinbox/init quiet no_timer_check tsc_early_khz={khz}"
            )
        );
        let kvm = runner(Machine::Microvm, Accel::Kvm);
        let kvm_cmdline = kvm.kernel_cmdline(&QemuOptions::default());
        assert!(!kvm_cmdline.contains("tsc_early_khz"), "{kvm_cmdline}");
        let q35 = runner(Machine::Q35, Accel::Kvm);
        let joined = q35
            .args(Path::new("k"), Path::new("i"), &QemuOptions::default())
            .join(" ");
        assert!(
            joined.starts_with("-M q35 -accel kvm -cpu host "),
            "{joined}"
        );
        assert!(joined.contains("reboot=k"), "{joined}");
    }

    #[test]
    fn disks_and_the_card_are_virtio_devices_of_the_machine() {
        let opts = QemuOptions {
            disks: vec![
                DiskConfig {
                    path: PathBuf::from("/store/cache/disk,1.ext4"),
                    read_only: true,
                    id: "twinbox-vda".into(),
                },
                DiskConfig {
                    path: PathBuf::from("/vms/x/rw.ext4"),
                    read_only: false,
                    id: "twinbox-vdb".into(),
                },
            ],
            net: Some(QemuNet {
                tap_fd: 7,
                mac: [2, 0, 0, 0xaa, 0xbb, 0x0c],
            }),
            ..Default::default()
        };
        let micro = runner(Machine::Microvm, Accel::Kvm)
            .args(Path::new("k"), Path::new("i"), &opts)
            .join(" ");
        assert!(
            micro.ends_with(concat!(
                "-drive file=/store/cache/disk,,1.ext4,format=raw,if=none,id=vd0,readonly=on ",
                "-device virtio-blk-device,drive=vd0,serial=twinbox-vda ",
                "-drive file=/vms/x/rw.ext4,format=raw,if=none,id=vd1,discard=unmap ",
                "-device virtio-blk-device,drive=vd1,serial=twinbox-vdb ",
                "-netdev tap,id=net0,fd=7 ",
                "-device virtio-net-device,netdev=net0,mac=02:00:00:aa:bb:0c"
            )),
            "{micro}"
        );
        let q35 = runner(Machine::Q35, Accel::Tcg)
            .args(Path::new("k"), Path::new("i"), &opts)
            .join(" ");
        assert!(q35.contains("-device virtio-blk-pci,drive=vd1,"), "{q35}");
        assert!(q35.contains("-device virtio-net-pci,netdev=net0,"), "{q35}");
        assert_eq!(Machine::Q35.virtio_transport(), "virtio_pci");
        assert_eq!(Machine::Microvm.virtio_transport(), "virtio_mmio");
    }

    #[test]
    fn far_limits_do_not_overflow_the_clock() {
        let now = Instant::now();
        assert!(far_deadline(now, Duration::MAX) > now + Duration::from_secs(3600 * 24 * 365));
        assert_eq!(
            far_deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    #[test]
    fn watch_splits_boot_log_output_and_exit() {
        let t0 = Instant::now();
        let mut live = Vec::new();
        let mut w = ConsoleWatch::new(Some(&mut live));
        w.take(t0, b"[ 0.1] booting\r\n@@twinbox@@ star");
        assert_eq!(
            w.stage(),
            "the kernel started but the init never started the workload"
        );
        w.take(t0 + Duration::from_millis(5), b"ted 123\nhello\n");
        assert_eq!(w.stage(), "the workload was still running");
        w.take(
            t0 + Duration::from_millis(9),
            b"@@twinbox@@ exit 4\nreboot: Restarting\r\n",
        );
        assert_eq!(w.exit_code, Some(4));
        assert_eq!(w.guest_ns, Some(123));
        assert_eq!(w.boot_log, b"[ 0.1] booting\r\n");
        assert_eq!(w.output, b"hello\n");
        assert_eq!(
            w.exited_at.unwrap() - w.started_at.unwrap(),
            Duration::from_millis(4)
        );
        drop(w);
        assert_eq!(live, b"hello\n");
    }

    #[test]
    fn tails_are_short() {
        let text: String = (0..30).map(|i| format!("line {i}\r\n")).collect();
        let tail = last_lines(&text, 3);
        assert_eq!(tail, "line 27\nline 28\nline 29");
        assert_eq!(last_lines("", 3), "(none)");
    }

    #[test]
    fn the_initrd_reads_back_through_its_fd_path_and_is_not_on_disk() {
        let f = InitrdFile::write(b"abc").unwrap();
        let path = f.path();
        assert!(path.starts_with("/proc/self/fd"), "{}", path.display());
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        let target = fs::read_link(&path).unwrap();
        assert!(
            target
                .to_string_lossy()
                .starts_with("/memfd:twinbox-initrd"),
            "{}",
            target.display()
        );
    }
}
