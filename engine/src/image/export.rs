//! Layers flattened into one tar, the way overlayfs merges them (a whiteout
//! hides the name below it, an opaque directory hides everything below it).
//! Computed from the layer dirs, so no mount is needed: `export` of a
//! container (`container::export`, its writable layer on top) and of an image.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{Image, ImageError, Result};
use crate::store::unpack::{is_opaque, is_whiteout};
use crate::store::Store;

/// Writes the merged view of `layers` (topmost first, like overlayfs lowerdir).
pub fn write_merged_tar(layers: &[PathBuf], out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut w = Merger {
        layers,
        tar: &mut tar,
        links: HashMap::new(),
    };
    let present: Vec<usize> = (0..layers.len()).filter(|&i| layers[i].is_dir()).collect();
    w.merge_dir(Path::new(""), &present)
        .map_err(|e| ImageError::Io {
            path: "export".into(),
            source: e,
        })?;
    tar.into_inner()
        .and_then(|mut o| o.flush())
        .map_err(|e| ImageError::Io {
            path: "export".into(),
            source: e,
        })
}

/// An image's layers flattened into one root filesystem tar.
pub fn export_image(store: &Store, image: &Image, out: impl Write) -> Result<()> {
    write_merged_tar(&image.lower_dirs(store), out)
}

struct Merger<'a, W: Write> {
    layers: &'a [PathBuf],
    tar: &'a mut tar::Builder<W>,
    /// (dev, inode) → first name written, for hard links
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Merger<'_, W> {
    /// `present`: indices of the layers where `rel` is a directory that shows
    /// through, topmost first.
    fn merge_dir(&mut self, rel: &Path, present: &[usize]) -> io::Result<()> {
        // name → (winning layer, its metadata); None when a whiteout hides it
        let mut names: BTreeMap<OsString, Option<(usize, Metadata)>> = BTreeMap::new();
        for &i in present {
            let dir = self.layers[i].join(rel);
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if names.contains_key(&name) {
                    continue;
                }
                let md = entry.path().symlink_metadata()?;
                let shown = (!is_whiteout(&md)).then_some((i, md));
                names.insert(name, shown);
            }
        }
        for (name, shown) in names {
            let Some((i, md)) = shown else { continue };
            let rel_path = rel.join(&name);
            let path = self.layers[i].join(&rel_path);
            if md.is_dir() {
                self.append(&rel_path, &path, &md)?;
                let mut below = vec![i];
                if !is_opaque(&path) {
                    for &j in present.iter().filter(|&&j| j > i) {
                        let p = self.layers[j].join(&rel_path);
                        match p.symlink_metadata() {
                            Ok(m) if m.is_dir() => {
                                below.push(j);
                                if is_opaque(&p) {
                                    break;
                                }
                            }
                            Ok(_) => break, // a file or a whiteout ends the merge
                            Err(_) => {}
                        }
                    }
                }
                self.merge_dir(&rel_path, &below)?;
            } else {
                self.append(&rel_path, &path, &md)?;
            }
        }
        Ok(())
    }

    fn append(&mut self, name: &Path, path: &Path, md: &Metadata) -> io::Result<()> {
        let ft = md.file_type();
        if ft.is_socket() {
            return Ok(()); // tar cannot hold one; docker export skips them too
        }
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(md, tar::HeaderMode::Complete);
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                return self.tar.append_link(&mut h, name, first.clone());
            }
            self.links.insert(key, name.to_path_buf());
        }
        if ft.is_symlink() {
            let target = fs::read_link(path)?;
            h.set_size(0);
            return self.tar.append_link(&mut h, name, target);
        }
        if ft.is_file() {
            let f = File::open(path)?;
            return self.tar.append_data(&mut h, name, f);
        }
        h.set_size(0);
        self.tar.append_data(&mut h, name, io::empty())
    }
}
