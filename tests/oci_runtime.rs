//! The OCI runtime command line, and a differential check against runc on the
//! same bundle: same exit codes, same view of the namespaces (root only).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{lab, Lab, Run};

/// A bundle: busybox rootfs from the store plus runc's default config, made
/// non-interactive, running `args`.
fn bundle(lab: &Lab, name: &str, args: &[&str]) -> PathBuf {
    let dir = lab.root().join("bundles").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let layers: Vec<_> = std::fs::read_dir(lab.root().join("layers"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(layers.len(), 1, "busybox has one layer");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(layers[0].path())
        .arg(dir.join("rootfs"))
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("runc")
        .arg("spec")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(ok.success());
    let path = dir.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = args.iter().map(|s| serde_json::Value::from(*s)).collect();
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    dir
}

fn have_runc() -> bool {
    Command::new("runc")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A lab for a test that compares with runc; None (said why) without runc.
fn lab_with_runc() -> Option<Lab> {
    let lab = lab()?;
    if !have_runc() {
        eprintln!("skipping: runc not installed (apt-get install runc)");
        return None;
    }
    Some(lab)
}

fn runtime(lab: &Lab, args: &[&str]) -> Run {
    let state = lab.root().join("runtime-state");
    let state_arg = state.to_str().unwrap().to_string();
    // --root is runc's: the runtime's state directory
    let mut full = vec!["runtime", "--root", &state_arg];
    full.extend_from_slice(args);
    lab.tb(&full)
}

fn runc(bundle: &Path, id: &str) -> Run {
    Command::new("runc")
        .args(["--root", "/run/twinbox-test-runc", "run", "-b"])
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

#[test]
fn create_start_state_kill_delete() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "lifecycle", &["sleep", "30"]);
    let id = format!("tb-life-{}", std::process::id());
    // The created init keeps the stdio it was given until it exits, as with
    // runc: hand it files, not the pipes `output()` would wait on.
    let log = std::fs::File::create(lab.root().join("create.log")).unwrap();
    let status = lab
        .cmd(&[
            "runtime",
            "--root",
            lab.root().join("runtime-state").to_str().unwrap(),
            "create",
            "-b",
            b.to_str().unwrap(),
            &id,
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(lab.root().join("create.log")).unwrap()
    );
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    let pid = state["pid"].as_i64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmd).starts_with("sleep"),
        "start exec'd the process"
    );
    let refused = runtime(&lab, &["delete", &id]);
    assert_ne!(
        refused.code, 0,
        "a running container is not deleted without --force"
    );
    assert_eq!(runtime(&lab, &["kill", &id, "KILL"]).code, 0);
    wait_until("the killed container to stop", || {
        status_of(&lab, &id) == "stopped"
    });
    assert_eq!(runtime(&lab, &["delete", &id]).code, 0);
    assert_ne!(runtime(&lab, &["state", &id]).code, 0, "gone after delete");
}

#[test]
fn same_results_as_runc_on_the_same_bundle() {
    let Some(lab) = lab_with_runc() else { return };
    let probes: &[(&str, &[&str])] = &[
        ("exit-code", &["sh", "-c", "exit 7"]),
        ("pid", &["sh", "-c", "echo $$"]),
        // The shell expands the glob itself: no pipeline whose length races the count.
        ("procs", &["sh", "-c", "set -- /proc/[0-9]*; echo $#"]),
        ("net", &["ls", "/sys/class/net"]),
        ("hostname", &["hostname"]),
        ("uid", &["id", "-u"]),
        ("not-found", &["no-such-binary"]),
        (
            "caps",
            &["sh", "-c", "grep -E 'CapBnd|CapEff' /proc/self/status"],
        ),
        (
            "ro-proc-sys",
            &[
                "sh",
                "-c",
                "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null; echo $?",
            ],
        ),
    ];
    for (name, args) in probes {
        let b = bundle(&lab, name, args);
        let id = format!("tb-diff-{name}-{}", std::process::id());
        let ours = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
        let theirs = runc(&b, &format!("{id}-runc"));
        assert_eq!(
            ours.code, theirs.code,
            "{name}: exit codes differ\nours: {}\nrunc: {}",
            ours.stderr, theirs.stderr
        );
        if *name != "not-found" {
            assert_eq!(ours.stdout, theirs.stdout, "{name}: output differs");
        }
    }
}

#[test]
fn refuses_a_rootfs_whose_proc_is_a_symlink() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "proc-symlink", &["true"]);
    let proc_dir = b.join("rootfs/proc");
    let _ = std::fs::remove_dir_all(&proc_dir);
    std::os::unix::fs::symlink("/etc", &proc_dir).unwrap();
    let id = format!("tb-proc-symlink-{}", std::process::id());
    let out = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_ne!(out.code, 0, "a symlinked /proc must be refused");
    assert!(
        out.stderr.contains("symlink")
            && out.stderr.contains("must be mounted on ordinary directory"),
        "error names the symlink as runc does: {}",
        out.stderr
    );
    // the host's /etc never got a procfs on top of it through the link
    assert!(!b.join("rootfs/etc/self").exists());

    // a /sys that links to itself (contest's case): refused, not a hang
    let sys_dir = b.join("rootfs/sys");
    let _ = std::fs::remove_dir_all(&sys_dir);
    let _ = std::fs::remove_file(&proc_dir);
    std::fs::create_dir(&proc_dir).unwrap();
    std::os::unix::fs::symlink(&sys_dir, &sys_dir).unwrap();
    let out = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_ne!(out.code, 0, "a symlinked /sys must be refused");
    assert!(
        out.stderr
            .contains("sysfs on /sys: must be mounted on ordinary directory"),
        "{}",
        out.stderr
    );
    assert_eq!(status_of(&lab, &id), "gone", "nothing left behind");
}

