//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`),
//! honoured by the container's supervisor for as long as it lives, and the
//! "stopped by the user" mark that ends them: `stop` and `kill` set it before
//! signalling, so an `always` container that is stopped stays stopped.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::record::Container;
use super::{ContainerError, Result};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = ContainerError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            ContainerError::BadOption(format!(
                "restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            ))
        };
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match name {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure {
                max: match count {
                    Some(c) => c.parse().map_err(|_| bad())?,
                    None => 0,
                },
            },
            _ => return Err(bad()),
        };
        if count.is_some() && !matches!(policy, RestartPolicy::OnFailure { .. }) {
            return Err(ContainerError::BadOption(format!(
                "restart policy {s:?}: only on-failure takes a maximum count"
            )));
        }
        Ok(policy)
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: 0 } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max } => write!(f, "on-failure:{max}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl RestartPolicy {
    /// Whether a container that exited with `code`, after `restarts` restarts
    /// so far, starts again.
    pub fn wants_restart(&self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (*max == 0 || restarts < *max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// Docker's back-off: 100 ms, doubling with each restart, at most a minute.
    pub fn delay(restarts: u32) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1 << restarts.min(10)))
            .min(Duration::from_secs(60))
    }
}

fn mark_path(c: &Container) -> PathBuf {
    c.dir.join("stopped-by-user")
}

/// `stop`/`kill`: the user ended this run; no policy restarts it.
pub fn mark_stopped_by_user(c: &Container) -> Result<()> {
    let p = mark_path(c);
    std::fs::write(&p, b"").map_err(|e| ContainerError::io(&p, e))
}

/// A new start (`start`, `restart`, `run`): policies apply again.
pub fn clear_stopped_by_user(c: &Container) {
    let _ = std::fs::remove_file(mark_path(c));
}

pub fn stopped_by_user(c: &Container) -> bool {
    mark_path(c).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_decide() {
        let p: RestartPolicy = "on-failure:3".parse().unwrap();
        assert_eq!(p, RestartPolicy::OnFailure { max: 3 });
        assert!(p.wants_restart(1, 2));
        assert!(!p.wants_restart(1, 3));
        assert!(!p.wants_restart(0, 0));
        assert!("always"
            .parse::<RestartPolicy>()
            .unwrap()
            .wants_restart(0, 99));
        assert!(!"no".parse::<RestartPolicy>().unwrap().wants_restart(1, 0));
        assert!("always:2".parse::<RestartPolicy>().is_err());
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert_eq!(
            RestartPolicy::OnFailure { max: 0 }.to_string(),
            "on-failure"
        );
        assert_eq!(RestartPolicy::delay(0), Duration::from_millis(100));
        assert_eq!(RestartPolicy::delay(20), Duration::from_secs(60));
    }
}
