//! User networks end to end (root, real CNI plugins, bridges and netfilter):
//! names and aliases between containers in both start orders, isolation between
//! networks, `--internal`, connect/disconnect, macvlan and dropped-in config
//! lists, TCP/UDP/`-P` publishing, and a start/stop leak count. Each test has its
//! own store (network names are per store), host ports 183xx unique to it, and
//! removes its containers and networks however it ends.

mod common;

use std::net::UdpSocket;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::net::{fetch, free_port, free_udp_port, host_address, kill_supervisor};
use common::{host, lab, Lab, Run};

/// A lab whose containers and networks go when the test ends, pass or fail.
struct NetLab(Lab);

impl Deref for NetLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.0
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd(&["ps", "-a", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        let _ = self.cmd(&["network", "prune", "-f"]).output();
    }
}

fn netlab() -> Option<NetLab> {
    lab().map(NetLab)
}

impl NetLab {
    fn ok(&self, args: &[&str]) -> Run {
        let r = self.tb(args);
        assert_eq!(r.code, 0, "twinbox {args:?}: {}", r.stderr);
        r
    }

    /// `network create ARGS` → the network's inspect JSON.
    fn network(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["network", "create"];
        all.extend_from_slice(args);
        self.ok(&all);
        let name = args.last().unwrap();
        let r = self.ok(&["network", "inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v[0].clone()
    }

    /// A detached busybox httpd answering `hello-NAME`.
    fn web(&self, name: &str, extra: &[&str]) {
        common::net::serve(self, name, extra);
    }

    fn ip_of(&self, name: &str, network: &str) -> String {
        self.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Asserts that a new container on `network` cannot fetch from `target`
    /// (3 s is plenty on a bridge; a dropped SYN would wait minutes). wget runs
    /// in the background: as PID 1 (`sh -c` execs a lone command) it would
    /// ignore timeout's SIGTERM.
    fn blocked(&self, network: &str, target: &str) {
        let r = self.tb(&[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            &format!("timeout 3 wget -qO- http://{target}/ & wait $!"),
        ]);
        assert_ne!(r.code, 0, "{network} reached {target}: {}", r.stdout);
    }

    /// `wget -qO- http://TARGET/` from a new container on `network` (5 s at most).
    fn get_from(&self, network: &str, target: &str) -> Run {
        self.tb(&[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            &format!("timeout 5 wget -qO- http://{target}/ & wait $!"),
        ])
    }

    fn container_dir(&self, name: &str) -> PathBuf {
        let id = self.inspect(name)["Id"].as_str().unwrap().to_string();
        self.containers_dir().join(id)
    }
}

/// Retries a wget inside a running container until it answers (the server may
/// still be starting).
fn exec_get(lab: &NetLab, from: &str, target: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = lab.tb(&[
            "exec",
            from,
            "sh",
            "-c",
            &format!("timeout 5 wget -qO- http://{target}/"),
        ]);
        if r.code == 0 || Instant::now() > deadline {
            return r.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn names_and_aliases_resolve_on_a_user_network_in_both_start_orders() {
    let Some(lab) = netlab() else { return };
    lab.network(&["front"]);
    // the client first, the server after: the client's hosts file learns it
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "client",
        "--network",
        "front",
        "busybox",
        "sleep",
        "60",
    ]);
    lab.web("web", &["--network", "front", "--network-alias", "www"]);
    assert_eq!(exec_get(&lab, "client", "web"), "hello-web\n");
    assert_eq!(exec_get(&lab, "client", "www"), "hello-web\n");
    // the server first: a container started later resolves it at once
    let r = lab.get_from("front", "web");
    assert_eq!(r.stdout, "hello-web\n", "{}", r.stderr);
    let r = lab.get_from("front", "www");
    assert_eq!(r.stdout, "hello-web\n", "{}", r.stderr);
    // and the server resolves the client back
    let r = lab.tb(&[
        "exec",
        "web",
        "sh",
        "-c",
        "ping -c1 -W2 client >/dev/null && echo reached",
    ]);
    assert_eq!(r.stdout.trim(), "reached", "{}", r.stderr);
    // the default bridge resolves no names, as in Docker
    let r = lab.sh("grep -c web /etc/hosts; timeout 5 wget -qO- http://web/ & wait $!");
    assert_ne!(r.code, 0);
    assert_eq!(r.stdout.trim(), "0", "{}", r.stderr);
    // a stopped peer leaves the others' hosts files
    lab.ok(&["stop", "-t", "1", "web"]);
    let r = lab.ok(&["exec", "client", "cat", "/etc/hosts"]);
    assert!(!r.stdout.contains("web"), "{}", r.stdout);
}

#[test]
fn networks_are_isolated_and_internal_has_no_way_out() {
    let Some(lab) = netlab() else { return };
    lab.network(&["iso-a"]);
    lab.network(&["iso-b"]);
    lab.web("web", &["--network", "iso-a"]);
    let ip = lab.ip_of("web", "iso-a");
    assert!(ip.starts_with("10."), "{ip}");
    // same network: reached
    let r = lab.get_from("iso-a", &ip);
    assert_eq!(r.stdout, "hello-web\n", "{}", r.stderr);
    // another user network and the default bridge: dropped by the isolation chains
    lab.blocked("iso-b", &ip);
    lab.blocked("bridge", &ip);
    // and the other way: from iso-a to a server on iso-b
    lab.web("web-b", &["--network", "iso-b"]);
    let ip_b = lab.ip_of("web-b", "iso-b");
    lab.blocked("iso-a", &ip_b);
    // the host reaches both, as with Docker
    assert_eq!(fetch(&format!("http://{ip}:80/")), "hello-web\n");

    // internal: no default route, nothing outside reachable, peers by name are
    let inside = lab.network(&["--internal", "iso-in"]);
    assert_eq!(inside["Internal"], true);
    lab.web("quiet", &["--network", "iso-in"]);
    let r = lab.tb(&[
        "run", "--rm", "--network", "iso-in", "busybox", "sh", "-c",
        &format!("ip route; timeout 5 wget -qO- http://{ip}/ & wait $! || echo unreachable; timeout 5 wget -qO- http://quiet/ & wait $!"),
    ]);
    assert!(!r.stdout.contains("default"), "{}", r.stdout);
    assert!(r.stdout.contains("unreachable"), "{}", r.stdout);
    assert!(
        r.stdout.contains("hello-quiet"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    // nor can anyone on another network get in
    let ip_in = lab.ip_of("quiet", "iso-in");
    lab.blocked("iso-a", &ip_in);
}

#[test]
fn bad_network_input_is_one_line_and_creates_nothing() {
    let Some(lab) = netlab() else { return };
    let net = lab.network(&["--subnet", "10.125.77.0/24", "--label", "team=blue", "used"]);
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.125.77.0/24");
    assert_eq!(net["IPAM"]["Config"][0]["Gateway"], "10.125.77.1");
    assert_eq!(net["Labels"]["team"], "blue");
    lab.ok(&[
        "create",
        "--name",
        "holder",
        "--network",
        "used",
        "busybox",
        "true",
    ]);
    let networks = || lab.ok(&["network", "ls", "-q"]).stdout;
    let before = (networks(), lab.container_count());
    let cases: &[(&[&str], &str)] = &[
        (&["network", "create", "used"], "already exists"),
        (&["network", "create", "bridge"], "predefined"),
        (&["network", "create", "bad/name"], "invalid network name"),
        (&["network", "create", "--subnet", "10.1.2.3", "x1"], "cidr"),
        (
            &["network", "create", "--subnet", "10.125.77.128/25", "x2"],
            "overlaps",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.125.78.0/24",
                "--gateway",
                "10.9.9.9",
                "x3",
            ],
            "gateway",
        ),
        (&["network", "create", "-d", "overlay", "x4"], "overlay"),
        (
            &[
                "network",
                "create",
                "-d",
                "macvlan",
                "-o",
                "parent=nosuchif0",
                "x5",
            ],
            "nosuchif0",
        ),
        (&["network", "rm", "used"], "in use by container holder"),
        (&["network", "rm", "nosuchnet"], "nosuchnet"),
        (&["network", "rm", "bridge"], "predefined"),
        (&["network", "connect", "nosuchnet", "holder"], "nosuchnet"),
        (
            &["run", "--rm", "--network", "nosuchnet", "busybox", "true"],
            "nosuchnet",
        ),
        (
            &["run", "--rm", "--network-alias", "x", "busybox", "true"],
            "user networks only",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "used",
                "--ip",
                "10.125.99.5",
                "busybox",
                "true",
            ],
            "not in the subnet",
        ),
    ];
    for (args, want) in cases {
        let r = lab.tb(args);
        assert_ne!(r.code, 0, "{args:?} succeeded");
        assert!(
            r.stderr.to_lowercase().contains(want),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
    }
    assert_eq!((networks(), lab.container_count()), before);
    // --ip inside the subnet is honoured
    let r = lab.ok(&[
        "run",
        "--rm",
        "--network",
        "used",
        "--ip",
        "10.125.77.77",
        "busybox",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(r.stdout.contains("10.125.77.77/24"), "{}", r.stdout);
    // once the user is gone, prune takes the network and keeps the default
    lab.ok(&["rm", "holder"]);
    let r = lab.ok(&["network", "prune", "-f"]);
    assert!(r.stdout.contains("used"), "{}", r.stdout);
    let left = lab.ok(&["network", "ls", "--format", "{{.Name}}"]).stdout;
    assert!(!left.contains("used") && left.contains("bridge"), "{left}");
}

/// `network ls` as Docker prints it: NETWORK ID, NAME, DRIVER, SCOPE, host and
/// none among the others in natural name order, `-q` the ids (all twelve
/// digits, `--no-trunc` all 64), `-f` Docker's filters; host and none can be
/// inspected by name or id and not removed.
#[test]
fn network_ls_is_dockers() {
    let Some(lab) = netlab() else { return };
    for n in ["lsnet10", "lsnet2", "zlsnet"] {
        lab.ok(&["network", "create", n]);
    }
    let table = lab.ok(&["network", "ls"]).stdout;
    let mut lines = table.lines();
    assert_eq!(
        lines
            .next()
            .unwrap()
            .split("  ")
            .filter(|c| !c.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    assert_eq!(
        names,
        ["bridge", "host", "lsnet2", "lsnet10", "none", "zlsnet"]
    );
    let is_id = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    for r in &rows {
        assert_eq!(r.len(), 4, "{r:?}");
        assert!(is_id(r[0], 12), "{r:?}");
        assert_eq!(r[3], "local");
    }
    let drivers: Vec<&str> = rows.iter().map(|r| r[2]).collect();
    assert_eq!(
        drivers,
        ["bridge", "host", "bridge", "bridge", "null", "bridge"]
    );
    let quiet = lab.ok(&["network", "ls", "-q"]).stdout;
    let ids: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(quiet.lines().collect::<Vec<_>>(), ids);
    let full = lab.ok(&["network", "ls", "-q", "--no-trunc"]).stdout;
    assert!(full.lines().all(|l| is_id(l, 64)), "{full}");
    let only = |f: &[&str]| {
        let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
        for x in f {
            args.extend(["-f", x]);
        }
        lab.ok(&args).stdout
    };
    assert_eq!(only(&["name=lsnet"]), "lsnet2\nlsnet10\nzlsnet\n");
    assert_eq!(only(&["type=builtin"]), "bridge\nhost\nnone\n");
    assert_eq!(only(&["type=custom", "name=lsnet1"]), "lsnet10\n");
    assert_eq!(only(&["driver=null", "driver=host"]), "host\nnone\n");
    assert_eq!(only(&[&format!("id={}", &rows[1][0][..6])]), "host\n");
    let r = lab.tb(&["network", "ls", "-f", "colour=red"]);
    assert_ne!(r.code, 0);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // host and none: inspected by name or id, never removed
    let v: serde_json::Value =
        serde_json::from_str(&lab.ok(&["network", "inspect", rows[4][0]]).stdout).unwrap();
    assert_eq!(
        (v[0]["Name"].as_str(), v[0]["Driver"].as_str()),
        (Some("none"), Some("null"))
    );
    for n in ["host", "none", "bridge", rows[1][0]] {
        let r = lab.tb(&["network", "rm", n]);
        assert_ne!(r.code, 0, "{n}");
        assert!(r.stderr.contains("predefined"), "{}", r.stderr);
    }
    let r = lab.tb(&["network", "connect", "host", "nosuch"]);
    assert!(
        r.code != 0 && r.stderr.contains("run --network host"),
        "{}",
        r.stderr
    );
    let after: Vec<String> = lab
        .ok(&["network", "ls", "-q"])
        .stdout
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(after, ids, "a refused rm removed something");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let Some(lab) = netlab() else { return };
    lab.network(&["con-a"]);
    lab.network(&["con-b"]);
    lab.web("web", &["--network", "con-a"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "con-b",
        "busybox",
        "sleep",
        "60",
    ]);
    let r = lab.tb(&[
        "exec",
        "peer",
        "sh",
        "-c",
        "timeout 3 wget -qO- http://web/",
    ]);
    assert_ne!(r.code, 0, "reached before connect: {}", r.stdout);
    lab.ok(&["network", "connect", "--alias", "api", "con-b", "web"]);
    assert_eq!(exec_get(&lab, "peer", "api"), "hello-web\n");
    assert_eq!(exec_get(&lab, "peer", "web"), "hello-web\n");
    let r = lab.ok(&["exec", "web", "ls", "/sys/class/net"]);
    assert!(r.stdout.contains("eth1"), "{}", r.stdout);
    let net = lab.ok(&["network", "inspect", "con-b"]).stdout;
    assert!(net.contains("\"api\""), "{net}");
    // twice is refused
    let r = lab.tb(&["network", "connect", "con-b", "web"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("already"), "{}", r.stderr);
    lab.ok(&["network", "disconnect", "con-b", "web"]);
    let r = lab.ok(&["exec", "web", "ls", "/sys/class/net"]);
    assert!(!r.stdout.contains("eth1"), "{}", r.stdout);
    let r = lab.ok(&["exec", "peer", "cat", "/etc/hosts"]);
    assert!(!r.stdout.contains("api"), "{}", r.stdout);
    // its first network can be left too, as in Docker, and joined again
    lab.ok(&["network", "disconnect", "con-a", "web"]);
    let r = lab.ok(&["exec", "web", "ls", "/sys/class/net"]);
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let net = lab.ok(&["network", "inspect", "con-a"]).stdout;
    assert!(!net.contains("\"web\""), "{net}");
    lab.ok(&["network", "connect", "con-a", "web"]);
    let r = lab.ok(&["exec", "web", "ls", "/sys/class/net"]);
    assert!(r.stdout.contains("eth0"), "{}", r.stdout);
    // a connection made while stopped is joined at the next start, and a
    // first network left while stopped is not
    lab.ok(&["stop", "-t", "1", "web"]);
    lab.ok(&["network", "connect", "con-b", "web"]);
    lab.ok(&["network", "disconnect", "con-a", "web"]);
    lab.ok(&["start", "web"]);
    assert_eq!(exec_get(&lab, "peer", "web"), "hello-web\n");
    let r = lab.ok(&["exec", "web", "ls", "/sys/class/net"]);
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["eth0", "lo"]
    );
    // nobody is on con-a now: it can go
    lab.ok(&["network", "rm", "con-a"]);
}

#[test]
fn rename_and_container_mode_keep_names_current() {
    let Some(lab) = netlab() else { return };
    lab.network(&["ren-a"]);
    lab.web("web", &["--network", "ren-a"]);
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "ren-a",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(exec_get(&lab, "peer", "web"), "hello-web\n");
    // a running container renamed: peers resolve the new name, not the old
    lab.ok(&["rename", "web", "site"]);
    assert_eq!(exec_get(&lab, "peer", "site"), "hello-web\n");
    let hosts = lab.ok(&["exec", "peer", "cat", "/etc/hosts"]).stdout;
    assert!(!hosts.split_whitespace().any(|w| w == "web"), "{hosts}");
    // container:NAME shares the other's namespace, hostname and /etc/hosts
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "side",
        "--network",
        "container:peer",
        "busybox",
        "sleep",
        "60",
    ]);
    let peer = lab.ok(&["exec", "peer", "hostname"]).stdout;
    let side = lab.ok(&["exec", "side", "hostname"]).stdout;
    assert_eq!(side, peer);
    assert_eq!(exec_get(&lab, "side", "site"), "hello-web\n");
    // a peer that comes later is in the shared file too
    lab.web("late", &["--network", "ren-a"]);
    assert_eq!(exec_get(&lab, "side", "late"), "hello-late\n");
    let r = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "container:peer",
        "--hostname",
        "x",
        "busybox",
        "true",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("conflicting options"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

/// A veth pair of the test's own (the kernel may lack `dummy`): one end is a
/// macvlan parent whose traffic leads nowhere off the machine.
struct Parent(String);

impl Parent {
    fn new() -> Parent {
        let name = format!("tbmp{}", std::process::id() % 100_000);
        let peer = format!("{name}p");
        host(
            "ip",
            &["link", "add", &name, "type", "veth", "peer", "name", &peer],
        );
        host("ip", &["link", "set", &name, "up"]);
        host("ip", &["link", "set", &peer, "up"]);
        Parent(name)
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        host("ip", &["link", "delete", &self.0]);
    }
}

#[test]
fn macvlan_and_dropped_in_config_lists_work_like_built_in_ones() {
    let Some(lab) = netlab() else { return };
    let parent = Parent::new();
    let net = lab.network(&[
        "-d",
        "macvlan",
        "-o",
        &format!("parent={}", parent.0),
        "mac",
    ]);
    assert_eq!(net["Driver"], "macvlan");
    lab.web("mweb", &["--network", "mac"]);
    let r = lab.get_from("mac", "mweb");
    assert_eq!(r.stdout, "hello-mweb\n", "{}", r.stderr);

    // a config list written by hand, with a plugin chain of the user's choice
    let bridge = format!("tbu{}", std::process::id() % 100_000);
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "mine",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.126.201.0/24"}]],
                      "dataDir": lab.root().join("ipam")}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.send_redirects": "0"}}
        ]
    });
    std::fs::create_dir_all(lab.root().join("networks")).unwrap();
    std::fs::write(lab.root().join("networks/mine.conflist"), conf.to_string()).unwrap();
    let r = lab.ok(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(r.stdout.contains("mine bridge\n"), "{}", r.stdout);
    let r = lab.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "mine"]);
    assert!(r.stdout.contains("10.126.201.0/24"), "{}", r.stdout);
    let r = lab.ok(&[
        "run",
        "--rm",
        "--network",
        "mine",
        "busybox",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; cat /proc/sys/net/ipv4/conf/eth0/send_redirects",
    ]);
    assert!(r.stdout.contains("inet 10.126.201."), "{}", r.stdout);
    assert!(r.stdout.trim().ends_with('0'), "{}", r.stdout);
    lab.ok(&["network", "rm", "mine"]);
    host("ip", &["link", "delete", &bridge]);
}

/// Echoes one UDP datagram inside the namespace at `netns` on `port`.
fn udp_echo_in(netns: PathBuf, port: u16) -> std::thread::JoinHandle<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let f = std::fs::File::open(&netns).expect("netns file");
        // this thread only: setns(CLONE_NEWNET) moves the calling thread
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let sock = UdpSocket::bind(("0.0.0.0", port)).expect("bind in netns");
        sock.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut reply = b"echo-".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&reply, from);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("udp echo ready");
    handle
}

fn udp_ask(addr: &str) -> String {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..20 {
        let _ = sock.send_to(b"ping", addr);
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    String::new()
}

#[test]
fn published_tcp_udp_and_publish_all_answer_from_the_host() {
    let Some(lab) = netlab() else { return };
    lab.network(&["pub"]);
    // TCP: busybox httpd with -p, fetched on loopback, 0.0.0.0 and the host address
    let tcp = free_port();
    lab.web("web", &["--network", "pub", "-p", &format!("{tcp}:80")]);
    assert_eq!(fetch(&format!("http://127.0.0.1:{tcp}/")), "hello-web\n");
    assert_eq!(fetch(&format!("http://0.0.0.0:{tcp}/")), "hello-web\n");
    if let Some(ip) = host_address() {
        assert_eq!(fetch(&format!("http://{ip}:{tcp}/")), "hello-web\n");
    }

    // UDP: a datagram to the published port reaches a socket in the container's
    // namespace and the answer comes back through the same mapping
    let udp = free_udp_port();
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "udp",
        "--network",
        "pub",
        "-p",
        &format!("{udp}:9999/udp"),
        "busybox",
        "sleep",
        "60",
    ]);
    let echo = udp_echo_in(lab.container_dir("udp").join("netns"), 9999);
    let target = host_address().unwrap_or_else(|| "127.0.0.1".into());
    assert_eq!(udp_ask(&format!("{target}:{udp}")), "echo-ping");
    echo.join().unwrap();
    let r = lab.ok(&["port", "udp"]);
    assert_eq!(r.stdout.trim(), format!("9999/udp -> 0.0.0.0:{udp}"));

