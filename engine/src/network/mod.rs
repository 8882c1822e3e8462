//! Container networking. For now: `none` (a new network namespace holding only
//! `lo`) and `host` (no namespace). Bridge networking comes with its own issue.

pub mod loopback;

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own network namespace with only the loopback interface, up.
    #[default]
    None,
    /// Share the host's network namespace.
    Host,
}

impl FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "bridge" | "default" => Err(format!(
                "network {s:?} is not available yet: use --network none or --network host"
            )),
            other => Err(format!("unknown network {other:?}: use none or host")),
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        })
    }
}
