//! `cp` between a container and the host, both directions. Every path inside
//! the container is resolved by the kernel as if the container's root were `/`
//! (openat2 with RESOLVE_IN_ROOT), and the copy then walks with `*at` calls that
//! never follow a symlink: a link in the container that points at `/etc` means
//! the container's `/etc`, never the host's. Links are copied as links, modes
//! and modification times are kept, owners with `-a` (otherwise files written
//! into the container belong to root, as in Docker).
//!
//! A running container is reached through its init's root (`/proc/PID/root`,
//! mounts and volumes included); a stopped one through a temporary read-write
//! mount of its overlay (changes land in its writable layer).
//!
//! `-` on the host side streams a tar archive instead ([`archive`]).

mod archive;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::record::{Container, Status};
use super::{ContainerError, Result};
use crate::store::Store;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Host(PathBuf),
    /// A container (name or id) and a path inside it.
    Container(String, String),
    /// `-`: a tar archive on standard output or standard input.
    Stdio,
}

impl Location {
    /// `NAME:PATH` is a container path; anything else (including `./a:b`, a
    /// path starting with `/` or `.`) is a host path, as Docker reads them.
    pub fn parse(s: &str) -> Location {
        if s == "-" {
            return Location::Stdio;
        }
        if !s.starts_with('/') && !s.starts_with('.') {
            if let Some((c, p)) = s.split_once(':') {
                if !c.is_empty() && !c.contains('/') {
                    return Location::Container(c.to_string(), p.to_string());
                }
            }
        }
        Location::Host(PathBuf::from(s))
    }
}

fn err(what: impl std::fmt::Display, e: impl Into<std::io::Error>) -> ContainerError {
    ContainerError::io(what.to_string(), e.into())
}

fn bad(msg: String) -> ContainerError {
    ContainerError::Copy(msg)
}

// Writing one entry into the container (`cp` in, and `cp -` from an archive):
// every step works on the entry's name in its held-open directory, so nothing
// at the destination is ever followed. `here` names the entry in errors.

/// Makes room for a new entry `name` in `dir`: whatever is there goes, unless
/// both it and the new entry are directories (they merge). A symlink at the
/// destination is replaced, never written through.
fn make_room(
    dir: BorrowedFd,
    name: &[u8],
    new_is_dir: bool,
    here: &impl Fn() -> String,
) -> Result<()> {
    if let Ok(st) = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        let there_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if !(there_dir && new_is_dir) {
            let flag = if there_dir {
                UnlinkatFlags::RemoveDir
            } else {
                UnlinkatFlags::NoRemoveDir
            };
            unlinkat(dir, name, flag).map_err(|e| err(here(), e))?;
        }
    }
    Ok(())
}

/// The directory `name` in `dir`, made with `mode` if missing, opened without
/// following a link.
fn open_or_make_dir(
    dir: BorrowedFd,
    name: &[u8],
    mode: Mode,
    here: &impl Fn() -> String,
) -> Result<OwnedFd> {
    if fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_err() {
        mkdirat(dir, name, mode).map_err(|e| err(here(), e))?;
    }
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(here(), e))
}

/// A new regular file `name` in `dir` with `mode`: nothing may be there
/// (`make_room` went first), and a link that appeared meanwhile is refused.
fn create_file(
    dir: BorrowedFd,
    name: &[u8],
    mode: Mode,
    here: &impl Fn() -> String,
) -> Result<File> {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        mode,
    )
    .map_err(|e| err(here(), e))?;
    Ok(File::from(fd))
}

/// Gives an entry this copy made its owner and then its mode (after the
/// chown, which clears setuid and setgid bits).
fn set_owner_and_mode(
    fd: impl AsFd,
    uid: Uid,
    gid: Gid,
    mode: Mode,
    here: &impl Fn() -> String,
) -> Result<()> {
    fchown(fd.as_fd(), Some(uid), Some(gid)).map_err(|e| err(here(), e))?;
    fchmod(fd.as_fd(), mode).map_err(|e| err(here(), e))
}

/// The container's root directory, held open for the copy.
struct Root {
    fd: OwnedFd,
    mount: Option<PathBuf>,
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Some(m) = &self.mount {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(m);
        }
    }
}

