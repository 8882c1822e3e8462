//! `export`: a container's filesystem as one tar, the way the container sees
//! it: its writable layer over the image layers. A stopped container exports
//! the same as a running one (no mount is needed).

use std::io::Write;

use super::{Container, Result};
use crate::image::export::write_merged_tar;
use crate::store::Store;

/// Exports a container (name or id) to `out`.
pub fn export(store: &Store, key: &str, out: impl Write) -> Result<()> {
    let c = Container::find(store, key)?;
    let mut layers = vec![c.upper()];
    layers.extend(c.overlay_lowers());
    Ok(write_merged_tar(&layers, out)?)
}
