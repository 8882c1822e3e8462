//! Fault injection: twinbox is SIGKILLed at every crash point it names
//! (`TWINBOX_FAULT`, engine/src/fault.rs) and at random moments, during import,
//! load, pull (from a real registry on loopback), build, run, rm, rmi and vm
//! run. After each kill, the next command must find a store that `system
//! check` calls clean, and a normal workload (and the interrupted operation,
//! done again) must work. Each test prints what it covered. Needs root.

mod common;
#[path = "registry/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{lab, Lab};
use harness::Registry;
use twinbox_engine::fault::POINTS;

fn rootfs_tar(lab: &Lab) -> String {
    let path = lab.root().join("rootfs.tar");
    common::tar_with_file(&path, "fault.txt", b"injected\n", 0o644);
    path.to_string_lossy().into_owned()
}

/// Runs twinbox with the crash point armed; true when it died by SIGKILL.
fn run_until_killed(lab: &Lab, point: &str, args: &[&str], stdin: Option<&str>) -> bool {
    run_until_killed_pid(lab, point, args, stdin).is_some()
}

/// Runs twinbox with the crash point armed; its pid when it died by SIGKILL.
fn run_until_killed_pid(lab: &Lab, point: &str, args: &[&str], stdin: Option<&str>) -> Option<u32> {
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
    let pid = child.id();
    (child.wait().unwrap().signal() == Some(libc::SIGKILL)).then_some(pid)
}

/// Build step cgroups (`twinbox/build-PID-*`, in any hierarchy) of the
/// builder with this pid.
fn build_cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    let prefix = format!("build-{pid}-");
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join("twinbox"))
        .chain([std::path::PathBuf::from("/sys/fs/cgroup/twinbox")])
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// The image every ingest scenario brings in: one small layer, as an archive
/// for `import`, a `save`d image for `load`, and a repository in a registry on
/// loopback for `pull`. None of it is left in the store.
struct Sources {
    tar: String,
    archive: String,
    remote: String,
    _registry: Registry,
}

