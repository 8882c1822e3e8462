//! Many twinbox commands at once: no error but a clear "in use", no corruption,
//! and nothing left behind. Needs root. The counts below are host-wide, so this
//! file keeps its scenarios in one test that runs them one after another.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{lab, Lab};

/// What a leak would grow: mounts, pinned network namespaces, twinbox cgroups
/// (in every hierarchy), processes and their open file descriptors, network
/// links, netfilter rules and address leases on this host.
#[derive(Debug)]
struct Counts {
    mounts: usize,
    netns: usize,
    cgroups: usize,
    processes: usize,
    fds: usize,
    links: usize,
    rules: usize,
    leases: usize,
}

fn count_lines(program: &str, args: &[&str]) -> usize {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// Directories below every `twinbox` cgroup parent: the unified one on v2, one
/// per controller hierarchy on v1.
fn twinbox_cgroups() -> usize {
    let parents: Vec<std::path::PathBuf> =
        if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            vec!["/sys/fs/cgroup/twinbox".into()]
        } else {
            std::fs::read_dir("/sys/fs/cgroup")
                .map(|d| d.flatten().map(|e| e.path().join("twinbox")).collect())
                .unwrap_or_default()
        };
    parents
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .count()
}

/// Addresses handed out on every twinbox network of this host (host-local's
/// lease files, one per address, beside its lock and last-reserved files).
fn leases() -> usize {
    let Ok(networks) = std::fs::read_dir("/run/twinbox/ipam") else {
        return 0;
    };
    networks
        .flatten()
        .filter_map(|n| std::fs::read_dir(n.path()).ok())
        .flat_map(|d| d.flatten())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok())
        })
        .count()
}

fn counts(lab: &Lab) -> Counts {
    let root = lab.root().to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    // twinbox processes of this store (supervisors carry --root STORE)
    let processes: Vec<std::path::PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read(p.join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&root))
        })
        .collect();
    Counts {
        mounts: mountinfo.lines().count(),
        // a container's network namespace is pinned by an nsfs bind mount
        netns: mountinfo
            .lines()
            .filter(|l| {
                l.split(" - ")
                    .nth(1)
                    .is_some_and(|t| t.starts_with("nsfs "))
            })
            .count(),
        cgroups: twinbox_cgroups(),
        fds: processes
            .iter()
            .filter_map(|p| std::fs::read_dir(p.join("fd")).ok())
            .map(|d| d.count())
            .sum(),
        processes: processes.len(),
        links: count_lines("ip", &["-o", "link"]),
        rules: count_lines("iptables-save", &[]),
        leases: leases(),
    }
}

