//! A microVM from start to end: build the VM, load what it boots, wire the
//! devices, start one thread per vCPU, and wait until the guest resets, the
//! boot timer says it never reached its init in time, or the caller stops it.

pub mod memory;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_engine::util::poll::wait_readable;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use crate::acpi::{self, MmioDeviceInfo};
use crate::arch::x86_64::layout::{GDT_ADDR, IDT_ADDR, ZERO_PAGE_ADDR};
use crate::arch::x86_64::{mptable, paging, regs};
use crate::boot::{self, params, pvh, BootError};
use crate::devices::boot_timer::{self, BootEvents, BootTimer};
use crate::devices::bus::PioBus;
use crate::devices::i8042::{self, I8042};
use crate::devices::mmio::MmioBus;
use crate::devices::rtc::{self, Rtc};
use crate::devices::serial::{self, SerialConsole};
use crate::devices::virtio::block::{Block, BlockError};
use crate::devices::virtio::mmio::{MmioTransport, REG_QUEUE_NOTIFY};
use crate::devices::virtio::net::Net;
use crate::devices::virtio::worker::Worker;
use crate::devices::virtio::{self, Interrupt, VirtioDevice};
use crate::devices::EventFdTrigger;
use crate::hostnet;
use crate::threads;
use crate::vstate::vcpu::{Vcpu, VcpuStop};
use crate::vstate::vm::Vm;
use crate::vstate::KvmError;

pub use memory::VmmMemory;

/// What the VM boots.
pub enum Payload {
    /// A Linux kernel with an optional initramfs and extra command-line words.
    Linux {
        kernel: PathBuf,
        initrd: Option<Vec<u8>>,
        cmdline_extra: String,
        /// Enter through PVH when the kernel has the note.
        prefer_pvh: bool,
    },
    /// Flat code loaded at `load_addr` and entered at `entry` on every vCPU, in
    /// long mode or (with `long_mode: false`) flat 32-bit protected mode: the
    /// small hand-written guests that test and benchmark the VMM itself.
    Raw {
        code: Vec<u8>,
        load_addr: u64,
        entry: u64,
        long_mode: bool,
    },
}

pub struct VmConfig {
    pub memory_mib: u64,
    pub vcpus: u8,
    /// How long the guest may take to reach its init (the first boot-timer
    /// event) before it is stopped; `None` waits forever.
    pub boot_timeout: Option<Duration>,
    /// After a stop request, how long the guest init gets to end the workload
    /// (it sends SIGTERM) before the VM is powered off.
    pub stop_grace: Duration,
    /// virtio-blk disks, in order: the guest sees /dev/vda, /dev/vdb, ...
    pub disks: Vec<DiskConfig>,
    /// A virtio-net device on a tap (after the disks).
    pub net: Option<NetConfig>,
    /// Which thread serves the disks' requests.
    pub block_io: BlockIo,
}

/// Which thread serves virtio-blk requests (see [`attach_devices`] for the
/// measurements behind the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockIo {
    /// The device's I/O thread, woken by an ioeventfd: the guest's
    /// QueueNotify write never leaves the kernel and the vCPU runs on while
    /// the request is served.
    #[default]
    Thread,
    /// The vCPU thread that wrote QueueNotify, as an MMIO exit to the VMM:
    /// the request is served before the vCPU returns to the guest.
    Vcpu,
}

/// Chooses [`BlockIo`] (`thread` or `vcpu`) for measuring the two (bench vm-io).
pub const BLOCK_IO_ENV: &str = "TWINBOX_BLK_IO";

impl BlockIo {
    /// From [`BLOCK_IO_ENV`], the default when it is unset.
    pub fn from_env() -> Result<BlockIo, VmmError> {
        match std::env::var_os(BLOCK_IO_ENV) {
            None => Ok(BlockIo::default()),
            Some(v) => BlockIo::parse(&v.to_string_lossy()),
        }
    }

