//! `container prune`: every container that is not running goes.

use super::lifecycle::remove;
use super::record::{Container, Status};
use super::Result;
use crate::store::Store;

/// Removes stopped and created containers; returns their ids.
pub fn prune(store: &Store) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for c in Container::list(store)? {
        if c.state().is_ok_and(|s| s.status != Status::Running) && remove(&c, false).is_ok() {
            removed.push(c.id);
        }
    }
    Ok(removed)
}
