//! Store-wide care: finishing what dead processes left ([`recover`]),
//! verifying everything the store holds ([`check`], `twinbox system check`),
//! what it uses on disk ([`usage`], `twinbox system df`) and giving space
//! back ([`prune`], `twinbox system prune`).

pub mod check;
mod in_use;
pub mod prune;
pub mod recover;
pub mod usage;

use std::path::Path;

pub use check::{check, CheckReport, Problem};
pub use in_use::InUse;
pub use recover::{recover, Recovered};

use crate::store::{Store, StoreError};

/// Opens the store and first finishes what crashed twinbox processes left behind
/// (dead `--rm` containers, stale records, their cgroups, scratch in tmp/). Every
/// CLI verb that uses the store opens it this way.
pub fn open_store(root: &Path) -> Result<Store, StoreError> {
    let store = Store::open(root)?;
    let recovered = recover(&store);
    if !recovered.is_empty() {
        tracing::info!(?recovered, "recovered what crashed twinbox processes left");
    }
    Ok(store)
}
