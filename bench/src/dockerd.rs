//! A private dockerd (Debian's docker.io) as a bench peer: its own socket, data
//! and exec roots, and no iptables (it would rewrite the host's FORWARD policy
//! under other programs). With `Bridge::Own` it gets a bridge device of its own
//! (a /24 the host does not route) and published ports go through docker-proxy,
//! Docker's userland proxy; with `Bridge::None` it has no bridge (`--bridge=none`:
//! builds and `--network none` runs only). Stopped, its bridge deleted and its
//! directory removed on drop. Its clients run with BuildKit on.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::{last_line, timed};

pub struct Dockerd {
    dir: PathBuf,
    /// The bridge device this bench made for it, if any.
    bridge: Option<String>,
    child: Child,
}

/// Whether the private dockerd gets a bridge network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bridge {
    /// A bridge device of its own: `run` on Docker's default network and `-p` work.
    Own,
    /// `--bridge=none`: only `--network none` (and builds with it).
    None,
}

const DOCKERD: &str = "/usr/sbin/dockerd";
const DOCKER: &str = "/usr/bin/docker";

/// The first 10.198-10.199.N.0/24 no host route overlaps.
fn free_subnet() -> Option<String> {
    let routes = Command::new("ip")
        .args(["-4", "route"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (198..200)
        .flat_map(|a| (0..=255).map(move |b| format!("10.{a}.{b}")))
        .find(|net| {
            !routes.lines().any(|l| {
                let dst = l.split_whitespace().next().unwrap_or("");
                dst.starts_with(&format!("{net}.")) || dst.starts_with("10.0.0.0/8")
            })
        })
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), last_line(&out.stderr)))
    }
}

impl Dockerd {
    /// Starts it under `dir`; an error says why Docker cannot be the peer here.
    pub fn start(dir: &Path, with: Bridge) -> Result<Dockerd, String> {
        if !Path::new(DOCKERD).exists() || !Path::new(DOCKER).exists() {
            return Err("Debian's docker.io is not installed".into());
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bridge = match with {
            Bridge::Own => Some(own_bridge()?),
            Bridge::None => None,
        };
        let spawned = fs::File::create(dir.join("dockerd.log"))
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|e| format!("{}: {e}", dir.join("dockerd.log").display()))
            .and_then(|(out, err)| {
                Command::new(DOCKERD)
                    .args(["--iptables=false", "--ip6tables=false"])
                    .arg(format!("--bridge={}", bridge.as_deref().unwrap_or("none")))
                    .arg(format!("--data-root={}", dir.join("data").display()))
                    .arg(format!("--exec-root={}", dir.join("exec").display()))
                    .arg(format!("--pidfile={}", dir.join("pid").display()))
                    .arg(format!("-H=unix://{}", dir.join("sock").display()))
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| format!("{DOCKERD}: {e}"))
            });
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let Some(b) = &bridge {
                    let _ = ip(&["link", "delete", b]);
                }
                return Err(e);
            }
        };
        let d = Dockerd {
            dir: dir.to_path_buf(),
            bridge,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if d.cmd(&["info"]).output().is_ok_and(|o| o.status.success()) {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
        Err(format!(
            "dockerd did not answer within 30 s: {}",
            last_line(log.as_bytes())
        ))
    }

    /// `docker ARGS` against this daemon (BuildKit on for `build`).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("sock").display()),
            )
            .env("DOCKER_BUILDKIT", "1")
            .stdin(Stdio::null());
        c
    }

    pub fn timed(&self, args: &[&str]) -> Result<Duration, String> {
        timed(&mut self.cmd(args), &format!("docker {}", args.join(" ")))
    }

    pub fn output(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(args)
            .output()
            .map_err(|e| format!("docker: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "docker {}: {}",
                args.join(" "),
                last_line(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to the dockerd this bench started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(b) = &self.bridge {
            let _ = ip(&["link", "delete", b]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A bridge device for a private dockerd, on a free /24, up.
fn own_bridge() -> Result<String, String> {
    let net = free_subnet().ok_or("no free 10.198-199.N.0/24 for docker's bridge")?;
    let bridge = format!("tbdk{}", std::process::id() % 100_000);
    ip(&["link", "add", &bridge, "type", "bridge"])?;
    let made = (|| {
        ip(&["addr", "add", &format!("{net}.1/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])
    })();
    match made {
        Ok(()) => Ok(bridge),
        Err(e) => {
            let _ = ip(&["link", "delete", &bridge]);
            Err(e)
        }
    }
}
