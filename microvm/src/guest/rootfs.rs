//! An image's unpacked layers merged the way overlayfs would show them, written
//! straight into cpio entries (no copy to a temporary directory). The merge
//! (whiteouts hide, opaque directories end it) is the engine's
//! [`MergedView::walk`], the one export uses too.

use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::cpio::{CpioWriter, Kind, Meta};
use super::GuestError;
use twinbox_engine::layer::merged::MergedView;

/// What went into the archive.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlattenStats {
    pub entries: u64,
    pub file_bytes: u64,
    /// Whiteout markers honoured (each hides a path of the layers below).
    pub whiteouts: u64,
}

/// Writes the merged tree of `layers` (topmost first, like
/// `Image::lower_dirs`) into `cpio`, parents before children, in name order.
pub fn write_layers<W: Write>(
    layers: &[PathBuf],
    cpio: &mut CpioWriter<W>,
) -> Result<FlattenStats, GuestError> {
    for layer in layers {
        let md = fs::symlink_metadata(layer).map_err(|e| GuestError::io(layer, e))?;
        if !md.is_dir() {
            return Err(GuestError::io(
                layer,
                std::io::Error::other("image layer is not an unpacked directory"),
            ));
        }
    }
    let mut stats = FlattenStats::default();
    // the walk speaks io::Error: a cpio failure is kept whole beside it
    let mut failed = None;
    let walked = MergedView::new(layers.to_vec()).walk(&mut |e| {
        emit(cpio, e.rel, e.path, e.metadata, &mut stats).map_err(|err| {
            failed = Some(err);
            std::io::Error::other("writing the cpio failed")
        })
    });
    match walked {
        Ok(whiteouts) => stats.whiteouts = whiteouts,
        Err(e) => return Err(failed.unwrap_or_else(|| GuestError::io("image layers", e))),
    }
    Ok(stats)
}

