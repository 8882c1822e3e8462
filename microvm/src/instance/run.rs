//! A VM's whole life, from a request to its end: check the host, choose the
//! kernel, write the record, build the initramfs (undoing the record when that
//! fails), then either boot here and wait (with an optional run timeout), or
//! hand the VM to a detached VMM process and return once it runs. Both
//! backends go this one way: twinbox's VMM boots in the process that waits,
//! QEMU runs as its child (with the same disks, tap, record and console log).

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use twinbox_engine::container::RunOptions;
use twinbox_engine::image::Image;
use twinbox_engine::network::NetworkMode;
use twinbox_engine::store::Store;
use twinbox_engine::util::procfs;
use twinbox_engine::util::time::now_rfc3339;

use super::network;
use super::{check_host, choose_kernel, create, finish, remove, remove_dir, vms_dir};
use super::{Backend, InstanceError, NewVm, Result, VmRecord, VmState};
use crate::console::WorkloadConsole;
use crate::devices::boot_timer::BootEvents;
use crate::guest::disk::{self, ImageDisk};
use crate::guest::{build_initrd, GuestSpec};
use crate::host::GuestKernel;
use crate::qemu::{QemuEnd, QemuNet, QemuOptions, QemuRunner};
use crate::vmm::{self, DiskConfig, Outcome, Payload, Timeline, VmConfig, VmEnd};

/// One VM to run: the image config and the options a container would get,
/// plus the VM's own hardware and limits.
pub struct RunRequest<'a> {
    pub store: &'a Store,
    pub name: Option<String>,
    /// The image as the user named it, and the image itself.
    pub image_ref: String,
    pub image: &'a Image,
    /// Workload options as `twinbox run` takes them (argv, env, workdir, user,
    /// hostname); the host name defaults to the VM's name.
    pub options: RunOptions,
    /// The guest kernel; `None` takes the newest in /boot.
    pub kernel: Option<PathBuf>,
    /// Words added to the guest kernel's command line.
    pub kernel_args: String,
    pub memory_mib: u64,
    pub vcpus: u8,
    /// How long the guest may take to reach its init.
    pub boot_timeout: Duration,
    /// How long the workload may run once the guest is up; `None` waits for it.
    pub run_timeout: Option<Duration>,
    /// Remove the VM's record when it ends.
    pub auto_remove: bool,
    /// Where the guest's root file system comes from.
    pub rootfs: Rootfs,
    /// Files attached as virtio-blk disks after the root's: (path, read-only).
    pub disks: Vec<(PathBuf, bool)>,
    /// Which VMM boots it.
    pub backend: Backend,
}

/// The guest's root file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rootfs {
    /// The image's layers inside the initramfs (in guest RAM).
    #[default]
    Initramfs,
    /// The image's disk (built once per image, shared read-only by every VM
    /// of it) under an overlay whose writable layer is a tmpfs, or the VM's
    /// own sparse disk of `writable_bytes`.
    Disk { writable_bytes: Option<u64> },
}

/// Where the VM runs.
pub enum Mode {
    /// In this process; the workload's output goes to `live`, and setting
    /// `stop` ends the VM early.
    Foreground {
        live: Box<dyn Write + Send>,
        stop: Arc<AtomicBool>,
    },
    /// In a detached VMM process, `vmm_exe --root ROOT __vmm ID MEM VCPUS
    /// BOOT_TIMEOUT` (which calls [`vmm_main`]).
    Detached { vmm_exe: PathBuf },
}

/// What became of a request.
pub enum Started {
    /// The VM ran here and ended.
    Finished(Box<Finished>),
    /// The VM runs in its own VMM process.
    Detached(Box<VmRecord>),
}

