//! The workload's user: `uid[:gid]` or names from the rootfs /etc/passwd and
//! /etc/group, with Docker's rules (an unknown numeric uid runs with gid 0).

use crate::failure::Failure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

pub fn resolve(spec: &str) -> Result<User, Failure> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    resolve_in(spec, &passwd, &group)
}

/// Finds the entry whose name (field 0) or id (field 2) is `key`.
fn lookup<'a>(db: &'a str, key: &str) -> Option<Vec<&'a str>> {
    db.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && (f[0] == key || f[2] == key))
}

fn resolve_in(spec: &str, passwd: &str, group: &str) -> Result<User, Failure> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = lookup(passwd, user).filter(|f| f.len() >= 4);
    let (uid, mut gid) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (parse_id(f[2], user)?, parse_id(f[3], user)?),
        (None, Ok(uid)) => (uid, 0),
        (None, Err(_)) => {
            return Err(Failure::msg(
                format!("user {user:?}"),
                "not in the image's /etc/passwd",
            ))
        }
    };
    if let Some(g) = grp.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(group, g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    Failure::msg(format!("group {g:?}"), "not in the image's /etc/group")
                })?,
        };
    }
    Ok(User { uid, gid })
}

fn parse_id(field: &str, user: &str) -> Result<u32, Failure> {
    field.parse().map_err(|_| {
        Failure::msg(
            format!("user {user:?}"),
            format!("bad id {field:?} in /etc/passwd"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    fn user(spec: &str) -> Result<User, Failure> {
        resolve_in(spec, PASSWD, GROUP)
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(user("").unwrap(), User { uid: 0, gid: 0 });
        assert_eq!(user("www").unwrap(), User { uid: 33, gid: 34 });
        assert_eq!(user("33").unwrap(), User { uid: 33, gid: 34 });
        assert_eq!(user("1000").unwrap(), User { uid: 1000, gid: 0 });
        assert_eq!(user("1000:7").unwrap(), User { uid: 1000, gid: 7 });
        assert_eq!(user("www:staff").unwrap(), User { uid: 33, gid: 50 });
    }

    #[test]
    fn unknown_names_fail_clearly() {
        let e = user("alice").unwrap_err().to_string();
        assert_eq!(e, "user \"alice\": not in the image's /etc/passwd");
        let e = user("0:nogroup").unwrap_err().to_string();
        assert_eq!(e, "group \"nogroup\": not in the image's /etc/group");
    }
}
