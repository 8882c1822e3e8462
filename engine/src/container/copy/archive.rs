//! `cp` with `-`, as Docker's: `cp CONTAINER:PATH -` writes PATH as a tar
//! archive to standard output, `cp - CONTAINER:DIR` extracts a tar archive
//! (plain, gzip or zstd) from standard input into DIR.
//!
//! The archive is untrusted input. It is spooled and checked whole before
//! anything is written, so a refused archive leaves the container untouched:
//! entry names and hard links must stay inside DIR (absolute names count from
//! DIR, as Docker reads them), and so must relative symlink targets. Absolute
//! symlink targets are kept: they name paths of the container. While
//! extracting, every path is resolved by the kernel inside the container's root
//! (a link in the container, or one the archive made, can never reach the host),
//! and nothing at a destination is written through: it is replaced.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use tar::{EntryType, Header};

use super::{
    bad, contents_only, create_file, dir_entries, err, make_room, open_in_root, open_or_make_dir,
    parent_and_name, set_owner_and_mode, Root,
};
use crate::container::Result;
use crate::store::Store;

const STDOUT: &str = "standard output";
const STDIN: &str = "standard input";

/// Writes `path` of the container to `out` as a tar archive: the entry itself
/// under its own name (a link as a link), or with `/.` its contents.
pub(super) fn write_archive(root: &Root, path: &str, out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 16, out));
    let mut seen = HashMap::new();
    let inner = path.strip_suffix("/.").unwrap_or(path);
    let (parent, name) = parent_and_name(root, inner)?;
    match name {
        Some(name) if !contents_only(path) => {
            fstatat(
                parent.as_fd(),
                name.as_slice(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|_| {
                bad(format!(
                    "no such file or directory in the container: {path}"
                ))
            })?;
            let arc = PathBuf::from(OsStr::from_bytes(&name));
            add(&mut tar, parent.as_fd(), &name, &arc, &mut seen)?;
        }
        // a directory's contents (the root's for `/`), links on the way resolved in the root
        _ => {
            let dir = open_in_root(root, Path::new(inner), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|_| bad(format!("no such directory in the container: {inner}")))?;
            let mut names = dir_entries(&dir, Path::new(inner))?;
            names.sort();
            for name in names {
                let arc = PathBuf::from(OsStr::from_bytes(&name));
                add(&mut tar, dir.as_fd(), &name, &arc, &mut seen)?;
            }
        }
    }
    let mut out = tar.into_inner().map_err(|e| err(STDOUT, e))?;
    out.flush().map_err(|e| err(STDOUT, e))
}

/// Appends the entry `name` of `dir` (and what a directory holds) as `arc`.
/// Files with more than one link become hard links to their first name.
fn add<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: BorrowedFd,
    name: &[u8],
    arc: &Path,
    seen: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| err(arc.display(), e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mut h = Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    let out = |e| err(STDOUT, e);
    match kind {
        SFlag::S_IFDIR => {
            h.set_entry_type(EntryType::Directory);
            tar.append_data(&mut h, arc, std::io::empty())
                .map_err(out)?;
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(arc.display(), e))?;
            let mut names = dir_entries(&fd, arc)?;
            names.sort();
            for n in names {
                add(tar, fd.as_fd(), &n, &arc.join(OsStr::from_bytes(&n)), seen)?;
            }
        }
        SFlag::S_IFREG => {
            if st.st_nlink > 1 {
                if let Some(first) = seen.get(&(st.st_dev, st.st_ino)) {
                    h.set_entry_type(EntryType::Link);
                    return tar.append_link(&mut h, arc, first).map_err(out);
                }
                seen.insert((st.st_dev, st.st_ino), arc.to_path_buf());
            }
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(arc.display(), e))?;
            let size = st.st_size as u64;
            h.set_entry_type(EntryType::Regular);
            h.set_size(size);
            // exactly `size` bytes even if a running container changes the file meanwhile
            let data = File::from(fd)
                .take(size)
                .chain(std::io::repeat(0))
                .take(size);
            tar.append_data(&mut h, arc, data).map_err(out)?;
        }
        SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, name).map_err(|e| err(arc.display(), e))?;
            h.set_entry_type(EntryType::Symlink);
            tar.append_link(&mut h, arc, &target).map_err(out)?;
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
            h.set_entry_type(match kind {
                SFlag::S_IFCHR => EntryType::Char,
                SFlag::S_IFBLK => EntryType::Block,
                _ => EntryType::Fifo,
            });
            if kind != SFlag::S_IFIFO {
                let _ = h.set_device_major(nix::sys::stat::major(st.st_rdev) as u32);
                let _ = h.set_device_minor(nix::sys::stat::minor(st.st_rdev) as u32);
            }
            tar.append_data(&mut h, arc, std::io::empty())
                .map_err(out)?;
        }
        // sockets do not go into archives (neither do Docker's)
        _ => {}
    }
    Ok(())
}