/// A VM that ran in this process, and how it ended.
pub struct Finished {
    pub record: VmRecord,
    pub kernel: GuestKernel,
    pub outcome: Outcome,
    /// The workload's exit code, from the boot-timer port or the console marker.
    pub exit_code: Option<u8>,
    /// The console's last lines before the workload started (for failed boots).
    pub boot_tail: String,
    /// When the request came in; the timeline's zero.
    pub started: Instant,
    /// How long building the initramfs took.
    pub initrd_ms: f64,
    pub boot_timeout: Duration,
    /// The limit the watchdog stopped the VM at, if it did.
    pub timed_out_after: Option<Duration>,
    /// The image's disk, with `Rootfs::Disk`.
    pub image_disk: Option<ImageDisk>,
}

/// Runs `req` to its end (foreground) or until its VMM process runs
/// (detached). Nothing is left behind when it fails before the VM starts.
pub fn run(req: RunRequest, mode: Mode) -> Result<Started> {
    let started = Instant::now();
    let qemu = match req.backend {
        Backend::Twinbox => {
            check_host(req.kernel.is_some())?;
            None
        }
        Backend::Qemu => Some(QemuRunner::find()?),
    };
    // The guest module that finds the virtio devices of this machine.
    let transport = qemu
        .as_ref()
        .map_or("virtio_mmio", |q| q.machine.virtio_transport());
    let kernel = choose_kernel(req.kernel.as_deref())?;
    let block_io = vmm::BlockIo::from_env()?;
    let mut record = create(
        req.store,
        NewVm {
            name: req.name.as_deref(),
            image: &req.image_ref,
            image_id: req.image.manifest_digest.to_string(),
            kernel: &kernel,
            kernel_args: req.kernel_args.clone(),
            memory_mib: req.memory_mib,
            vcpus: req.vcpus,
            command: req.options.cmd.clone(),
            auto_remove: req.auto_remove,
            backend: req.backend,
        },
    )?;
    let mut options = req.options.clone();
    options
        .hostname
        .get_or_insert_with(|| record.name.to_string());
    let mut spec = GuestSpec::from_image(req.image, &options);
    let (image_disk, disks) = match vm_disks(&req, &record, &mut spec, &kernel, transport) {
        Ok(disks) => disks,
        Err(e) => {
            remove(req.store, &record, true)?;
            return Err(e);
        }
    };
    if let Err(e) = join_network(&req, &mut record, &mut spec, transport) {
        remove(req.store, &record, true)?;
        return Err(e);
    }
    let initrd = match build_initrd(req.store, req.image, &spec, &kernel) {
        Ok(initrd) => initrd,
        Err(e) => {
            remove(req.store, &record, true)?;
            return Err(InstanceError::Guest(e));
        }
    };
    let initrd_ms = started.elapsed().as_secs_f64() * 1e3;
    let config = VmConfig {
        memory_mib: req.memory_mib,
        vcpus: req.vcpus,
        boot_timeout: Some(req.boot_timeout),
        disks,
        net: network_card(req.store, &record),
        block_io,
        ..VmConfig::default()
    };
    match mode {
        Mode::Detached { vmm_exe } => {
            let path = VmRecord::dir(&vms_dir(req.store), &record.id).join(INITRD_FILE);
            let saved = fs::write(&path, &initrd.bytes)
                .map_err(|source| InstanceError::Io {
                    what: "writing",
                    path,
                    source,
                })
                .and_then(|()| save_disks(req.store, &record, &config.disks))
                .and_then(|()| start_detached(req.store, &record, &config, &vmm_exe));
            if let Err(e) = saved {
                remove(req.store, &record, true)?;
                return Err(e);
            }
            Ok(Started::Detached(Box::new(record)))
        }
        Mode::Foreground { live, stop } => {
            let limit = req.run_timeout.map(|run| req.boot_timeout + run);
            let watchdog = limit
                .map(|limit| Watchdog::start(limit, stop.clone()))
                .transpose()
                .map_err(vmm::VmmError::Thread)?;
            let result = boot(
                req.store,
                &mut record,
                &kernel,
                initrd.bytes,
                &config,
                qemu.as_ref(),
                live,
                stop,
                started,
            );
            let timed_out_after = watchdog.and_then(Watchdog::finish);
            let (outcome, exit_code, boot_tail) = result?;
            Ok(Started::Finished(Box::new(Finished {
                record,
                kernel,
                outcome,
                exit_code,
                boot_tail,
                started,
                initrd_ms,
                boot_timeout: req.boot_timeout,
                timed_out_after,
                image_disk,
            })))
        }
    }
}