fn spawn_quiet(lab: &Lab, args: &[&str]) -> Child {
    lab.cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_all(children: Vec<Child>) -> Vec<(i32, String)> {
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

fn assert_check_clean(lab: &Lab, after: &str) {
    let check = lab.tb(&["system", "check"]);
    assert_eq!(
        check.code, 0,
        "after {after}: {}{}",
        check.stdout, check.stderr
    );
}

impl Counts {
    /// No count grew. Host-wide counts can only shrink through other programs
    /// (other tests on a shared machine ending their containers), never through
    /// this test, so a leak here shows as growth.
    fn none_above(&self, before: &Counts) -> bool {
        self.mounts <= before.mounts
            && self.netns <= before.netns
            && self.cgroups <= before.cgroups
            && self.processes <= before.processes
            && self.fds <= before.fds
            && self.links <= before.links
            && self.rules <= before.rules
            && self.leases <= before.leases
    }
}

/// Waits until the host-wide counts are back to at most `before` (exiting
/// processes and cgroups go asynchronously), then compares.
fn assert_counts_return(lab: &Lab, before: &Counts, after: &str) {
    let start = Instant::now();
    loop {
        let now = counts(lab);
        if now.none_above(before) {
            return;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("after {after}: counts before {before:?}, now {now:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn many_commands_at_once_leave_no_error_no_corruption_no_leak() {
    let Some(lab) = lab() else { return };
    // warm up once so first-use work (cgroup parents, caches) is not a "leak"
    assert_eq!(lab.tb(&["run", "--rm", "busybox", "true"]).code, 0);
    let before = counts(&lab);

    // 1. a hundred `run --rm` at once on the default bridge (each runs the CNI
    //    bridge plugin and its address allocator; NAT and forwarding are rules
    //    per network, so no iptables work per container), and twenty without a
    //    network beside them
    let runs: Vec<Child> = (0..100)
        .map(|i| {
            spawn_quiet(
                &lab,
                &["run", "--rm", "busybox", "sh", "-c", &format!("echo b{i}")],
            )
        })
        .chain((0..20).map(|i| {
            spawn_quiet(
                &lab,
                &[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "busybox",
                    "sh",
                    "-c",
                    &format!("echo {i}"),
                ],
            )
        }))
        .collect();
    for (code, err) in wait_all(runs) {
        assert_eq!(code, 0, "a concurrent run failed: {err}");
    }
    assert!(
        lab.tb(&["ps", "-aq"]).stdout.trim().is_empty(),
        "no record left"
    );
    assert_check_clean(&lab, "120 concurrent runs (100 on the bridge)");
    assert_counts_return(&lab, &before, "120 concurrent runs (100 on the bridge)");

    // 2. parallel loads of the same archive
    let archive = lab.root().join("bb.tar");
    assert_eq!(
        lab.tb(&["save", "-o", archive.to_str().unwrap(), "busybox"])
            .code,
        0
    );
    assert_eq!(lab.tb(&["tag", "busybox", "keep:v1"]).code, 0);
    assert_eq!(lab.tb(&["rmi", "busybox"]).code, 0);
    let loads: Vec<Child> = (0..4)
        .map(|_| spawn_quiet(&lab, &["load", "-i", archive.to_str().unwrap()]))
        .collect();
    for (code, err) in wait_all(loads) {
        assert_eq!(code, 0, "a parallel load failed: {err}");
    }
    assert_check_clean(&lab, "parallel loads");
    assert_eq!(lab.sh("echo ok").stdout.trim(), "ok");

    // 3. rmi while containers of that image start: each side either succeeds or
    //    says clearly what is in the way; the store stays whole
    let tar = lab.root().join("rootfs.tar");
    common::tar_with_file(
        &tar,
        "bin/sh",
        &std::fs::read("/bin/busybox").unwrap(),
        0o755,
    );
    for round in 0..3 {
        assert_eq!(
            lab.tb(&["import", tar.to_str().unwrap(), "racy:v1"]).code,
            0
        );
        let starter = spawn_quiet(&lab, &["run", "--rm", "racy:v1", "/bin/sh", "-c", "exit 0"]);
        std::thread::sleep(Duration::from_millis(round * 5));
        let remover = spawn_quiet(&lab, &["rmi", "racy:v1"]);
        let results = wait_all(vec![starter, remover]);
        for (code, err) in &results {
            let clear = *code == 0
                || err.contains("used by container")
                || err.contains("no such image")
                || err.contains("not found")
                || err.contains("in use");
            assert!(clear, "round {round}: unclear failure (code {code}): {err}");
        }
        let _ = lab.tb(&["rmi", "-f", "racy:v1"]);
        assert_check_clean(&lab, &format!("rmi race round {round}"));
    }

    // 4. parallel builds of one context share the build cache: all succeed,
    //    give the same image, and the store stays whole
    let ctx = lab.root().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("app.txt"), "hello\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM keep:v1\nRUN echo built > /built\nCOPY app.txt /app/\nCMD [\"cat\", \"/app/app.txt\"]\n",
    )
    .unwrap();
    let builds: Vec<Child> = (0..4)
        .map(|i| {
            spawn_quiet(
                &lab,
                &[
                    "build",
                    "--network",
                    "none",
                    "-q",
                    "-t",
                    &format!("par:{i}"),
                    ctx.to_str().unwrap(),
                ],
            )
        })
        .collect();
    for (code, err) in wait_all(builds) {
        assert_eq!(code, 0, "a parallel build failed: {err}");
    }
    // a build after them finds every step in the shared cache
    let again = lab.tb(&[
        "build",
        "--network",
        "none",
        "--progress",
        "plain",
        "-t",
        "par:again",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let log = format!("{}{}", again.stdout, again.stderr);
    assert_eq!(
        log.matches("CACHED").count(),
        2,
        "RUN and COPY cached: {log}"
    );
    assert_check_clean(&lab, "parallel builds");
    for i in 0..4 {
        let r = lab.tb(&["run", "--rm", "--network", "none", &format!("par:{i}")]);
        assert_eq!(r.stdout.trim(), "hello", "par:{i}: {}", r.stderr);
    }

    // 5. 500 start/remove cycles, then the counts must be what they were: most
    //    without a network (fast), some on the default bridge (veth, address,
    //    rules), some detached and force-removed while running. A long-lived
    //    detached container runs throughout, and is exec'd into and its logs
    //    read between cycles: its supervisor's file descriptors must not grow.
    assert_eq!(lab.tb(&["tag", "keep:v1", "busybox"]).code, 0);
    let keeper = lab.tb(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "busybox",
        "sh",
        "-c",
        "echo up; exec sleep 600",
    ]);
    assert_eq!(keeper.code, 0, "{}", keeper.stderr);
    // let the supervisor reach its steady state (log relay open, child waited on)
    assert_eq!(lab.tb(&["exec", "keeper", "true"]).code, 0);
    let with_keeper = counts(&lab);
    assert!(
        with_keeper.processes > before.processes && with_keeper.fds > before.fds,
        "the keeper's supervisor is counted: {before:?} then {with_keeper:?}"
    );
    for i in 0..400 {
        let r = lab.tb(&["run", "--rm", "--network", "none", "busybox", "true"]);
        assert_eq!(r.code, 0, "cycle {i}: {}", r.stderr);
        if i % 8 == 0 {
            let e = lab.tb(&["exec", "keeper", "true"]);
            assert_eq!(e.code, 0, "exec {i}: {}", e.stderr);
            let l = lab.tb(&["logs", "keeper"]);
            assert_eq!(l.stdout.trim(), "up", "logs {i}: {}", l.stderr);
        }
    }
    for i in 0..50 {
        let r = lab.tb(&["run", "--rm", "busybox", "true"]);
        assert_eq!(r.code, 0, "bridge cycle {i}: {}", r.stderr);
    }
    for i in 0..50 {
        let r = lab.tb(&[
            "run",
            "-d",
            "--name",
            &format!("cycle{i}"),
            "busybox",
            "sleep",
            "30",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(lab.tb(&["rm", "-f", &format!("cycle{i}")]).code, 0);
    }
    assert_check_clean(&lab, "start/remove cycles");
    assert_counts_return(
        &lab,
        &with_keeper,
        "500 start/remove cycles beside a long-lived container",
    );
    assert_eq!(lab.tb(&["rm", "-f", "keeper"]).code, 0);
    assert_counts_return(&lab, &before, "500 start/remove cycles");
}
