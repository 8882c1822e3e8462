//! The guest side end to end, under QEMU (software emulation where this
//! host's KVM cannot boot a stock kernel): the busybox image, flattened into
//! an initramfs with twinbox-init, boots the distribution kernel, runs its
//! workload with the image's settings, and reports the exit code.
//!
//! Needs root, `qemu-system-x86_64` and a kernel in /boot with its modules
//! (scripts/install-deps.sh installs qemu-system-x86 and linux-image-amd64),
//! and the static init (scripts/build-init.sh).

mod common;

use std::time::Duration;

use twinbox_engine::container::RunOptions;
use twinbox_engine::image::Image;
use twinbox_engine::store::Store;
use twinbox_microvm::guest::{build_initrd, GuestSpec};
use twinbox_microvm::host::{self, GuestKernel, KernelFormat};
use twinbox_microvm::qemu::{QemuOptions, QemuOutcome, QemuRunner, MACHINE_ENV};

struct Guest {
    lab: common::Lab,
    store: Store,
    kernel: GuestKernel,
    qemu: QemuRunner,
}

fn guest() -> Option<Guest> {
    let lab = common::lab()?;
    let Some(kernel) = host::find_kernels()
        .into_iter()
        .find(|k| k.format == KernelFormat::BzImage && k.modules_dir.is_some())
    else {
        eprintln!("skipping: no kernel with modules in /boot (apt-get install linux-image-amd64)");
        return None;
    };
    let qemu = match QemuRunner::find() {
        Ok(q) => q,
        Err(e) => {
            eprintln!("skipping: {e}");
            return None;
        }
    };
    let store = Store::open(lab.root()).unwrap();
    Some(Guest {
        lab,
        store,
        kernel,
        qemu,
    })
}

impl Guest {
    fn boot(&self, image: &Image, spec: &GuestSpec, cpus: u32) -> QemuOutcome {
        let initrd = build_initrd(&self.store, image, spec, &self.kernel).expect("initrd");
        let opts = QemuOptions {
            cpus,
            timeout: Duration::from_secs(120),
            ..Default::default()
        };
        let mut live = Vec::new();
        let outcome = self
            .qemu
            .run(&self.kernel, &initrd.bytes, &opts, Some(&mut live))
            .expect("qemu run");
        assert_eq!(
            live, outcome.output,
            "live output equals the collected output"
        );
        eprintln!(
            "qemu {:?}/{:?}: workload started after {:?} (guest clock {:?}), QEMU ran {:?}, initrd {} KiB",
            self.qemu.machine,
            self.qemu.accel,
            outcome.timings.to_workload_start,
            outcome.timings.guest_monotonic_at_start,
            outcome.timings.total,
            initrd.total_len / 1024
        );
        outcome
    }
}