#[test]
fn create_without_any_namespace_waits_for_start_in_the_hosts_namespaces() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "no-ns", &["sh", "-c", "touch /ran; sleep 30"]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"] = serde_json::json!([]);
        s["linux"]["maskedPaths"] = serde_json::json!([]);
        s["linux"]["readonlyPaths"] = serde_json::json!([]);
        s["root"]["readonly"] = false.into();
        s.as_object_mut().unwrap().remove("hostname");
    });
    let id = format!("tb-nons-{}", std::process::id());
    let out = create(&lab, &b, &id, &[]);
    let rootfs = b.join("rootfs");
    let unmount = || {
        // no mount namespace: the root's bind mount is in ours (as with runc)
        let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    };
    if out.code != 0 {
        unmount();
        panic!("{}", out.stderr);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    assert_eq!(state["status"], "created");
    // the init is alive, waiting, in every namespace of ours
    for ns in ["mnt", "net", "pid", "ipc", "uts", "cgroup"] {
        assert_eq!(
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok(),
            std::fs::read_link(format!("/proc/self/ns/{ns}")).ok(),
            "namespace {ns}"
        );
    }
    assert!(!rootfs.join("ran").exists(), "the process ran before start");
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    wait_until("the process to run", || rootfs.join("ran").exists());
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
    unmount();
    assert_eq!(status_of(&lab, &id), "gone");
}

