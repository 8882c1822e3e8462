//! A layer copied with its owners shifted into a user namespace's id range:
//! what `--userns=auto` mounts where the kernel cannot idmap the store's file
//! system (Podman's chown fallback). A file owned by id `n` < size becomes
//! owned by `base + n`; ids outside the range become the overflow id (65534),
//! which the container sees as nobody, as it would through an idmapped mount.
//! Modes (setuid included), times, hard links, devices, whiteouts and xattrs
//! (opaque markers, file capabilities and ACLs rewritten for the range) are
//! kept; symlinks are copied, never followed. File data is reflinked where
//! the file system can, copied otherwise.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The host ids of a user namespace: container ids `0..size` are `uid..`/`gid..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub uid: u32,
    pub gid: u32,
    pub size: u32,
}

/// The kernel's overflow id: what an id without a mapping shows as.
const OVERFLOW_ID: u32 = 65534;

impl Shift {
    fn uid(&self, id: u32) -> u32 {
        if id < self.size {
            self.uid + id
        } else {
            OVERFLOW_ID
        }
    }
    fn gid(&self, id: u32) -> u32 {
        if id < self.size {
            self.gid + id
        } else {
            OVERFLOW_ID
        }
    }
}

/// What a copy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShiftStats {
    pub entries: u64,
    pub bytes: u64,
    /// Files whose data was shared by reflink instead of copied.
    pub reflinked: u64,
}

/// Copies the tree `src` to `dst` (which must not exist) with every owner
/// shifted by `shift`.
pub fn copy_shifted(src: &Path, dst: &Path, shift: &Shift) -> io::Result<ShiftStats> {
    let mut c = Copier {
        shift: *shift,
        links: HashMap::new(),
        stats: ShiftStats::default(),
        reflink: true,
    };
    c.copy(src, dst)?;
    Ok(c.stats)
}

struct Copier {
    shift: Shift,
    /// (dev, ino) of multiply linked files already copied, and where.
    links: HashMap<(u64, u64), PathBuf>,
    stats: ShiftStats,
    /// Cleared at the first refused reflink: the file system has none.
    reflink: bool,
}

