//! Shared helpers for the integration tests: a private store per test with the
//! busybox image, and a way to run the real binary against it.

#![allow(dead_code)]

pub mod dockerd;
pub mod net;
pub mod process;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Lab {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_twinbox")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns None (and says why) when the test cannot run here.
pub fn lab() -> Option<Lab> {
    if !is_root() {
        eprintln!("skipping: integration tests need root");
        return None;
    }
    let dir = tempfile::Builder::new()
        .prefix("twinbox-test")
        .tempdir_in("/var/tmp")
        .unwrap();
    let lab = Lab { dir };
    let r = lab.tb(&["image", "bootstrap", "busybox"]);
    assert_eq!(r.code, 0, "bootstrap failed: {}", r.stderr);
    Some(lab)
}

impl Lab {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.env("TWINBOX_ROOT", self.root())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn tb(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("run twinbox").into()
    }

    /// `twinbox ARGS` with `input` on its standard input.
    pub fn piped(&self, args: &[&str], input: &[u8]) -> Run {
        process::output_with_input(&mut self.cmd(args), input).into()
    }

    /// `twinbox run --rm busybox sh -c SCRIPT`
    pub fn sh(&self, script: &str) -> Run {
        self.tb(&["run", "--rm", "busybox", "sh", "-c", script])
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let r = self.tb(&["inspect", name]);
        assert_eq!(r.code, 0, "inspect {name}: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v[0].clone()
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.root().join("containers")
    }

    pub fn container_count(&self) -> usize {
        std::fs::read_dir(self.containers_dir())
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // stop anything a failed test left running, so its cgroup can go
        if let Ok(out) = self.cmd(&["ps", "-a", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
    }
}

pub fn host(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Writes a tar archive at `path` holding one root-owned file `name` with
/// `data` and `mode` (a rootfs for `import`, or a layer).
pub fn tar_with_file(path: &Path, name: &str, data: &[u8], mode: u32) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.finish().unwrap();
}

/// The newest kernel in /boot (`/boot/vmlinuz-*`), as the VM tests boot it.
pub fn newest_kernel() -> Option<String> {
    let mut kernels: Vec<String> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains("/vmlinuz-"))
        .collect();
    kernels.sort();
    kernels.pop()
}
