//! Published ports translated at `connect()` for the host's own connections
//! (what Cilium calls socket-level load balancing), so no packet of them is NATed.
//!
//! Why: portmap's DNAT (plus MASQUERADE of 127.0.0.1) rewrites every packet of a
//! connection through `-p`. Measured in bench/README (net-bench), that held a
//! host → container stream at 0.70-0.76x of loopback, while the container's
//! own address reached 0.96x. A connection whose destination is changed
//! before it exists has no NAT at all: the kernel routes it straight to the
//! container's address over the bridge.
//!
//! How: one `BPF_PROG_TYPE_CGROUP_SOCK_ADDR` program on the `connect4` hook
//! (`BPF_CGROUP_INET4_CONNECT`) of the cgroup2 root, attached with
//! `BPF_F_ALLOW_MULTI` (other users' programs keep running). On every IPv4
//! `connect()` in the host's network namespace (checked by comparing
//! `bpf_get_netns_cookie` with the cookie twinbox read when it loaded the
//! program: a container connecting to its own 127.0.0.1:5432 is never
//! touched) it looks the destination up in a hash map:
//!
//! - `(ip, port, proto)` exactly: ports published on one address (`-p
//!   127.0.0.1:8080:80` matches 127.0.0.1 only, as portmap's `-d` does);
//! - `(0.0.0.0, port, proto)`: ports published on every address, tried when
//!   the destination is 0.0.0.0, in 127.0.0.0/8, or one of the host's own
//!   addresses (marker entries `(ip, 0, 0)`, refreshed from the interfaces
//!   each time an entry is added or removed; an address that appears later
//!   goes through DNAT until then, as before).
//!
//! A hit rewrites `user_ip4`/`user_port` to the container's address and port.
//! TCP and connected UDP (`nc -u` connects) are matched; unconnected UDP
//! (`sendto`) is not hooked and keeps the DNAT path. The peer the client sees
//! (`getpeername`) is the container's address: no `getpeername4` program,
//! because it would need per-socket storage to know which of 127.0.0.1,
//! 0.0.0.0 or a host address was dialled, and nothing in the course needs it.
//! The container sees the connection come from the bridge's address, as it
//! did with portmap's MASQUERADE of 127.0.0.1.
//!
//! portmap's rules stay for everything else: traffic from other hosts and from
//! containers, unconnected UDP, and the host itself whenever BPF is not
//! available (no cgroup2, no privilege, an old kernel, a verifier refusal):
//! then `publish` says why, the caller logs it at debug, and nothing changes.
//!
//! State: the map (key 0.0.0.0:0/0 holds the host's netns cookie, so a later
//! process can tell it is the same namespace). No bpffs: later twinbox
//! processes find the attached program by its name (`BPF_PROG_QUERY` on the
//! cgroup, `BPF_OBJ_GET_INFO_BY_FD`) and its map through the program's map ids.
//! The attachment holds the program and the program holds the map; when the
//! last published port is withdrawn the program is detached and both go.
//! Every change runs under the network lock (`netfilter::lock`).

use std::collections::HashSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::util::bpf::{self, Asm, Insn, FP, R0, R1, R2, R6, R7, R8, R9};

/// The program's and the map's name: how later processes recognise them.
pub const NAME: &str = "twinbox_lb";

const PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const ATTACH_INET4_CONNECT: u32 = 10;

// kernel helpers (enum bpf_func_id)
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_GET_NETNS_COOKIE: i32 = 122;

// fields of `struct bpf_sock_addr`, the context the program gets
const CTX_USER_IP4: i16 = 4;
const CTX_USER_PORT: i16 = 24;
const CTX_PROTOCOL: i16 = 36;

const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;

// the key on the program's stack: ip at fp-16, port at fp-12, protocol at fp-8
const KEY_IP: i16 = -16;
const KEY_PORT: i16 = -12;
const KEY_PROTO: i16 = -8;
const KEY_SIZE: usize = 12;
const VALUE_SIZE: usize = 8;
/// Allocated on use (`BPF_F_NO_PREALLOC`): the limit costs nothing.
const MAX_ENTRIES: u32 = 65536;

/// Why socket-level translation is not in use (the DNAT path carries on).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

