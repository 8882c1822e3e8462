//! Safe layer unpacking. A layer is untrusted input: every entry is checked before
//! it touches the disk, and OCI whiteouts become overlayfs whiteouts.
//!
//! The caller unpacks into a fresh directory under tmp/ and renames it into
//! layers/ only when this returns Ok, so a refused archive leaves nothing behind.

use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::{Result, StoreError};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// No single file in a teaching image comes near this; a header claiming more is hostile.
const MAX_ENTRY_BYTES: u64 = 64 << 30;

#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

fn refuse(entry: &Path, why: &str) -> StoreError {
    StoreError::Unpack(format!("entry {:?} {why}: refusing the archive", entry))
}

/// Normalises an entry path to a relative one with no `..`, or refuses it.
fn clean_entry_path(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse(raw, "contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(raw, "has an absolute path"))
            }
        }
    }
    Ok(out)
}

/// A relative symlink must not climb above the layer root from where it sits.
/// Absolute targets are fine: they resolve inside the container's root.
fn check_symlink_target(entry: &Path, target: &Path) -> Result<()> {
    if target.is_absolute() {
        return Ok(());
    }
    let mut depth: i64 = entry.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(refuse(
                entry,
                &format!("is a symlink to {:?} that points outside the layer", target),
            ));
        }
    }
    Ok(())
}

/// Unpacks a tar stream (already decompressed) into `dst`.
pub fn unpack_layer<R: Read>(reader: R, dst: &Path) -> Result<UnpackStats> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut stats = UnpackStats::default();
    let entries = archive
        .entries()
        .map_err(|e| StoreError::Unpack(format!("cannot read the tar stream: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| StoreError::Unpack(format!("corrupted tar archive: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| StoreError::Unpack(format!("bad entry name: {e}")))?
            .into_owned();
        let rel = clean_entry_path(&raw)?;
        if rel.as_os_str().is_empty() {
            continue; // the archive's own "./"
        }
        stats.entries += 1;
        let size = entry.header().size().unwrap_or(0);
        if size > MAX_ENTRY_BYTES {
            return Err(refuse(
                &raw,
                &format!("claims an absurd size of {size} bytes"),
            ));
        }
        let kind = entry.header().entry_type();
        let name = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let parent = rel.parent().unwrap_or(Path::new(""));

        if name == OPAQUE_MARKER {
            make_opaque(&dir_inside(dst, parent, &raw)?)?;
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(hidden, "" | "." | "..") {
                return Err(refuse(&raw, "is a whiteout that names no file"));
            }
            make_whiteout(&dir_inside(dst, parent, &raw)?.join(hidden))?;
            stats.whiteouts += 1;
            continue;
        }
        match kind {
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| refuse(&raw, "is a symlink without a target"))?;
                check_symlink_target(&rel, &target)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| refuse(&raw, "is a hard link without a target"))?;
                clean_entry_path(&target).map_err(|_| {
                    refuse(
                        &raw,
                        &format!("is a hard link to {:?} outside the layer", target),
                    )
                })?;
            }
            EntryType::Char | EntryType::Block => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(1);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(1);
                if !(kind == EntryType::Char && major == 0 && minor == 0) {
                    return Err(refuse(
                        &raw,
                        "is a device node, which image layers may not carry",
                    ));
                }
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Fifo
            | EntryType::GNUSparse => {}
            other => {
                if !other.is_pax_global_extensions()
                    && !other.is_pax_local_extensions()
                    && !other.is_gnu_longname()
                    && !other.is_gnu_longlink()
                {
                    return Err(refuse(&raw, &format!("has an unsupported type {other:?}")));
                }
                continue;
            }
        }
        // unpack_in re-validates the path and refuses to write through a symlink
        // that leads out of `dst`.
        let unpacked = entry
            .unpack_in(dst)
            .map_err(|e| StoreError::Unpack(format!("entry {:?}: {}", raw, io_error_chain(&e))))?;
        if !unpacked {
            return Err(refuse(&raw, "would be written outside the layer"));
        }
        stats.bytes += size;
    }
    Ok(stats)
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| StoreError::Unpack(format!("path {:?} contains a NUL byte", p)))
}

/// The directory `parent` under `dst`, made where missing, never reached through a
/// symlink: whiteouts are written by hand, not by tar's checked `unpack_in`, and a
/// layer's own symlink (`link -> /`) would otherwise carry a `link/.wh.passwd` to
/// the host's files.
fn dir_inside(dst: &Path, parent: &Path, entry: &Path) -> Result<PathBuf> {
    let mut dir = dst.to_path_buf();
    for part in parent.components() {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(refuse(
                    entry,
                    &format!(
                        "lies under {:?}, which is not a directory in this layer",
                        dir.strip_prefix(dst).unwrap_or(&dir)
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&dir).map_err(|e| StoreError::io(&dir, e))?;
            }
            Err(e) => return Err(StoreError::io(&dir, e)),
        }
    }
    Ok(dir)
}

