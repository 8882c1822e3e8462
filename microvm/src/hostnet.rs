//! Host network plumbing for VMs, with the kernel's classic interface ioctls:
//! running code inside a pinned network namespace, bringing links up, setting
//! MTU and MAC, removing an IPv4 address, a bridge and its ports, a tap.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

// linux/sockios.h: the bridge ioctls (not in the libc crate).
const SIOCBRADDBR: libc::c_ulong = 0x89a0;
const SIOCBRADDIF: libc::c_ulong = 0x89a2;
// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const ARPHRD_ETHER: u16 = 1;

/// Runs `f` on a thread of its own that has entered the network namespace
/// pinned at `netns` (setns moves only the calling thread).
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let ns = File::open(netns)?;
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file, for this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")))
}

/// A socket of the current thread's namespace to issue interface ioctls on.
struct Ctl(OwnedFd);

impl Ctl {
    fn new() -> io::Result<Ctl> {
        // SAFETY: plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is ours alone.
        Ok(Ctl(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: every request used here reads or writes one ifreq, which we own.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, req as *mut libc::ifreq) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

fn context(what: &str, name: &str) -> impl FnOnce(io::Error) -> io::Error {
    let what = format!("{what} {name}");
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Sets or clears IFF_UP.
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let ctl = Ctl::new()?;
    let mut req = ifreq(name)?;
    ctl.ioctl(libc::SIOCGIFFLAGS, &mut req)
        .map_err(context("reading the flags of", name))?;
    // SAFETY: the kernel just filled the flags member.
    unsafe {
        if up {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        } else {
            req.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short);
        }
    }
    ctl.ioctl(libc::SIOCSIFFLAGS, &mut req)
        .map_err(context("setting the flags of", name))
}

pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    Ctl::new()?
        .ioctl(libc::SIOCSIFMTU, &mut req)
        .map_err(context("setting the MTU of", name))
}

/// Sets an Ethernet interface's MAC address (most want it down first).
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut req = ifreq(name)?;
    // SAFETY: sockaddr is plain data; the union member is the hardware address.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = ARPHRD_ETHER;
        for (dst, src) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
    }
    Ctl::new()?
        .ioctl(libc::SIOCSIFHWADDR, &mut req)
        .map_err(context("setting the MAC address of", name))
}

fn ifindex(ctl: &Ctl, name: &str) -> io::Result<libc::c_int> {
    let mut req = ifreq(name)?;
    ctl.ioctl(libc::SIOCGIFINDEX, &mut req)
        .map_err(context("finding", name))?;
    // SAFETY: the kernel just filled the index member.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex })
}

/// Creates a bridge device (down, without ports).
pub fn add_bridge(name: &str) -> io::Result<()> {
    let ctl = Ctl::new()?;
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bridge name"))?;
    // SAFETY: SIOCBRADDBR takes a NUL-terminated name that outlives the call.
    if unsafe { libc::ioctl(ctl.0.as_raw_fd(), SIOCBRADDBR as _, c.as_ptr()) } < 0 {
        return Err(context("creating bridge", name)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes `port` a port of `bridge`.
pub fn add_port(bridge: &str, port: &str) -> io::Result<()> {
    let ctl = Ctl::new()?;
    let mut req = ifreq(bridge)?;
    req.ifr_ifru.ifru_ifindex = ifindex(&ctl, port)?;
    ctl.ioctl(SIOCBRADDIF, &mut req)
        .map_err(context(&format!("adding {port} to bridge"), bridge))
}

/// A tap device of the current thread's namespace, alive as long as the
/// returned file is open (not persistent: a VMM killed with -9 leaves none).
/// Non-blocking; frames are read and written without any prefix.
pub fn open_tap(name: &str) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| io::Error::new(e.kind(), format!("opening /dev/net/tun: {e}")))?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads (and writes back) the ifreq we own.
    if unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            TUNSETIFF as _,
            &mut req as *mut libc::ifreq,
        )
    } < 0
    {
        return Err(context("creating tap", name)(io::Error::last_os_error()));
    }
    Ok(file)
}

/// Removes the interface's (primary) IPv4 address: setting 0.0.0.0 deletes it.
pub fn clear_ipv4(name: &str) -> io::Result<()> {
    let mut req = ifreq(name)?;
    // SAFETY: sockaddr_in fits in the union's sockaddr; all zero is 0.0.0.0.
    unsafe {
        let sin = &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in;
        (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
    }
    Ctl::new()?
        .ioctl(libc::SIOCSIFADDR, &mut req)
        .map_err(context("removing the address of", name))
}

/// Gives the interface an IPv4 address and prefix (replacing its primary one).
pub fn set_ipv4(name: &str, addr: std::net::Ipv4Addr, prefix: u8) -> io::Result<()> {
    let ctl = Ctl::new()?;
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    for (request, value) in [
        (libc::SIOCSIFADDR, u32::from(addr)),
        (libc::SIOCSIFNETMASK, mask),
    ] {
        let mut req = ifreq(name)?;
        // SAFETY: sockaddr_in fits in the union's sockaddr.
        unsafe {
            let sin = &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut libc::sockaddr_in;
            (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
            (*sin).sin_addr.s_addr = value.to_be();
        }
        ctl.ioctl(request, &mut req)
            .map_err(context("setting the address of", name))?;
    }
    Ok(())
}

/// Writes a sysctl of the current thread's network namespace
/// (`net/ipv4/conf/all/arp_ignore`).
pub fn sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// A locally administered unicast MAC address from random bytes.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    if File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut mac))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        mac.copy_from_slice(&(nanos as u64 ^ std::process::id() as u64).to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        let mac = parse_mac("02:ab:00:10:ff:09").unwrap();
        assert_eq!(mac, [2, 0xab, 0, 0x10, 0xff, 9]);
        assert_eq!(format_mac(mac), "02:ab:00:10:ff:09");
        assert_eq!(parse_mac("02:ab:00:10:ff"), None);
        assert_eq!(parse_mac("02:ab:00:10:ff:09:01"), None);
        assert_eq!(parse_mac("zz:ab:00:10:ff:09"), None);
        let r = random_mac();
        assert_eq!(r[0] & 0x03, 0x02, "local, unicast");
    }

    #[test]
    fn bad_interface_names_are_refused() {
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-that-is-far-too-long").is_err());
        assert!(ifreq("ok0").is_ok());
    }
}