/// Edits a bundle's config.json.
fn edit_spec(bundle: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// `runtime create` fails and its error names `needle`.
fn create_refused(lab: &Lab, bundle: &Path, id: &str, needle: &str) {
    let refused = create(lab, bundle, id, &[]);
    assert_ne!(refused.code, 0, "{id} was created");
    assert!(refused.stderr.contains(needle), "{}", refused.stderr);
}

/// `runtime create`, with the init's stdio on a file (it keeps it until it exits).
fn create(lab: &Lab, bundle: &Path, id: &str, extra: &[&str]) -> Run {
    let log = lab.root().join(format!("create-{id}.log"));
    let f = std::fs::File::create(&log).unwrap();
    let state = lab.root().join("runtime-state");
    let mut args = vec![
        "runtime",
        "--root",
        state.to_str().unwrap(),
        "create",
        "-b",
        bundle.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(id);
    let status = lab
        .cmd(&args)
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(&log).unwrap(),
    }
}

fn status_of(lab: &Lab, id: &str) -> String {
    let out = runtime(lab, &["state", id]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    v["status"].as_str().unwrap_or("gone").to_string()
}

/// Polls `done` until it holds; the 30 s bound only stops a hang (a busy
/// host can be slow, so it is far above what any step needs).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn create_waits_for_start_even_without_a_pid_namespace() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "no-pidns", &["sh", "-c", "touch /ran; sleep 30"]);
    edit_spec(&b, |s| {
        let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
        s["root"]["readonly"] = false.into();
    });
    let id = format!("tb-nopid-{}", std::process::id());
    let out = create(&lab, &b, &id, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(status_of(&lab, &id), "created");
    assert!(
        !b.join("rootfs/ran").exists(),
        "the process ran before start"
    );
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    wait_until("the process to run", || b.join("rootfs/ran").exists());
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
    assert_eq!(status_of(&lab, &id), "gone");
}

#[test]
fn kill_and_delete_fail_like_runc() {
    let Some(lab) = lab_with_runc() else { return };
    let unknown = runtime(&lab, &["delete", "tb-no-such-container"]);
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("level=error"), "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("does not exist"),
        "{}",
        unknown.stderr
    );
    assert_ne!(
        runtime(&lab, &["kill", "tb-no-such-container", "KILL"]).code,
        0
    );
    assert_ne!(runtime(&lab, &["kill", "", "KILL"]).code, 0);

    // --log with --log-format json: containerd's shim reads the error from there
    let log = lab.root().join("runtime.log");
    let state = lab.root().join("runtime-state");
    let out = lab.tb(&[
        "runtime",
        "--root",
        state.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "kill",
        "tb-no-such-container",
    ]);
    assert_eq!(out.code, 1);
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));

    // a created container is deleted without --force; a stopped one refuses kill
    let b = bundle(&lab, "semantics", &["sleep", "30"]);
    let id = format!("tb-sem-{}", std::process::id());
    assert_eq!(create(&lab, &b, &id, &[]).code, 0);
    let pid: i64 = {
        let v: serde_json::Value =
            serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
        v["pid"].as_i64().unwrap()
    };
    assert_eq!(runtime(&lab, &["delete", &id]).code, 0);
    wait_until("the created init to go", || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true)
    });
    let id2 = format!("{id}-2");
    assert_eq!(create(&lab, &b, &id2, &[]).code, 0);
    assert_eq!(runtime(&lab, &["start", &id2]).code, 0);
    assert_ne!(runtime(&lab, &["delete", &id2]).code, 0, "running");
    assert_eq!(runtime(&lab, &["kill", &id2, "KILL"]).code, 0);
    wait_until("stopped", || status_of(&lab, &id2) == "stopped");
    let again = runtime(&lab, &["kill", &id2, "KILL"]);
    assert_ne!(again.code, 0, "kill of a stopped container must fail");
    let all = runtime(&lab, &["kill", "--all", &id2, "KILL"]);
    assert_eq!(
        all.code, 0,
        "kill --all of a stopped container succeeds as runc's: {}",
        all.stderr
    );
    assert_eq!(runtime(&lab, &["delete", &id2]).code, 0);
}

