//! `attach` to a container without a terminal: its supervisor reads the
//! container's stdout and stderr pipes, keeps them in the log, and sends them
//! to every attached client as frames that say which stream they came from
//! (Docker's attach stream format: one byte 1 or 2, three zero bytes, the
//! length as a big-endian u32, then the data). What a client writes goes to the
//! container's stdin when it was started with `-i` (its stdin is then a pipe
//! the supervisor holds open, as Docker keeps it open for `run -di`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use super::logs::LogWriter;
use crate::util::poll;

/// The first byte a client gets from a supervisor without a terminal.
pub const HELLO: u8 = b'p';

/// A frame header for `len` bytes of stream `stream` (1 stdout, 2 stderr).
pub fn header(stream: u8, len: usize) -> [u8; 8] {
    let n = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// Splits the framed stream back into (stream, data) pieces, holding a partial
/// frame across reads.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    pub fn feed(&mut self, data: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 8 {
                break;
            }
            let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
            let end = 8 + len as usize;
            if self.buf.len() < end {
                break;
            }
            out.push((self.buf[0], self.buf[8..end].to_vec()));
            self.buf.drain(..end);
        }
        out
    }
}

/// Supervisor side: copies the container's stdout and stderr into the log and
/// to every attached client until the container closes both, and the clients'
/// input into `stdin` (when the container has one). A client that cannot keep
/// up is dropped; a container that does not read its stdin makes the clients
/// wait (their input is not read meanwhile), never the supervisor.
pub fn serve(
    out: OwnedFd,
    err: OwnedFd,
    stdin: Option<OwnedFd>,
    listener: &UnixListener,
    log: &mut LogWriter,
    echo: bool,
) {
    let mut files = [Some(File::from(out)), Some(File::from(err))];
    let mut stdin = stdin.map(File::from);
    if let Some(f) = &stdin {
        // SAFETY: fcntl on our own descriptor.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut clients: Vec<UnixStream> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    while files.iter().any(Option::is_some) {
        let mut fds: Vec<(i32, libc::c_short)> = files
            .iter()
            .map(|f| (f.as_ref().map_or(-1, |f| f.as_raw_fd()), libc::POLLIN))
            .collect();
        fds.push((listener.as_raw_fd(), libc::POLLIN));
        let stdin_fd = match (&stdin, pending.is_empty()) {
            (Some(f), false) => f.as_raw_fd(),
            _ => -1,
        };
        fds.push((stdin_fd, libc::POLLOUT));
        // while input waits for the container, clients are not read
        let take_input = pending.is_empty();
        fds.extend(
            clients
                .iter()
                .map(|c| (if take_input { c.as_raw_fd() } else { -1 }, libc::POLLIN)),
        );
        let Ok(ready) = poll::wait(&fds, None) else {
            return;
        };
        let readable = readable_clients(&clients, &ready[4..]);
        for i in 0..2 {
            if !ready[i] {
                continue;
            }
            let Some(f) = files[i].as_mut() else { continue };
            match f.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => files[i] = None,
                Ok(k) => {
                    let data = &buf[..k];
                    let _ = log.feed(i, data);
                    if echo {
                        let _ = if i == 0 {
                            let mut o = std::io::stdout();
                            o.write_all(data).and_then(|_| o.flush())
                        } else {
                            std::io::stderr().write_all(data)
                        };
                    }
                    let head = header(i as u8 + 1, k);
                    clients.retain_mut(|c| c.write_all(&head).and(c.write_all(data)).is_ok());
                }
            }
        }
        if ready[3] {
            if let Some(f) = stdin.as_mut() {
                match f.write(&pending) {
                    Ok(k) => {
                        pending.drain(..k);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // the container closed its stdin: input has nowhere to go
                    Err(_) => {
                        stdin = None;
                        pending.clear();
                    }
                }
            }
        }
        read_clients(&mut clients, &readable, &mut buf, |input| {
            if stdin.is_some() {
                pending.extend_from_slice(input);
            }
        });
        if ready[2] {
            if let Ok((mut client, _)) = listener.accept() {
                let _ = client.set_write_timeout(Some(Duration::from_secs(2)));
                if client.write_all(&[HELLO]).is_ok() {
                    clients.push(client);
                }
            }
        }
    }
}

/// The clients that poll marked readable (`ready` holds their entries, in the
/// order of `clients`), by descriptor: writing output may drop clients before
/// their input is read, so positions in `ready` no longer name them (a client
/// that left as output arrived once made a stale index run past the list and
/// the supervisor panic, closing the attach socket).
pub(super) fn readable_clients(clients: &[UnixStream], ready: &[bool]) -> Vec<RawFd> {
    clients
        .iter()
        .zip(ready)
        .filter(|(_, r)| **r)
        .map(|(c, _)| c.as_raw_fd())
        .collect()
}

/// Reads each client in `readable` once and hands its bytes to `input`; a
/// client at end of file or in error is dropped.
pub(super) fn read_clients(
    clients: &mut Vec<UnixStream>,
    readable: &[RawFd],
    buf: &mut [u8],
    mut input: impl FnMut(&[u8]),
) {
    clients.retain_mut(|c| {
        if !readable.contains(&c.as_raw_fd()) {
            return true;
        }
        match c.read(buf) {
            Ok(0) | Err(_) => false,
            Ok(k) => {
                input(&buf[..k]);
                true
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let mut wire = Vec::new();
        for (s, d) in [(1u8, &b"out one\n"[..]), (2, b"err"), (1, b""), (1, b"two")] {
            wire.extend_from_slice(&header(s, d.len()));
            wire.extend_from_slice(d);
        }
        for step in [1, 3, 7, 8, 100] {
            let mut demux = Demux::default();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                got.extend(demux.feed(chunk));
            }
            assert_eq!(
                got,
                [
                    (1, b"out one\n".to_vec()),
                    (2, b"err".to_vec()),
                    (1, Vec::new()),
                    (1, b"two".to_vec())
                ],
                "step {step}"
            );
        }
    }
}
