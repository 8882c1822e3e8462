//! A VM booted in a thread while the lesson watches its output, so the lesson
//! can look at the host at the moment the workload says it is ready.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::twinbox::Tee;
use crate::backend::{VmBackend, VmRequest, VmRun};

/// Boots `req` and calls `on_ready` once, while the VM still runs, when its
/// output first contains `needle`; then waits for the end.
pub(super) fn boot(
    vm: &dyn VmBackend,
    req: &VmRequest,
    live: Box<dyn Write + Send>,
    needle: &str,
    on_ready: &mut dyn FnMut(),
) -> Result<VmRun, String> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tee = Tee {
        live,
        kept: seen.clone(),
    };
    std::thread::scope(|s| {
        let handle = s.spawn(move || vm.run(req, Box::new(tee)).map_err(|e| e.to_string()));
        // the guest has its boot timeout; the watcher gives up a little later
        let deadline = Instant::now() + req.boot_timeout + Duration::from_secs(30);
        while !handle.is_finished() && Instant::now() < deadline {
            let text = String::from_utf8_lossy(&seen.lock().unwrap_or_else(|e| e.into_inner()))
                .into_owned();
            if text.contains(needle) {
                on_ready();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        handle
            .join()
            .map_err(|_| "the VM thread panicked".to_string())?
    })
}