#[test]
fn hooks_run_in_order_and_a_failing_prestart_fails_create() {
    let Some(lab) = lab_with_runc() else { return };
    let out = lab.root().join("hooks.log");
    let state_copy = lab.root().join("hook-state.json");
    let hook = |word: &str| {
        serde_json::json!({"path": "/bin/sh",
            "args": ["sh", "-c", format!("echo {word} >> {}", out.display())]})
    };
    let b = bundle(&lab, "hooks", &["true"]);
    edit_spec(&b, |s| {
        s["root"]["readonly"] = false.into();
        s["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push("HOOK_SEES=env".into());
        s["hooks"] = serde_json::json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime"), {"path": "/bin/sh",
                "args": ["sh", "-c", format!("cat > {}", state_copy.display())]}],
            "createContainer": [hook("createContainer")],
            // runs inside the container: its path is the container's, and
            // without an env of its own it has the process's (as with runc)
            "startContainer": [{"path": "/bin/sh",
                "args": ["sh", "-c", "echo in $HOOK_SEES > /start-hook"]}],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    let id = format!("tb-hooks-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let seen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_copy).unwrap()).unwrap();
    assert_eq!(seen["id"], id.as_str(), "hooks get the state on stdin");
    assert!(seen["pid"].as_i64().unwrap() > 0);
    let started = runtime(&lab, &["start", &id]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    wait_until("stopped", || status_of(&lab, &id) == "stopped");
    assert_eq!(runtime(&lab, &["delete", &id]).code, 0);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("rootfs/start-hook")).unwrap(),
        "in env\n"
    );

    let b = bundle(&lab, "prestart-fails", &["true"]);
    edit_spec(&b, |s| {
        s["hooks"] = serde_json::json!({"prestart": [
            {"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]});
    });
    let id = format!("tb-prefail-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_ne!(made.code, 0, "a failing prestart hook fails create");
    assert!(made.stderr.contains("prestart"), "{}", made.stderr);
    assert_eq!(status_of(&lab, &id), "gone", "nothing left behind");
}

#[test]
fn exec_with_a_process_file_env_and_pid_files() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "exec", &["sleep", "30"]);
    let id = format!("tb-exec-{}", std::process::id());
    let pid_file = lab.root().join("init.pid");
    let made = create(&lab, &b, &id, &["--pid-file", pid_file.to_str().unwrap()]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        state["pid"].to_string()
    );
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);

    let process = lab.root().join("process.json");
    std::fs::write(
        &process,
        serde_json::json!({"args": ["sh", "-c", "echo $FOO $(pwd); exit 3"],
            "env": ["FOO=bar", "PATH=/bin"], "cwd": "/etc", "user": {"uid": 0, "gid": 0}})
        .to_string(),
    )
    .unwrap();
    let out = runtime(&lab, &["exec", "--process", process.to_str().unwrap(), &id]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "bar /etc\n");

    let out = runtime(&lab, &["exec", "-e", "X=1", &id, "sh", "-c", "echo $X"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "1\n");

    let exec_pid = lab.root().join("exec.pid");
    let out = runtime(
        &lab,
        &[
            "exec",
            "-d",
            "--pid-file",
            exec_pid.to_str().unwrap(),
            &id,
            "sleep",
            "5",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pid: i32 = std::fs::read_to_string(&exec_pid).unwrap().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
}

/// The cgroup directories of `rel` that exist, in any v1 hierarchy or on v2.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path().join(rel))
        .filter(|p| p.is_dir())
        .collect();
    if root.join(rel).is_dir() {
        found.push(root.join(rel));
    }
    found
}

/// A bundle without `linux.cgroupsPath` (runc spec's default) still gets a
/// cgroup of its own, as runc gives one: pause, exec --ignore-paused into the
/// frozen container, resume, and delete removes the cgroup; the device rules
/// let the standard nodes through, as runc's do. Before, pause failed with
/// "has no cgroup" (contest's exec::ignore_paused_test).
#[test]
fn a_bundle_without_cgroups_path_gets_a_cgroup_to_pause() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "no-cgroups-path", &["sleep", "30"]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    assert!(
        spec["linux"]["cgroupsPath"].is_null(),
        "runc spec sets none"
    );
    let id = format!("tb-nocg-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let rel = format!("twinbox-runtime/{id}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroups.contains(&format!("/{rel}\n")), "{cgroups}");

    let paused = runtime(&lab, &["pause", &id]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    assert_eq!(status_of(&lab, &id), "paused");
    assert_ne!(
        runtime(&lab, &["exec", &id, "true"]).code,
        0,
        "exec into a paused container is refused without --ignore-paused"
    );
    // joins the frozen cgroup, so it runs only once the container resumes
    let state_root = lab.root().join("runtime-state");
    let mut exec = lab
        .cmd(&[
            "runtime",
            "--root",
            state_root.to_str().unwrap(),
            "exec",
            "--ignore-paused",
            &id,
            "echo",
            "ran",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let resumed = runtime(&lab, &["resume", &id]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    wait_until("exec --ignore-paused to finish", || {
        exec.try_wait().unwrap().is_some()
    });
    let out = exec.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    assert_eq!(status_of(&lab, &id), "running");
    // runc spec's "deny all" device rule is followed by runc's allow list
    let dev = runtime(
        &lab,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "echo x > /dev/null && head -c1 /dev/urandom",
        ],
    );
    assert_eq!(dev.code, 0, "{}", dev.stderr);

    assert!(!cgroup_dirs(&rel).is_empty());
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
    assert_eq!(
        cgroup_dirs(&rel),
        Vec::<PathBuf>::new(),
        "delete removes it"
    );
}

#[test]
fn rlimits_and_oom_score_adj_reach_the_process() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(
        &lab,
        "limits",
        &[
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj",
        ],
    );
    edit_spec(&b, |s| {
        s["process"]["rlimits"] =
            serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]);
        s["process"]["oomScoreAdj"] = 500.into();
    });
    let id = format!("tb-limits-{}", std::process::id());
    let ours = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    assert_eq!(ours.stdout, "100\n200\n500\n");
    let theirs = runc(&b, &format!("{id}-runc"));
    assert_eq!(ours.stdout, theirs.stdout, "same as runc");
}

#[test]
fn devices_recursive_mount_attributes_and_personality() {
    let Some(lab) = lab_with_runc() else { return };
    let script = "stat -c '%t,%T %a %u:%g' /dev/tb-null; \
        grep ' /hostdev/pts ' /proc/self/mounts | cut -d' ' -f4 | cut -d, -f1 | head -n1; uname -m";
    let b = bundle(&lab, "spec-fields", &["sh", "-c", script]);
    edit_spec(&b, |s| {
        s["linux"]["devices"] = serde_json::json!([{"path": "/dev/tb-null", "type": "c",
            "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 1000}]);
        // a recursive bind: only the recursive attribute reaches the submount /dev/pts
        s["mounts"].as_array_mut().unwrap().push(
            serde_json::json!({"destination": "/hostdev", "type": "bind",
                "source": "/dev", "options": ["rbind", "rro"]}),
        );
        s["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
    });
    let id = format!("tb-fields-{}", std::process::id());
    let ours = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    assert_eq!(ours.stdout, "1,3 640 1000:1000\nro\ni686\n");
    // runc 1.1 predates linux.personality: compare the rest only
    let theirs = runc(&b, &format!("{id}-runc"));
    let head = |s: &str| s.lines().take(2).collect::<Vec<_>>().join("\n");
    assert_eq!(head(&ours.stdout), head(&theirs.stdout), "same as runc");
}

/// `ratime` and `rnostrictatime` leave a mount relatime, as youki's contest
/// (mounts_recursive) expects. They failed create with EINVAL before: the
/// kernel takes the atime mode as one field, cleared whole or not at all.
/// runc 1.1.5 fails both the same way, so there is no runc comparison.
#[test]
fn clearing_an_atime_mode_recursively_leaves_relatime() {
    let Some(lab) = lab_with_runc() else { return };
    let script =
        "for d in a b; do grep \" /$d \" /proc/self/mounts | grep -o 'relatime\\|noatime' \
        || echo strict; done";
    let b = bundle(&lab, "atime", &["sh", "-c", script]);
    edit_spec(&b, |s| {
        let mounts = s["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({"destination": "/a", "type": "tmpfs",
            "source": "tmpfs", "options": ["noatime", "ratime"]}));
        mounts.push(serde_json::json!({"destination": "/b", "type": "tmpfs",
            "source": "tmpfs", "options": ["strictatime", "rnostrictatime"]}));
    });
    let id = format!("tb-atime-{}", std::process::id());
    let out = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "relatime\nrelatime\n");
}

/// A new time namespace with linux.timeOffsets: the init and a process exec'd
/// into the container both see the offsets, the host's clocks are untouched.
/// It was refused before ("time namespaces are not supported yet"); runc
/// 1.1.5 refuses it too, so there is no runc comparison.
#[test]
fn time_namespace_offsets_reach_the_init_and_exec() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "timens", &["sleep", "30"]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "time"}));
        s["linux"]["timeOffsets"] = serde_json::json!({
            "monotonic": {"secs": 7881, "nanosecs": 2718281},
            "boottime": {"secs": 1337, "nanosecs": 0}});
    });
    let id = format!("tb-timens-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap();
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/time")).unwrap();
    assert_ne!(ns(&pid.to_string()), ns("self"), "the init has its own");
    let offsets = std::fs::read_to_string(format!("/proc/{pid}/timens_offsets")).unwrap();
    let want = |text: &str| {
        let mut lines: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        want(&offsets),
        ["boottime 1337 0", "monotonic 7881 2718281"]
    );
    let seen = runtime(&lab, &["exec", &id, "cat", "/proc/self/timens_offsets"]);
    assert_eq!(seen.code, 0, "{}", seen.stderr);
    assert_eq!(want(&seen.stdout), want(&offsets), "exec joins it");
    let host = std::fs::read_to_string("/proc/self/timens_offsets").unwrap();
    assert!(want(&host).iter().all(|l| l.ends_with(" 0 0")), "{host}");
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);

    // offsets without the namespace are refused, naming what to add
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "time");
    });
    create_refused(&lab, &b, &format!("{id}-no-ns"), "time namespace");
}

