//! `twinbox image bootstrap busybox`: an image made from the host's static busybox,
//! so every lesson and test has a base image without any network.

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::image::{
    Arch, ConfigBuilder, HistoryBuilder, ImageConfigurationBuilder, Os, RootFsBuilder,
};

use super::layer::{commit_layer, write_image};
use super::{Image, ImageError, Reference, Result};
use crate::store::Store;
use crate::util::path::{find_busybox, is_static_elf};
use crate::util::time::now_rfc3339;

pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n";

/// A root-owned entry with a zero mtime, so the same input gives the same digest.
pub fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// The busybox rootfs as one deterministic tar (same host binary → same digest).
pub fn busybox_rootfs_tar(busybox: &Path) -> Result<Vec<u8>> {
    let fail = |m: String| ImageError::Bootstrap {
        what: format!("busybox at {}", busybox.display()),
        message: m,
    };
    let binary = std::fs::read(busybox).map_err(|e| fail(e.to_string()))?;
    let applets = applets(busybox)?;
    let mut b = tar::Builder::new(Vec::new());
    append_busybox(&mut b, &binary, &applets).map_err(|e| fail(e.to_string()))?;
    b.into_inner().map_err(|e| fail(e.to_string()))
}

/// The applet paths busybox installs (`bin/sh`, `usr/bin/wget`, ...), sorted.
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let fail = |m: String| ImageError::Bootstrap {
        what: format!("busybox at {}", busybox.display()),
        message: m,
    };
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if !out.status.success() {
        return Err(fail(
            "`busybox --list-full` failed: install busybox-static".into(),
        ));
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains('/') && !l.ends_with('/') && *l != "bin/busybox")
        .map(str::to_string)
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// The busybox files (the directories of a root filesystem, the binary, its
/// applet links and a minimal /etc) appended to a tar being built.
pub(crate) fn append_busybox(
    b: &mut tar::Builder<Vec<u8>>,
    binary: &[u8],
    applets: &[String],
) -> std::io::Result<()> {
    for (dir, mode) in [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Directory, mode, 0),
            dir,
            std::io::empty(),
        )?;
    }
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o755, binary.len() as u64),
        "bin/busybox",
        binary,
    )?;
    for (name, text) in [
        ("etc/passwd", PASSWD),
        ("etc/group", GROUP),
        ("etc/hostname", "twinbox\n"),
    ] {
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, text.len() as u64),
            name,
            text.as_bytes(),
        )?;
    }
    for applet in applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, applet, "/bin/busybox")?;
    }
    Ok(())
}

/// The host's busybox and its applet list, checked to be static.
pub(crate) fn host_busybox() -> Result<(PathBuf, Vec<u8>, Vec<String>)> {
    let busybox = find_busybox().ok_or_else(|| ImageError::Bootstrap {
        what: "busybox".into(),
        message: "not found on this host: install it with `apt-get install busybox-static`".into(),
    })?;
    if !is_static_elf(&busybox) {
        return Err(ImageError::Bootstrap {
            what: format!("busybox at {}", busybox.display()),
            message: "is dynamically linked: install busybox-static".into(),
        });
    }
    let fail = |m: String| ImageError::Bootstrap {
        what: format!("busybox at {}", busybox.display()),
        message: m,
    };
    let binary = std::fs::read(&busybox).map_err(|e| fail(e.to_string()))?;
    let applets = applets(&busybox)?;
    Ok((busybox, binary, applets))
}

/// Builds `busybox:latest` (or the given name) from the host's static busybox.
pub fn bootstrap_busybox(store: &Store, name: &str) -> Result<Image> {
    let reference = Reference::parse(name)?;
    let (busybox, _, _) = host_busybox()?;
    let tar = busybox_rootfs_tar(&busybox)?;
    let layer = commit_layer(store, &tar, None)?;
    let built_by = format!(
        "twinbox image bootstrap busybox (from {})",
        busybox.display()
    );
    let config = single_layer_config(
        &layer.diff_id.to_string(),
        Some("sh"),
        Default::default(),
        &built_by,
        None,
    );
    write_image(store, &reference, &config, vec![layer])
}

/// The config of an image made of one layer (a bootstrapped base, an
/// import): PATH, the shell as Cmd if one is given, the labels, and the
/// history: the layer's origin, then the Cmd.
pub fn single_layer_config(
    diff_id: &str,
    shell: Option<&str>,
    labels: std::collections::HashMap<String, String>,
    created_by: &str,
    comment: Option<&str>,
) -> oci_spec::image::ImageConfiguration {
    let created = now_rfc3339();
    let mut origin = HistoryBuilder::default();
    origin = origin
        .created(created.clone())
        .created_by(created_by.to_string());
    if let Some(comment) = comment {
        origin = origin.comment(comment.to_string());
    }
    let mut config = ConfigBuilder::default().env(vec![DEFAULT_PATH_ENV.to_string()]);
    let mut history = vec![origin.build().expect("static history")];
    if let Some(shell) = shell {
        config = config.cmd(vec![shell.to_string()]);
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("CMD [\"{shell}\"]"))
                .empty_layer(true)
                .build()
                .expect("static history"),
        );
    }
    if !labels.is_empty() {
        config = config.labels(labels);
    }
    ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build().expect("static config"))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()
                .expect("static rootfs"),
        )
        .history(history)
        .build()
        .expect("static image config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_tar_is_deterministic_and_complete() {
        let Some(bb) = find_busybox() else {
            eprintln!("skipping: no busybox on this host");
            return;
        };
        let a = busybox_rootfs_tar(&bb).unwrap();
        let b = busybox_rootfs_tar(&bb).unwrap();
        assert_eq!(a, b);
        let names: Vec<String> = tar::Archive::new(&a[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in ["bin/busybox", "bin/sh", "etc/passwd", "tmp"] {
            assert!(
                names.iter().any(|n| n.trim_end_matches('/') == want),
                "missing {want}"
            );
        }
    }
}
