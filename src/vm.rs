//! MicroVM verbs: `vm run`, `vm ps`, `vm stop`, `vm rm`, `vm logs`, `vm
//! inspect`, `vm kernels`, and the hidden `__vmm` that runs a detached VM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use twinbox_engine::cgroups::parse_memory_size;
use twinbox_engine::image::Image;
use twinbox_engine::network::{cni, NetworkMode, PortMapping, DEFAULT_NETWORK};
use twinbox_microvm::host::{self, can_boot_stock_kernel, kvm_kind};
use twinbox_microvm::instance::{
    self, Ending, Finished, Mode, Rootfs, RunRequest, Started, VmRecord,
};
use twinbox_microvm::qemu::{Accel, QemuRunner};
use twinbox_microvm::vmm::Timings;

use crate::container::{require_root, WorkloadArgs};
use crate::format::{human_duration, human_size, print_table, since};
use crate::open_store;

#[derive(Subcommand)]
pub enum VmCommand {
    /// Boot a microVM that runs an image's workload, like `twinbox run`
    #[command(disable_help_flag = true)]
    Run(Box<VmRunArgs>),
    /// List microVMs
    Ps(VmPsArgs),
    /// Stop running microVMs
    Stop(VmStopArgs),
    /// Remove microVMs
    Rm(VmRmArgs),
    /// Show a microVM's output (the workload's, or the whole console with --console)
    Logs(VmLogsArgs),
    /// Show a microVM's record as JSON
    Inspect { names: Vec<String> },
    /// List the guest kernels found on this host and whether they can boot here
    Kernels {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct VmRunArgs {
    /// Remove the VM's record when it ends
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the VM's id
    #[arg(short = 'd', long)]
    detach: bool,
    /// Assign a name to the VM
    #[arg(long)]
    name: Option<String>,
    /// Guest memory: MiB (256) or with a unit (256m, 1g)
    #[arg(short = 'm', long, default_value = "256")]
    memory: String,
    /// Number of vCPUs (1 to 32)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=32))]
    cpus: u8,
    /// Guest kernel (bzImage or ELF vmlinux); default: the newest in /boot
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Words added to the guest kernel's command line (e.g. "loglevel=7")
    #[arg(long = "kernel-args", default_value = "")]
    kernel_args: String,
    /// How long the guest may take to reach its init: seconds (60) or a
    /// duration (90s, 5m)
    #[arg(
        long = "boot-timeout",
        env = "TWINBOX_BOOT_TIMEOUT",
        default_value = "60",
        value_parser = twinbox_engine::util::time::parse_timeout
    )]
    boot_timeout: Duration,
    /// Print how long each phase took (to stderr)
    #[arg(long)]
    timings: bool,
    /// Attach a file as a virtio-blk disk (after the root's: /dev/vda, /dev/vdb,
    /// ... in the guest); `:ro` makes it read-only. Repeatable
    #[arg(long = "disk", value_name = "FILE[:ro]")]
    disks: Vec<String>,
    /// Where the guest's root file system comes from: the image as a disk
    /// built once per image and shared read-only by every VM of it (with a
    /// writable overlay of the VM's own), or the image inside the initramfs.
    /// The disk is EROFS where mkfs.erofs is installed and the guest kernel
    /// has erofs, else ext4; TWINBOX_DISK_FS=ext4|erofs chooses
    #[arg(long, value_enum, default_value = "initramfs")]
    rootfs: RootfsArg,
    /// With --rootfs disk: the VM's writable layer on a sparse disk of this
    /// size (e.g. 1g) instead of guest RAM
    #[arg(long = "disk-size", value_name = "SIZE")]
    disk_size: Option<String>,
    /// Network: bridge (the containers' default network; the default where
    /// the CNI plugins are installed, else none), a network NAME, or none
    #[arg(long)]
    network: Option<String>,
    /// Publish a guest port: [IP:][HOSTPORT:]GUESTPORT[/tcp|udp], ranges allowed
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Bind mounts are not available in VMs (no virtio-fs yet): refused
    #[arg(short = 'v', long = "volume", hide = true)]
    volumes: Vec<String>,
    /// Which VMM boots the guest: twinbox's own, or QEMU (KVM where it can
    /// boot a stock kernel, software emulation otherwise)
    #[arg(long, value_enum, default_value = "twinbox")]
    backend: Backend,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Image to run
    image: String,
    /// Command and arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootfsArg {
    Disk,
    Initramfs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Twinbox,
    Qemu,
}

