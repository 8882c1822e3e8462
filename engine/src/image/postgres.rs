//! `twinbox image bootstrap postgres`: a base image made from the host's
//! PostgreSQL (Debian's postgresql-N packages), as `bootstrap busybox` makes
//! one from the host's busybox, so the course's database exercise runs with no
//! registry. The layer holds busybox (a shell and the usual tools), the server
//! and client programs with every shared library they load (found with
//! `ldd`), their share files, one time zone and the C.UTF-8 locale. What the
//! official image adds on top (its user, directories and entrypoint) is a
//! Dockerfile built from this base (lessons/postgres/).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::bootstrap::{append_busybox, header, host_busybox, single_layer_config};
use super::layer::{commit_layer, write_image};
use super::{Image, ImageError, Reference, Result};
use crate::store::Store;

/// The name `bootstrap postgres` gives when none is asked for.
pub const DEFAULT_NAME: &str = "postgres-base:latest";

/// Where Debian installs each major version's programs.
const VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// The programs a server image needs: the server, cluster setup, the client
/// the entrypoint runs init scripts with, and the usual helpers.
const PROGRAMS: &[&str] = &[
    "postgres",
    "initdb",
    "pg_ctl",
    "psql",
    "pg_isready",
    "createdb",
    "createuser",
    "pg_dump",
    "pg_dumpall",
];

/// The host's newest PostgreSQL: its major version and its directory
/// (`/usr/lib/postgresql/15`), when its server program is installed.
pub fn find_postgres() -> Option<(u32, PathBuf)> {
    std::fs::read_dir(VERSIONS_DIR)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            e.path()
                .join("bin/postgres")
                .is_file()
                .then(|| (major, e.path()))
        })
        .max_by_key(|(m, _)| *m)
}

/// What goes into the layer, by path inside the image.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Dir,
    File { from: PathBuf, mode: u32 },
    Symlink(PathBuf),
}

/// Host paths copied into the image at the same place, with their parent
/// directories and every symlink on the way resolved and kept.
#[derive(Default)]
pub(super) struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Tree {
    /// Adds a host path (file, directory with its contents, or symlink with
    /// what it points to). Its parent directory is taken canonically, so on a
    /// merged-/usr host `/lib/x/libc.so.6` lands in `usr/lib/x` and the
    /// image's own `lib -> usr/lib` link (see [`Tree::mirror_top_links`])
    /// finds it.
    pub(super) fn add(&mut self, path: &Path) -> std::io::Result<()> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(());
        };
        let parent = std::fs::canonicalize(parent)?;
        let real = parent.join(name);
        let inside = real.strip_prefix("/").unwrap_or(&real).to_path_buf();
        if self.entries.contains_key(&inside) {
            return Ok(());
        }
        self.add_dirs(&parent);
        let meta = std::fs::symlink_metadata(&real)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&real)?;
            self.entries.insert(inside, Entry::Symlink(target.clone()));
            let resolved = if target.is_absolute() {
                target
            } else {
                parent.join(target)
            };
            self.add(&resolved)
        } else if meta.is_dir() {
            self.entries.insert(inside, Entry::Dir);
            let mut children: Vec<PathBuf> = std::fs::read_dir(&real)?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()?;
            children.sort();
            for c in children {
                self.add(&c)?;
            }
            Ok(())
        } else if meta.is_file() {
            self.entries.insert(
                inside,
                Entry::File {
                    from: real,
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
            Ok(())
        } else {
            Ok(())
        }
    }

    fn add_dirs(&mut self, dir: &Path) {
        for a in dir.ancestors() {
            let inside = a.strip_prefix("/").unwrap_or(a);
            if !inside.as_os_str().is_empty() {
                self.entries
                    .entry(inside.to_path_buf())
                    .or_insert(Entry::Dir);
            }
        }
    }

    /// `lib -> usr/lib` and the like, as the host has them, so that the
    /// programs' interpreter (`/lib64/ld-linux-x86-64.so.2`) and library
    /// paths resolve in the image as they do on the host.
    pub(super) fn mirror_top_links(&mut self) -> std::io::Result<()> {
        for top in ["lib", "lib32", "lib64", "libx32"] {
            let host = Path::new("/").join(top);
            if std::fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink()) {
                self.entries.insert(
                    PathBuf::from(top),
                    Entry::Symlink(std::fs::read_link(&host)?),
                );
            }
        }
        Ok(())
    }

    /// Drops the directories the busybox layer already has as real
    /// directories, so this layer does not write them again.
    pub(super) fn leave_busybox_dirs(&mut self) {
        for d in ["bin", "usr", "usr/bin", "usr/sbin", "sbin", "etc", "var"] {
            self.entries.remove(Path::new(d));
        }
    }

    pub(super) fn append_to(&self, b: &mut tar::Builder<Vec<u8>>) -> std::io::Result<()> {
        for (path, entry) in &self.entries {
            match entry {
                Entry::Dir => b.append_data(
                    &mut header(tar::EntryType::Directory, 0o755, 0),
                    path,
                    std::io::empty(),
                )?,
                Entry::Symlink(target) => {
                    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                    b.append_link(&mut h, path, target)?
                }
                Entry::File { from, mode } => {
                    let data = std::fs::read(from)?;
                    b.append_data(
                        &mut header(tar::EntryType::Regular, *mode, data.len() as u64),
                        path,
                        &data[..],
                    )?
                }
            }
        }
        Ok(())
    }
}

