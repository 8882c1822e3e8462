//! run/create options that change the container's process: `--init` (a reaper
//! as PID 1), and more below, each checked from inside a real container.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Polls until `done` holds (or fails the test after 20 s).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ps` lines inside the container naming the orphan `sleep 0.1`.
fn orphans(lab: &Lab, name: &str) -> Vec<String> {
    let r = lab.tb(&["exec", name, "ps", "-o", "stat,args"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
        .lines()
        .filter(|l| {
            let args = l.split_once(' ').map_or("", |(_, a)| a.trim());
            args == "sleep 0.1" || args == "[sleep]"
        })
        .map(str::to_string)
        .collect()
}

/// The command becomes PID 1 without --init, the reaper's child with it; an
/// orphan stays a zombie under a PID 1 that never waits (`sleep`), and is
/// reaped by the reaper.
#[test]
fn init_reaps_orphans_that_pid_1_would_leave_as_zombies() {
    let Some(lab) = lab() else { return };
    // the inner sh exits at once, leaving `sleep 0.1` to PID 1
    let script = "sh -c 'sleep 0.1 &'; exec sleep 60";
    for (name, init) in [("zombie-plain", false), ("zombie-init", true)] {
        let mut args = vec!["run", "-d", "--name", name];
        if init {
            args.push("--init");
        }
        args.extend(["busybox", "sh", "-c", script]);
        let r = lab.tb(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    // control: without a reaper the orphan ends up a zombie (state Z)
    until("a zombie under a plain PID 1", || {
        orphans(&lab, "zombie-plain")
            .iter()
            .any(|l| l.starts_with('Z'))
    });
    // with --init it is reaped: gone from the process table
    until("the orphan reaped under --init", || {
        orphans(&lab, "zombie-init").is_empty()
    });
    let ps = lab.tb(&["exec", "zombie-init", "ps", "-o", "pid,args"]);
    let pid1 = ps.stdout.lines().find(|l| l.trim_start().starts_with("1 "));
    assert!(
        pid1.is_some_and(|l| l.contains("/sbin/docker-init -- sh -c")),
        "{}",
        ps.stdout
    );
    assert_eq!(lab.inspect("zombie-init")["HostConfig"]["Init"], true);
    assert_eq!(lab.inspect("zombie-plain")["HostConfig"]["Init"], false);
    // `ps` inside shows the reaper; Docker's inspect keeps the user's command
    assert_eq!(lab.inspect("zombie-init")["Path"], "sh");
}

/// SIGTERM reaches a command that ignores it as PID 1 (sleep), so `stop`
/// ends it with 143 instead of killing it (137); the exit code passes through.
#[test]
fn init_forwards_signals_and_passes_the_exit_code() {
    let Some(lab) = lab() else { return };
    for (name, init) in [("sig-plain", false), ("sig-init", true)] {
        let mut args = vec!["run", "-d", "--name", name];
        if init {
            args.push("--init");
        }
        args.extend(["busybox", "sleep", "60"]);
        assert_eq!(lab.tb(&args).code, 0);
    }
    assert_eq!(lab.tb(&["stop", "-t", "1", "sig-plain"]).code, 0);
    assert_eq!(lab.inspect("sig-plain")["State"]["ExitCode"], 137);
    assert_eq!(lab.tb(&["stop", "-t", "30", "sig-init"]).code, 0);
    assert_eq!(lab.inspect("sig-init")["State"]["ExitCode"], 143);

    let r = lab.tb(&["run", "--rm", "--init", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    let r = lab.tb(&["run", "--rm", "--init", "busybox", "no-such-command"]);
    assert_eq!(r.code, 127);
    assert!(r.stderr.contains("no-such-command"), "{}", r.stderr);
    // a signal that ends the command: 128 + N, as without the reaper
    let r = lab.tb(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "kill -USR1 $$",
    ]);
    assert_eq!(r.code, 138, "{}", r.stderr);
}

/// One line per entry of the container's /dev (not below its own mounts):
/// name, type, mode, owner, major:minor.
const DEV_LISTING: &str =
    "cd /dev; for f in $(find . -xdev | sort); do stat -c '%n %F %a %u:%g %t:%T' $f; done";

/// `/dev` as Docker makes it on this host, by default and with `--device`
/// (a node, a renamed node in a new directory, a directory of nodes).
#[test]
fn dev_entries_match_dockers() {
    let Some(lab) = lab() else { return };
    let Some(dockerd) = common::dockerd::Dockerd::with_busybox(&lab) else {
        return;
    };
    let mut device_sets: Vec<Vec<&str>> = vec![vec![]];
    if std::path::Path::new("/dev/net/tun").exists() {
        device_sets.push(vec![
            "--device",
            "/dev/net",
            "--device",
            "/dev/null:/dev/my/null:r",
            "--device",
            "/dev/zero:rw",
        ]);
    }
    for devices in device_sets {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(&devices);
        args.extend(["busybox", "sh", "-c", DEV_LISTING]);
        let theirs = dockerd.docker(&args);
        let ours = lab.tb(&args);
        assert_eq!(theirs.code, 0, "docker {devices:?}: {}", theirs.stderr);
        assert_eq!(ours.code, 0, "twinbox {devices:?}: {}", ours.stderr);
        assert_eq!(ours.stdout, theirs.stdout, "{devices:?}");
        assert!(ours
            .stdout
            .contains("./null character special file 666 0:0 1:3"));
    }
    // bad devices: refused before anything runs, with Docker's words
    for bad in ["/dev/no-such-device", "/etc/passwd"] {
        let theirs = dockerd.docker(&["run", "--rm", "--device", bad, "busybox", "true"]);
        let ours = lab.tb(&["run", "--rm", "--device", bad, "busybox", "true"]);
        assert_ne!(theirs.code, 0);
        // 127 for a missing device, 125 for a file that is not one
        assert_eq!(ours.code, theirs.code, "{}", ours.stderr);
        let why = ours.stderr.trim().rsplit(": ").next().unwrap().to_string();
        assert!(
            theirs.stderr.contains(&why),
            "{} vs {}",
            ours.stderr,
            theirs.stderr
        );
    }
    assert_eq!(lab.container_count(), 0);
}

/// What a container sees of /sys/fs/cgroup: entries, modes, mounts (without
/// ids, device numbers and the mount root, which names Docker's cgroup path),
/// what can be written, and that each hierarchy shows the container's own cgroup.
const CGROUP_VIEW: &str = "cd /sys/fs/cgroup; stat -c '%n %a %F' . *; \
    grep cgroup /proc/self/mountinfo | cut -d' ' -f5-; \
    touch probe && echo tmpfs writable; mkdir memory/probe; echo 1 > pids/pids.max; \
    ls memory | tr '\\n' ' '; echo; ls systemd | tr '\\n' ' '; echo; \
    cat memory/memory.limit_in_bytes pids/pids.max; head -1 pids/cgroup.procs";

/// `/sys/fs/cgroup` as Docker shows it on this host (on cgroup v1: a tmpfs with
/// one read-only mount per hierarchy, each the container's own cgroup).
#[test]
fn cgroup_view_matches_dockers() {
    let Some(lab) = lab() else { return };
    let Some(dockerd) = common::dockerd::Dockerd::with_busybox(&lab) else {
        return;
    };
    let args = [
        "run",
        "--rm",
        "--network",
        "none",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        CGROUP_VIEW,
    ];
    let theirs = dockerd.docker(&args);
    let ours = lab.tb(&args);
    assert_eq!(theirs.code, 0, "docker: {}", theirs.stderr);
    assert_eq!(ours.code, 0, "twinbox: {}", ours.stderr);
    assert_eq!(ours.stdout, theirs.stdout);
    assert_eq!(ours.stderr, theirs.stderr);
    if !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // v1: the limits read back through read-only mounts of the own cgroup
        for want in [
            "/sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory\n",
            "tmpfs writable\n",
            "67108864\n50\n1\n",
        ] {
            assert!(
                ours.stdout.contains(want),
                "{want:?} missing:\n{}",
                ours.stdout
            );
        }
        assert!(
            ours.stderr.contains("Read-only file system"),
            "{}",
            ours.stderr
        );
    }
    assert_eq!(lab.container_count(), 0);
}

/// `--privileged` gets every device node of the host's /dev at its path
/// (but /dev/console and /dev/ptmx, which stay the container's own).
#[test]
fn privileged_gets_the_host_devices() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        DEV_LISTING,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inside: std::collections::BTreeSet<&str> = r.stdout.lines().collect();
    let host = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "cd /dev; for f in $(find . -xdev \\( -path ./pts -o -path ./shm -o -path ./mqueue \
             -o -path ./fd \\) -prune -o \\( -type c -o -type b \\) -print | sort); do \
             stat -c '%n %F %a %u:%g %t:%T' $f; done",
        )
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    let mut checked = 0;
    for line in host.lines() {
        if line.starts_with("./console ") || line.starts_with("./ptmx ") {
            continue;
        }
        assert!(
            inside.contains(line),
            "{line} missing inside:\n{}",
            r.stdout
        );
        checked += 1;
    }
    assert!(checked > 6, "{host}");
    // without --privileged, the host's other devices are not there
    let r = lab.sh("ls /dev");
    assert!(
        !r.stdout.lines().any(|l| l == "kvm" || l == "loop-control"),
        "{}",
        r.stdout
    );
}

/// The device cgroup (v1) enforces `--device` permissions: `:r` opens for
/// reading only, and a node made with mknod for another device cannot be opened.
#[test]
fn device_permissions_are_enforced_by_the_device_cgroup() {
    let Some(lab) = lab() else { return };
    if !std::path::Path::new("/sys/fs/cgroup/devices").is_dir() {
        eprintln!("skipping: no v1 device controller here");
        return;
    }
    // a character device outside Docker's default allow list
    let Some(dev) = ["/dev/kvm", "/dev/fuse", "/dev/loop-control"]
        .into_iter()
        .find(|d| std::path::Path::new(d).exists())
    else {
        eprintln!("skipping: no spare character device on this host");
        return;
    };
    let script = "(exec 3</dev/ro-dev) && echo read-ok; \
                  (exec 3<>/dev/ro-dev) 2>/dev/null || echo write-refused; \
                  mknod /tmp/mem c 1 1 && echo made; \
                  (exec 3</tmp/mem) 2>/dev/null || echo mem-refused";
    let device = format!("{dev}:/dev/ro-dev:r");
    let r = lab.tb(&[
        "run", "--rm", "--device", &device, "busybox", "sh", "-c", script,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in ["read-ok", "write-refused", "made", "mem-refused"] {
        assert!(r.stdout.lines().any(|l| l == want), "{want}: {}", r.stdout);
    }
    // the same device with rw opens for writing
    let device = format!("{dev}:/dev/rw-dev:rw");
    let r = lab.tb(&[
        "run",
        "--rm",
        "--device",
        &device,
        "busybox",
        "sh",
        "-c",
        "(exec 3<>/dev/rw-dev) && echo rw-ok",
    ]);
    assert!(r.stdout.contains("rw-ok"), "{} {}", r.stdout, r.stderr);
    // privileged: no device rules at all
    let r = lab.tb(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "mknod /tmp/null2 c 1 3 && echo x > /tmp/null2 && echo written",
    ]);
    assert!(r.stdout.contains("written"), "{} {}", r.stdout, r.stderr);
}

/// `--ulimit` sets the soft and hard limits inside; a bad one is refused.
#[test]
fn ulimits_reach_the_process() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=100:200",
        "--ulimit",
        "core=0",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; ulimit -c",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "100\n200\n0\n");
    for bad in ["nofile=200:100", "nofiles=1", "nofile"] {
        let r = lab.tb(&["run", "--rm", "--ulimit", bad, "busybox", "true"]);
        assert_eq!(r.code, 125, "{bad}");
        assert!(r.stderr.contains("ulimit"), "{}", r.stderr);
    }
    assert_eq!(lab.container_count(), 0);
}

/// `stop` sends `--stop-signal` (else the image's StopSignal) and kills after
/// `--stop-timeout` when `-t` is not given.
#[test]
fn stop_signal_and_timeout() {
    let Some(lab) = lab() else { return };
    let trap = "trap 'echo got-usr1; exit 3' USR1; echo ready; while true; do sleep 0.1; done";
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "stop-usr1",
        "--stop-signal",
        "SIGUSR1",
        "busybox",
        "sh",
        "-c",
        trap,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("the trap set", || {
        lab.tb(&["logs", "stop-usr1"]).stdout.contains("ready")
    });
    assert_eq!(lab.tb(&["stop", "-t", "30", "stop-usr1"]).code, 0);
    assert_eq!(lab.inspect("stop-usr1")["State"]["ExitCode"], 3);
    assert!(lab.tb(&["logs", "stop-usr1"]).stdout.contains("got-usr1"));
    assert_eq!(lab.inspect("stop-usr1")["Config"]["StopSignal"], "SIGUSR1");

    // the image's StopSignal, from commit --change
    let r = lab.tb(&[
        "commit",
        "--change",
        "STOPSIGNAL SIGUSR1",
        "stop-usr1",
        "stop-usr1-image",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "stop-img",
        "stop-usr1-image",
        "sh",
        "-c",
        trap,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.inspect("stop-img")["Config"]["StopSignal"], "SIGUSR1");

    // sleep as PID 1 ignores SIGTERM: the timeout's SIGKILL ends it (137)
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "stop-1s",
        "--stop-timeout",
        "1",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.tb(&["stop", "stop-1s"]).code, 0);
    assert_eq!(lab.inspect("stop-1s")["State"]["ExitCode"], 137);
    assert_eq!(lab.inspect("stop-1s")["Config"]["StopTimeout"], 1);
    let r = lab.tb(&["run", "--rm", "--stop-signal", "NOPE", "busybox", "true"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
}

/// Docker's init layer gives /etc/mtab -> /proc/mounts (not a change of the
/// container); the user's groups are its primary group, the image's
/// /etc/group memberships (none with an explicit group), then --group-add,
/// for the container's process and for `exec -u`.
#[test]
fn mtab_and_supplementary_groups() {
    let Some(lab) = lab() else { return };
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend_from_slice(args);
        let r = lab.tb(&all);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        r.stdout
    };
    assert_eq!(
        run(&[
            "busybox",
            "sh",
            "-c",
            "readlink /etc/mtab; grep -c ' / overlay ' /etc/mtab"
        ]),
        "/proc/mounts\n1\n"
    );
    assert_eq!(run(&["busybox", "id", "-G"]), "0\n");
    assert_eq!(
        run(&[
            "-u",
            "nobody",
            "--group-add",
            "daemon",
            "--group-add",
            "4242",
            "busybox",
            "id",
            "-G"
        ]),
        "65534 1 4242\n"
    );
    // memberships come from the image's /etc/group
    let r = lab.tb(&[
        "run",
        "--name",
        "grp-src",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo 'wheel:x:10:root,nobody' >> /etc/group; echo 'staff:x:50:nobody' >> /etc/group",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.tb(&["commit", "grp-src", "grp:1"]).code, 0);
    assert_eq!(run(&["-u", "nobody", "grp:1", "id", "-G"]), "65534 10 50\n");
    assert_eq!(run(&["-u", "nobody:daemon", "grp:1", "id", "-G"]), "1\n");
    assert_eq!(run(&["grp:1", "id", "-G"]), "0 10\n");

    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "grp-exec",
        "--network",
        "none",
        "--group-add",
        "77",
        "grp:1",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let e = lab.tb(&["exec", "-u", "nobody", "grp-exec", "id", "-G"]);
    assert_eq!(
        (e.code, e.stdout.as_str()),
        (0, "65534 10 50 77\n"),
        "{}",
        e.stderr
    );
    let e = lab.tb(&["exec", "grp-exec", "id", "-G"]);
    assert_eq!(e.stdout, "0 10 77\n");
    let d = lab.tb(&["diff", "grp-exec"]);
    assert!(!d.stdout.contains("mtab"), "{}", d.stdout);
    let inspect = lab.inspect("grp-exec");
    assert_eq!(inspect["HostConfig"]["GroupAdd"], serde_json::json!(["77"]));
    let x = lab.tb(&["export", "grp-exec"]);
    assert_eq!(x.code, 0);
    assert_eq!(lab.tb(&["rm", "-f", "grp-exec", "grp-src"]).code, 0);

    let before = lab.container_count();
    let bad = lab.tb(&["run", "--rm", "--group-add", "nosuch", "busybox", "true"]);
    assert_eq!(bad.code, 125);
    assert!(bad.stderr.contains("--group-add nosuch"), "{}", bad.stderr);
    assert_eq!(lab.container_count(), before, "nothing left behind");
}
