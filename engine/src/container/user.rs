//! Resolving `-u` / the image's User against the image's /etc/passwd and
//! /etc/group, read from the layers (topmost first) before the container exists.

use std::path::PathBuf;

use super::{ContainerError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

fn read_from_layers(lowers: &[PathBuf], rel: &str) -> Option<String> {
    lowers
        .iter()
        .map(|l| l.join(rel))
        .find(|p| p.symlink_metadata().is_ok())
        .and_then(|p| std::fs::read_to_string(p).ok())
}

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
    Ok(ResolvedUser { uid, gid, home })
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
        std::fs::write(etc.join("group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let lowers = vec![dir.path().to_path_buf()];
        assert_eq!(
            resolve("", &lowers).unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                home: "/root".into()
            }
        );
        assert_eq!(resolve("nobody", &lowers).unwrap().uid, 65534);
        assert_eq!(
            resolve("1000:staff", &lowers).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 50,
                home: "/".into()
            }
        );
        assert_eq!(resolve("1000:7", &lowers).unwrap().gid, 7);
        assert!(resolve("alice", &lowers).is_err());
        assert!(resolve("0:nogroup", &lowers).is_err());
    }
}
