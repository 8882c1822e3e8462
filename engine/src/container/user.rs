//! Resolving `-u` / the image's User against the image's /etc/passwd and
//! /etc/group, read from the layers (topmost first) before the container exists.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{ContainerError, Result};
use crate::layer::merged::MergedView;

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    /// Supplementary groups: the primary group (as Docker since the fix for
    /// GHSA-rc4r-wh2q-q6c4), those of /etc/group that list the user by name
    /// (only when no group is given, as runc), then `--group-add`.
    pub groups: Vec<u32>,
}

/// The image's file `rel` as the container would see it: links resolved inside
/// the image (an `etc/passwd -> /etc/shadow` is the image's shadow, never the
/// host's), whiteouts honoured, and only a regular file of at most
/// [`MAX_DB`] bytes read (a link to /dev/zero or a fifo must not hang us).
fn read_from_layers(lowers: &[PathBuf], rel: &str) -> Option<String> {
    use std::io::Read;
    let view = MergedView::new(lowers.to_vec());
    let real = view.lookup(&view.resolve(Path::new(rel)).ok()?)?;
    if !real.symlink_metadata().ok()?.is_file() {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .ok()?;
    let mut text = String::new();
    file.take(MAX_DB).read_to_string(&mut text).ok()?;
    Some(text)
}

/// More than any real /etc/passwd or /etc/group.
const MAX_DB: u64 = 16 << 20;

fn lookup<'a>(db: &'a str, name: &str) -> Option<Vec<&'a str>> {
    db.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name) || f.get(2) == Some(&name))
}

/// `spec` is "", "name", "uid", "name:group", "uid:gid". `lowers` are the image's
/// unpacked layers, topmost first.
pub fn resolve(spec: &str, lowers: &[PathBuf]) -> Result<ResolvedUser> {
    let passwd = read_from_layers(lowers, "etc/passwd").unwrap_or_default();
    let group = read_from_layers(lowers, "etc/group").unwrap_or_default();
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = lookup(&passwd, user);
    let name = entry
        .as_ref()
        .filter(|f| f.len() >= 6)
        .map(|f| f[0].to_string());
    let (uid, mut gid, home) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) if f.len() >= 6 => (
            f[2].parse().unwrap_or(0),
            f[3].parse().unwrap_or(0),
            f[5].to_string(),
        ),
        // a numeric uid unknown to the image runs with gid 0, as in Docker
        (_, Ok(uid)) => (uid, 0, "/".to_string()),
        _ => {
            return Err(ContainerError::BadOption(format!(
                "user {user:?} is not in the image's /etc/passwd: use a numeric UID[:GID]"
            )))
        }
    };
    if let Some(g) = grp {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&group, g)
                .and_then(|f| f.get(2).and_then(|v| v.parse().ok()))
                .ok_or_else(|| {
                    ContainerError::BadOption(format!(
                        "group {g:?} is not in the image's /etc/group: use a numeric GID"
                    ))
                })?,
        };
    }
    let mut groups = vec![gid];
    if let (None, Some(name)) = (grp, &name) {
        for f in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            let member = f.get(3).is_some_and(|m| m.split(',').any(|m| m == name));
            if let (true, Some(g)) = (member, f.get(2).and_then(|g| g.parse().ok())) {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        home,
        groups,
    })
}

/// Adds `--group-add` groups (names from the image's /etc/group, or numbers)
/// to the user's supplementary groups.
pub fn add_groups(user: &mut ResolvedUser, extra: &[String], lowers: &[PathBuf]) -> Result<()> {
    if extra.is_empty() {
        return Ok(());
    }
    let group = read_from_layers(lowers, "etc/group").unwrap_or_default();
    for g in extra {
        let gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&group, g)
                .filter(|f| f.first() == Some(&g.as_str()))
                .and_then(|f| f.get(2).and_then(|v| v.parse().ok()))
                .ok_or_else(|| {
                    ContainerError::BadOption(format!(
                        "--group-add {g}: no such group in the image's /etc/group: use a numeric GID"
                    ))
                })?,
        };
        if !user.groups.contains(&gid) {
            user.groups.push(gid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:n:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nstaff:x:50:\nwheel:x:10:root,nobody\nadm:x:4:nobody\n",
        )
        .unwrap();
        let lowers = vec![dir.path().to_path_buf()];
        assert_eq!(
            resolve("", &lowers).unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                home: "/root".into(),
                groups: vec![0, 10],
            }
        );
        assert_eq!(resolve("nobody", &lowers).unwrap().uid, 65534);
        assert_eq!(
            resolve("1000:staff", &lowers).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 50,
                home: "/".into(),
                groups: vec![50],
            }
        );
        assert_eq!(resolve("1000:7", &lowers).unwrap().gid, 7);
        assert!(resolve("alice", &lowers).is_err());
        assert!(resolve("0:nogroup", &lowers).is_err());
        // membership by name, none with an explicit group (as runc)
        assert_eq!(
            resolve("nobody", &lowers).unwrap().groups,
            vec![65534, 10, 4]
        );
        assert_eq!(
            resolve("65534", &lowers).unwrap().groups,
            vec![65534, 10, 4]
        );
        assert_eq!(resolve("nobody:staff", &lowers).unwrap().groups, vec![50]);
        let mut u = resolve("root", &lowers).unwrap();
        add_groups(
            &mut u,
            &["staff".into(), "99".into(), "wheel".into()],
            &lowers,
        )
        .unwrap();
        assert_eq!(u.groups, vec![0, 10, 50, 99]);
        assert!(add_groups(&mut u, &["nogroup".into()], &lowers).is_err());
    }

    /// An image whose /etc/passwd is a link to a host file: the user is looked
    /// up in the image (where the link leads nowhere), never in the host's file.
    #[test]
    fn passwd_links_resolve_inside_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host-passwd");
        std::fs::write(&host, "root:x:0:0:root:/host-home:/bin/sh\n").unwrap();
        let layer = dir.path().join("layer");
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, layer.join("etc/passwd")).unwrap();
        let lowers = vec![layer.clone()];
        assert_eq!(resolve("", &lowers).unwrap().home, "/");
        // a link inside the image is followed there
        std::fs::create_dir_all(layer.join("real")).unwrap();
        std::fs::write(layer.join("real/pw"), "root:x:0:0:r:/image-home:/bin/sh\n").unwrap();
        std::fs::remove_file(layer.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/real/pw", layer.join("etc/passwd")).unwrap();
        assert_eq!(resolve("", &lowers).unwrap().home, "/image-home");
    }
}