    fn parse(value: &str) -> Result<BlockIo, VmmError> {
        match value {
            "thread" => Ok(BlockIo::Thread),
            "vcpu" => Ok(BlockIo::Vcpu),
            other => Err(VmmError::Config(format!(
                "{BLOCK_IO_ENV}={other}: use thread or vcpu"
            ))),
        }
    }
}

/// A network card whose host side is a tap created by the VMM (so it lives
/// exactly as long as the VMM) in a pinned network namespace, as a port of
/// a bridge there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NetConfig {
    pub netns: PathBuf,
    pub bridge: String,
    pub tap: String,
    pub mac: [u8; 6],
    pub mtu: u16,
}

/// A disk backed by a file on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
    /// What the guest reads as the disk's serial (up to 20 bytes).
    pub id: String,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            memory_mib: 256,
            vcpus: 1,
            boot_timeout: Some(Duration::from_secs(60)),
            stop_grace: Duration::from_secs(10),
            disks: Vec::new(),
            net: None,
            block_io: BlockIo::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error(transparent)]
    Kvm(#[from] KvmError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("{0}")]
    Config(String),
    #[error("starting a VMM thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Disk(#[from] BlockError),
    #[error("starting a virtio I/O thread: {0}")]
    Worker(std::io::Error),
    #[error("the VM's network card: {0}")]
    Tap(std::io::Error),
}

/// How the VM ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum VmEnd {
    /// The guest reset the machine (i8042 or KVM system event): a normal end.
    Reset,
    /// Triple fault: the guest crashed before or instead of resetting.
    TripleFault,
    /// No boot-timer event within the boot timeout.
    BootTimeout,
    /// The caller asked the VM to stop.
    Stopped,
    /// KVM refused to go on.
    Failed(String),
}

/// When things happened, on the host's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub started: Instant,
    /// When the VMM itself began (after the caller's own preparation).
    pub vmm_entered: Instant,
    pub first_run: Option<Instant>,
    pub events: BootEvents,
    pub ended: Instant,
}

/// The phases a user cares about, in milliseconds; `None` when the guest never
/// got that far.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Timings {
    pub vmm_setup_ms: Option<f64>,
    /// From the caller's start to the workload's start: what a user waits for.
    #[serde(default)]
    pub to_workload_ms: Option<f64>,
    /// From the VMM's own start (initramfs already built) to the workload's
    /// start: comparable with another VMM's process start to workload start.
    #[serde(default)]
    pub vmm_to_workload_ms: Option<f64>,
    pub boot_to_init_ms: Option<f64>,
    pub init_to_workload_ms: Option<f64>,
    pub workload_ms: Option<f64>,
    pub total_ms: f64,
}

impl Timeline {
    pub fn timings(&self) -> Timings {
        let ms = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a).as_secs_f64() * 1e3),
            _ => None,
        };
        let e = &self.events;
        Timings {
            vmm_setup_ms: ms(Some(self.started), self.first_run),
            to_workload_ms: ms(Some(self.started), e.workload_started),
            vmm_to_workload_ms: ms(Some(self.vmm_entered), e.workload_started),
            boot_to_init_ms: ms(self.first_run, e.init_started),
            init_to_workload_ms: ms(e.init_started, e.workload_started),
            workload_ms: ms(e.workload_started, e.workload_exited),
            total_ms: self.ended.duration_since(self.started).as_secs_f64() * 1e3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: VmEnd,
    pub timeline: Timeline,
    /// The workload's exit code as the guest init reported it.
    pub exit_code: Option<u8>,
    /// Measured when the guest ended, before its memory was freed.
    pub memory: Option<VmmMemory>,
}

