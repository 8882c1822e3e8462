//! MicroVM verbs: `vm run`, `vm ps`, `vm stop`, `vm rm`, `vm logs`, `vm
//! inspect`, `vm kernels`, and the hidden `__vmm` that runs a detached VM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use twinbox_engine::cgroups::parse_memory_size;
use twinbox_engine::image::Image;
use twinbox_engine::store::Store;
use twinbox_microvm::guest::{build_initrd, GuestSpec};
use twinbox_microvm::host::{self, can_boot_stock_kernel, kvm_kind, GuestKernel};
use twinbox_microvm::instance::{self, NewVm, VmRecord, VmRun, VmState};
use twinbox_microvm::qemu::{Accel, QemuOptions, QemuRunner};
use twinbox_microvm::vmm::{Timings, VmConfig, VmEnd};

use crate::container::{require_root, WorkloadArgs};
use crate::format::{human_duration, human_size, print_table, since};
use crate::open_store;

#[derive(Subcommand)]
pub enum VmCommand {
    /// Boot a microVM that runs an image's workload, like `twinbox run`
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
    /// Seconds the guest may take to reach its init
    #[arg(long = "boot-timeout", default_value_t = 60)]
    boot_timeout: u64,
    /// Print how long each phase took (to stderr)
    #[arg(long)]
    timings: bool,
    /// Which VMM boots the guest: twinbox's own, or QEMU (KVM where it can
    /// boot a stock kernel, software emulation otherwise; foreground only)
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

/// Set by SIGINT/SIGTERM: the VM in this process stops.
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_stop_signal(_: libc::c_int) {
    if let Some(flag) = STOP.get() {
        flag.store(true, Ordering::Release);
    }
}

fn stop_flag_on_signals() -> Arc<AtomicBool> {
    let flag = STOP
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t) };
    }
    flag
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
    let started = Instant::now();
    require_root("vm run")?;
    let memory_mib = parse_memory_mib(&args.memory)?;
    if args.backend == Backend::Qemu {
        return run_with_qemu(root, &args, memory_mib);
    }
    instance::check_host(args.kernel.is_some())?;
    let kernel = instance::choose_kernel(args.kernel.as_deref())?;
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.image)?;
    let mut record = instance::create(
        &store,
        NewVm {
            name: args.name.as_deref(),
            image: &args.image,
            image_id: image.manifest_digest.to_string(),
            kernel: &kernel,
            kernel_args: args.kernel_args.clone(),
            memory_mib,
            vcpus: args.cpus,
            command: args.command.clone(),
            auto_remove: args.rm,
        },
    )?;
    let spec = guest_spec(&args, &image, &record.name)?;
    let initrd = match build_initrd(&store, &image, &spec, &kernel) {
        Ok(initrd) => initrd,
        Err(e) => {
            instance::remove(&store, &record, true)?;
            return Err(e).context("cannot build the guest's initramfs");
        }
    };
    let config = VmConfig {
        memory_mib,
        vcpus: args.cpus,
        boot_timeout: Some(Duration::from_secs(args.boot_timeout)),
        ..VmConfig::default()
    };
    if args.detach {
        let dir = instance::vms_dir(&store).join(&record.id);
        std::fs::write(dir.join("initrd.img"), &initrd.bytes)
            .context("cannot save the guest's initramfs")?;
        start_detached(root, &store, &record, &config)?;
        println!("{}", record.id);
        return Ok(0);
    }
    let stop = stop_flag_on_signals();
    let result = instance::boot(
        &store,
        &mut record,
        &kernel,
        initrd.bytes,
        &config,
        Box::new(std::io::stdout()),
        stop,
        started,
    )?;
    if args.timings {
        print_timings(&result.outcome.timeline.timings(), &result);
    }
    exit_code_of_run(&record, &result, args.boot_timeout)
}

/// The image config and the run options, as `twinbox run` combines them;
/// the host name defaults to the VM's name.
fn guest_spec(args: &VmRunArgs, image: &Image, name: &str) -> Result<GuestSpec> {
    let mut options = args.workload.options(&args.command)?;
    options.hostname.get_or_insert_with(|| name.to_string());
    Ok(GuestSpec::from_image(image, &options))
}

