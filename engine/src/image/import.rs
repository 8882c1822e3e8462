//! `twinbox import ROOTFS.tar NAME[:TAG]`: a root filesystem tar becomes a
//! one-layer image, as `docker import` does.

use std::path::Path;

use super::bootstrap::single_layer_config;
use super::ingest::ingest_tar;
use super::layer::{open_tar_file, write_image};
use super::{Image, Reference, Result};
use crate::store::Store;

pub fn import_rootfs(
    store: &Store,
    tar_path: &Path,
    name: &str,
    changes: &[String],
) -> Result<Image> {
    let reference = Reference::parse(name)?;
    // refuse a bad change before reading the archive
    super::changes::apply_all(&mut serde_json::json!({}), changes)?;
    let tar = open_tar_file(tar_path)?;
    let layer = ingest_tar(store, None, tar, &mut |_| {})?.layer;
    let config = single_layer_config(
        &layer.diff_id.to_string(),
        None,
        Default::default(),
        &format!("twinbox import {}", tar_path.display()),
        Some("Imported from tarball"),
    );
    let config = if changes.is_empty() {
        config
    } else {
        let bad = |e: serde_json::Error| super::ImageError::BadConfig {
            digest: "(new)".into(),
            message: e.to_string(),
        };
        let mut v = serde_json::to_value(&config).map_err(bad)?;
        super::changes::apply_all(&mut v, changes)?;
        serde_json::from_value(v).map_err(bad)?
    };
    write_image(store, &reference, &config, vec![layer])
}
