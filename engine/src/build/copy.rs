//! COPY and ADD: which files a source names (context or another stage/image),
//! the cache key of their content and metadata, and the staging tree that
//! becomes the layer. The context is read through `.dockerignore`, and a
//! source that leaves it (`..`, a symlink pointing out) is refused.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::chmod::Chmod;
use super::ignore::{glob, Ignore};
use crate::layer::merged::MergedView;

/// Where COPY reads from.
pub enum Origin<'a> {
    /// The build context (None when the Dockerfile came on stdin without one).
    Context {
        root: Option<&'a Path>,
        ignore: &'a Ignore,
    },
    /// A stage's result or another image (`--from`).
    Image(&'a MergedView),
}

/// A source path matched in the origin: its path there and where it is on disk.
#[derive(Debug, Clone)]
pub struct Matched {
    pub rel: PathBuf,
    pub real: PathBuf,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `COPY` source text → relative segments inside the origin, `..` refused when it climbs out.
fn clean(src: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(src).components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir if out.pop().is_none() => {
                return Err(format!(
                    "source {src:?} is outside the build context: paths cannot climb above it with '..'"
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

impl Origin<'_> {
    fn context_root(&self) -> Result<&Path, String> {
        match self {
            Origin::Context { root: Some(r), .. } => Ok(r),
            Origin::Context { root: None, .. } => Err(
                "there is no build context (the Dockerfile came on stdin): give a context directory to COPY from it".into(),
            ),
            Origin::Image(_) => Err("no context".into()),
        }
    }

    fn ignored(&self, rel: &Path) -> bool {
        match self {
            Origin::Context { ignore, .. } => ignore.is_ignored(&rel.to_string_lossy()),
            Origin::Image(_) => false,
        }
    }

    /// Follows symlinks along `rel` inside the origin; for the context a link
    /// that points outside of it is an error.
    fn resolve(&self, segs: &[String], src: &str) -> Result<PathBuf, String> {
        match self {
            Origin::Image(view) => view
                .resolve(&segs.iter().collect::<PathBuf>())
                .map_err(|e| format!("source {src:?} cannot be found: {e}")),
            Origin::Context { .. } => {
                let root = self.context_root()?;
                let mut out: Vec<String> = Vec::new();
                let mut pending: Vec<String> = segs.iter().rev().cloned().collect();
                let mut hops = 0;
                while let Some(seg) = pending.pop() {
                    if seg == ".." {
                        if out.pop().is_none() {
                            return Err(escape(src));
                        }
                        continue;
                    }
                    let here: PathBuf = root.join(out.iter().collect::<PathBuf>()).join(&seg);
                    match fs::symlink_metadata(&here) {
                        Ok(md) if md.file_type().is_symlink() => {
                            hops += 1;
                            let target = fs::read_link(&here).map_err(|e| e.to_string())?;
                            if target.is_absolute() || hops > 40 {
                                return Err(escape(src));
                            }
                            for c in target.components().rev() {
                                match c {
                                    Component::Normal(n) => {
                                        pending.push(n.to_string_lossy().into_owned())
                                    }
                                    Component::ParentDir => pending.push("..".into()),
                                    _ => {}
                                }
                            }
                        }
                        _ => out.push(seg),
                    }
                }
                Ok(out.iter().collect())
            }
        }
    }

    pub fn real(&self, rel: &Path) -> Option<PathBuf> {
        match self {
            Origin::Image(view) => view.lookup(rel),
            Origin::Context { root, .. } => {
                let p = root.as_ref()?.join(rel);
                p.symlink_metadata().ok().map(|_| p)
            }
        }
    }

    fn read_dir(&self, rel: &Path) -> Vec<String> {
        match self {
            Origin::Image(view) => view.read_dir(rel),
            Origin::Context { root, .. } => {
                let Some(root) = root else { return Vec::new() };
                let mut names: Vec<String> = fs::read_dir(root.join(rel))
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                names
            }
        }
    }

    /// The paths a COPY source names: one path, or every match of a glob.
    pub fn sources(&self, src: &str) -> Result<Vec<Matched>, String> {
        if let Origin::Context { .. } = self {
            self.context_root()?;
        }
        let segs = clean(src)?;
        let mut found = Vec::new();
        if !has_glob(src) {
            let rel = self.resolve(&segs, src)?;
            let ignored = !rel.as_os_str().is_empty() && self.ignored(&rel);
            match self.real(&rel) {
                Some(real) if !ignored => found.push(Matched { rel, real }),
                _ if ignored => {
                    return Err(format!(
                        "source {src:?} is excluded by .dockerignore, so COPY cannot see it"
                    ))
                }
                _ => return Err(format!("source {src:?} not found")),
            }
            return Ok(found);
        }
        self.glob_walk(&segs, PathBuf::new(), src, &mut found)?;
        if found.is_empty() {
            return Err(format!("no source files match {src:?}"));
        }
        Ok(found)
    }

    fn glob_walk(
        &self,
        segs: &[String],
        at: PathBuf,
        src: &str,
        found: &mut Vec<Matched>,
    ) -> Result<(), String> {
        let Some((first, rest)) = segs.split_first() else {
            if let Some(real) = self.real(&at) {
                found.push(Matched { rel: at, real });
            }
            return Ok(());
        };
        if first == "**" {
            // any number of directories, none included
            self.glob_walk(rest, at.clone(), src, found)?;
            for n in self.read_dir(&at) {
                let next = at.join(&n);
                if self.ignored(&next) {
                    continue;
                }
                let is_dir = self
                    .real(&next)
                    .is_some_and(|r| r.symlink_metadata().is_ok_and(|m| m.is_dir()));
                if is_dir {
                    self.glob_walk(segs, next, src, found)?;
                }
            }
            return Ok(());
        }
        let names: Vec<String> = if has_glob(first) {
            self.read_dir(&at)
                .into_iter()
                .filter(|n| glob(first, n))
                .collect()
        } else {
            vec![first.clone()]
        };
        for n in names {
            let next = at.join(&n);
            if self.ignored(&next) {
                continue;
            }
            let segs_now: Vec<String> = next
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let resolved = self.resolve(&segs_now, src)?;
            if self.real(&resolved).is_some() {
                self.glob_walk(rest, resolved, src, found)?;
            }
        }
        Ok(())
    }

    /// Every entry below a matched directory (relative to it), ignored ones left
    /// out, parents before children, sorted.
    pub fn walk(&self, m: &Matched) -> Vec<(PathBuf, PathBuf)> {
        let mut out = Vec::new();
        self.walk_into(&m.rel, PathBuf::new(), &mut out);
        out
    }

    fn walk_into(&self, base: &Path, sub: PathBuf, out: &mut Vec<(PathBuf, PathBuf)>) {
        let dir = base.join(&sub);
        for name in self.read_dir(&dir) {
            let rel_sub = sub.join(&name);
            let rel = base.join(&rel_sub);
            let Some(real) = self.real(&rel) else {
                continue;
            };
            let is_dir = real.symlink_metadata().is_ok_and(|m| m.is_dir());
            let ignored = self.ignored(&rel);
            if ignored && !(is_dir && self.has_exceptions()) {
                continue;
            }
            let mark = out.len();
            if !ignored {
                out.push((rel_sub.clone(), real));
            }
            if is_dir {
                self.walk_into(base, rel_sub.clone(), out);
                if ignored && out.len() > mark {
                    // a re-included file below needs its directory
                    out.insert(mark, (rel_sub, self.real(&rel).unwrap_or_default()));
                }
            }
        }
    }

    fn has_exceptions(&self) -> bool {
        matches!(self, Origin::Context { ignore, .. } if !ignore.is_empty())
    }
}

fn escape(src: &str) -> String {
    format!("source {src:?} is outside the build context: a symlink on its path points out of it")
}

/// Adds one entry's identity to a cache key: type, mode, owner, size, link
/// target and content, never its mtime.
pub fn hash_entry(h: &mut Sha256, rel: &Path, real: &Path) -> io::Result<()> {
    let md = real.symlink_metadata()?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "d"
    } else if ft.is_symlink() {
        "l"
    } else if ft.is_file() {
        "f"
    } else {
        "o"
    };
    h.update(format!(
        "{}\0{kind}\0{:o}\0{}:{}\0{}\0",
        rel.display(),
        md.mode() & 0o7777,
        md.uid(),
        md.gid(),
        if ft.is_file() { md.len() } else { 0 }
    ));
    if ft.is_symlink() {
        h.update(fs::read_link(real)?.as_os_str().as_bytes());
    } else if ft.is_file() {
        let mut f = File::open(real)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    } else if !ft.is_dir() {
        h.update(md.rdev().to_le_bytes());
    }
    h.update(b"\n");
    Ok(())
}

/// How copied entries are owned and moded.
#[derive(Debug, Clone, Default)]
pub struct Ownership {
    /// `--chown`; None keeps the source's owner (`--from`) or root (context).
    pub chown: Option<(u32, u32)>,
    /// Context files belong to root unless `--chown` says otherwise.
    pub reset_to_root: bool,
    /// `--chmod`, applied to every copied file and directory.
    pub chmod: Option<Chmod>,
}

impl Ownership {
    fn owner(&self, md: &fs::Metadata) -> (u32, u32) {
        match self.chown {
            Some(o) => o,
            None if self.reset_to_root => (0, 0),
            None => (md.uid(), md.gid()),
        }
    }

    fn mode(&self, md: &fs::Metadata) -> u32 {
        let own = md.mode() & 0o7777;
        match &self.chmod {
            Some(c) => c.apply(own, md.is_dir()),
            None => own,
        }
    }
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| io::Error::other(e.to_string()))
}

fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: lchown on a NUL-terminated path.
    if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets access and modification time from `md` without following a symlink.
pub fn copy_times(p: &Path, md: &fs::Metadata) -> io::Result<()> {
    let c = cpath(p)?;
    let ts = [
        libc::timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        libc::timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    ];
    // SAFETY: utimensat on a NUL-terminated path with a two-element timespec array.
    if unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts one entry (file, symlink, directory without its contents, device) at
/// `dst` in the staging tree with the ownership rules applied.
pub fn stage_entry(real: &Path, dst: &Path, own: &Ownership) -> io::Result<()> {
    let md = real.symlink_metadata()?;
    let ft = md.file_type();
    let (uid, gid) = own.owner(&md);
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    if let Ok(old) = dst.symlink_metadata() {
        if old.is_dir() && !ft.is_dir() {
            fs::remove_dir_all(dst)?;
        } else if !old.is_dir() {
            fs::remove_file(dst)?;
        }
    }
    if ft.is_dir() {
        if !dst.is_dir() {
            fs::create_dir(dst)?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(real)?, dst)?;
    } else if ft.is_file() {
        fs::copy(real, dst)?;
    } else {
        let c = cpath(dst)?;
        // SAFETY: mknod on a NUL-terminated path, recreating a device/fifo node.
        if unsafe { libc::mknod(c.as_ptr(), md.mode(), md.rdev()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    lchown(dst, uid, gid)?;
    if !ft.is_symlink() {
        let mode = own.mode(&md);
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))?;
    }
    copy_times(dst, &md)
}

/// Creates the missing directories of `rel` in the staging tree (root-owned
/// 0755 unless `--chown`), and returns those that exist in the image already:
/// the layer must not repeat them with other metadata.
pub fn stage_parents(
    staging: &Path,
    rel: &Path,
    image: &MergedView,
    own: &Ownership,
    existing: &mut HashSet<PathBuf>,
) -> io::Result<()> {
    let mut at = PathBuf::new();
    for c in rel.components() {
        at.push(c);
        let dst = staging.join(&at);
        if dst.symlink_metadata().is_ok() {
            continue;
        }
        fs::create_dir(&dst)?;
        if image.is_dir(&at) {
            existing.insert(at.clone());
            continue;
        }
        let (uid, gid) = own.chown.unwrap_or((0, 0));
        lchown(&dst, uid, gid)?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// True when a file is a tar archive ADD should unpack (plain, gzip, zstd; bzip2 and xz are not read).
pub fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return false,
        }
    }
    head.truncate(n);
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    head.len() >= 262 && &head[257..262] == b"ustar"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("src/lib")).unwrap();
        fs::write(r.join("src/a.py"), "a").unwrap();
        fs::write(r.join("src/b.py"), "b").unwrap();
        fs::write(r.join("src/lib/c.py"), "c").unwrap();
        fs::write(r.join("README.md"), "r").unwrap();
        fs::write(r.join("secret.key"), "k").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.join("passwd")).unwrap();
        std::os::unix::fs::symlink("../..", r.join("src/up")).unwrap();
        std::os::unix::fs::symlink("src/lib", r.join("lib")).unwrap();
        dir
    }

