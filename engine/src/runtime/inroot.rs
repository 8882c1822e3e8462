//! Places inside the container root held as descriptors, for the init's mounts
//! before pivot_root. A path resolved once and handed to mount(2) is resolved
//! again by the kernel: a second container sharing a volume can swap one of
//! its components for a symlink in between, and the mount lands on the host
//! (runc's CVE-2021-30465). So each destination is opened with O_PATH,
//! resolving inside the root (openat2 RESOLVE_IN_ROOT, or a walk one component
//! at a time with O_NOFOLLOW on kernels without it), checked to be beneath the
//! root, and mounted on as `/proc/self/fd/N`, which names the descriptor's own
//! place, whatever happens to the path. Missing directories and files are
//! created relative to a descriptor of their parent, never by path.
//!
//! `/proc/self/fd` is the host's /proc here: the init runs this before
//! pivot_root, in a mount namespace copied from the host's.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};

/// Why a place inside the root could not be reached as a descriptor.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    #[error("open {path} inside the container root: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create {path} inside the container root: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} resolved to {found}, outside the container root {root}: \
         something moved it while the container started; start it again"
    )]
    Escaped {
        path: PathBuf,
        found: PathBuf,
        root: PathBuf,
    },
    #[error(
        "{path} moved while it was mounted on (now {found}, was {was}): \
         something changed it while the container started; start it again"
    )]
    Moved {
        path: PathBuf,
        found: PathBuf,
        was: PathBuf,
    },
}

/// The kernel has openat2(2) (5.6+); cleared at the first ENOSYS.
static HAS_OPENAT2: AtomicBool = AtomicBool::new(true);

/// Symlinks followed in one resolution before ELOOP, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// The container root, held open, and its path as the kernel names it.
pub struct InRoot {
    fd: OwnedFd,
    real: PathBuf,
}

/// `/proc/self/fd/N`: mount(2), chmod(2) and friends given this path act on
/// the descriptor's own file, not on whatever its old path now leads to.
pub fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Where the kernel says `fd` is.
fn fd_path(fd: &impl AsRawFd) -> io::Result<PathBuf> {
    std::fs::read_link(proc_path(fd))
}

/// `dest` as components under the root: `.` dropped and `..` taken
/// lexically (never above the root), as runc cleans a destination.
fn clean(dest: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
        }
    }
    out
}

fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect()
}

/// openat2(2) with RESOLVE_IN_ROOT: `..` and absolute links stop at `dir`,
/// and /proc magic links are refused. EAGAIN (a rename raced a `..`) is retried.
fn openat2_in_root(dir: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_bytes())?;
    // linux/openat2.h's struct open_how (libc's is non-exhaustive)
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    for _ in 0..16 {
        // SAFETY: openat2 with our own descriptor, a NUL-terminated path and an
        // open_how of the size we pass, all alive for the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor the kernel just gave us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// The same resolution for kernels without openat2: one component at a time
/// with O_PATH|O_NOFOLLOW, links read and followed by us, `..` popping back
/// to the directory we came from (never above the root), absolute links
/// starting again at the root.
fn walk_in_root(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let nofollow = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending: Vec<OsString> = Vec::new();
    let push_path = |pending: &mut Vec<OsString>, p: &Path| {
        // reversed, so pop() yields them in order
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => pending.push(n.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                _ => {}
            }
        }
    };
    push_path(&mut pending, rel);
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let here = stack.last().unwrap_or(root);
        let fd = openat(here, name.as_os_str(), nofollow, Mode::empty())?;
        let st = fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = nix::fcntl::readlinkat(&fd, "")?;
            if Path::new(&target).is_absolute() {
                stack.clear();
            }
            push_path(&mut pending, Path::new(&target));
            continue;
        }
        stack.push(fd);
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => Ok(openat(
            root,
            ".",
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?),
    }
}

impl InRoot {
    pub fn open(root: &Path) -> Result<Self, InRootError> {
        let fail = |source| InRootError::Open {
            path: root.to_path_buf(),
            source,
        };
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        let real = fd_path(&fd).map_err(fail)?;
        Ok(InRoot { fd, real })
    }

