//! The nested test environment: tests/nested/run.sh boots the distribution kernel
//! in QEMU software emulation with an emulated AMD CPU that has SVM, loads kvm-amd
//! there and runs tests/nested/guest-tests.sh as PID 1. That machine has what this
//! host lacks: a KVM on which stock kernels boot (this host's /dev/kvm is PVM) and
//! cgroup v2 mounted alone (this host is a v1 hybrid). Each guest test prints
//! `@@nested@@ <name> ok|fail|skip <details>`; the tests here assert on those lines.
//!
//! The machine boots once per test binary; every test below waits for that run.
//! Time bound: `TWINBOX_NESTED_TIMEOUT` seconds for the QEMU run (default 2400).
//! `TWINBOX_NESTED=skip` skips these tests on purpose (say so when you use it).

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{bin, is_root};

/// While `twinbox vm run` may still be missing from the binary, the VM tests accept
/// `skip` from the guest when the binary has no `vm run`. Set to false to require
/// the VM results whatever the binary says.
const VM_RUN_MAY_BE_MISSING: bool = false;

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nested/run.sh");
const DEFAULT_TIMEOUT_S: u64 = 2400;
/// Building the initramfs before QEMU starts, on top of the QEMU time bound.
const SETUP_ALLOWANCE: Duration = Duration::from_secs(120);
const MARK: &str = "@@nested@@ ";
const JSON_MARK: &str = "@@nested-json@@ ";

#[derive(Debug)]
struct TestLine {
    status: String,
    details: String,
}

#[derive(Debug)]
struct Outcome {
    tests: BTreeMap<String, TestLine>,
    /// `@@nested-json@@ <name> <JSON>` lines: what a lesson printed with --json.
    json: BTreeMap<String, String>,
    /// The console and the harness's own messages, for failure reports.
    log: String,
    /// Why the machine got no Debian image (None: it got one).
    no_debian: Option<String>,
}

impl Outcome {
    fn get(&self, name: &str) -> &TestLine {
        self.tests.get(name).unwrap_or_else(|| {
            panic!(
                "the nested machine printed no result for {name}:\n{}",
                self.log
            )
        })
    }

    /// Asserts the guest test passed and returns its details.
    fn ok(&self, name: &str) -> &str {
        let t = self.get(name);
        assert_eq!(
            t.status, "ok",
            "nested test {name}: {}\n--- console ---\n{}",
            t.details, self.log
        );
        &t.details
    }
}

/// The nested run, once for all tests; None when it cannot run here on purpose.
fn nested() -> Option<&'static Outcome> {
    static RUN: OnceLock<Result<Option<Outcome>, String>> = OnceLock::new();
    match RUN.get_or_init(run_harness) {
        Ok(outcome) => outcome.as_ref(),
        Err(e) => panic!("{e}"),
    }
}