/// `domainname` is set in the container's UTS namespace (it was ignored:
/// contest's domainname_test read "(none)"); the host's stays as it was.
/// runc 1.1.5 ignores the field too, so there is no runc comparison.
#[test]
fn domainname_is_the_containers_own() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "domainname", &["cat", "/proc/sys/kernel/domainname"]);
    edit_spec(&b, |s| s["domainname"] = "tb-domain.example".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let id = format!("tb-domain-{}", std::process::id());
    let out = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "tb-domain.example\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(),
        host
    );
}

/// A process exec'd into the container takes its linux.personality too
/// (contest's personality_for_linux32 execs `uname -m`; it said x86_64).
#[test]
fn exec_shares_the_containers_personality() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "personality-exec", &["sleep", "30"]);
    edit_spec(&b, |s| {
        s["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"})
    });
    let id = format!("tb-persona-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let out = runtime(&lab, &["exec", &id, "uname", "-m"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "i686\n");
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
}

/// process.ioPriority reaches the init (it was ignored), read from the host
/// with util-linux's ionice; an ociVersion that is no runtime-spec 1.x
/// version is refused (it was run). runc 1.1.5 does neither.
#[test]
fn io_priority_is_set_and_a_bad_oci_version_is_refused() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "ioprio", &["sleep", "30"]);
    edit_spec(&b, |s| {
        s["process"]["ioPriority"] =
            serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    });
    let id = format!("tb-ioprio-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let pid = state["pid"].to_string();
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    wait_until("the init to exec", || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
    });
    if let Ok(out) = Command::new("ionice").args(["-p", &pid]).output() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "idle\n");
    } else {
        eprintln!("ionice not installed (util-linux): the priority is not read back");
    }
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);

    edit_spec(&b, |s| s["ociVersion"] = "invalid".into());
    create_refused(&lab, &b, &format!("{id}-bad-version"), "ociVersion");
    assert_eq!(status_of(&lab, &format!("{id}-bad-version")), "gone");
}

