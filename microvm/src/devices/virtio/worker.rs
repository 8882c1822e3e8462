//! One I/O thread per virtio device: it sleeps in poll(2) on the queues'
//! notification eventfds (registered with KVM as ioeventfds, so a guest's
//! QueueNotify write never leaves the kernel) and serves the queue that fired,
//! and on the device's host file (a tap) while the device wants its input.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use twinbox_engine::util::poll::wait_readable;
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use crate::threads;

/// A running I/O thread and the eventfd that ends it.
pub struct Worker {
    stop: EventFd,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Serves `transport`'s queue i whenever `notifiers[i]` fires.
    pub fn spawn(
        name: String,
        transport: Arc<Mutex<MmioTransport>>,
        notifiers: Vec<EventFd>,
    ) -> std::io::Result<Worker> {
        let stop = EventFd::new(libc::EFD_NONBLOCK)?;
        let stop_rx = stop.try_clone()?;
        let handle = threads::spawn(&name, move || serve(&transport, &notifiers, &stop_rx))?;
        Ok(Worker {
            stop,
            handle: Some(handle),
        })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.write(1);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(transport: &Mutex<MmioTransport>, notifiers: &[EventFd], stop: &EventFd) {
    let mut fds: Vec<RawFd> = std::iter::once(stop)
        .chain(notifiers)
        .map(|e| e.as_raw_fd())
        .collect();
    // The host file's slot: a negative fd is skipped.
    let host = fds.len();
    fds.push(-1);
    loop {
        fds[host] = transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_fd()
            .unwrap_or(-1);
        let ready = match wait_readable(&fds, None) {
            Ok(ready) => ready,
            Err(err) => {
                tracing::warn!("virtio I/O thread: poll: {err}");
                return;
            }
        };
        if ready[0] {
            return;
        }
        for (index, &ready) in ready[1..host].iter().enumerate() {
            if ready {
                // Many notifications coalesce into one count: one pass serves all.
                let _ = notifiers[index].read();
                transport
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .notify(index);
            }
        }
        if ready[host] {
            // Errors and hang-ups too: the device finds out by reading and
            // stops asking to be polled.
            transport
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .host_input();
        }
    }
}
