//! A directory tree as a layer tar: a RUN step's overlay upper dir (whiteouts
//! and opaque directories become OCI `.wh.` entries) or a COPY step's staging
//! dir. Entries are written in sorted order so the same tree gives the same tar.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::store::unpack::{is_opaque, is_whiteout};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Writes the tree under `root` as a tar to `out`. Paths in `skip` (relative)
/// are not written themselves, but what is below them is (a parent directory
/// that already exists in the image keeps its own metadata).
pub fn write_tar(root: &Path, skip: &HashSet<PathBuf>, out: impl Write) -> io::Result<u64> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut count = 0;
    walk(
        root,
        Path::new(""),
        skip,
        &mut builder,
        &mut links,
        &mut count,
    )?;
    builder.into_inner()?.flush()?;
    Ok(count)
}

fn header_for(md: &fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    h.set_size(size);
    h
}

fn walk<W: Write>(
    root: &Path,
    rel: &Path,
    skip: &HashSet<PathBuf>,
    b: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), PathBuf>,
    count: &mut u64,
) -> io::Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel_path = rel.join(&name);
        let md = path.symlink_metadata()?;
        let ft = md.file_type();
        if is_whiteout(&md) {
            // overlayfs whiteout: the file below is deleted
            let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
            wh.push(&name);
            let mut h = header_for(&md, tar::EntryType::Regular, 0);
            h.set_mode(0o600);
            b.append_data(&mut h, rel.join(wh), io::empty())?;
            *count += 1;
            continue;
        }
        if skip.contains(&rel_path) {
            if ft.is_dir() {
                walk(root, &rel_path, skip, b, links, count)?;
            }
            continue;
        }
        if ft.is_dir() {
            let mut h = header_for(&md, tar::EntryType::Directory, 0);
            b.append_data(&mut h, &rel_path, io::empty())?;
            *count += 1;
            if is_opaque(&path) {
                let mut h = header_for(&md, tar::EntryType::Regular, 0);
                h.set_mode(0o600);
                b.append_data(&mut h, rel_path.join(OPAQUE_MARKER), io::empty())?;
            }
            walk(root, &rel_path, skip, b, links, count)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            let mut h = header_for(&md, tar::EntryType::Symlink, 0);
            b.append_link(&mut h, &rel_path, &target)?;
            *count += 1;
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = links.get(&key) {
                    let mut h = header_for(&md, tar::EntryType::Link, 0);
                    b.append_link(&mut h, &rel_path, first)?;
                    *count += 1;
                    continue;
                }
                links.insert(key, rel_path.clone());
            }
            let mut h = header_for(&md, tar::EntryType::Regular, md.len());
            b.append_data(&mut h, &rel_path, File::open(&path)?)?;
            *count += 1;
        } else {
            let kind = if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else if ft.is_fifo() {
                tar::EntryType::Fifo
            } else {
                continue; // sockets have no tar form
            };
            let mut h = header_for(&md, kind, 0);
            let rdev = md.rdev();
            h.set_device_major(libc::major(rdev))?;
            h.set_device_minor(libc::minor(rdev))?;
            b.append_data(&mut h, &rel_path, io::empty())?;
            *count += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn names(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn tree_with_links_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("app/sub")).unwrap();
        fs::write(r.join("app/a"), "hello").unwrap();
        fs::hard_link(r.join("app/a"), r.join("app/b")).unwrap();
        std::os::unix::fs::symlink("a", r.join("app/l")).unwrap();
        let skip: HashSet<PathBuf> = [PathBuf::from("app")].into();
        let mut out = Vec::new();
        write_tar(r, &skip, &mut out).unwrap();
        let got = names(&out);
        assert_eq!(
            got,
            vec![
                ("app/a".into(), tar::EntryType::Regular),
                ("app/b".into(), tar::EntryType::Link),
                ("app/l".into(), tar::EntryType::Symlink),
                ("app/sub".into(), tar::EntryType::Directory),
            ]
        );
        let mut a = tar::Archive::new(&out[..]);
        let mut first = a.entries().unwrap().next().unwrap().unwrap();
        let mut s = String::new();
        first.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
