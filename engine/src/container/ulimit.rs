//! `--ulimit NAME=SOFT[:HARD]`: per-process resource limits, Docker's names.

use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};
use serde::{Deserialize, Serialize};

use super::{ContainerError, Result};

/// One limit as Docker shows it in inspect (`{"Name":"nofile","Soft":1024,"Hard":2048}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType as T;
    Some(match name {
        "as" => T::RlimitAs,
        "core" => T::RlimitCore,
        "cpu" => T::RlimitCpu,
        "data" => T::RlimitData,
        "fsize" => T::RlimitFsize,
        "locks" => T::RlimitLocks,
        "memlock" => T::RlimitMemlock,
        "msgqueue" => T::RlimitMsgqueue,
        "nice" => T::RlimitNice,
        "nofile" => T::RlimitNofile,
        "nproc" => T::RlimitNproc,
        "rss" => T::RlimitRss,
        "rtprio" => T::RlimitRtprio,
        "rttime" => T::RlimitRttime,
        "sigpending" => T::RlimitSigpending,
        "stack" => T::RlimitStack,
        _ => return None,
    })
}

/// `NAME=SOFT[:HARD]`; -1 or "unlimited" for no limit; HARD defaults to SOFT.
pub fn parse(s: &str) -> Result<Ulimit> {
    let bad = |why: &str| ContainerError::BadOption(format!("ulimit {s:?}: {why}"));
    let (name, values) = s
        .split_once('=')
        .ok_or_else(|| bad("use NAME=SOFT[:HARD], e.g. nofile=1024:2048"))?;
    if rlimit_type(name).is_none() {
        return Err(bad(&format!(
            "unknown limit {name:?}: use nofile, nproc, core, stack, memlock, ..."
        )));
    }
    let number = |v: &str| -> Result<i64> {
        match v {
            "unlimited" | "-1" => Ok(-1),
            _ => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad(&format!("{v:?} is not a number, -1 or unlimited"))),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => (number(values)?, number(values)?),
    };
    let as_u64 = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    if as_u64(soft) > as_u64(hard) {
        return Err(bad("the soft limit cannot be above the hard limit"));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// The OCI `process.rlimits` entry (-1 is RLIM_INFINITY).
pub fn to_rlimit(u: &Ulimit) -> Option<PosixRlimit> {
    let as_u64 = |n: i64| if n < 0 { u64::MAX } else { n as u64 };
    PosixRlimitBuilder::default()
        .typ(rlimit_type(&u.name)?)
        .soft(as_u64(u.soft))
        .hard(as_u64(u.hard))
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_docker() {
        let u = parse("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        let u = parse("core=0").unwrap();
        assert_eq!((u.soft, u.hard), (0, 0));
        let u = parse("memlock=-1:unlimited").unwrap();
        assert_eq!(to_rlimit(&u).unwrap().hard(), u64::MAX);
        assert!(parse("nofile=2048:1024").is_err());
        assert!(parse("bogus=1").is_err());
        assert!(parse("nofile").is_err());
        assert!(parse("nofile=ten").is_err());
    }
}
