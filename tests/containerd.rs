//! containerd drives twinbox as its runc: Debian's containerd 1.6 on a private
//! socket, root and state directory, its runc shim (io.containerd.runc.v2)
//! calling `twinbox-runc` for every verb (create with --console-socket, start,
//! state, exec --process --detach --pid-file, ps --format json, pause, resume,
//! kill, delete) with `--root` pointing at a state directory of its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{lab, Lab, Run};

const IMAGE: &str = "docker.io/library/busybox:latest";

/// A private containerd, stopped (with its shims) and removed on drop.
struct Containerd {
    dir: PathBuf,
    child: Child,
}

impl Containerd {
    /// None (with the reason) when containerd is not installed; a failure to
    /// come up is a test failure, with its log.
    fn start(dir: &Path, extra_config: &str) -> Option<Containerd> {
        if !Path::new("/usr/bin/containerd").exists()
            || !Path::new("/usr/bin/ctr").exists()
            || !Path::new("/usr/bin/containerd-shim-runc-v2").exists()
        {
            eprintln!(
                "skipping: Debian's containerd is not installed (apt-get install containerd)"
            );
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        // only what the test needs: no CRI (it would want CNI), no snapshotters
        // this host lacks; every path private to this test
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
{extra_config}"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("/usr/bin/containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd {
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if c.ctr(&["version"]).code == 0 {
                return Some(c);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("containerd did not come up: {}", c.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/ctr");
        c.arg("--address")
            .arg(self.dir.join("c.sock"))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn ctr(&self, args: &[&str]) -> Run {
        run_with_timeout(self.ctr_cmd(args), Duration::from_secs(60))
    }

    /// `ctr` under a pseudo-terminal (`script`), for `--tty`: ctr wants its own
    /// stdin to be a terminal.
    fn ctr_tty(&self, args: &[&str]) -> Run {
        let mut line = format!(
            "/usr/bin/ctr --address {}",
            self.dir.join("c.sock").display()
        );
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        let mut c = Command::new("script");
        c.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
        run_with_timeout(c, Duration::from_secs(60))
    }

    /// The runc shims this containerd started (they name its socket).
    fn shims(&self) -> Vec<i32> {
        let sock = self.dir.join("c.sock").display().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            if args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && args.contains(&sock.as_bytes())
            {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // tasks a failed test left, then the daemon, then its shims
        let tasks = self.ctr(&["task", "ls", "-q"]).stdout;
        for id in tasks.lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.ctr(&["task", "delete", "-f", id]);
            let _ = self.ctr(&["container", "rm", id]);
        }
        common::process::stop(&mut self.child, Duration::from_secs(10));
        for pid in self.shims() {
            // SAFETY: SIGKILL to a shim of the containerd this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // snapshot and rootfs mounts under the private root, deepest first
        let prefix = self.dir.display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_with_timeout(mut cmd: Command, limit: Duration) -> Run {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap().into(),
        Err(_) => {
            // SAFETY: SIGKILL to the command this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// The busybox image from the lab's store, saved and imported into containerd;
/// the twinbox binary linked as `twinbox-runc` (it is runc by that name).
fn setup(lab: &Lab, ctd: &Containerd) -> PathBuf {
    let archive = lab.root().join("busybox.tar");
    let r = lab.tb(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    assert_eq!(r.code, 0, "save: {}", r.stderr);
    let r = ctd.ctr(&["image", "import", archive.to_str().unwrap()]);
    assert_eq!(r.code, 0, "ctr image import: {}{}", r.stdout, r.stderr);
    runc_link(lab)
}

fn runc_link(lab: &Lab) -> PathBuf {
    let link = lab.root().join("twinbox-runc");
    if !link.exists() {
        std::fs::hard_link(common::bin(), &link)
            .or_else(|_| std::fs::copy(common::bin(), &link).map(|_| ()))
            .unwrap();
    }
    link
}

fn task_status(ctd: &Containerd, id: &str) -> String {
    ctd.ctr(&["task", "ls"])
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("")
        .to_string()
}

fn wait_status(ctd: &Containerd, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while task_status(ctd, id) != want {
        assert!(
            Instant::now() < deadline,
            "task {id} never became {want}: {}",
            ctd.ctr(&["task", "ls"]).stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state twinbox keeps under the shim's --root (proof that twinbox, not
/// runc, ran the container), as `twinbox-runc state` reports it.
fn twinbox_state(runc: &Path, state_dir: &Path, id: &str) -> serde_json::Value {
    let path = state_dir.join(id).join("state.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}: the runtime state is not there", path.display()));
    assert!(
        text.contains("twinboxStartTicks"),
        "state written by twinbox: {text}"
    );
    let out = Command::new(runc)
        .arg("--root")
        .arg(state_dir)
        .args(["state", id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ctr_runs_execs_kills_and_deletes_with_twinbox_as_runc() {
    let Some(lab) = lab() else { return };
    let Some(ctd) = Containerd::start(&lab.root().join("ctd"), "") else {
        return;
    };
    let runc = setup(&lab, &ctd);
    let runc_root = lab.root().join("runc-state");
    // the shim passes --root <runc-root>/<namespace>
    let state_dir = runc_root.join("default");
    let rt = [
        "--runc-binary",
        runc.to_str().unwrap(),
        "--runc-root",
        runc_root.to_str().unwrap(),
    ];
    let tag = std::process::id();

    // run --rm: output, exit status, and nothing left behind
    let id = format!("tb-ctd-rm-{tag}");
    let mut args = vec!["run"];
    args.extend_from_slice(&rt);
    args.extend_from_slice(&["--rm", IMAGE, &id, "sh", "-c", "echo hello; exit 3"]);
    let r = ctd.ctr(&args);
    assert_eq!(r.stdout.trim(), "hello", "{}", r.stderr);
    assert_eq!(
        r.code, 3,
        "ctr run gives the task's exit status: {}",
        r.stderr
    );
    assert!(
        ctd.ctr(&["container", "ls", "-q"]).stdout.trim().is_empty(),
        "--rm removed the container"
    );
    assert!(
        state_dir.is_dir() && !state_dir.join(&id).exists(),
        "twinbox kept its state under the shim's --root and deleted it"
    );

    // a long-running task
    let id = format!("tb-ctd-task-{tag}");
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(&rt);
    args.extend_from_slice(&[IMAGE, &id, "sleep", "300"]);
    let r = ctd.ctr(&args);
    assert_eq!(r.code, 0, "ctr run -d: {}{}", r.stderr, ctd.log());
    wait_status(&ctd, &id, "RUNNING");
    let state = twinbox_state(&runc, &state_dir, &id);
    assert_eq!(state["status"], "running");
    let init = state["pid"].as_i64().unwrap();
    let cgroup = std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(
        cgroup.contains(&format!("/default/{id}")),
        "the init is in containerd's cgroup path default/{id}: {cgroup}"
    );

    // exec without a terminal: exit status and output through the shim's fifos
    let r = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo in; ps -o pid,args; exit 5",
    ]);
    assert_eq!(r.code, 5, "exec exit status: {}", r.stderr);
    assert!(r.stdout.starts_with("in\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains("sleep 300"),
        "exec sees the task's processes (same PID namespace): {}",
        r.stdout
    );

    // exec with a terminal: the pty comes from the container's own devpts
    let r = ctd.ctr_tty(&[
        "task",
        "exec",
        "--tty",
        "--exec-id",
        "e2",
        &id,
        "sh",
        "-c",
        "tty; exit 6",
    ]);
    assert_eq!(
        r.code, 6,
        "exec --tty exit status: {}{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stdout.contains("/dev/pts/"),
        "tty names the container's terminal: {:?}",
        r.stdout
    );

    // ps, metrics from the task's cgroup
    let r = ctd.ctr(&["task", "ps", &id]);
    assert_eq!(r.code, 0, "task ps: {}", r.stderr);
    assert!(r.stdout.contains(&init.to_string()), "{}", r.stdout);
    let r = ctd.ctr(&["task", "metrics", &id]);
    assert_eq!(r.code, 0, "task metrics: {}", r.stderr);
    let metric = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    let pids = metric("pids.current").or_else(|| metric("pids.current:"));
    assert_eq!(pids.as_deref(), Some("1"), "one process: {}", r.stdout);
    let mem: u64 = metric("memory.usage_in_bytes")
        .or_else(|| metric("memory.usage"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("memory usage in {}", r.stdout));
    assert!(mem > 0, "{}", r.stdout);

    // the runtime's own update and events on containerd's task
    let runtime = |args: &[&str], stdin: &str| -> Run {
        let mut cmd = Command::new(&runc);
        cmd.arg("--root").arg(&state_dir).args(args);
        common::process::output_with_input(&mut cmd, stdin.as_bytes()).into()
    };
    let r = runtime(
        &["update", "--resources", "-", &id],
        r#"{"memory": {"limit": 67108864}, "pids": {"limit": 42}}"#,
    );
    assert_eq!(r.code, 0, "update: {}", r.stderr);
    let cg = |file: &str| {
        ["memory", "pids", ""]
            .iter()
            .map(|c| format!("/sys/fs/cgroup/{c}/default/{id}/{file}"))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let limit = cg("memory.limit_in_bytes");
    let limit = if limit.is_empty() {
        cg("memory.max")
    } else {
        limit
    };
    assert_eq!(limit, "67108864", "update wrote the memory limit");
    assert_eq!(cg("pids.max"), "42", "update wrote the pids limit");
    let r = runtime(&["events", "--stats", &id], "");
    assert_eq!(r.code, 0, "events --stats: {}", r.stderr);
    let ev: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    assert_eq!(ev["data"]["pids"]["current"], 1);
    assert_eq!(ev["data"]["pids"]["limit"], 42);
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 67108864u64);
    let r = runtime(&["update", "--resources", "-", &id], "{not json");
    assert_ne!(r.code, 0, "a bad resources document is refused");
    assert!(r.stderr.contains("level=error"), "{}", r.stderr);

    // pause and resume through the freezer
    let r = ctd.ctr(&["task", "pause", &id]);
    assert_eq!(r.code, 0, "pause: {}", r.stderr);
    wait_status(&ctd, &id, "PAUSED");
    assert_eq!(twinbox_state(&runc, &state_dir, &id)["status"], "paused");
    let r = ctd.ctr(&["task", "resume", &id]);
    assert_eq!(r.code, 0, "resume: {}", r.stderr);
    wait_status(&ctd, &id, "RUNNING");

    // kill and delete
    let r = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
    assert_eq!(r.code, 0, "kill: {}", r.stderr);
    wait_status(&ctd, &id, "STOPPED");
    let r = ctd.ctr(&["task", "delete", &id]);
    assert_eq!(r.code, 0, "task delete: {}", r.stderr);
    assert!(
        !state_dir.join(&id).exists(),
        "delete removed the runtime state"
    );
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/pids/default/{id}")).exists()
            && !Path::new(&format!("/sys/fs/cgroup/default/{id}")).exists(),
        "delete removed the cgroup"
    );
    let r = ctd.ctr(&["container", "rm", &id]);
    assert_eq!(r.code, 0, "container rm: {}", r.stderr);
    assert!(
        ctd.shims().is_empty(),
        "every shim exited with its task: {:?}",
        ctd.shims()
    );
}

#[test]
fn ctr_run_with_a_terminal() {
    let Some(lab) = lab() else { return };
    let Some(ctd) = Containerd::start(&lab.root().join("ctd"), "") else {
        return;
    };
    let runc = setup(&lab, &ctd);
    let runc_root = lab.root().join("runc-state");
    let id = format!("tb-ctd-tty-{}", std::process::id());
    // create --console-socket: the init's pty from the container's devpts
    let r = ctd.ctr_tty(&[
        "run",
        "--runc-binary",
        runc.to_str().unwrap(),
        "--runc-root",
        runc_root.to_str().unwrap(),
        "--rm",
        "-t",
        IMAGE,
        &id,
        "sh",
        "-c",
        "tty; exit 4",
    ]);
    assert_eq!(r.code, 4, "ctr run -t: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("/dev/pts/0"), "{:?}", r.stdout);
}
