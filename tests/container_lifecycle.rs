//! The Docker habits: -d, ps, logs, stop, rm, --rm, names, exit codes, errors.

mod common;

use std::time::Duration;

use common::lab;

#[test]
fn detached_logs_stop_rm() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; echo start; echo oops >&2; while true; do sleep 0.2; done",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim().len(), 64, "prints the full id");
    // wait for both lines (a loaded machine may take longer than any fixed sleep)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let logs = lab.tb(&["logs", "ticker"]);
        if logs.stdout.contains("start") && logs.stderr.contains("oops") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no output: {}{}",
            logs.stdout,
            logs.stderr
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ps = lab.tb(&["ps"]);
    assert!(
        ps.stdout.contains("ticker") && ps.stdout.contains("Up "),
        "{}",
        ps.stdout
    );
    let logs = lab.tb(&["logs", "ticker"]);
    assert_eq!(logs.stdout, "start\n");
    assert_eq!(logs.stderr, "oops\n");
    let top = lab.tb(&["top", "ticker"]);
    assert!(top.stdout.contains("sh -c"), "{}", top.stdout);
    let stop = lab.tb(&["stop", "-t", "5", "ticker"]);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    let info = lab.inspect("ticker");
    assert_eq!(info["State"]["Status"], "exited");
    assert_eq!(info["State"]["ExitCode"], 0, "the TERM trap ran");
    assert!(lab
        .tb(&["logs", "--tail", "1", "ticker"])
        .stdout
        .contains("bye"));
    assert_eq!(lab.tb(&["wait", "ticker"]).stdout.trim(), "0");
    assert_eq!(lab.tb(&["rm", "ticker"]).code, 0);
    assert_eq!(lab.container_count(), 0);
}

#[test]
fn stop_kills_a_workload_that_ignores_sigterm() {
    let Some(lab) = lab() else { return };
    assert_eq!(
        lab.tb(&["run", "-d", "--name", "stubborn", "busybox", "sleep", "60"])
            .code,
        0
    );
    let r = lab.tb(&["stop", "-t", "1", "stubborn"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.inspect("stubborn")["State"]["ExitCode"], 137);
}

#[test]
fn rm_flag_leaves_nothing_behind() {
    let Some(lab) = lab() else { return };
    assert_eq!(lab.sh("echo hi").stdout, "hi\n");
    let r = lab.tb(&["run", "-d", "--rm", "busybox", "true"]);
    assert_eq!(r.code, 0);
    let id = r.stdout.trim().to_string();
    // the supervisor removes it after the exit (a busy host may take a while)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lab.container_count() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.container_count(), 0, "--rm removed {id}");
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/twinbox/{id}")).exists());
}

/// `create --rm` then `start`, as Docker allows: the created container waits
/// (the next commands' recovery must not take it for a run that died), runs,
/// and is removed once it has run.
#[test]
fn create_rm_then_start_runs_once_then_goes() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "create",
        "--rm",
        "--name",
        "later",
        "--network",
        "none",
        "busybox",
        "echo",
        "ran",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(r.stdout, "later created\n", "{}", r.stderr);
    let r = lab.tb(&["start", "-a", "later"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "ran\n"), "{}", r.stderr);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lab.container_count() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(lab.container_count(), 0, "--rm removed it after its run");
}

#[test]
fn exit_codes_follow_docker() {
    let Some(lab) = lab() else { return };
    assert_eq!(lab.sh("exit 42").code, 42);
    let r = lab.tb(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(r.code, 127);
    assert!(
        r.stderr.contains("executable file not found"),
        "{}",
        r.stderr
    );
    let r = lab.tb(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(r.code, 126);
    assert!(r.stderr.contains("permission denied"), "{}", r.stderr);
    assert_eq!(
        lab.container_count(),
        0,
        "failed runs leave no container behind"
    );
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let Some(lab) = lab() else { return };
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--rm", "nosuchimage"], "no such image"),
        (&["run", "--rm", "Bad:Ref"], "invalid image reference"),
        (
            &["run", "--rm", "-m", "lots", "busybox", "true"],
            "invalid memory size",
        ),
        (&["run", "--rm", "--cpus", "0", "busybox", "true"], "cpus"),
        (
            &["run", "--rm", "--name", "bad/name", "busybox", "true"],
            "invalid container name",
        ),
        (
            &["run", "--rm", "--network", "nosuchnet", "busybox", "true"],
            "network \"nosuchnet\" not found",
        ),
        (&["logs", "nosuch"], "no such container"),
        (&["stop", "nosuch"], "no such container"),
        (&["rm", "nosuch"], "no such container"),
    ];
    for (args, want) in cases {
        let r = lab.tb(args);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{args:?}: one line: {}",
            r.stderr
        );
    }
    let usage = lab.tb(&["run", "--rm", "--no-such-flag", "busybox"]);
    assert_eq!(usage.code, 125, "a bad command line exits 125 as in docker");
    assert!(usage.stderr.contains("--no-such-flag"), "{}", usage.stderr);
    assert_eq!(lab.container_count(), 0);
}

#[test]
fn names_are_unique_and_find_by_prefix() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["create", "--name", "one", "busybox", "true"]);
    assert_eq!(r.code, 0);
    let id = r.stdout.trim().to_string();
    let clash = lab.tb(&["create", "--name", "one", "busybox", "true"]);
    assert_eq!(clash.code, 125);
    assert!(clash.stderr.contains("already in use"), "{}", clash.stderr);
    assert_eq!(lab.inspect(&id[..6])["Name"], "/one");
    assert!(lab.tb(&["ps", "-a"]).stdout.contains("Created"));
    assert_eq!(lab.tb(&["start", "-a", "one"]).code, 0);
    assert_eq!(lab.inspect("one")["State"]["ExitCode"], 0);
}

#[test]
fn killed_supervisor_shows_as_exited_with_unknown_code() {
    let Some(lab) = lab() else { return };
    assert_eq!(
        lab.tb(&["run", "-d", "--name", "orphan", "busybox", "sleep", "60"])
            .code,
        0
    );
    let info = lab.inspect("orphan");
    let sup = info["Twinbox"]["SupervisorPid"].as_i64().unwrap() as i32;
    let rss = info["Twinbox"]["SupervisorRssBytes"].as_u64().unwrap();
    assert!(rss > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // the kill takes effect when the kernel gets to it: wait for that, not a fixed time
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ps = loop {
        let ps = lab.tb(&["ps", "-a"]);
        if ps.stdout.contains("Exited (unknown)") || std::time::Instant::now() > deadline {
            break ps;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ps.stdout.contains("Exited (unknown)"), "{}", ps.stdout);
    assert!(lab.inspect("orphan")["State"]["ExitCode"].is_null());
    assert_eq!(lab.tb(&["rm", "orphan"]).code, 0);
}

#[test]
fn non_root_gets_a_clear_error() {
    let Some(lab) = lab() else { return };
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            common::bin(),
            "run",
            "busybox",
            "true",
        ])
        .env("TWINBOX_ROOT", lab.root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs root"));
}

#[test]
fn import_a_rootfs_tar() {
    let Some(lab) = lab() else { return };
    let rootfs = lab.root().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    std::fs::write(rootfs.join("hello.txt"), "imported\n").unwrap();
    let tar = lab.root().join("rootfs.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let r = lab.tb(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\",\"-c\",\"cat /hello.txt\"]",
        tar.to_str().unwrap(),
        "course/base:v1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(lab.tb(&["images"]).stdout.contains("course/base"));
    assert_eq!(
        lab.tb(&["run", "--rm", "course/base:v1"]).stdout,
        "imported\n"
    );
}
