//! Crash safety: what a SIGKILLed twinbox leaves is finished by the next
//! command, and `system check` finds (and `--repair` fixes) a store damaged on
//! purpose. Needs root (real containers and cgroups).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lab;

/// Container ids in the store (directories under containers/).
fn container_ids(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The cgroup directory a container's memory controller (v1) or the unified
/// hierarchy (v2) would have.
fn cgroup_dir(id: &str) -> std::path::PathBuf {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        Path::new("/sys/fs/cgroup/twinbox").join(id)
    } else {
        Path::new("/sys/fs/cgroup/memory/twinbox").join(id)
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_foreground_rm_runs_leave_nothing_after_the_next_command() {
    let Some(lab) = lab() else { return };
    let mut seen = Vec::new();
    for _ in 0..5 {
        let mut child = lab
            .cmd(&["run", "--rm", "busybox", "sleep", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // wait until the container runs, so the kill lands mid-run
        wait_for("the container to start", || {
            container_ids(lab.root()).iter().any(|id| {
                !seen.contains(id)
                    && std::fs::read_to_string(
                        lab.root().join("containers").join(id).join("state.json"),
                    )
                    .is_ok_and(|s| s.contains("\"running\""))
            })
        });
        seen.extend(container_ids(lab.root()));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "five containers were started: {seen:?}");
    // any command that opens the store finishes what the dead runs left
    let ps = lab.tb(&["ps", "-a"]);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    assert_eq!(
        ps.stdout.lines().count(),
        1,
        "only the header: {}",
        ps.stdout
    );
    assert!(container_ids(lab.root()).is_empty());
    for id in &seen {
        assert!(!cgroup_dir(id).exists(), "cgroup of {id} left behind");
    }
    let check = lab.tb(&["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
}

#[test]
fn a_killed_supervisor_is_recorded_as_exited_and_its_cgroup_released() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["run", "-d", "--name", "kept", "busybox", "sleep", "60"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    let sup = lab.inspect("kept")["Twinbox"]["SupervisorPid"]
        .as_i64()
        .unwrap() as i32;
    assert!(cgroup_dir(&id).exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the supervisor to go", || {
        !Path::new(&format!("/proc/{sup}")).exists()
    });
    // the check sees it before anything recovers it
    let check = lab.tb(&["system", "check"]);
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(
        check
            .stdout
            .contains("container kept: recorded as running, but its supervisor is gone"),
        "{}",
        check.stdout
    );
    let ps = lab.tb(&["ps", "-a"]);
    assert!(ps.stdout.contains("Exited (unknown)"), "{}", ps.stdout);
    wait_for("the cgroup to go", || !cgroup_dir(&id).exists());
    let state = std::fs::read_to_string(lab.root().join("containers").join(&id).join("state.json"))
        .unwrap();
    assert!(state.contains("\"exited\""), "recorded durably: {state}");
    assert_eq!(lab.tb(&["system", "check"]).code, 0);
    assert_eq!(lab.tb(&["rm", "kept"]).code, 0);
}

#[test]
fn system_check_reports_and_repairs_a_damaged_store() {
    let Some(lab) = lab() else { return };
    let root = lab.root();
    // a second image whose layer blob we corrupt; busybox's unpacked layer we delete
    let tar = root.join("extra.tar");
    common::tar_with_file(&tar, "hello.txt", b"hello\n", 0o644);
    let r = lab.tb(&["import", tar.to_str().unwrap(), "extra:v1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // follow index.json to each image's manifest
    let manifest_of = |name: &str| -> serde_json::Value {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .is_some_and(|n| n.contains(name))
            })
            .unwrap()
            .clone();
        let hex = entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        serde_json::from_slice(&std::fs::read(root.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let blob_hex = |m: &serde_json::Value, what: &str| -> String {
        let d = if what == "config" {
            &m["config"]["digest"]
        } else {
            &m["layers"][0]["digest"]
        };
        d.as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    let busybox = manifest_of("busybox");
    let busybox_config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("blobs/sha256").join(blob_hex(&busybox, "config"))).unwrap(),
    )
    .unwrap();
    // a single-layer image's chain id is its diff id
    let busybox_layer = busybox_config["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    // the stale record below is made while the image is whole
    let r = lab.tb(&["create", "--name", "stale", "busybox", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let stale_id = r.stdout;
    std::fs::remove_dir_all(root.join("layers").join(&busybox_layer)).unwrap();
    // a container of an image with a layer missing is refused, saying what to do
    let r = lab.tb(&["create", "busybox", "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.trim().lines().count() == 1
            && r.stderr.contains(&busybox_layer)
            && r.stderr.contains("system check --repair"),
        "{}",
        r.stderr
    );
    // truncate the extra image's only layer blob
    let truncated = root
        .join("blobs/sha256")
        .join(blob_hex(&manifest_of("extra"), "layer"));
    let len = std::fs::metadata(&truncated).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // a stale record: running, with a supervisor pid that does not exist
    let stale_id = stale_id.trim().to_string();
    let state_path = root.join("containers").join(&stale_id).join("state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    state["status"] = "running".into();
    state["supervisor_pid"] = i32::MAX.into();
    state["supervisor_start_ticks"] = 1.into();
    std::fs::write(&state_path, state.to_string()).unwrap();
    // a create that died halfway
    std::fs::create_dir(root.join("containers/0123456789abcdef")).unwrap();

    let check = lab.cmd(&["system", "check"]).output().unwrap();
    let out = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(1), "{out}");
    let blob_short = &truncated.file_name().unwrap().to_string_lossy()[..12];
    for expected in [
        format!("blob sha256:{blob_short}: corrupt"),
        "image docker.io/library/busybox:latest: unpacked layer 1".to_string(),
        "container stale: recorded as running, but its supervisor is gone".to_string(),
        "containers/0123456789abcdef: unfinished create".to_string(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    assert!(
        out.lines().all(|l| !l.is_empty() && !l.contains('\n')),
        "one line per problem"
    );

    let repair = lab.tb(&["system", "check", "--repair"]);
    assert!(
        repair
            .stdout
            .contains("repaired: unpacked again from its blob"),
        "{}",
        repair.stdout
    );
    assert!(
        repair.stdout.contains("repaired: removed the corrupt blob"),
        "{}",
        repair.stdout
    );
    // the extra image lost its only copy of the layer: that needs the user
    assert!(
        repair.stdout.contains("pull or load the image again"),
        "{}",
        repair.stdout
    );
    assert!(!root.join("containers/0123456789abcdef").exists());
    // busybox works again, and a second check has nothing new to say about it
    let run = lab.sh("cat /etc/hostname >/dev/null && echo fine");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "fine");
    let again = lab.tb(&["system", "check"]);
    assert!(!again.stdout.contains("busybox"), "{}", again.stdout);
    assert!(!again.stdout.contains("stale"), "{}", again.stdout);
    // removing the broken image leaves a clean store
    assert_eq!(lab.tb(&["rmi", "extra:v1"]).code, 0);
    assert_eq!(lab.tb(&["rm", "stale"]).code, 0);
    let clean = lab.tb(&["system", "check"]);
    assert_eq!(clean.code, 0, "{}{}", clean.stdout, clean.stderr);
}

/// A container cgroup left behind by a removal that gave up (or a store
/// deleted underneath) goes with the next command of any store once it is
/// empty and old enough; one with a process in it stays.
#[test]
fn an_empty_container_cgroup_nobody_owns_is_released_by_the_next_command() {
    let Some(lab) = lab() else { return };
    let hex = |seed: u32| format!("{:08x}", std::process::id() ^ seed).repeat(8);
    let (empty, busy) = (hex(0x0e0e_0e0e), hex(0xb0b0_b0b0));
    let (empty_dir, busy_dir) = (cgroup_dir(&empty), cgroup_dir(&busy));
    for dir in [&empty_dir, &busy_dir] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    std::fs::write(busy_dir.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    // made two minutes ago, as far as its directory's time tells
    for dir in [&empty_dir, &busy_dir] {
        let st = std::process::Command::new("touch")
            .args(["-d", "-2 min"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success());
    }

    let ps = lab.tb(&["ps", "-a"]);
    let empty_left = empty_dir.exists();
    let busy_left = busy_dir.exists();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    // the sleeper's cgroup: move nothing back, it is dead; remove by hand
    wait_for("the sleeper's cgroup to empty", || {
        std::fs::remove_dir(&busy_dir).is_ok() || !busy_dir.exists()
    });
    let _ = std::fs::remove_dir(&empty_dir);
    assert_eq!(ps.code, 0, "{}", ps.stderr);
    assert!(
        !empty_left,
        "{} is still there after `ps`",
        empty_dir.display()
    );
    assert!(busy_left, "a cgroup with a process in it was removed");
}
