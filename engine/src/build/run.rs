//! RUN: the command runs in a real container made by the engine's runtime
//! (namespaces, overlayfs over the stage's layers, seccomp, default caps), its
//! output streamed as it comes; what it changed in the overlay's upper dir,
//! deletions included, becomes the step's layer.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::image::Config as ImageConfig;

use crate::container::options::RunOptions;
use crate::container::spec::{self, SpecInput};
use crate::container::user;
use crate::layer::merged::MergedView;
use crate::network::NetworkMode;
use crate::runtime::{self, Launch, RootfsSource, Stdio};
use crate::store::unpack::is_opaque;
use crate::store::Store;
use crate::util::path::beneath;

/// How many output lines a failed RUN shows.
pub const TAIL_LINES: usize = 10;

/// What one RUN needs.
pub struct RunRequest<'a> {
    /// The stage's layers, topmost first.
    pub lowers: Vec<PathBuf>,
    pub argv: Vec<String>,
    /// The stage's config: Env and WorkingDir come from it.
    pub config: &'a ImageConfig,
    /// Build args in scope that ENV does not already set.
    pub build_args: Vec<String>,
    pub user: String,
    pub workdir: String,
    pub network: NetworkMode,
    /// Extra bind mounts (RUN --mount): host source, container target, read-only.
    pub binds: Vec<(PathBuf, String, bool)>,
    /// tmpfs mounts (RUN --mount=type=tmpfs).
    pub tmpfs: Vec<TmpfsMount>,
    /// `NAME=value` of secrets asked with `env=`: in this step's process
    /// environment only, never in the config or the history.
    pub secret_env: Vec<String>,
}

/// A tmpfs for one RUN, with its size limit when the mount gave one.
#[derive(Debug, Clone)]
pub struct TmpfsMount {
    pub target: String,
    pub size: Option<u64>,
    pub read_only: bool,
}

/// A finished RUN. Its temp dir goes away when this is dropped.
pub struct RunOutcome {
    pub exit_code: i32,
    pub tail: Vec<String>,
    dir: PathBuf,
}

impl RunOutcome {
    /// The overlay upper dir: what the command changed.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
}