fn lines(outcome: &QemuOutcome) -> Vec<String> {
    String::from_utf8_lossy(&outcome.output)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_guest_runs_the_image_workload_on_its_own_kernel() {
    let Some(g) = guest() else { return };
    let mut image = Image::resolve(&g.store, "busybox").unwrap();
    // Settings as an image's config would carry them (ENV and WORKDIR in a Dockerfile).
    let mut config = image.config.config().clone().unwrap_or_default();
    let mut env = config.env().clone().unwrap_or_default();
    env.push("GREETING=from-the-image".into());
    config.set_env(Some(env));
    config.set_working_dir(Some("/srv/app".into()));
    image.config.set_config(Some(config));

    let opts = RunOptions {
        hostname: Some("guest-one".into()),
        env: vec!["FROM_CLI=yes".into()],
        cmd: vec![
            "sh".into(),
            "-c".into(),
            concat!(
                "uname -r; echo cwd=$(pwd); echo greeting=$GREETING cli=$FROM_CLI term=${TERM-unset}; ",
                "echo host=$(hostname) cpus=$(grep -c ^processor /proc/cpuinfo) root=$(stat -c %a /) lo=$(cat /sys/class/net/lo/flags); ",
                "grep -q '^virtio_mmio ' /proc/modules && echo module=loaded; ",
                "echo to-stderr >&2; printf no-newline; exit 7"
            )
            .into(),
        ],
        ..Default::default()
    };
    let mut spec = GuestSpec::from_image(&image, &opts);
    spec.modules = vec!["virtio_mmio".into()];
    let outcome = g.boot(&image, &spec, 2);

    assert_eq!(outcome.exit_code, 7, "output: {:?}", lines(&outcome));
    let out = lines(&outcome);
    let host_release = common::host("uname", &["-r"]);
    assert_eq!(
        out[0], g.kernel.version,
        "the guest runs the kernel it was given"
    );
    assert_ne!(
        out[0], host_release,
        "a VM does not share the host's kernel"
    );
    assert_eq!(out[1], "cwd=/srv/app");
    // exactly the configured environment: nothing from the kernel (TERM=linux)
    assert_eq!(out[2], "greeting=from-the-image cli=yes term=unset");
    // lo is up: IFF_UP | IFF_LOOPBACK
    assert_eq!(out[3], "host=guest-one cpus=2 root=755 lo=0x9");
    assert_eq!(out[4], "module=loaded");
    assert_eq!(out[5], "to-stderr");
    assert_eq!(
        out[6], "no-newline",
        "output without a final newline is kept"
    );
    assert_eq!(out.len(), 7, "{out:?}");
    assert!(outcome.emulated == (outcome.accel == twinbox_microvm::qemu::Accel::Tcg));
    assert!(outcome.timings.to_workload_start.unwrap() < outcome.timings.total);

    // The image part of the initrd is cached per image for the next boot.
    let cached = g
        .lab
        .root()
        .join("cache/initramfs")
        .join(format!("{}.cpio.gz", image.manifest_digest.hex()));
    assert!(cached.is_file(), "{}", cached.display());
}

#[test]
fn a_missing_command_exits_127_and_says_so() {
    let Some(g) = guest() else { return };
    let image = Image::resolve(&g.store, "busybox").unwrap();
    let opts = RunOptions {
        cmd: vec!["no-such-command".into(), "arg".into()],
        user: Some("nobody".into()),
        ..Default::default()
    };
    let spec = GuestSpec::from_image(&image, &opts);
    let outcome = g.boot(&image, &spec, 1);
    assert_eq!(outcome.exit_code, 127);
    let text = String::from_utf8_lossy(&outcome.output);
    assert!(
        text.contains("twinbox-init: exec \"no-such-command\": executable file not found in $PATH"),
        "{text}"
    );
}

#[test]
fn a_failing_init_says_why_and_still_powers_off_with_125() {
    let Some(g) = guest() else { return };
    let image = Image::resolve(&g.store, "busybox").unwrap();
    // /proc is mounted by then: the init cannot create a directory in it.
    let opts = RunOptions {
        workdir: Some("/proc/no-such-dir".into()),
        cmd: vec!["true".into()],
        ..Default::default()
    };
    let spec = GuestSpec::from_image(&image, &opts);
    let outcome = g.boot(&image, &spec, 1);
    assert_eq!(outcome.exit_code, 125);
    assert!(outcome.output.is_empty(), "the workload never started");
    let log = String::from_utf8_lossy(&outcome.boot_log);
    assert!(
        log.contains("twinbox-init: create working directory /proc/no-such-dir: "),
        "{log}"
    );
}

/// Removes a VM however the test ends (a detached QEMU VM would run on).
struct VmGuard<'a> {
    lab: &'a common::Lab,
    name: &'a str,
}

impl Drop for VmGuard<'_> {
    fn drop(&mut self) {
        let _ = self.lab.tb(&["vm", "rm", "-f", self.name]);
    }
}

/// The children of `pid` (from /proc/PID/task/*/children).
fn children(pid: i64) -> Vec<i64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A guest for a VM on the containers' bridge; None (said why) without CNI
/// plugins.
fn guest_on_bridge() -> Option<Guest> {
    let g = guest()?;
    if twinbox_engine::network::cni::plugin_dir().is_none() {
        eprintln!("skipping: no CNI plugins");
        return None;
    }
    Some(g)
}

/// A 1 MiB extra disk of 'Z's (0x5a), for `--disk`.
fn extra_disk(lab: &common::Lab) -> std::path::PathBuf {
    let extra = lab.root().join("extra.img");
    std::fs::write(&extra, vec![0x5au8; 1 << 20]).unwrap();
    extra
}

/// The page a VM serves on the host's `port`, fetched until it answers:
/// emulated boots take a while, so for up to 5 minutes (empty if never).
fn page_within_5_minutes(port: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut page = String::new();
    while page.is_empty() && std::time::Instant::now() < deadline {
        page = common::net::fetch(&format!("http://127.0.0.1:{port}/"));
    }
    page
}

/// Whether `pid` still runs (a zombie no longer does).
fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rfind(')').and_then(|i| s[i + 2..].chars().next());
            !matches!(state, Some('Z' | 'X'))
        })
        .unwrap_or(false)
}

