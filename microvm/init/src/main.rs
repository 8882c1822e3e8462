//! twinbox-init: PID 1 inside a twinbox microVM.
//!
//! The kernel runs it from the initramfs (`rdinit=/twinbox/init`). [`run`]
//! reads top to bottom as the list of steps from "kernel handed over" to
//! "workload done"; [`power_off`] ends the VM with the workload's exit code.
//! PID 1 must never exit (the kernel would panic) and never hang: any failure
//! is printed as `twinbox-init: <what failed>: <why>` and powers off with 125.
//!
//! Named `docker-init` (as `run --init` mounts it in a container), it is a
//! small reaper instead: see [`reaper`].

mod console;
mod failure;
mod modules;
mod mounts;
mod net;
mod reaper;
mod report;
mod root;
mod sys;
mod users;
mod workload;

use twinbox_init::{GuestConfig, CONFIG_PATH, EVENT_INIT_STARTED, EXIT_INIT_FAILED};

use failure::Failure;

fn main() {
    // mounted into a container as /sbin/docker-init (`run --init`)
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.first().is_some_and(|a| reaper::wanted(a)) {
        std::process::exit(i32::from(reaper::run(&args[1..])));
    }
    let code = match run() {
        Ok(code) => code,
        Err(failure) => {
            sys::print_failure(&failure);
            EXIT_INIT_FAILED
        }
    };
    power_off(code)
}

/// Everything between the kernel starting us and the workload's exit code.
fn run() -> Result<u8, Failure> {
    // 1. stdin, stdout and stderr on the console, bytes passed through as written.
    console::open_on_stdio()?;
    // 2. Tell the host we are running (boot-timer port).
    report::enable_ports();
    report::event(EVENT_INIT_STARTED);
    // 3. The usual file systems: /proc, /sys, /dev, /dev/pts, /dev/shm, cgroup2, /tmp.
    mounts::mount_basics()?;
    // 4. What to run, written by the host into the initramfs.
    let config = read_config()?;
    report::set_console_markers(config.console_markers);
    // 5. Drivers the stock kernel has as modules (virtio_mmio and friends).
    modules::load_all(&config.modules)?;
    // 5b. The image's disk as the root, when it comes as a disk; /tmp and
    // friends again on the new root.
    if let Some(disk) = &config.root_disk {
        root::switch_to(disk)?;
        mounts::mount_basics()?;
    }
    // 6. Identity and loopback networking.
    if !config.hostname.is_empty() {
        sys::set_hostname(&config.hostname)?;
    }
    sys::loopback_up()?;
    // 6b. The network card, /etc/hosts and /etc/resolv.conf.
    if let Some(network) = &config.network {
        net::configure(network)?;
    }
    // 7. Who runs the workload, from the image's /etc/passwd and /etc/group.
    let user = users::resolve(&config.user)?;
    // 8. Start the workload in its own session on the console.
    let workload = workload::spawn(&config, &user)?;
    // 9. Reap every child (orphans re-parent to PID 1) until the workload is gone.
    workload::reap_until_exit(workload)
}

fn read_config() -> Result<GuestConfig, Failure> {
    let text =
        std::fs::read(CONFIG_PATH).map_err(|e| Failure::io(format!("read {CONFIG_PATH}"), &e))?;
    serde_json::from_slice(&text)
        .map_err(|e| Failure::msg(format!("parse {CONFIG_PATH}"), e.to_string()))
}

/// Reports the exit code, flushes everything, and resets the machine: the
/// kernel runs with `reboot=k`, so the i8042 reset ends the VM (QEMU with
/// `-no-reboot` exits).
fn power_off(code: u8) -> ! {
    report::workload_exited(code);
    console::drain();
    sys::sync();
    let failure = sys::reboot();
    sys::print_failure(&failure);
    // Out of options: exiting PID 1 panics the kernel, and `panic=-1` resets
    // the machine at once. Better than hanging.
    std::process::exit(i32::from(code))
}