/// Extracts the tar archive read from `input` into the directory `dest` of the
/// container. Owners come from the archive with `archive` (`-a`), otherwise
/// everything belongs to root, as with Docker.
pub(super) fn read_archive(
    store: &Store,
    root: &Root,
    input: impl Read,
    dest: &str,
    archive: bool,
) -> Result<()> {
    let dest_fd = open_in_root(root, Path::new(dest), OFlag::O_PATH)
        .map_err(|_| bad(format!("no such directory in the container: {dest}")))?;
    let st = nix::sys::stat::fstat(&dest_fd).map_err(|e| err(dest, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Err(bad(format!(
            "{dest} in the container is not a directory: cp - extracts an archive into a directory"
        )));
    }
    let mut spool = spool(store, input)?;
    let entries = check(&mut spool)?;
    spool.rewind().map_err(|e| err(STDIN, e))?;
    let mut tar = tar::Archive::new(BufReader::new(spool));
    let mut dirs = Vec::new();
    let mut walked = tar.entries().map_err(not_a_tar)?;
    for rel in entries {
        let mut entry = walked
            .next()
            .ok_or_else(|| bad("standard input changed while it was read".into()))?
            .map_err(not_a_tar)?;
        let Some(rel) = rel else { continue };
        let parent = make_parents(root, dest, &rel)?;
        let name = rel.file_name().unwrap_or_default().as_bytes();
        if let Some(times) = extract(root, dest, &parent, name, &rel, &mut entry, archive)? {
            dirs.push((rel, times));
        }
    }
    // a directory's time last: every entry written into it changed it
    for (rel, mtime) in dirs.iter().rev() {
        let path = Path::new(dest).join(rel);
        if let Ok(fd) = open_in_root(root, &path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            let _ = futimens(&fd, mtime, mtime);
        }
    }
    Ok(())
}

fn not_a_tar(e: std::io::Error) -> crate::container::ContainerError {
    bad(format!("standard input is not a tar archive ({e})"))
}

/// Copies the (decompressed) archive into an unnamed file of the store, so it
/// can be checked whole before anything is extracted.
fn spool(store: &Store, input: impl Read) -> Result<File> {
    let dir = store.temp_dir("cp")?;
    let path = dir.join("archive.tar");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path);
    let _ = fs::remove_file(&path);
    let _ = fs::remove_dir(&dir);
    let mut file = file.map_err(|e| err(path.display(), e))?;
    let mut input = BufReader::with_capacity(1 << 16, input);
    let head = input.fill_buf().map_err(|e| err(STDIN, e))?;
    if head.is_empty() {
        return Err(bad(
            "standard input is empty: pipe a tar archive into cp - (e.g. tar -c . | twinbox cp - NAME:/dir)".into(),
        ));
    }
    let copied = match head {
        [0x1f, 0x8b, ..] => std::io::copy(&mut flate2::read::MultiGzDecoder::new(input), &mut file),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            zstd::stream::Decoder::new(input).and_then(|mut z| std::io::copy(&mut z, &mut file))
        }
        _ => std::io::copy(&mut input, &mut file),
    };
    copied.map_err(|e| bad(format!("cannot read the archive on standard input: {e}")))?;
    file.rewind().map_err(|e| err(STDIN, e))?;
    Ok(file)
}

/// Checks every entry before anything is written; returns each entry's path
/// inside the destination (None for the archive's own `./` and for entries
/// that are not extracted, such as pax headers).
fn check(spool: &mut File) -> Result<Vec<Option<PathBuf>>> {
    let mut tar = tar::Archive::new(BufReader::new(&*spool));
    let mut out = Vec::new();
    for entry in tar.entries().map_err(not_a_tar)? {
        let entry = entry.map_err(not_a_tar)?;
        let raw = entry.path().map_err(not_a_tar)?.into_owned();
        let rel =
            inside(&raw).ok_or_else(|| refuse(&raw, "leaves the destination directory (../)"))?;
        let kind = entry.header().entry_type();
        let link = entry.link_name().map_err(not_a_tar)?;
        match kind {
            EntryType::Symlink => {
                let target = link.ok_or_else(|| refuse(&raw, "is a symlink without a target"))?;
                let from = rel.parent().unwrap_or(Path::new(""));
                if target.is_relative() && inside(&from.join(&target)).is_none() {
                    return Err(refuse(
                        &raw,
                        &format!(
                            "is a symlink to {} that leaves the destination directory",
                            target.display()
                        ),
                    ));
                }
            }
            EntryType::Link => {
                let target = link.ok_or_else(|| refuse(&raw, "is a hard link without a target"))?;
                if target.is_absolute() || inside(&target).is_none_or(|t| t.as_os_str().is_empty())
                {
                    return Err(refuse(
                        &raw,
                        &format!(
                            "is a hard link to {} outside the destination directory",
                            target.display()
                        ),
                    ));
                }
            }
            _ => {}
        }
        let extracted = matches!(
            kind,
            EntryType::Regular
                | EntryType::Continuous
                | EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
        );
        out.push(Some(rel).filter(|r| extracted && !r.as_os_str().is_empty()));
    }
    Ok(out)
}

fn refuse(entry: &Path, why: &str) -> crate::container::ContainerError {
    bad(format!(
        "archive entry {} {why}: refusing the archive, nothing was written",
        entry.display()
    ))
}

