//! Thin wrappers around the system calls the init needs, each returning a
//! [`Failure`] that names the step.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::failure::Failure;

pub fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, Failure> {
    CString::new(s.as_ref()).map_err(|_| Failure::msg(what, "contains a NUL byte"))
}

pub fn cpath(p: &Path) -> Result<CString, Failure> {
    cstring(p.as_os_str().as_bytes(), &format!("path {}", p.display()))
}

/// Writes all of `bytes` to `fd`, ignoring errors (there is nowhere to report them).
pub fn write_all_fd(fd: libc::c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        } else {
            return;
        }
    }
}

/// `twinbox-init: <what>: <why>` on stderr (the console).
pub fn print_failure(failure: &Failure) {
    write_all_fd(
        libc::STDERR_FILENO,
        format!("twinbox-init: {failure}\n").as_bytes(),
    );
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), Failure> {
    let what = || format!("mount {fstype} on {}", target.display());
    let src = cstring(source, &what())?;
    let dst = cpath(target)?;
    let typ = cstring(fstype, &what())?;
    let dat = cstring(data, &what())?;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            typ.as_ptr(),
            flags,
            dat.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(Failure::last_os(what()));
    }
    Ok(())
}

pub fn set_hostname(name: &str) -> Result<(), Failure> {
    // SAFETY: the pointer and length describe `name`.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(Failure::last_os(format!("set hostname {name:?}")));
    }
    Ok(())
}

/// Brings `lo` up; the kernel then gives it 127.0.0.1 and ::1.
pub fn loopback_up() -> Result<(), Failure> {
    // SAFETY: plain socket creation.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Failure::last_os("bring lo up: socket"));
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let result = (|| {
        // SAFETY: sock is open and req is a valid ifreq naming "lo".
        if unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) } != 0 {
            return Err(Failure::last_os("bring lo up: read flags"));
        }
        // SAFETY: reading and writing the flags member the kernel just filled.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: as above.
        if unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) } != 0 {
            return Err(Failure::last_os("bring lo up: set flags"));
        }
        Ok(())
    })();
    // SAFETY: sock is ours.
    unsafe { libc::close(sock) };
    result
}

/// `CLOCK_MONOTONIC` in nanoseconds: in a fresh guest, about the time since
/// the kernel started.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn sync() {
    // SAFETY: no arguments.
    unsafe { libc::sync() };
}

/// Resets the machine. Returns only when the kernel refused.
pub fn reboot() -> Failure {
    // SAFETY: reboot with a valid command; PID 1 as root is allowed to.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    Failure::last_os("reboot")
}