    /// Resolves `rel` (relative to the root) inside the root.
    fn resolve(&self, rel: &Path) -> io::Result<OwnedFd> {
        if HAS_OPENAT2.load(Ordering::Relaxed) {
            match openat2_in_root(&self.fd, rel) {
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    HAS_OPENAT2.store(false, Ordering::Relaxed)
                }
                other => return other,
            }
        }
        walk_in_root(&self.fd, rel)
    }

    /// Fails unless the kernel places `fd` at or beneath the root.
    pub fn check(&self, dest: &Path, fd: &OwnedFd) -> Result<(), InRootError> {
        let found = fd_path(fd).map_err(|source| InRootError::Open {
            path: dest.to_path_buf(),
            source,
        })?;
        if found.starts_with(&self.real) {
            return Ok(());
        }
        Err(InRootError::Escaped {
            path: dest.to_path_buf(),
            found,
            root: self.real.clone(),
        })
    }

    /// `dest` (absolute in the container) opened with O_PATH, symlinks on the
    /// way resolved as if the root were `/`.
    pub fn open_path(&self, dest: &Path) -> Result<OwnedFd, InRootError> {
        let fd = self
            .resolve(&join(&clean(dest)))
            .map_err(|source| InRootError::Open {
                path: dest.to_path_buf(),
                source,
            })?;
        self.check(dest, &fd)?;
        Ok(fd)
    }

    /// After a mount on `under`, the mount now at `dest`: a descriptor opened
    /// before the mount still names the directory beneath it. It must be at
    /// the place `under` is.
    pub fn after_mount(&self, dest: &Path, under: &OwnedFd) -> Result<OwnedFd, InRootError> {
        let top = self.open_path(dest)?;
        let open_fail = |source| InRootError::Open {
            path: dest.to_path_buf(),
            source,
        };
        let (was, found) = (
            fd_path(under).map_err(open_fail)?,
            fd_path(&top).map_err(open_fail)?,
        );
        if was != found {
            return Err(InRootError::Moved {
                path: dest.to_path_buf(),
                found,
                was,
            });
        }
        Ok(top)
    }

    /// `mkdir -p dest` inside the root: the longest part that exists is
    /// resolved inside the root, the rest made one directory at a time relative
    /// to its parent's descriptor and opened without following links. A
    /// dangling link on the way (`/var/run -> /run`, no /run yet) is followed
    /// inside the root, as the path-based mkdir followed it.
    pub fn mkdir_all(&self, dest: &Path) -> Result<OwnedFd, InRootError> {
        let mut comps = clean(dest);
        let create_fail = |source: io::Error| InRootError::Create {
            path: dest.to_path_buf(),
            source,
        };
        let mut links = 0;
        'again: loop {
            let mut have = comps.len();
            let mut fd = loop {
                match self.resolve(&join(&comps[..have])) {
                    Ok(fd) => break fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) && have > 0 => have -= 1,
                    Err(e) => return Err(create_fail(e)),
                }
            };
            self.check(dest, &fd)?;
            for (i, name) in comps.iter().enumerate().skip(have) {
                match mkdirat(&fd, name.as_os_str(), Mode::from_bits_truncate(0o777)) {
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(create_fail(e.into())),
                }
                let next = openat(
                    &fd,
                    name.as_os_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| create_fail(e.into()))?;
                let kind = SFlag::from_bits_truncate(
                    fstat(&next).map_err(|e| create_fail(e.into()))?.st_mode,
                ) & SFlag::S_IFMT;
                if kind == SFlag::S_IFLNK {
                    // dangling (resolve found nothing there): start again at
                    // its target, taken from where the kernel says we are
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(create_fail(io::Error::from_raw_os_error(libc::ELOOP)));
                    }
                    let target =
                        nix::fcntl::readlinkat(&next, "").map_err(|e| create_fail(e.into()))?;
                    let mut base = if Path::new(&target).is_absolute() {
                        PathBuf::new()
                    } else {
                        let here = fd_path(&fd).map_err(create_fail)?;
                        here.strip_prefix(&self.real)
                            .unwrap_or(Path::new(""))
                            .to_path_buf()
                    };
                    base.push(&target);
                    base.extend(&comps[i + 1..]);
                    comps = clean(&base);
                    continue 'again;
                }
                if kind != SFlag::S_IFDIR {
                    return Err(create_fail(io::Error::from_raw_os_error(libc::ENOTDIR)));
                }
                fd = next;
            }
            let st = fstat(&fd).map_err(|e| create_fail(e.into()))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
                return Err(create_fail(io::Error::from_raw_os_error(libc::ENOTDIR)));
            }
            self.check(dest, &fd)?;
            return Ok(fd);
        }
    }

    /// The file `dest`, made empty if missing (its parents as `mkdir_all`),
    /// never truncated, then opened with O_PATH inside the root. A dangling
    /// link there is followed inside the root.
    pub fn create_file(&self, dest: &Path) -> Result<OwnedFd, InRootError> {
        let create_fail = |source: io::Error| InRootError::Create {
            path: dest.to_path_buf(),
            source,
        };
        let mut comps = clean(dest);
        for _ in 0..=MAX_LINKS {
            let Some((name, parent)) = comps.split_last() else {
                return self.open_path(dest);
            };
            let dir = self.mkdir_all(&join(parent))?;
            create_new(&dir, name).map_err(create_fail)?;
            let entry = openat(
                &dir,
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| create_fail(e.into()))?;
            let st = fstat(&entry).map_err(|e| create_fail(e.into()))?;
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                self.check(dest, &entry)?;
                return Ok(entry);
            }
            match self.open_path(&join(&comps)) {
                Ok(fd) => return Ok(fd),
                Err(InRootError::Open { source, .. })
                    if source.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
            // a dangling link: make its target instead, inside the root
            let target = nix::fcntl::readlinkat(&entry, "").map_err(|e| create_fail(e.into()))?;
            let mut next = if Path::new(&target).is_absolute() {
                PathBuf::new()
            } else {
                let here = fd_path(&dir).map_err(create_fail)?;
                here.strip_prefix(&self.real)
                    .unwrap_or(Path::new(""))
                    .to_path_buf()
            };
            next.push(&target);
            comps = clean(&next);
        }
        Err(create_fail(io::Error::from_raw_os_error(libc::ELOOP)))
    }
}

/// An empty file `name` in `dir`, unless something is there already
/// (O_EXCL|O_NOFOLLOW: never truncates, never follows a link).
pub fn create_new(dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    match openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o666),
    ) {
        Ok(_) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `name` in `dir` with O_PATH, refusing a link (ELOOP-free: O_PATH|O_NOFOLLOW
/// gives the link itself, so its type is checked).
pub fn open_entry(dir: &impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    let fd = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests;