/// The path lexically inside the destination (a leading `/` counts from it,
/// as Docker reads it), or None when `..` climbs out of it.
fn inside(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// The directory that will hold `rel`, resolved in the container's root;
/// missing directories on the way are made (root's, 0755, as Docker's).
fn make_parents(root: &Root, dest: &str, rel: &Path) -> Result<OwnedFd> {
    let mut path = PathBuf::from(dest);
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let mut fd = open_in_root(root, &path, dir_flags).map_err(|e| err(dest, e))?;
    for c in rel.parent().unwrap_or(Path::new("")).components() {
        path.push(c);
        fd = match open_in_root(root, &path, dir_flags) {
            Ok(next) => next,
            Err(Errno::ENOENT) => {
                mkdirat(&fd, c.as_os_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| err(path.display(), e))?;
                openat(
                    &fd,
                    c.as_os_str(),
                    dir_flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| err(path.display(), e))?
            }
            Err(e) => {
                return Err(bad(format!(
                    "cannot extract {} into the container: {} ({e})",
                    rel.display(),
                    path.display()
                )))
            }
        };
    }
    Ok(fd)
}

/// Writes one entry as `name` in `parent`; a directory's modification time is
/// returned to be set once everything inside it is written.
fn extract(
    root: &Root,
    dest: &str,
    parent: &OwnedFd,
    name: &[u8],
    rel: &Path,
    entry: &mut tar::Entry<impl Read>,
    archive: bool,
) -> Result<Option<TimeSpec>> {
    let h = entry.header();
    let kind = h.entry_type();
    let mode = Mode::from_bits_truncate(h.mode().unwrap_or(0o644) & 0o7777);
    let (uid, gid) = if archive {
        (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32)
    } else {
        (0, 0)
    };
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    let mtime = TimeSpec::new(h.mtime().unwrap_or(0) as i64, 0);
    let here = || Path::new(dest).join(rel).display().to_string();
    let dir = parent.as_fd();
    make_room(dir, name, kind == EntryType::Directory, &here)?;
    // owner and time of an entry that cannot be opened (symlink, device, fifo)
    let own_and_date = || -> Result<()> {
        fchownat(
            parent,
            name,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(here(), e))?;
        let _ = utimensat(
            parent,
            name,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        );
        Ok(())
    };
    match kind {
        EntryType::Directory => {
            let fd = open_or_make_dir(dir, name, mode, &here)?;
            set_owner_and_mode(&fd, uid, gid, mode, &here)?;
            return Ok(Some(mtime));
        }
        EntryType::Regular | EntryType::Continuous => {
            let mut out = create_file(dir, name, mode, &here)?;
            std::io::copy(entry, &mut out).map_err(|e| err(here(), e))?;
            set_owner_and_mode(&out, uid, gid, mode, &here)?;
            let _ = futimens(&out, &mtime, &mtime);
            return Ok(None);
        }
        EntryType::Symlink => {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .ok_or_else(|| bad(format!("{}: a symlink without a target", here())))?;
            symlinkat(target.as_ref(), parent, name).map_err(|e| err(here(), e))?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .ok()
                .flatten()
                .and_then(|t| inside(&t))
                .ok_or_else(|| bad(format!("{}: a hard link without a target", here())))?;
            let path = Path::new(dest).join(&target);
            let from =
                open_in_root(root, &path, OFlag::O_PATH | OFlag::O_NOFOLLOW).map_err(|e| {
                    bad(format!(
                        "{}: its link target {} ({e})",
                        here(),
                        path.display()
                    ))
                })?;
            linkat(&from, "", parent, name, AtFlags::AT_EMPTY_PATH).map_err(|e| err(here(), e))?;
            return Ok(None);
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let (sflag, dev) = match kind {
                EntryType::Fifo => (SFlag::S_IFIFO, 0),
                k => {
                    let major = h.device_major().ok().flatten().unwrap_or(0);
                    let minor = h.device_minor().ok().flatten().unwrap_or(0);
                    let sflag = if k == EntryType::Char {
                        SFlag::S_IFCHR
                    } else {
                        SFlag::S_IFBLK
                    };
                    (sflag, nix::sys::stat::makedev(major.into(), minor.into()))
                }
            };
            mknodat(parent, name, sflag, mode, dev).map_err(|e| err(here(), e))?;
            own_and_date()?;
            // mknod's mode went through the umask (glibc refuses a symlink here)
            let _ = nix::sys::stat::fchmodat(
                parent,
                name,
                mode,
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            );
            return Ok(None);
        }
        _ => return Ok(None),
    }
    own_and_date()?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_inside() {
        assert_eq!(inside(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(
            inside(Path::new("/etc/passwd")),
            Some(PathBuf::from("etc/passwd"))
        );
        assert_eq!(inside(Path::new("a/../b")), Some(PathBuf::from("b")));
        assert_eq!(inside(Path::new("./")), Some(PathBuf::new()));
        assert_eq!(inside(Path::new("../x")), None);
        assert_eq!(inside(Path::new("a/../../x")), None);
    }
}
