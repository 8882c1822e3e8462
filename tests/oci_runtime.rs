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

fn runtime(lab: &Lab, args: &[&str]) -> Run {
    let state = lab.root().join("runtime-state");
    let mut full = vec!["runtime"];
    let state_arg = state.to_str().unwrap().to_string();
    // --state-root goes after the subcommand
    full.push(args[0]);
    full.push("--state-root");
    full.push(&state_arg);
    full.extend_from_slice(&args[1..]);
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
    let Some(lab) = lab() else { return };
    if !have_runc() {
        eprintln!("skipping: runc not installed (apt-get install runc)");
        return;
    }
    let b = bundle(&lab, "lifecycle", &["sleep", "30"]);
    let id = format!("tb-life-{}", std::process::id());
    // The created init keeps the stdio it was given until it exits, as with
    // runc: hand it files, not the pipes `output()` would wait on.
    let log = std::fs::File::create(lab.root().join("create.log")).unwrap();
    let status = lab
        .cmd(&[
            "runtime",
            "create",
            "--state-root",
            lab.root().join("runtime-state").to_str().unwrap(),
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
    for _ in 0..100 {
        let s: serde_json::Value =
            serde_json::from_str(&runtime(&lab, &["state", &id]).stdout).unwrap();
        if s["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(runtime(&lab, &["delete", &id]).code, 0);
    assert_ne!(runtime(&lab, &["state", &id]).code, 0, "gone after delete");
}

#[test]
fn same_results_as_runc_on_the_same_bundle() {
    let Some(lab) = lab() else { return };
    if !have_runc() {
        eprintln!("skipping: runc not installed (apt-get install runc)");
        return;
    }
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
    let Some(lab) = lab() else { return };
    if !have_runc() {
        eprintln!("skipping: runc not installed (apt-get install runc)");
        return;
    }
    let b = bundle(&lab, "proc-symlink", &["true"]);
    let proc_dir = b.join("rootfs/proc");
    let _ = std::fs::remove_dir_all(&proc_dir);
    std::os::unix::fs::symlink("/etc", &proc_dir).unwrap();
    let id = format!("tb-proc-symlink-{}", std::process::id());
    let out = runtime(&lab, &["run", "-b", b.to_str().unwrap(), &id]);
    assert_ne!(out.code, 0, "a symlinked /proc must be refused");
    assert!(
        out.stderr.contains("symlink"),
        "error names the symlink: {}",
        out.stderr
    );
    // the host's /etc never got a procfs on top of it through the link
    assert!(!b.join("rootfs/etc/self").exists());
}