fn at(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

impl Copier {
    fn copy(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let md = fs::symlink_metadata(src).map_err(|e| at(src, "stat", e))?;
        self.stats.entries += 1;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(dst).map_err(|e| at(dst, "create", e))?;
            let mut names: Vec<_> = fs::read_dir(src)
                .map_err(|e| at(src, "read", e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(|e| at(src, "read", e))?;
            names.sort();
            for name in names {
                self.copy(&src.join(&name), &dst.join(&name))?;
            }
            // after the children: creating them moved the directory's mtime
            return self.finish(src, dst, &md);
        }
        if md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                return fs::hard_link(first, dst).map_err(|e| at(dst, "link", e));
            }
        }
        if ft.is_file() {
            self.copy_data(src, dst, &md)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(src).map_err(|e| at(src, "readlink", e))?;
            std::os::unix::fs::symlink(&target, dst).map_err(|e| at(dst, "symlink", e))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() || ft.is_socket() {
            // whiteouts are 0/0 character devices: kept as they are
            let c = cpath(dst)?;
            // SAFETY: mknod with a NUL-terminated path, the source's type and device.
            let rc = unsafe { libc::mknod(c.as_ptr(), md.mode() & libc::S_IFMT, md.rdev()) };
            if rc != 0 {
                return Err(at(dst, "mknod", io::Error::last_os_error()));
            }
        } else {
            return Err(at(src, "copy", io::Error::other("unknown file type")));
        }
        if md.nlink() > 1 {
            self.links.insert((md.dev(), md.ino()), dst.to_path_buf());
        }
        self.finish(src, dst, &md)
    }

    fn copy_data(&mut self, src: &Path, dst: &Path, md: &fs::Metadata) -> io::Result<()> {
        let mut from = File::open(src).map_err(|e| at(src, "open", e))?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dst)
            .map_err(|e| at(dst, "create", e))?;
        self.stats.bytes += md.len();
        if self.reflink && md.len() > 0 {
            // SAFETY: FICLONE between two descriptors we own; no memory is passed.
            let rc = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) };
            if rc == 0 {
                self.stats.reflinked += 1;
                return Ok(());
            }
            self.reflink = false;
        }
        // copy_file_range where the kernel has it
        io::copy(&mut from, &mut to).map_err(|e| at(dst, "copy", e))?;
        Ok(())
    }

    /// Owner, xattrs, mode and times, in that order: chown clears setuid
    /// bits and file capabilities, so both are set after it.
    fn finish(&self, src: &Path, dst: &Path, md: &fs::Metadata) -> io::Result<()> {
        std::os::unix::fs::lchown(
            dst,
            Some(self.shift.uid(md.uid())),
            Some(self.shift.gid(md.gid())),
        )
        .map_err(|e| at(dst, "chown", e))?;
        for (name, value) in xattrs(src)? {
            let value = match name.as_bytes() {
                b"security.capability" => shift_caps(&value, &self.shift),
                b"system.posix_acl_access" | b"system.posix_acl_default" => {
                    shift_acl(&value, &self.shift)
                }
                _ => value,
            };
            if let Err(e) = set_xattr(dst, &name, &value) {
                // the overlay's own markers decide what the container sees;
                // others (a capability, an ACL) are kept where possible
                if name.as_bytes().starts_with(b"trusted.overlay.") {
                    return Err(at(dst, "set xattr", e));
                }
                tracing::warn!(path = %dst.display(), xattr = ?name, error = %e, "xattr not copied");
            }
        }
        let symlink = md.file_type().is_symlink();
        if !symlink {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(|e| at(dst, "chmod", e))?;
        }
        let times = [
            libc::timespec {
                tv_sec: md.atime(),
                tv_nsec: md.atime_nsec(),
            },
            libc::timespec {
                tv_sec: md.mtime(),
                tv_nsec: md.mtime_nsec(),
            },
        ];
        let c = cpath(dst)?;
        // SAFETY: utimensat with a NUL-terminated path and two timespecs.
        let rc = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(at(dst, "set times", io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Every xattr of `path` itself (not a symlink's target).
fn xattrs(path: &Path) -> io::Result<Vec<(CString, Vec<u8>)>> {
    let c = cpath(path)?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: llistxattr into a buffer of the length we pass.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(at(path, "list xattrs", e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = CString::new(name).expect("split at NUL");
        let mut value = vec![0u8; 256];
        let n = loop {
            // SAFETY: lgetxattr into a buffer of the length we pass.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if value.len() < 1 << 20 => value.resize(value.len() * 8, 0),
                _ => return Err(at(path, "read xattr", e)),
            }
        };
        value.truncate(n);
        out.push((name, value));
    }
    Ok(out)
}

fn set_xattr(path: &Path, name: &CString, value: &[u8]) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: lsetxattr with NUL-terminated path and name and a value of its length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const VFS_CAP_REVISION_MASK: u32 = 0xff00_0000;
const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_REVISION_3: u32 = 0x0300_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 1;

/// A file capability as the range's root owns it: a v2 capability (no root
/// id, so only the host's root would get it) becomes v3 naming the range's
/// root, as an idmapped mount would present it; a v3 one has its root id
/// shifted. Anything else is kept.
fn shift_caps(v: &[u8], shift: &Shift) -> Vec<u8> {
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if v.len() < 4 {
        return v.to_vec();
    }
    let magic = le(v);
    let root = match (magic & VFS_CAP_REVISION_MASK, v.len()) {
        (VFS_CAP_REVISION_2, 20) => 0,
        (VFS_CAP_REVISION_3, 24) => le(&v[20..]),
        _ => return v.to_vec(),
    };
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&(VFS_CAP_REVISION_3 | (magic & VFS_CAP_FLAGS_EFFECTIVE)).to_le_bytes());
    out.extend_from_slice(&v[4..20]);
    out.extend_from_slice(&shift.uid(root).to_le_bytes());
    out
}

const ACL_USER: u16 = 0x02;
const ACL_GROUP: u16 = 0x08;

/// A POSIX ACL xattr (a 4-byte version, then 8-byte entries: tag, perm, id)
/// with its named users' and groups' ids shifted.
fn shift_acl(v: &[u8], shift: &Shift) -> Vec<u8> {
    let mut out = v.to_vec();
    if v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
        return out;
    }
    for e in out[4..].chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let id = match tag {
            ACL_USER => shift.uid(id),
            ACL_GROUP => shift.gid(id),
            _ => continue,
        };
        e[4..8].copy_from_slice(&id.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Shift = Shift {
        uid: 100000,
        gid: 200000,
        size: 65536,
    };

    #[test]
    fn ids_shift_inside_the_range_and_overflow_outside() {
        assert_eq!(S.uid(0), 100000);
        assert_eq!(S.gid(65535), 265535);
        assert_eq!(S.uid(65536), OVERFLOW_ID);
    }

    #[test]
    fn v2_capabilities_become_v3_of_the_range_root() {
        let mut v2 = (VFS_CAP_REVISION_2 | 1).to_le_bytes().to_vec();
        v2.extend_from_slice(&[0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let v3 = shift_caps(&v2, &S);
        assert_eq!(v3.len(), 24);
        assert_eq!(
            u32::from_le_bytes(v3[..4].try_into().unwrap()),
            VFS_CAP_REVISION_3 | 1
        );
        assert_eq!(&v3[4..20], &v2[4..20], "the capability sets are kept");
        assert_eq!(u32::from_le_bytes(v3[20..].try_into().unwrap()), 100000);
        // a v3 one has its root id shifted
        let mut v3_5 = v3[..20].to_vec();
        v3_5.extend_from_slice(&5u32.to_le_bytes());
        let shifted = shift_caps(&v3_5, &S);
        assert_eq!(
            u32::from_le_bytes(shifted[20..].try_into().unwrap()),
            100005
        );
        assert_eq!(shift_caps(b"xy", &S), b"xy");
    }

    #[test]
    fn acl_named_entries_shift() {
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, id) in [(0x01u16, u32::MAX), (ACL_USER, 7), (ACL_GROUP, 9)] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        let out = shift_acl(&acl, &S);
        let id =
            |i: usize| u32::from_le_bytes(out[4 + i * 8 + 4..4 + i * 8 + 8].try_into().unwrap());
        assert_eq!((id(0), id(1), id(2)), (u32::MAX, 100007, 200009));
    }

    #[test]
    fn a_tree_keeps_its_shape_and_shifts_owners() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: chown needs root");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), b"data").unwrap();
        std::os::unix::fs::lchown(src.join("d/f"), Some(5), Some(6)).unwrap();
        fs::set_permissions(src.join("d/f"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("d/f"), src.join("h")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", src.join("l")).unwrap();
        let dst = t.path().join("dst");
        let stats = copy_shifted(&src, &dst, &S).unwrap();
        assert_eq!(stats.entries, 5);
        let md = fs::symlink_metadata(dst.join("d/f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (100005, 200006));
        assert_eq!(md.mode() & 0o7777, 0o4755, "setuid survives the chown");
        assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"data");
        assert_eq!(
            md.ino(),
            fs::metadata(dst.join("h")).unwrap().ino(),
            "hard links stay links"
        );
        assert_eq!(
            fs::read_link(dst.join("l")).unwrap(),
            Path::new("/nonexistent")
        );
        assert_eq!(fs::symlink_metadata(dst.join("l")).unwrap().uid(), 100000);
        assert_eq!(fs::metadata(&dst).unwrap().uid(), 100000);
    }
}
