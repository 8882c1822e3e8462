//! pause/unpause (the freezer), rename, container prune.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn pause_freezes_rename_renames_prune_prunes() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "vb-p",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.05; done",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = lab.inspect("vb-p")["Id"].as_str().unwrap().to_string();
    let counter = lab.containers_dir().join(&id).join("upper/tmp/n");
    let read = || std::fs::read_to_string(&counter).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "counter never written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let r = lab.tb(&["pause", "vb-p"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.inspect("vb-p")["State"]["Paused"], true);
    assert!(lab.tb(&["ps"]).stdout.contains("(Paused)"));
    let frozen = read();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(read(), frozen, "the counter moved while paused");
    let r = lab.tb(&["exec", "vb-p", "true"]);
    assert_eq!(
        r.stderr.trim(),
        "twinbox: container vb-p is paused: unpause it first"
    );
    let r = lab.tb(&["pause", "vb-p"]);
    assert!(r.stderr.contains("is paused"), "{}", r.stderr);

    let r = lab.tb(&["unpause", "vb-p"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read() == frozen {
        assert!(
            std::time::Instant::now() < deadline,
            "the counter never moved after unpause"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = lab.tb(&["unpause", "vb-p"]);
    assert!(r.stderr.contains("is not paused"), "{}", r.stderr);

    // rename: the new name finds it, the old one does not, names stay unique
    assert_eq!(
        lab.tb(&["run", "--name", "vb-done", "busybox", "true"])
            .code,
        0
    );
    let r = lab.tb(&["rename", "vb-p", "vb-done"]);
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
    assert_eq!(lab.tb(&["rename", "vb-p", "vb-q"]).code, 0);
    assert_eq!(lab.inspect("vb-q")["Id"], id.as_str());
    assert!(lab
        .tb(&["inspect", "vb-p"])
        .stderr
        .contains("no such object"));

    // prune: the exited one goes, the running one stays
    let r = lab.tb(&["container", "prune", "-f"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Total removed containers: 1"),
        "{}",
        r.stdout
    );
    assert_eq!(lab.container_count(), 1);
    assert_eq!(lab.tb(&["rm", "-f", "vb-q"]).code, 0);
}

fn status_line(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or("")
        .to_string()
}

#[test]
fn capabilities_privileged_and_seccomp_options() {
    let Some(lab) = lab() else { return };
    let probe = "grep -E '^(CapEff|Seccomp):' /proc/self/status";
    let r = lab.tb(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "net_raw",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(
        status_line(&r.stdout, "CapEff:"),
        "CapEff:\t0000000000002000",
        "{}",
        r.stderr
    );
    assert_eq!(status_line(&r.stdout, "Seccomp:"), "Seccomp:\t2");
    let default = lab.sh(probe);
    let r = lab.tb(&[
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    let eff = |s: &str| {
        u64::from_str_radix(
            status_line(s, "CapEff:").trim_start_matches("CapEff:\t"),
            16,
        )
        .unwrap()
    };
    assert_eq!(
        eff(&r.stdout),
        eff(&default.stdout) | 1 << 12,
        "{}",
        r.stderr
    );
    let r = lab.tb(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(eff(&r.stdout), eff(&default.stdout) & !1, "{}", r.stderr);

    // privileged: every capability we hold, no filter, no masked paths
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let r = lab.tb(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("{probe}; grep -c kcore /proc/mounts"),
    ]);
    assert_eq!(
        status_line(&r.stdout, "CapEff:"),
        status_line(&ours, "CapBnd:").replace("CapBnd", "CapEff")
    );
    assert_eq!(status_line(&r.stdout, "Seccomp:"), "Seccomp:\t0");
    assert!(
        r.stdout.ends_with("0\n"),
        "masked paths stayed: {}",
        r.stdout
    );
    let r = lab.tb(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert_eq!(status_line(&r.stdout, "Seccomp:"), "Seccomp:\t0");

    let r = lab.tb(&["run", "--rm", "--cap-add", "FLY", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("unknown capability \"FLY\""),
        "{}",
        r.stderr
    );
    let r = lab.tb(&[
        "run",
        "--rm",
        "--security-opt",
        "apparmor=x",
        "busybox",
        "true",
    ]);
    assert!(
        r.stderr.contains("unsupported --security-opt"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.container_count(), 0);
}

/// `--security-opt seccomp=FILE.json` in Docker's profile format: a rule's
/// errnoRet, includes/excludes by capability, architecture and kernel; exec'd
/// processes get the same filter; bad files fail with one clear line.
#[test]
fn seccomp_profile_from_a_docker_json_file() {
    let Some(lab) = lab() else { return };
    let block_mkdir = lab.root().join("block-mkdir.json");
    std::fs::write(
        &block_mkdir,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", block_mkdir.display());
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "sc-mkdir",
        "--security-opt",
        &opt,
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let probe = "mkdir /made; echo mkdir=$?; touch /file; echo touch=$?";
    let r = lab.tb(&["exec", "sc-mkdir", "sh", "-c", probe]);
    assert_eq!(r.stdout, "mkdir=1\ntouch=0\n", "{}", r.stderr);
    assert!(r.stderr.contains("Operation not permitted"), "{}", r.stderr);
    lab.tb(&["rm", "-f", "sc-mkdir"]);

    // Docker's default profile's shape: archMap, capability and arch filters
    let shaped = lab.root().join("shaped.json");
    std::fs::write(
        &shaped,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
              {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "args": null,
               "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
              {"names": ["chroot"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["s390x"]}},
              {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
               "includes": {"caps": ["CAP_SYS_ADMIN"], "minKernel": "4.0"}}
            ]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", shaped.display());
    let probe = "unshare -n true; echo unshare=$?; chroot / true; echo chroot=$?; \
                 hostname x 2>&1; echo hostname=$?";
    let r = lab.tb(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert!(
        r.stdout.contains("unshare=1\nchroot=0\n"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let r = lab.tb(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        probe,
    ]);
    assert!(
        r.stdout.contains("unshare=0\nchroot=0\n") && r.stdout.contains("Permission denied"),
        "{} {}",
        r.stdout,
        r.stderr
    );

    // the copy of Docker's default.json that Debian's containers-common ships
    let debian_default = std::path::Path::new("/usr/share/containers/seccomp.json");
    if debian_default.exists() {
        let opt = format!("seccomp={}", debian_default.display());
        let r = lab.tb(&[
            "run",
            "--rm",
            "--security-opt",
            &opt,
            "busybox",
            "sh",
            "-c",
            "mkdir /d && echo made; unshare -n true; echo unshare=$?",
        ]);
        assert_eq!(r.stdout, "made\nunshare=1\n", "{}", r.stderr);
    }

    // a profile run refuses (125) before making a container, saying `why`
    let refused = |profile: &std::path::Path, why: &str| {
        let r = lab.tb(&[
            "run",
            "--rm",
            "--security-opt",
            &format!("seccomp={}", profile.display()),
            "busybox",
            "true",
        ]);
        assert_eq!(r.code, 125, "{}", r.stderr);
        assert!(r.stderr.contains(why), "{}", r.stderr);
    };
    let missing = lab.root().join("missing.json");
    refused(&missing, "cannot read seccomp profile");
    std::fs::write(&missing, r#"{"syscalls": []}"#).unwrap();
    refused(&missing, "defaultAction is missing");
    assert_eq!(lab.container_count(), 0);
}

/// `stats` prints one snapshot of a running container's cgroup usage, and
/// takes Docker's `--no-stream` (what tutorials type for one snapshot).
#[test]
fn stats_prints_a_snapshot_and_takes_no_stream() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "st-a",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for args in [&["stats", "st-a"][..], &["stats", "--no-stream", "st-a"]] {
        let r = lab.tb(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let row = r
            .stdout
            .lines()
            .find(|l| l.contains(" st-a "))
            .unwrap_or_default();
        assert!(
            row.trim_end().ends_with(" 1"),
            "{args:?}: one process: {}",
            r.stdout
        );
    }
    assert_eq!(lab.tb(&["rm", "-f", "st-a"]).code, 0);
}
