//! `diff`: what a container changed in its filesystem, read from its overlay upper
//! dir as `docker diff` shows it: `A` added, `C` changed (or a directory with
//! changes inside), `D` deleted (an overlayfs whiteout).

use std::fs;
use std::path::{Path, PathBuf};

use super::{Container, ContainerError, Result};
use crate::layer::merged::MergedView;
use crate::store::unpack::is_whiteout;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Added,
    Changed,
    Deleted,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Added => 'A',
            Kind::Changed => 'C',
            Kind::Deleted => 'D',
        }
    }
}

/// Every change, sorted by path (absolute, as seen inside the container).
pub fn diff(container: &Container) -> Result<Vec<(Kind, PathBuf)>> {
    let upper = container.upper();
    let image = MergedView::new(container.lower_dirs.clone());
    let mut out = Vec::new();
    walk(&upper, Path::new(""), &image, &mut out)?;
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn walk(
    upper: &Path,
    rel: &Path,
    image: &MergedView,
    out: &mut Vec<(Kind, PathBuf)>,
) -> Result<()> {
    let dir = upper.join(rel);
    let io = |e| ContainerError::Io {
        path: dir.clone(),
        source: e,
    };
    for entry in fs::read_dir(&dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let rel_path = rel.join(entry.file_name());
        let md = entry.metadata().map_err(io)?;
        let shown = Path::new("/").join(&rel_path);
        if is_whiteout(&md) {
            out.push((Kind::Deleted, shown));
            continue;
        }
        let kind = if image.lookup(&rel_path).is_some() {
            Kind::Changed
        } else {
            Kind::Added
        };
        out.push((kind, shown));
        if md.is_dir() {
            walk(upper, &rel_path, image, out)?;
        }
    }
    Ok(())
}
