//! Fault injection: twinbox is SIGKILLed at every crash point it names
//! (`TWINBOX_FAULT`, engine/src/fault.rs) and at random moments, during import,
//! run, rm, rmi and build. After each kill, the next command must find a store
//! that `system check` calls clean, and a normal workload (and the interrupted
//! operation, done again) must work. Needs root.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{lab, Lab};
use twinbox_engine::fault::POINTS;

fn rootfs_tar(lab: &Lab) -> String {
    let path = lab.root().join("rootfs.tar");
    common::tar_with_file(&path, "fault.txt", b"injected\n", 0o644);
    path.to_string_lossy().into_owned()
}

/// Runs twinbox with the crash point armed; true when it died by SIGKILL.
fn run_until_killed(lab: &Lab, point: &str, args: &[&str], stdin: Option<&str>) -> bool {
    let mut cmd = lab.cmd(args);
    cmd.env("TWINBOX_FAULT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait().unwrap().signal() == Some(libc::SIGKILL)
}

/// After a crash: any command recovers; then the store checks clean and works.
fn assert_recovers(lab: &Lab, after: &str) {
    let ps = lab.tb(&["ps", "-a"]);
    assert_eq!(ps.code, 0, "after {after}: {}", ps.stderr);
    let check = lab.tb(&["system", "check"]);
    assert_eq!(
        check.code, 0,
        "after {after}, system check found:\n{}{}",
        check.stdout, check.stderr
    );
    let run = lab.sh("echo still-working");
    assert_eq!(run.code, 0, "after {after}: {}", run.stderr);
    assert_eq!(run.stdout.trim(), "still-working");
}

const DOCKERFILE: &str = "FROM busybox\nRUN echo built > /built.txt\nRUN echo again > /again.txt\n";

#[test]
fn a_kill_at_every_crash_point_leaves_a_clean_working_store() {
    let Some(lab) = lab() else { return };
    let tar = rootfs_tar(&lab);
    let mut covered = BTreeSet::new();
    for &(point, _) in POINTS {
        match point {
            "ingest.staged" | "ingest.blob-installed" | "image.before-ref" => {
                assert!(
                    run_until_killed(&lab, point, &["import", &tar, "faulty:v1"], None),
                    "{point}"
                );
                assert_recovers(&lab, point);
                let again = lab.tb(&["import", &tar, "faulty:v1"]);
                assert_eq!(
                    again.code, 0,
                    "import again after {point}: {}",
                    again.stderr
                );
                assert_eq!(lab.tb(&["rmi", "faulty:v1"]).code, 0);
            }
            "create.before-record" | "run.started" => {
                assert!(
                    run_until_killed(
                        &lab,
                        point,
                        &["run", "--rm", "busybox", "sleep", "30"],
                        None
                    ),
                    "{point}"
                );
                assert_recovers(&lab, point);
                let ps = lab.tb(&["ps", "-aq"]);
                assert!(
                    ps.stdout.trim().is_empty(),
                    "after {point}, left: {}",
                    ps.stdout
                );
            }
            "rm.cgroup-released" => {
                let r = lab.tb(&["run", "-d", "--name", "victim", "busybox", "sleep", "30"]);
                assert_eq!(r.code, 0, "{}", r.stderr);
                assert!(
                    run_until_killed(&lab, point, &["rm", "-f", "victim"], None),
                    "{point}"
                );
                assert_recovers(&lab, point);
                // the rm did not finish: doing it again does
                let again = lab.tb(&["rm", "-f", "victim"]);
                assert_eq!(again.code, 0, "rm again after {point}: {}", again.stderr);
            }
            "rmi.untagged" => {
                assert_eq!(lab.tb(&["import", &tar, "doomed:v1"]).code, 0);
                assert!(
                    run_until_killed(&lab, point, &["rmi", "doomed:v1"], None),
                    "{point}"
                );
                assert_recovers(&lab, point);
                assert_ne!(
                    lab.tb(&["image", "inspect", "doomed:v1"]).code,
                    0,
                    "the name is gone"
                );
            }
            "build.step-committed" => {
                assert!(
                    run_until_killed(
                        &lab,
                        point,
                        &["build", "-t", "built:v1", "-"],
                        Some(DOCKERFILE)
                    ),
                    "{point}"
                );
                assert_recovers(&lab, point);
                let mut build = lab.cmd(&["build", "-t", "built:v1", "-"]);
                build
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = build.spawn().unwrap();
                {
                    use std::io::Write;
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(DOCKERFILE.as_bytes())
                        .unwrap();
                }
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "build again: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let r = lab.tb(&["run", "--rm", "built:v1", "cat", "/built.txt", "/again.txt"]);
                assert_eq!(r.stdout, "built\nagain\n", "{}", r.stderr);
            }
            "vm.created" => {
                // killed right after the record is written, before any boot: an
                // explicit kernel passes the host check on any KVM (PVM too)
                let Some(kernel) =
                    common::newest_kernel().filter(|_| Path::new("/dev/kvm").exists())
                else {
                    eprintln!("{point}: no /dev/kvm or no kernel in /boot, scenario skipped");
                    covered.insert(point);
                    continue;
                };
                let vm = |extra: &[&str]| {
                    let mut a = vec!["vm", "run", "--kernel", kernel.as_str()];
                    a.extend_from_slice(extra);
                    a.extend_from_slice(&["busybox", "true"]);
                    a.into_iter().map(String::from).collect::<Vec<_>>()
                };
                let args = vm(&["--rm"]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert!(run_until_killed(&lab, point, &args, None), "{point}");
                assert_recovers(&lab, point);
                let left = lab.tb(&["vm", "ps", "-a", "-q"]);
                assert!(
                    left.stdout.trim().is_empty(),
                    "--rm VM left: {}",
                    left.stdout
                );
                let args = vm(&["--name", "kept"]);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert!(run_until_killed(&lab, point, &args, None), "{point}");
                assert_recovers(&lab, point);
                let ps = lab.tb(&["vm", "ps", "-a"]);
                let line = ps.stdout.lines().find(|l| l.contains("kept")).unwrap_or("");
                assert!(
                    line.contains("Failed (its twinbox process died)"),
                    "a kept VM is recorded as ended: {}",
                    ps.stdout
                );
                assert_eq!(lab.tb(&["vm", "rm", "kept"]).code, 0);
            }
            "vm.disk-built" | "vm.disk-cached" => {
                // the disk build runs on the host (mke2fs), before any boot
                let Some(kernel) =
                    common::newest_kernel().filter(|_| Path::new("/dev/kvm").exists())
                else {
                    eprintln!("{point}: no /dev/kvm or no kernel in /boot, scenario skipped");
                    covered.insert(point);
                    continue;
                };
                if Command::new("mke2fs").arg("-V").output().is_err() {
                    eprintln!("{point}: no mke2fs (e2fsprogs), scenario skipped");
                    covered.insert(point);
                    continue;
                }
                // two layers, so the build mounts an overlay of them in its scratch
                if lab.tb(&["image", "inspect", "disky:v1"]).code != 0 {
                    let ctx = lab.root().join("disky");
                    std::fs::create_dir_all(&ctx).unwrap();
                    std::fs::write(
                        ctx.join("Dockerfile"),
                        "FROM busybox\nRUN echo disk > /disk.txt\n",
                    )
                    .unwrap();
                    let ctx = ctx.to_string_lossy().into_owned();
                    let b = lab.tb(&["build", "--network", "none", "-q", "-t", "disky:v1", &ctx]);
                    assert_eq!(b.code, 0, "{}", b.stderr);
                }
                let args = [
                    "vm", "run", "--rm", "--rootfs", "disk", "--kernel", &kernel, "disky:v1",
                    "true",
                ];
                assert!(run_until_killed(&lab, point, &args, None), "{point}");
                let tmp = lab.root().join("tmp");
                if point == "vm.disk-built" {
                    // the scenario is real: the dead build left its layers mounted
                    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
                    let tmp_str = tmp.to_string_lossy().into_owned();
                    assert!(
                        mounts.lines().any(|l| l.contains(&tmp_str)),
                        "{point}: the killed build had its layers mounted under tmp/"
                    );
                }
                assert_recovers(&lab, point);
                let scratch: Vec<_> = std::fs::read_dir(&tmp)
                    .unwrap()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("disk-"))
                    .collect();
                assert!(scratch.is_empty(), "{point}: scratch left: {scratch:?}");
                let disks: Vec<_> = std::fs::read_dir(lab.root().join("cache/disks"))
                    .map(|d| d.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default();
                if point == "vm.disk-built" {
                    assert!(
                        disks.is_empty(),
                        "{point}: a partial disk is cached: {disks:?}"
                    );
                } else {
                    // the build after the first crash worked: one whole disk holding the file
                    assert_eq!(disks.len(), 1, "{point}: {disks:?}");
                    let cat = Command::new("debugfs")
                        .args(["-R", "cat /disk.txt"])
                        .arg(&disks[0])
                        .output()
                        .unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&cat.stdout),
                        "disk\n",
                        "{point}: {}",
                        String::from_utf8_lossy(&cat.stderr)
                    );
                    let fsck = Command::new("e2fsck")
                        .arg("-fn")
                        .arg(&disks[0])
                        .output()
                        .unwrap();
                    assert!(
                        fsck.status.success(),
                        "{point}: the cached disk is whole: {}",
                        String::from_utf8_lossy(&fsck.stdout)
                    );
                }
                let left = lab.tb(&["vm", "ps", "-a", "-q"]);
                assert!(
                    left.stdout.trim().is_empty(),
                    "--rm VM left: {}",
                    left.stdout
                );
            }
            other => panic!("crash point {other} has no scenario in this test: add one"),
        }
        covered.insert(point);
    }
    eprintln!(
        "crash points covered: {}",
        covered.iter().copied().collect::<Vec<_>>().join(", ")
    );
    assert_eq!(covered.len(), POINTS.len());
}

#[test]
fn kills_at_random_moments_leave_a_clean_working_store() {
    let Some(lab) = lab() else { return };
    let tar = rootfs_tar(&lab);
    // deterministic "random" delays spread over each operation's whole length
    let delays_ms = [0u64, 3, 7, 15, 25, 40, 70, 110];
    for (i, delay) in delays_ms.iter().enumerate() {
        let name = format!("rand{i}:v1");
        let scenarios: [&[&str]; 3] = [
            &["import", &tar, &name],
            &[
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                "echo x > /tmp/x; sleep 1",
            ],
            &["run", "-d", "busybox", "true"],
        ];
        for args in scenarios {
            let mut child = lab
                .cmd(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(*delay));
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_recovers(&lab, &format!("random kills after {delay} ms"));
    }
}