    #[test]
    fn sources_globs_and_ignores() {
        let dir = context();
        let ignore = Ignore::parse("*.key\nsrc/lib/c.py\n");
        let o = Origin::Context {
            root: Some(dir.path()),
            ignore: &ignore,
        };
        let rels = |s: &str| -> Vec<String> {
            o.sources(s)
                .unwrap()
                .into_iter()
                .map(|m| m.rel.display().to_string())
                .collect()
        };
        assert_eq!(rels("src/*.py"), vec!["src/a.py", "src/b.py"]);
        assert_eq!(rels("/README.md"), vec!["README.md"]);
        assert_eq!(rels("./src/../README.md"), vec!["README.md"]);
        assert_eq!(rels("lib"), vec!["src/lib"]);
        let err = o.sources("secret.key").unwrap_err();
        assert!(err.contains("dockerignore"), "{err}");
        assert!(o.sources("nope").unwrap_err().contains("not found"));
        assert!(o
            .sources("*.nothing")
            .unwrap_err()
            .contains("no source files"));
        // the ignored file is not part of a directory copy either
        let src = o.sources("src").unwrap();
        let walked: Vec<String> = o
            .walk(&src[0])
            .into_iter()
            .map(|(r, _)| r.display().to_string())
            .collect();
        assert_eq!(walked, vec!["a.py", "b.py", "lib", "up"]);
    }

