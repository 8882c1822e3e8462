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
    crate::threads::spawn("netns", move || {
        // SAFETY: setns on an open namespace file, for this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        f()
    })?
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

/// Turns MAC learning on a bridge port on or off (`bridge link set dev PORT
/// learning off`), with one rtnetlink request: the classic bridge ioctls
/// have no such switch.
pub fn set_port_learning(port: &str, on: bool) -> io::Result<()> {
    // linux/rtnetlink.h, linux/if_link.h
    const RTM_SETLINK: u16 = 19;
    const IFLA_PROTINFO: u16 = 12;
    const IFLA_BRPORT_LEARNING: u16 = 8;
    const NLA_F_NESTED: u16 = 0x8000;
    let index = ifindex(&Ctl::new()?, port)?;
    let mut msg = Vec::with_capacity(44);
    // struct nlmsghdr: length (filled in below), type, flags, sequence, port id
    msg.extend(0u32.to_ne_bytes());
    msg.extend(RTM_SETLINK.to_ne_bytes());
    msg.extend(((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend(1u32.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    // struct ifinfomsg: family, pad, type, index, flags, change
    msg.extend([libc::AF_BRIDGE as u8, 0, 0, 0]);
    msg.extend(index.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    msg.extend(0u32.to_ne_bytes());
    // IFLA_PROTINFO (nested) holding IFLA_BRPORT_LEARNING (u8, padded to 4)
    msg.extend(12u16.to_ne_bytes());
    msg.extend((IFLA_PROTINFO | NLA_F_NESTED).to_ne_bytes());
    msg.extend(5u16.to_ne_bytes());
    msg.extend(IFLA_BRPORT_LEARNING.to_ne_bytes());
    msg.extend([u8::from(on), 0, 0, 0]);
    let len = msg.len() as u32;
    msg[..4].copy_from_slice(&len.to_ne_bytes());
    let what = || format!("setting MAC learning on bridge port {port}");
    netlink_request(&msg).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", what())))
}

/// Sends one NETLINK_ROUTE request and reads its acknowledgement.
fn netlink_request(msg: &[u8]) -> io::Result<()> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is ours alone.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // A reply that never comes must not hang the caller.
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO reads one timeval, which we own.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    // SAFETY: a zeroed sockaddr_nl with its family set addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: msg and kernel outlive the call; the lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = [0u8; 1024];
    // SAFETY: recv writes at most reply.len() bytes into reply.
    let n = unsafe { libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // struct nlmsghdr (16 bytes) then, for NLMSG_ERROR, struct nlmsgerr's error.
    let reply = &reply[..n as usize];
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let error = reply
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, error) {
        (Some(k), Some(0)) if k == libc::NLMSG_ERROR as u16 => Ok(()),
        (Some(k), Some(e)) if k == libc::NLMSG_ERROR as u16 => {
            Err(io::Error::from_raw_os_error(-e))
        }
        _ => Err(io::Error::other(
            "the kernel's reply was not an acknowledgement",
        )),
    }
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

    /// The VM's wire (a bridge joining the CNI veth and the tap) meets a host
    /// bridge in hairpin mode, which sends the guest's own broadcasts back
    /// up the veth. A bridge that learned from them would place the guest's
    /// MAC on the veth and drop every reply to it as "same port". With
    /// learning off on that port, replies still reach the tap.
    #[test]
    fn a_port_without_learning_forwards_replies_to_a_reflected_mac() {
        let outcome = std::thread::spawn(|| -> io::Result<Option<bool>> {
            // SAFETY: unshare moves only this thread into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Ok(None); // not root
            }
            let _ = sysctl("net/ipv6/conf/all/disable_ipv6", "1");
            let _ = sysctl("net/ipv6/conf/default/disable_ipv6", "1");
            let Ok(wire) = open_tap("tbxwire0") else {
                return Ok(None); // no /dev/net/tun
            };
            let guest = open_tap("tbxguest0")?;
            add_bridge("tbxbr0")?;
            add_port("tbxbr0", "tbxwire0")?;
            add_port("tbxbr0", "tbxguest0")?;
            set_port_learning("tbxwire0", false)?;
            for name in ["tbxwire0", "tbxguest0", "tbxbr0"] {
                set_up(name, true)?;
            }
            let guest_mac = [2u8, 0, 0, 0, 0, 0x42];
            let peer_mac = [2u8, 0, 0, 0, 0, 0x43];
            let frame = |dst: [u8; 6], src: [u8; 6], tag: u8| {
                let mut f = dst.to_vec();
                f.extend(src);
                f.extend([0x88, 0xb5, tag]); // local experimental ethertype
                f.resize(60, 0);
                f
            };
            // The guest broadcasts; the hairpin reflects it up the wire.
            io::Write::write_all(&mut &guest, &frame([0xff; 6], guest_mac, 1))?;
            io::Write::write_all(&mut &wire, &frame([0xff; 6], guest_mac, 2))?;
            // The peer's reply to the guest arrives on the wire.
            io::Write::write_all(&mut &wire, &frame(guest_mac, peer_mac, 3))?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut buf = [0u8; 2048];
            while std::time::Instant::now() < deadline {
                match io::Read::read(&mut &guest, &mut buf) {
                    Ok(n) if n >= 15 && buf[..6] == guest_mac && buf[14] == 3 => {
                        return Ok(Some(true))
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(Some(false))
        })
        .join()
        .unwrap();
        match outcome.unwrap() {
            None => eprintln!("skipped: needs root and /dev/net/tun"),
            Some(reached) => assert!(reached, "the reply never reached the guest's tap"),
        }
    }

    #[test]
    fn bad_interface_names_are_refused() {
        assert!(ifreq("").is_err());
        assert!(ifreq("a-name-that-is-far-too-long").is_err());
        assert!(ifreq("ok0").is_ok());
    }
}
