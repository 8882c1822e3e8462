//! `twinbox image bootstrap iperf3`: a base image with the host's iperf3
//! (Debian's iperf3 package) on busybox, made like `bootstrap postgres`: the
//! program and every shared library `ldd` finds for it, so the network lesson
//! runs the same measuring tool in a container, in a microVM and on the host
//! without any registry.

use std::path::PathBuf;

use super::bootstrap::{append_busybox, host_busybox, single_layer_config};
use super::layer::{commit_layer, write_image};
use super::postgres::{libraries_of, Tree};
use super::{Image, ImageError, Result};
use crate::store::Store;
use crate::util::path::find_in_path;

/// The name `bootstrap iperf3` gives when none is asked for.
pub const DEFAULT_NAME: &str = "iperf3:latest";

/// The host's iperf3 on PATH, or why there is none, in one line saying how
/// to get it.
pub fn find_iperf3() -> Result<PathBuf> {
    find_in_path("iperf3").ok_or_else(|| ImageError::Bootstrap {
        what: "iperf3".into(),
        message: "not found on PATH: install it with `apt-get install iperf3`".into(),
    })
}

/// busybox plus the host's iperf3 and its libraries, as one deterministic
/// tar (same host files → same digest).
pub fn iperf3_rootfs_tar() -> Result<Vec<u8>> {
    let iperf3 = find_iperf3()?;
    let fail = |m: String| ImageError::Bootstrap {
        what: format!("iperf3 at {}", iperf3.display()),
        message: m,
    };
    let io = |e: std::io::Error| fail(e.to_string());
    let (_, busybox, applets) = host_busybox()?;
    // the real file, so a PATH entry that is a symlink still gives the binary
    let real = std::fs::canonicalize(&iperf3).map_err(io)?;
    let mut tree = Tree::default();
    tree.mirror_top_links().map_err(io)?;
    tree.add(&real).map_err(io)?;
    for lib in libraries_of("iperf3", std::slice::from_ref(&real))? {
        tree.add(&lib).map_err(io)?;
    }
    tree.leave_busybox_dirs();
    let mut b = tar::Builder::new(Vec::new());
    append_busybox(&mut b, &busybox, &applets).map_err(io)?;
    tree.append_to(&mut b).map_err(io)?;
    // where the image's PATH finds it, whatever directory the host keeps it in
    if !real.starts_with("/usr/bin") && !real.starts_with("/bin") {
        let mut h = super::bootstrap::header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, "usr/local/bin/iperf3", &real)
            .map_err(io)?;
    }
    b.into_inner().map_err(io)
}

/// Builds `iperf3:latest` (or the given name) from the host's files; its Cmd
/// is the server, `iperf3 -s`.
pub fn bootstrap_iperf3(store: &Store, name: &str) -> Result<Image> {
    let reference = super::Reference::parse(name)?;
    let iperf3 = find_iperf3()?;
    let tar = iperf3_rootfs_tar()?;
    let layer = commit_layer(store, &tar, None)?;
    let built_by = format!(
        "twinbox image bootstrap iperf3 (busybox and {})",
        iperf3.display()
    );
    let mut config = single_layer_config(
        &layer.diff_id.to_string(),
        None,
        Default::default(),
        &built_by,
        None,
    );
    if let Some(mut c) = config.config().clone() {
        c.set_cmd(Some(vec!["iperf3".into(), "-s".into()]));
        config.set_config(Some(c));
    }
    write_image(store, &reference, &config, vec![layer])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_holds_iperf3_and_what_it_loads() {
        if find_iperf3().is_err() || crate::util::path::find_busybox().is_none() {
            eprintln!("skipping: no iperf3 or busybox on this host");
            return;
        }
        let a = iperf3_rootfs_tar().unwrap();
        assert_eq!(a, iperf3_rootfs_tar().unwrap(), "deterministic");
        let names: Vec<String> = tar::Archive::new(&a[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n.ends_with("bin/iperf3")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("libiperf.so")));
        assert!(names.iter().any(|n| n == "bin/sh"));
    }
}
