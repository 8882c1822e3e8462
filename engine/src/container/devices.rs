//! Which host devices a container gets, as Docker decides it: `--device
//! HOST[:CONTAINER][:rwm]` (a directory adds every device below it), every
//! host device with `--privileged`, and the device cgroup's allow list.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use serde::{Deserialize, Serialize};

use super::{ContainerError, Result};
use crate::runtime::devices::{allow_rule, default_allowed};

/// One `--device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub host: PathBuf,
    pub container: PathBuf,
    /// Device cgroup access: some of r, w, m.
    pub permissions: String,
}

fn valid_permissions(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, read like Docker: with two
/// fields the second is the permissions when it looks like them.
pub fn parse_device(s: &str) -> Result<Device> {
    let bad = |why: &str| ContainerError::BadOption(format!("device {s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if valid_permissions(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if valid_permissions(p) => (*h, *c, *p),
        [_, _, p] => return Err(bad(&format!("bad mode {p:?}: use r, w and m"))),
        _ => return Err(bad("use HOST[:CONTAINER][:rwm]")),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        return Err(bad("both paths must be absolute"));
    }
    Ok(Device {
        host: PathBuf::from(host),
        container: PathBuf::from(container),
        permissions: permissions.to_string(),
    })
}

/// The node at `path` (a symlink is followed, as Docker does for `--device`),
/// or None when it is not a character or block device.
fn node(path: &Path, container: &Path, follow: bool) -> std::io::Result<Option<LinuxDevice>> {
    let meta = if follow {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(container.to_path_buf());
    d.set_typ(typ);
    d.set_major(libc::major(rdev) as i64);
    d.set_minor(libc::minor(rdev) as i64);
    d.set_file_mode(Some(meta.mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Ok(Some(d))
}

/// Every device under `dir` (recursively, not following links), placed under
/// `container`; `skip` names entries of `dir` itself to leave out.
fn walk(dir: &Path, container: &Path, skip: &[&str], out: &mut Vec<LinuxDevice>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let (path, inside) = (e.path(), container.join(&name));
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&path, &inside, &[], out),
            Ok(_) => {
                if let Ok(Some(d)) = node(&path, &inside, false) {
                    out.push(d);
                }
            }
            Err(_) => {}
        }
    }
}

/// The nodes one `--device` adds; an error names the device and why.
pub fn resolve(device: &Device) -> Result<Vec<LinuxDevice>> {
    let bad = |why: String| {
        ContainerError::BadOption(format!(
            "error gathering device information while adding custom device {:?}: {why}",
            device.host.display().to_string()
        ))
    };
    let why = |e: std::io::Error| match e.raw_os_error() {
        Some(n) => bad(nix::errno::Errno::from_raw(n).desc().to_lowercase()),
        None => bad(e.to_string()),
    };
    let meta = std::fs::metadata(&device.host).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ContainerError::NoSuchDevice(format!(
            "error gathering device information while adding custom device {:?}: no such file or directory",
            device.host.display().to_string()
        )),
        _ => why(e),
    })?;
    if meta.is_dir() {
        let mut out = Vec::new();
        walk(&device.host, &device.container, &[], &mut out);
        return Ok(out);
    }
    match node(&device.host, &device.container, true) {
        Ok(Some(d)) => Ok(vec![d]),
        Ok(None) => Err(bad("not a device node".into())),
        Err(e) => Err(why(e)),
    }
}

/// `--privileged`: every device of the host's /dev at the same path, leaving
/// out what the container has of its own (as runc's host device list does).
pub fn host_devices() -> Vec<LinuxDevice> {
    let mut out = Vec::new();
    walk(
        Path::new("/dev"),
        Path::new("/dev"),
        &[
            "pts",
            "shm",
            "fd",
            "mqueue",
            ".lxc",
            ".lxd-mounts",
            ".udev",
            "console",
        ],
        &mut out,
    );
    out
}

/// The device cgroup rules: deny all, then Docker's default allow list (mknod
/// of anything; the standard nodes, terminals, /dev/net/tun), then each `--device` with its
/// permissions; with `--privileged`, allow all.
pub fn cgroup_rules(privileged: bool, added: &[(LinuxDevice, String)]) -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, C};
    let mut all = LinuxDeviceCgroup::default();
    all.set_allow(privileged);
    all.set_typ(Some(A));
    all.set_access(Some("rwm".into()));
    if privileged {
        return vec![all];
    }
    let mut rules = vec![all];
    rules.extend(default_allowed());
    rules.push(allow_rule(C, Some(10), Some(200), "rwm"));
    for (d, access) in added {
        rules.push(allow_rule(
            d.typ(),
            Some(d.major()),
            Some(d.minor()),
            access,
        ));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        let d = parse_device("/dev/kvm").unwrap();
        assert_eq!(
            (d.container.to_str(), d.permissions.as_str()),
            (Some("/dev/kvm"), "rwm")
        );
        let d = parse_device("/dev/kvm:r").unwrap();
        assert_eq!(
            (d.container.to_str(), d.permissions.as_str()),
            (Some("/dev/kvm"), "r")
        );
        let d = parse_device("/dev/kvm:/dev/k").unwrap();
        assert_eq!(
            (d.container.to_str(), d.permissions.as_str()),
            (Some("/dev/k"), "rwm")
        );
        let d = parse_device("/dev/kvm:/dev/k:rw").unwrap();
        assert_eq!(
            (d.container.to_str(), d.permissions.as_str()),
            (Some("/dev/k"), "rw")
        );
        assert!(parse_device("/dev/kvm:/dev/k:rx").is_err());
        assert!(parse_device("/dev/kvm:k").is_err());
        assert!(parse_device("a:b:c:d").is_err());
    }

    #[test]
    fn resolves_nodes_and_refuses_others() {
        let null = resolve(&parse_device("/dev/null:/dev/n:r").unwrap()).unwrap();
        assert_eq!(null.len(), 1);
        assert_eq!((null[0].major(), null[0].minor()), (1, 3));
        assert_eq!(null[0].path(), Path::new("/dev/n"));
        let e = resolve(&parse_device("/etc/passwd").unwrap()).unwrap_err();
        assert!(e.to_string().contains("not a device node"), "{e}");
        let e = resolve(&parse_device("/dev/no-such-device").unwrap()).unwrap_err();
        assert!(
            e.to_string().ends_with(": no such file or directory"),
            "{e}"
        );
        let host = host_devices();
        assert!(host.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!host.iter().any(|d| d.path().starts_with("/dev/pts")));
        let rules = cgroup_rules(false, &[(null[0].clone(), "r".into())]);
        assert!(!rules[0].allow());
        assert_eq!(rules.last().unwrap().access().as_deref(), Some("r"));
        assert!(cgroup_rules(true, &[])[0].allow());
    }
}