fn run_harness() -> Result<Option<Outcome>, String> {
    if !is_root() {
        eprintln!("skipping: the nested environment needs root (to read /boot/vmlinuz-*)");
        return Ok(None);
    }
    if std::env::var("TWINBOX_NESTED").as_deref() == Ok("skip") {
        eprintln!("SKIPPING the nested KVM/cgroup v2 tests: TWINBOX_NESTED=skip is set");
        return Ok(None);
    }
    let timeout_s = match std::env::var("TWINBOX_NESTED_TIMEOUT") {
        Ok(v) => v.parse::<u64>().map_err(|_| {
            format!("TWINBOX_NESTED_TIMEOUT={v} is not a number of seconds: use e.g. 600")
        })?,
        Err(_) => DEFAULT_TIMEOUT_S,
    };
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let debian = debian_archive(dir.path());
    if let Err(why) = &debian {
        eprintln!("the nested machine gets no Debian image: {why}");
    }
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(HARNESS)
        .env("TWINBOX_BIN", bin())
        .env("TWINBOX_NESTED_TIMEOUT", timeout_s.to_string())
        .env(
            "TWINBOX_NESTED_IMAGES",
            debian.as_ref().map(|p| p.as_os_str()).unwrap_or_default(),
        )
        // inside our temp dir, so even a killed harness leaves nothing behind
        .env("TWINBOX_NESTED_WORKDIR", dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // its own process group, so a stuck run can be killed with QEMU in it
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {HARNESS}: {e}"))?;
    // run.sh bounds QEMU itself; this bounds run.sh in case that fails.
    let deadline = Duration::from_secs(timeout_s) + SETUP_ALLOWANCE;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(&out_path)
        .unwrap_or_default()
        .replace('\r', "");
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("nested run: {elapsed:.0}s, harness exit {status:?}");
    let Some(status) = status else {
        return Err(format!(
            "the nested harness did not finish within {}s and was killed:\n{log}",
            deadline.as_secs()
        ));
    };
    // 0: all ok or skipped, 1: a guest test failed (asserted per test below).
    if !matches!(status.code(), Some(0 | 1)) {
        return Err(format!(
            "the nested environment did not run ({HARNESS} exit {status}):\n{log}"
        ));
    }
    let tests = parse_results(&log);
    let json = parse_json_lines(&log);
    if !log.lines().any(|l| l == "@@nested@@ done") {
        return Err(format!(
            "the nested machine did not finish its tests:\n{log}"
        ));
    }
    Ok(Some(Outcome {
        tests,
        json,
        log,
        no_debian: debian.err(),
    }))
}

/// `debian:bookworm` bootstrapped on this host (mmdebstrap, the Debian
/// mirror) and saved as an archive in `dir` for the nested machine, which
/// has no network; the reason when that cannot be done here.
fn debian_archive(dir: &Path) -> Result<std::path::PathBuf, String> {
    if !Path::new("/usr/bin/mmdebstrap").exists() {
        return Err("mmdebstrap is not installed (scripts/install-deps.sh installs it)".into());
    }
    let store = dir.join("debian-store");
    let archive = dir.join("debian-bookworm.tar");
    let twinbox = |args: &[&str], limit: Duration| -> Result<(), String> {
        let mut child = Command::new(bin())
            .args(args)
            .env("TWINBOX_ROOT", &store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("twinbox {}: {e}", args.join(" ")))?;
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(format!("twinbox {} failed: {}", args.join(" "), err.trim()));
            }
            if started.elapsed() > limit {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "twinbox {} took over {}s",
                    args.join(" "),
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let started = Instant::now();
    let made = twinbox(
        &["image", "bootstrap", "debian:bookworm"],
        Duration::from_secs(600),
    )
    .and_then(|()| {
        twinbox(
            &["save", "debian:bookworm", "-o", archive.to_str().unwrap()],
            Duration::from_secs(120),
        )
    });
    let _ = std::fs::remove_dir_all(&store);
    made?;
    eprintln!(
        "debian:bookworm bootstrapped and saved for the nested machine in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(archive)
}

/// `@@nested@@ <name> <status> <details>` lines from the console.
fn parse_results(log: &str) -> BTreeMap<String, TestLine> {
    log.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(MARK)?;
            let mut parts = rest.splitn(3, ' ');
            let name = parts.next()?.to_string();
            let status = parts.next()?.to_string();
            let details = parts.next().unwrap_or_default().to_string();
            Some((name, TestLine { status, details }))
        })
        .collect()
}

/// `@@nested-json@@ <name> <JSON>` lines from the console, unparsed.
fn parse_json_lines(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter_map(|line| {
            let (name, json) = line.strip_prefix(JSON_MARK)?.split_once(' ')?;
            Some((name.to_string(), json.to_string()))
        })
        .collect()
}

/// Whether the binary under test has `twinbox vm run` (asked of the binary itself).
fn binary_has_vm_run() -> bool {
    Command::new(bin())
        .args(["vm", "run", "--help"])
        .stdin(Stdio::null())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A VM test: ok when the binary has `vm run`; otherwise the guest must have
/// skipped it for that reason (and that is accepted only while allowed).
fn vm_test(name: &str) -> Option<String> {
    let run = nested()?;
    if binary_has_vm_run() || !VM_RUN_MAY_BE_MISSING {
        return Some(run.ok(name).to_string());
    }
    let t = run.get(name);
    assert_eq!(
        t.status, "skip",
        "{name}: this binary has no `vm run`, so the guest must skip: {}",
        t.details
    );
    assert!(t.details.contains("no 'vm run'"), "{}", t.details);
    eprintln!("{name}: skipped, this twinbox has no `vm run` yet");
    None
}

#[test]
fn parses_result_lines() {
    let tests = parse_results(
        "[ 1.0] noise\n@@nested@@ a ok x y\n@@nested@@ b fail\n@@nested@@ done\n@@nested@@x z",
    );
    assert_eq!(tests["a"].status, "ok");
    assert_eq!(tests["a"].details, "x y");
    assert_eq!(tests["b"].status, "fail");
    assert_eq!(tests["b"].details, "");
    assert!(!tests.contains_key("x"));
    assert_eq!(tests.len(), 2, "`done` is not a test result");
    let json = parse_json_lines(
        "@@nested@@ a ok\n@@nested-json@@ lesson-x {\"lesson\": \"x\"}\n@@nested-json@@ lesson-y",
    );
    assert_eq!(json["lesson-x"], "{\"lesson\": \"x\"}");
    assert_eq!(json.len(), 1, "a marker with no JSON is not a report");
    assert!(Path::new(HARNESS).is_file());
}

#[test]
fn machine_has_kvm_amd_and_cgroup2_alone() {
    let Some(run) = nested() else { return };
    assert!(run.ok("modules").contains("kvm-amd"));
    run.ok("kvm-device");
    assert!(run.ok("cgroup2-alone").contains("memory"));
    run.ok("bootstrap");
}

#[test]
fn doctor_reports_cgroup_v2_and_amd_v() {
    let Some(run) = nested() else { return };
    let details = run.ok("doctor");
    assert!(details.contains("cgroups v2"), "{details}");
    assert!(details.contains("/dev/kvm (AMD-V)"), "{details}");
}

#[test]
fn cgroup_v2_limit_files_are_written_and_removed() {
    let Some(run) = nested() else { return };
    let details = run.ok("cgroup-limit-files");
    for want in [
        "memory.max=16777216",
        "memory.swap.max=0",
        "pids.max=10",
        "cpu.max=50000 100000",
        "removed with the container",
    ] {
        assert!(details.contains(want), "{want} in {details}");
    }
}

#[test]
fn cgroup_v2_memory_limit_oom_kills_a_hog() {
    let Some(run) = nested() else { return };
    let details = run.ok("cgroup-memory-oom");
    assert!(details.contains("exit 137"), "{details}");
    assert!(details.contains("\"OOMKilled\": true"), "{details}");
}

#[test]
fn cgroup_v2_pids_limit_stops_a_fork_loop() {
    let Some(run) = nested() else { return };
    assert!(run.ok("cgroup-pids-limit").contains("fork refused"));
}

#[test]
fn cgroup_v2_leaves_no_container_cgroups() {
    let Some(run) = nested() else { return };
    run.ok("cgroup-cleanup");
}

#[test]
fn vm_run_boots_the_guest_kernel() {
    let Some(details) = vm_test("vm-uname") else {
        return;
    };
    let version = details.split(' ').next().unwrap_or_default();
    assert!(
        Path::new("/boot")
            .join(format!("vmlinuz-{version}"))
            .is_file(),
        "the guest runs a kernel from /boot: {details}"
    );
}

#[test]
fn vm_run_is_its_own_boot() {
    vm_test("vm-boot-id");
}

#[test]
fn vm_run_brings_up_two_cpus() {
    vm_test("vm-cpus");
}

#[test]
fn vm_run_returns_the_exit_code() {
    vm_test("vm-exit-code");
}

#[test]
fn vm_run_user_space_output_reaches_the_console() {
    vm_test("vm-console");
}

#[test]
fn vm_run_timings_are_reported() {
    if let Some(details) = vm_test("vm-console") {
        assert!(details.contains("kernel boot to init"), "{details}");
    }
}

#[test]
fn vm_run_boots_an_elf_vmlinux_through_pvh() {
    vm_test("vm-elf-pvh");
}

#[test]
fn detached_vm_is_listed_followed_and_stopped_gracefully() {
    vm_test("vm-detached");
}

/// virtio-blk over virtio-mmio, described in the ACPI DSDT: a stock kernel
/// finds both disks, `dd` reads the read-only one whole (same md5 as the host
/// file), a write to it fails, a write to the other reaches the host file.
#[test]
fn vm_run_reads_and_writes_virtio_blk_disks() {
    if let Some(details) = vm_test("vm-virtio-blk") {
        assert!(details.contains("DSDT found"), "{details}");
    }
}

/// `--rootfs disk`: the image's ext4 disk is built once and shared; each
/// VM's writes stay in its own overlay layer.
#[test]
fn vm_run_boots_from_the_image_disk_shared_by_vms() {
    if let Some(details) = vm_test("vm-rootfs-disk") {
        assert!(details.contains("does not see"), "{details}");
    }
}

/// A Debian image boots from its own disk (`vm run --rootfs disk`): Debian's
/// userland under the guest kernel; `rmi` removes the image's disk with it.
/// Skipped only where this host cannot bootstrap Debian (no mmdebstrap or
/// no mirror), and then the guest must have skipped it too.
#[test]
fn vm_run_boots_a_debian_image_from_its_disk() {
    let Some(run) = nested() else { return };
    if let Some(why) = &run.no_debian {
        eprintln!("skipping: no Debian image for the nested machine: {why}");
        assert_eq!(run.get("vm-debian-disk").status, "skip");
        return;
    }
    run.ok("load-debian-bookworm");
    if let Some(details) = vm_test("vm-debian-disk") {
        assert!(details.contains("os=debian-bookworm"), "{details}");
        assert!(details.contains("rmi removed its disk"), "{details}");
    }
}

/// VM networking (tests/nested/network-checks.sh): a busybox httpd in a VM
/// answers over TCP through `-p` from the nested host.
#[test]
fn vm_network_publishes_a_port_served_by_the_guest() {
    if let Some(details) = vm_test("vm-net-publish") {
        assert!(details.contains("answered"), "{details}");
    }
}

/// A second VM gets its address, route, hosts and resolv.conf and reaches the
/// first VM and a container over TCP on the shared bridge.
#[test]
fn vm_network_reaches_vms_and_containers_on_the_bridge() {
    if let Some(details) = vm_test("vm-net-guest") {
        assert!(details.contains("fetched the other VM's page"), "{details}");
    }
}

/// A container pings the VM and fetches its page by address.
#[test]
fn vm_network_container_reaches_the_vm() {
    if let Some(details) = vm_test("vm-net-container") {
        assert!(details.contains("fetched its page"), "{details}");
    }
}

/// kill -9 of a networked VMM leaves no tap, veth, lease or rule behind.
#[test]
fn vm_network_kill9_leaves_nothing_behind() {
    vm_test("vm-net-kill9");
}

/// The benchmark line: twinbox's VMM against QEMU microvm on the same nested
/// KVM. Printed for the record (ratios, not pass/fail); only both runs must work.
#[test]
fn vm_start_compared_with_qemu_microvm() {
    if let Some(details) = vm_test("vm-vs-qemu") {
        println!("nested boot to workload: {details}");
    }
}

/// Issue 5: the lessons with twinbox's own VMM as the VM half run here, where
/// it can boot the distribution kernel.
#[test]
fn lesson_tour_runs_on_twinbox_own_vmm() {
    if let Some(details) = vm_test("lesson-tour-twinbox") {
        println!("nested lesson tour: {details}");
    }
}

/// A lesson run in the nested machine by tests/nested/lesson-checks.sh with
/// `--runs 1 --json --vm-backend twinbox`: it ran with no failure, its VM
/// half on twinbox's own VMM (hardware-assisted, not QEMU, not emulated), and
/// its report comes back as JSON.
fn nested_lesson(name: &str) -> Option<serde_json::Value> {
    let test = format!("lesson-{name}");
    let details = vm_test(&test)?;
    println!("nested lesson {name}: {details}");
    let run = nested()?;
    let text = run
        .json
        .get(&test)
        .unwrap_or_else(|| panic!("{test}: the nested machine printed no JSON"));
    let json: serde_json::Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("{test}: the printed JSON does not parse ({e}): {text}"));
    // one lesson: its report; a list (tour, course) would be an array
    let report = match json {
        serde_json::Value::Array(mut reports) if reports.len() == 1 => reports.remove(0),
        serde_json::Value::Object(_) => json,
        other => panic!("{test}: want one lesson report: {other}"),
    };
    assert_eq!(report["lesson"], name);
    let backend = &report["vm_backend"];
    assert_eq!(backend["name"], "twinbox", "{test}: {backend}");
    assert_eq!(backend["emulated"], false, "{test}: {backend}");
    let failures = report["failures"].as_array().expect("failures");
    assert!(failures.is_empty(), "{test}: {failures:?}");
    Some(report)
}

/// A measured value (`{"value": x}`), or a panic with why it was not.
fn measured<'a>(v: &'a serde_json::Value, what: &str) -> &'a serde_json::Value {
    v.get("value")
        .unwrap_or_else(|| panic!("{what} was not measured: {v}"))
}