/// Boots `payload` and runs it to its end. The guest's console goes to
/// `console`; setting `stop` ends the VM early. `started` is when the caller
/// began (the process start, for honest setup times).
pub fn run(
    config: &VmConfig,
    payload: Payload,
    console: Box<dyn Write + Send>,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Result<Outcome, VmmError> {
    let vmm_entered = Instant::now();
    if config.vcpus == 0 || config.vcpus > mptable::MAX_CPUS {
        return Err(VmmError::Config(format!(
            "--cpus {}: choose 1 to {}",
            config.vcpus,
            mptable::MAX_CPUS
        )));
    }
    if config.memory_mib < 16 {
        return Err(VmmError::Config(format!(
            "--memory {} MiB is too small: give the VM at least 16",
            config.memory_mib
        )));
    }
    let device_count = config.disks.len() + usize::from(config.net.is_some());
    if device_count > virtio::MAX_DEVICES {
        return Err(VmmError::Config(format!(
            "{} disks: a VM takes at most {}",
            config.disks.len(),
            virtio::MAX_DEVICES - usize::from(config.net.is_some())
        )));
    }
    install_kick_handler();
    let mem_size = config.memory_mib << 20;
    let vm = Vm::new(mem_size)?;
    let slots: Vec<MmioDeviceInfo> = (0..device_count)
        .map(|i| {
            let (base, irq) = virtio::slot(i);
            MmioDeviceInfo {
                base,
                size: virtio::MMIO_SIZE,
                irq,
            }
        })
        .collect();
    let (mode, start_all) = load_payload(&vm, payload, config.vcpus, &slots)?;
    let (mmio, workers) = attach_devices(&vm, config, &slots)?;

    let exit_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| KvmError::Io {
        what: "creating the exit eventfd",
        source,
    })?;
    let timer = Arc::new(Mutex::new(BootTimer::default()));
    let bus = build_bus(&vm, console, &exit_evt, &timer)?;

    let cr3 = paging::write_identity_tables(&vm.memory).map_err(KvmError::GuestWrite)?;
    let mut vcpus = Vec::new();
    for index in 0..config.vcpus {
        let vcpu = Vcpu::new(&vm, index)?;
        vcpu.configure(&vm, config.vcpus, mode, cr3, start_all)?;
        vcpus.push(vcpu);
    }

    let vcpu_stop = Arc::new(AtomicBool::new(false));
    let first_run: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let stops: Arc<Mutex<Vec<VcpuStop>>> = Arc::default();
    let mut threads = Vec::new();
    for mut vcpu in vcpus {
        let (bus, mmio, stop_flag, first_run, stops) = (
            bus.clone(),
            mmio.clone(),
            vcpu_stop.clone(),
            first_run.clone(),
            stops.clone(),
        );
        let spawned = exit_evt
            .try_clone()
            .map_err(|source| {
                VmmError::from(KvmError::Io {
                    what: "cloning the exit eventfd",
                    source,
                })
            })
            .and_then(|exit| {
                threads::spawn(&format!("vcpu{}", vcpu.index), move || {
                    first_run.get_or_init(Instant::now);
                    let why = vcpu.run(&bus, &mmio, &stop_flag);
                    stops.lock().unwrap_or_else(|e| e.into_inner()).push(why);
                    let _ = exit.write(1);
                })
                .map_err(VmmError::Thread)
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // The vCPUs already running use guest memory, which goes
                // with `vm`: they end first.
                stop_vcpus(&vcpu_stop, threads);
                return Err(e);
            }
        }
    }

    // The guest runs: what set it up is not needed any more.
    let released = memory::release_setup_memory(&vm.memory);
    tracing::debug!("paged out {released} mappings of the binary and its libraries after setup");
    let mut end = wait_for_end(&exit_evt, &timer, &first_run, &stop, config);
    let memory = memory::measure(&vm.memory);
    stop_vcpus(&vcpu_stop, threads);
    for worker in workers {
        worker.stop();
    }
    if end == VmEnd::Reset {
        // A vCPU may have ended for a worse reason than a reset.
        let stops = stops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(worst) = stops.iter().find_map(|s| match s {
            VcpuStop::Failed(why) => Some(VmEnd::Failed(why.clone())),
            VcpuStop::TripleFault => Some(VmEnd::TripleFault),
            _ => None,
        }) {
            end = worst;
        }
    }
    let events = timer.lock().unwrap_or_else(|e| e.into_inner()).events;
    Ok(Outcome {
        end,
        exit_code: events.exit_code,
        memory,
        timeline: Timeline {
            started,
            vmm_entered,
            first_run: first_run.get().copied(),
            events,
            ended: Instant::now(),
        },
    })
}