/// Joins the VM to the CNI network its options name (none: no card), and
/// tells the guest init its address, route, hosts and resolver.
fn join_network(
    req: &RunRequest,
    record: &mut VmRecord,
    spec: &mut GuestSpec,
    transport: &str,
) -> Result<()> {
    let network = match &req.options.network {
        NetworkMode::None => {
            if !req.options.ports.is_empty() {
                return Err(InstanceError::Unsupported(
                    "-p needs a network: add --network bridge (or a network name)",
                ));
            }
            return Ok(());
        }
        NetworkMode::Cni(name) => name,
        NetworkMode::Host | NetworkMode::Container(_) => {
            return Err(InstanceError::Unsupported(
                "a VM has its own kernel and network stack: use --network bridge, a network name or none",
            ))
        }
    };
    twinbox_engine::network::ports::check_free(&req.options.ports)
        .map_err(network::VmNetworkError::Cni)?;
    let dir = VmRecord::dir(&vms_dir(req.store), &record.id);
    let joined = network::attach(
        req.store.root(),
        &dir,
        &record.id,
        network,
        &req.options.ports,
    )?;
    spec.network = Some(joined.guest(&spec.hostname));
    // No udev in the guest: its init loads the transport and the driver.
    for module in [transport, "virtio_net"] {
        if !spec.modules.iter().any(|m| m == module) {
            spec.modules.push(module.to_string());
        }
    }
    record.network = Some(joined);
    record.save(&vms_dir(req.store))
}

/// The VMM's network card for `record`, if it joined a network.
fn network_card(store: &Store, record: &VmRecord) -> Option<vmm::NetConfig> {
    let dir = VmRecord::dir(&vms_dir(store), &record.id);
    record.network.as_ref().map(|n| n.card(&dir))
}

/// The initramfs a detached VMM boots, saved beside the record.
const INITRD_FILE: &str = "initrd.img";
/// The disks a detached VMM attaches, saved beside the record.
const DISKS_FILE: &str = "disks.json";
/// A VM's own writable disk (`Rootfs::Disk` with a size), removed with it.
const WRITABLE_DISK_FILE: &str = "rw.ext4";

/// The VM's disks in guest order: with `Rootfs::Disk` the image's shared
/// read-only disk (vda) and maybe the VM's writable one (vdb), then the
/// request's files. Tells the guest init (in `spec`) what to load and mount.
fn vm_disks(
    req: &RunRequest,
    record: &VmRecord,
    spec: &mut GuestSpec,
    kernel: &GuestKernel,
    transport: &str,
) -> Result<(Option<ImageDisk>, Vec<DiskConfig>)> {
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    let mut modules: Vec<String> = Vec::new();
    let mut image_disk = None;
    if let Rootfs::Disk { writable_bytes } = req.rootfs {
        let fs =
            disk::DiskFs::choose(kernel.modules_dir.as_deref()).map_err(InstanceError::Disk)?;
        let disk = disk::root_disk(req.store, req.image, fs).map_err(InstanceError::Disk)?;
        files.push((disk.path.clone(), true));
        image_disk = Some(disk);
        let upper_device = match writable_bytes {
            Some(size) => {
                let path = VmRecord::dir(&vms_dir(req.store), &record.id).join(WRITABLE_DISK_FILE);
                disk::scratch_disk(&path, size).map_err(InstanceError::Disk)?;
                files.push((path, false));
                Some("/dev/vdb".to_string())
            }
            None => None,
        };
        spec.root_disk = Some(crate::guest::RootDisk {
            device: "/dev/vda".into(),
            fstype: fs.name().into(),
            upper_device: upper_device.clone(),
        });
        modules.extend(fs.modules().iter().map(|m| m.to_string()));
        // the VM's own writable layer is ext4 whatever the image disk is
        if upper_device.is_some() {
            modules.extend(disk::DiskFs::Ext4.modules().iter().map(|m| m.to_string()));
        }
        modules.push("overlay".into());
    }
    files.extend(req.disks.iter().cloned());
    if !files.is_empty() {
        // No udev in the guest: its init loads the transport and the drivers.
        let mut all: Vec<String> = [transport, "virtio_blk"].map(String::from).to_vec();
        all.extend(modules);
        spec.modules = all;
    }
    let disks = files
        .into_iter()
        .enumerate()
        .map(|(index, (path, read_only))| {
            let letter = (b'a' + (index % 26) as u8) as char;
            DiskConfig {
                path,
                read_only,
                id: format!("twinbox-vd{letter}"),
            }
        })
        .collect();
    Ok((image_disk, disks))
}

