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
    let r = lab.tb(&["run", "--rm", "--init", "busybox", "sh", "-c", "kill -USR1 $$"]);
    assert_eq!(r.code, 138, "{}", r.stderr);
}