/// Puts the kernel (or raw code) and its boot structures into guest memory.
fn load_payload(
    vm: &Vm,
    payload: Payload,
    vcpus: u8,
    devices: &[MmioDeviceInfo],
) -> Result<(regs::EntryMode, bool), VmmError> {
    let mem = &vm.memory;
    let (mode, start_all) = match payload {
        Payload::Raw {
            code,
            load_addr,
            entry,
            long_mode,
        } => {
            mem.write_slice(&code, GuestAddress(load_addr))
                .map_err(KvmError::GuestWrite)?;
            let mode = if long_mode {
                regs::EntryMode::Linux64 {
                    entry,
                    boot_params: ZERO_PAGE_ADDR,
                }
            } else {
                regs::EntryMode::Pvh {
                    entry,
                    start_info: 0,
                }
            };
            (mode, true)
        }
        Payload::Linux {
            kernel,
            initrd,
            cmdline_extra,
            prefer_pvh,
        } => {
            let loaded = boot::load_kernel(mem, &kernel)?;
            // ACPI describes the devices to stock kernels; kernels built with
            // VIRTIO_MMIO_CMDLINE_DEVICES also take them from the command line.
            // Only with devices for now: the ACPI boot path has not yet been
            // verified in the nested environment, the MP-table path has.
            let rsdp = if devices.is_empty() {
                0
            } else {
                let tables = acpi::build(vcpus, devices).map_err(VmmError::Config)?;
                mem.write_slice(&tables, GuestAddress(acpi::RSDP_ADDR))
                    .map_err(KvmError::GuestWrite)?;
                acpi::RSDP_ADDR
            };
            let mut extra = boot::cmdline::virtio_mmio_devices(devices);
            extra.push(' ');
            extra.push_str(&cmdline_extra);
            let cmdline = boot::cmdline::build(&extra)?;
            let cmdline_len = boot::cmdline::write(mem, &cmdline)?;
            let initrd_at = match &initrd {
                Some(bytes) => {
                    let limit = params::initrd_addr_max(loaded.setup_header.as_ref());
                    let addr = boot::initrd_address(
                        bytes.len() as u64,
                        loaded.end,
                        params::low_ram_end(vm.mem_size),
                        limit,
                    )?;
                    boot::load_initrd(mem, addr, bytes)?;
                    Some((addr, bytes.len() as u64))
                }
                None => None,
            };
            let mut zero_page =
                params::zero_page(loaded.setup_header, cmdline_len, initrd_at, vm.mem_size)?;
            zero_page.acpi_rsdp_addr = rsdp;
            params::write(mem, &zero_page)?;
            let start_info = if loaded.pvh_entry.is_some() && prefer_pvh {
                pvh::write_start_info(mem, vm.mem_size, initrd_at, rsdp)?
            } else {
                0
            };
            let mode = boot::entry_mode(&loaded, prefer_pvh, ZERO_PAGE_ADDR, start_info);
            (mode, false)
        }
    };
    for (i, entry) in regs::boot_gdt(mode).iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(GDT_ADDR + i as u64 * 8))
            .map_err(KvmError::GuestWrite)?;
    }
    mem.write_obj(0u64, GuestAddress(IDT_ADDR))
        .map_err(KvmError::GuestWrite)?;
    let (addr, table) = mptable::build(vcpus).map_err(VmmError::Config)?;
    mem.write_slice(&table, GuestAddress(addr))
        .map_err(KvmError::GuestWrite)?;
    Ok((mode, start_all))
}

