//! The VMM on this machine's real KVM, with small hand-written guests
//! (tests/guests/*.S, assembled here with binutils): serial output, boot-timer
//! events, the i8042 reset, several vCPUs, a triple fault, the boot timeout.
//! These run on any KVM, PVM included, because they need no Linux kernel.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twinbox_microvm::vmm::{self, Outcome, Payload, VmConfig, VmEnd};

const LOAD_ADDR: u64 = 0x10_0000;

/// Assembles `tests/guests/<name>.S` into flat machine code.
fn assemble(name: &str) -> Vec<u8> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(format!("{name}.S"));
    let dir = tempfile::tempdir().unwrap();
    let object = dir.path().join("guest.o");
    let flat = dir.path().join("guest.bin");
    let status = Command::new("as")
        .args(["--64", "-o"])
        .arg(&object)
        .arg(&source)
        .status()
        .expect("run `as` (binutils)");
    assert!(status.success(), "assembling {}", source.display());
    let status = Command::new("objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&object)
        .arg(&flat)
        .status()
        .expect("run `objcopy` (binutils)");
    assert!(status.success());
    std::fs::read(flat).unwrap()
}

/// 64-bit code entered at its first byte.
fn raw(code: Vec<u8>) -> Payload {
    Payload::Raw {
        code,
        load_addr: LOAD_ADDR,
        entry: LOAD_ADDR,
        long_mode: true,
    }
}

#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn boot(name: &str, vcpus: u8, timeout: Duration) -> (Outcome, String) {
    assert!(
        Path::new("/dev/kvm").exists(),
        "these tests need /dev/kvm (any kind, PVM included)"
    );
    let console = Console::default();
    let config = VmConfig {
        memory_mib: 32,
        vcpus,
        boot_timeout: Some(timeout),
        stop_grace: Duration::ZERO,
        disks: Vec::new(),
        net: None,
        block_io: Default::default(),
    };
    let payload = raw(assemble(name));
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = vmm::run(
        &config,
        payload,
        Box::new(console.clone()),
        stop,
        Instant::now(),
    )
    .expect("VM runs");
    let text = String::from_utf8_lossy(&console.0.lock().unwrap()).into_owned();
    (outcome, text)
}

#[test]
fn serial_output_boot_timer_and_i8042_reset() {
    let (outcome, console) = boot("hello", 1, Duration::from_secs(60));
    assert_eq!(outcome.end, VmEnd::Reset, "console: {console}");
    assert_eq!(console, "hello from a hand-written guest\n");
    assert_eq!(outcome.exit_code, Some(42));
    let t = outcome.timeline;
    let first_run = t.first_run.expect("the vCPU ran");
    let init = t.events.init_started.expect("init-started event arrived");
    let workload = t.events.workload_started.expect("workload event arrived");
    assert!(t.started <= first_run && first_run <= init && init <= workload);
    let timings = t.timings();
    assert!(timings.vmm_setup_ms.unwrap() >= 0.0);
    assert!(timings.total_ms >= timings.vmm_setup_ms.unwrap());
    let memory = outcome.memory.expect("memory measured");
    assert!(memory.guest_resident > 0, "the guest touched its RAM");
    assert!(memory.vmm_overhead > 0 && memory.vmm_overhead < memory.process_rss);
}

#[test]
fn every_vcpu_starts_with_its_own_apic_id() {
    let (outcome, console) = boot("smp", 3, Duration::from_secs(120));
    assert_eq!(outcome.end, VmEnd::Reset, "console: {console}");
    assert_eq!(outcome.exit_code, Some(3));
    let ids = console
        .trim()
        .strip_prefix("cpus=3 ids=")
        .unwrap_or_else(|| panic!("unexpected console: {console:?}"));
    let mut ids: Vec<char> = ids.chars().collect();
    ids.sort();
    assert_eq!(ids, vec!['0', '1', '2'], "each vCPU checked in once");
}

#[test]
fn a_triple_fault_ends_the_vm_and_is_reported() {
    let (outcome, _) = boot("triple_fault", 1, Duration::from_secs(60));
    assert_eq!(outcome.end, VmEnd::TripleFault);
    assert_eq!(outcome.exit_code, None);
}

#[test]
fn a_guest_that_never_reaches_init_hits_the_boot_timeout() {
    let started = Instant::now();
    let (outcome, _) = boot("spin", 1, Duration::from_millis(500));
    assert_eq!(outcome.end, VmEnd::BootTimeout);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped promptly"
    );
}

#[test]
fn the_caller_can_stop_a_running_vm() {
    let stop = Arc::new(AtomicBool::new(true));
    let config = VmConfig {
        memory_mib: 32,
        vcpus: 2,
        boot_timeout: None,
        stop_grace: Duration::ZERO,
        disks: Vec::new(),
        net: None,
        block_io: Default::default(),
    };
    let payload = raw(assemble("spin"));
    let outcome = vmm::run(
        &config,
        payload,
        Box::new(std::io::sink()),
        stop,
        Instant::now(),
    )
    .unwrap();
    assert_eq!(outcome.end, VmEnd::Stopped);
}

#[test]
fn a_stop_request_reaches_the_guest_which_ends_itself() {
    let stop = Arc::new(AtomicBool::new(false));
    let config = VmConfig {
        memory_mib: 32,
        vcpus: 1,
        boot_timeout: Some(Duration::from_secs(60)),
        stop_grace: Duration::from_secs(30),
        disks: Vec::new(),
        net: None,
        block_io: Default::default(),
    };
    let flag = stop.clone();
    let asker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, std::sync::atomic::Ordering::Release);
    });
    let outcome = vmm::run(
        &config,
        raw(assemble("stoppable")),
        Box::new(std::io::sink()),
        stop,
        Instant::now(),
    )
    .unwrap();
    asker.join().unwrap();
    assert_eq!(outcome.end, VmEnd::Reset, "the guest ended itself");
    assert_eq!(outcome.exit_code, Some(143));
}

#[test]
fn a_guest_that_ignores_the_stop_request_is_powered_off_after_the_grace() {
    let config = VmConfig {
        memory_mib: 32,
        vcpus: 1,
        boot_timeout: None,
        stop_grace: Duration::from_millis(300),
        disks: Vec::new(),
        net: None,
        block_io: Default::default(),
    };
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(true));
    let outcome = vmm::run(
        &config,
        raw(assemble("spin")),
        Box::new(std::io::sink()),
        stop,
        started,
    )
    .unwrap();
    assert_eq!(outcome.end, VmEnd::Stopped);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the grace was given"
    );
}

#[test]
fn nonsense_sizes_are_refused_with_advice() {
    for (memory_mib, vcpus, needle) in [(4, 1, "--memory"), (64, 0, "--cpus"), (64, 99, "--cpus")] {
        let config = VmConfig {
            memory_mib,
            vcpus,
            boot_timeout: None,
            stop_grace: Duration::ZERO,
            disks: Vec::new(),
            net: None,
            block_io: Default::default(),
        };
        let payload = raw(vec![0xf4]);
        let stop = Arc::new(AtomicBool::new(false));
        let err = vmm::run(
            &config,
            payload,
            Box::new(std::io::sink()),
            stop,
            Instant::now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
}
