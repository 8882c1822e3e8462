//! The console: opened on the standard descriptors for the init's own output,
//! switched to raw output, and drained before the machine resets.

use std::path::Path;

use crate::failure::Failure;
use crate::mounts;
use crate::sys;

pub const CONSOLE: &str = "/dev/console";

/// Opens the console on fds 0, 1 and 2. When the initramfs has no
/// /dev/console node, devtmpfs provides one first. Output post-processing
/// (`\n` to `\r\n`) is switched off so the host sees the bytes as written.
pub fn open_on_stdio() -> Result<(), Failure> {
    let path = Path::new(CONSOLE);
    if !path.exists() {
        mounts::mount_devtmpfs()?;
    }
    let c = sys::cpath(path)?;
    // SAFETY: open with a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    if fd < 0 {
        return Err(Failure::last_os(format!("open {CONSOLE}")));
    }
    for target in 0..=2 {
        // SAFETY: dup2 of a valid fd onto a standard descriptor number.
        if fd != target && unsafe { libc::dup2(fd, target) } < 0 {
            return Err(Failure::last_os(format!("dup2 {CONSOLE}")));
        }
    }
    if fd > 2 {
        // SAFETY: fd is ours and no longer needed.
        unsafe { libc::close(fd) };
    }
    raw_output(libc::STDOUT_FILENO)
}

/// Clears ONLCR: a workload's "\n" reaches the host as "\n".
fn raw_output(fd: libc::c_int) -> Result<(), Failure> {
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; t is a valid termios.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        // Not a terminal (a console without a tty driver): nothing to change.
        return Ok(());
    }
    t.c_oflag &= !libc::ONLCR;
    // SAFETY: as above.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
        return Err(Failure::last_os("set console output mode"));
    }
    Ok(())
}

/// Waits until the console has sent everything written to it, so the exit
/// marker is not lost when the machine resets.
pub fn drain() {
    // SAFETY: tcdrain on a standard fd; failure only means "not a tty".
    unsafe { libc::tcdrain(libc::STDOUT_FILENO) };
}
