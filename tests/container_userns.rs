//! `run --userns=auto`: root in the container is an unprivileged id range on
//! the host, the image's files still belong to root inside (idmapped layers),
//! host files the range does not own stay out of reach, and `--userns=host`
//! is what it always was.

mod common;

use common::lab;

/// (container id, host id, size) of the first line of a uid_map.
fn first_map(text: &str) -> (u64, u64, u64) {
    let f: Vec<u64> = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

fn host_uid(pid: i64) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let ids: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{line}");
    ids[0]
}

#[test]
fn auto_maps_root_to_a_range_of_its_own_that_rm_frees() {
    let Some(lab) = lab() else { return };
    let start = |name: &str| {
        let r = lab.tb(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--userns=auto",
            "busybox",
            "sleep",
            "60",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let pid = lab.inspect(name)["State"]["Pid"].as_i64().unwrap();
        let map = lab.tb(&["exec", name, "cat", "/proc/self/uid_map"]);
        assert_eq!(map.code, 0, "{}", map.stderr);
        (pid, first_map(&map.stdout))
    };
    let (pid_a, (inside, base_a, size)) = start("ua");
    assert_eq!((inside, size), (0, 65536), "root and 65535 more ids mapped");
    assert!(
        base_a >= 65536,
        "root inside is not a host system id: {base_a}"
    );
    assert_eq!(
        host_uid(pid_a),
        base_a,
        "the host sees the range's first id"
    );
    let host_config = &lab.inspect("ua")["HostConfig"];
    assert_eq!(host_config["UsernsMode"], "auto");
    assert_eq!(
        host_config["IDMappings"]["UidMap"][0],
        format!("0:{base_a}:65536")
    );
    let (pid_b, (_, base_b, _)) = start("ub");
    assert_eq!(host_uid(pid_b), base_b);
    assert!(
        base_b >= base_a + 65536 || base_a >= base_b + 65536,
        "ranges overlap: {base_a} and {base_b}"
    );

    // inside: root, and the image's files are root's; its own root dir is writable
    let r = lab.tb(&[
        "exec",
        "ua",
        "sh",
        "-c",
        "id -u; stat -c '%u:%g' /bin/busybox /etc/passwd /; touch /made && stat -c %u /made",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "0:0", "0:0", "0:0", "0"]
    );
    // the file it made is the range's on the host, in the writable layer
    let id = lab.inspect("ua")["Id"].as_str().unwrap().to_string();
    let made = lab.containers_dir().join(&id).join("upper/made");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&made).unwrap().uid() as u64, base_a);

    // rm frees the range: the next container may take it again
    assert_eq!(lab.tb(&["rm", "-f", "ua"]).code, 0);
    let (_, (_, base_c, _)) = start("uc");
    assert_eq!(base_c, base_a, "the freed range is handed out again");
    assert_eq!(lab.tb(&["rm", "-f", "ub", "uc"]).code, 0);
}

#[test]
fn a_root_owned_bind_mount_is_out_of_reach_under_auto_and_writable_under_host() {
    let Some(lab) = lab() else { return };
    let dir = lab.root().join("hostdir");
    std::fs::create_dir(&dir).unwrap();
    let vol = format!("{}:/data", dir.display());
    let try_write = |userns: &str| {
        lab.tb(&[
            "run",
            "--rm",
            "--network",
            "none",
            userns,
            "-v",
            &vol,
            "busybox",
            "sh",
            "-c",
            "stat -c %u /data; touch /data/f",
        ])
    };
    let r = try_write("--userns=auto");
    assert_ne!(
        r.code, 0,
        "root of a user namespace wrote a host root's directory"
    );
    assert_eq!(r.stdout.trim(), "65534", "the host's root is nobody inside");
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(!dir.join("f").exists());
    let r = try_write("--userns=host");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "0");
    assert!(dir.join("f").exists());
}

#[test]
fn host_is_unchanged_and_the_default() {
    let Some(lab) = lab() else { return };
    for args in [&["--userns=host"][..], &[]] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(args);
        a.extend(["busybox", "cat", "/proc/self/uid_map"]);
        let r = lab.tb(&a);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(first_map(&r.stdout), (0, 0, 4294967295), "{args:?}");
    }
}

#[test]
fn auto_works_on_a_cni_network_and_a_bad_mode_is_refused() {
    let Some(lab) = lab() else { return };
    // the network namespace belongs to the host's user namespace: joined by the runtime
    let r = lab.tb(&[
        "run",
        "--rm",
        "--userns=auto",
        "busybox",
        "sh",
        "-c",
        "id -u; ip -o -4 addr show eth0 | grep -c inet",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), ["0", "1"]);

    let r = lab.tb(&["run", "--rm", "--userns=keep-id", "busybox", "true"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("--userns \"keep-id\": use auto"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.container_count(), 0, "nothing left behind");
}