/// `vm run --backend qemu` takes the twinbox backend's path: the image's
/// disk as the root (read-only, shared) under the VM's own writable layer,
/// extra disks, the containers' bridge with an address from the same IPAM,
/// `-p` through portmap, a record for `vm ps`, and a detached VMM process
/// (QEMU its child). A busybox httpd in the VM is fetched from the host via
/// 127.0.0.1, and kill -9 of the VMM process leaves no QEMU, tap, veth,
/// address or NAT rule once the next command has recovered.
#[test]
fn a_qemu_vm_serves_from_its_disk_root_over_the_bridge_and_kill_9_leaves_nothing() {
    let Some(g) = guest_on_bridge() else { return };
    let lab = &g.lab;
    let extra = extra_disk(lab);
    let name = "vmqemu-web";
    let _guard = VmGuard { lab, name };
    let workload = concat!(
        "mkdir -p /www && cd /www && ",
        "{ grep -q ' / overlay ' /proc/mounts && echo root=overlay; ",
        "echo vda_ro=$(cat /sys/block/vda/ro) vdb_ro=$(cat /sys/block/vdb/ro); ",
        "dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null && echo dd=ok; ",
        "echo written >/etc/from-the-vm && echo write=ok; ",
        "echo extra=$(head -c 4 /dev/vdb); } >index.html; ",
        "cat index.html; exec httpd -f -p 80 -h /www"
    );
    let port = common::net::free_port().to_string();
    let publish = format!("{port}:80");
    let r = lab.tb(&[
        "vm",
        "run",
        "-d",
        "--backend",
        "qemu",
        "--name",
        name,
        "--rootfs",
        "disk",
        "--disk",
        &format!("{}:ro", extra.display()),
        "--network",
        "bridge",
        "-p",
        &publish,
        "--kernel",
        &g.kernel.path.display().to_string(),
        "--boot-timeout",
        "300",
        "busybox",
        "sh",
        "-c",
        workload,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    let inspect = lab.tb(&["vm", "inspect", name]);
    let all: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let v = &all[0];
    assert_eq!(v["backend"], "qemu");
    let address = v["network"]["address"].as_str().unwrap().to_string();
    let pid = v["state"]["pid"].as_i64().unwrap();
    let ps = lab.tb(&["vm", "ps"]);
    assert!(
        ps.stdout.contains(&address) && ps.stdout.contains(&format!("0.0.0.0:{port}->80/tcp")),
        "{}",
        ps.stdout
    );
    let lease = std::path::Path::new("/run/twinbox/ipam/bridge").join(&address);
    assert!(lease.exists(), "no host-local lease for {address}");

    let page = page_within_5_minutes(&port.to_string());
    let log = lab.tb(&["vm", "logs", "--console", name]).stdout;
    assert_eq!(
        page, "root=overlay\nvda_ro=1 vdb_ro=1\ndd=ok\nwrite=ok\nextra=ZZZZ\n",
        "console: {log}"
    );
    // The workload's output is the VM's log, as for twinbox's VMM.
    assert!(lab.tb(&["vm", "logs", name]).stdout.contains("dd=ok"));

    // QEMU is the VMM process's child; its tap sits on br0 in the VM's namespace.
    let qemu: Vec<i64> = children(pid)
        .into_iter()
        .filter(|c| twinbox_engine::util::procfs::cmdline(*c as i32).contains("qemu-system"))
        .collect();
    assert_eq!(qemu.len(), 1, "one QEMU under the VMM process {pid}");
    let netns = lab.root().join("vms").join(&id).join("netns");
    let links = common::host(
        "nsenter",
        &[&format!("--net={}", netns.display()), "ip", "-o", "link"],
    );
    assert!(
        links
            .lines()
            .any(|l| l.contains(" tap0") && l.contains("master br0")),
        "{links}"
    );

    common::host("kill", &["-9", &pid.to_string()]);
    let gone = std::time::Instant::now() + Duration::from_secs(10);
    while alive(qemu[0]) && std::time::Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(qemu[0]), "QEMU ends with its VMM process");
    // The initrd was never a file a killed VMM process could leave behind.
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("twinbox-qemu-{pid}-")))
        .collect();
    assert!(left.is_empty(), "left in the temp dir: {left:?}");
    // The next command recovers: DEL, the namespace goes, and with it the
    // veth (the tap went with QEMU).
    let ps = lab.tb(&["vm", "ps", "-a"]);
    assert!(ps.stdout.contains("Failed"), "{}", ps.stdout);
    assert!(!netns.exists(), "the VM's namespace is gone");
    assert!(!lease.exists(), "the address is released");
    let nat = common::host("iptables", &["-t", "nat", "-S"]);
    assert!(!nat.contains(&port) && !nat.contains(&address), "{nat}");
    assert!(!common::host("iptables", &["-S"]).contains(&address));
    assert_eq!(lab.tb(&["vm", "rm", name]).code, 0);
}