fn save_disks(store: &Store, record: &VmRecord, disks: &[DiskConfig]) -> Result<()> {
    let path = VmRecord::dir(&vms_dir(store), &record.id).join(DISKS_FILE);
    let list: Vec<(String, bool, String)> = disks
        .iter()
        .map(|d| (d.path.display().to_string(), d.read_only, d.id.clone()))
        .collect();
    let json = serde_json::to_vec(&list).expect("strings and bools serialize");
    fs::write(&path, json).map_err(|source| InstanceError::Io {
        what: "writing",
        path,
        source,
    })
}

fn load_disks(store: &Store, record: &VmRecord) -> Result<Vec<DiskConfig>> {
    let path = VmRecord::dir(&vms_dir(store), &record.id).join(DISKS_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InstanceError::Io {
                what: "reading",
                path,
                source,
            })
        }
    };
    let list: Vec<(String, bool, String)> =
        serde_json::from_slice(&bytes).map_err(|e| InstanceError::Io {
            what: "parsing",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
    Ok(list
        .into_iter()
        .map(|(path, read_only, id)| DiskConfig {
            path: PathBuf::from(path),
            read_only,
            id,
        })
        .collect())
}

/// Sets `stop` once `limit` has passed, unless finished first.
struct Watchdog {
    done: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    limit: Duration,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(limit: Duration, stop: Arc<AtomicBool>) -> std::io::Result<Watchdog> {
        let done = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = {
            let (done, fired) = (done.clone(), fired.clone());
            crate::threads::spawn("watchdog", move || {
                let deadline = Instant::now() + limit;
                while !done.load(Ordering::Acquire) {
                    if Instant::now() >= deadline {
                        fired.store(true, Ordering::Release);
                        stop.store(true, Ordering::Release);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })?
        };
        Ok(Watchdog {
            done,
            fired,
            limit,
            thread,
        })
    }

    /// Stops the watchdog; the limit when it had fired.
    fn finish(self) -> Option<Duration> {
        self.done.store(true, Ordering::Release);
        let _ = self.thread.join();
        self.fired.load(Ordering::Acquire).then_some(self.limit)
    }
}

/// Boots `record`'s VM in this process and waits for its end. The console log
/// goes to the VM's directory; the workload's output to `live`. Returns the
/// outcome, the workload's exit code and the console's boot tail.
#[allow(clippy::too_many_arguments)]
fn boot(
    store: &Store,
    record: &mut VmRecord,
    kernel: &GuestKernel,
    initrd: Vec<u8>,
    config: &VmConfig,
    qemu: Option<&QemuRunner>,
    live: Box<dyn Write + Send>,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Result<(Outcome, Option<u8>, String)> {
    let dir = vms_dir(store);
    let log_path = record.console_log(&dir);
    let log = File::create(&log_path).map_err(|source| InstanceError::Io {
        what: "creating",
        path: log_path.clone(),
        source,
    })?;
    let (console, console_state) = WorkloadConsole::new(Some(log), live);
    let pid = std::process::id() as i32;
    record.state = VmState::Running {
        pid,
        start_ticks: procfs::start_ticks(pid).unwrap_or(0),
        started: now_rfc3339(),
    };
    record.save(&dir)?;
    let outcome = match qemu {
        None => {
            let payload = Payload::Linux {
                kernel: kernel.path.clone(),
                initrd: Some(initrd),
                cmdline_extra: record.kernel_args.clone(),
                // An ELF vmlinux with the PVH note enters through it (bzImages have none).
                prefer_pvh: true,
            };
            vmm::run(config, payload, Box::new(console), stop, started).map_err(InstanceError::from)
        }
        Some(runner) => boot_qemu(
            runner,
            kernel,
            &initrd,
            &record.kernel_args,
            config,
            console,
            stop,
            started,
        ),
    };
    // The tap went with the VMM's devices; the rest of the network goes now.
    super::release_network(store, record);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            finish(store, record, None, vmm::VmEnd::Failed(e.to_string()), None)?;
            return Err(e);
        }
    };
    let console_state = console_state.lock().unwrap_or_else(|e| e.into_inner());
    let exit_code = outcome.exit_code.or(console_state.exit_code);
    let boot_tail = String::from_utf8_lossy(&console_state.boot_tail).into_owned();
    record.state = VmState::Exited {
        exit_code: exit_code.map(i32::from),
        end: outcome.end.clone(),
        finished: now_rfc3339(),
        timings: outcome.timeline.timings(),
        memory: outcome.memory,
    };
    if record.auto_remove {
        remove_dir(store, &record.id)?;
    } else {
        record.save(&dir)?;
    }
    Ok((outcome, exit_code, boot_tail))
}

/// Boots under QEMU, its console into `console`, with the same disks and a
/// tap made the same way as twinbox's VMM makes it (in the VM's namespace,
/// on the bridge there), and says how it went in the VMM's terms.
#[allow(clippy::too_many_arguments)]
fn boot_qemu(
    runner: &QemuRunner,
    kernel: &GuestKernel,
    initrd: &[u8],
    cmdline_extra: &str,
    config: &VmConfig,
    mut console: WorkloadConsole,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Result<Outcome> {
    let vmm_entered = Instant::now();
    let tap = match &config.net {
        Some(net) => {
            Some(vmm::open_tap(net).map_err(|e| InstanceError::Vmm(vmm::VmmError::Tap(e)))?)
        }
        None => None,
    };
    let options = QemuOptions {
        memory_mib: config.memory_mib as u32,
        cpus: u32::from(config.vcpus),
        // The caller's watchdog (run timeout) and `stop` end it.
        timeout: Duration::MAX,
        extra_cmdline: cmdline_extra.split_whitespace().map(String::from).collect(),
        boot_timeout: config.boot_timeout,
        disks: config.disks.clone(),
        net: config
            .net
            .as_ref()
            .zip(tap.as_ref())
            .map(|(net, tap)| QemuNet {
                tap_fd: tap.as_raw_fd(),
                mac: net.mac,
            }),
        stop: Some(stop),
    };
    let run = runner.run_console(kernel, initrd, &options, &mut console)?;
    // The console's last partial line is judged now, before its state is read.
    drop(console);
    drop(tap);
    let end = match run.end {
        QemuEnd::Exited { .. } if run.exit_code.is_some() => VmEnd::Reset,
        // The guest reset or powered off without reporting (a kernel panic).
        QemuEnd::Exited { status, .. } if status.success() => VmEnd::Reset,
        QemuEnd::Exited { status, stderr } if stderr.is_empty() => {
            VmEnd::Failed(format!("QEMU ended ({status})"))
        }
        QemuEnd::Exited { status, stderr } => {
            VmEnd::Failed(format!("QEMU ended ({status}): {stderr}"))
        }
        QemuEnd::Stopped => VmEnd::Stopped,
        QemuEnd::BootTimeout => VmEnd::BootTimeout,
    };
    Ok(Outcome {
        end,
        exit_code: run.exit_code,
        memory: run.memory,
        timeline: Timeline {
            started,
            vmm_entered,
            first_run: Some(run.qemu_started),
            events: BootEvents {
                init_started: None,
                workload_started: run.workload_started,
                workload_exited: run.workload_exited,
                exit_code: run.exit_code,
            },
            ended: run.ended,
        },
    })
}

/// Starts the detached VMM in its own session and waits until it runs.
fn start_detached(
    store: &Store,
    record: &VmRecord,
    config: &VmConfig,
    vmm_exe: &Path,
) -> Result<()> {
    let failed = InstanceError::Detached;
    let mut cmd = Command::new(vmm_exe);
    cmd.arg("--root")
        .arg(store.root())
        .arg("__vmm")
        .arg(&record.id)
        .arg(config.memory_mib.to_string())
        .arg(config.vcpus.to_string())
        .arg(
            config
                .boot_timeout
                // whole seconds, rounded up: 0 would mean none
                .map(|d| d.as_secs_f64().ceil() as u64)
                .unwrap_or(0)
                .to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe and touches only the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start the VMM process: {e}")))?;
    // The process starts in well under a second; a loaded or emulated
    // machine gets as long as the guest's boot would.
    let limit = config
        .boot_timeout
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(10));
    let deadline = Instant::now() + limit;
    loop {
        let current = VmRecord::load(&vms_dir(store), &record.id)?;
        match current.state {
            VmState::Running { .. } => return Ok(()),
            VmState::Exited { end, .. } => {
                return Err(failed(format!(
                    "VM {} ended while starting: {end:?}",
                    record.name
                )))
            }
            VmState::Created => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failed(format!(
                "the VMM process for {} exited early ({status})",
                record.name
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(failed(format!(
                "the VMM process for {} did not start within {} s",
                record.name,
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The detached VMM process: boots the VM recorded under `id` and records
/// its end. Returns the workload's exit code (125 when there is none).
pub fn vmm_main(
    store: &Store,
    id: &str,
    memory_mib: u64,
    vcpus: u8,
    boot_timeout_secs: u64,
) -> Result<i32> {
    let started = Instant::now();
    let dir = vms_dir(store);
    let mut record = VmRecord::load(&dir, id)?;
    let qemu = match record.backend {
        Backend::Twinbox => None,
        Backend::Qemu => Some(QemuRunner::find()?),
    };
    let kernel = choose_kernel(Some(&record.kernel))?;
    let initrd_path = VmRecord::dir(&dir, id).join(INITRD_FILE);
    let initrd = fs::read(&initrd_path).map_err(|source| InstanceError::Io {
        what: "reading",
        path: initrd_path,
        source,
    })?;
    let config = VmConfig {
        memory_mib,
        vcpus,
        boot_timeout: (boot_timeout_secs > 0).then(|| Duration::from_secs(boot_timeout_secs)),
        disks: load_disks(store, &record)?,
        net: network_card(store, &record),
        block_io: vmm::BlockIo::from_env()?,
        ..VmConfig::default()
    };
    let (_, exit_code, _) = boot(
        store,
        &mut record,
        &kernel,
        initrd,
        &config,
        qemu.as_ref(),
        Box::new(std::io::sink()),
        stop_on_signals(),
        started,
    )?;
    Ok(exit_code.map(i32::from).unwrap_or(125))
}

/// Set by SIGINT/SIGTERM: the VM in this process stops.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_stop_signal(_: libc::c_int) {
    if let Some(flag) = STOP.get() {
        flag.store(true, Ordering::Release);
    }
}

/// A stop flag that SIGINT and SIGTERM set: how `vm stop` and Ctrl-C end a
/// VM running in this process.
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let flag = STOP
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
    flag
}