    #[test]
    fn escapes_are_refused() {
        let dir = context();
        let ignore = Ignore::default();
        let o = Origin::Context {
            root: Some(dir.path()),
            ignore: &ignore,
        };
        for bad in ["../x", "src/../../etc", "passwd", "src/up/etc"] {
            let err = o.sources(bad).unwrap_err();
            assert!(err.contains("outside the build context"), "{bad}: {err}");
        }
        let none = Origin::Context {
            root: None,
            ignore: &ignore,
        };
        assert!(none.sources("a").unwrap_err().contains("no build context"));
    }

    #[test]
    fn keys_follow_content_and_mode_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, "one").unwrap();
        let key = || {
            let mut h = Sha256::new();
            hash_entry(&mut h, Path::new("f"), &f).unwrap();
            hex::encode(h.finalize())
        };
        let k1 = key();
        let md = f.symlink_metadata().unwrap();
        let later = filetime_plus(&f, &md);
        assert!(later);
        assert_eq!(key(), k1, "mtime is not part of the key");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        let k2 = key();
        assert_ne!(k2, k1);
        fs::write(&f, "two").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(key(), k2);
    }

    fn filetime_plus(f: &Path, md: &fs::Metadata) -> bool {
        let c = cpath(f).unwrap();
        let ts = [
            libc::timespec {
                tv_sec: md.mtime() + 100,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: md.mtime() + 100,
                tv_nsec: 0,
            },
        ];
        // SAFETY: test helper; valid path and array.
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) == 0 }
    }

    #[test]
    fn archives_are_sniffed() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "x", &b"x"[..]).unwrap();
        let t = dir.path().join("a.tar");
        fs::write(&t, b.into_inner().unwrap()).unwrap();
        assert!(is_archive(&t));
        let p = dir.path().join("plain");
        fs::write(&p, "hello").unwrap();
        assert!(!is_archive(&p));
    }
}