fn unavailable(what: &str, e: impl std::fmt::Display) -> Unavailable {
    Unavailable(format!("{what}: {e}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }

    fn number(self) -> u32 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
        }
    }
}

/// One published port as the program sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    /// 0.0.0.0: every address of the host.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub protocol: Protocol,
    pub target_ip: Ipv4Addr,
    pub target_port: u16,
}

/// A port as `struct bpf_sock_addr` holds it: a 32-bit field whose value is the
/// 16-bit port read natively from its network-order bytes.
fn port_word(port: u16) -> [u8; 4] {
    u32::from(u16::from_ne_bytes(port.to_be_bytes())).to_ne_bytes()
}

fn word_port(word: &[u8]) -> u16 {
    let w = u32::from_ne_bytes(word[..4].try_into().unwrap_or_default());
    u16::from_be_bytes((w as u16).to_ne_bytes())
}

fn key(ip: Ipv4Addr, port: u16, protocol: u32) -> [u8; KEY_SIZE] {
    let mut k = [0u8; KEY_SIZE];
    k[..4].copy_from_slice(&ip.octets());
    if port != 0 {
        k[4..8].copy_from_slice(&port_word(port));
    }
    k[8..].copy_from_slice(&protocol.to_ne_bytes());
    k
}

impl Entry {
    fn key(&self) -> [u8; KEY_SIZE] {
        key(self.host_ip, self.host_port, self.protocol.number())
    }

    fn value(&self) -> [u8; VALUE_SIZE] {
        let mut v = [0u8; VALUE_SIZE];
        v[..4].copy_from_slice(&self.target_ip.octets());
        v[4..].copy_from_slice(&port_word(self.target_port));
        v
    }

    fn decode(k: &[u8], v: &[u8]) -> Option<Entry> {
        let protocol = match u32::from_ne_bytes(k[8..12].try_into().ok()?) {
            IPPROTO_TCP => Protocol::Tcp,
            IPPROTO_UDP => Protocol::Udp,
            _ => return None,
        };
        let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        Some(Entry {
            host_ip: ip(&k[..4]),
            host_port: word_port(&k[4..8]),
            protocol,
            target_ip: ip(&v[..4]),
            target_port: word_port(&v[4..8]),
        })
    }
}

/// The key holding the netns cookie (port and protocol 0: no entry's).
fn cookie_key() -> [u8; KEY_SIZE] {
    key(Ipv4Addr::UNSPECIFIED, 0, 0)
}

/// A marker saying `ip` is one of the host's addresses.
fn address_key(ip: Ipv4Addr) -> [u8; KEY_SIZE] {
    key(ip, 0, 0)
}

fn is_entry_key(k: &[u8]) -> bool {
    k[8..12] != [0, 0, 0, 0]
}

/// The program, for the host namespace with cookie `cookie` and map `map`.
pub fn program(cookie: u64, map: RawFd) -> Result<Vec<Insn>, String> {
    // the first octet of an address as the context holds it (network order)
    let first_octet_mask = i32::from_ne_bytes([0xff, 0, 0, 0]);
    let loopback_net = i32::from_ne_bytes([127, 0, 0, 0]);
    let lookup = |a: &mut Asm| {
        // r0 = map_lookup_elem(&map, fp + KEY_IP)
        a.ld_map_fd(R1, map)
            .mov64(R2, FP)
            .add64_imm(R2, i32::from(KEY_IP))
            .call(HELPER_MAP_LOOKUP_ELEM);
    };
    let mut a = Asm::new();
    // r6 = the context, kept across helper calls
    a.mov64(R6, R1);
    // only sockets of the host's network namespace (r1 still holds the context)
    a.call(HELPER_GET_NETNS_COOKIE)
        .ld_imm64(R1, cookie)
        .jne(R0, R1, "allow");
    // r7 = protocol: TCP or UDP only
    a.ldx_w(R7, R6, CTX_PROTOCOL)
        .jeq_imm(R7, IPPROTO_TCP as i32, "protocol_ok")
        .jne_imm(R7, IPPROTO_UDP as i32, "allow")
        .label("protocol_ok");
    // the key (r9 = ip, r8 = port, as the context holds them)
    a.ldx_w(R9, R6, CTX_USER_IP4)
        .stx_w(FP, KEY_IP, R9)
        .ldx_w(R8, R6, CTX_USER_PORT)
        .stx_w(FP, KEY_PORT, R8)
        .stx_w(FP, KEY_PROTO, R7);
    // published on exactly this address?
    lookup(&mut a);
    a.jne_imm(R0, 0, "rewrite");
    // published on every address: only when the destination is the host's own,
    // 0.0.0.0 and 127.0.0.0/8 always
    a.jeq_imm(R9, 0, "any_address")
        .mov32(R1, R9)
        .and32_imm(R1, first_octet_mask)
        .jeq_imm(R1, loopback_net, "any_address");
    // else one of the host's addresses: its marker (ip, 0, 0)
    a.st_w(FP, KEY_PORT, 0).st_w(FP, KEY_PROTO, 0);
    lookup(&mut a);
    a.jeq_imm(R0, 0, "allow")
        .stx_w(FP, KEY_PORT, R8)
        .stx_w(FP, KEY_PROTO, R7);
    a.label("any_address").st_w(FP, KEY_IP, 0);
    lookup(&mut a);
    a.jeq_imm(R0, 0, "allow");
    // r0 = the value: the container's address and port
    a.label("rewrite")
        .ldx_w(R1, R0, 0)
        .stx_w(R6, CTX_USER_IP4, R1)
        .ldx_w(R1, R0, 4)
        .stx_w(R6, CTX_USER_PORT, R1);
    // 1: let connect() go on (0 would fail it with EPERM)
    a.label("allow").mov64_imm(R0, 1).exit();
    a.finish()
}

