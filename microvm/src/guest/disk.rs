//! An image as a disk: its layers merged (overlayfs, read-only) and written
//! into a file system, once per image digest and file system, cached at
//! `<store>/cache/disks/<digest-hex>.<fs>`. Every VM of the image attaches
//! that one file read-only, as every container of an image shares its
//! layers; a VM's writes go to its own overlay layer in the guest.
//!
//! Two file systems ([`DiskFs`]): EROFS by `mkfs.erofs` (erofs-utils), the
//! default where it is installed and the guest kernel has erofs, and ext4 by
//! `mke2fs -d` (e2fsprogs) otherwise; `TWINBOX_DISK_FS=ext4|erofs` chooses.
//! EROFS is a read-only file system made for exactly this: measured in
//! bench/README.md (`Image disk format`), it builds faster, is smaller, and
//! boots no slower. The ext4 disk has no journal (it is never written) and
//! no metadata checksums (nothing to verify on a read-only disk built here).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use twinbox_engine::image::Image;
use twinbox_engine::store::Store;

use super::GuestError;

/// Where the disks live inside the store.
pub const CACHE_DIR: &str = "cache/disks";
/// Chooses the image disks' file system (`ext4` or `erofs`) over the default.
pub const DISK_FS_ENV: &str = "TWINBOX_DISK_FS";

/// The file system of an image's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFs {
    /// `mke2fs -d`: works with any kernel that mounts ext4.
    Ext4,
    /// `mkfs.erofs`, uncompressed: read-only by design, built faster and smaller.
    Erofs,
}

impl DiskFs {
    /// Its name for `mount -t` and the cache file's extension.
    pub fn name(self) -> &'static str {
        match self {
            DiskFs::Ext4 => "ext4",
            DiskFs::Erofs => "erofs",
        }
    }

    /// The guest kernel modules that mount it (dependencies are resolved
    /// from modules.dep). Both ask the crypto API for crc32c when they load
    /// (ext4 at mount, erofs through libcrc32c), and the guest has no modprobe
    /// to fetch it on demand.
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            DiskFs::Ext4 => &["crc32c_generic", "ext4"],
            DiskFs::Erofs => &["crc32c_generic", "erofs"],
        }
    }

    fn parse(value: &str) -> Result<DiskFs, GuestError> {
        match value {
            "ext4" => Ok(DiskFs::Ext4),
            "erofs" => Ok(DiskFs::Erofs),
            other => Err(GuestError::BadSpec(format!(
                "{DISK_FS_ENV}={other}: use ext4 or erofs"
            ))),
        }
    }

    /// [`DISK_FS_ENV`] when set; else EROFS where `mkfs.erofs` runs and the
    /// guest kernel (its `modules_dir`) has erofs, ext4 otherwise.
    pub fn choose(modules_dir: Option<&Path>) -> Result<DiskFs, GuestError> {
        if let Some(value) = std::env::var_os(DISK_FS_ENV) {
            return DiskFs::parse(&value.to_string_lossy());
        }
        let kernel_has_erofs = modules_dir
            .and_then(|dir| super::modules::ModuleIndex::load(dir).ok())
            .is_some_and(|index| index.provides("erofs"));
        Ok(if kernel_has_erofs && has_mkfs_erofs() {
            DiskFs::Erofs
        } else {
            DiskFs::Ext4
        })
    }
}

/// `mkfs.erofs` is installed: it runs and its usage text (on standard
/// error, with erofs-utils 1.5) names it.
fn has_mkfs_erofs() -> bool {
    Command::new("mkfs.erofs")
        .arg("--help")
        .output()
        .is_ok_and(|o| {
            [o.stdout, o.stderr]
                .concat()
                .windows(5)
                .any(|w| w == b"erofs")
        })
}

/// The image's disk, and whether this call built it.
#[derive(Debug, Clone)]
pub struct ImageDisk {
    pub path: PathBuf,
    pub fs: DiskFs,
    pub bytes: u64,
    pub built: bool,
    /// How long building took (zero when it came from the cache).
    pub build_ms: f64,
}