/// One entry of a COPY/ADD layer, before it is written.
#[derive(Debug, Clone)]
pub enum Planned {
    /// A directory COPY has to create (it is not in the image).
    Dir { uid: u32, gid: u32 },
    /// An entry read from the source, with the ownership rules applied.
    Copy { real: PathBuf, own: Ownership },
}

/// The entries of a COPY/ADD layer by path in the image: written straight
/// from the sources into the tar, parents before children (no staging copy).
#[derive(Debug, Default)]
pub struct LayerPlan {
    entries: std::collections::BTreeMap<PathBuf, Planned>,
}

impl LayerPlan {
    /// Plans the directories of `rel` that the image lacks (root-owned 0755,
    /// or the `--chown` owner, as BuildKit makes them).
    pub fn parents(&mut self, rel: &Path, image: &MergedView, own: &Ownership) {
        let mut at = PathBuf::new();
        for c in rel.components() {
            at.push(c);
            if self.entries.contains_key(&at) || image.is_dir(&at) {
                continue;
            }
            let (uid, gid) = own.chown.unwrap_or((0, 0));
            self.entries.insert(at.clone(), Planned::Dir { uid, gid });
        }
    }

    pub fn copy(&mut self, dest: PathBuf, real: PathBuf, own: Ownership) {
        if !real.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            // a file replaces whatever an earlier source put there, children included
            self.entries
                .retain(|k, _| !k.starts_with(&dest) || k == &dest);
        }
        self.entries.insert(dest, Planned::Copy { real, own });
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the planned entries as a layer tar; returns how many.
    pub fn write_tar(&self, out: impl io::Write) -> io::Result<u64> {
        let mut b = tar::Builder::new(out);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (path, entry) in &self.entries {
            match entry {
                Planned::Dir { uid, gid } => {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_uid(*uid as u64);
                    h.set_gid(*gid as u64);
                    h.set_mtime(now);
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty())?;
                }
                Planned::Copy { real, own } => append_copy(&mut b, path, real, own)?,
            }
        }
        b.into_inner()?.flush()?;
        Ok(self.entries.len() as u64)
    }
}

fn append_copy<W: io::Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    real: &Path,
    own: &Ownership,
) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let md = real.symlink_metadata()?;
    let ft = md.file_type();
    let (uid, gid) = own.owner(&md);
    let mut h = tar::Header::new_gnu();
    h.set_uid(uid as u64);
    h.set_gid(gid as u64);
    h.set_mtime(md.mtime().max(0) as u64);
    let mode = if ft.is_symlink() {
        0o777
    } else {
        own.mode(&md)
    };
    h.set_mode(mode);
    h.set_size(0);
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, path, io::empty())
    } else if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        b.append_link(&mut h, path, fs::read_link(real)?)
    } else if ft.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        b.append_data(&mut h, path, File::open(real)?)
    } else {
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            return Ok(()); // sockets have no tar form
        };
        h.set_entry_type(kind);
        h.set_device_major(libc::major(md.rdev()))?;
        h.set_device_minor(libc::minor(md.rdev()))?;
        b.append_data(&mut h, path, io::empty())
    }
}
