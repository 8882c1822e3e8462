//! A private containerd (Debian's containerd 1.6) as a bench harness: its own
//! socket, root and state under a scratch directory, no CRI plugin (it would
//! want CNI), and `ctr run --runc-binary` choosing the runtime per run, so
//! twinbox and runc are measured under the same daemon and shim
//! (io.containerd.runc.v2). Stopped, its shims killed, its mounts detached and
//! its directory removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stats::{last_line, timed};

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const SHIM: &str = "/usr/bin/containerd-shim-runc-v2";

pub struct Containerd {
    dir: PathBuf,
    child: Child,
}

impl Containerd {
    /// `Ok(None)` with the reason when containerd is not installed; an error
    /// when it is but does not come up.
    pub fn start(dir: &Path) -> Result<Result<Containerd, String>, String> {
        if [CONTAINERD, CTR, SHIM]
            .iter()
            .any(|p| !Path::new(p).exists())
        {
            return Ok(Err(
                "containerd is not installed (apt-get install containerd)".into(),
            ));
        }
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let d = dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        );
        let conf = dir.join("config.toml");
        fs::write(&conf, config).map_err(|e| format!("{}: {e}", conf.display()))?;
        let log = fs::File::create(dir.join("containerd.log"))
            .map_err(|e| format!("containerd.log: {e}"))?;
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{CONTAINERD}: {e}"))?;
        let c = Containerd {
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if c.ctr(&["version"]).is_ok() {
                return Ok(Ok(c));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
        Err(format!(
            "containerd did not come up within 30 s: {}",
            last_line(log.as_bytes())
        ))
    }

    fn ctr_cmd(&self) -> Command {
        let mut c = Command::new(CTR);
        c.arg("--address")
            .arg(self.dir.join("c.sock"))
            .stdin(Stdio::null());
        c
    }

    /// Runs `ctr ARGS` to success, with a time limit.
    pub fn ctr(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let mut child = self
            .ctr_cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{CTR}: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("ctr {} did not finish within 60 s", args.join(" ")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "ctr {} failed: {}",
                args.join(" "),
                last_line(&out.stderr)
            ));
        }
        Ok(out.stdout)
    }

    /// `ctr image import ARCHIVE`.
    pub fn import(&self, archive: &Path) -> Result<(), String> {
        self.ctr(&["image", "import", &archive.display().to_string()])
            .map(drop)
    }

    /// One timed `ctr run --rm --runc-binary RUNTIME --runc-root ROOT IMAGE ID ARGS`.
    pub fn time_run(
        &self,
        runtime: &Path,
        runtime_root: &Path,
        image: &str,
        id: &str,
        args: &[&str],
    ) -> Result<Duration, String> {
        let mut c = self.ctr_cmd();
        c.arg("run")
            .arg("--runc-binary")
            .arg(runtime)
            .arg("--runc-root")
            .arg(runtime_root)
            .args(["--rm", image, id])
            .args(args);
        timed(
            &mut c,
            &format!("ctr run --rm --runc-binary {} {image}", runtime.display()),
        )
    }

    /// The runc shims this containerd started (they name its socket).
    fn shims(&self) -> Vec<i32> {
        let sock = self.dir.join("c.sock").display().to_string();
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
                let cmd = fs::read(e.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
                (args.first()?.ends_with(b"containerd-shim-runc-v2")
                    && args.contains(&sock.as_bytes()))
                .then_some(pid)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Ok(out) = self.ctr(&["task", "ls", "-q"]) {
            for id in String::from_utf8_lossy(&out).lines() {
                let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
                let _ = self.ctr(&["task", "delete", "-f", id]);
            }
        }
        if let Ok(out) = self.ctr(&["container", "ls", "-q"]) {
            for id in String::from_utf8_lossy(&out).lines() {
                let _ = self.ctr(&["container", "rm", id]);
            }
        }
        // SAFETY: SIGTERM to the containerd this bench started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.shims() {
            // SAFETY: SIGKILL to a shim of the containerd this bench started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // snapshot and rootfs mounts under the private root, deepest first
        let prefix = self.dir.display().to_string();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m) {
                // SAFETY: umount2 with a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
