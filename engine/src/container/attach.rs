//! `attach` to a detached container. Its supervisor listens on `attach.sock`
//! in the container's directory. With `-t` it holds the pty master: each
//! client that connects is sent `t` and the master descriptor (only to set the
//! window size on it) and then gets the terminal's output on the socket while
//! what it writes goes to the terminal. Without a terminal the client gets `p`
//! and the framed stdout and stderr of [`streams`]. The client leaves with the
//! detach keys; the container and its log go on untouched.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::logs::LogWriter;
use super::record::{Container, Status};
use super::streams;
use super::terminal::{self, DetachKeys, DetachMatcher, RawMode, RelayEnd};
use super::{ContainerError, Result};
use crate::util::poll;

const SOCKET: &str = "attach.sock";

/// The socket's path through an O_PATH descriptor of the container directory,
/// so its length stays within sun_path however deep the store is.
fn short_path(dir: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd()))
}

fn open_dir(container: &Container) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(&container.dir)
        .map_err(|e| ContainerError::io(&container.dir, e))
}

/// The supervisor's listening socket (a stale one from a dead supervisor is
/// replaced).
pub fn listen(container: &Container) -> Result<UnixListener> {
    let dir = open_dir(container)?;
    let path = short_path(&dir);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| ContainerError::io(container.dir.join(SOCKET), e))?;
    Ok(listener)
}

/// Removes the socket once the container's terminal is gone.
pub fn unlisten(container: &Container) {
    let _ = std::fs::remove_file(container.dir.join(SOCKET));
}

/// Supervisor side: copies the terminal's output to the log and to every
/// attached client, and each client's input to the terminal, until the last
/// process holding the terminal closes it.
pub fn serve(master: &OwnedFd, listener: &UnixListener, log: &mut LogWriter) {
    let Ok(dup) = master.try_clone() else {
        return;
    };
    let mut master_file = File::from(dup);
    let mut clients: Vec<UnixStream> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![master.as_raw_fd(), listener.as_raw_fd()];
        fds.extend(clients.iter().map(|c| c.as_raw_fd()));
        let Ok(ready) = poll::wait_readable(&fds, None) else {
            return;
        };
        let readable = streams::readable_clients(&clients, &ready[2..]);
        if ready[0] {
            // EIO once the last slave descriptor is closed; a signal is not the end
            match master_file.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    let _ = log.feed(0, &buf[..k]);
                    // a client that cannot keep up is dropped, never waited for long
                    clients.retain_mut(|c| c.write_all(&buf[..k]).is_ok());
                }
            }
        }
        streams::read_clients(&mut clients, &readable, &mut buf, |input| {
            let _ = master_file.write_all(input);
        });
        if ready[1] {
            if let Ok((client, _)) = listener.accept() {
                let _ = client.set_write_timeout(Some(Duration::from_secs(2)));
                let fd = [master.as_raw_fd()];
                let sent = sendmsg::<()>(
                    client.as_raw_fd(),
                    &[IoSlice::new(b"t")],
                    &[ControlMessage::ScmRights(&fd)],
                    MsgFlags::empty(),
                    None,
                );
                if sent.is_ok() {
                    clients.push(client);
                }
            }
        }
    }
}

/// Receives the byte the supervisor sends first, and with a terminal the pty
/// master that comes with it.
fn receive_hello(stream: &UnixStream) -> Result<(u8, Option<OwnedFd>)> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let bad = |what: String| ContainerError::Supervisor(format!("attach: {what}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| bad(e.to_string()))?;
    let mut fd = None;
    for cmsg in msg.cmsgs().map_err(|e| bad(e.to_string()))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&first) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                fd = Some(unsafe { OwnedFd::from_raw_fd(first) });
            }
        }
    }
    let _ = stream.set_read_timeout(None);
    if msg.bytes == 0 {
        return Err(bad("the supervisor closed the connection".into()));
    }
    Ok((byte[0], fd))
}

/// Client side (`twinbox attach`): the user's terminal joined to the
/// container's, or without one its stdout and stderr streamed to ours and,
/// when it was started with -i, our input to its stdin (signals we get go to
/// its process with `sig_proxy`, as Docker's --sig-proxy). Returns 0 when
/// detached, else the container's exit code.
pub fn attach(
    container: &Container,
    keys: DetachKeys,
    no_stdin: bool,
    sig_proxy: bool,
) -> Result<i32> {
    let state = container.state()?;
    if state.status != Status::Running {
        return Err(ContainerError::BadOption(
            "you cannot attach to a stopped container, start it first".into(),
        ));
    }
    if super::pause::is_paused(container) {
        return Err(ContainerError::BadOption(
            "you cannot attach to a paused container, unpause it first".into(),
        ));
    }
    let dir = open_dir(container)?;
    let stream = UnixStream::connect(short_path(&dir))
        .map_err(|e| ContainerError::io(container.dir.join(SOCKET), e))?;
    drop(dir);
    let (hello, master) = receive_hello(&stream)?;
    let input = container.options.interactive && !no_stdin;
    let end = match master {
        Some(master) if hello == b't' => {
            let stream: OwnedFd = stream.into();
            let raw = input.then(RawMode::enter);
            let end =
                terminal::relay_stream(&stream, master.as_raw_fd(), input, true, Some(keys), None);
            drop(raw);
            end
        }
        None if hello == streams::HELLO => {
            if let (true, Some(pid)) = (sig_proxy, state.pid) {
                super::signals::forward_to(pid);
            }
            let end = relay_streams(stream, input, keys);
            super::signals::stop_forwarding();
            end
        }
        _ => {
            return Err(ContainerError::Supervisor(
                "attach: the supervisor answered in a way this twinbox does not know".into(),
            ))
        }
    };
    if end == RelayEnd::Detached {
        if container.options.tty {
            let mut out = std::io::stdout();
            let _ = out.write_all(b"\r\n").and_then(|_| out.flush());
        }
        return Ok(0);
    }
    // the streams closed: the container is ending; report its exit code
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = container.state()?;
        if state.status == Status::Exited {
            return Ok(state.exit_code.unwrap_or(0));
        }
        if Instant::now() > deadline {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies the framed output to our stdout and stderr, and our input (with
/// `input`) to the supervisor, until it closes the connection or we detach.
fn relay_streams(mut stream: UnixStream, input: bool, keys: DetachKeys) -> RelayEnd {
    let mut demux = streams::Demux::default();
    let mut matcher = DetachMatcher::new(keys);
    let mut stdin_open = input;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let fds = [stream.as_raw_fd(), if stdin_open { 0 } else { -1 }];
        let Ok(ready) = poll::wait_readable(&fds, None) else {
            return RelayEnd::Closed;
        };
        if ready[0] {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return RelayEnd::Closed,
                Ok(k) => {
                    for (which, data) in demux.feed(&buf[..k]) {
                        // a closed stdout or stderr of ours is not the container's problem
                        let _ = if which == 2 {
                            std::io::stderr().write_all(&data)
                        } else {
                            let mut out = std::io::stdout();
                            out.write_all(&data).and_then(|_| out.flush())
                        };
                    }
                }
            }
        }
        if ready[1] {
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(k) => {
                    let (data, detached) = matcher.feed(&buf[..k]);
                    if stream.write_all(&data).is_err() {
                        return RelayEnd::Closed;
                    }
                    if detached {
                        return RelayEnd::Detached;
                    }
                }
            }
        }
    }
}