#[derive(Args, Debug)]
pub struct VmPsArgs {
    /// Show all VMs (default: running only)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only print ids
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct VmStopArgs {
    /// Seconds to wait before killing the VMM
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VmRmArgs {
    /// Stop running VMs first
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct VmLogsArgs {
    /// The whole serial console: kernel messages and init markers too
    #[arg(long)]
    console: bool,
    name: String,
}

/// Guest memory in MiB: a plain number is MiB (as Firecracker's mem_size_mib),
/// otherwise a size with a unit (256m, 1g).
pub(crate) fn guest_memory_mib(text: &str) -> Result<u64> {
    match text.parse::<u64>() {
        Ok(mib) => Ok(mib),
        Err(_) => Ok(parse_memory_size(text).map_err(anyhow::Error::msg)? >> 20),
    }
}

fn parse_memory_mib(text: &str) -> Result<u64> {
    let mib = guest_memory_mib(text)?;
    if mib < 16 {
        bail!("--memory {text}: a VM needs at least 16 MiB");
    }
    Ok(mib)
}

pub fn dispatch(root: &Path, command: VmCommand) -> Result<i32> {
    match command {
        VmCommand::Run(args) => run(root, *args),
        VmCommand::Ps(args) => ps(root, args),
        VmCommand::Stop(args) => stop(root, args),
        VmCommand::Rm(args) => rm(root, args),
        VmCommand::Logs(args) => logs(root, args),
        VmCommand::Inspect { names } => inspect(root, names),
        VmCommand::Kernels { json } => kernels(json),
    }
}

fn run(root: &Path, args: VmRunArgs) -> Result<i32> {
    require_root("vm run")?;
    let memory_mib = parse_memory_mib(&args.memory)?;
    if let Some(v) = args.volumes.first() {
        bail!("-v {v}: a VM cannot mount host directories (no virtio-fs yet): copy the files into the image, or attach a disk image with --disk FILE");
    }
    let rootfs = rootfs_of(&args)?;
    let disks = parse_disks(&args.disks)?;
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.image)?;
    let mut options = args.workload.options(&args.command)?;
    (options.network, options.ports) = network_of(&args)?;
    let req = RunRequest {
        store: &store,
        name: args.name.clone(),
        image_ref: args.image.clone(),
        image: &image,
        options,
        kernel: args.kernel.clone(),
        kernel_args: args.kernel_args.clone(),
        memory_mib,
        vcpus: args.cpus,
        boot_timeout: args.boot_timeout,
        run_timeout: None,
        auto_remove: args.rm,
        rootfs,
        disks,
        backend: match args.backend {
            Backend::Twinbox => instance::Backend::Twinbox,
            Backend::Qemu => instance::Backend::Qemu,
        },
    };
    if args.backend == Backend::Qemu && !args.detach {
        if let Ok(qemu) = QemuRunner::find() {
            if qemu.accel == Accel::Tcg {
                eprintln!(
                    "twinbox: QEMU emulates the CPU here (no KVM that boots a stock kernel): slow, and its timings are not those of a VM on KVM"
                );
            }
        }
    }
    let mode = if args.detach {
        let vmm_exe = std::env::current_exe().context("cannot find the twinbox binary")?;
        Mode::Detached { vmm_exe }
    } else {
        Mode::Foreground {
            live: Box::new(std::io::stdout()),
            stop: instance::stop_on_signals(),
        }
    };
    let finished = match instance::run(req, mode)? {
        Started::Detached(record) => {
            println!("{}", record.id);
            return Ok(0);
        }
        Started::Finished(finished) => finished,
    };
    if args.timings {
        if let Some(disk) = &finished.image_disk {
            let how = if disk.built {
                format!("built in {:.1} ms", disk.build_ms)
            } else {
                "cached".into()
            };
            eprintln!(
                "image disk             {} {} ({how})",
                human_size(disk.bytes),
                disk.fs.name()
            );
        }
        print_timings(&finished.outcome.timeline.timings(), &finished);
    }
    match finished.ending() {
        Ending::Exited(code) => Ok(code as i32),
        Ending::Stopped => Ok(137),
        _ => bail!("{}", finished.explain(8).unwrap_or_default()),
    }
}

/// `--network` and `-p`: without `--network`, the default bridge where the
/// CNI plugins are installed (as containers get it), else none (both
/// backends alike).
fn network_of(args: &VmRunArgs) -> Result<(NetworkMode, Vec<PortMapping>)> {
    let mut ports = Vec::new();
    for p in &args.publish {
        ports.extend(twinbox_engine::network::ports::parse(p)?);
    }
    let network = match &args.network {
        Some(text) => text.parse().map_err(anyhow::Error::msg)?,
        None if cni::plugin_dir().is_some() => NetworkMode::Cni(DEFAULT_NETWORK.into()),
        None if !ports.is_empty() => bail!(
            "-p needs the bridge network, whose CNI plugins are not installed: install containernetworking-plugins"
        ),
        None => NetworkMode::None,
    };
    Ok((network, ports))
}

/// `--rootfs` and `--disk-size` together.
fn rootfs_of(args: &VmRunArgs) -> Result<Rootfs> {
    let writable_bytes = args
        .disk_size
        .as_deref()
        .map(|text| {
            let bytes = parse_memory_size(text).map_err(anyhow::Error::msg)?;
            if bytes < 16 << 20 {
                bail!("--disk-size {text}: the writable disk needs at least 16m");
            }
            Ok(bytes.next_multiple_of(1 << 20))
        })
        .transpose()?;
    match args.rootfs {
        RootfsArg::Disk => Ok(Rootfs::Disk { writable_bytes }),
        RootfsArg::Initramfs if writable_bytes.is_some() => {
            bail!("--disk-size sizes the writable layer of --rootfs disk: add --rootfs disk")
        }
        RootfsArg::Initramfs => Ok(Rootfs::Initramfs),
    }
}

/// `--disk FILE[:ro]` values: existing regular files, in order.
fn parse_disks(values: &[String]) -> Result<Vec<(PathBuf, bool)>> {
    values
        .iter()
        .map(|value| {
            let (file, read_only) = match value.strip_suffix(":ro") {
                Some(file) => (file, true),
                None => (value.strip_suffix(":rw").unwrap_or(value), false),
            };
            let meta = std::fs::metadata(file)
                .with_context(|| format!("--disk {value}: cannot use {file}"))?;
            if !meta.is_file() {
                bail!("--disk {value}: {file} is not a regular file: give a disk image file");
            }
            Ok((PathBuf::from(file), read_only))
        })
        .collect()
}

fn print_timings(t: &Timings, run: &Finished) {
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} ms"))
            .unwrap_or_else(|| "-".into())
    };
    let mut err = std::io::stderr().lock();
    for (label, value) in [
        ("setup (initramfs, VM)", t.vmm_setup_ms),
        ("kernel boot to init", t.boot_to_init_ms),
        ("init to workload", t.init_to_workload_ms),
        ("start to workload", t.to_workload_ms),
        ("VMM start to workload", t.vmm_to_workload_ms),
        ("workload", t.workload_ms),
        ("total", Some(t.total_ms)),
    ] {
        let _ = writeln!(err, "{label:<22} {}", ms(value));
    }
    if let Some(m) = run.outcome.memory {
        let _ = writeln!(
            err,
            "VMM memory             {} beyond guest RAM (process RSS {}, guest RAM touched {})",
            human_size(m.vmm_overhead),
            human_size(m.process_rss),
            human_size(m.guest_resident)
        );
    }
}

