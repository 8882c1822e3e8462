//! The guest's network card: `eth0` (virtio-net, its driver loaded with the
//! other modules) gets its address, MTU and default route with the classic
//! interface ioctls, and `/etc/hosts` and `/etc/resolv.conf` are written as
//! a container runtime writes them.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use twinbox_init::GuestNetwork;

use crate::failure::Failure;

const IFACE: &str = "eth0";
const RTF_UP: libc::c_ushort = 0x0001;
const RTF_GATEWAY: libc::c_ushort = 0x0002;

/// `struct rtentry` as the kernel reads it (linux/route.h; glibc's libc
/// crate does not have it).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

pub fn configure(net: &GuestNetwork) -> Result<(), Failure> {
    let (addr, prefix) = parse_cidr(&net.address)
        .ok_or_else(|| Failure::msg("configure eth0", format!("bad address {:?}", net.address)))?;
    let sock = Socket::new()?;
    wait_for_card(&sock)?;
    if net.mtu > 0 {
        let mut req = ifreq();
        req.ifr_ifru.ifru_mtu = libc::c_int::from(net.mtu);
        sock.ioctl(libc::SIOCSIFMTU, &mut req, "set eth0's MTU")?;
    }
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    for (request, value, what) in [
        (libc::SIOCSIFADDR, u32::from(addr), "set eth0's address"),
        (libc::SIOCSIFNETMASK, mask, "set eth0's netmask"),
    ] {
        let mut req = ifreq();
        // SAFETY: sockaddr_in fits in the union's sockaddr.
        unsafe { put_ipv4(&mut req.ifr_ifru.ifru_addr, value) };
        sock.ioctl(request, &mut req, what)?;
    }
    let mut req = ifreq();
    sock.ioctl(libc::SIOCGIFFLAGS, &mut req, "read eth0's flags")?;
    // SAFETY: the kernel just filled the flags member.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    sock.ioctl(libc::SIOCSIFFLAGS, &mut req, "bring eth0 up")?;
    if let Some(gateway) = &net.gateway {
        let gw: Ipv4Addr = gateway.parse().map_err(|_| {
            Failure::msg("add the default route", format!("bad gateway {gateway:?}"))
        })?;
        add_default_route(&sock, gw)?;
    }
    write_etc("/etc/hosts", &net.hosts)?;
    write_etc("/etc/resolv.conf", &net.resolv_conf)
}

/// `10.77.0.5/16` → address and prefix.
fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some((addr.parse().ok()?, prefix))
}

/// The driver registers the card while its module loads; give a slow
/// probe a moment before giving up.
fn wait_for_card(sock: &Socket) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut req = ifreq();
        match sock.ioctl(
            libc::SIOCGIFINDEX,
            &mut req,
            "find eth0 (the virtio-net card)",
        ) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn add_default_route(sock: &Socket, gateway: Ipv4Addr) -> Result<(), Failure> {
    // SAFETY: rtentry is plain data; zeroed is a valid value (null pointers).
    let mut route: RtEntry = unsafe { std::mem::zeroed() };
    // SAFETY: sockaddr_in fits in each sockaddr.
    unsafe {
        put_ipv4(&mut route.rt_dst, 0);
        put_ipv4(&mut route.rt_genmask, 0);
        put_ipv4(&mut route.rt_gateway, u32::from(gateway));
    }
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    // SAFETY: SIOCADDRT reads one rtentry, which we own.
    let rc = unsafe { libc::ioctl(sock.0, libc::SIOCADDRT as _, &mut route as *mut RtEntry) };
    if rc != 0 {
        return Err(Failure::last_os(format!(
            "add the default route via {gateway}"
        )));
    }
    Ok(())
}

/// Writes the sockaddr_in of `addr` (host order) into `sa`.
///
/// # Safety
/// `sa` must be a `sockaddr`, which a `sockaddr_in` fits in.
unsafe fn put_ipv4(sa: &mut libc::sockaddr, addr: u32) {
    let sin = sa as *mut libc::sockaddr as *mut libc::sockaddr_in;
    (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
    (*sin).sin_addr.s_addr = addr.to_be();
}

fn ifreq() -> libc::ifreq {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(IFACE.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// An image's /etc may lack the file or hold a symlink to a resolver
/// daemon's copy: the VM's own file replaces it.
fn write_etc(path: &str, text: &str) -> Result<(), Failure> {
    let what = || format!("write {path}");
    std::fs::create_dir_all("/etc").map_err(|e| Failure::io(what(), &e))?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(path);
    }
    std::fs::write(path, text).map_err(|e| Failure::io(what(), &e))
}

struct Socket(libc::c_int);

impl Socket {
    fn new() -> Result<Socket, Failure> {
        // SAFETY: plain socket creation.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Failure::last_os("configure eth0: socket"));
        }
        Ok(Socket(fd))
    }

    fn ioctl(
        &self,
        request: libc::c_ulong,
        req: &mut libc::ifreq,
        what: &str,
    ) -> Result<(), Failure> {
        // SAFETY: each request used here reads or writes one ifreq, which we own.
        if unsafe { libc::ioctl(self.0, request as _, req as *mut libc::ifreq) } != 0 {
            return Err(Failure::last_os(what));
        }
        Ok(())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: the fd is ours.
        unsafe { libc::close(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        assert_eq!(
            parse_cidr("10.77.0.5/16"),
            Some((Ipv4Addr::new(10, 77, 0, 5), 16))
        );
        assert_eq!(parse_cidr("10.77.0.5"), None);
        assert_eq!(parse_cidr("10.77.0.5/33"), None);
        assert_eq!(parse_cidr("x/8"), None);
    }

    #[test]
    fn rtentry_has_the_kernel_layout() {
        // x86_64: 8 + 3 * 16 + 2 + 2 (+4) + 8 + 8 + 2 (+6) + 8 + 8 + 8 + 2 (+6)
        assert_eq!(std::mem::size_of::<RtEntry>(), 120);
    }
}