fn open_root(store: &Store, c: &Container) -> Result<Root> {
    let state = c.state()?;
    let open = |p: &Path| -> Result<OwnedFd> {
        openat(
            nix::fcntl::AT_FDCWD,
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(p.display(), e))
    };
    if let Some(pid) = state.pid.filter(|_| state.status == Status::Running) {
        return Ok(Root {
            fd: open(Path::new(&format!("/proc/{pid}/root")))?,
            mount: None,
        });
    }
    let target = store.temp_dir("cp")?;
    let lower = c
        .lower_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        c.upper().display(),
        c.work().display()
    );
    nix::mount::mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOSUID,
        Some(opts.as_str()),
    )
    .map_err(|e| {
        let _ = fs::remove_dir(&target);
        err(format!("mount the filesystem of container {}", c.name), e)
    })?;
    let root = Root {
        fd: open(&target).inspect_err(|_| {
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        })?,
        mount: Some(target),
    };
    Ok(root)
}

/// Opens `path` inside the root, every symlink resolved within it.
fn open_in_root(root: &Root, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    openat2(
        root.fd.as_fd(),
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
}

/// Splits a container path into its directory (resolved in the root) and the
/// last name; `/` and `/.` name the root itself.
fn parent_and_name(root: &Root, path: &str) -> Result<(OwnedFd, Option<Vec<u8>>)> {
    let trimmed = path.trim_end_matches('/');
    let p = Path::new(trimmed);
    let name = p.file_name().map(|n| n.as_bytes().to_vec());
    let parent = match name {
        Some(_) => p.parent().unwrap_or(Path::new("/")),
        None => p,
    };
    let fd = open_in_root(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| {
        bad(format!(
            "no such directory in the container: {} ({e})",
            parent.display()
        ))
    })?;
    Ok((fd, name))
}

/// `twinbox cp SRC DST`: one side in a container, the other on the host.
/// `follow` (`-L`): a link named by SRC in the container is copied as what it
/// points at (resolved in the container's root), as a SRC ending in `/` is.
pub fn copy(
    store: &Store,
    src: &Location,
    dst: &Location,
    archive: bool,
    follow: bool,
) -> Result<()> {
    match (src, dst) {
        (Location::Container(name, path), Location::Host(host)) => {
            let c = Container::find(store, name)?;
            let root = open_root(store, &c)?;
            copy_out(&root, path, host, archive, follow)
        }
        (Location::Host(host), Location::Container(name, path)) => {
            let c = Container::find(store, name)?;
            let root = open_root(store, &c)?;
            copy_in(&root, host, path, archive)
        }
        (Location::Container(name, path), Location::Stdio) => {
            let c = Container::find(store, name)?;
            let root = open_root(store, &c)?;
            archive::write_archive(&root, path, std::io::stdout().lock())
        }
        (Location::Stdio, Location::Container(name, path)) => {
            if std::io::stdin().is_terminal() {
                return Err(bad(
                    "cp - reads a tar archive from standard input: pipe one in (e.g. tar -c . | twinbox cp - NAME:/dir)"
                        .into(),
                ));
            }
            let c = Container::find(store, name)?;
            let root = open_root(store, &c)?;
            archive::read_archive(store, &root, std::io::stdin().lock(), path, archive)
        }
        _ => Err(bad(
            "cp copies between a container and the host (- is a tar archive on standard input or output): give CONTAINER:PATH on exactly one side"
                .into(),
        )),
    }
}

/// Whether SRC ends in `/.`: copy the directory's contents, not the directory.
fn contents_only(path: &str) -> bool {
    path.ends_with("/.") || path == "."
}

fn copy_out(root: &Root, path: &str, host: &Path, archive: bool, follow: bool) -> Result<()> {
    let inner = path.strip_suffix("/.").unwrap_or(path);
    if contents_only(path) {
        // the directory's contents, with links on the way resolved in the root
        let dir = open_in_root(root, Path::new(inner), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|_| bad(format!("no such directory in the container: {inner}")))?;
        fs::create_dir_all(host).map_err(|e| err(host.display(), e))?;
        for name in dir_entries(&dir, host)? {
            export_entry(
                dir.as_fd(),
                &name,
                &host.join(OsStr::from_bytes(&name)),
                archive,
            )?;
        }
        return Ok(());
    }
    let (parent, name) = parent_and_name(root, inner)?;
    let (mut dir_fd, name): (OwnedFd, Vec<u8>) = match name {
        Some(n) => (parent, n),
        // the root itself: walk it as a directory named after nothing
        None => (parent, b".".to_vec()),
    };
    // `-L` or `LINK/`: the link's target in the container's root, copied under
    // the link's name; a link to a link is followed up to 40 times (ELOOP's)
    let (mut at, mut here) = (PathBuf::from(inner.trim_end_matches('/')), name.clone());
    for hop in 0..=40 {
        if !(follow || inner.ends_with('/')) {
            break;
        }
        let Ok(link) = nix::fcntl::readlinkat(dir_fd.as_fd(), here.as_slice()) else {
            break;
        };
        if hop == 40 {
            return Err(bad(format!(
                "too many levels of symbolic links in the container: {path}"
            )));
        }
        at = at.parent().unwrap_or(Path::new("/")).join(link);
        let (fd, n) = parent_and_name(root, &at.to_string_lossy())?;
        (dir_fd, here) = (fd, n.unwrap_or_else(|| b".".to_vec()));
    }
    let dir_fd = dir_fd;
    let here = here;
    // it must exist; what it is matters to export_entry
    fstatat(
        dir_fd.as_fd(),
        here.as_slice(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|_| {
        bad(format!(
            "no such file or directory in the container: {path}"
        ))
    })?;
    let target = if host.is_dir() {
        host.join(OsStr::from_bytes(if name == b"." {
            b"root"
        } else {
            &name
        }))
    } else {
        match host.parent() {
            Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => {
                return Err(bad(format!(
                    "no such directory on the host: {}",
                    p.display()
                )))
            }
            _ => host.to_path_buf(),
        }
    };
    export_entry(dir_fd.as_fd(), &here, &target, archive)
}

/// The names in a directory opened for reading, without `.` and `..`.
fn dir_entries(fd: &OwnedFd, what: &Path) -> Result<Vec<Vec<u8>>> {
    let dup = fd.try_clone().map_err(|e| err(what.display(), e))?;
    let mut entries = nix::dir::Dir::from_fd(dup).map_err(|e| err(what.display(), e))?;
    Ok(entries
        .iter()
        .flatten()
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect())
}

/// Copies the container entry `name` in `dir` to the host path `to`.
fn export_entry(dir: std::os::fd::BorrowedFd, name: &[u8], to: &Path, archive: bool) -> Result<()> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| err(to.display(), e))?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let mode = st.st_mode & 0o7777;
    // never write through something already at the destination that is not a directory
    if let Ok(md) = fs::symlink_metadata(to) {
        if !(md.is_dir() && kind == SFlag::S_IFDIR) {
            let _ = if md.is_dir() {
                fs::remove_dir_all(to)
            } else {
                fs::remove_file(to)
            };
        }
    }
    match kind {
        SFlag::S_IFDIR => {
            if !to.is_dir() {
                fs::create_dir(to).map_err(|e| err(to.display(), e))?;
            }
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(to.display(), e))?;
            let names = dir_entries(&fd, to)?;
            for n in names {
                export_entry(fd.as_fd(), &n, &to.join(OsStr::from_bytes(&n)), archive)?;
            }
            fs::set_permissions(to, fs::Permissions::from_mode(mode))
                .map_err(|e| err(to.display(), e))?;
        }
        SFlag::S_IFREG => {
            let fd = openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(to.display(), e))?;
            let mut from = File::from(fd);
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(to)
                .map_err(|e| err(to.display(), e))?;
            std::io::copy(&mut from, &mut out).map_err(|e| err(to.display(), e))?;
            out.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| err(to.display(), e))?;
        }
        SFlag::S_IFLNK => {
            let target = nix::fcntl::readlinkat(dir, name).map_err(|e| err(to.display(), e))?;
            std::os::unix::fs::symlink(target, to).map_err(|e| err(to.display(), e))?;
        }
        // devices, fifos and sockets are not copied
        _ => return Ok(()),
    }
    if archive {
        std::os::unix::fs::lchown(to, Some(st.st_uid), Some(st.st_gid))
            .map_err(|e| err(to.display(), e))?;
        if kind == SFlag::S_IFREG {
            fs::set_permissions(to, fs::Permissions::from_mode(mode))
                .map_err(|e| err(to.display(), e))?;
        }
    }
    let mtime = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
    let _ = utimensat(
        nix::fcntl::AT_FDCWD,
        to,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    );
    Ok(())
}

