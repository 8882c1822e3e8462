//! Name resolution between containers of a user network, the way Docker's
//! embedded DNS answers it (container name, `--network-alias`, short id), done
//! with hosts files twinbox keeps current.
//!
//! Why hosts files and not a DNS server per network: twinbox has no daemon, and
//! a resolver would need a long-lived process per network (or per container
//! supervisor) listening inside each namespace, plus a way to forward everything
//! else to the host's resolver. Every container already has its own
//! `/etc/hosts` bind-mounted from its directory, every libc and busybox reads
//! it first, and the set of peers changes only when twinbox itself attaches or
//! detaches a container. So on every attach and detach the hosts file of each
//! container on that network is regenerated from the attachment caches (whose
//! is the truth: no incremental edits to drift). The file is rewritten in place,
//! never renamed: the container's bind mount holds the inode. The default
//! `bridge` network resolves no names, as in Docker.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{attached, io_err, Attached, Result, DEFAULT_NETWORK};

/// An exclusive flock on `STORE/networks/.lock`: network create/remove and
/// hosts regeneration of one store take turns.
pub struct NetworksLock {
    _file: File,
}

impl NetworksLock {
    pub fn acquire(store_root: &Path) -> Result<NetworksLock> {
        let dir = super::networks_dir(store_root);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // SAFETY: flock on a descriptor we own; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&path, std::io::Error::last_os_error()));
        }
        Ok(NetworksLock { _file: file })
    }
}

/// Every container directory of the store with its live attachments.
fn all_attachments(store_root: &Path) -> Vec<(PathBuf, Vec<Attached>)> {
    let dir = store_root.join("containers");
    let Ok(rd) = fs::read_dir(&dir) else {
        return vec![];
    };
    rd.flatten()
        .map(|e| e.path())
        .map(|p| {
            let a: Vec<Attached> = attached(&p)
                .into_iter()
                .filter(|a| !a.result.is_null())
                .collect();
            (p, a)
        })
        .filter(|(_, a)| !a.is_empty())
        .collect()
}

/// The first lines of every container's hosts file.
pub const LOCALHOST: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// The file beside a container's hosts file holding its `--add-host` lines
/// (`IP\tNAME`, host-gateway resolved at create), after the localhost lines
/// and before its own, as Docker writes them.
pub const EXTRA_HOSTS: &str = "hosts.extra";

/// The hosts file of a container with these attachments, given every container's.
fn render(dir: &Path, own: &[Attached], everyone: &[(PathBuf, Vec<Attached>)]) -> String {
    let hostname = fs::read_to_string(dir.join("hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut text = String::from(LOCALHOST);
    text.push_str(&fs::read_to_string(dir.join(EXTRA_HOSTS)).unwrap_or_default());
    if let Some(ip) = own.iter().find_map(Attached::ipv4) {
        let mut names = vec![hostname.clone()];
        for a in own.iter().filter(|a| a.network != DEFAULT_NETWORK) {
            names.extend(a.names.iter().cloned());
        }
        text.push_str(&format!("{ip}\t{}\n", dedup(names).join(" ")));
    }
    // peers, per user network this container is on; first line wins on a clash
    let mut peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mine in own.iter().filter(|a| a.network != DEFAULT_NETWORK) {
        for (other_dir, theirs) in everyone {
            if other_dir == dir {
                continue;
            }
            for a in theirs.iter().filter(|a| a.network == mine.network) {
                if let Some(ip) = a.ipv4() {
                    peers
                        .entry(ip.to_string())
                        .or_default()
                        .extend(a.names.iter().cloned());
                }
            }
        }
    }
    for (ip, names) in peers {
        let names = dedup(names);
        if !names.is_empty() {
            text.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
    }
    text
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for n in names {
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// Regenerates the hosts file of every container on `network` (and of the
/// container at `also`, which may just have left it).
pub fn refresh(store_root: &Path, network: &str, also: Option<&Path>) -> Result<()> {
    let _lock = NetworksLock::acquire(store_root)?;
    let everyone = all_attachments(store_root);
    for (dir, own) in &everyone {
        let on_it = own.iter().any(|a| a.network == network);
        if on_it || also == Some(dir.as_path()) {
            write_in_place(&dir.join("hosts"), &render(dir, own, &everyone))?;
        }
    }
    Ok(())
}

/// Truncate and write, keeping the inode the container's bind mount points at.
fn write_in_place(path: &Path, text: &str) -> Result<()> {
    if !path.exists() || fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| io_err(path, e))
}
