//! A private dockerd (Debian's docker.io) for differential tests: the same
//! commands through Docker and through twinbox.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use super::{Lab, Run};

/// A private dockerd (Debian's docker.io) on its own socket, data and exec
/// roots, with no iptables and no bridge; stopped and removed on drop.
pub struct Dockerd {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Dockerd {
    pub fn start(dir: &Path) -> Option<Dockerd> {
        if !Path::new("/usr/sbin/dockerd").exists() || !Path::new("/usr/bin/docker").exists() {
            eprintln!("skipping the differential test: Debian's docker.io is not installed");
            return None;
        }
        fs::create_dir_all(dir).unwrap();
        let log = fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = std::process::Command::new("/usr/sbin/dockerd")
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("pid").display()))
            .arg(format!("-H=unix://{}", dir.join("sock").display()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Dockerd {
            dir: dir.to_path_buf(),
            child,
        };
        for _ in 0..300 {
            if d.docker(&["info"]).code == 0 {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "dockerd did not come up: {}",
            fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    /// A private dockerd under the lab's root with the lab's busybox loaded
    /// into it, so both sides run the same image; None (said why) as `start`.
    pub fn with_busybox(lab: &Lab) -> Option<Dockerd> {
        let d = Dockerd::start(&lab.root().join("dockerd"))?;
        let tar = lab.root().join("busybox.tar");
        let r = lab.tb(&["save", "-o", tar.to_str().unwrap(), "busybox"]);
        assert_eq!(r.code, 0, "save: {}", r.stderr);
        let r = d.docker(&["load", "-i", tar.to_str().unwrap()]);
        assert_eq!(r.code, 0, "docker load: {}", r.stderr);
        Some(d)
    }

    pub fn docker(&self, args: &[&str]) -> Run {
        std::process::Command::new("/usr/bin/docker")
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("sock").display()),
            )
            .env("DOCKER_BUILDKIT", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        super::process::stop(&mut self.child, std::time::Duration::from_secs(20));
        let _ = fs::remove_dir_all(&self.dir);
    }
}
