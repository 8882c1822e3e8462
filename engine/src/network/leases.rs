//! The address leases host-local keeps for every twinbox network under
//! [`IPAM_DIR`] (a file per address holding the owner's id and interface),
//! and which of them are provably dead.
//!
//! A lease is normally released by CNI DEL. One whose owner died and whose
//! store was deleted before any twinbox command could run DEL (a killed build
//! in a test's scratch store) stays forever and takes an address. Such a
//! lease is dead when its address is configured in no network namespace on
//! the host (every process's and thread's, every pinned one in any mount
//! namespace, every one held by an open descriptor) and the lease is older
//! than an ADD can take, so an attachment in progress is never taken for dead.

use std::collections::HashSet;
use std::fs::{self, File};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::IPAM_DIR;

/// One lease file: `IPAM_DIR/[NETWORK-ID/]NETWORK/ADDRESS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub path: PathBuf,
    /// The network's directory below [`IPAM_DIR`] (`bridge`, `ID/NAME`).
    pub network: String,
    pub address: Ipv4Addr,
    /// The CNI container id that took it (a container, build step or VM id).
    pub owner: String,
    pub modified: SystemTime,
}

/// No lease younger than this is called dead: twice what a plugin may take
/// (host-local writes the lease before the bridge plugin sets the address).
pub fn min_dead_age() -> Duration {
    (super::cni::plugin_timeout() * 2).max(Duration::from_secs(60))
}

/// Every lease under `dir` (normally [`IPAM_DIR`]): the network directories
/// are the ones host-local keeps its `lock` file in, one or two levels down.
pub fn list(dir: &Path) -> Vec<Lease> {
    let mut leases = vec![];
    let Ok(top) = fs::read_dir(dir) else {
        return leases;
    };
    for entry in top.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.join("lock").exists() {
            read_network(&path, &name, &mut leases);
        }
        for sub in fs::read_dir(&path).into_iter().flatten().flatten() {
            let sub_path = sub.path();
            if sub_path.is_dir() && sub_path.join("lock").exists() {
                let network = format!("{name}/{}", sub.file_name().to_string_lossy());
                read_network(&sub_path, &network, &mut leases);
            }
        }
    }
    leases
}

fn read_network(dir: &Path, network: &str, leases: &mut Vec<Lease>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(address) = entry.file_name().to_string_lossy().parse::<Ipv4Addr>() else {
            continue; // lock, last_reserved_ip.0
        };
        let path = entry.path();
        let (Ok(text), Ok(meta)) = (fs::read_to_string(&path), entry.metadata()) else {
            continue;
        };
        leases.push(Lease {
            network: network.to_string(),
            address,
            owner: text.lines().next().unwrap_or("").trim().to_string(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            path,
        });
    }
}

/// The leases under `dir` at least [`min_dead_age`] old whose address no
/// network namespace of this host holds. Empty when the namespaces cannot all
/// be read: nothing is proven then.
pub fn dead(dir: &Path) -> Vec<Lease> {
    let now = SystemTime::now();
    let old: Vec<Lease> = list(dir)
        .into_iter()
        .filter(|l| {
            now.duration_since(l.modified)
                .is_ok_and(|age| age >= min_dead_age())
        })
        .collect();
    if old.is_empty() {
        return old;
    }
    let Ok(live) = addresses_in_use() else {
        return vec![];
    };
    old.into_iter()
        .filter(|l| !live.contains(&l.address))
        .collect()
}

/// Removes a dead lease under host-local's own lock on its network, if the
/// file still names the same owner and has not been written since it was read
/// (the address may have been released and taken again meanwhile).
pub fn release(lease: &Lease) -> std::io::Result<bool> {
    let dir = lease.path.parent().unwrap_or(Path::new(IPAM_DIR));
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("lock"))?;
    nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from(e))
        .and_then(|_locked| {
            let same = fs::read_to_string(&lease.path)
                .is_ok_and(|t| t.lines().next().unwrap_or("").trim() == lease.owner)
                && fs::metadata(&lease.path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m == lease.modified);
            if !same {
                return Ok(false);
            }
            fs::remove_file(&lease.path)?;
            Ok(true)
        })
}

/// Every IPv4 address configured in any network namespace of the host.
pub fn addresses_in_use() -> std::io::Result<HashSet<Ipv4Addr>> {
    let namespaces = network_namespaces()?;
    std::thread::spawn(move || -> std::io::Result<HashSet<Ipv4Addr>> {
        let mut all = HashSet::new();
        // this thread only: setns(CLONE_NEWNET) moves the calling thread
        for ns in namespaces {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            for ifa in nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)? {
                if let Some(IpAddr::V4(a)) = ifa
                    .address
                    .and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
                {
                    all.insert(a);
                }
            }
        }
        Ok(all)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("namespace scan panicked")))
}

