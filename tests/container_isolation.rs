//! What a container shares with the host and what it does not, checked on the
//! real binary with real namespaces, overlayfs and cgroups (root only).

mod common;

use common::{host, lab};

#[test]
fn kernel_is_the_hosts() {
    let Some(lab) = lab() else { return };
    let r = lab.sh("uname -r; cat /proc/sys/kernel/random/boot_id");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    assert_eq!(lines.next().unwrap(), host("uname", &["-r"]));
    let host_boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(lines.next().unwrap(), host_boot_id.trim());
}

#[test]
fn workload_is_pid_one_and_host_processes_are_hidden() {
    let Some(lab) = lab() else { return };
    let me = std::process::id();
    let r = lab.sh(&format!(
        "echo $$; ls /proc | grep -c '^[0-9]'; test -e /proc/{me} && echo sees-host; true"
    ));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "1", "the workload is PID 1 in its namespace");
    let visible: usize = lines[1].parse().unwrap();
    assert!(
        visible <= 3,
        "only the container's own processes are visible, saw {visible}"
    );
    assert!(!r.stdout.contains("sees-host"));
}

#[test]
fn container_process_is_visible_from_the_host_under_another_pid() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "30"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let info = lab.inspect("sleeper");
    let pid = info["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 1);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).starts_with("sleep"));
    let ns_host = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns_ctr = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_ne!(ns_host, ns_ctr, "the container has its own PID namespace");
    assert_eq!(lab.tb(&["rm", "-f", "sleeper"]).code, 0);
}

#[test]
fn hostname_is_its_own() {
    let Some(lab) = lab() else { return };
    let r = lab.sh("hostname");
    assert_ne!(r.stdout.trim(), host("hostname", &[]));
    assert_eq!(r.stdout.trim().len(), 12, "defaults to the short id");
    let r = lab.tb(&[
        "run",
        "--rm",
        "--hostname",
        "lab-box",
        "busybox",
        "hostname",
    ]);
    assert_eq!(r.stdout.trim(), "lab-box");
    // -h is Docker's short form of --hostname (help stays --help)
    let r = lab.tb(&["run", "--rm", "-h", "short-box", "busybox", "hostname"]);
    assert_eq!(r.stdout.trim(), "short-box", "{}", r.stderr);
    for verb in ["run", "create"] {
        let r = lab.tb(&[verb, "--help"]);
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains("-h, --hostname"), "{}", r.stdout);
    }
}

#[test]
fn network_none_has_only_loopback_and_host_shares() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), vec!["lo"]);
    // the host's own network namespace, and so its interfaces (other tests
    // add and remove veths meanwhile: only the ones there before and after
    // must be seen)
    let before = host("ls", &["/sys/class/net"]);
    let r = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/net; ls /sys/class/net",
    ]);
    let after = host("ls", &["/sys/class/net"]);
    let mut lines = r.stdout.split_whitespace();
    let ns = lines.next().unwrap_or_default();
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(ns, host_ns.display().to_string(), "{}", r.stderr);
    let seen: Vec<&str> = lines.collect();
    let after: Vec<&str> = after.split_whitespace().collect();
    for iface in before.split_whitespace().filter(|i| after.contains(i)) {
        assert!(seen.contains(&iface), "{iface} not seen in {seen:?}");
    }
}

#[test]
fn files_written_in_one_container_are_gone_in_the_next() {
    let Some(lab) = lab() else { return };
    assert_eq!(
        lab.sh("echo data > /tmp/note && cat /tmp/note")
            .stdout
            .trim(),
        "data"
    );
    let r = lab.sh("cat /tmp/note");
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);
}

#[test]
fn hardening_matches_docker_defaults() {
    let Some(lab) = lab() else { return };
    // a masked path that this kernel has: reads as empty inside
    let masked = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap();
    let r = lab.sh(&format!(
        "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status; \
         wc -c < {masked}; (echo x > /proc/sys/kernel/hostname) 2>&1; mount -t tmpfs t /mnt 2>&1; echo done"
    ));
    assert!(
        r.stdout.contains("CapEff:\t00000000a80425fb"),
        "{}",
        r.stdout
    );
    // as Docker: setuid programs and file capabilities work unless
    // `--security-opt no-new-privileges` asks otherwise
    assert!(r.stdout.contains("NoNewPrivs:\t0"), "{}", r.stdout);
    assert!(r.stdout.contains("Seccomp:\t2"));
    assert!(
        r.stdout.lines().any(|l| l.trim() == "0"),
        "{masked} is masked: {}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Read-only file system") || r.stdout.contains("Permission denied"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.to_lowercase().contains("permission denied"),
        "mount is refused: {}",
        r.stdout
    );
}

#[test]
fn user_workdir_env_and_read_only_root() {
    let Some(lab) = lab() else { return };
    let env_file = lab.root().join("env.list");
    std::fs::write(&env_file, "# course settings\nFROM_FILE=yes\n").unwrap();
    let r = lab.tb(&[
        "run",
        "--rm",
        "-u",
        "65534",
        "-w",
        "/work/dir",
        "-e",
        "GREETING=hi there",
        "--env-file",
        env_file.to_str().unwrap(),
        "--read-only",
        "busybox",
        "sh",
        "-c",
        "id -u; pwd; echo $GREETING $FROM_FILE; touch /x 2>&1; grep CapEff /proc/self/status",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(lines[1], "/work/dir");
    assert_eq!(lines[2], "hi there yes");
    assert!(lines[3].contains("Read-only file system"), "{}", lines[3]);
    assert!(
        lines[4].ends_with("0000000000000000"),
        "a non-root user holds no capabilities"
    );
}

#[test]
fn the_workload_starts_with_default_signals_whatever_twinbox_inherited() {
    use std::os::unix::process::CommandExt;
    let Some(lab) = lab() else { return };
    let mut cmd = lab.cmd(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    // as a shell's `twinbox run ... &` starts it: SIGINT and SIGQUIT ignored
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::signal(libc::SIGQUIT, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("missing")
            .to_string()
    };
    assert_eq!(field("SigIgn:"), "0000000000000000", "{status}");
    assert_eq!(field("SigBlk:"), "0000000000000000", "{status}");
}