fn sources(lab: &Lab) -> Sources {
    let tar = rootfs_tar(lab);
    let registry = Registry::start();
    let remote = format!("{}/fault/app:v1", registry.host());
    let archive = lab.root().join("faulty-saved.tar");
    let archive = archive.to_string_lossy().into_owned();
    for args in [
        &["import", &tar, "faulty:v1"][..],
        &["save", "-o", &archive, "faulty:v1"],
        &["tag", "faulty:v1", &remote],
        &["push", &remote],
        &["rmi", "faulty:v1", &remote],
    ] {
        let r = lab.tb(args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    Sources {
        tar,
        archive,
        remote,
        _registry: registry,
    }
}

/// The three ways an image comes in through the layer ingest: (what, args, the
/// name it gets).
fn ingests(src: &Sources) -> [(&'static str, Vec<String>, String); 3] {
    let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    [
        (
            "import",
            s(&["import", &src.tar, "faulty:v1"]),
            "faulty:v1".into(),
        ),
        ("load", s(&["load", "-i", &src.archive]), "faulty:v1".into()),
        ("pull", s(&["pull", &src.remote]), src.remote.clone()),
    ]
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
    let src = sources(&lab);
    let tar = src.tar.clone();
    let mut covered = BTreeSet::new();
    let mut operations = BTreeSet::new();
    for &(point, _) in POINTS {
        match point {
            "ingest.staged" | "ingest.blob-installed" | "image.before-ref" => {
                for (what, args, name) in ingests(&src) {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    assert!(run_until_killed(&lab, point, &args, None), "{point} {what}");
                    assert_recovers(&lab, &format!("{point} during {what}"));
                    let again = lab.tb(&args);
                    assert_eq!(
                        again.code, 0,
                        "{what} again after {point}: {}",
                        again.stderr
                    );
                    let r = lab.tb(&["image", "inspect", &name]);
                    assert_eq!(r.code, 0, "{what} after {point}: {}", r.stderr);
                    assert_eq!(lab.tb(&["rmi", &name]).code, 0);
                    operations.insert(what);
                }
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
            "build.step-running" => {
                // killed while a RUN step's process runs in its cgroup
                let pid = run_until_killed_pid(
                    &lab,
                    point,
                    &["build", "--no-cache", "-t", "running:v1", "-"],
                    Some(DOCKERFILE),
                )
                .unwrap_or_else(|| panic!("{point}: not killed"));
                assert_recovers(&lab, point);
                let left = build_cgroups_of(pid);
                assert!(
                    left.is_empty(),
                    "{point}: the step's cgroup is left: {left:?}"
                );
                assert_ne!(lab.tb(&["image", "inspect", "running:v1"]).code, 0);
            }
            "build.step-committed" => {
                assert!(
                    run_until_killed(
                        &lab,
                        point,
                        &["build", "--no-cache", "-t", "built:v1", "-"],
                        Some(DOCKERFILE)
                    ),
                    "{point}"
                );
                assert_recovers(&lab, point);
                let out = lab.piped(&["build", "-t", "built:v1", "-"], DOCKERFILE.as_bytes());
                assert!(out.code == 0, "build again: {}", out.stderr);
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
                    let (content, whole) = read_disk_file(&disks[0], "disk.txt");
                    assert_eq!(content, "disk\n", "{point}: {whole:?}");
                    assert!(
                        whole.is_ok(),
                        "{point}: the cached disk is whole: {whole:?}"
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
        let operation = match point.split('.').next() {
            Some("create" | "run") => "run",
            Some("rm") => "rm",
            Some("rmi") => "rmi",
            Some("build") => "build",
            Some("vm") => "vm run",
            _ => continue, // the ingest points, recorded per operation above
        };
        operations.insert(operation);
    }
    eprintln!(
        "crash points covered: {}",
        covered.iter().copied().collect::<Vec<_>>().join(", ")
    );
    eprintln!(
        "operations killed at a crash point: {}",
        operations.iter().copied().collect::<Vec<_>>().join(", ")
    );
    assert_eq!(covered.len(), POINTS.len());
    for op in ["import", "load", "pull", "build", "run", "rm", "rmi"] {
        assert!(operations.contains(op), "no crash point reached in {op}");
    }
}

/// Kills each operation after a delay; the delays are fixed ("random" only in
/// where they land), spread over each operation's length: short ones for the
/// fast operations, longer ones for build and the registry round trips.
#[test]
fn kills_at_random_moments_leave_a_clean_working_store() {
    let Some(lab) = lab() else { return };
    let src = sources(&lab);
    let tar = src.tar.clone();
    let dockerfile = lab.root().join("random.Dockerfile");
    std::fs::write(
        &dockerfile,
        "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n",
    )
    .unwrap();
    let dockerfile = dockerfile.to_string_lossy().into_owned();
    let ctx = lab.root().join("random-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let ctx = ctx.to_string_lossy().into_owned();
    // an explicit kernel passes the host check on any KVM (PVM too): the kill
    // lands while the VM is being set up or booting
    let kernel = common::newest_kernel().filter(|_| Path::new("/dev/kvm").exists());
    if kernel.is_none() {
        eprintln!("vm run: no /dev/kvm or no kernel in /boot, not killed here");
    }
    let delays_ms = [0u64, 3, 7, 15, 25, 40, 70, 110];
    let mut killed: BTreeSet<&str> = BTreeSet::new();
    for (i, delay) in delays_ms.iter().enumerate() {
        let name = format!("rand{i}:v1");
        let victim = format!("victim{i}");
        let doomed = format!("doomed{i}:v1");
        // what each killed operation needs in place first
        let r = lab.tb(&["run", "-d", "--name", &victim, "busybox", "sleep", "30"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(lab.tb(&["import", &tar, &doomed]).code, 0);
        let scenarios: [(&str, Vec<&str>, u64); 8] = [
            ("import", vec!["import", &tar, &name], 1),
            (
                "run --rm",
                vec![
                    "run",
                    "--rm",
                    "busybox",
                    "sh",
                    "-c",
                    "echo x > /tmp/x; sleep 1",
                ],
                1,
            ),
            ("run -d", vec!["run", "-d", "busybox", "true"], 1),
            ("rm -f", vec!["rm", "-f", &victim], 1),
            ("rmi", vec!["rmi", &doomed], 1),
            ("load", vec!["load", "-i", &src.archive], 2),
            ("pull", vec!["pull", &src.remote], 2),
            (
                "build",
                vec![
                    "build",
                    "--no-cache",
                    "--network",
                    "none",
                    "-f",
                    &dockerfile,
                    "-t",
                    "randbuilt:v1",
                    &ctx,
                ],
                8,
            ),
        ];
        let vm: Vec<&str> = match &kernel {
            Some(k) => vec!["vm", "run", "--rm", "--kernel", k, "busybox", "true"],
            None => vec![],
        };
        let vm_scenario = (!vm.is_empty()).then_some(("vm run", vm, 8));
        for (what, args, scale) in scenarios.into_iter().chain(vm_scenario) {
            // the image comes in for real each time: not there before
            if what == "load" || what == "pull" {
                let _ = lab.tb(&["rmi", "faulty:v1", &src.remote]);
            }
            let mut child = lab
                .cmd(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay * scale));
            let _ = child.kill();
            let _ = child.wait();
            killed.insert(what);
        }
        assert_recovers(&lab, &format!("random kills after {delay} ms"));
        // what was interrupted can be done again or is done
        let r = lab.tb(&["rm", "-f", &victim]);
        assert!(
            r.code == 0 || r.stderr.contains("no such container"),
            "rm -f {victim} again: {}",
            r.stderr
        );
        let _ = lab.tb(&["rmi", &doomed]);
        assert_ne!(lab.tb(&["image", "inspect", &doomed]).code, 0);
        let vms = lab.tb(&["vm", "ps", "-a", "-q"]);
        assert!(vms.stdout.trim().is_empty(), "--rm VM left: {}", vms.stdout);
        for args in [&["load", "-i", &src.archive][..], &["pull", &src.remote]] {
            let r = lab.tb(args);
            assert_eq!(r.code, 0, "{args:?} after random kills: {}", r.stderr);
        }
    }
    let b = lab.tb(&[
        "build",
        "--network",
        "none",
        "-f",
        &dockerfile,
        "-t",
        "randbuilt:v1",
        &ctx,
    ]);
    assert_eq!(b.code, 0, "build after random kills: {}", b.stderr);
    let r = lab.tb(&["run", "--rm", "randbuilt:v1", "cat", "/one", "/two"]);
    assert_eq!(r.stdout, "one\ntwo\n", "{}", r.stderr);
    eprintln!(
        "operations killed at {} moments each: {}",
        delays_ms.len(),
        killed.iter().copied().collect::<Vec<_>>().join(", ")
    );
}

/// A file of an image disk, read by its file system's own tools (EROFS where
/// mkfs.erofs is installed, else ext4), and whether they find the whole file
/// system sound.
fn read_disk_file(disk: &Path, name: &str) -> (String, Result<(), String>) {
    let verdict = |o: &std::process::Output| {
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    };
    if disk.extension().is_some_and(|e| e == "erofs") {
        let out = tempfile::tempdir().unwrap();
        let root = out.path().join("root");
        let fsck = Command::new("fsck.erofs")
            .arg(format!("--extract={}", root.display()))
            .arg(disk)
            .output()
            .unwrap();
        let content = std::fs::read_to_string(root.join(name)).unwrap_or_default();
        return (content, verdict(&fsck));
    }
    let cat = Command::new("debugfs")
        .args(["-R", &format!("cat /{name}")])
        .arg(disk)
        .output()
        .unwrap();
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(disk)
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&cat.stdout).into_owned(),
        verdict(&fsck),
    )
}