/// The shared libraries (and the interpreter) the given ELF files load, as
/// `ldd` resolves them on this host; `what` names the program for errors.
pub(super) fn libraries_of(what: &str, files: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let fail = |m: String| ImageError::Bootstrap {
        what: what.into(),
        message: m,
    };
    let out = Command::new("ldd")
        .args(files)
        .output()
        .map_err(|e| fail(format!("cannot run ldd (libc-bin): {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.contains("=> not found") {
            return Err(fail(format!(
                "a library the host's {what} needs is missing: {line}"
            )));
        }
        let path = match line.split_once("=> ") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None if line.starts_with('/') && line.contains(" (0x") => {
                line.split_whitespace().next()
            }
            None => None,
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    libs.sort();
    libs.dedup();
    if libs.is_empty() {
        return Err(fail(format!(
            "ldd found no libraries for the host's {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(libs)
}

/// The files of the base image: busybox plus the host's PostgreSQL, as one
/// deterministic tar (same host files → same digest).
pub fn postgres_rootfs_tar() -> Result<Vec<u8>> {
    let (major, dir) = find_postgres().ok_or_else(|| ImageError::Bootstrap {
        what: "postgres".into(),
        message: format!(
            "no PostgreSQL server under {VERSIONS_DIR}: install it with `apt-get install postgresql`"
        ),
    })?;
    let fail = |m: String| ImageError::Bootstrap {
        what: format!("postgres {major} at {}", dir.display()),
        message: m,
    };
    let io = |e: std::io::Error| fail(e.to_string());
    let (_, busybox, applets) = host_busybox()?;

    let mut elves: Vec<PathBuf> = PROGRAMS
        .iter()
        .map(|p| dir.join("bin").join(p))
        .filter(|p| p.is_file())
        .collect();
    // server modules (PL/pgSQL, encoding conversions, snowball dictionaries,
    // contrib); not the LLVM JIT, which would pull in all of LLVM (the
    // server runs without it and says so only when JIT is asked for)
    let mut modules: Vec<PathBuf> = std::fs::read_dir(dir.join("lib"))
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "so")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("llvmjit"))
        })
        .collect();
    modules.sort();
    elves.extend(modules);

    let mut tree = Tree::default();
    tree.mirror_top_links().map_err(io)?;
    for f in &elves {
        tree.add(f).map_err(io)?;
    }
    for lib in libraries_of("PostgreSQL", &elves)? {
        tree.add(&lib).map_err(io)?;
    }
    let share = PathBuf::from(format!("/usr/share/postgresql/{major}"));
    tree.add(&share)
        .map_err(|e| fail(format!("{}: {e}", share.display())))?;
    for optional in [
        "/usr/share/zoneinfo/Etc",
        "/usr/share/zoneinfo/UTC",
        "/usr/lib/locale/C.utf8",
    ] {
        if Path::new(optional).exists() {
            tree.add(Path::new(optional)).map_err(io)?;
        }
    }
    tree.leave_busybox_dirs();

    let mut b = tar::Builder::new(Vec::new());
    append_busybox(&mut b, &busybox, &applets).map_err(io)?;
    tree.append_to(&mut b).map_err(io)?;
    b.into_inner().map_err(io)
}

/// Builds `postgres-base:latest` (or the given name) from the host's files.
pub fn bootstrap_postgres(store: &Store, name: &str) -> Result<Image> {
    let reference = Reference::parse(name)?;
    let (major, dir) = find_postgres().ok_or_else(|| ImageError::Bootstrap {
        what: "postgres".into(),
        message: format!(
            "no PostgreSQL server under {VERSIONS_DIR}: install it with `apt-get install postgresql`"
        ),
    })?;
    let tar = postgres_rootfs_tar()?;
    let layer = commit_layer(store, &tar, None)?;
    let built_by = format!(
        "twinbox image bootstrap postgres (busybox and PostgreSQL {major} from {})",
        dir.display()
    );
    let mut labels = std::collections::HashMap::new();
    labels.insert("org.twinbox.postgres.major".to_string(), major.to_string());
    let config = single_layer_config(
        &layer.diff_id.to_string(),
        Some("sh"),
        labels,
        &built_by,
        None,
    );
    write_image(store, &reference, &config, vec![layer])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_are_read() {
        // libraries_of runs ldd itself; here only that it finds libc for a
        // dynamic host program
        let libs = libraries_of("ls", &[PathBuf::from("/bin/ls")]).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
    }

    #[test]
    fn the_base_holds_the_server_and_what_it_loads() {
        if find_postgres().is_none() || crate::util::path::find_busybox().is_none() {
            eprintln!("skipping: no PostgreSQL server or busybox on this host");
            return;
        }
        let tar = postgres_rootfs_tar().unwrap();
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        let (major, _) = find_postgres().unwrap();
        for want in [
            format!("usr/lib/postgresql/{major}/bin/postgres"),
            format!("usr/lib/postgresql/{major}/lib/plpgsql.so"),
            format!("usr/share/postgresql/{major}/postgres.bki"),
            "bin/sh".to_string(),
        ] {
            assert!(
                names.iter().any(|n| n.trim_end_matches('/') == want),
                "missing {want}"
            );
        }
        assert!(names.iter().any(|n| n.contains("libpq.so")));
        assert!(!names.iter().any(|n| n.contains("llvmjit")));
    }
}
