//! `attach` to a detached `-t` container. Its supervisor holds the pty master
//! and listens on `attach.sock` in the container's directory; each client that
//! connects is sent the master descriptor (only to set the window size on it)
//! and then gets the terminal's output on the socket while what it writes goes
//! to the terminal. The client leaves with the detach keys; the container and
//! its log go on untouched.

use std::fs::File;
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::logs::LogWriter;
use super::record::{Container, Status};
use super::terminal::{self, DetachKeys, RawMode, RelayEnd};
use super::{ContainerError, Result};

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
        let mut fds = vec![
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        fds.extend(clients.iter().map(|c| libc::pollfd {
            fd: c.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: fds is a valid pollfd array for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            // EIO once the last slave descriptor is closed
            match master_file.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    let _ = log.feed(0, &buf[..k]);
                    // a client that cannot keep up is dropped, never waited for long
                    clients.retain_mut(|c| c.write_all(&buf[..k]).is_ok());
                }
            }
        }
        let mut gone = Vec::new();
        for (i, pfd) in fds[2..].iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            match clients[i].read(&mut buf) {
                Ok(0) | Err(_) => gone.push(i),
                Ok(k) => {
                    let _ = master_file.write_all(&buf[..k]);
                }
            }
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
        if fds[1].revents != 0 {
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

/// Receives the one byte and the pty master the supervisor sends first.
fn receive_master(stream: &UnixStream) -> Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let bad = |what: String| ContainerError::Supervisor(format!("attach: {what}"));
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| bad(e.to_string()))?;
    for cmsg in msg.cmsgs().map_err(|e| bad(e.to_string()))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(bad("the supervisor sent no terminal".into()))
}

/// Client side (`twinbox attach`): the user's terminal joined to the
/// container's. Returns 0 when detached, else the container's exit code.
pub fn attach(container: &Container, keys: DetachKeys, no_stdin: bool) -> Result<i32> {
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
    if !container.options.tty {
        return Err(ContainerError::BadOption(format!(
            "container {} has no terminal: attach works on containers run with -t; use `twinbox logs -f {}` for its output",
            container.name, container.name
        )));
    }
    let dir = open_dir(container)?;
    let stream = UnixStream::connect(short_path(&dir))
        .map_err(|e| ContainerError::io(container.dir.join(SOCKET), e))?;
    drop(dir);
    let master = receive_master(&stream)?;
    let stream: OwnedFd = stream.into();
    let input = container.options.interactive && !no_stdin;
    let raw = input.then(RawMode::enter);
    let end = terminal::relay_stream(&stream, master.as_raw_fd(), input, true, Some(keys), None);
    drop(raw);
    if end == RelayEnd::Detached {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\r\n").and_then(|_| out.flush());
        return Ok(0);
    }
    // the terminal closed: the container is ending; report its exit code
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