    // -P: every EXPOSEd port of the image on a free high port
    let ctx = lab.root().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nEXPOSE 80 9999/udp\nCMD [\"sh\", \"-c\", \"echo hello-all > /tmp/index.html; exec httpd -f -p 80 -h /tmp\"]\n",
    )
    .unwrap();
    lab.ok(&[
        "build",
        "--network",
        "none",
        "-q",
        "-t",
        "exposer",
        ctx.to_str().unwrap(),
    ]);
    lab.ok(&["run", "-d", "--name", "all", "-P", "exposer"]);
    let r = lab.ok(&["port", "all"]);
    let tcp = r
        .stdout
        .lines()
        .find(|l| l.starts_with("80/tcp -> 0.0.0.0:"))
        .unwrap_or_else(|| panic!("no 80/tcp mapping in {}", r.stdout));
    assert!(r.stdout.contains("9999/udp -> 0.0.0.0:"), "{}", r.stdout);
    let port: u16 = tcp.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port >= 1024, "{port}");
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), "hello-all\n");
}

/// What a user network's containers can leave behind, counted for this test's
/// network only (other tests run at the same time): veths on its bridge,
/// netfilter lines naming it, its leases, namespace mounts of this store, and
/// subnet reservations of this store.
fn footprint(lab: &NetLab, net: &serde_json::Value) -> (usize, usize, usize, usize, usize) {
    let name = net["Name"].as_str().unwrap();
    let bridge = net["Bridge"].as_str().unwrap();
    let subnet = net["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    let prefix = subnet.rsplit_once('.').unwrap().0;
    let veths = host("ip", &["-o", "link", "show", "master", bridge])
        .lines()
        .count();
    let mut rules = host("iptables-save", &[]);
    rules.push_str(&host("iptables-save", &["-t", "nat"]));
    let rules = rules
        .lines()
        .filter(|l| {
            l.contains(bridge)
                || l.contains(&format!("{prefix}."))
                || l.contains(&format!("\\\"{name}\\\""))
        })
        .count();
    let leases = std::fs::read_dir(format!(
        "/run/twinbox/ipam/{}/{name}",
        net["Id"].as_str().unwrap()
    ))
    .map(|d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("10."))
        })
        .count()
    })
    .unwrap_or(0);
    let root = lab.root().display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root) && l.contains("netns"))
        .count();
    let conflist = format!("{root}/networks/{name}.conflist");
    let reservations = std::fs::read_dir("/run/twinbox/subnets")
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|o| o.contains(&conflist)))
                .count()
        })
        .unwrap_or(0);
    (veths, rules, leases, mounts, reservations)
}

