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
use twinbox_microvm::qemu::{QemuOptions, QemuOutcome, QemuRunner};

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