fn emit<W: Write>(
    cpio: &mut CpioWriter<W>,
    rel: &Path,
    full: &Path,
    md: &Metadata,
    stats: &mut FlattenStats,
) -> Result<(), GuestError> {
    let name = rel.as_os_str().as_bytes();
    let meta = Meta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    };
    let ft = md.file_type();
    let io = |e| GuestError::io(full, e);
    if ft.is_dir() {
        cpio.dir(name, meta).map_err(io)?;
    } else if ft.is_file() {
        let mut file = File::open(full).map_err(io)?;
        cpio.file_from(name, meta, md.len(), &mut file)
            .map_err(io)?;
        stats.file_bytes += md.len();
    } else if ft.is_symlink() {
        let target = fs::read_link(full).map_err(io)?;
        cpio.symlink(name, target.as_os_str().as_bytes(), meta)
            .map_err(io)?;
    } else if ft.is_fifo() {
        cpio.special(name, Kind::Fifo, meta).map_err(io)?;
    } else if ft.is_char_device() || ft.is_block_device() {
        let (major, minor) = (libc::major(md.rdev()), libc::minor(md.rdev()));
        let kind = if ft.is_char_device() {
            Kind::CharDevice { major, minor }
        } else {
            Kind::BlockDevice { major, minor }
        };
        cpio.special(name, kind, meta).map_err(io)?;
    } else {
        // Sockets only exist while a process listens: nothing to carry over.
        return Ok(());
    }
    stats.entries += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::cpio::read_entries;
    use std::ffi::CString;
    use std::os::unix::fs::symlink;

    fn mknod_whiteout(path: &Path) -> bool {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path; creates a 0:0 character device (needs root).
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) == 0 }
    }

    fn set_opaque(dir: &Path) -> bool {
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path and name, 1-byte value.
        unsafe {
            libc::setxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            ) == 0
        }
    }

    fn flatten(layers: &[PathBuf]) -> (Vec<crate::guest::cpio::ReadEntry>, FlattenStats) {
        let mut w = CpioWriter::new(Vec::new());
        let stats = write_layers(layers, &mut w).unwrap();
        (read_entries(&w.finish().unwrap()), stats)
    }

    /// Two layers, like an image whose second step deleted and replaced files.
    #[test]
    fn upper_layer_wins_and_whiteouts_hide() {
        let base = tempfile::tempdir().unwrap();
        let top = tempfile::tempdir().unwrap();
        let (b, t) = (base.path(), top.path());
        for d in ["etc", "var/cache/apt", "opt/app", "data"] {
            fs::create_dir_all(b.join(d)).unwrap();
        }
        fs::write(b.join("etc/motd"), "old motd\n").unwrap();
        fs::write(b.join("etc/keep"), "kept\n").unwrap();
        fs::write(b.join("etc/deleted"), "gone soon\n").unwrap();
        fs::write(b.join("var/cache/apt/pkg.bin"), "cache").unwrap();
        fs::write(b.join("opt/app/old.py"), "old").unwrap();
        fs::write(b.join("data/inside"), "x").unwrap(); // a directory below ...
        symlink("motd", b.join("etc/motd-link")).unwrap();

        fs::create_dir_all(t.join("etc")).unwrap();
        fs::create_dir_all(t.join("opt/app")).unwrap();
        fs::create_dir_all(t.join("var/cache")).unwrap();
        fs::write(t.join("etc/motd"), "new motd\n").unwrap();
        fs::write(t.join("opt/app/new.py"), "new").unwrap();
        fs::write(t.join("data"), "now a file").unwrap(); // ... a file above
                                                          // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            assert!(mknod_whiteout(&t.join("etc/deleted")));
            assert!(mknod_whiteout(&t.join("var/cache/apt")));
            assert!(set_opaque(&t.join("opt/app")));
        }

        let (entries, stats) = flatten(&[t.to_path_buf(), b.to_path_buf()]);
        let find = |n: &str| entries.iter().find(|e| e.name == n);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(find("etc/motd").unwrap().data, b"new motd\n");
        assert_eq!(find("etc/keep").unwrap().data, b"kept\n");
        assert_eq!(find("etc/motd-link").unwrap().data, b"motd");
        assert_eq!(find("data").unwrap().data, b"now a file");
        assert!(find("data/inside").is_none(), "{names:?}");
        assert!(find("opt/app/new.py").is_some());
        // every path once, parents before children
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                names.iter().filter(|n| **n == e.name).count(),
                1,
                "{}",
                e.name
            );
            if let Some((parent, _)) = e.name.rsplit_once('/') {
                let p = names.iter().position(|n| *n == parent).unwrap();
                assert!(p < i, "{} before its parent", e.name);
            }
        }
        if root {
            assert!(find("etc/deleted").is_none(), "{names:?}");
            assert!(find("var/cache/apt").is_none(), "{names:?}");
            assert!(find("var/cache/apt/pkg.bin").is_none(), "{names:?}");
            assert!(find("opt/app/old.py").is_none(), "{names:?}");
            assert_eq!(stats.whiteouts, 2);
        } else {
            eprintln!("not root: whiteout and opaque markers not tested");
            assert!(find("etc/deleted").is_some());
        }
    }

    #[test]
    fn modes_and_owners_are_kept() {
        let layer = tempfile::tempdir().unwrap();
        let l = layer.path();
        fs::create_dir(l.join("tmp")).unwrap();
        fs::set_permissions(
            l.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        fs::write(l.join("tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            l.join("tool"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        let (entries, stats) = flatten(&[l.to_path_buf()]);
        assert_eq!(stats.entries, 2);
        assert_eq!(stats.file_bytes, 10);
        let md = fs::metadata(l.join("tool")).unwrap();
        let tool = entries.iter().find(|e| e.name == "tool").unwrap();
        assert_eq!(tool.mode, 0o104755);
        assert_eq!((tool.uid, tool.gid), (md.uid(), md.gid()));
        assert_eq!(
            entries.iter().find(|e| e.name == "tmp").unwrap().mode,
            0o041777
        );
    }

    #[test]
    fn a_missing_layer_is_an_error() {
        let mut w = CpioWriter::new(Vec::new());
        let err = write_layers(&[PathBuf::from("/nonexistent/layer")], &mut w).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/layer"), "{err}");
    }
}