impl Drop for RunOutcome {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Container(#[from] crate::container::ContainerError),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
}

fn io(what: &str, e: std::io::Error) -> RunError {
    RunError::Setup(format!("{what}: {e}"))
}

/// Runs the command; `on_line` gets each line of output as it comes.
pub fn run(
    store: &Store,
    req: &RunRequest,
    on_line: &mut dyn FnMut(&str),
) -> Result<RunOutcome, RunError> {
    let dir = store
        .temp_dir("build-run")
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let mut outcome = RunOutcome {
        exit_code: -1,
        tail: Vec::new(),
        dir: dir.clone(),
    };
    let (code, tail) = execute(store.root(), &dir, req, on_line)?;
    outcome.exit_code = code;
    outcome.tail = tail;
    Ok(outcome)
}

fn execute(
    store_root: &Path,
    dir: &Path,
    req: &RunRequest,
    on_line: &mut dyn FnMut(&str),
) -> Result<(i32, Vec<String>), RunError> {
    let (upper, work, rootfs, empty) = (
        dir.join("upper"),
        dir.join("work"),
        dir.join("rootfs"),
        dir.join("empty"),
    );
    for d in [&upper, &work, &rootfs, &empty] {
        fs::create_dir_all(d).map_err(|e| io("build temp dir", e))?;
    }
    let hostname = "buildkitsandbox";
    let resolv = match req.network {
        NetworkMode::Host => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        NetworkMode::None => String::new(),
        _ => crate::network::resolv_conf(),
    };
    for (name, text) in [
        ("hostname", format!("{hostname}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ),
        ("resolv.conf", resolv),
    ] {
        fs::write(dir.join(name), text).map_err(|e| io(name, e))?;
    }
    let mut lowers = req.lowers.clone();
    if lowers.is_empty() {
        lowers.push(empty.clone()); // FROM scratch: overlayfs still wants a lower dir
    }
    let resolved = user::resolve(&req.user, &lowers)?;
    let opts = RunOptions {
        // build args first: a secret's variable wins over an arg of its name
        env: req
            .build_args
            .iter()
            .chain(&req.secret_env)
            .cloned()
            .collect(),
        workdir: Some(req.workdir.clone()),
        network: req.network.clone(),
        volumes: req
            .binds
            .iter()
            .map(|(src, dst, ro)| crate::container::options::Volume {
                source: src.clone(),
                destination: PathBuf::from(dst),
                read_only: *ro,
                name: None,
            })
            .collect(),
        ..Default::default()
    };
    // the builder's pid in the name tells a live build's cgroup from a leftover
    let id = format!(
        "build-{}-{}",
        std::process::id(),
        crate::util::id::random_hex(6)
    );
    let cgroup = PathBuf::from("twinbox").join(&id);
    if matches!(opts.network, NetworkMode::Container(_)) {
        return Err(crate::container::ContainerError::BadOption(format!(
            "RUN --network={} is not supported: use bridge, a network name, host or none",
            opts.network
        ))
        .into());
    }
    // a CNI network (the default bridge, as in Docker's builds): the step's own
    // namespace joins it for the step's life and leaves it however the step ends
    let netns = match opts.network.cni_network() {
        Some(name) => {
            let req = crate::network::Request {
                network: name.to_string(),
                ..Default::default()
            };
            crate::network::attach(store_root, dir, &id, &[req])
                .map_err(|e| RunError::Setup(format!("RUN network {name}: {e}")))?;
            Some(crate::network::netns_path(dir))
        }
        None => None,
    };
    let result = (|| {
        let mut spec = spec::build(&SpecInput {
            id: &id,
            args: req.argv.clone(),
            hostname,
            image: Some(req.config),
            opts: &opts,
            user: &resolved,
            rootfs: &rootfs,
            container_dir: dir,
            cgroup_path: &cgroup,
            netns: netns.as_deref(),
        })?;
        if !req.tmpfs.is_empty() {
            let mut mounts = spec.mounts().clone().unwrap_or_default();
            for t in &req.tmpfs {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = t.size {
                    options.push(format!("size={size}"));
                }
                if t.read_only {
                    options.push("ro".to_string());
                }
                mounts.push(
                    oci_spec::runtime::MountBuilder::default()
                        .destination(&t.target)
                        .typ("tmpfs")
                        .source("tmpfs")
                        .options(options)
                        .build()
                        .map_err(|e| RunError::Setup(e.to_string()))?,
                );
            }
            spec.set_mounts(Some(mounts));
        }
        let mount_points: Vec<String> = spec
            .mounts()
            .as_ref()
            .map(|m| {
                m.iter()
                    .map(|m| m.destination().display().to_string())
                    .collect()
            })
            .unwrap_or_default();

        let (out_r, out_w) = pipe()?;
        let devnull = File::open("/dev/null").map_err(|e| io("/dev/null", e))?;
        let launch = Launch::new(
            spec,
            Stdio {
                stdin: devnull.as_raw_fd(),
                stdout: out_w.as_raw_fd(),
                stderr: out_w.as_raw_fd(),
            },
        )
        .rootfs(RootfsSource::Overlay {
            lower: lowers.clone(),
            upper: upper.clone(),
            work,
        })
        .die_with_parent(true);
        let spawned = runtime::spawn(&launch)?;
        crate::fault::point("build.step-running");
        drop(out_w);
        drop(devnull);
        let tail = relay(out_r, on_line);
        let code = runtime::wait_exit(spawned.pid);
        if let Some(cg) = &spawned.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
        if code == 0 {
            drop_mount_stubs(&upper, &MergedView::new(req.lowers.clone()), &mount_points);
        }
        Ok((code, tail))
    })();
    if netns.is_some() {
        let _ = crate::network::detach(dir);
    }
    result
}

fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RunError::Setup(format!("pipe: {e}")))
}

/// Passes output on line by line; keeps the last lines for an error message.
fn relay(out: OwnedFd, on_line: &mut dyn FnMut(&str)) -> Vec<String> {
    let mut f = File::from(out);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut emit = |bytes: &[u8], tail: &mut VecDeque<String>| {
        let line = String::from_utf8_lossy(bytes)
            .trim_end_matches('\r')
            .to_string();
        on_line(&line);
        tail.push_back(line);
        if tail.len() > TAIL_LINES {
            tail.pop_front();
        }
    };
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    emit(&line[..line.len() - 1], &mut tail);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if !pending.is_empty() {
        emit(&pending, &mut tail);
    }
    tail.into()
}

/// The runtime creates empty files and directories to mount on (/etc/hosts,
/// /proc, ... when the image lacks them): they are not the command's work, so
/// they leave the upper dir, and so do directories only copied up to hold them.
fn drop_mount_stubs(upper: &Path, image: &MergedView, mount_points: &[String]) {
    let mut parents: HashSet<PathBuf> = HashSet::new();
    for m in mount_points {
        let rel = PathBuf::from(m.trim_start_matches('/'));
        // the RUN may have left links in the upper dir (etc -> /host/dir): a
        // path through one is not this layer's stub, and is not touched
        let Some(p) = beneath(upper, &rel) else {
            continue;
        };
        let Ok(md) = p.symlink_metadata() else {
            continue;
        };
        if image.lookup(&rel).is_none() {
            let empty = if md.is_dir() {
                fs::read_dir(&p)
                    .map(|mut r| r.next().is_none())
                    .unwrap_or(false)
            } else {
                md.len() == 0
            };
            if empty {
                let _ = if md.is_dir() {
                    fs::remove_dir(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        let mut parent = rel.parent();
        while let Some(pp) = parent.filter(|p| !p.as_os_str().is_empty()) {
            parents.insert(pp.to_path_buf());
            parent = pp.parent();
        }
    }
    // deepest first, so a parent sees its children's removal
    let mut parents: Vec<PathBuf> = parents.into_iter().collect();
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in parents {
        let Some(p) = beneath(upper, &rel) else {
            continue;
        };
        let Ok(md) = p.symlink_metadata() else {
            continue;
        };
        if !md.is_dir() {
            continue;
        }
        let empty = fs::read_dir(&p)
            .map(|mut r| r.next().is_none())
            .unwrap_or(false);
        let Some(lower) = image.metadata(&rel) else {
            // made only to reach a mount point (/run/secrets for a secret)
            if md.is_dir() && empty {
                let _ = fs::remove_dir(&p);
            }
            continue;
        };
        if md.is_dir()
            && lower.is_dir()
            && empty
            && !is_opaque(&p)
            && md.mode() == lower.mode()
            && md.uid() == lower.uid()
            && md.gid() == lower.gid()
        {
            let _ = fs::remove_dir(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RUN that left `etc -> /host/dir` in its upper dir: dropping the
    /// runtime's empty stubs (/etc/hosts...) must not remove the host's empty
    /// files and directories of the same names.
    #[test]
    fn mount_stubs_are_never_dropped_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("pts")).unwrap();
        fs::write(outside.join("hosts"), b"").unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("proc")).unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, upper.join("dev")).unwrap();
        let points = ["/proc", "/etc/hosts", "/dev/pts"].map(String::from);
        drop_mount_stubs(&upper, &MergedView::new(Vec::new()), &points);
        assert!(outside.join("hosts").exists(), "the host's empty file went");
        assert!(
            outside.join("pts").is_dir(),
            "the host's empty directory went"
        );
        // the layer's own stub does go
        assert!(!upper.join("proc").exists());
    }
}
