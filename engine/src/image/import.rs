//! `twinbox import ROOTFS.tar NAME[:TAG]`: a root filesystem tar becomes a
//! one-layer image, as `docker import` does.

use std::path::Path;

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfigurationBuilder, Os, RootFsBuilder,
};

use super::bootstrap::DEFAULT_PATH_ENV;
use super::ingest::ingest_tar;
use super::layer::{open_tar_file, write_image};
use super::{Image, Reference, Result};
use crate::store::Store;
use crate::util::time::now_rfc3339;

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
    let created = now_rfc3339();
    let config = ConfigBuilder::default().env(vec![DEFAULT_PATH_ENV.to_string()]);
    let config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build().expect("import config"))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![layer.diff_id.to_string()])
                .build()
                .expect("import rootfs"),
        )
        .history(vec![HistoryBuilder::default()
            .created(created)
            .created_by(format!("twinbox import {}", tar_path.display()))
            .comment("Imported from tarball")
            .build()
            .expect("import history")])
        .build()
        .expect("import image config");
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
