//! Reading an image's file tree without mounting it: the unpacked layers,
//! topmost first, seen the way overlayfs shows them (a whiteout hides what is
//! below it, an opaque directory hides the lower directories' entries). Path
//! lookups for build (COPY --from, RUN mount stubs) and container diff, and
//! the whole tree in one [`MergedView::walk`] for export.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use crate::store::unpack::{is_opaque, is_whiteout};

/// The layers of one stage or image, topmost first.
#[derive(Debug, Clone)]
pub struct MergedView {
    layers: Vec<PathBuf>,
}

/// One path of the merged tree, as [`MergedView::walk`] meets it.
pub struct Entry<'a> {
    /// Relative to the tree's root.
    pub rel: &'a Path,
    /// The file in the layer that shows it.
    pub path: &'a Path,
    pub metadata: &'a Metadata,
}

impl MergedView {
    pub fn new(layers: Vec<PathBuf>) -> Self {
        MergedView { layers }
    }

    /// The real path of `rel` (relative, `/`-separated, no `..`) in the topmost
    /// layer that has it, or None when it does not exist in the merged tree.
    /// Never a path that goes through a symlink: a layer's `link -> /etc` must
    /// not make `link/shadow` the host's file.
    pub fn lookup(&self, rel: &Path) -> Option<PathBuf> {
        for layer in &self.layers {
            match in_layer(layer, rel) {
                InLayer::Found { path, .. } => return Some(path),
                InLayer::Absent {
                    below_hidden: false,
                } => continue,
                InLayer::Absent { below_hidden: true } | InLayer::Hidden => return None,
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
            let (dir, below_hidden) = match in_layer(layer, rel) {
                InLayer::Found {
                    path,
                    md,
                    below_hidden,
                } if md.is_dir() => (path, below_hidden),
                InLayer::Absent {
                    below_hidden: false,
                } => continue,
                _ => break,
            };
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
            if below_hidden {
                break;
            }
        }
        names.into_iter().collect()
    }
    /// Visits every path of the merged tree, parents before children and in
    /// name order within a directory; returns how many whiteouts hid a path.
    /// Layers that are not directories (never unpacked) are skipped.
    pub fn walk(&self, visit: &mut dyn FnMut(Entry) -> io::Result<()>) -> io::Result<u64> {
        let present: Vec<usize> = (0..self.layers.len())
            .filter(|&i| self.layers[i].is_dir())
            .collect();
        let mut whiteouts = 0;
        self.walk_dir(Path::new(""), &present, visit, &mut whiteouts)?;
        Ok(whiteouts)
    }

    /// `present`: the layers where `rel` is a directory that shows through,
    /// topmost first.
    fn walk_dir(
        &self,
        rel: &Path,
        present: &[usize],
        visit: &mut dyn FnMut(Entry) -> io::Result<()>,
        whiteouts: &mut u64,
    ) -> io::Result<()> {
        let with_path =
            |p: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
        // name → (winning layer, its metadata); None when a whiteout hides it
        let mut names: BTreeMap<OsString, Option<(usize, Metadata)>> = BTreeMap::new();
        for &i in present {
            let dir = self.layers[i].join(rel);
            for entry in std::fs::read_dir(&dir).map_err(|e| with_path(&dir, e))? {
                let entry = entry.map_err(|e| with_path(&dir, e))?;
                let name = entry.file_name();
                if names.contains_key(&name) {
                    continue;
                }
                let path = entry.path();
                let md = path.symlink_metadata().map_err(|e| with_path(&path, e))?;
                let shown = (!is_whiteout(&md)).then_some((i, md));
                names.insert(name, shown);
            }
        }
        for (name, shown) in names {
            let Some((i, md)) = shown else {
                *whiteouts += 1;
                continue;
            };
            let rel_path = rel.join(&name);
            let path = self.layers[i].join(&rel_path);
            visit(Entry {
                rel: &rel_path,
                path: &path,
                metadata: &md,
            })?;
            if !md.is_dir() {
                continue;
            }
            let mut below = vec![i];
            if !is_opaque(&path) {
                for &j in present.iter().filter(|&&j| j > i) {
                    let p = self.layers[j].join(&rel_path);
                    match p.symlink_metadata() {
                        Ok(m) if m.is_dir() => {
                            below.push(j);
                            if is_opaque(&p) {
                                break;
                            }
                        }
                        Ok(_) => break, // a file or a whiteout ends the merge
                        Err(_) => {}
                    }
                }
            }
            self.walk_dir(&rel_path, &below, visit, whiteouts)?;
        }
        Ok(())
    }

    /// Resolves symlinks in `rel` inside this tree (absolute targets start at its
    /// root, `..` stops at the root), as a path lookup inside the container would.
    /// More than 40 links is an error, as the kernel's ELOOP: the path would otherwise
    /// end in a link of the layer, which a caller on the host (a bind mount's
    /// source, `is_dir`) would follow out of the tree.
    pub fn resolve(&self, rel: &Path) -> io::Result<PathBuf> {
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
                Some(real) if real.is_symlink() => {
                    if hops == 40 {
                        return Err(io::Error::other(format!(
                            "{} passes more than 40 symbolic links",
                            rel.display()
                        )));
                    }
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
        Ok(out)
    }
}

/// How one path stands in one layer.
enum InLayer {
    /// The layer has it; `below_hidden`: an opaque directory on the way (or the
    /// path itself) hides the lower layers' entries there.
    Found {
        path: PathBuf,
        md: Metadata,
        below_hidden: bool,
    },
    /// Not in this layer; lower layers show through unless an opaque
    /// directory on the way hides them.
    Absent { below_hidden: bool },
    /// A whiteout, or a file or symlink where a directory on the way would
    /// be: the path does not exist in the merged tree.
    Hidden,
}

/// Looks `rel` up in one layer a component at a time with lstat, so no symlink
/// of the layer is ever followed (a plain join would follow one on the host).
fn in_layer(layer: &Path, rel: &Path) -> InLayer {
    let comps: Vec<_> = rel.components().collect();
    let mut here = layer.to_path_buf();
    let mut below_hidden = false;
    if comps.is_empty() {
        return match here.symlink_metadata() {
            Ok(md) => InLayer::Found {
                path: here,
                md,
                below_hidden,
            },
            Err(_) => InLayer::Absent { below_hidden },
        };
    }
    for (i, c) in comps.iter().enumerate() {
        here.push(c);
        let Ok(md) = here.symlink_metadata() else {
            return InLayer::Absent { below_hidden };
        };
        if is_whiteout(&md) {
            return InLayer::Hidden;
        }
        let opaque = md.is_dir() && is_opaque(&here);
        if i + 1 == comps.len() {
            return InLayer::Found {
                path: here,
                md,
                below_hidden: below_hidden || opaque,
            };
        }
        if !md.is_dir() {
            return InLayer::Hidden;
        }
        below_hidden |= opaque;
    }
    InLayer::Absent { below_hidden }
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
            view.resolve(Path::new("link/sub/x")).unwrap(),
            PathBuf::from("etc/sub/x")
        );
        assert!(!view.is_dir(Path::new("link")));
        assert!(view.is_dir(&view.resolve(Path::new("link")).unwrap()));

        // the walk: parents first, names in order, a whiteout counted not shown
        let mut seen = Vec::new();
        let whiteouts = view
            .walk(&mut |e| {
                seen.push((e.rel.display().to_string(), e.path.to_path_buf()));
                Ok(())
            })
            .unwrap();
        assert_eq!(whiteouts, 1);
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["etc", "etc/b", "etc/c", "etc/sub", "etc/sub/x", "link"]
        );
        assert_eq!(seen[2].1, up.join("etc/c"));
        // an opaque directory above hides the layer below: set it and walk again
        let opaque = std::ffi::CString::new(up.join("etc").to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated path and attribute name; the value is 1 byte.
        let rc = unsafe {
            libc::lsetxattr(
                opaque.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0);
        let mut names = Vec::new();
        view.walk(&mut |e| {
            names.push(e.rel.display().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(names, ["etc", "etc/c", "link"]);
    }

    fn set_opaque(dir: &Path) {
        let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: NUL-terminated path and attribute name; the value is 1 byte.
        let rc = unsafe {
            libc::lsetxattr(
                c.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        assert_eq!(rc, 0, "setting trusted.* needs root");
    }

    /// A layer's symlinks to a host directory: nothing below them may be looked
    /// up or listed on the host, also past an opaque directory (where lookup
    /// joined the rest of the path in one go) and past resolve's 40 links, and
    /// so COPY --from cannot copy the host's files into an image.
    #[test]
    fn symlinks_in_a_layer_are_never_followed_on_the_host() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("sub")).unwrap();
        fs::write(outside.join("secret"), "host").unwrap();
        fs::write(outside.join("sub/x"), "host").unwrap();
        let layer = dir.path().join("layer");
        fs::create_dir_all(layer.join("d")).unwrap();
        set_opaque(&layer.join("d"));
        std::os::unix::fs::symlink(&outside, layer.join("link")).unwrap();
        std::os::unix::fs::symlink(&outside, layer.join("d/link")).unwrap();
        for i in 0..40 {
            std::os::unix::fs::symlink(format!("l{}", i + 1), layer.join(format!("d/l{i}")))
                .unwrap();
        }
        std::os::unix::fs::symlink(&outside, layer.join("d/l40")).unwrap();
        let view = MergedView::new(vec![layer.clone()]);
        for rel in ["link/secret", "d/link/secret", "d/link/sub/x"] {
            assert_eq!(view.lookup(Path::new(rel)), None, "{rel}");
        }
        for rel in ["link/sub", "d/link/sub"] {
            assert!(view.read_dir(Path::new(rel)).is_empty(), "{rel}");
        }
        let err = view.resolve(Path::new("d/l0/secret")).unwrap_err();
        assert!(
            err.to_string().contains("more than 40 symbolic links"),
            "{err}"
        );
        // 40 links are followed, inside the tree
        fs::remove_file(layer.join("d/l39")).unwrap();
        std::os::unix::fs::symlink("/d", layer.join("d/l39")).unwrap();
        assert_eq!(view.resolve(Path::new("d/l0")).unwrap(), PathBuf::from("d"));

        let origin = crate::build::copy::Origin::Image(&view);
        for src in ["/d/link/secret", "/d/link/sub/x", "/d/link/sub/*"] {
            match origin.sources(src) {
                Err(e) => assert!(e.contains("not found") || e.contains("no source"), "{e}"),
                Ok(m) => panic!("COPY --from {src} found {m:?}"),
            }
        }
    }
}