fn copy_in(root: &Root, host: &Path, path: &str, archive: bool) -> Result<()> {
    let md = fs::symlink_metadata(host).map_err(|e| err(host.display(), e))?;
    let host_str = host.to_string_lossy();
    // DEST names an existing directory (links resolved in the root): copy into it
    let into = open_in_root(root, Path::new(path), OFlag::O_PATH | OFlag::O_DIRECTORY);
    if contents_only(&host_str) && md.is_dir() {
        let dir = match into {
            Ok(fd) => fd,
            Err(_) => {
                let (parent, name) = parent_and_name(root, path)?;
                let name = name.ok_or_else(|| bad("cannot replace the container's root".into()))?;
                mkdirat(
                    parent.as_fd(),
                    name.as_slice(),
                    Mode::from_bits_truncate(0o755),
                )
                .map_err(|e| err(path, e))?;
                openat(
                    parent.as_fd(),
                    name.as_slice(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| err(path, e))?
            }
        };
        for e in fs::read_dir(host)
            .map_err(|e| err(host.display(), e))?
            .flatten()
        {
            import_entry(&e.path(), dir.as_fd(), e.file_name().as_bytes(), archive)?;
        }
        return Ok(());
    }
    let base = host
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .ok_or_else(|| {
            bad(format!(
                "cannot copy {}: give a file or directory",
                host.display()
            ))
        })?;
    match into {
        Ok(dir) => import_entry(host, dir.as_fd(), &base, archive),
        Err(_) if path.ends_with('/') => {
            Err(bad(format!("no such directory in the container: {path}")))
        }
        Err(_) => {
            let (parent, name) = parent_and_name(root, path)?;
            let name = name.ok_or_else(|| bad("cannot replace the container's root".into()))?;
            import_entry(host, parent.as_fd(), &name, archive)
        }
    }
}

/// Copies the host path `from` to the entry `name` of the container directory `dir`.
fn import_entry(
    from: &Path,
    dir: std::os::fd::BorrowedFd,
    name: &[u8],
    archive: bool,
) -> Result<()> {
    let md = fs::symlink_metadata(from).map_err(|e| err(from.display(), e))?;
    let mode = Mode::from_bits_truncate(md.mode() & 0o7777);
    let here = || String::from_utf8_lossy(name).into_owned();
    make_room(dir, name, md.is_dir(), &here)?;
    let (uid, gid) = if archive {
        (md.uid(), md.gid())
    } else {
        (0, 0)
    };
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if md.is_dir() {
        let fd = open_or_make_dir(dir, name, mode, &here)?;
        for e in fs::read_dir(from)
            .map_err(|e| err(from.display(), e))?
            .flatten()
        {
            import_entry(&e.path(), fd.as_fd(), e.file_name().as_bytes(), archive)?;
        }
        set_owner_and_mode(&fd, uid, gid, mode, &here)?;
    } else if md.is_file() {
        let mut out = create_file(dir, name, mode, &here)?;
        let mut input = File::open(from).map_err(|e| err(from.display(), e))?;
        std::io::copy(&mut input, &mut out).map_err(|e| err(here(), e))?;
        set_owner_and_mode(&out, uid, gid, mode, &here)?;
    } else if md.file_type().is_symlink() {
        let target = fs::read_link(from).map_err(|e| err(from.display(), e))?;
        symlinkat(&target, dir, name).map_err(|e| err(here(), e))?;
        fchownat(
            dir,
            name,
            Some(uid),
            Some(gid),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(here(), e))?;
    } else {
        return Ok(());
    }
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    let _ = utimensat(dir, name, &mtime, &mtime, UtimensatFlags::NoFollowSymlink);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_read_like_docker() {
        assert_eq!(
            Location::parse("web:/etc/hosts"),
            Location::Container("web".into(), "/etc/hosts".into())
        );
        assert_eq!(
            Location::parse("/tmp/a:b"),
            Location::Host("/tmp/a:b".into())
        );
        assert_eq!(Location::parse("./a:b"), Location::Host("./a:b".into()));
        assert_eq!(Location::parse("-"), Location::Stdio);
        assert_eq!(
            Location::parse("file.txt"),
            Location::Host("file.txt".into())
        );
    }
}