/// The 200 start/stop cycles on a user network with a published port
/// (`TWINBOX_NET_CYCLES=N` for fewer or more by hand).
#[test]
fn start_stop_cycles_on_a_user_network_leak_nothing() {
    let Some(lab) = netlab() else { return };
    let cycles: usize = std::env::var("TWINBOX_NET_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(200);
    let net = lab.network(&["leaky"]);
    // a peer stays up the whole time: its hosts file must end as it began
    lab.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "leaky",
        "busybox",
        "sleep",
        "600",
    ]);
    let hosts_before = lab.ok(&["exec", "peer", "cat", "/etc/hosts"]).stdout;
    let before = footprint(&lab, &net);
    assert_eq!(before.0, 1, "the peer's veth");
    let cycled = format!("{}:80", free_port());
    for i in 0..cycles {
        let name = format!("c{i}");
        lab.ok(&[
            "run",
            "--rm",
            "--name",
            &name,
            "--network",
            "leaky",
            "-p",
            &cycled,
            "busybox",
            "true",
        ]);
    }
    // a supervisor killed with -9: the next command finishes the DEL
    let victim = free_port();
    lab.web(
        "victim",
        &["--network", "leaky", "-p", &format!("{victim}:80")],
    );
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{victim}/")),
        "hello-victim\n"
    );
    kill_supervisor(&lab, "victim");
    lab.ok(&["ps", "-a"]);
    lab.ok(&["rm", "-f", "victim"]);
    assert_eq!(
        footprint(&lab, &net),
        before,
        "veths, rules, leases, netns mounts, reservations after {cycles} cycles"
    );
    assert_eq!(
        lab.ok(&["exec", "peer", "cat", "/etc/hosts"]).stdout,
        hosts_before
    );

    // networks made and removed leave no bridge, rule, lease or reservation
    lab.ok(&["rm", "-f", "peer"]);
    for i in 0..5 {
        let n = lab.network(&[&format!("brief{i}")]);
        lab.ok(&[
            "run",
            "--rm",
            "--network",
            &format!("brief{i}"),
            "busybox",
            "true",
        ]);
        lab.ok(&["network", "rm", &format!("brief{i}")]);
        assert_eq!(
            footprint(&lab, &n),
            (0, 0, 0, 0, 0),
            "after network rm brief{i}"
        );
        let bridge = n["Bridge"].as_str().unwrap();
        assert!(
            !std::path::Path::new("/sys/class/net").join(bridge).exists(),
            "{bridge} left"
        );
    }
    lab.ok(&["network", "rm", "leaky"]);
    assert_eq!(
        footprint(&lab, &net),
        (0, 0, 0, 0, 0),
        "after network rm leaky"
    );
}
