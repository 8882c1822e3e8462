//! One I/O thread per virtio device: it sleeps in poll(2) on the queues'
//! notification eventfds (registered with KVM as ioeventfds, so a guest's
//! QueueNotify write never leaves the kernel) and serves the queue that fired,
//! and on the device's host file (a tap) while the device wants its input.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;

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
        let handle = thread::Builder::new()
            .name(name)
            .spawn(move || serve(&transport, &notifiers, &stop_rx))?;
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
    let mut fds: Vec<libc::pollfd> = std::iter::once(stop)
        .chain(notifiers)
        .map(|e| libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // The host file's slot: a negative fd is ignored by poll(2).
    let host = fds.len();
    fds.push(libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        fds[host].fd = transport
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .host_fd()
            .unwrap_or(-1);
        fds[host].revents = 0;
        // SAFETY: `fds` is a valid array of pollfds that outlives the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("virtio I/O thread: poll: {err}");
            return;
        }
        if fds[0].revents != 0 {
            return;
        }
        for (index, pfd) in fds[1..host].iter().enumerate() {
            if pfd.revents & libc::POLLIN != 0 {
                // Many notifications coalesce into one count: one pass serves all.
                let _ = notifiers[index].read();
                transport
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .notify(index);
            }
        }
        if fds[host].fd >= 0 && fds[host].revents != 0 {
            // Errors and hang-ups too: the device finds out by reading and
            // stops asking to be polled.
            transport
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .host_input();
        }
    }
}
