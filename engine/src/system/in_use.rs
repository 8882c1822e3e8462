//! What holds parts of the image store from above it: containers (their
//! image and lower dirs), the build cache, and build steps' networks. The
//! image collector cannot import them (they are built on it); it asks this.

use std::path::Path;

use crate::container::Container;
use crate::image::gc::{Holder, Holders};
use crate::image::{ImageError, Result};
use crate::store::Store;

/// Everything the engine builds on the image store.
pub struct InUse;

impl Holders for InUse {
    fn containers(&self, store: &Store) -> Result<Vec<Holder>> {
        Ok(containers(store)?
            .into_iter()
            .map(|c| Holder {
                label: format!("{} ({})", c.short_id(), c.name),
                image_id: c.image_id,
                lower_dirs: c.lower_dirs,
            })
            .collect())
    }

    fn blobs_removed(&self, store: &Store) {
        crate::build::cache::forget_missing(store);
    }

    fn release_scratch(&self, dir: &Path) {
        // a build step's namespace on a network: CNI DEL gives back its address
        // (unmounting the namespace alone would leave the lease behind)
        if !crate::network::attached(dir).is_empty() {
            let _ = crate::network::detach(dir);
        }
    }
}

/// Every container, or the image error a collection reports.
pub(crate) fn containers(store: &Store) -> Result<Vec<Container>> {
    Container::list(store).map_err(|e| ImageError::Io {
        path: store.containers_dir(),
        source: std::io::Error::other(e.to_string()),
    })
}