/// linux.memoryPolicy is the init's NUMA policy (it was ignored), read from
/// the host in /proc/PID/numa_maps; a node past Linux's 1024 is refused.
/// runc 1.1.5 ignores the field.
#[test]
fn memory_policy_binds_the_init_and_bad_nodes_are_refused() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "mempolicy", &["sleep", "30"]);
    edit_spec(&b, |s| {
        s["linux"]["memoryPolicy"] = serde_json::json!({"mode": "MPOL_BIND", "nodes": "0"})
    });
    let id = format!("tb-mempol-{}", std::process::id());
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let pid = state["pid"].to_string();
    wait_until("the init to exec", || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
    });
    let maps = std::fs::read_to_string(format!("/proc/{pid}/numa_maps")).unwrap();
    assert!(maps.lines().any(|l| l.contains(" bind:0 ")), "{maps}");
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);

    edit_spec(&b, |s| {
        s["linux"]["memoryPolicy"]["nodes"] = "0-9876543210".into()
    });
    create_refused(&lab, &b, &format!("{id}-bad"), "memoryPolicy");
}

#[test]
fn bounding_set_left_out_with_inheritable_capabilities_fails_create() {
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "no-bounding", &["true"]);
    edit_spec(&b, |s| {
        let caps = &mut s["process"]["capabilities"];
        caps.as_object_mut().unwrap().remove("bounding");
        for set in ["effective", "permitted", "inheritable"] {
            caps[set] = serde_json::json!(["CAP_SYS_ADMIN"]);
        }
        caps["ambient"] = serde_json::json!([]);
    });
    let id = format!("tb-nobset-{}", std::process::id());
    let out = create(&lab, &b, &id, &[]);
    // no bounding set means an empty one: an inheritable capability outside
    // it is refused by the kernel, and the error says so
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("capabilities") && out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    assert_eq!(status_of(&lab, &id), "gone", "nothing left behind");
}

