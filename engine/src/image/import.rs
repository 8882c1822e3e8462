//! `twinbox import ROOTFS.tar NAME[:TAG]`: a root filesystem tar becomes a
//! one-layer image, as `docker import` does.

use std::path::Path;

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfigurationBuilder, Os, RootFsBuilder,
};

use super::bootstrap::DEFAULT_PATH_ENV;
use super::ingest::ingest_tar;
use super::layer::{now_rfc3339, open_tar_file, write_image};
use super::{Image, Reference, Result};
use crate::store::Store;

pub fn import_rootfs(
    store: &Store,
    tar_path: &Path,
    name: &str,
    cmd: Option<Vec<String>>,
) -> Result<Image> {
    let reference = Reference::parse(name)?;
    let tar = open_tar_file(tar_path)?;
    let layer = ingest_tar(store, None, tar, &mut |_| {})?.layer;
    let created = now_rfc3339();
    let mut config = ConfigBuilder::default().env(vec![DEFAULT_PATH_ENV.to_string()]);
    if let Some(cmd) = cmd {
        config = config.cmd(cmd);
    }
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
    write_image(store, &reference, &config, vec![layer])
}
