//! `twinbox image bootstrap debian[:SUITE]`: a Debian base image built with
//! mmdebstrap (minbase) from the distribution's mirror, so lessons have realistic
//! images (python3, a database server) without Docker Hub.
//!
//! mmdebstrap writes the root filesystem as a tar on stdout; that stream goes
//! straight into [`ingest_tar`] (gzip blob + safe unpack in one pass), with no
//! copy of the whole tar on disk.

use std::io::{Cursor, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use super::bootstrap::single_layer_config;
use super::gc::{self, Candidates, Holders};
use super::ingest::ingest_tar;
use super::layer::write_image;
use super::{Image, ImageError, Reference, Result};
use crate::store::Store;

pub const DEFAULT_SUITE: &str = "bookworm";
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// What to build.
#[derive(Debug, Clone)]
pub struct DebianOptions {
    pub suite: String,
    /// Extra packages, installed on top of minbase.
    pub packages: Vec<String>,
    /// None: the host's Debian mirror from its apt sources, else deb.debian.org.
    pub mirror: Option<String>,
    /// Image name; default `debian:SUITE`.
    pub name: Option<String>,
}

fn fail(message: impl Into<String>) -> ImageError {
    ImageError::Bootstrap {
        what: "debian".into(),
        message: message.into(),
    }
}

/// The Debian mirror this host's apt uses (`deb` lines and deb822 `.sources`),
/// skipping security and third-party repositories.
pub fn host_mirror() -> Option<String> {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        let name = f.to_string_lossy();
        if name.ends_with(".sources") {
            mirror_from_deb822(&text)
        } else if name.ends_with(".list") {
            mirror_from_one_line(&text)
        } else {
            None
        }
    })
}

fn is_debian_archive(uri: &str) -> bool {
    let uri = uri.trim_end_matches('/');
    (uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:/"))
        && uri.ends_with("/debian")
}

fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        // skip an [options] block
        let uri = words.find(|w| !w.starts_with('[') && !w.ends_with(']'))?;
        is_debian_archive(uri).then(|| uri.trim_end_matches('/').to_string())
    })
}

fn mirror_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |key: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().to_string())
            })
        };
        if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            return None;
        }
        if !field("Types")?.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        field("URIs")?
            .split_whitespace()
            .find(|u| is_debian_archive(u))
            .map(|u| u.trim_end_matches('/').to_string())
    })
}

/// A tar header for `./dev/`: mmdebstrap leaves /dev out when asked not to
/// write device nodes (image layers may not carry them), but the runtime
/// needs the directory to mount on.
fn dev_dir_header() -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_path("./dev/").expect("short path");
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// The mmdebstrap command line (also recorded in the image's history).
pub fn mmdebstrap_args(suite: &str, mirror: &str, packages: &[String]) -> Vec<String> {
    let mut args = vec![
        "--variant=minbase".to_string(),
        "--format=tar".to_string(),
        "--skip=output/dev".to_string(),
        "--aptopt=Acquire::http::Timeout \"30\"".to_string(),
        "--aptopt=Acquire::Retries \"3\"".to_string(),
    ];
    if !packages.is_empty() {
        args.push(format!("--include={}", packages.join(",")));
    }
    args.extend([suite.to_string(), "-".to_string(), mirror.to_string()]);
    args
}

