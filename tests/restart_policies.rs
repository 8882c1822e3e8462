//! Restart policies in the supervisor: on-failure:N restarts N times and stops,
//! `stop` ends an `always` container for good, `restart` starts it again.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn state(lab: &Lab, name: &str) -> serde_json::Value {
    lab.inspect(name)
}

/// Polls until `done` holds (or fails the test after a minute).
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The supervisor recorded in state.json is gone: nothing can restart any more.
fn supervisor_gone(lab: &Lab, name: &str) -> bool {
    let id = state(lab, name)["Id"].as_str().unwrap().to_string();
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lab.containers_dir().join(id).join("state.json")).unwrap(),
    )
    .unwrap();
    match st["supervisor_pid"].as_i64() {
        Some(pid) => !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

fn runs(lab: &Lab, name: &str) -> usize {
    lab.tb(&["logs", name])
        .stdout
        .lines()
        .filter(|l| *l == "run")
        .count()
}

#[test]
fn on_failure_restarts_n_times_then_stops() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "rp-fail",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("three restarts and the end", || {
        let s = state(&lab, "rp-fail");
        s["RestartCount"] == 3
            && s["State"]["Status"] == "exited"
            && supervisor_gone(&lab, "rp-fail")
    });
    let s = state(&lab, "rp-fail");
    assert_eq!(s["State"]["ExitCode"], 3);
    assert_eq!(s["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(s["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(runs(&lab, "rp-fail"), 4, "one run and three restarts");

    // a zero exit is no failure: no restart
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "rp-ok",
        "--restart",
        "on-failure",
        "busybox",
        "sh",
        "-c",
        "echo run",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("the end", || supervisor_gone(&lab, "rp-ok"));
    assert_eq!(state(&lab, "rp-ok")["RestartCount"], 0);
    assert_eq!(runs(&lab, "rp-ok"), 1);

    let r = lab.tb(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("--restart and --rm"), "{}", r.stderr);
    let r = lab.tb(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("restart policy"), "{}", r.stderr);
    assert_eq!(lab.container_count(), 2);
}

#[test]
fn stop_ends_an_always_container_for_good() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "rp-always",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo run; sleep 0.3",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("two restarts", || {
        state(&lab, "rp-always")["RestartCount"].as_i64() >= Some(2)
    });
    let r = lab.tb(&["stop", "-t", "2", "rp-always"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("the supervisor to end", || {
        supervisor_gone(&lab, "rp-always")
    });
    let s = state(&lab, "rp-always");
    assert_eq!(s["State"]["Status"], "exited");
    let count = runs(&lab, "rp-always");

    // restart brings it back, with its policy
    let r = lab.tb(&["restart", "rp-always"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("a run after restart", || runs(&lab, "rp-always") > count);
    let r = lab.tb(&["rm", "-f", "rp-always"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// Between two runs of its policy a container reads as Docker's does:
/// `restarting` in ps's State, filters and inspect, `Restarting (CODE) ...` in
/// its Status (not `exited`); stopped for good, it is `exited` again.
#[test]
fn a_container_between_restarts_shows_as_restarting() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "rp-loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 4",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // the back-off doubles from 100 ms: the pauses soon last long enough to see
    let filter = [
        "ps",
        "-a",
        "--filter",
        "status=restarting",
        "--format",
        "{{.Names}}|{{.Status}}",
    ];
    let mut line = String::new();
    until("a pause between restarts", || {
        line = lab.tb(&filter).stdout;
        line.starts_with("rp-loop|Restarting (4) ")
    });
    until("inspect to say restarting", || {
        let s = state(&lab, "rp-loop");
        s["State"]["Status"] == "restarting" && s["State"]["Restarting"] == true
    });
    let r = lab.tb(&["stop", "-t", "1", "rp-loop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    until("the supervisor to end", || supervisor_gone(&lab, "rp-loop"));
    let s = state(&lab, "rp-loop");
    assert_eq!(s["State"]["Status"], "exited", "{s}");
    assert_eq!(s["State"]["Restarting"], false, "{s}");
    assert_eq!(lab.tb(&filter).stdout, "");
    let r = lab.tb(&["rm", "-f", "rp-loop"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