/// The cgroup2 hierarchy's root as mounted here: `/sys/fs/cgroup` on pure v2
/// hosts, `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_root() -> Result<PathBuf, Unavailable> {
    crate::cgroups::v2_mount()
        .map_err(|e| unavailable("/proc/self/mountinfo", e))?
        .ok_or_else(|| Unavailable("no cgroup2 hierarchy mounted".into()))
}

fn open_dir(path: &Path) -> Result<OwnedFd, Unavailable> {
    let file =
        std::fs::File::open(path).map_err(|e| unavailable(&path.display().to_string(), e))?;
    Ok(file.into())
}

/// The cookie of the network namespace this process is in (SO_NETNS_COOKIE,
/// Linux 5.14).
pub fn netns_cookie() -> Result<u64, Unavailable> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| unavailable("a socket", e))?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` (8) bytes into `cookie`, a live
    // u64, on a socket we own.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            &mut cookie as *mut u64 as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(unavailable(
            "the network namespace's cookie (SO_NETNS_COOKIE, Linux 5.14)",
            io::Error::last_os_error(),
        ));
    }
    Ok(cookie)
}

/// One of our programs attached to the cgroup, with its map.
struct Ours {
    prog: OwnedFd,
    map: OwnedFd,
}

/// Our programs on the cgroup's connect4 hook (normally none or one).
fn find(cgroup: &OwnedFd) -> io::Result<Vec<Ours>> {
    let mut out = vec![];
    for id in bpf::prog_query(cgroup, ATTACH_INET4_CONNECT)? {
        let Ok(prog) = bpf::prog_fd_by_id(id) else {
            continue; // detached meanwhile
        };
        let info = bpf::prog_info(&prog)?;
        if info.name != NAME {
            continue;
        }
        if let Some(map) = info.map_ids.first() {
            out.push(Ours {
                map: bpf::map_fd_by_id(*map)?,
                prog,
            });
        }
    }
    Ok(out)
}

/// A new map holding `cookie`, and the program over it, verified (not attached).
fn load(cookie: u64) -> Result<Ours, Unavailable> {
    let map = bpf::map_create(
        bpf::MAP_TYPE_HASH,
        KEY_SIZE as u32,
        VALUE_SIZE as u32,
        MAX_ENTRIES,
        bpf::F_NO_PREALLOC,
        NAME,
    )
    .map_err(|e| unavailable("cannot create a bpf map", e))?;
    bpf::map_update(&map, &cookie_key(), &cookie.to_ne_bytes())
        .map_err(|e| unavailable("cannot write the bpf map", e))?;
    let insns = program(cookie, map.as_raw_fd()).map_err(Unavailable)?;
    let prog = bpf::prog_load(
        PROG_TYPE_CGROUP_SOCK_ADDR,
        ATTACH_INET4_CONNECT,
        &insns,
        "Apache-2.0",
        NAME,
    )
    .map_err(|e| unavailable("the kernel refused the connect4 program", e))?;
    Ok(Ours { prog, map })
}

/// The program attached to the cgroup2 root, attached now if it was not.
fn ensure_attached(cgroup: &OwnedFd, cookie: u64) -> Result<Ours, Unavailable> {
    let found = find(cgroup).map_err(|e| unavailable("cannot query the cgroup's programs", e))?;
    if let Some(ours) = found.into_iter().next() {
        let theirs = bpf::map_lookup(&ours.map, &cookie_key(), VALUE_SIZE)
            .map_err(|e| unavailable("cannot read the bpf map", e))?;
        if theirs.as_deref() != Some(&cookie.to_ne_bytes()[..]) {
            return Err(Unavailable(
                "the attached program serves another network namespace".into(),
            ));
        }
        return Ok(ours);
    }
    let ours = load(cookie)?;
    bpf::prog_attach(cgroup, &ours.prog, ATTACH_INET4_CONNECT, bpf::F_ALLOW_MULTI)
        .map_err(|e| unavailable("cannot attach to the cgroup2 root", e))?;
    tracing::debug!("socket-level translation of published ports attached");
    Ok(ours)
}

/// The host's IPv4 addresses, loopback aside (the program knows 127/8).
fn host_addresses() -> HashSet<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .map(|all| {
            all.filter_map(|ifa| ifa.address?.as_sockaddr_in().map(|s| s.ip()))
                .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
                .collect()
        })
        .unwrap_or_default()
}

/// Brings the address markers in line with the interfaces.
fn refresh_addresses(map: &OwnedFd, keys: &[Vec<u8>]) -> io::Result<()> {
    let now = host_addresses();
    for k in keys.iter().filter(|k| !is_entry_key(k) && k[..4] != [0; 4]) {
        let ip = Ipv4Addr::new(k[0], k[1], k[2], k[3]);
        if !now.contains(&ip) {
            bpf::map_delete(map, k)?;
        }
    }
    for ip in now {
        bpf::map_update(map, &address_key(ip), &[0u8; VALUE_SIZE])?;
    }
    Ok(())
}

fn locked() -> Result<super::netfilter::Lock, Unavailable> {
    super::netfilter::lock().map_err(|e| unavailable("the network lock", e))
}

/// Translates `entries` at connect() from now on, attaching the program with
/// the first. Err says why not (the DNAT rules serve them then).
pub fn publish(entries: &[Entry]) -> Result<(), Unavailable> {
    if entries.is_empty() {
        return Ok(());
    }
    let _lock = locked()?;
    let cgroup = open_dir(&cgroup2_root()?)?;
    let ours = ensure_attached(&cgroup, netns_cookie()?)?;
    let keys = bpf::map_keys(&ours.map, KEY_SIZE).map_err(|e| unavailable("bpf map", e))?;
    refresh_addresses(&ours.map, &keys).map_err(|e| unavailable("bpf map", e))?;
    for e in entries {
        bpf::map_update(&ours.map, &e.key(), &e.value())
            .map_err(|err| unavailable("cannot add to the bpf map", err))?;
    }
    Ok(())
}

/// Stops translating `entries` (those whose target still matches: another
/// container may have taken the port since; with `any_target`, whatever
/// they point at, for a setup that died before it knew its address), and
/// detaches the program when no published port is left.
pub fn withdraw(entries: &[Entry], any_target: bool) -> Result<(), Unavailable> {
    if entries.is_empty() {
        return Ok(());
    }
    let _lock = locked()?;
    let cgroup = open_dir(&cgroup2_root()?)?;
    let found = find(&cgroup).map_err(|e| unavailable("cannot query the cgroup's programs", e))?;
    for ours in found {
        for e in entries {
            let value = bpf::map_lookup(&ours.map, &e.key(), VALUE_SIZE)
                .map_err(|err| unavailable("bpf map", err))?;
            if value.is_some_and(|v| any_target || v == e.value()) {
                bpf::map_delete(&ours.map, &e.key()).map_err(|err| unavailable("bpf map", err))?;
            }
        }
        let keys = bpf::map_keys(&ours.map, KEY_SIZE).map_err(|e| unavailable("bpf map", e))?;
        if keys.iter().any(|k| is_entry_key(k)) {
            refresh_addresses(&ours.map, &keys).map_err(|e| unavailable("bpf map", e))?;
        } else {
            bpf::prog_detach(&cgroup, &ours.prog, ATTACH_INET4_CONNECT)
                .map_err(|e| unavailable("cannot detach from the cgroup2 root", e))?;
            tracing::debug!("no published port left: socket-level translation detached");
        }
    }
    Ok(())
}

/// What `doctor` and the tests see.
#[derive(Debug, Clone)]
pub enum Status {
    /// Attached (`programs` of ours on the hook), translating these ports.
    On {
        cgroup: PathBuf,
        programs: usize,
        entries: Vec<Entry>,
    },
    /// Would attach with the first published port (a probe load passed).
    Ready { cgroup: PathBuf },
    /// Not available here: why.
    Off(Unavailable),
}

/// Looks without changing anything (a probe program is loaded and dropped).
pub fn status() -> Status {
    let probe = || -> Result<Status, Unavailable> {
        let cgroup = cgroup2_root()?;
        let fd = open_dir(&cgroup)?;
        let found = find(&fd).map_err(|e| unavailable("cannot query the cgroup's programs", e))?;
        if !found.is_empty() {
            let mut entries = vec![];
            for ours in &found {
                for k in
                    bpf::map_keys(&ours.map, KEY_SIZE).map_err(|e| unavailable("bpf map", e))?
                {
                    if !is_entry_key(&k) {
                        continue;
                    }
                    if let Some(v) = bpf::map_lookup(&ours.map, &k, VALUE_SIZE)
                        .map_err(|e| unavailable("bpf map", e))?
                    {
                        entries.extend(Entry::decode(&k, &v));
                    }
                }
            }
            return Ok(Status::On {
                cgroup,
                programs: found.len(),
                entries,
            });
        }
        load(netns_cookie()?)?;
        Ok(Status::Ready { cgroup })
    };
    probe().unwrap_or_else(Status::Off)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: [u8; 4], port: u16) -> Entry {
        Entry {
            host_ip: Ipv4Addr::from(host),
            host_port: port,
            protocol: Protocol::Tcp,
            target_ip: Ipv4Addr::new(10, 77, 0, 5),
            target_port: 80,
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn keys_hold_addresses_and_ports_as_the_socket_context_does() {
        // sockaddr_in bytes of 127.0.0.1:8080 are 7f 00 00 01 / 1f 90
        let e = entry([127, 0, 0, 1], 8080);
        assert_eq!(e.key(), [127, 0, 0, 1, 0x1f, 0x90, 0, 0, 6, 0, 0, 0]);
        assert_eq!(e.value(), [10, 77, 0, 5, 0, 80, 0, 0]);
        assert_eq!(Entry::decode(&e.key(), &e.value()), Some(e));
        assert!(is_entry_key(&e.key()));
        assert!(!is_entry_key(&cookie_key()));
        assert!(!is_entry_key(&address_key(Ipv4Addr::new(192, 168, 1, 2))));
    }

    #[test]
    fn the_program_assembles() {
        let p = program(42, 3).unwrap();
        assert!(p.len() > 20 && p.len() < 80, "{}", p.len());
    }

    /// The verifier accepts the program, and the map round-trips entries
    /// (root only; loads but never attaches, so nothing host-wide changes).
    #[test]
    fn the_kernel_accepts_the_program() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: loading bpf programs needs root");
            return;
        }
        let cookie = match netns_cookie() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipping: {e}");
                return;
            }
        };
        let ours = load(cookie).expect("program loads");
        let e = entry([0, 0, 0, 0], 18080);
        bpf::map_update(&ours.map, &e.key(), &e.value()).unwrap();
        let keys = bpf::map_keys(&ours.map, KEY_SIZE).unwrap();
        assert_eq!(keys.len(), 2, "the cookie and one entry");
        let v = bpf::map_lookup(&ours.map, &e.key(), VALUE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(Entry::decode(&e.key(), &v), Some(e));
        let info = bpf::prog_info(&ours.prog).unwrap();
        assert_eq!(info.name, NAME);
        assert_eq!(info.map_ids.len(), 1);
    }
}