/// The virtio devices on the MMIO bus (one virtio-blk per disk, then the
/// network card), each with its interrupt as an irqfd, and its queue
/// notifications as ioeventfds served by its I/O thread, except disks served
/// on the vCPU thread ([`BlockIo::Vcpu`]), whose notifications are MMIO exits.
///
/// The disks' default is the I/O thread: the guest's notification stays in
/// the host kernel (ioeventfd) and the vCPU runs on while the request is read
/// from the file, where on the vCPU thread every notification is an exit to
/// the VMM and the vCPU waits for the I/O. bench vm-io measures both
/// (`TWINBOX_BLK_IO=vcpu`); its figures are in bench/README.md.
fn attach_devices(
    vm: &Vm,
    config: &VmConfig,
    slots: &[MmioDeviceInfo],
) -> Result<(MmioBus, Vec<Worker>), VmmError> {
    // (name, device, served by an I/O thread)
    let mut devices: Vec<(String, Box<dyn VirtioDevice>, bool)> = Vec::new();
    for (index, disk) in config.disks.iter().enumerate() {
        let block = Block::open(&disk.path, disk.read_only, &disk.id)?;
        devices.push((
            format!("virtio-blk{index}"),
            Box::new(block),
            config.block_io == BlockIo::Thread,
        ));
    }
    if let Some(net) = &config.net {
        let tap = open_tap(net).map_err(VmmError::Tap)?;
        // The tap's input needs a thread that waits on it in any case.
        devices.push((
            "virtio-net0".into(),
            Box::new(Net::new(tap, net.mac, net.mtu)),
            true,
        ));
    }
    let mut bus = MmioBus::default();
    let mut workers = Vec::new();
    for ((name, device, threaded), slot) in devices.into_iter().zip(slots) {
        let interrupt = Arc::new(Interrupt::new(vm.irq_line(slot.irq)?));
        let transport = Arc::new(Mutex::new(MmioTransport::new(
            device,
            vm.memory.clone(),
            interrupt,
        )));
        bus.insert(slot.base, slot.size, transport.clone());
        if !threaded {
            // QueueNotify reaches the transport through the vCPU's MMIO exit.
            continue;
        }
        let queues = transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue_count();
        let mut notifiers = Vec::new();
        for queue in 0..queues {
            let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| KvmError::Io {
                what: "creating a queue eventfd",
                source,
            })?;
            let addr = kvm_ioctls::IoEventAddress::Mmio(slot.base + REG_QUEUE_NOTIFY);
            vm.fd
                .register_ioevent(&evt, &addr, queue as u32)
                .map_err(crate::vstate::ioctl("registering a queue ioeventfd"))?;
            notifiers.push(evt);
        }
        let worker = Worker::spawn(name, transport, notifiers).map_err(VmmError::Worker)?;
        workers.push(worker);
    }
    Ok((bus, workers))
}

/// Creates the tap in the VM's namespace, up, with the card's MTU, as a port
/// of the bridge there.
pub(crate) fn open_tap(net: &NetConfig) -> std::io::Result<std::fs::File> {
    let net = net.clone();
    hostnet::in_netns(&net.netns.clone(), move || {
        let tap = hostnet::open_tap(&net.tap)?;
        hostnet::set_mtu(&net.tap, u32::from(net.mtu))?;
        hostnet::add_port(&net.bridge, &net.tap)?;
        hostnet::set_up(&net.tap, true)?;
        Ok(tap)
    })
}

