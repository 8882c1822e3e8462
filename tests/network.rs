//! Container networking on CNI with real interfaces, addresses and netfilter rules
//! (root only). Traffic stays between this host and the containers a test made;
//! host ports are unique to each test.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::net::{fetch, free_port, host_address, kill_supervisor};
use common::{host, lab, Lab};
use twinbox_engine::network::socket_lb;

/// The leak test counts host-wide things: the tests of this file take turns.
static HOST_WIDE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    HOST_WIDE.lock().unwrap_or_else(|e| e.into_inner())
}

fn serve(lab: &Lab, name: &str, publish: &str) {
    common::net::serve(lab, name, &["-p", publish]);
}

#[test]
fn published_port_answers_on_loopback_any_and_host_address() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let port = free_port();
    serve(&lab, "web", &format!("{port}:80"));
    let want = "hello-web\n";
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), want);
    assert_eq!(fetch(&format!("http://0.0.0.0:{port}/")), want);
    if let Some(ip) = host_address() {
        assert_eq!(fetch(&format!("http://{ip}:{port}/")), want);
        // and from another container, through the host's address
        let r = lab.sh(&format!("timeout 5 wget -qO- http://{ip}:{port}/"));
        assert_eq!(r.stdout, want, "{}", r.stderr);
    }
    let r = lab.tb(&["port", "web"]);
    assert_eq!(r.stdout.trim(), format!("80/tcp -> 0.0.0.0:{port}"));
    let r = lab.tb(&["ps"]);
    assert!(
        r.stdout.contains(&format!("0.0.0.0:{port}->80/tcp")),
        "{}",
        r.stdout
    );

    // the same port again: one line, nothing created
    let before = lab.container_count();
    let r = lab.tb(&["run", "-d", "-p", &format!("{port}:80"), "busybox", "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&port.to_string()), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert_eq!(lab.container_count(), before);
}

/// Packets portmap's DNAT rules for host port `port` have translated (the nat
/// table sees the first packet of each connection).
fn dnat_packets(port: u16) -> u64 {
    host("iptables", &["-w", "-t", "nat", "-L", "-v", "-x", "-n"])
        .lines()
        .filter(|l| l.contains(" DNAT ") && l.contains(&format!("dpt:{port} ")))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The socket-level translation's state, or None (with the reason printed)
/// where doctor says it is off: the DNAT path is then the only one.
fn socket_lb() -> Option<socket_lb::Status> {
    match socket_lb::status() {
        socket_lb::Status::Off(why) => {
            eprintln!("skipping: socket-level translation is off here ({why})");
            None
        }
        on => Some(on),
    }
}

/// The published ports the connect4 program translates now (host-wide), and
/// how many of twinbox's programs are attached.
fn lb_state() -> (Vec<socket_lb::Entry>, usize) {
    match socket_lb::status() {
        socket_lb::Status::On {
            entries, programs, ..
        } => (entries, programs),
        _ => (vec![], 0),
    }
}

fn lb_ports(port: u16) -> Vec<socket_lb::Entry> {
    lb_state()
        .0
        .into_iter()
        .filter(|e| e.host_port == port)
        .collect()
}

#[test]
fn host_connections_to_a_published_port_skip_dnat() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    if socket_lb().is_none() {
        return;
    }
    let port = free_port();
    serve(&lab, "web", &format!("{port}:80"));
    let want = "hello-web\n";
    let before = dnat_packets(port);
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), want);
    assert_eq!(fetch(&format!("http://0.0.0.0:{port}/")), want);
    if let Some(ip) = host_address() {
        assert_eq!(fetch(&format!("http://{ip}:{port}/")), want);
    }
    assert_eq!(
        dnat_packets(port),
        before,
        "a host connection went through portmap's DNAT"
    );
    // another container still goes through DNAT (its namespace is not the host's)
    if let Some(ip) = host_address() {
        let r = lab.sh(&format!("timeout 5 wget -qO- http://{ip}:{port}/"));
        assert_eq!(r.stdout, want, "{}", r.stderr);
        assert!(dnat_packets(port) > before, "the DNAT counter never moves");
    }
}

