//! Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`),
//! honoured by the container's supervisor for as long as it lives, and the
//! "stopped by the user" mark that ends them: `stop` and `kill` set it before
//! signalling, so an `always` container that is stopped stays stopped.

use std::path::PathBuf;

pub use super::options::RestartPolicy;
use super::record::Container;
use super::{ContainerError, Result};

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
