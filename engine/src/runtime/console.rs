//! The container's terminal, made as runc makes it: the init opens the
//! multiplexer of the container's own devpts instance (`/dev/ptmx` after
//! pivot_root, a link to `pts/ptmx`), keeps the slave as its stdin, stdout and
//! stderr, and sends the master back to the runtime over a socket. The slave
//! is then `/dev/pts/0` inside, where `tty` and `ttyname` find it; a pty from
//! the host's devpts would have a name that does not exist in the container.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// Both ends of a pseudo-terminal.
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// A new pty from the devpts instance whose multiplexer is `ptmx`.
pub fn open_pty(ptmx: &Path) -> std::io::Result<Pty> {
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(ptmx)?
        .into();
    let fd = master.as_raw_fd();
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK with a pointer to a live int; fd is our master.
    if unsafe { libc::ioctl(fd, libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER opens the slave of our master without a path lookup
    // (so it is the slave of this very devpts instance).
    let slave = unsafe {
        libc::ioctl(
            fd,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: slave is a fresh descriptor we own.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    Ok(Pty { master, slave })
}

/// The two ends of the socket the init sends the master on: (runtime, init).
pub fn channel() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)
}

/// Sends `fd` as one SCM_RIGHTS message with `tag` as its data (runc's
/// console-socket protocol sends the pty's path there).
pub fn send_fd(sock: RawFd, fd: RawFd, tag: &[u8]) -> std::io::Result<()> {
    let fds = [fd];
    sendmsg::<()>(
        sock,
        &[IoSlice::new(tag)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

/// Receives one descriptor sent by [`send_fd`]; `wait: false` fails at once
/// (EAGAIN) when nothing was sent.
pub fn recv_fd(sock: RawFd, wait: bool) -> std::io::Result<OwnedFd> {
    let mut data = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), flags)?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            let mut fds = fds.into_iter();
            if let Some(fd) = fds.next() {
                for extra in fds {
                    // SAFETY: installed for us by the kernel and not wanted.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "no descriptor in the message",
    ))
}

/// Init side, after pivot_root: a terminal from the container's devpts becomes
/// our 0, 1 and 2 (owned by `uid`, as runc gives the user its stdio), and its
/// master goes to the runtime on `sock`.
pub fn make_terminal(sock: RawFd, uid: u32) -> std::io::Result<()> {
    let pty = open_pty(Path::new("/dev/ptmx"))?;
    if uid != 0 {
        // SAFETY: fchown on our own descriptor; -1 keeps the group (tty).
        if unsafe { libc::fchown(pty.slave.as_raw_fd(), uid, u32::MAX) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    for target in 0..=2 {
        // SAFETY: dup2 of our slave over 0..2, which are ours to replace.
        if unsafe { libc::dup2(pty.slave.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    send_fd(sock, pty.master.as_raw_fd(), b"/dev/ptmx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_travels_over_the_channel() {
        let (ours, theirs) = channel().unwrap();
        assert!(
            recv_fd(ours.as_raw_fd(), false).is_err(),
            "nothing sent yet"
        );
        let file = tempfile::tempfile().unwrap();
        send_fd(theirs.as_raw_fd(), file.as_raw_fd(), b"x").unwrap();
        drop(theirs);
        let got = recv_fd(ours.as_raw_fd(), false).unwrap();
        let same = |fd: RawFd| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(same(got.as_raw_fd()), same(file.as_raw_fd()));
    }
}
