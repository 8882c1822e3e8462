//! vmm: twinbox's VMM against QEMU on the same tiny guest, in one run.
//!
//! The guest (microvm/tests/guests/first_output.S) is a flat 32-bit multiboot
//! image: QEMU boots it with `-M microvm -accel kvm -kernel`, twinbox enters it
//! in flat protected mode. It prints "!" and ends the VM. Measured per run:
//! - process start to the guest's first console byte, for both;
//! - process start to twinbox's first KVM_RUN (its "VMM setup", reported by the
//!   child from the same monotonic clock);
//! - whole run (spawn to exit), for both;
//! - VMM memory by Firecracker's method: the process's resident set minus the
//!   resident part of guest RAM, read from /proc/PID/smaps while a parked
//!   variant of the guest idles, for both.
//!
//! Targets (printed, never asserted): setup <= 5 ms, VMM memory <= 5 MiB.
//!
//! Run as root: `cargo run --release -p twinbox-bench --bin vmm -- [--runs N] [--json]`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use twinbox_microvm::vmm::{self, memory::split_rss, Payload, VmConfig, VmEnd};

const GUEST_SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../microvm/tests/guests/first_output.S"
);
const GUEST_MEMORY_MIB: u64 = 64;
const SETUP_TARGET_MS: f64 = 5.0;
const OVERHEAD_TARGET_MIB: f64 = 5.0;