/// Builds the image; `progress` gets the tar bytes read so far. A failed run's
/// layer is taken back unless `holders` (or an image) came to use it.
pub fn bootstrap_debian(
    store: &Store,
    opts: &DebianOptions,
    progress: &mut dyn FnMut(u64),
    holders: &dyn Holders,
) -> Result<Image> {
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| format!("debian:{}", opts.suite));
    let reference = Reference::parse(&name)?;
    if opts.suite.is_empty()
        || !opts
            .suite
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(fail(format!(
            "invalid suite {:?}: use a name such as bookworm",
            opts.suite
        )));
    }
    if let Some(bad) = opts
        .packages
        .iter()
        .find(|p| p.is_empty() || p.starts_with('-') || p.contains(char::is_whitespace))
    {
        return Err(fail(format!("invalid package name {bad:?}")));
    }
    let mirror = opts
        .mirror
        .clone()
        .or_else(host_mirror)
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string());
    let args = mmdebstrap_args(&opts.suite, &mirror, &opts.packages);
    tracing::info!("running mmdebstrap {}", args.join(" "));
    let mut child = Command::new("mmdebstrap")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                fail("mmdebstrap is not installed: install it with `apt-get install mmdebstrap`")
            }
            _ => fail(format!("cannot run mmdebstrap: {e}")),
        })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stream = Cursor::new(dev_dir_header()).chain(stdout);
    let ingested = ingest_tar(store, None, stream, progress);
    // a failed ingest must not leave mmdebstrap blocked on a full pipe
    if ingested.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| fail(format!("waiting for mmdebstrap: {e}")))?;
    let layer = match (ingested, status.success()) {
        (Ok(l), true) => l.layer,
        (Ok(l), false) => {
            // a whole tar from a run that then failed: take the layer back
            let undo = Candidates::Only {
                blobs: [l.layer.blob].into(),
                layers: [l.layer.chain_id].into(),
            };
            let _ = gc::collect_ignoring_own_lease(store, &undo, holders);
            return Err(fail(format!(
                "mmdebstrap failed ({status}); its messages are above"
            )));
        }
        (Err(e), true) => return Err(e),
        (Err(e), false) => {
            return Err(fail(format!(
                "mmdebstrap failed ({status}); its messages are above ({e})"
            )))
        }
    };

    let os_release = read_os_release(&store.layer_dir(&layer.chain_id));
    let mut labels = std::collections::HashMap::new();
    for (key, label) in [
        ("PRETTY_NAME", "org.opencontainers.image.title"),
        ("VERSION_ID", "org.opencontainers.image.version"),
        ("ID", "io.twinbox.os-release.id"),
        ("VERSION_CODENAME", "io.twinbox.os-release.version-codename"),
    ] {
        if let Some(v) = os_release.iter().find(|(k, _)| k == key) {
            labels.insert(label.to_string(), v.1.clone());
        }
    }
    labels.insert("io.twinbox.debian.mirror".into(), mirror.clone());
    if !opts.packages.is_empty() {
        labels.insert("io.twinbox.debian.packages".into(), opts.packages.join(","));
    }
    let config = single_layer_config(
        &layer.diff_id.to_string(),
        Some("bash"),
        labels,
        &format!("mmdebstrap {}", args.join(" ")),
        Some("twinbox image bootstrap debian"),
    );
    write_image(store, &reference, &config, vec![layer])
}

/// KEY=value pairs of the image's os-release (quotes removed).
fn read_os_release(rootfs: &Path) -> Vec<(String, String)> {
    let text = ["usr/lib/os-release", "etc/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(rootfs.join(p)).ok())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(
            mirror_from_deb822(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let security_only = "Types: deb\nURIs: http://deb.debian.org/debian-security\n";
        assert_eq!(mirror_from_deb822(security_only), None);
        let list = "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://ftp.fr.debian.org/debian/ bookworm main\n";
        assert_eq!(
            mirror_from_one_line(list).as_deref(),
            Some("http://ftp.fr.debian.org/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb https://packages.cloud.google.com/apt cloud-sdk main"),
            None
        );
    }

    #[test]
    fn dev_header_is_one_valid_block() {
        let h = dev_dir_header();
        assert_eq!(h.len(), 512);
        let mut data = h.clone();
        data.resize(512 * 3, 0);
        let mut a = tar::Archive::new(&data[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().entry_type(), tar::EntryType::Directory);
    }

    #[test]
    fn command_line() {
        let a = mmdebstrap_args("bookworm", "http://m/debian", &["python3".into()]);
        assert!(a.contains(&"--include=python3".to_string()));
        assert_eq!(&a[a.len() - 3..], ["bookworm", "-", "http://m/debian"]);
    }
}