/// The detached VMM: boots the VM recorded under `id` and records its end.
pub fn vmm_main(
    root: &Path,
    id: &str,
    memory_mib: u64,
    vcpus: u8,
    boot_timeout: u64,
) -> Result<i32> {
    let store = open_store(root)?;
    Ok(instance::vmm_main(
        &store,
        id,
        memory_mib,
        vcpus,
        boot_timeout,
    )?)
}

fn ps(root: &Path, args: VmPsArgs) -> Result<i32> {
    let store = open_store(root)?;
    let vms: Vec<VmRecord> = instance::list(&store)?
        .into_iter()
        .filter(|vm| args.all || vm.is_running())
        .collect();
    if args.quiet {
        for vm in &vms {
            println!("{}", &vm.id[..12]);
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|vm| {
            vec![
                vm.id[..12].to_string(),
                vm.image.clone(),
                format!("{:?}", vm.command.join(" ")),
                vm.kernel_version.clone(),
                format!("{}x{} MiB", vm.vcpus, vm.memory_mib),
                format!("{} ago", human_duration(since(&vm.created))),
                vm.status_text(),
                // An ended VM's address and ports went back to the network.
                live_network(vm)
                    .map(|n| n.address.to_string())
                    .unwrap_or_default(),
                live_network(vm)
                    .map(|n| {
                        n.ports
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                vm.name.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "VM ID",
            "IMAGE",
            "COMMAND",
            "KERNEL",
            "CPUS x MEM",
            "CREATED",
            "STATUS",
            "ADDRESS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    );
    Ok(0)
}

fn live_network(vm: &VmRecord) -> Option<&twinbox_microvm::instance::network::VmNetwork> {
    vm.network.as_ref().filter(|_| vm.is_running())
}

fn stop(root: &Path, args: VmStopArgs) -> Result<i32> {
    require_root("vm stop")?;
    let store = open_store(root)?;
    let mut failed = false;
    for name in &args.names {
        match instance::find(&store, name)
            .and_then(|vm| instance::stop(&store, &vm, Duration::from_secs(args.time)))
        {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("twinbox: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn rm(root: &Path, args: VmRmArgs) -> Result<i32> {
    require_root("vm rm")?;
    let store = open_store(root)?;
    let mut failed = false;
    for name in &args.names {
        match instance::find(&store, name).and_then(|vm| instance::remove(&store, &vm, args.force))
        {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("twinbox: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn logs(root: &Path, args: VmLogsArgs) -> Result<i32> {
    let store = open_store(root)?;
    let vm = instance::find(&store, &args.name)?;
    let path = vm.console_log(&instance::vms_dir(&store));
    let raw = std::fs::read(&path).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if args.console {
        out.write_all(&raw)?;
    } else {
        out.write_all(&twinbox_microvm::console::workload_output(&raw))?;
    }
    Ok(0)
}

fn inspect(root: &Path, names: Vec<String>) -> Result<i32> {
    let store = open_store(root)?;
    let mut records = Vec::new();
    for name in &names {
        records.push(instance::find(&store, name)?);
    }
    println!("{}", serde_json::to_string_pretty(&records)?);
    Ok(0)
}

fn kernels(json: bool) -> Result<i32> {
    let kind = kvm_kind();
    let verdict = can_boot_stock_kernel(&kind);
    let found = host::find_kernels();
    if json {
        let list: Vec<serde_json::Value> = found
            .iter()
            .map(|k| {
                serde_json::json!({
                    "path": k.path, "version": k.version, "format": k.format,
                    "modules": k.modules_dir,
                    "bootable_here": verdict.is_ok(),
                    "reason": verdict.as_ref().err(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"kvm": kind, "kernels": list}))?
        );
        return Ok(0);
    }
    println!("KVM on this host: {kind}");
    if found.is_empty() {
        println!("no guest kernels in /boot: apt-get install linux-image-amd64, or pass --kernel to `vm run`");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|k| {
            vec![
                k.version.clone(),
                k.format.to_string(),
                k.path.display().to_string(),
                if k.modules_dir.is_some() { "yes" } else { "no" }.into(),
                match &verdict {
                    Ok(()) => "yes".into(),
                    Err(why) => format!("no: {why}"),
                },
            ]
        })
        .collect();
    print_table(
        &["VERSION", "FORMAT", "PATH", "MODULES", "BOOTS HERE"],
        &rows,
    );
    Ok(0)
}