/// `vm run --backend qemu`: the same guest under QEMU, in the foreground, with
/// no VM record (QEMU owns the VM's life).
fn run_with_qemu(root: &Path, args: &VmRunArgs, memory_mib: u64) -> Result<i32> {
    if args.detach {
        bail!("--backend qemu runs in the foreground only: drop -d, or use --backend twinbox");
    }
    let kernel = instance::choose_kernel(args.kernel.as_deref())?;
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.image)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(twinbox_engine::container::names::random_name);
    let spec = guest_spec(args, &image, &name)?;
    let initrd = build_initrd(&store, &image, &spec, &kernel)
        .context("cannot build the guest's initramfs")?;
    let qemu = QemuRunner::find()?;
    if qemu.accel == Accel::Tcg {
        eprintln!(
            "twinbox: QEMU emulates the CPU here (no KVM that boots a stock kernel): slow, and its timings are not those of a VM on KVM"
        );
    }
    let options = QemuOptions {
        memory_mib: memory_mib as u32,
        cpus: args.cpus as u32,
        // QEMU's limit covers the whole run; the workload may take its time.
        timeout: Duration::from_secs(args.boot_timeout + 24 * 3600),
        extra_cmdline: args
            .kernel_args
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    let mut stdout = std::io::stdout();
    let outcome = qemu.run(&kernel, &initrd.bytes, &options, Some(&mut stdout))?;
    if args.timings {
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
                .unwrap_or_else(|| "-".into())
        };
        let t = outcome.timings;
        eprintln!(
            "QEMU ({:?}, {:?}{})",
            outcome.machine,
            outcome.accel,
            if outcome.emulated { ", emulated" } else { "" }
        );
        for (label, value) in [
            ("VMM start to workload", t.to_workload_start),
            ("workload", t.workload),
            ("total", Some(t.total)),
        ] {
            eprintln!("{label:<22} {}", ms(value));
        }
    }
    Ok(outcome.exit_code as i32)
}

/// The workload's exit code, or an error saying how the VM failed.
fn exit_code_of_run(record: &VmRecord, run: &VmRun, boot_timeout: u64) -> Result<i32> {
    if let Some(code) = run.exit_code {
        return Ok(code as i32);
    }
    let tail = last_lines(&run.boot_tail, 8);
    let on_pvm = kvm_kind() == host::KvmKind::Pvm;
    let hint = if on_pvm {
        "; this host's KVM is PVM: only a PVM-enabled guest kernel boots here (stock kernels need a host with VT-x/AMD-V)".to_string()
    } else {
        String::new()
    };
    match &run.outcome.end {
        VmEnd::Stopped => Ok(137),
        VmEnd::BootTimeout => bail!(
            "VM {} did not reach its init within {boot_timeout} s (--boot-timeout){hint}; last console output:\n{tail}",
            record.name
        ),
        VmEnd::TripleFault => bail!(
            "VM {}'s kernel crashed (triple fault) before the workload ended{hint}; last console output:\n{tail}",
            record.name
        ),
        VmEnd::Failed(why) => bail!(
            "VM {}: {why}{hint}; last console output:\n{tail}",
            record.name
        ),
        VmEnd::Reset => bail!(
            "VM {} reset without reporting an exit code (the guest init did not run?); last console output:\n{tail}",
            record.name
        ),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    if tail.trim().is_empty() {
        "(nothing)".into()
    } else {
        tail
    }
}

fn print_timings(t: &Timings, run: &VmRun) {
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

/// Starts `twinbox __vmm ID` in its own session and waits until it runs.
fn start_detached(root: &Path, store: &Store, record: &VmRecord, config: &VmConfig) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the twinbox binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(root)
        .arg("__vmm")
        .arg(&record.id)
        .arg(config.memory_mib.to_string())
        .arg(config.vcpus.to_string())
        .arg(
            config
                .boot_timeout
                .map(|d| d.as_secs())
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
    let mut child = cmd.spawn().context("cannot start the VMM process")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = VmRecord::load(&instance::vms_dir(store), &record.id)?;
        match current.state {
            VmState::Running { .. } => return Ok(()),
            VmState::Exited { end, .. } => {
                bail!("VM {} ended while starting: {end:?}", record.name)
            }
            VmState::Created => {}
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the VMM process for {} exited early ({status})",
                record.name
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the VMM process for {} did not start within 10 s",
                record.name
            );
        }
        std::thread::sleep(Duration::from_millis(10));
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
    let started = Instant::now();
    let store = open_store(root)?;
    let dir = instance::vms_dir(&store);
    let mut record = VmRecord::load(&dir, id)?;
    let kernel: GuestKernel = instance::choose_kernel(Some(&record.kernel))?;
    let initrd_path = dir.join(id).join("initrd.img");
    let initrd = std::fs::read(&initrd_path)
        .with_context(|| format!("cannot read {}", initrd_path.display()))?;
    let config = VmConfig {
        memory_mib,
        vcpus,
        boot_timeout: (boot_timeout > 0).then(|| Duration::from_secs(boot_timeout)),
        ..VmConfig::default()
    };
    let stop = stop_flag_on_signals();
    let run = instance::boot(
        &store,
        &mut record,
        &kernel,
        initrd,
        &config,
        Box::new(std::io::sink()),
        stop,
        started,
    )?;
    Ok(run.exit_code.map(i32::from).unwrap_or(125))
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
            "NAMES",
        ],
        &rows,
    );
    Ok(0)
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