/// overlayfs reads a 0:0 character device as "deleted in this layer". `path`'s
/// directory comes from [`dir_inside`]; the name itself may be a symlink, which
/// remove_file removes rather than follows.
fn make_whiteout(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let c = cpath(path)?;
    // SAFETY: mknod with a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if rc != 0 {
        return Err(StoreError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// overlayfs hides everything below a directory marked opaque. `dir` comes from
/// [`dir_inside`], so it is a real directory of this layer.
fn make_opaque(dir: &Path) -> Result<()> {
    let c = cpath(dir)?;
    // SAFETY: lsetxattr with valid NUL-terminated name and path and a 1-byte value.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    if rc != 0 {
        return Err(StoreError::io(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Whether `md` is an overlayfs whiteout (a 0:0 character device), as
/// [`make_whiteout`] writes them: readers that merge layers themselves (export,
/// the VM's initramfs) hide the lower path.
pub fn is_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    md.file_type().is_char_device() && md.rdev() == 0
}

/// Whether `dir` is marked opaque (as [`make_opaque`] does, or overlayfs
/// mounted with `userxattr`): nothing from lower layers shows through it.
pub fn is_opaque(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.overlay.opaque", c"user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 1];
            // SAFETY: valid NUL-terminated path and attribute name; the buffer holds 1 byte.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            n == 1 && value[0] == b'y'
        })
}

/// tar's errors wrap the OS error; show both so the user sees why.
fn io_error_chain(e: &std::io::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file_header(size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(EntryType::Regular);
        h
    }

    #[test]
    fn clean_paths() {
        assert_eq!(
            clean_entry_path(Path::new("./a/b")).unwrap(),
            Path::new("a/b")
        );
        assert!(clean_entry_path(Path::new("a/../../b")).is_err());
        assert!(clean_entry_path(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn symlink_targets() {
        assert!(check_symlink_target(Path::new("bin/sh"), Path::new("busybox")).is_ok());
        assert!(check_symlink_target(Path::new("bin/sh"), Path::new("/bin/busybox")).is_ok());
        assert!(check_symlink_target(Path::new("a/b/c"), Path::new("../x")).is_ok());
        assert!(check_symlink_target(Path::new("a/b"), Path::new("../../etc")).is_err());
    }

    #[test]
    fn refuses_dotdot_entry_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("layer");
        std::fs::create_dir(&dst).unwrap();
        // tar::Builder refuses '..' itself, so write the name into the raw header.
        let mut h = file_header(3);
        h.as_old_mut().name[..12].copy_from_slice(b"../escape.tx");
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'x'; 3]);
        data.resize(data.len() + 509 + 1024, 0);
        let err = unpack_layer(&data[..], &dst).unwrap_err().to_string();
        assert!(err.contains("'..'"), "{err}");
        assert!(!dir.path().join("escape.tx").exists());
    }

    /// A layer's symlink to a directory outside, then whiteouts and an opaque marker
    /// under it: found by the ingest fuzz target, which made `/twfz-long-name...` on
    /// the host. Nothing outside may be made, removed or marked.
    #[test]
    fn whiteouts_under_a_symlink_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"keep").unwrap();
        let dst = dir.path().join("layer");
        let cases: [&str; 3] = ["link/.wh.victim", "link/made/.wh.x", "link/.wh..wh..opq"];
        for case in cases {
            std::fs::create_dir(&dst).unwrap();
            let data = tar_with(|b| {
                let mut h = file_header(0);
                h.set_entry_type(EntryType::Symlink);
                b.append_link(&mut h, "link", &outside).unwrap();
                b.append_data(&mut file_header(0), case, &[][..]).unwrap();
            });
            let err = unpack_layer(&data[..], &dst).unwrap_err().to_string();
            assert!(
                err.contains("not a directory in this layer"),
                "{case}: {err}"
            );
            assert_eq!(
                std::fs::read(outside.join("victim")).unwrap(),
                b"keep",
                "{case}"
            );
            let left: Vec<_> = std::fs::read_dir(&outside)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(left, ["victim"], "{case}");
            assert!(!is_opaque(&outside), "{case}");
            std::fs::remove_dir_all(&dst).unwrap();
        }
    }

    #[test]
    fn refuses_escaping_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let data = tar_with(|b| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, "evil", "../../../../etc").unwrap();
        });
        let err = unpack_layer(&data[..], dir.path()).unwrap_err().to_string();
        assert!(err.contains("outside the layer"), "{err}");
    }

    #[test]
    fn unpacks_files_and_whiteouts() {
        let dir = tempfile::tempdir().unwrap();
        let data = tar_with(|b| {
            b.append_data(&mut file_header(5), "etc/motd", &b"hello"[..])
                .unwrap();
            b.append_data(&mut file_header(0), "etc/.wh.gone", &b""[..])
                .unwrap();
        });
        let stats = unpack_layer(&data[..], dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("etc/motd")).unwrap(),
            b"hello"
        );
        assert_eq!(stats.whiteouts, 1);
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::FileTypeExt;
            let md = std::fs::symlink_metadata(dir.path().join("etc/gone")).unwrap();
            assert!(md.file_type().is_char_device());
        }
    }
}
