//! Telling the host what happens: event bytes on the boot-timer port, the exit
//! code on its port, and console marker lines for hosts without those ports.

use std::sync::atomic::{AtomicBool, Ordering};

use twinbox_init::{
    Marker, BOOT_TIMER_PORT, EVENT_WORKLOAD_EXITED, EVENT_WORKLOAD_STARTED, EXIT_CODE_PORT,
    STOP_REQUESTED,
};

use crate::failure::Failure;
use crate::sys;

/// Set once `ioperm` granted the two ports.
static PORTS: AtomicBool = AtomicBool::new(false);
/// Markers are printed until the configuration says otherwise: when the init
/// fails before reading it, the host still learns the exit code.
static MARKERS: AtomicBool = AtomicBool::new(true);

/// Asks the kernel for access to the two twinbox ports. Without it (a kernel
/// built without ioperm) the console markers are the only report.
pub fn enable_ports() {
    debug_assert_eq!(EXIT_CODE_PORT, BOOT_TIMER_PORT + 1);
    // SAFETY: ioperm only changes this process's I/O permission bitmap.
    if unsafe { libc::ioperm(BOOT_TIMER_PORT.into(), 2, 1) } == 0 {
        PORTS.store(true, Ordering::Relaxed);
    } else {
        sys::print_failure(&Failure::last_os(
            "ioperm for the boot-timer ports (continuing without them)",
        ));
    }
}

pub fn set_console_markers(on: bool) {
    MARKERS.store(on, Ordering::Relaxed);
}

/// One event byte on the boot-timer port.
pub fn event(code: u8) {
    outb(BOOT_TIMER_PORT, code);
}

/// Right before the workload starts.
pub fn workload_started() {
    event(EVENT_WORKLOAD_STARTED);
    marker(Marker::Started {
        monotonic_ns: sys::monotonic_ns(),
    });
}

/// After the workload was reaped (or the init failed).
pub fn workload_exited(code: u8) {
    event(EVENT_WORKLOAD_EXITED);
    outb(EXIT_CODE_PORT, code);
    marker(Marker::Exit { code });
}

/// Whether the host asked the workload to stop (always false without ports).
pub fn stop_requested() -> bool {
    if !PORTS.load(Ordering::Relaxed) {
        return false;
    }
    let value: u8;
    // SAFETY: ioperm granted this process the port; reading it touches no memory.
    unsafe {
        std::arch::asm!("in al, dx", in("dx") BOOT_TIMER_PORT, out("al") value, options(nomem, nostack, preserves_flags));
    }
    value == STOP_REQUESTED
}

fn marker(m: Marker) {
    if MARKERS.load(Ordering::Relaxed) {
        sys::write_all_fd(libc::STDOUT_FILENO, m.line().as_bytes());
    }
}

fn outb(port: u16, value: u8) {
    if !PORTS.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: ioperm granted this process the port; the VMM (or nothing, under
    // QEMU) handles the write. No memory is touched.
    unsafe {
        std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
    }
}
