//! The same request under QEMU instead of twinbox's VMM (`vm run --backend
//! qemu`): same kernel choice and initramfs, in the foreground only and with
//! no VM record, since QEMU owns the VM's life.

use std::io::Write;
use std::time::Duration;

use super::run::RunRequest;
use super::{choose_kernel, InstanceError, Result};
use crate::guest::{build_initrd, GuestSpec};
use crate::qemu::{QemuOptions, QemuOutcome, QemuRunner};

/// Runs `req` under QEMU and waits for its end; the workload's output goes to
/// `live`. `on_runner` sees the runner first (to warn about emulation).
pub fn run(
    req: RunRequest,
    live: &mut dyn Write,
    on_runner: impl FnOnce(&QemuRunner),
) -> Result<QemuOutcome> {
    if req.rootfs != super::run::Rootfs::Initramfs || !req.disks.is_empty() {
        return Err(InstanceError::Unsupported(
            "disks (--disk, --rootfs disk) work with --backend twinbox only for now: drop them or the QEMU backend",
        ));
    }
    let kernel = choose_kernel(req.kernel.as_deref())?;
    let mut options = req.options.clone();
    let name = req
        .name
        .clone()
        .unwrap_or_else(twinbox_engine::container::names::random_name);
    options.hostname.get_or_insert(name);
    let spec = GuestSpec::from_image(req.image, &options);
    let initrd = build_initrd(req.store, req.image, &spec, &kernel)?;
    let qemu = QemuRunner::find()?;
    on_runner(&qemu);
    let options = QemuOptions {
        memory_mib: req.memory_mib as u32,
        cpus: req.vcpus as u32,
        // QEMU's limit covers the whole run; the workload may take its time.
        timeout: req.boot_timeout + req.run_timeout.unwrap_or(Duration::from_secs(24 * 3600)),
        extra_cmdline: req
            .kernel_args
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    qemu.run(&kernel, &initrd.bytes, &options, Some(live))
        .map_err(InstanceError::from)
}