/// One open file per distinct network namespace: every thread's, every
/// descriptor that holds one, every nsfs mount in every mount namespace.
fn network_namespaces() -> std::io::Result<Vec<File>> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut files = vec![];
    let mut keep = |path: &Path, files: &mut Vec<File>| {
        // a process that ended meanwhile took its namespace with it
        let Ok(f) = File::open(path) else { return };
        let Ok(m) = f.metadata() else { return };
        if seen.insert((m.dev(), m.ino())) {
            files.push(f);
        }
    };
    let mut mount_namespaces: HashSet<u64> = HashSet::new();
    for proc_entry in fs::read_dir("/proc")?.flatten() {
        let pid = proc_entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = proc_entry.path();
        for task in fs::read_dir(base.join("task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            keep(&task.path().join("ns/net"), &mut files);
        }
        for fd in fs::read_dir(base.join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with("net:[")) {
                keep(&fd.path(), &mut files);
            }
        }
        let Ok(mnt) = fs::metadata(base.join("ns/mnt")) else {
            continue;
        };
        if !mount_namespaces.insert(mnt.ino()) {
            continue;
        }
        let info = fs::read_to_string(base.join("mountinfo")).unwrap_or_default();
        for point in nsfs_mounts(&info) {
            // the mount point as that process's mount namespace sees it
            let rel = point.strip_prefix("/").unwrap_or(&point);
            keep(&base.join("root").join(rel), &mut files);
        }
    }
    // only network namespaces are kept (an nsfs mount may pin another kind)
    Ok(files
        .into_iter()
        .filter(|f| is_net_namespace(f.as_raw_fd()))
        .collect())
}

/// The mount points of nsfs mounts in a mountinfo text.
fn nsfs_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            (right.split(' ').next()? == "nsfs").then(|| PathBuf::from(point.replace("\\040", " ")))
        })
        .collect()
}

fn is_net_namespace(fd: i32) -> bool {
    // NS_GET_NSTYPE = _IO(0xb7, 0x3)
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: an ioctl on a descriptor we own that takes no argument
    let kind = unsafe { libc::ioctl(fd, NS_GET_NSTYPE as _) };
    kind == libc::CLONE_NEWNET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsfs_mounts_are_read_from_mountinfo() {
        let info = "36 25 0:4 net:[4026532281] /run/netns/a rw shared:5 - nsfs nsfs rw\n\
                    37 25 0:22 / /var/lib/x rw - ext4 /dev/vda rw\n\
                    38 25 0:4 net:[4026532300] /var/tmp/s\\040t/netns rw - nsfs nsfs rw\n";
        assert_eq!(
            nsfs_mounts(info),
            [
                PathBuf::from("/run/netns/a"),
                PathBuf::from("/var/tmp/s t/netns")
            ]
        );
    }

    #[test]
    fn addresses_of_every_namespace_are_found() {
        if !nix::unistd::geteuid().is_root() {
            return; // entering namespaces needs CAP_SYS_ADMIN
        }
        let live = addresses_in_use().expect("scan");
        assert!(live.contains(&Ipv4Addr::LOCALHOST), "{live:?}");
        // a namespace only a mount pins, with an address no other one has
        let dir = tempfile::tempdir().unwrap();
        let pinned = dir.path().join("netns");
        crate::network::netns::create(&pinned).unwrap();
        let addr = Ipv4Addr::new(198, 18, 255, (std::process::id() % 200) as u8 + 20);
        let ok = std::process::Command::new("nsenter")
            .arg(format!("--net={}", pinned.display()))
            .args(["ip", "addr", "add", &format!("{addr}/32"), "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        let found = addresses_in_use().expect("scan").contains(&addr);
        crate::network::netns::remove(&pinned);
        assert!(ok, "ip addr add in the pinned namespace");
        assert!(found, "{addr} in a namespace only a mount holds");
        assert!(!addresses_in_use().expect("scan").contains(&addr));
    }

    #[test]
    fn leases_are_listed_one_and_two_levels_down() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = dir.path().join("bridge");
        let user = dir.path().join("0123abcd/web");
        for d in [&bridge, &user] {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("lock"), "").unwrap();
            fs::write(d.join("last_reserved_ip.0"), "10.1.0.2").unwrap();
        }
        fs::write(bridge.join("10.77.0.2"), "aaaa\r\neth0").unwrap();
        fs::write(user.join("10.100.0.3"), "bbbb\r\neth1").unwrap();
        let mut got: Vec<(String, Ipv4Addr, String)> = list(dir.path())
            .into_iter()
            .map(|l| (l.network, l.address, l.owner))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (
                    "0123abcd/web".into(),
                    Ipv4Addr::new(10, 100, 0, 3),
                    "bbbb".into()
                ),
                ("bridge".into(), Ipv4Addr::new(10, 77, 0, 2), "aaaa".into()),
            ]
        );
    }
}