#[test]
fn shared_kernel_lesson_on_twinbox_vmm_the_vm_does_not_see_the_count() {
    let Some(j) = nested_lesson("shared-kernel") else {
        return;
    };
    let k = &j["facts"]["kernel_wide"];
    let started = j["facts"]["tasks_started"].as_i64().unwrap();
    assert!(k["host_rise"].as_i64().unwrap() >= started / 2, "{k}");
    assert_eq!(k["vm_saw_host_tasks"], false, "{k}");
}

#[test]
fn scale_lesson_on_twinbox_vmm_starts_vms_one_by_one() {
    let Some(j) = nested_lesson("scale") else {
        return;
    };
    let c = &j["facts"]["containers"];
    assert_eq!(c["running"], 8, "{c}");
    let v = &j["facts"]["vms"];
    assert_eq!(v["count"], 2, "a 512 MiB budget holds two 256 MiB VMs: {v}");
    assert_eq!(v["running"], 2, "{v}");
    let c_meets = measured(&c["reach"], "containers' reach")["meets_available_at"]
        .as_u64()
        .unwrap();
    let v_meets = measured(&v["reach"], "VMs' reach")["meets_available_at"]
        .as_u64()
        .unwrap();
    assert!(c_meets > v_meets, "{c_meets} containers vs {v_meets} VMs");
}

