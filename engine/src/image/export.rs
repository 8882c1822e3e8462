//! Layers flattened into one tar, the way overlayfs merges them (the merge is
//! [`MergedView::walk`]'s). Computed from the layer dirs, so no mount is
//! needed: `export` of a container (`container::export`, its writable layer on
//! top) and of an image.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{Image, ImageError, Result};
use crate::layer::merged::MergedView;
use crate::store::Store;

/// Writes the merged view of `layers` (topmost first, like overlayfs lowerdir).
pub fn write_merged_tar(layers: &[PathBuf], out: impl Write) -> Result<()> {
    let export_err = |e| ImageError::Io {
        path: "export".into(),
        source: e,
    };
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    // (dev, inode) → first name written, for hard links
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    MergedView::new(layers.to_vec())
        .walk(&mut |e| append(&mut tar, &mut links, e.rel, e.path, e.metadata))
        .map_err(export_err)?;
    tar.into_inner()
        .and_then(|mut o| o.flush())
        .map_err(export_err)
}

/// An image's layers flattened into one root filesystem tar.
pub fn export_image(store: &Store, image: &Image, out: impl Write) -> Result<()> {
    write_merged_tar(&image.lower_dirs(store), out)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), PathBuf>,
    name: &Path,
    path: &Path,
    md: &Metadata,
) -> io::Result<()> {
    let ft = md.file_type();
    if ft.is_socket() {
        return Ok(()); // tar cannot hold one; docker export skips them too
    }
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
    if !ft.is_dir() && md.nlink() > 1 {
        let key = (md.dev(), md.ino());
        if let Some(first) = links.get(&key) {
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            return tar.append_link(&mut h, name, first.clone());
        }
        links.insert(key, name.to_path_buf());
    }
    if ft.is_symlink() {
        let target = fs::read_link(path)?;
        h.set_size(0);
        return tar.append_link(&mut h, name, target);
    }
    if ft.is_file() {
        let f = File::open(path)?;
        return tar.append_data(&mut h, name, f);
    }
    h.set_size(0);
    tar.append_data(&mut h, name, io::empty())
}
