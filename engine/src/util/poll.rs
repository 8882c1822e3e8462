//! Waiting for descriptors with poll(2), kept once: a signal (SIGCHLD,
//! SIGWINCH, ...) interrupting the wait is not an error, the wait goes on for
//! what is left of its time.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Waits until one of `fds` is ready for `events` (e.g. `libc::POLLIN`), or
/// the timeout passes (None: no limit). A negative fd is a slot to skip.
/// Returns, per entry, whether it is ready; hang-ups and errors count as
/// ready, so the next read or write finds out what happened.
pub fn wait(
    fds: &[(RawFd, libc::c_short)],
    timeout: Option<Duration>,
) -> std::io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
        };
        // SAFETY: pfds is a valid array of pollfd that outlives the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
        if n >= 0 {
            return Ok(pfds.iter().map(|p| p.fd >= 0 && p.revents != 0).collect());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// [`wait`] for input on every descriptor.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> std::io::Result<Vec<bool>> {
    let fds: Vec<_> = fds.iter().map(|&fd| (fd, libc::POLLIN)).collect();
    wait(&fds, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn tells_which_are_ready_and_skips_negative_slots() {
        let (r1, mut w1) = std::io::pipe().unwrap();
        let (r2, w2) = std::io::pipe().unwrap();
        let fds = [r1.as_raw_fd(), -1, r2.as_raw_fd()];
        let none = wait_readable(&fds, Some(Duration::from_millis(10))).unwrap();
        assert_eq!(none, [false, false, false]);
        w1.write_all(b"x").unwrap();
        assert_eq!(wait_readable(&fds, None).unwrap(), [true, false, false]);
        // a closed writer is a hang-up: ready, and the read says end of file
        drop(w2);
        assert_eq!(wait_readable(&fds, None).unwrap(), [true, false, true]);
        assert_eq!(
            wait(&[(w1.as_raw_fd(), libc::POLLOUT)], None).unwrap(),
            [true]
        );
    }

    #[test]
    fn a_signal_does_not_end_the_wait() {
        extern "C" fn nothing(_: libc::c_int) {}
        // SAFETY: a handler that does nothing, without SA_RESTART, so poll sees EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as *const () as usize;
            libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
        }
        let (r, mut w) = std::io::pipe().unwrap();
        // SAFETY: pthread_self is always valid.
        let me = unsafe { libc::pthread_self() };
        let poker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: signals the waiting thread, which lives until joined below.
            unsafe { libc::pthread_kill(me, libc::SIGUSR2) };
            std::thread::sleep(Duration::from_millis(50));
            w.write_all(b"x").unwrap();
        });
        assert_eq!(wait_readable(&[r.as_raw_fd()], None).unwrap(), [true]);
        poker.join().unwrap();
    }
}