/// QEMU's `-M microvm` device path, as `vm run --backend qemu` takes it on a
/// host whose KVM QEMU can use: virtio-mmio devices (found by the guest
/// through QEMU's ACPI tables, LNRO0005) for the image's disk root, the VM's
/// own writable disk, an extra read-only disk and the network card. Here
/// (no such KVM) QEMU emulates the CPU and would take q35; microvm is asked
/// for ([`MACHINE_ENV`]) and boots under TCG with the TSC's frequency given.
/// Also: the writable disk is mounted with `discard`, so a deleted big file
/// leaves the host's sparse file small; and QEMU's memory is recorded by the
/// memory lesson's method when the VM ends.
#[test]
fn qemu_microvm_serves_over_virtio_mmio_discards_deleted_files_and_records_its_memory() {
    let port = common::net::free_port();
    let publish = format!("{port}:80");
    let Some(g) = guest_on_bridge() else { return };
    let lab = &g.lab;
    let extra = extra_disk(lab);
    let name = "vmqemu-microvm";
    let _guard = VmGuard { lab, name };
    let workload = concat!(
        "mkdir -p /www && cd /www && ",
        "{ echo mmio=$(ls -d /sys/bus/platform/drivers/virtio-mmio/LNRO0005:* | wc -l); ",
        "for d in vda vdb vdc; do echo $d ro=$(cat /sys/block/$d/ro) serial=$(cat /sys/block/$d/serial); done; ",
        "dd if=/dev/vdc of=/dev/null bs=64k 2>/dev/null && echo dd=ok; ",
        "dd if=/dev/zero of=/big bs=1M count=48 conv=fsync 2>/dev/null && rm /big && sync && echo big=written-and-removed; ",
        "echo extra=$(head -c 4 /dev/vdc); } >index.html; ",
        "cat index.html; exec httpd -f -p 80 -h /www"
    );
    let kernel = g.kernel.path.display().to_string();
    let extra_ro = format!("{}:ro", extra.display());
    let r: common::Run = lab
        .cmd(&[
            "vm",
            "run",
            "-d",
            "--backend",
            "qemu",
            "--name",
            name,
            "--rootfs",
            "disk",
            "--disk-size",
            "128m",
            "--disk",
            &extra_ro,
            "--network",
            "bridge",
            "-p",
            &publish,
            "--kernel",
            &kernel,
            "--boot-timeout",
            "300",
            "busybox",
            "sh",
            "-c",
            workload,
        ])
        .env(MACHINE_ENV, "microvm")
        .output()
        .expect("run twinbox")
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    let inspect = lab.tb(&["vm", "inspect", name]);
    let all: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let pid = all[0]["state"]["pid"].as_i64().unwrap();
    // the detached VMM answers with the id before it has started QEMU
    let spawned = std::time::Instant::now() + Duration::from_secs(30);
    let qemu: Vec<String> = loop {
        let found: Vec<String> = children(pid)
            .into_iter()
            .map(|c| twinbox_engine::util::procfs::cmdline(c as i32))
            .filter(|c| c.contains("qemu-system"))
            .collect();
        if !found.is_empty() || std::time::Instant::now() > spawned {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(qemu.len(), 1, "one QEMU under the VMM process {pid}");
    for want in ["-M microvm", "virtio-blk-device", "virtio-net-device"] {
        assert!(qemu[0].contains(want), "{want} in {}", qemu[0]);
    }

    let page = page_within_5_minutes(&port.to_string());
    let log = lab.tb(&["vm", "logs", "--console", name]).stdout;
    assert_eq!(
        page,
        concat!(
            "mmio=4\n",
            "vda ro=1 serial=twinbox-vda\n",
            "vdb ro=0 serial=twinbox-vdb\n",
            "vdc ro=1 serial=twinbox-vdc\n",
            "dd=ok\n",
            "big=written-and-removed\n",
            "extra=ZZZZ\n"
        ),
        "console: {log}"
    );
    // 48 MiB went through the writable disk and were deleted: with `discard`
    // their blocks are holes in the host's file again.
    let rw = lab.root().join("vms").join(&id).join("rw.ext4");
    let meta = std::fs::metadata(&rw).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.len(), 128 << 20);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < 24 << 20,
        "{} holds {allocated} bytes after the guest deleted its 48 MiB file",
        rw.display()
    );

    assert_eq!(lab.tb(&["vm", "stop", name]).code, 0);
    let inspect = lab.tb(&["vm", "inspect", name]);
    let all: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let memory = &all[0]["state"]["memory"];
    let (rss, guest, overhead) = (
        memory["process_rss"].as_u64().unwrap_or(0),
        memory["guest_resident"].as_u64().unwrap_or(0),
        memory["vmm_overhead"].as_u64().unwrap_or(0),
    );
    assert!(
        guest > 0 && guest <= 256 << 20 && overhead > 0 && rss == guest + overhead,
        "QEMU's memory in the record: {memory}"
    );
    assert_eq!(lab.tb(&["vm", "rm", name]).code, 0);
}