#[test]
fn desktop_lesson_on_twinbox_vmm_runs_the_container_on_the_vm_kernel() {
    let Some(j) = nested_lesson("desktop") else {
        return;
    };
    let vm = &j["facts"]["vm"];
    assert_eq!(vm["ran"], true, "{vm}");
    let vm_boot = vm["kernel"]["boot_id"].as_str().unwrap();
    let host = measured(
        &j["facts"]["host_container"]["kernel"],
        "the host's container",
    );
    assert_ne!(
        host["boot_id"], vm_boot,
        "the VM booted a kernel of its own"
    );
    let inner = measured(&vm["container_kernel"], "the container in the VM");
    assert_eq!(inner["boot_id"], vm_boot, "{vm}");
    assert_eq!(vm["container_is_vm_kernel"], true, "{vm}");
    assert!(vm["boot_ms"].as_f64().unwrap() > 0.0, "{vm}");
}

/// The dockerfile lesson's VM half: the image it built, booted by twinbox's
/// VMM with `-p`, answers the host with the edited app's page.
#[test]
fn dockerfile_lesson_on_twinbox_vmm_serves_the_built_page_from_the_vm() {
    let Some(j) = nested_lesson("dockerfile") else {
        return;
    };
    let f = &j["facts"];
    assert_eq!(f["unchanged_rebuild_reran_nothing"], true, "{f}");
    assert_eq!(f["edit_reran_only_the_last_steps"], true, "{f}");
    let vm = &f["vm"];
    assert_eq!(vm["ran"], true, "{vm}");
    let v = measured(vm, "the microVM half");
    let page = v["page"].as_str().unwrap_or_default();
    assert!(
        page.contains("served by") && page.contains("version 2"),
        "{v}"
    );
    assert!(v["first_answer_ms"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}

/// The network lesson's VM half: virtio-net inside the guest, its address on
/// the containers' bridge, a NAT rule for its published port, and the two
/// host-to-VM paths timed next to the container's.
#[test]
fn network_lesson_on_twinbox_vmm_puts_virtio_net_on_the_same_bridge() {
    let Some(j) = nested_lesson("network") else {
        return;
    };
    let f = &j["facts"];
    assert_eq!(f["veth_on_bridge"], true, "{f}");
    let vm = &f["vm"];
    assert_eq!(vm["ran"], true, "{vm}");
    let v = measured(vm, "the microVM half");
    let ip = v["ip"].as_str().unwrap_or_default();
    let inside = v["inside"].as_str().unwrap_or_default();
    assert!(!ip.is_empty() && inside.contains(ip), "{v}");
    assert!(inside.contains("eth0 driver: virtio_net"), "{v}");
    assert_eq!(v["nat_rule_for_vm"], true, "{v}");
    let paths = f["paths"].as_array().expect("paths");
    assert_eq!(
        paths.len(),
        5,
        "loopback, container twice, VM twice: {paths:?}"
    );
    // every path measured by iperf3 (bytes really received), and ping
    // answered on each address (a published port has none to ping)
    for p in paths {
        let run = measured(&p["iperf3"], "iperf3");
        assert!(run["bytes"].as_u64().unwrap_or(0) > 0, "{p}");
        assert!(measured(&p["throughput"], "throughput").as_f64().unwrap() > 0.0);
        if p["name"].as_str().unwrap_or_default().contains("published") {
            assert!(p["latency_ms"].is_null(), "{p}");
        } else {
            assert!(
                measured(&p["latency_ms"], "ping")["median"]
                    .as_f64()
                    .unwrap()
                    > 0.0
            );
        }
    }
}

/// The limits lesson with twinbox's VMM: each limit visible and enforced both
/// ways. The container reads its 16 MiB limit in its cgroup file (not in
/// /proc/meminfo, which shows the machine's RAM) and is OOM-killed over it;
/// the VM's kernel sees only its RAM and its own OOM killer ends the hog.
#[test]
fn limits_lesson_on_twinbox_vmm_shows_and_enforces_each_limit() {
    let Some(j) = nested_lesson("limits") else {
        return;
    };
    let c = &j["facts"]["container"];
    assert_eq!(c["memory_limit_seen_bytes"], 16 << 20, "{c}");
    assert_eq!(measured(&c["oom_killed"], "the OOM kill"), true, "{c}");
    assert_eq!(c["memory_exit_code"], 137, "{c}");
    assert_eq!(measured(&c["fork_refused"], "the pids limit"), true, "{c}");
    assert!(c["processes_running"].as_u64().unwrap() < 8, "{c}");
    // the loop was sized from this (emulated) machine's speed and finished
    let count = c["cpu_work"]["count"].as_u64().unwrap();
    assert!((20_000..=1_000_000).contains(&count), "{c}");
    assert!(
        measured(&c["cpu_free_ms"], "the free loop")
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        measured(&c["cpu_capped_ms"], "the capped loop")
            .as_f64()
            .unwrap()
            > 0.0
    );
    let vm = &j["facts"]["vm"];
    assert_eq!(measured(&vm["exit_code"], "the VM's hog"), 137, "{vm}");
    let kib = |seen: &serde_json::Value| -> u64 {
        seen.as_str()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no MemTotal in {seen}"))
    };
    let vm_mib = vm["memory_mib"].as_u64().unwrap();
    assert!(kib(&vm["memtotal_seen"]) <= vm_mib * 1024, "{vm}");
    assert!(kib(&c["memtotal_seen"]) > vm_mib * 1024, "{c}");
}

/// The course's database exercise with twinbox's VMM: the query answered by
/// a container and by a VM through their published ports, and the data of
/// the first container read back by a second one on the same volume.
#[test]
fn exercise_lesson_on_twinbox_vmm_answers_both_ways_and_keeps_data_in_a_volume() {
    let Some(j) = nested_lesson("exercise") else {
        return;
    };
    let f = &j["facts"];
    let first = measured(&f["container"], "the first container");
    assert!(
        first["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("PostgreSQL"),
        "{first}"
    );
    assert_eq!(
        first["exit_code"], 0,
        "stop ends the server cleanly: {first}"
    );
    measured(&f["container_on_the_volume"], "the second container");
    assert_eq!(f["data_survived"], true, "{f}");
    let vm = &f["vm"];
    assert_eq!(vm["ran"], true, "{vm}");
    let v = measured(vm, "the microVM half");
    assert!(
        v["answer"]
            .as_str()
            .unwrap_or_default()
            .contains("PostgreSQL"),
        "{v}"
    );
    assert!(v["ready_ms"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    assert!(v["query"]["median"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}
