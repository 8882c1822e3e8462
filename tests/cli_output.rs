//! The command line's output discipline: a reader that goes away early
//! (`twinbox ps | head -1`) ends twinbox quietly with status 0, never a panic.

mod common;

use std::process::Stdio;

use common::*;

/// Runs twinbox with stdout a pipe whose reader is already closed, so the first
/// write fails with EPIPE (deterministic, unlike racing a real `head`).
fn with_closed_stdout(lab: &Lab, args: &[&str]) -> Run {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = lab
        .cmd(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .expect("run twinbox");
    out.into()
}

#[test]
fn closed_stdout_ends_quietly_with_zero() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["create", "--name", "pipe-c", "busybox", "echo", "hi"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["start", "-a", "pipe-c"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for args in [
        &["ps", "-a"][..],
        &["ps", "-a", "--format", "json"],
        &["ps", "-a", "-q"],
        &["images"],
        &["history", "busybox"],
        &["inspect", "pipe-c"],
        &["image", "inspect", "busybox"],
        &["logs", "pipe-c"],
        &["--help"],
    ] {
        let r = with_closed_stdout(&lab, args);
        assert_eq!(r.code, 0, "{args:?} exit {}: {}", r.code, r.stderr);
        assert!(
            r.stderr.is_empty(),
            "{args:?} wrote to stderr: {}",
            r.stderr
        );
    }
    // the pipeline students type, under pipefail so twinbox's own status counts
    let script = format!(
        "set -o pipefail; TWINBOX_ROOT={} {} ps -a | head -1",
        lab.root().display(),
        bin()
    );
    let o = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panic"), "{stderr}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("CONTAINER ID"));
}

/// Docker's management commands: `container ls`, `container run`, `container
/// exec`... are the top-level verbs (tutorials type both forms), global options
/// may come first, and `container prune` is still the group's own.
#[test]
fn container_management_verbs_are_the_top_level_ones() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "container",
        "run",
        "-d",
        "--name",
        "mgmt",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["container", "ls", "--format", "{{.Names}}"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "mgmt\n"), "{}", r.stderr);
    let r = lab.tb(&["container", "list", "-a", "-q"]);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stderr);
    let r = lab.tb(&["--debug", "container", "exec", "mgmt", "echo", "inside"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "inside\n"), "{}", r.stderr);
    let r = lab.tb(&["container", "inspect", "-f", "{{.Name}}", "mgmt"]);
    assert_eq!(r.stdout, "/mgmt\n", "{}", r.stderr);
    let r = lab.tb(&["container", "rm", "-f", "mgmt"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["container", "prune", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["container", "nope"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
}