#[test]
fn a_container_dialling_its_own_loopback_reaches_itself() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let port = free_port();
    serve(&lab, "published", &format!("{port}:80"));
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/")),
        "hello-published\n"
    );
    // the same port number inside another container, on its own loopback
    let r = lab.sh(&format!(
        "echo hello-self > /tmp/index.html; httpd -p 127.0.0.1:{port} -h /tmp; \
         timeout 5 wget -qO- http://127.0.0.1:{port}/"
    ));
    assert_eq!(r.stdout, "hello-self\n", "{}", r.stderr);
}

#[test]
fn stop_rm_and_a_killed_supervisor_withdraw_published_ports_from_the_socket_path() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    if socket_lb().is_none() {
        return;
    }
    let (port, udp) = (free_port(), common::net::free_udp_port());
    let (tcp_spec, udp_spec) = (format!("{port}:80"), format!("127.0.0.1:{udp}:53/udp"));
    common::net::serve(&lab, "web", &["-p", &tcp_spec, "-p", &udp_spec]);
    let address = lab.inspect("web")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let tcp = lb_ports(port);
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    assert_eq!(tcp[0].host_ip.to_string(), "0.0.0.0");
    assert_eq!(tcp[0].target_port, 80);
    if !address.is_empty() {
        assert_eq!(tcp[0].target_ip.to_string(), address);
    }
    let u = lb_ports(udp);
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0].host_ip.to_string(), "127.0.0.1");
    assert_eq!(u[0].protocol, socket_lb::Protocol::Udp);

    let r = lab.tb(&["stop", "-t", "1", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(lb_ports(port).is_empty() && lb_ports(udp).is_empty());
    let r = lab.tb(&["start", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), "hello-web\n");
    assert_eq!(lb_ports(port).len(), 1);

    kill_supervisor(&lab, "web");
    let r = lab.tb(&["ps", "-a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        lb_ports(port).is_empty(),
        "after kill -9 and the next command"
    );
    let r = lab.tb(&["rm", "-f", "web"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (entries, programs) = lb_state();
    assert!(lb_ports(port).is_empty() && lb_ports(udp).is_empty());
    // no published port anywhere on the host: nothing of twinbox's stays attached
    if entries.is_empty() {
        assert_eq!(programs, 0, "the connect4 program outlived the last port");
    }
}

#[test]
fn bridge_gives_eth0_route_hosts_and_resolv_conf() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run", "--rm", "--hostname", "box1", "busybox", "sh", "-c",
        "ip -4 -o addr show eth0; ip route; grep box1 /etc/hosts; grep -c nameserver /etc/resolv.conf; echo mtu=$(cat /sys/class/net/eth0/mtu)",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ip = r
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(r.stdout.contains("default via"), "{}", r.stdout);
    assert!(r.stdout.contains(&format!("{ip}\tbox1")), "{}", r.stdout);
    // the default network takes the host's MTU: the bridge and the container's
    // eth0 carry the MTU of the interface the host's default route uses
    let mtu_of = |dev: &str| -> Option<u32> {
        let line = host("ip", &["-o", "link", "show", dev]);
        let mut words = line.split_whitespace();
        words.find(|w| *w == "mtu")?;
        words.next()?.parse().ok()
    };
    let bridge = mtu_of("twinbox0").expect("twinbox0 has an mtu");
    let inside: u32 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("mtu="))
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or_else(|| panic!("no mtu from inside: {}", r.stdout));
    assert_eq!(inside, bridge, "eth0 and twinbox0 differ");
    let route = host("ip", &["-o", "route", "show", "default"]);
    let uplink = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .map(str::to_string);
    if let Some(uplink_mtu) = uplink.as_deref().and_then(mtu_of) {
        assert_eq!(
            bridge, uplink_mtu,
            "twinbox0 does not carry the uplink's mtu"
        );
    }
}

/// A namespace made by the test with a veth to the host (a /30 of a
/// documentation range the host does not route): "the outside" for NAT.
struct Outside {
    netns: String,
    /// The first three octets of the /30 (.1 is the host end, .2 the far one).
    net: String,
}

impl Outside {
    fn new() -> Outside {
        let id = std::process::id() % 100_000;
        let (netns, host_end, far_end) = (
            format!("tbnat-{id}"),
            format!("tbn{id}h"),
            format!("tbn{id}o"),
        );
        let routes = host("ip", &["-4", "route"]);
        let net = ["198.51.100", "203.0.113", "192.0.2"]
            .into_iter()
            .find(|n| !routes.contains(&format!("{n}.")))
            .expect("a documentation range the host does not route")
            .to_string();
        let (near, far) = (format!("{net}.1/30"), format!("{net}.2/30"));
        let outside = Outside {
            netns: netns.clone(),
            net: net.clone(),
        };
        for cmd in [
            vec!["netns", "add", &netns],
            vec![
                "link", "add", &host_end, "type", "veth", "peer", "name", &far_end, "netns", &netns,
            ],
            vec!["addr", "add", &near, "dev", &host_end],
            vec!["link", "set", &host_end, "up"],
            vec!["-n", &netns, "addr", "add", &far, "dev", &far_end],
            vec!["-n", &netns, "link", "set", &far_end, "up"],
        ] {
            let ok = std::process::Command::new("ip")
                .args(&cmd)
                .status()
                .unwrap();
            assert!(ok.success(), "ip {cmd:?}");
        }
        outside
    }

    /// Answers one TCP client on NET.2:8080 with the address it came from.
    fn tell_source(&self) -> std::thread::JoinHandle<()> {
        let path = format!("/run/netns/{}", self.netns);
        let listen = format!("{}.2:8080", self.net);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let f = std::fs::File::open(&path).expect("netns file");
            // this thread only: setns(CLONE_NEWNET) moves the calling thread
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let listener = std::net::TcpListener::bind(&listen).expect("bind");
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok((mut s, from)) = listener.accept() {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let _ = s.read(&mut [0u8; 512]);
                    let _ = writeln!(s, "from {}", from.ip());
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("server ready");
        handle
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // the veth goes with the namespace
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

#[test]
fn bridge_masquerades_what_leaves_for_another_interface() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let outside = Outside::new();
    let server = outside.tell_source();
    // busybox nc: one line out, the server's line back
    let r = lab.sh(&format!("echo hi | nc -w 10 {}.2 8080", outside.net));
    server.join().unwrap();
    // the far end has no route back to the bridge's subnet: only NAT to the
    // host's address on that link gets an answer back at all
    assert_eq!(
        r.stdout.trim(),
        format!("from {}.1", outside.net),
        "{}",
        r.stderr
    );
}

#[test]
fn none_has_only_lo_and_container_mode_shares() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let r = lab.sh_net("none", "ls /sys/class/net");
    assert_eq!(r.stdout.trim(), "lo", "{}", r.stderr);
    let r = lab.tb(&["run", "-d", "--name", "owner", "busybox", "sleep", "30"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // the same interface and the same network namespace as the owner's
    let look = "ip -4 -o addr show eth0 | awk '{print $4}'; readlink /proc/self/ns/net";
    let owner = lab.tb(&["exec", "owner", "sh", "-c", look]);
    assert_eq!(owner.code, 0, "{}", owner.stderr);
    assert!(owner.stdout.starts_with("10."), "{}", owner.stdout);
    let r = lab.sh_net("container:owner", look);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout, owner.stdout,
        "container:owner shares the owner's network"
    );
}

/// `-p FIRST-LAST:80` (a host range for one container port) takes the first
/// free port of the range, as Docker: one held by a socket is skipped, and so
/// is one another container publishes (its NAT holds no socket). port, ps and
/// NetworkSettings show the pick; HostConfig keeps the range asked for.
#[test]
fn a_host_range_for_one_port_takes_the_first_free() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let first = held.local_addr().unwrap().port();
    let last = first + 10;
    let range = format!("{first}-{last}:80");
    let pick = |name: &str| -> u16 {
        let r = lab.tb(&["port", name, "80"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.trim().rsplit(':').next().unwrap().parse().unwrap()
    };
    serve(&lab, "ranged1", &range);
    let one = pick("ranged1");
    assert!(
        one > first && one <= last,
        "{one} not after the held {first}"
    );
    serve(&lab, "ranged2", &range);
    let two = pick("ranged2");
    assert!(two > one && two <= last, "{two} clashes with {one}");
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{one}/")),
        "hello-ranged1\n"
    );
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{two}/")),
        "hello-ranged2\n"
    );
    let ps = lab.tb(&["ps"]).stdout;
    assert!(ps.contains(&format!("0.0.0.0:{one}->80/tcp")), "{ps}");
    let v = lab.inspect("ranged1");
    assert_eq!(
        v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        one.to_string()
    );
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        format!("{first}-{last}")
    );
    // a range with nothing free: one line, nothing created
    let before = lab.container_count();
    let r = lab.tb(&[
        "run",
        "-d",
        "-p",
        &format!("{first}-{first}:80"),
        "busybox",
        "true",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(&format!("{first}")), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert_eq!(lab.container_count(), before);
    drop(held);
    assert_eq!(lab.tb(&["rm", "-f", "ranged1", "ranged2"]).code, 0);
}

/// `--add-host` (host-gateway: the network's gateway, the host's address on
/// the bridge) and the `--dns` flags reach /etc/hosts and /etc/resolv.conf on
/// the bridge, where the hosts file is rewritten at attach, and stay there
/// across a restart; `--expose` with `-P` publishes the port; bad values are
/// one line naming the flag and create nothing.
#[test]
fn add_host_dns_and_expose_reach_the_container() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let v: serde_json::Value =
        serde_json::from_str(&lab.tb(&["network", "inspect", "bridge"]).stdout).unwrap();
    let gateway = v[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let script = "echo hello-flags > /tmp/index.html; exec httpd -f -p 8080 -h /tmp";
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "flags",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "hostgw:host-gateway",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "lab.example",
        "--dns-option",
        "ndots:2",
        "--expose",
        "8080",
        "-P",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let check = |lab: &Lab| {
        let hosts = lab.tb(&["exec", "flags", "cat", "/etc/hosts"]).stdout;
        assert!(hosts.contains("10.1.2.3\tdb\n"), "{hosts}");
        assert!(hosts.contains(&format!("{gateway}\thostgw\n")), "{hosts}");
        // the container's own line follows, as Docker's
        let ip = lab.inspect("flags")["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            hosts.find("\tdb") < hosts.find(&format!("{ip}\t")),
            "{hosts}"
        );
        let resolv = lab.tb(&["exec", "flags", "cat", "/etc/resolv.conf"]).stdout;
        assert_eq!(
            resolv,
            "search lab.example\nnameserver 192.0.2.53\noptions ndots:2\n"
        );
    };
    check(&lab);
    let port = lab.tb(&["port", "flags", "8080"]).stdout;
    let port = port.trim().rsplit(':').next().unwrap().to_string();
    assert_eq!(fetch(&format!("http://127.0.0.1:{port}/")), "hello-flags\n");
    let v = lab.inspect("flags");
    assert_eq!(
        v["HostConfig"]["ExtraHosts"],
        serde_json::json!(["db:10.1.2.3", "hostgw:host-gateway"])
    );
    assert_eq!(v["HostConfig"]["Dns"], serde_json::json!(["192.0.2.53"]));
    assert_eq!(
        v["HostConfig"]["DnsSearch"],
        serde_json::json!(["lab.example"])
    );
    assert_eq!(
        v["HostConfig"]["DnsOptions"],
        serde_json::json!(["ndots:2"])
    );
    assert!(v["Config"]["ExposedPorts"]["8080/tcp"].is_object(), "{v}");
    assert_eq!(lab.tb(&["restart", "-t", "1", "flags"]).code, 0);
    check(&lab);

    let before = lab.container_count();
    let bad: &[(&[&str], &str)] = &[
        (&["--add-host", "foo"], "--add-host"),
        (&["--add-host", "foo:notanip"], "--add-host"),
        (&["--dns", "notanip"], "--dns"),
        (&["--dns-search", "bad_name.example"], "--dns-search"),
        (&["--dns-option", "two words"], "--dns-option"),
        (&["--expose", "http"], "--expose"),
        (
            &["--network", "container:flags", "--add-host", "a:1.2.3.4"],
            "--add-host",
        ),
        (
            &["--network", "container:flags", "--dns", "1.1.1.1"],
            "--dns",
        ),
        (
            &["--network", "container:flags", "--expose", "80"],
            "--expose",
        ),
    ];
    for (flags, named) in bad {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        let r = lab.tb(&args);
        assert_ne!(r.code, 0, "{flags:?} ran");
        assert!(r.stderr.contains(named), "{flags:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert_eq!(lab.container_count(), before, "{flags:?} left a container");
    }
    assert_eq!(lab.tb(&["rm", "-f", "flags"]).code, 0);
}

/// `--mac-address` gives eth0 that MAC (the bridge plugin's `mac`
/// capability), across a restart, shown by inspect; a bad MAC, or one where
/// the container has no interface of its own, is one line and creates nothing.
#[test]
fn mac_address_is_eth0s() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "mac",
        "--mac-address",
        "02:42:AC:11:7E:01",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let eth0 = |lab: &Lab| {
        lab.tb(&["exec", "mac", "cat", "/sys/class/net/eth0/address"])
            .stdout
    };
    assert_eq!(eth0(&lab), "02:42:ac:11:7e:01\n");
    let v = lab.inspect("mac");
    assert_eq!(v["Config"]["MacAddress"], "02:42:ac:11:7e:01");
    assert_eq!(
        v["NetworkSettings"]["Networks"]["bridge"]["MacAddress"],
        "02:42:ac:11:7e:01"
    );
    assert_eq!(lab.tb(&["restart", "-t", "1", "mac"]).code, 0);
    assert_eq!(eth0(&lab), "02:42:ac:11:7e:01\n");
    let before = lab.container_count();
    for flags in [
        &["--mac-address", "02:42:ac:11:7e"][..],
        &["--mac-address", "01:00:5e:00:00:01"],
        &["--network", "host", "--mac-address", "02:42:ac:11:7e:02"],
        &[
            "--network",
            "container:mac",
            "--mac-address",
            "02:42:ac:11:7e:02",
        ],
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        let r = lab.tb(&args);
        assert_ne!(r.code, 0, "{flags:?} ran");
        assert!(
            r.stderr.contains("--mac-address"),
            "{flags:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert_eq!(lab.container_count(), before);
    }
    assert_eq!(lab.tb(&["rm", "-f", "mac"]).code, 0);
}

/// `-p` with `--network host` runs with Docker's warning on stderr, and
/// publishes nothing (`port` is empty, inspect has no bindings); `-P` there
/// is quietly nothing, as in Docker.
#[test]
fn host_network_discards_published_ports_with_a_warning() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let publish = format!("{}:80", free_port());
    let r = lab.tb(&[
        "run",
        "--rm",
        "--network",
        "host",
        "-p",
        &publish,
        "busybox",
        "echo",
        "ran",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "ran\n");
    assert_eq!(
        r.stderr.trim(),
        "WARNING: Published ports are discarded when using host network mode"
    );
    let r = lab.tb(&[
        "create",
        "--name",
        "hostp",
        "--network",
        "host",
        "-p",
        &publish,
        "-P",
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("Published ports are discarded"),
        "{}",
        r.stderr
    );
    assert_eq!(lab.tb(&["port", "hostp"]).stdout, "");
    let v = lab.inspect("hostp");
    assert_eq!(v["HostConfig"]["PortBindings"], serde_json::json!({}));
    assert_eq!(lab.tb(&["rm", "hostp"]).code, 0);
}

#[test]
fn unknown_network_is_one_line_and_creates_nothing() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["run", "--rm", "--network", "nosuchnet", "busybox", "true"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("nosuchnet"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert_eq!(lab.container_count(), 0);
}

/// What a leak of this test's containers would leave, counted in their own
/// scope (other tests on the host start and end containers on the same
/// default bridge meanwhile): leases of the addresses they had, netfilter lines
/// naming those addresses or the ports they published, and network namespaces
/// pinned in this store, entries of the connect4 program for those ports and
/// twinbox's programs attached. A leaked veth or rule has one of these with it.
fn footprint(
    lab: &Lab,
    addresses: &BTreeSet<String>,
    ports: &[String],
) -> (usize, usize, usize, usize, usize) {
    let leases = std::fs::read_dir("/run/twinbox/ipam/bridge")
        .map(|d| {
            d.flatten()
                .filter(|e| addresses.contains(&*e.file_name().to_string_lossy()))
                .count()
        })
        .unwrap_or(0);
    let rules = host("nft", &["list", "ruleset"])
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .collect();
            words
                .iter()
                .any(|w| addresses.contains(*w) || ports.iter().any(|p| p == w))
        })
        .count();
    let root = lab.root().display().to_string();
    let netns = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&root) && l.contains(" - nsfs "))
        .count();
    // the socket path: entries for these ports, and twinbox's attached programs
    let (entries, programs) = lb_state();
    let entries = entries
        .iter()
        .filter(|e| ports.contains(&e.host_port.to_string()))
        .count();
    (leases, rules, netns, entries, programs)
}

/// The container's address on the default bridge, from inside it.
fn address_from(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address in {out:?}"))
        .to_string()
}

#[test]
fn start_stop_cycles_and_killed_supervisor_leak_nothing() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let (cycled, served) = (free_port(), free_port());
    let ports = [cycled.to_string(), served.to_string()];
    let cycled = format!("{cycled}:80");
    let mut addresses = BTreeSet::new();
    let show = "ip -o -4 addr show eth0";
    // the first container creates the bridge and portmap's shared chains
    let r = lab.tb(&["run", "--rm", "-p", &cycled, "busybox", "sh", "-c", show]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let before = footprint(&lab, &addresses, &ports);
    for _ in 0..20 {
        let r = lab.tb(&["run", "--rm", "-p", &cycled, "busybox", "sh", "-c", show]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        addresses.insert(address_from(&r.stdout));
    }
    assert_eq!(
        addresses.len(),
        20,
        "each run had its own address: {addresses:?}"
    );
    assert_eq!(
        footprint(&lab, &addresses, &ports),
        before,
        "leases, nft lines, namespaces, bpf entries and programs after 20 cycles (addresses {addresses:?})"
    );

    serve(&lab, "victim", &format!("{served}:80"));
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{served}/")),
        "hello-victim\n"
    );
    let r = lab.tb(&["exec", "victim", "sh", "-c", show]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    addresses.insert(address_from(&r.stdout));
    assert_ne!(
        footprint(&lab, &addresses, &ports),
        before,
        "a running container is counted"
    );
    kill_supervisor(&lab, "victim");
    // the next command (any that reads the state) finishes the DEL
    let r = lab.tb(&["ps", "-a"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&["rm", "-f", "victim"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        footprint(&lab, &addresses, &ports),
        before,
        "after kill -9 of a supervisor and rm"
    );
}

trait NetRun {
    fn sh_net(&self, network: &str, script: &str) -> common::Run;
}

impl NetRun for Lab {
    fn sh_net(&self, network: &str, script: &str) -> common::Run {
        self.tb(&[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            script,
        ])
    }
}

#[test]
fn doctor_reports_network_support() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["doctor"]);
    for name in [
        "bridge",
        "veth",
        "netfilter",
        "ip_forward",
        "cni plugins",
        "socket lb",
    ] {
        let line = r
            .stdout
            .lines()
            .find(|l| l[5..].starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in {}", r.stdout));
        // forwarding may still be off on a fresh host before any bridge exists
        // the socket path is optional: off (and why) is a warning, DNAT serves
        let allowed = if name == "ip_forward" || name == "socket lb" {
            &["ok", "warn"][..]
        } else {
            &["ok"][..]
        };
        assert!(allowed.iter().any(|s| line.starts_with(s)), "{line}");
    }
    // off (a warning, with the reason) exactly where the kernel refuses the program
    let lb = r.stdout.lines().find(|l| l.contains("socket lb")).unwrap();
    let off = matches!(socket_lb::status(), socket_lb::Status::Off(_));
    assert_eq!(lb.starts_with("warn") && lb.contains("off: "), off, "{lb}");
    let netfilter = r.stdout.lines().find(|l| l.contains("netfilter")).unwrap();
    let backend = host("iptables", &["--version"]);
    let expected = if backend.contains("nf_tables") {
        "iptables-nft"
    } else {
        "iptables-legacy"
    };
    assert!(netfilter.contains(expected), "{netfilter} vs {backend}");
}

/// Without the CNI plugins (CNI_PATH names an empty directory: the whole
/// search list when set) run, run -d -p and create fail in one line that names
/// the package to install, before anything is made: no container, no
/// namespace mount, no link. doctor says the same.
#[test]
fn missing_plugins_name_the_package_and_leave_nothing() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let empty = tempfile::tempdir().unwrap();
    let links = || host("ip", &["-o", "link", "show"]);
    let links_before = links();
    let port = free_port().to_string();
    let publish = format!("{port}:80");
    let cases: [&[&str]; 3] = [
        &["run", "--rm", "busybox", "true"],
        &["run", "-d", "-p", &publish, "busybox", "sleep", "5"],
        &["create", "--name", "np", "busybox", "true"],
    ];
    for args in cases {
        let out = lab
            .cmd(args)
            .env("CNI_PATH", empty.path())
            .output()
            .unwrap();
        let r = common::Run::from(out);
        assert_ne!(r.code, 0, "{args:?} must fail");
        assert!(
            r.stderr.contains("containernetworking-plugins")
                && r.stderr.contains(&empty.path().display().to_string()),
            "{args:?}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert_eq!(lab.container_count(), 0, "{args:?} left a container");
    }
    assert_eq!(links(), links_before, "a link was made or removed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&lab.root().display().to_string()),
        "a namespace mount left"
    );
    let out = lab
        .cmd(&["doctor"])
        .env("CNI_PATH", empty.path())
        .output()
        .unwrap();
    let r = common::Run::from(out);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("cni plugins"))
        .unwrap_or_else(|| panic!("no cni plugins line in {}", r.stdout));
    assert!(
        line.starts_with("fail") && line.contains("apt-get install containernetworking-plugins"),
        "{line}"
    );
    // with the plugins, the same run works (the error was theirs)
    let r = lab.tb(&["run", "--rm", "busybox", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The directory of the real reference plugins (as twinbox finds them).
fn plugin_dir() -> std::path::PathBuf {
    ["/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|d| d.join("bridge").is_file())
        .expect("the CNI reference plugins")
}

/// A portmap ADD that does its work (real NAT rules) and then hangs past
/// TWINBOX_CNI_TIMEOUT, with a child of its own still running: the run fails
/// in one line, and the DEL that follows leaves no rule, lease, namespace or
/// process behind. The real plugins run from a CNI_PATH directory where only
/// portmap is wrapped.
#[test]
fn a_portmap_add_that_times_out_leaves_nothing() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let real = plugin_dir();
    let wrap = tempfile::tempdir().unwrap();
    let w = wrap.path();
    for p in ["bridge", "host-local", "loopback"] {
        std::os::unix::fs::symlink(real.join(p), w.join(p)).unwrap();
    }
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$CNI_COMMAND\" != ADD ]; then exec {portmap}; fi\n\
         echo \"$CNI_CONTAINERID\" > {dir}/id\n\
         {portmap} > /dev/null || exit 1\n\
         iptables-save -t nat > {dir}/during\n\
         sleep 600 & echo $! > {dir}/child\n\
         wait\n",
        portmap = real.join("portmap").display(),
        dir = w.display(),
    );
    let plugin = w.join("portmap");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // the bridge and its shared chains exist before: only this run's count
    let r = lab.tb(&["run", "--rm", "busybox", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let port = free_port();
    let out = lab
        .cmd(&[
            "run",
            "--rm",
            "-p",
            &format!("{port}:80"),
            "busybox",
            "true",
        ])
        .env("CNI_PATH", w)
        .env("TWINBOX_CNI_TIMEOUT", "5s")
        .output()
        .unwrap();
    let r = common::Run::from(out);
    assert_ne!(r.code, 0, "the run must fail");
    assert!(
        r.stderr.contains("portmap") && r.stderr.contains("no answer within 5s"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    // portmap did add its rules before it hung
    let during = std::fs::read_to_string(w.join("during")).expect("portmap's ADD ran");
    assert!(during.contains(&format!("--dport {port}")), "{during}");
    // the plugin's own child went with it
    let child: i32 = std::fs::read_to_string(w.join("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    common::net::wait_gone(child);
    let nat = host("iptables-save", &["-t", "nat"]);
    assert!(
        !nat.contains(&format!("--dport {port}")),
        "NAT rules left:\n{nat}"
    );
    let id = std::fs::read_to_string(w.join("id")).unwrap();
    let id = id.trim();
    for lease in std::fs::read_dir("/run/twinbox/ipam/bridge")
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(lease.path()).unwrap_or_default();
        assert!(!text.starts_with(id), "lease {:?} left", lease.path());
    }
    assert_eq!(lab.container_count(), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&lab.root().display().to_string()),
        "a namespace mount left"
    );
}

/// A lease whose owner is gone with its store (made here by the real
/// host-local plugin for an owner that never had a namespace, as a killed
/// build leaves it): `system check` lists it without failing, `--repair`
/// releases it, and a live container's lease of the same age is kept.
#[test]
fn check_repair_releases_dead_leases_and_keeps_live_ones() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let pid = std::process::id();
    let net = format!("keep{}", pid % 100_000);
    let r = lab.tb(&["network", "create", &net]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = lab.tb(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        &net,
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let inspect = lab.inspect("live");
    let live_ip = inspect["NetworkSettings"]["Networks"][&net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let r = lab.tb(&["network", "inspect", &net]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let live_lease = std::path::PathBuf::from(format!(
        "/run/twinbox/ipam/{}/{net}/{live_ip}",
        v[0]["Id"].as_str().unwrap()
    ));
    assert!(live_lease.exists(), "{}", live_lease.display());

    // the dead one: a real lease in a network directory of this test's own
    let data_dir = format!("/run/twinbox/ipam/tbtest-{pid}");
    let subnet = format!("198.18.{}.0/24", pid % 250);
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "gone",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": data_dir},
    });
    let mut add = std::process::Command::new(plugin_dir().join("host-local"));
    add.env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("build-{pid}-gone"))
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", plugin_dir());
    let out = common::process::output_with_input(&mut add, conf.to_string().as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dead_ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let dead_lease = std::path::PathBuf::from(format!("{data_dir}/gone/{dead_ip}"));
    assert!(dead_lease.exists(), "{}", dead_lease.display());
    // both older than any ADD could take
    for lease in [&dead_lease, &live_lease] {
        let ok = std::process::Command::new("touch")
            .args(["-d", "1 hour ago"])
            .arg(lease)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    let dead_line = format!("lease {dead_ip} (network tbtest-{pid}/gone, owner build-{pid}-gone)");
    let check = lab.tb(&["system", "check"]);
    assert_eq!(
        check.code, 0,
        "another store's lease is no problem of this one: {}{}",
        check.stdout, check.stderr
    );
    assert!(check.stdout.contains(&dead_line), "{}", check.stdout);
    assert!(
        !check.stdout.contains(&format!("lease {live_ip} ")),
        "{}",
        check.stdout
    );
    let repair = lab.tb(&["system", "check", "--repair"]);
    assert_eq!(repair.code, 0, "{}{}", repair.stdout, repair.stderr);
    assert!(
        repair.stdout.contains(&format!(
            "{dead_line}: its address is in no network namespace (released)"
        )),
        "{}",
        repair.stdout
    );
    let dead_gone = !dead_lease.exists();
    let live_kept = live_lease.exists();
    let _ = std::fs::remove_dir_all(&data_dir);
    assert!(dead_gone, "{} still there", dead_lease.display());
    assert!(live_kept, "the live container's lease was released");
    let again = lab.tb(&["system", "check"]);
    assert!(!again.stdout.contains(&dead_line), "{}", again.stdout);
    let r = lab.tb(&["exec", "live", "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(r.stdout.contains(&live_ip), "{}", r.stdout);
    assert_eq!(lab.tb(&["rm", "-f", "live"]).code, 0);
    assert_eq!(lab.tb(&["network", "rm", &net]).code, 0);
}

/// `system check` runs CNI CHECK on a running container's attachments: intact
/// it finds nothing, with the container's eth0 deleted behind twinbox's back it
/// names the container and the network; `rm -f` still releases everything.
#[test]
fn check_runs_cni_check_on_running_containers() {
    let _turn = turn();
    let Some(lab) = lab() else { return };
    let port = free_port();
    let ports = [port.to_string()];
    let publish = format!("{port}:80");
    let none = BTreeSet::new();
    let r = lab.tb(&["run", "--rm", "-p", &publish, "busybox", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // the probe's address is not known yet: no lease or rule can name it
    let before = footprint(&lab, &none, &ports);
    let r = lab.tb(&[
        "run", "-d", "--name", "probe", "-p", &publish, "busybox", "sleep", "600",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let check = lab.tb(&["system", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        !check.stdout.contains("container probe"),
        "{}",
        check.stdout
    );

    let inspect = lab.inspect("probe");
    let ip = inspect["NetworkSettings"]["IPAddress"].as_str().unwrap();
    let addresses = BTreeSet::from([ip.to_string()]);
    assert_ne!(
        footprint(&lab, &addresses, &ports),
        before,
        "probe is counted"
    );
    let id = inspect["Id"].as_str().unwrap().to_string();
    let netns = lab.containers_dir().join(id).join("netns");
    let ok = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "link", "delete", "eth0"])
        .status()
        .unwrap();
    assert!(ok.success(), "deleting eth0 in {}", netns.display());
    let check = lab.tb(&["system", "check"]);
    assert_ne!(check.code, 0, "{}", check.stdout);
    assert!(
        check
            .stdout
            .contains("container probe: its attachment to network bridge is broken"),
        "{}",
        check.stdout
    );
    let r = lab.tb(&["rm", "-f", "probe"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        footprint(&lab, &addresses, &ports),
        before,
        "leases, nft lines, namespaces after rm of the broken container"
    );
}