#[test]
fn seccomp_notify_hands_the_listener_to_the_agent() {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
    use std::os::fd::AsRawFd;
    let Some(lab) = lab_with_runc() else { return };
    let listener_path = lab.root().join("agent.sock");
    let profile = |listener: Option<&Path>| {
        let mut p = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "listenerMetadata": "hello agent",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}],
        });
        if let Some(l) = listener {
            p["listenerPath"] = l.to_str().unwrap().into();
        }
        p
    };

    // without an agent to answer, the profile is refused up front
    let b = bundle(&lab, "notify-no-listener", &["true"]);
    edit_spec(&b, |s| s["linux"]["seccomp"] = profile(None));
    let id = format!("tb-notify0-{}", std::process::id());
    let out = create(&lab, &b, &id, &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("listenerPath"), "{}", out.stderr);
    assert_eq!(status_of(&lab, &id), "gone");
    assert_eq!(
        cgroup_dirs(&format!("twinbox-runtime/{id}")),
        Vec::<PathBuf>::new(),
        "a refused create leaves no cgroup"
    );

    let agent = std::os::unix::net::UnixListener::bind(&listener_path).unwrap();
    agent.set_nonblocking(true).unwrap();
    let got = std::thread::spawn(move || {
        // never wait forever: a create that fails never connects
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let conn = loop {
            match agent.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "no connection");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        let mut buf = vec![0u8; 8192];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let fds: Vec<_> = msg
            .cmsgs()
            .unwrap()
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds,
                _ => vec![],
            })
            .collect();
        let len = msg.bytes;
        assert_eq!(fds.len(), 1, "one descriptor attached");
        let kind = std::fs::read_link(format!("/proc/self/fd/{}", fds[0])).unwrap();
        let _ = nix::unistd::close(fds[0]);
        (String::from_utf8_lossy(&buf[..len]).into_owned(), kind)
    });
    let b = bundle(&lab, "notify", &["sleep", "30"]);
    edit_spec(&b, |s| {
        s["linux"]["seccomp"] = profile(Some(&listener_path))
    });
    let id = format!("tb-notify-{}", std::process::id());
    let out = create(&lab, &b, &id, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (doc, kind) = got.join().unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(kind.to_str().unwrap(), "anon_inode:seccomp notify");
    assert_eq!(doc["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(doc["metadata"], "hello agent");
    assert_eq!(doc["pid"], state["pid"]);
    assert_eq!(doc["state"]["id"], id.as_str());
    assert_eq!(doc["state"]["status"], "creating");
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
}

/// `process.terminal` with `--console-socket`: the master arrives on the
/// socket (runc's protocol) and the slave is the container's own /dev/pts/0.
#[test]
fn console_socket_gets_a_terminal_from_the_containers_devpts() {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let Some(lab) = lab_with_runc() else { return };
    let b = bundle(&lab, "console", &["sh", "-c", "tty; ls /dev/pts"]);
    edit_spec(&b, |s| s["process"]["terminal"] = true.into());
    let sock_path = lab.root().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let id = format!("tb-console-{}", std::process::id());
    let made = create(
        &lab,
        &b,
        &id,
        &["--console-socket", sock_path.to_str().unwrap()],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let (conn, _) = listener.accept().unwrap();
    let mut data = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let fd = msg
        .cmsgs()
        .unwrap()
        .find_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("a descriptor on the console socket");
    // SAFETY: the kernel installed this descriptor for us.
    let mut master = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    // the slave's last close makes the master read EIO after the data
    while let Ok(n @ 1..) = master.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    let out = String::from_utf8_lossy(&out);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["/dev/pts/0", "0", "ptmx"],
        "{out:?}"
    );
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_range() {
    let Some(lab) = lab_with_runc() else { return };
    let script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; \
                  echo x > /dev/null && echo null-ok; stat -c %u /bin/busybox; \
                  touch /new 2>/dev/null || echo root-readonly";
    let b = bundle(&lab, "userns", &["sh", "-c", script]);
    let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        s["linux"]["uidMappings"] = map.clone();
        s["linux"]["gidMappings"] = map.clone();
        s["root"]["readonly"] = true.into();
    });
    let id = format!("tb-userns-{}", std::process::id());
    let ours = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    let words: Vec<&str> = ours.stdout.split_whitespace().collect();
    assert_eq!(
        words,
        [
            "0",
            "100000",
            "65536",
            "0",
            "100000",
            "65536",
            "0",
            "0",
            "null-ok",
            "65534",
            "root-readonly"
        ],
        "root inside is 100000 outside; the host's root owns nothing inside: {}",
        ours.stdout
    );
    let theirs = runc(&b, &format!("{id}-runc"));
    if theirs.code == 0 {
        assert_eq!(ours.stdout, theirs.stdout, "same as runc");
    }

    // a created container's init is uid 100000 on the host; exec joins its
    // user namespace
    let b = bundle(&lab, "userns-exec", &["sleep", "30"]);
    edit_spec(&b, |s| {
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        s["linux"]["uidMappings"] = map.clone();
        s["linux"]["gidMappings"] = map.clone();
    });
    let made = create(&lab, &b, &id, &[]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let state: serde_json::Value =
        serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", state["pid"])).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "100000", "100000", "100000", "100000"]
    );
    assert_eq!(runtime(&lab, &["start", &id]).code, 0);
    let out = runtime(
        &lab,
        &["exec", &id, "sh", "-c", "id -u; cat /proc/self/uid_map"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "100000", "65536"]
    );
    assert_eq!(runtime(&lab, &["delete", "--force", &id]).code, 0);

    // mappings without a user namespace: refused, nothing left behind
    edit_spec(&b, |s| {
        let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "user");
    });
    create_refused(&lab, &b, &id, "need a user namespace");
    assert!(!lab.root().join("runtime-state").join(&id).exists());
}