#[derive(Parser, Debug)]
#[command(
    name = "vmm",
    about = "twinbox's VMM against QEMU: start-up and VMM memory"
)]
struct Args {
    /// Timed runs per VMM
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
    /// QEMU binary
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// (internal) boot GUEST with twinbox's VMM in this process
    #[arg(long, hide = true)]
    child: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    let result = match &args.child {
        Some(guest) => child(guest),
        None => compare(&args),
    };
    if let Err(e) = result {
        eprintln!("vmm bench: {e}");
        std::process::exit(1);
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the one clock parent and child share.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The multiboot header's load and entry addresses (offsets 16 and 28).
fn multiboot_addresses(code: &[u8]) -> Result<(u64, u64), String> {
    let word = |at: usize| -> Result<u64, String> {
        code.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as u64)
            .ok_or_else(|| "guest too short for a multiboot header".to_string())
    };
    if word(0)? != 0x1bad_b002 {
        return Err("guest has no multiboot magic".into());
    }
    Ok((word(16)?, word(28)?))
}

/// Child: boots the guest, console on stdout, and reports on stderr when the
/// first KVM_RUN happened on the shared monotonic clock.
fn child(guest: &Path) -> Result<(), String> {
    let base = (Instant::now(), monotonic_ns());
    let code = std::fs::read(guest).map_err(|e| format!("{}: {e}", guest.display()))?;
    let (load_addr, entry) = multiboot_addresses(&code)?;
    let config = VmConfig {
        memory_mib: GUEST_MEMORY_MIB,
        vcpus: 1,
        boot_timeout: Some(Duration::from_secs(30)),
        stop_grace: Duration::ZERO,
        disks: Vec::new(),
        net: None,
        block_io: Default::default(),
    };
    let payload = Payload::Raw {
        code,
        load_addr,
        entry,
        long_mode: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = vmm::run(&config, payload, Box::new(std::io::stdout()), stop, base.0)
        .map_err(|e| e.to_string())?;
    if outcome.end != VmEnd::Reset {
        return Err(format!("guest ended with {:?}", outcome.end));
    }
    let first_run = outcome.timeline.first_run.ok_or("the vCPU never ran")?;
    let first_run_ns = base.1 + first_run.duration_since(base.0).as_nanos() as u64;
    let in_process_ms = first_run.duration_since(base.0).as_secs_f64() * 1e3;
    eprintln!(
        "{}",
        json!({ "first_run_ns": first_run_ns, "in_process_setup_ms": in_process_ms })
    );
    Ok(())
}

struct Guests {
    _dir: PathBuf,
    ends: PathBuf,
    parks: PathBuf,
}

impl Drop for Guests {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn assemble() -> Result<Guests, String> {
    let dir = std::env::temp_dir().join(format!("twinbox-vmm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let build = |name: &str, defs: &[&str]| -> Result<PathBuf, String> {
        let object = dir.join(format!("{name}.o"));
        let flat = dir.join(format!("{name}.bin"));
        let ok = Command::new("as")
            .arg("--32")
            .args(defs)
            .arg("-o")
            .arg(&object)
            .arg(GUEST_SOURCE)
            .status()
            .map_err(|e| format!("as (binutils): {e}"))?
            .success()
            && Command::new("objcopy")
                .args(["-O", "binary", "-j", ".text"])
                .arg(&object)
                .arg(&flat)
                .status()
                .map_err(|e| format!("objcopy: {e}"))?
                .success();
        if !ok {
            return Err(format!("assembling {GUEST_SOURCE} failed"));
        }
        Ok(flat)
    };
    Ok(Guests {
        ends: build("ends", &[])?,
        parks: build("parks", &["--defsym", "PARK=1"])?,
        _dir: dir,
    })
}

fn twinbox_cmd(guest: &Path) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child").arg(guest);
    Ok(cmd)
}

fn qemu_cmd(qemu: &Path, guest: &Path) -> Command {
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-accel",
        "kvm",
        "-M",
        "microvm",
        "-nographic",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        "stdio",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
        "-m",
    ])
    .arg(GUEST_MEMORY_MIB.to_string())
    .arg("-kernel")
    .arg(guest);
    cmd
}

/// One timed run: spawn → first console byte → exit.
struct Sample {
    first_output_ms: f64,
    total_ms: f64,
    setup_ms: Option<f64>,
    /// twinbox only: from the child's main() to its first KVM_RUN.
    in_process_setup_ms: Option<f64>,
}

fn timed_run(mut cmd: Command) -> Result<Sample, String> {
    let spawned_ns = monotonic_ns();
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let first_output = wait_for_output(&mut child)?;
    let first_output_ms = first_output.duration_since(start).as_secs_f64() * 1e3;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = stderr
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    let setup_ms = report
        .as_ref()
        .and_then(|v| v["first_run_ns"].as_u64())
        .map(|ns| ns.saturating_sub(spawned_ns) as f64 / 1e6);
    let in_process_setup_ms = report
        .as_ref()
        .and_then(|v| v["in_process_setup_ms"].as_f64());
    Ok(Sample {
        first_output_ms,
        total_ms,
        setup_ms,
        in_process_setup_ms,
    })
}

/// Reads the child's stdout until the guest's "!" arrives (10 s at most).
fn wait_for_output(child: &mut Child) -> Result<Instant, String> {
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while let Ok(1) = stdout.read(&mut byte) {
            if byte[0] == b'!' {
                let _ = tx.send(Instant::now());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).map_err(|_| {
        let _ = child.kill();
        "the guest printed nothing within 10 s".to_string()
    })
}

/// VMM memory of a running VMM whose guest has parked: RSS minus guest RAM.
fn parked_memory(mut cmd: Command) -> Result<(u64, u64), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = wait_for_output(&mut child).and_then(|_| {
        std::thread::sleep(Duration::from_millis(200));
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", child.id()))
            .map_err(|e| e.to_string())?;
        let guest = guest_ram_ranges(&smaps, GUEST_MEMORY_MIB << 20);
        if guest.is_empty() {
            return Err("no guest RAM mapping found in smaps".into());
        }
        let m = split_rss(&smaps, &guest);
        Ok((m.process_rss, m.vmm_overhead))
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Mappings whose size is the guest's RAM (within 2 MiB of alignment slack).
fn guest_ram_ranges(smaps: &str, ram: u64) -> Vec<(u64, u64)> {
    smaps
        .lines()
        .filter_map(|line| {
            let (range, _) = line.split_once(' ')?;
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            (b - a >= ram && b - a <= ram + (2 << 20)).then_some((a, b))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

fn compare(args: &Args) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("needs /dev/kvm".into());
    }
    let guests = assemble()?;
    // Warm both up once (page cache, KVM module state).
    timed_run(twinbox_cmd(&guests.ends)?)?;
    timed_run(qemu_cmd(&args.qemu, &guests.ends))
        .map_err(|e| format!("qemu -M microvm -accel kvm: {e}"))?;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..args.runs {
        ours.push(timed_run(twinbox_cmd(&guests.ends)?)?);
        theirs.push(timed_run(qemu_cmd(&args.qemu, &guests.ends))?);
    }
    let (our_rss, our_overhead) = parked_memory(twinbox_cmd(&guests.parks)?)?;
    let (qemu_rss, qemu_overhead) = parked_memory(qemu_cmd(&args.qemu, &guests.parks))?;

    let med = |s: &[Sample], f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
    let our_setup = median(ours.iter().filter_map(|s| s.setup_ms).collect());
    let our_in_process = median(ours.iter().filter_map(|s| s.in_process_setup_ms).collect());
    let our_first = med(&ours, |s| s.first_output_ms);
    let qemu_first = med(&theirs, |s| s.first_output_ms);
    let our_total = med(&ours, |s| s.total_ms);
    let qemu_total = med(&theirs, |s| s.total_ms);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    if args.json {
        println!(
            "{}",
            json!({
                "runs": args.runs,
                "twinbox": { "setup_ms": our_setup, "in_process_setup_ms": our_in_process, "first_output_ms": our_first, "total_ms": our_total,
                             "rss_bytes": our_rss, "vmm_overhead_bytes": our_overhead },
                "qemu": { "first_output_ms": qemu_first, "total_ms": qemu_total,
                          "rss_bytes": qemu_rss, "vmm_overhead_bytes": qemu_overhead },
                "ratios": { "first_output": our_first / qemu_first, "total": our_total / qemu_total,
                            "vmm_overhead": our_overhead as f64 / qemu_overhead as f64 },
                "targets": { "setup_ms": SETUP_TARGET_MS, "vmm_overhead_mib": OVERHEAD_TARGET_MIB },
            })
        );
        return Ok(());
    }
    println!("twinbox VMM vs qemu-system-x86_64 -M microvm -accel kvm, same guest, {} runs each (medians)", args.runs);
    println!(
        "{:<34} {:>12} {:>12} {:>8}  target",
        "", "twinbox", "qemu", "ratio"
    );
    println!(
        "{:<34} {:>9.2} ms {:>12} {:>8}  <= {SETUP_TARGET_MS} ms: {}",
        "process start to first KVM_RUN",
        our_setup,
        "-",
        "-",
        if our_setup <= SETUP_TARGET_MS {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "{:<34} {:>9.2} ms {:>12} {:>8}  (exec and loading excluded)",
        "  of which main() to first KVM_RUN", our_in_process, "-", "-"
    );
    println!(
        "{:<34} {:>9.2} ms {:>9.2} ms {:>7.2}x",
        "process start to first guest output",
        our_first,
        qemu_first,
        our_first / qemu_first
    );
    println!(
        "{:<34} {:>9.2} ms {:>9.2} ms {:>7.2}x",
        "whole run (spawn to exit)",
        our_total,
        qemu_total,
        our_total / qemu_total
    );
    println!(
        "{:<34} {:>8.2} MiB {:>8.2} MiB {:>7.2}x  <= {OVERHEAD_TARGET_MIB} MiB: {}",
        "VMM memory (RSS - guest RAM)",
        mib(our_overhead),
        mib(qemu_overhead),
        our_overhead as f64 / qemu_overhead as f64,
        if mib(our_overhead) <= OVERHEAD_TARGET_MIB {
            "met"
        } else {
            "missed"
        }
    );
    println!(
        "{:<34} {:>8.2} MiB {:>8.2} MiB",
        "process RSS",
        mib(our_rss),
        mib(qemu_rss)
    );
    Ok(())
}
