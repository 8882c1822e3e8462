//! cgroup limits on the real kernel: memory (OOM kill), pids (fork refused), CPU.

mod common;

use common::lab;

#[test]
fn memory_limit_oom_kills_a_hog_and_inspect_says_so() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "head -c 200m /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(r.code, 137, "killed by SIGKILL: {}", r.stderr);
    let info = lab.inspect("hog");
    assert_eq!(info["State"]["OOMKilled"], true);
    assert_eq!(info["HostConfig"]["Memory"], 16 << 20);
    let peak = info["Twinbox"]["MemoryPeakBytes"].as_u64().unwrap();
    assert!(
        peak <= 16 << 20 && peak > 8 << 20,
        "peak {peak} sits at the limit"
    );
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 40); do sleep 3 & done; wait",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("can't fork"), "{}", r.stderr);
    let r = lab.tb(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "for i in $(seq 1 40); do sleep 1 & done; wait",
    ]);
    assert_eq!(
        r.code, 0,
        "without a limit the same loop works: {}",
        r.stderr
    );
}

#[test]
fn cpu_quota_is_written_to_the_cgroup() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run", "-d", "--name", "half", "--cpus", "0.5", "busybox", "sleep", "20",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = lab.inspect("half")["Id"].as_str().unwrap().to_string();
    let v1 = format!("/sys/fs/cgroup/cpu/twinbox/{id}/cpu.cfs_quota_us");
    let v2 = format!("/sys/fs/cgroup/twinbox/{id}/cpu.max");
    let quota = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert!(quota.starts_with("50000"), "{quota}");
    lab.tb(&["rm", "-f", "half"]);
    assert!(
        !std::path::Path::new(&v1).exists() && !std::path::Path::new(&v2).exists(),
        "cgroup removed with the container"
    );
}
