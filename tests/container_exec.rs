//! `exec` and terminals: an exec'd process is confined exactly like the
//! container's own (checked from inside against the host's view of the init),
//! and `-t` sessions work through a real pseudo-terminal.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::terminal::{find, Terminal};
use common::*;

fn init_pid(lab: &Lab, name: &str) -> i64 {
    lab.inspect(name)["State"]["Pid"].as_i64().unwrap()
}

const NAMESPACES: [&str; 6] = ["mnt", "pid", "net", "uts", "ipc", "cgroup"];

#[test]
fn exec_joins_the_container_and_its_confinement() {
    let Some(lab) = lab() else { return };
    // no_new_privs is off by default: asked for, exec must carry it too
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "ex-a",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pid = init_pid(&lab, "ex-a");

    // namespaces and confinement, read from inside by the exec'd process
    let script = "for n in mnt pid net uts ipc cgroup; do readlink /proc/self/ns/$n; done; \
                  grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; \
                  cat /proc/kcore | wc -c; echo pid=$$";
    let r = lab.tb(&["exec", "ex-a", "sh", "-c", script]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut expected = String::new();
    for n in NAMESPACES {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        expected.push_str(&format!("{}\n", link.display()));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["CapBnd:", "CapEff:", "NoNewPrivs:", "Seccomp:"] {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        assert!(r.stdout.contains(line), "{line:?} missing in {}", r.stdout);
    }
    assert!(
        r.stdout.starts_with(&expected),
        "namespaces differ:\n{}\nexpected:\n{expected}",
        r.stdout
    );
    assert!(r.stdout.contains("Seccomp:\t2"), "{}", r.stdout);
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{}", r.stdout);
    // /proc/kcore is masked (an empty /dev/null bind), and the pid is the container's
    assert!(r.stdout.contains("\n0\n"), "{}", r.stdout);
    let inner_pid: u32 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(inner_pid > 1 && inner_pid < 100, "{}", r.stdout);

    // exit code, user, working directory, environment
    let r = lab.tb(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "GREETING=hi",
        "ex-a",
        "sh",
        "-c",
        "id -u; pwd; echo $GREETING $HOME; grep ^CapEff: /proc/self/status; exit 7",
    ]);
    assert_eq!(r.code, 7, "{}", r.stderr);
    // HOME is the exec user's (from the container's /etc/passwd), as runc sets it
    assert_eq!(
        r.stdout, "65534\n/tmp\nhi /nonexistent\nCapEff:\t0000000000000000\n",
        "{}",
        r.stderr
    );
    // --env-file, and --privileged: every capability of the caller, no seccomp filter
    let env_file = lab.root().join("exec.env");
    std::fs::write(&env_file, "# a comment\nFROM_FILE=yes\n").unwrap();
    let r = lab.tb(&[
        "exec",
        "--privileged",
        "--env-file",
        env_file.to_str().unwrap(),
        "ex-a",
        "sh",
        "-c",
        "echo $FROM_FILE; grep -E '^(CapEff|Seccomp):' /proc/self/status",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let caller = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff = caller.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert_eq!(
        r.stdout,
        format!("yes\n{cap_eff}\nSeccomp:\t0\n"),
        "{}",
        r.stderr
    );
    let r = lab.tb(&["exec", "ex-a", "no-such-program"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr.contains("executable file not found"),
        "{}",
        r.stderr
    );

    // a detached exec keeps running after `exec -d` returns, and top lists it
    let r = lab.tb(&["exec", "-d", "ex-a", "sleep", "4321"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["top", "ex-a"]);
    assert!(r.stdout.contains("sleep 4321"), "{}", r.stdout);
    assert!(r.stdout.contains("sleep 1000"), "{}", r.stdout);

    // -i hands stdin over
    let out = lab.piped(&["exec", "-i", "ex-a", "cat"], b"via stdin\n");
    assert_eq!(out.stdout, "via stdin\n", "{}", out.stderr);

    let r = lab.tb(&["stop", "-t", "1", "ex-a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["exec", "ex-a", "true"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim(), "twinbox: container ex-a is not running");
}

/// Polls the host's /proc until a process runs exactly `argv` (10 s at most).
fn wait_for_process(argv: &[&str]) {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want));
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "no process {argv:?} after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Drives an interactive busybox shell: echo, window size at start and after
/// a resize (SIGWINCH), a terminal name,
/// ctrl-c reaching the foreground process, the exit status, and the user's
/// terminal mode restored afterwards.
fn shell_session(lab: &Lab, args: &[&str]) {
    let mut term = Terminal::new();
    let before = nix::sys::termios::tcgetattr(term.slave.as_fd()).unwrap();
    let mut child = term.spawn_controlling(lab, args);
    term.expect("# ");
    term.send(b"stty size; echo ab''cd\r");
    term.expect("stty size; echo ab''cd"); // echoed as typed
    term.expect("33 101");
    term.expect("abcd");
    // the window grows: the client gets SIGWINCH and passes the size on
    term.resize(41, 132);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        term.send(b"stty size\r");
        let answer = term.expect("# ");
        if answer.contains("41 132") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the container never saw the new size: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // a number no other session uses, so the host can see when it runs
    static SESSIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let secs = 600_000 + (std::process::id() % 100_000) * 10 + n;
    term.send(format!("sleep {secs}\r").as_bytes());
    term.expect(&format!("sleep {secs}"));
    // ctrl-c only once sleep runs: the shell made it the foreground group
    // before exec, and it shows as `sleep SECS` only after exec
    wait_for_process(&["sleep", &secs.to_string()]);
    term.send(b"\x03");
    term.send(b"echo after-$?\r");
    term.expect("after-130");
    term.send(b"exit 3\r");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{args:?}");
    let after = nix::sys::termios::tcgetattr(term.slave.as_fd()).unwrap();
    assert_eq!(
        (before.local_flags, before.input_flags, before.output_flags),
        (after.local_flags, after.input_flags, after.output_flags),
        "terminal mode not restored after {args:?}"
    );
}

#[test]
fn interactive_terminals_for_run_and_exec() {
    let Some(lab) = lab() else { return };
    shell_session(&lab, &["run", "-it", "--rm", "busybox", "sh"]);

    let r = lab.tb(&["run", "-d", "--name", "ex-t", "busybox", "sleep", "1000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    shell_session(&lab, &["exec", "-it", "ex-t", "sh"]);
    // exec's terminal comes from the container's own devpts
    let r = lab.tb(&["exec", "-t", "ex-t", "tty"]);
    assert_eq!(r.stdout.trim(), "/dev/pts/0", "{}", r.stderr);
    // and so does run's (the init opens it after pivot_root), owned by the user
    let r = lab.tb(&[
        "run",
        "--rm",
        "-t",
        "-u",
        "1000",
        "busybox",
        "sh",
        "-c",
        "tty; stat -c %u:%G $(tty); ls /dev/pts",
    ]);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["/dev/pts/0", "1000:tty", "0", "ptmx"],
        "{}",
        r.stderr
    );

    // the output of a -t container is in its log, with the terminal's line ends
    let r = lab.tb(&[
        "run",
        "-t",
        "--name",
        "ex-log",
        "busybox",
        "echo",
        "from a tty",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["logs", "ex-log"]);
    assert_eq!(r.stdout, "from a tty\r\n");
}

/// `run -dit` then `attach`: the shell answers, ctrl-p ctrl-q detaches and
/// leaves it running (its log has what was typed), custom `--detach-keys`
/// work, and once the shell exits `attach` returns its exit code.
#[test]
fn attach_to_a_detached_terminal_and_detach() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["run", "-dit", "--name", "ex-at", "busybox", "sh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let mut term = Terminal::new();
    let before = nix::sys::termios::tcgetattr(term.slave.as_fd()).unwrap();
    let mut child = term.spawn(&lab, &["attach", "ex-at"]);
    term.send(b"stty size; echo at''tached\r");
    term.expect("33 101");
    term.expect("attached");
    term.send(b"\x10\x11");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let after = nix::sys::termios::tcgetattr(term.slave.as_fd()).unwrap();
    assert_eq!(
        before.local_flags, after.local_flags,
        "terminal mode not restored"
    );
    let r = lab.tb(&["ps", "-q"]);
    assert_eq!(r.stdout.lines().count(), 1, "detach stopped the container");
    let r = lab.tb(&["logs", "ex-at"]);
    assert!(r.stdout.contains("attached"), "{:?}", r.stdout);

    // a second attach with other keys; ctrl-p alone passes through
    let mut term = Terminal::new();
    let mut child = term.spawn(&lab, &["attach", "--detach-keys", "ctrl-x,x", "ex-at"]);
    term.send(b"echo second''time\r");
    term.expect("secondtime");
    term.send(b"\x18x");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // the shell exits while attached: attach reports its code
    let mut term = Terminal::new();
    let mut child = term.spawn(&lab, &["attach", "ex-at"]);
    term.send(b"echo bye''now; exit 7\r");
    term.expect("byenow");
    assert_eq!(child.wait().unwrap().code(), Some(7));

    let r = lab.tb(&["attach", "ex-at"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("cannot attach to a stopped container"),
        "{}",
        r.stderr
    );
    let r = lab.tb(&["attach", "--detach-keys", "ctrl-", "ex-at"]);
    assert!(r.stderr.contains("invalid detach keys"), "{}", r.stderr);
}

/// Detaching while the container writes: the supervisor once dropped a leaving
/// client (its write failed) and then read it by a stale position in its poll
/// set, panicked and closed the attach socket; the next attach got ECONNRESET
/// (2 of 4 CI runs). A container printing without pause makes every detach
/// land on output in flight, and each cycle must leave it running and attachable.
#[test]
fn detaching_while_output_flows_keeps_the_container_attachable() {
    let Some(lab) = lab() else { return };
    let loop_ = "i=0; while :; do i=$((i+1)); echo tick$i; usleep 2000; done";
    let r = lab.tb(&[
        "run", "-dit", "--name", "ex-flow", "busybox", "sh", "-c", loop_,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for cycle in 0..25 {
        let mut term = Terminal::new();
        let mut child = term.spawn(&lab, &["attach", "ex-flow"]);
        term.expect("tick");
        term.send(b"\x10\x11");
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "cycle {cycle}: attach did not detach"
        );
        let r = lab.tb(&["inspect", "-f", "{{.State.Status}}", "ex-flow"]);
        assert_eq!(r.stdout.trim(), "running", "cycle {cycle}: {}", r.stderr);
    }
    let r = lab.tb(&["rm", "-f", "ex-flow"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `attach` to containers run without -t, as Docker's: stdout and stderr
/// stream to ours, our input reaches a -i container's stdin, the container's
/// exit code is attach's, signals go to the container (--sig-proxy), and the
/// detach keys leave it running.
#[test]
fn attach_without_a_terminal() {
    use std::process::Stdio;
    let Some(lab) = lab() else { return };
    let script = "echo ready; while read l; do echo \"got $l\"; echo \"err $l\" >&2; \
                  [ \"$l\" = quit ] && exit 4; done";
    let r = lab.tb(&[
        "run", "-di", "--name", "ex-ai", "busybox", "sh", "-c", script,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = lab.piped(&["attach", "ex-ai"], b"one\nquit\n");
    assert_eq!(out.code, 4);
    assert_eq!(out.stdout, "got one\ngot quit\n");
    assert_eq!(out.stderr, "err one\nerr quit\n");
    let r = lab.tb(&["logs", "ex-ai"]);
    assert!(r.stdout.starts_with("ready\ngot one\n"), "{:?}", r.stdout);

    // a signal to attach reaches the container, whose exit code attach returns
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "ex-as",
        "busybox",
        "sh",
        "-c",
        "trap 'echo caught; exit 6' TERM; while true; do echo tick; sleep 0.2; done",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut child = lab
        .cmd(&["attach", "ex-as"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while find(&seen, b"tick").is_none() {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "attach ended before any output");
        seen.extend_from_slice(&buf[..n]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(6));
    assert!(
        find(&seen, b"caught").is_some(),
        "{:?}",
        String::from_utf8_lossy(&seen)
    );

    // the detach keys leave a -i container running
    let r = lab.tb(&["run", "-di", "--name", "ex-ad", "busybox", "sh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut child = lab
        .cmd(&["attach", "ex-ad"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin.write_all(b"echo still''here\n").unwrap();
    let mut seen = Vec::new();
    while find(&seen, b"stillhere\n").is_none() {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "attach ended before any output");
        seen.extend_from_slice(&buf[..n]);
    }
    stdin.write_all(b"\x10\x11").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    drop(stdin);
    let r = lab.tb(&["inspect", "--format", "{{.State.Status}}", "ex-ad"]);
    assert_eq!(r.stdout.trim(), "running", "{}", r.stderr);
    for name in ["ex-ai", "ex-as", "ex-ad"] {
        lab.tb(&["rm", "-f", name]);
    }
}

/// `exec -u NAME` reads the running container's /etc/passwd: a container that
/// made it a link to a host file (an absolute link, which the host's kernel
/// would resolve from the host's root through /proc/PID/root) must have the
/// user looked up in the container, never in the host's file.
#[test]
fn exec_user_lookup_never_follows_a_link_to_the_host() {
    let Some(lab) = lab() else { return };
    let host = lab.root().join("host-passwd");
    std::fs::write(&host, "hostonly:x:4242:4242::/hosthome:/bin/sh\n").unwrap();
    let r = lab.tb(&["run", "-d", "--name", "ex-pw", "busybox", "sleep", "1000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["exec", "-u", "nobody", "ex-pw", "id", "-u"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "65534\n"), "{}", r.stderr);
    let link = format!("rm /etc/passwd && ln -s {} /etc/passwd", host.display());
    let r = lab.tb(&["exec", "ex-pw", "sh", "-c", &link]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["exec", "-u", "hostonly", "ex-pw", "id", "-u"]);
    assert_ne!(r.code, 0, "the host's file named the user: {}", r.stdout);
    assert!(
        r.stderr.contains("not in the image's /etc/passwd"),
        "{}",
        r.stderr
    );
    let r = lab.tb(&["rm", "-f", "ex-pw"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `exec -it` with a standard input that is no terminal refuses as Docker's
/// CLI does (one line, status 1) and runs nothing; `-i` alone and `-t` alone
/// still run.
#[test]
fn exec_it_without_a_terminal_refuses() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run", "-d", "--name", "ex-notty", "busybox", "sleep", "1000",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for input in [&b""[..], b"touch /tmp/ran\n"] {
        let r = lab.piped(&["exec", "-it", "ex-notty", "sh"], input);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert_eq!(r.stderr, "twinbox: the input device is not a TTY\n");
    }
    let r = lab.piped(
        &[
            "exec",
            "-i",
            "ex-notty",
            "sh",
            "-c",
            "cat; test ! -e /tmp/ran",
        ],
        b"piped\n",
    );
    assert_eq!((r.code, r.stdout.as_str()), (0, "piped\n"), "{}", r.stderr);
    let r = lab.tb(&["exec", "-t", "ex-notty", "echo", "t-only"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("t-only"), "{}", r.stdout);
    assert_eq!(lab.tb(&["rm", "-f", "ex-notty"]).code, 0);
}

/// `run -it` with a standard input that is no terminal refuses the same way
/// before anything is created; `run -dit` (nothing attached) still runs.
#[test]
fn run_it_without_a_terminal_refuses_and_creates_nothing() {
    let Some(lab) = lab() else { return };
    let r = lab.piped(&["run", "-it", "--name", "notty", "busybox", "true"], b"");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr, "twinbox: the input device is not a TTY\n");
    assert_eq!(lab.container_count(), 0);
    let r = lab.tb(&["run", "-dit", "--name", "notty-d", "busybox", "sh"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(lab.tb(&["rm", "-f", "notty-d"]).code, 0);
}
