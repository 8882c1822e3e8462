//! Reading an image's file tree without mounting it: the unpacked layers,
//! topmost first, seen the way overlayfs shows them (a whiteout hides what is
//! below it, an opaque directory hides the lower directories' entries).

use std::collections::BTreeSet;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// The layers of one stage or image, topmost first.
#[derive(Debug, Clone)]
pub struct MergedView {
    layers: Vec<PathBuf>,
}

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    md.file_type().is_char_device() && md.rdev() == 0
}

pub fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr_get(dir, name), Some(v) if v == b"y"))
}

/// One extended attribute of a path (not following a final symlink).
pub fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is writable for its length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

impl MergedView {
    pub fn new(layers: Vec<PathBuf>) -> Self {
        MergedView { layers }
    }

    /// The real path of `rel` (relative, `/`-separated, no `..`) in the topmost
    /// layer that has it, or None when it does not exist in the merged tree.
    pub fn lookup(&self, rel: &Path) -> Option<PathBuf> {
        let comps: Vec<_> = rel.components().collect();
        'layers: for layer in &self.layers {
            // an ancestor that is a whiteout, a non-directory or opaque ends the search
            let mut here = layer.clone();
            for (i, c) in comps.iter().enumerate() {
                here.push(c);
                let Ok(md) = here.symlink_metadata() else {
                    continue 'layers;
                };
                if is_whiteout(&md) {
                    return None;
                }
                let last = i + 1 == comps.len();
                if last {
                    return Some(here);
                }
                if !md.is_dir() {
                    return None;
                }
                if is_opaque(&here) {
                    // nothing below this layer shows through this directory
                    let rest: PathBuf = comps[i + 1..].iter().collect();
                    let p = here.join(rest);
                    return p
                        .symlink_metadata()
                        .ok()
                        .filter(|m| !is_whiteout(m))
                        .map(|_| p);
                }
            }
            if comps.is_empty() {
                return Some(layer.clone());
            }
        }
        None
    }

    pub fn metadata(&self, rel: &Path) -> Option<std::fs::Metadata> {
        self.lookup(rel).and_then(|p| p.symlink_metadata().ok())
    }

    pub fn is_dir(&self, rel: &Path) -> bool {
        self.metadata(rel).is_some_and(|m| m.is_dir())
    }

    /// The names in a directory of the merged tree, sorted.
    pub fn read_dir(&self, rel: &Path) -> Vec<String> {
        let mut names = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        for layer in &self.layers {
            let dir = layer.join(rel);
            let Ok(md) = dir.symlink_metadata() else {
                continue;
            };
            if !md.is_dir() {
                break;
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if hidden.contains(&name) || names.contains(&name) {
                        continue;
                    }
                    match e.path().symlink_metadata() {
                        Ok(m) if is_whiteout(&m) => {
                            hidden.insert(name);
                        }
                        Ok(_) => {
                            names.insert(name);
                        }
                        Err(_) => {}
                    }
                }
            }
            if is_opaque(&dir) {
                break;
            }
        }
        names.into_iter().collect()
    }

    /// Resolves symlinks in `rel` inside this tree (absolute targets start at its
    /// root, `..` stops at the root), as a path lookup inside the container would.
    pub fn resolve(&self, rel: &Path) -> PathBuf {
        let mut out = PathBuf::new();
        let mut pending: Vec<std::ffi::OsString> = rel
            .components()
            .rev()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            if c == "." || c == "/" {
                continue;
            }
            let candidate = out.join(&c);
            match self.lookup(&candidate) {
                Some(real) if real.is_symlink() && hops < 40 => {
                    hops += 1;
                    let target = std::fs::read_link(&real).unwrap_or_default();
                    if target.is_absolute() {
                        out = PathBuf::new();
                    }
                    for t in target.components().rev() {
                        pending.push(t.as_os_str().to_os_string());
                    }
                }
                _ => out = candidate,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn whiteout(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mknod on a NUL-terminated path we own.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(rc, 0, "mknod needs root");
    }

    #[test]
    fn layers_merge_like_overlayfs() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (low, up) = (dir.path().join("low"), dir.path().join("up"));
        fs::create_dir_all(low.join("etc/sub")).unwrap();
        fs::write(low.join("etc/a"), "a").unwrap();
        fs::write(low.join("etc/b"), "b").unwrap();
        fs::write(low.join("etc/sub/x"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", low.join("link")).unwrap();
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::write(up.join("etc/c"), "c").unwrap();
        whiteout(&up.join("etc/a"));
        let view = MergedView::new(vec![up.clone(), low.clone()]);
        assert_eq!(view.read_dir(Path::new("etc")), vec!["b", "c", "sub"]);
        assert!(view.lookup(Path::new("etc/a")).is_none());
        assert_eq!(view.lookup(Path::new("etc/b")), Some(low.join("etc/b")));
        assert_eq!(
            view.resolve(Path::new("link/sub/x")),
            PathBuf::from("etc/sub/x")
        );
        assert!(!view.is_dir(Path::new("link")));
        assert!(view.is_dir(&view.resolve(Path::new("link"))));
    }
}