/// The serial console on IRQ 4, the i8042 whose reset fires `exit_evt`, and
/// the boot timer.
fn build_bus(
    vm: &Vm,
    console: Box<dyn Write + Send>,
    exit_evt: &EventFd,
    timer: &Arc<Mutex<BootTimer>>,
) -> Result<PioBus, VmmError> {
    let io = |what| move |source| KvmError::Io { what, source };
    let irq4 = vm.irq_line(serial::COM1_IRQ)?;
    let uart = SerialConsole::new(EventFdTrigger(irq4), console);
    let reset = EventFdTrigger(exit_evt.try_clone().map_err(io("cloning the reset line"))?);
    let mut bus = PioBus::default();
    bus.insert(
        serial::COM1_PORT,
        serial::PORT_COUNT,
        Arc::new(Mutex::new(uart)),
    );
    bus.insert(
        i8042::I8042_PORT,
        i8042::PORT_COUNT,
        Arc::new(Mutex::new(I8042::new(reset))),
    );
    bus.insert(boot_timer::BASE_PORT, boot_timer::PORT_COUNT, timer.clone());
    bus.insert(
        rtc::RTC_PORT,
        rtc::PORT_COUNT,
        Arc::new(Mutex::new(Rtc::default())),
    );
    Ok(bus)
}

/// Waits for a vCPU or the i8042 to signal the end, for the boot timeout to
/// pass without an init, or for the caller's stop flag: then the guest init is
/// asked to stop the workload, and the VM is powered off if it has not ended
/// within the stop grace.
fn wait_for_end(
    exit_evt: &EventFd,
    timer: &Arc<Mutex<BootTimer>>,
    first_run: &OnceLock<Instant>,
    stop: &AtomicBool,
    config: &VmConfig,
) -> VmEnd {
    let lock = || timer.lock().unwrap_or_else(|e| e.into_inner());
    let mut stop_deadline: Option<Instant> = None;
    loop {
        let reset = wait_readable(&[exit_evt.as_raw_fd()], Some(Duration::from_millis(20)));
        if reset.is_ok_and(|r| r[0]) {
            return VmEnd::Reset;
        }
        match stop_deadline {
            Some(deadline) if Instant::now() >= deadline => return VmEnd::Stopped,
            None if stop.load(Ordering::Acquire) => {
                lock().stop_requested = true;
                stop_deadline = Some(Instant::now() + config.stop_grace);
                continue;
            }
            _ => {}
        }
        if let (Some(limit), Some(since)) = (config.boot_timeout, first_run.get()) {
            let reached_init = lock().events.init_started.is_some();
            if !reached_init && since.elapsed() > limit {
                return VmEnd::BootTimeout;
            }
        }
    }
}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick) {
            tracing::warn!("cannot install the vCPU kick handler: {e}");
        }
    });
}

/// Sets the stop flag and signals every vCPU thread until all have left KVM_RUN.
fn stop_vcpus(vcpu_stop: &AtomicBool, threads: Vec<thread::JoinHandle<()>>) {
    use std::os::unix::thread::JoinHandleExt;
    vcpu_stop.store(true, Ordering::Release);
    for handle in threads {
        // A signal can land just before the thread enters KVM_RUN: repeat it.
        while !handle.is_finished() {
            // SAFETY: the thread is alive (not finished, not joined), so its
            // pthread_t is valid; the signal has a no-op handler installed.
            unsafe { libc::pthread_kill(handle.as_pthread_t(), kick_signal()) };
            thread::sleep(Duration::from_millis(2));
        }
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_io_is_thread_or_vcpu_and_says_so_otherwise() {
        assert_eq!(BlockIo::default(), BlockIo::Thread);
        assert_eq!(BlockIo::parse("thread").unwrap(), BlockIo::Thread);
        assert_eq!(BlockIo::parse("vcpu").unwrap(), BlockIo::Vcpu);
        let e = BlockIo::parse("io_uring").unwrap_err().to_string();
        assert_eq!(e, "TWINBOX_BLK_IO=io_uring: use thread or vcpu");
    }
}