/// The cache file of `image`'s disk as `fs`.
pub fn disk_path(store: &Store, image: &Image, fs: DiskFs) -> PathBuf {
    store
        .root()
        .join(CACHE_DIR)
        .join(format!("{}.{}", image.manifest_digest.hex(), fs.name()))
}

/// The disk of `image` as `fs`, built on first use.
pub fn root_disk(store: &Store, image: &Image, fs: DiskFs) -> Result<ImageDisk, GuestError> {
    let path = disk_path(store, image, fs);
    if let Ok(md) = fs::metadata(&path) {
        return Ok(ImageDisk {
            path,
            fs,
            bytes: md.len(),
            built: false,
            build_ms: 0.0,
        });
    }
    let started = Instant::now();
    let dir = path.parent().expect("a cache file has a parent");
    fs::create_dir_all(dir).map_err(|e| GuestError::io(dir, e))?;
    let layers = image.lower_dirs(store);
    // Built in the store's scratch (tmp/disk-<pid>-<hex>: the layers mounted
    // there and the disk written there), then renamed into the cache: a crash
    // leaves scratch that the next command unmounts and removes, never a
    // half-made disk under the cache name.
    let scratch = store.temp_dir("disk")?;
    let tmp = scratch.join(format!("disk.{}", fs.name()));
    let result = (|| {
        let source = MergedLayers::mount(&layers, &scratch.join("merged"))?;
        match fs {
            DiskFs::Ext4 => {
                let (bytes, entries) = tree_size(source.path())?;
                make_ext4(source.path(), &tmp, bytes, entries)?;
            }
            DiskFs::Erofs => make_erofs(source.path(), &tmp)?,
        }
        twinbox_engine::fault::point("vm.disk-built");
        Ok(())
    })()
    .and_then(|()| fs::rename(&tmp, &path).map_err(|e| GuestError::io(&path, e)));
    let _ = fs::remove_dir_all(&scratch);
    result?;
    twinbox_engine::fault::point("vm.disk-cached");
    let bytes = fs::metadata(&path)
        .map_err(|e| GuestError::io(&path, e))?
        .len();
    Ok(ImageDisk {
        path,
        fs,
        bytes,
        built: true,
        build_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// A sparse, empty ext4 disk of `size` bytes for a VM's writable layer.
pub fn scratch_disk(path: &Path, size: u64) -> Result<(), GuestError> {
    let empty = path.with_extension("empty");
    fs::create_dir_all(&empty).map_err(|e| GuestError::io(&empty, e))?;
    let result = mke2fs(&empty, path, size, 1024);
    let _ = fs::remove_dir(&empty);
    result
}

/// Sizes the file system for the tree: its bytes in 4 KiB blocks, an inode
/// per entry, and room for ext4's own structures.
fn make_ext4(source: &Path, out: &Path, bytes: u64, entries: u64) -> Result<(), GuestError> {
    let size = (bytes + entries * 4096) / 8 * 9 + (16 << 20);
    mke2fs(source, out, size.next_multiple_of(1 << 20), entries + 1024)
}

/// An uncompressed EROFS image of the tree, owners, modes, xattrs and
/// modification times kept (`--preserve-mtime`: Python compares a .pyc with
/// its source's mtime), padded to whole sectors for virtio-blk.
fn make_erofs(source: &Path, out: &Path) -> Result<(), GuestError> {
    let output = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg("--preserve-mtime")
        .arg(out)
        .arg(source)
        .output()
        .map_err(|e| {
            GuestError::Tool(format!(
                "cannot run mkfs.erofs ({e}): install erofs-utils, or set {DISK_FS_ENV}=ext4"
            ))
        })?;
    if !output.status.success() {
        return Err(GuestError::Tool(format!(
            "mkfs.erofs failed building {}: {}",
            out.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let len = fs::metadata(out).map_err(|e| GuestError::io(out, e))?.len();
    if !len.is_multiple_of(512) {
        fs::OpenOptions::new()
            .write(true)
            .open(out)
            .and_then(|f| f.set_len(len.next_multiple_of(512)))
            .map_err(|e| GuestError::io(out, e))?;
    }
    Ok(())
}

fn mke2fs(source: &Path, out: &Path, size: u64, inodes: u64) -> Result<(), GuestError> {
    let output = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-L", "twinbox"])
        .args(["-O", "^has_journal,^metadata_csum,^orphan_file"])
        .args(["-E", "root_owner=0:0"])
        .arg("-N")
        .arg(inodes.to_string())
        .arg("-d")
        .arg(source)
        .arg(out)
        .arg(format!("{}k", size >> 10))
        .output()
        .map_err(|e| {
            GuestError::Tool(format!(
                "cannot run mke2fs ({e}): install e2fsprogs to run images from disks"
            ))
        })?;
    if !output.status.success() {
        return Err(GuestError::Tool(format!(
            "mke2fs failed building {}: {}",
            out.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// The image's layers as one tree: the layer itself when there is one,
/// else a read-only overlay of them (which honours the whiteouts), unmounted
/// when dropped.
struct MergedLayers {
    path: PathBuf,
    mounted: bool,
}

impl MergedLayers {
    fn mount(layers: &[PathBuf], at: &Path) -> Result<MergedLayers, GuestError> {
        match layers {
            [] => Err(GuestError::BadSpec("the image has no layers".into())),
            [only] => Ok(MergedLayers {
                path: only.clone(),
                mounted: false,
            }),
            _ => {
                fs::create_dir_all(at).map_err(|e| GuestError::io(at, e))?;
                let lower = layers
                    .iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":");
                mount_overlay(&format!("lowerdir={lower}"), at)?;
                Ok(MergedLayers {
                    path: at.to_path_buf(),
                    mounted: true,
                })
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MergedLayers {
    fn drop(&mut self) {
        if self.mounted {
            if let Ok(target) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2 with a valid NUL-terminated path.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

fn mount_overlay(options: &str, at: &Path) -> Result<(), GuestError> {
    let c = |s: &[u8]| {
        std::ffi::CString::new(s)
            .map_err(|_| GuestError::BadSpec("a layer path has a NUL byte".into()))
    };
    let (source, target, fstype, data) = (
        c(b"overlay")?,
        c(at.as_os_str().as_encoded_bytes())?,
        c(b"overlay")?,
        c(options.as_bytes())?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_RDONLY,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(GuestError::io(at, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Bytes of regular files and the number of entries under `dir`.
fn tree_size(dir: &Path) -> Result<(u64, u64), GuestError> {
    let mut bytes = 0;
    let mut entries = 1;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(|e| GuestError::io(&d, e))? {
            let entry = entry.map_err(|e| GuestError::io(&d, e))?;
            let md = entry
                .metadata()
                .map_err(|e| GuestError::io(entry.path(), e))?;
            entries += 1;
            if md.is_dir() {
                stack.push(entry.path());
            } else if md.is_file() {
                bytes += md.size().next_multiple_of(4096);
            }
        }
    }
    Ok((bytes, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_becomes_an_ext4_image_that_holds_it() {
        if Command::new("mke2fs").arg("-V").output().is_err() {
            eprintln!("skipping: no mke2fs (e2fsprogs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("etc/hostname"), "disk-test\n").unwrap();
        fs::write(src.join("big"), vec![7u8; 300_000]).unwrap();
        let (bytes, entries) = tree_size(&src).unwrap();
        assert_eq!((bytes, entries), (4096 + 303_104, 4));
        let out = dir.path().join("disk.ext4");
        make_ext4(&src, &out, bytes, entries).unwrap();
        let len = fs::metadata(&out).unwrap().len();
        assert_eq!(len % 512, 0, "whole sectors");
        // debugfs reads the file back out of the image.
        let cat = Command::new("debugfs")
            .args(["-R", "cat /etc/hostname"])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&cat.stdout), "disk-test\n");
        let features = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&out)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&features.stdout);
        assert!(!text.contains("has_journal"), "{text}");
        assert!(!text.contains("metadata_csum"), "{text}");
    }

    #[test]
    fn a_tree_becomes_an_erofs_image_that_holds_it() {
        if !has_mkfs_erofs() {
            eprintln!("skipping: no mkfs.erofs (erofs-utils)");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("etc/hostname"), "disk-test\n").unwrap();
        fs::write(src.join("big"), vec![7u8; 300_001]).unwrap();
        fs::set_permissions(src.join("big"), fs::Permissions::from_mode(0o4751)).unwrap();
        std::os::unix::fs::symlink("etc/hostname", src.join("link")).unwrap();
        let out = dir.path().join("disk.erofs");
        make_erofs(&src, &out).unwrap();
        let len = fs::metadata(&out).unwrap().len();
        assert_eq!(len % 512, 0, "whole sectors");
        assert!(len < 1 << 20, "about the tree's size: {len}");
        // fsck.erofs checks every file and extracts the tree back out
        let back = dir.path().join("back");
        let fsck = Command::new("fsck.erofs")
            .arg(format!("--extract={}", back.display()))
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stderr)
        );
        assert_eq!(
            fs::read_to_string(back.join("etc/hostname")).unwrap(),
            "disk-test\n"
        );
        assert_eq!(fs::read(back.join("big")).unwrap(), vec![7u8; 300_001]);
        // fsck.erofs's extraction drops setuid (it chowns after chmod): the
        // image's own mode is read through the kernel where erofs mounts here
        let mode = fs::metadata(back.join("big")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o751, "mode kept");
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "erofs", "-o", "loop,ro"])
            .arg(&out)
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success());
        if mounted {
            let mode = fs::metadata(mnt.join("big")).map(|m| m.permissions().mode());
            let _ = Command::new("umount").arg(&mnt).output();
            assert_eq!(mode.unwrap() & 0o7777, 0o4751, "setuid kept");
        } else {
            eprintln!("erofs does not mount here: setuid not checked");
        }
        assert_eq!(
            fs::read_link(back.join("link")).unwrap(),
            Path::new("etc/hostname")
        );
        let mtime = |p: &Path| fs::metadata(p).unwrap().mtime();
        assert_eq!(
            mtime(&back.join("big")),
            mtime(&src.join("big")),
            "mtime kept"
        );
    }

    #[test]
    fn the_disk_file_system_is_chosen_by_name_or_by_what_is_there() {
        assert_eq!(DiskFs::parse("ext4").unwrap(), DiskFs::Ext4);
        assert_eq!(DiskFs::parse("erofs").unwrap(), DiskFs::Erofs);
        let err = DiskFs::parse("xfs").unwrap_err().to_string();
        assert_eq!(err, "TWINBOX_DISK_FS=xfs: use ext4 or erofs");
        if std::env::var_os(DISK_FS_ENV).is_some() {
            eprintln!("skipping the default's check: {DISK_FS_ENV} is set");
            return;
        }
        // a kernel without erofs, and one without any modules: ext4
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.dep"), "kernel/fs/ext4/ext4.ko:\n").unwrap();
        assert_eq!(DiskFs::choose(Some(dir.path())).unwrap(), DiskFs::Ext4);
        assert_eq!(DiskFs::choose(None).unwrap(), DiskFs::Ext4);
        // with erofs (a module here), EROFS exactly when mkfs.erofs is installed
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n",
        )
        .unwrap();
        let want = if has_mkfs_erofs() {
            DiskFs::Erofs
        } else {
            DiskFs::Ext4
        };
        assert_eq!(DiskFs::choose(Some(dir.path())).unwrap(), want);
    }

    #[test]
    fn a_scratch_disk_is_sparse() {
        if Command::new("mke2fs").arg("-V").output().is_err() {
            eprintln!("skipping: no mke2fs (e2fsprogs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("rw.ext4");
        scratch_disk(&out, 256 << 20).unwrap();
        let md = fs::metadata(&out).unwrap();
        assert_eq!(md.len(), 256 << 20);
        assert!(
            md.blocks() * 512 < 16 << 20,
            "{} bytes used",
            md.blocks() * 512
        );
    }
}
