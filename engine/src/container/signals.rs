//! Signal proxying, like `docker run --sig-proxy` and `docker exec`: signals the
//! user sends to twinbox (ctrl-c, `kill`) go to the container's process instead
//! of killing twinbox, which must live on to record the exit.

use std::sync::atomic::{AtomicI32, Ordering};

/// The pid forwarded signals go to (0: none).
static TARGET: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = TARGET.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// From now on SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 go to `pid`.
pub fn forward_to(pid: i32) {
    TARGET.store(pid, Ordering::Relaxed);
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        // SAFETY: installing a handler that only calls async-signal-safe kill().
        unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
    }
}

/// The process is gone: forwarded signals are dropped.
pub fn stop_forwarding() {
    TARGET.store(0, Ordering::Relaxed);
}

/// A signal as `kill -s`, `--stop-signal` and the image's StopSignal name it:
/// a number, or a name with or without SIG (any case).
pub fn parse(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|sig| sig as i32)
}
