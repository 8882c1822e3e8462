//! net-bench: what twinbox's CNI networking costs, against the floors it is
//! built on, in one run.
//!
//! - Start time: `run --rm busybox true` with `--network none` (the floor), on
//!   the default bridge and on a user network; the added time is the difference.
//!   Docker's is measured the same way on a private dockerd the bench starts
//!   (Debian's docker.io on its own socket and bridge, without iptables; see
//!   `twinbox_bench::dockerd`), else it is reported as unavailable.
//! - TCP from the host to a busybox httpd in a container: request latency
//!   (connect, GET a small page, read to the end) and throughput (GET a 32 MiB
//!   file), through `-p` on 127.0.0.1 and straight to the container's address
//!   on the bridge, against the same server on the host's loopback
//!   (`--network host`, the physical limit), through `-p` from a user network
//!   at loopback's packet size (`-o mtu=65520`, where the default network has
//!   the uplink's MTU: what the link size alone is worth), through `-p` to
//!   127.0.0.1 with that one port taken off the socket path (`socket_lb`), so
//!   portmap's DNAT rewrites every packet as before it, and through Docker's `-p` (its userland docker-proxy, as
//!   iptables stays off) on the same private dockerd.
//!
//! Reported: medians, p10–p90 and ratios, twinbox against Docker in the same
//! run. Goals (issue 11, printed, not asserted): throughput through `-p` within
//! 10% of loopback; added start time no more than the peer's.
//!
//! Run as root: `cargo build --release && cargo run --release -p twinbox-bench --bin net-bench`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use twinbox_bench::dockerd::{Bridge, Dockerd};
use twinbox_bench::setup::prepare;
use twinbox_bench::stats::{last_line, timed, Stats};
use twinbox_bench::table::{ms, Table};

#[derive(Parser, Debug)]
#[command(
    name = "net-bench",
    about = "start time and TCP latency/throughput of twinbox networks against their floors"
)]
struct Args {
    /// Timed runs per start-time series
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Timed requests per latency series (throughput takes a fifth of these)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(5..))]
    requests: u32,
    /// Size of the throughput file in MiB
    #[arg(long, default_value_t = 32)]
    mib: u32,
    /// First of six host ports to use (published on 127.0.0.1, loopback server, published on every address, Docker's -p, published from the network with large packets, published on 127.0.0.1 and left to DNAT)
    #[arg(long, default_value_t = 18470)]
    port: u16,
    /// Leave Docker out (by default a private dockerd is started as the peer)
    #[arg(long)]
    no_docker: bool,
    /// The twinbox binary (default: the workspace's target/release/twinbox)
    #[arg(long)]
    twinbox: Option<PathBuf>,
    /// Scratch directory (removed afterwards)
    #[arg(long, default_value = "/var/tmp")]
    tmp: PathBuf,
}

/// The link size of the large-packet network: loopback's 65536 as far as a
/// bridge and a veth go (65535), rounded down to 8 bytes.
const LARGE_MTU: u32 = 65520;

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("net-bench: {e}");
        std::process::exit(1);
    }
}

struct Twinbox {
    bin: PathBuf,
    root: PathBuf,
}

impl Twinbox {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("TWINBOX_ROOT", &self.root).args(args);
        c
    }

    fn timed(&self, args: &[&str]) -> Result<Duration, String> {
        timed(&mut self.cmd(args), &format!("twinbox {}", args.join(" ")))
    }

    fn output(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .cmd(args)
            .output()
            .map_err(|e| format!("twinbox: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "twinbox {}: {}",
                args.join(" "),
                last_line(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// Removes the bench's containers and network however the run ends.
struct Cleanup<'a>(&'a Twinbox, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for name in &self.1 {
            let _ = self.0.cmd(&["rm", "-f", name]).output();
        }
        for net in ["netbench", "netbench-large"] {
            let _ = self.0.cmd(&["network", "rm", net]).output();
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (bin, dir) = prepare(
        "containers need namespaces and the bridge",
        args.twinbox.as_deref(),
        &args.tmp,
        "net-bench",
    )?;
    let tb = Twinbox {
        bin,
        root: dir.path().join("store"),
    };
    tb.timed(&["image", "bootstrap", "busybox"])?;
    tb.output(&["network", "create", "netbench"])?;
    // a bridge with loopback's packet size: what the link size alone is worth
    tb.output(&[
        "network",
        "create",
        "-o",
        &format!("mtu={LARGE_MTU}"),
        "netbench-large",
    ])?;
    let _cleanup = Cleanup(
        &tb,
        vec!["nb-bridge".into(), "nb-host".into(), "nb-large".into()],
    );

    // start time, the series interleaved so load drifts hit them alike
    let modes = ["none", "bridge", "netbench"];
    let mut starts: Vec<Vec<Duration>> = vec![vec![]; modes.len()];
    for m in modes {
        tb.timed(&["run", "--rm", "--network", m, "busybox", "true"])?;
    }
    for i in 0..args.runs {
        eprint!("\rstart round {}/{} ", i + 1, args.runs);
        for (k, m) in modes.iter().enumerate() {
            starts[k].push(tb.timed(&["run", "--rm", "--network", m, "busybox", "true"])?);
        }
    }
    eprintln!();
    let starts: Vec<Stats> = starts.iter().map(|s| Stats::of(s)).collect();
    // the peer: a private dockerd with busybox loaded from this store
    let dockerd = if args.no_docker {
        Err("left out (--no-docker)".to_string())
    } else {
        start_docker(&tb, &dir.path().join("docker"))
    };
    let docker = match &dockerd {
        Ok(d) => docker_starts(d, args.runs),
        Err(e) => Err(e.clone()),
    };

    let spread = |s: &Stats| format!("{}–{}", ms(s.p10), ms(s.p90));
    let mut t = Table::new(&[
        "run --rm busybox true",
        "median ms",
        "p10–p90 ms",
        "added over none",
    ]);
    for (m, s) in modes.iter().zip(&starts) {
        t.row(vec![
            format!("twinbox --network {m}"),
            ms(s.median),
            spread(s),
            ms(s.median - starts[0].median),
        ]);
    }
    match &docker {
        Ok((none, bridge)) => {
            for (m, s) in [("none", none), ("bridge", bridge)] {
                t.row(vec![
                    format!("docker --network {m}"),
                    ms(s.median),
                    spread(s),
                    ms(s.median - none.median),
                ]);
            }
        }
        Err(why) => t.row(vec![
            format!("docker: unavailable ({why})"),
            "-".into(),
            "-".into(),
            "-".into(),
        ]),
    }
    print!("{}", t.render());
    let added = starts[1].median - starts[0].median;
    println!(
        "the bridge adds {} ms ({:.2}x of --network none){}",
        ms(added),
        starts[1].median / starts[0].median,
        match &docker {
            Ok((none, bridge)) => format!(
                "; docker's adds {} ms: twinbox/docker {:.2}x (goal: at most 1.00x)",
                ms(bridge.median - none.median),
                added / (bridge.median - none.median)
            ),
            Err(_) => String::new(),
        }
    );

    // the same busybox httpd: published from the bridge, on host loopback, and
    // published from a bridge with large packets
    let (published, direct_port, loopback, on_host, large_mtu) = (
        args.port,
        80u16,
        args.port + 1,
        args.port + 2,
        args.port + 4,
    );
    let serve = |name: &str, extra: &[&str], port: u16| -> Result<(), String> {
        let script = format!(
            "dd if=/dev/zero of=/tmp/big bs=1M count={} 2>/dev/null; echo ok > /tmp/small; exec httpd -f -p {port} -h /tmp",
            args.mib
        );
        let mut a = vec!["run", "-d", "--name", name];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["busybox", "sh", "-c", &script]);
        tb.output(&a).map(|_| ())
    };
    let publish = format!("127.0.0.1:{published}:80");
    let publish_any = format!("{on_host}:80");
    let dnat_only = args.port + 5;
    let publish_dnat = format!("127.0.0.1:{dnat_only}:80");
    serve(
        "nb-bridge",
        &["-p", &publish, "-p", &publish_any, "-p", &publish_dnat],
        80,
    )?;
    serve("nb-host", &["--network", "host"], loopback)?;
    let publish_large = format!("127.0.0.1:{large_mtu}:80");
    serve(
        "nb-large",
        &["--network", "netbench-large", "-p", &publish_large],
        80,
    )?;
    let inspect = tb.output(&["inspect", "nb-bridge"])?;
    let v: serde_json::Value = serde_json::from_str(&inspect).map_err(|e| e.to_string())?;
    let ip = v[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .ok_or("no address for nb-bridge")?
        .to_string();
    let mtu_of = |dev: &str| {
        twinbox_engine::network::mtu::link(dev).map_or("?".to_string(), |m| m.to_string())
    };
    println!(
        "MTU: loopback {}, twinbox0 {}, uplink {}",
        mtu_of("lo"),
        mtu_of("twinbox0"),
        twinbox_engine::network::mtu::uplink()
    );
    // the same -p as before socket_lb, in the same run: this one port is
    // taken off the socket path, so the host's connections to it go through
    // portmap's DNAT (and MASQUERADE of 127.0.0.1) on every packet
    use twinbox_engine::network::socket_lb;
    let lb = socket_lb::status();
    let lb_on = matches!(lb, socket_lb::Status::On { .. });
    println!(
        "socket lb: {}",
        match &lb {
            socket_lb::Status::Off(why) => format!("off ({why}): every -p row is DNAT"),
            _ => "on: -p from the host is translated at connect()".to_string(),
        }
    );
    if lb_on {
        let entry = socket_lb::Entry {
            host_ip: std::net::Ipv4Addr::LOCALHOST,
            host_port: dnat_only,
            protocol: socket_lb::Protocol::Tcp,
            target_ip: ip.parse().map_err(|e| format!("{ip}: {e}"))?,
            target_port: 80,
        };
        socket_lb::withdraw(&[entry], false).map_err(|e| e.to_string())?;
    }
    let mut targets = vec![
        (
            "host loopback (--network host)".to_string(),
            format!("127.0.0.1:{loopback}"),
        ),
        (
            "published -p, to 127.0.0.1".to_string(),
            format!("127.0.0.1:{published}"),
        ),
        (
            "bridge address, no -p".to_string(),
            format!("{ip}:{direct_port}"),
        ),
        (
            format!("published -p, to 127.0.0.1, MTU {LARGE_MTU}"),
            format!("127.0.0.1:{large_mtu}"),
        ),
    ];
    if lb_on {
        targets.push((
            "published -p, to 127.0.0.1, DNAT (socket path off)".to_string(),
            format!("127.0.0.1:{dnat_only}"),
        ));
    }
    if let Some(host_ip) = host_address() {
        targets.push((
            "published -p, to the host's address".to_string(),
            format!("{host_ip}:{on_host}"),
        ));
    }
    let docker_port = args.port + 3;
    let docker_served = match &dockerd {
        Ok(d) => docker_serve(d, args.mib, docker_port),
        Err(e) => Err(e.clone()),
    };
    match &docker_served {
        Ok(()) => targets.push((
            "docker -p, to 127.0.0.1 (docker-proxy)".to_string(),
            format!("127.0.0.1:{docker_port}"),
        )),
        Err(e) => println!("docker -p: unavailable ({e})"),
    }
    // every series is measured round by round across the targets, so a load
    // drift (other work on the same cores) hits all of them alike
    let addrs: Vec<SocketAddr> = targets
        .iter()
        .map(|(_, a)| a.parse().map_err(|e| format!("{a}: {e}")))
        .collect::<Result<_, String>>()?;
    for a in &addrs {
        wait_for(*a, "/small")?;
    }
    let n = targets.len();
    let mut lat: Vec<Vec<Duration>> = vec![vec![]; n];
    for i in 0..args.requests {
        eprint!("\rlatency round {}/{} ", i + 1, args.requests);
        for (k, a) in addrs.iter().enumerate() {
            let (bytes, took) = get(*a, "/small")?;
            if bytes == 0 {
                return Err(format!("{}: empty answer", targets[k].0));
            }
            lat[k].push(took);
        }
    }
    eprintln!();
    // a fresh connection per GET (slow start included) and the rate of a
    // connection once it runs at full speed (the last three quarters of the
    // bytes), as iperf-style tools report throughput
    let rounds = (args.requests / 5).max(3);
    let (mut fresh, mut steady): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
        (vec![vec![]; n], vec![vec![]; n]);
    for i in 0..rounds {
        eprint!("\rthroughput round {}/{rounds} ", i + 1);
        for (k, a) in addrs.iter().enumerate() {
            let t = get_timed(*a, "/big")?;
            if t.bytes < u64::from(args.mib) << 20 {
                return Err(format!(
                    "{}: short answer ({} bytes)",
                    targets[k].0, t.bytes
                ));
            }
            fresh[k].push(mib_per_s(t.bytes, t.total));
            steady[k].push(mib_per_s(t.bytes - t.bytes / 4, t.total - t.first_quarter));
        }
    }
    eprintln!();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mut t = Table::new(&[
        "host → busybox httpd",
        "GET small ms",
        "p10–p90 ms",
        "GET big MiB/s",
        "vs loopback",
        "steady MiB/s",
        "vs loopback",
    ]);
    let (mut fresh_base, mut steady_base) = (f64::NAN, f64::NAN);
    let mut published_ratio = (f64::NAN, f64::NAN);
    let (mut published_rate, mut docker_rate, mut dnat_rate) = (f64::NAN, f64::NAN, f64::NAN);
    for (k, (label, _)) in targets.iter().enumerate() {
        let (f, st) = (median(&mut fresh[k]), median(&mut steady[k]));
        if k == 0 {
            (fresh_base, steady_base) = (f, st);
        }
        if k == 1 {
            published_ratio = (f / fresh_base, st / steady_base);
            published_rate = st;
        }
        if label.starts_with("docker") {
            docker_rate = st;
        }
        if label.contains("DNAT") {
            dnat_rate = st;
        }
        let s = Stats::of(&lat[k]);
        t.row(vec![
            label.clone(),
            ms(s.median),
            spread(&s),
            format!("{f:.0}"),
            format!("{:.2}x", f / fresh_base),
            format!("{st:.0}"),
            format!("{:.2}x", st / steady_base),
        ]);
    }
    print!("{}", t.render());
    println!(
        "throughput through -p is {:.0}% of loopback at full speed, {:.0}% for a {} MiB GET on a fresh connection (goal: within 10%: {})",
        100.0 * published_ratio.1,
        100.0 * published_ratio.0,
        args.mib,
        if published_ratio.1 >= 0.9 {
            "met"
        } else {
            "missed"
        }
    );
    if dnat_rate.is_finite() {
        println!(
            "-p to 127.0.0.1 at full speed, socket path/DNAT: {:.2}x",
            published_rate / dnat_rate
        );
    }
    if docker_rate.is_finite() {
        println!(
            "throughput through -p at full speed, twinbox/docker: {:.2}x",
            published_rate / docker_rate
        );
    }
    if let Ok(d) = &dockerd {
        let _ = d.output(&["rm", "-f", "nb-docker"]);
    }
    Ok(())
}

/// The host's first global IPv4 address that is not one of twinbox's bridges.
fn host_address() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("twinbox") && !l.contains(" tb-"))
        .find_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .split('/')
                .next()
                .map(String::from)
        })
}

/// Waits up to 10 s for the server to answer.
fn wait_for(addr: SocketAddr, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get(addr, path) {
            Ok((n, _)) if n > 0 => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(format!("no answer from {addr} within 10 s"))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What one GET took: body bytes, the time from connect to the last byte,
/// and the time until the first quarter of the body had arrived.
struct Timed {
    bytes: u64,
    total: Duration,
    first_quarter: Duration,
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

/// One HTTP/1.0 GET on a fresh connection: body bytes and the time from
/// connect to the last byte.
fn get(addr: SocketAddr, path: &str) -> Result<(u64, Duration), String> {
    get_timed(addr, path).map(|t| (t.bytes, t.total))
}

fn get_timed(addr: SocketAddr, path: &str) -> Result<Timed, String> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut body: Option<u64> = None;
    let mut length: Option<u64> = None;
    let mut first_quarter = None;
    loop {
        let n = s.read(&mut buf).map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            break;
        }
        match body.as_mut() {
            Some(b) => *b += n as u64,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    length = content_length(&head[..i]);
                    body = Some((head.len() - i - 4) as u64);
                    head.clear();
                }
            }
        }
        if let (Some(b), Some(l), None) = (body, length, first_quarter) {
            if b >= l / 4 {
                first_quarter = Some(start.elapsed());
            }
        }
    }
    let total = start.elapsed();
    Ok(Timed {
        bytes: body.unwrap_or(0),
        total,
        first_quarter: first_quarter.unwrap_or(total),
    })
}

/// The Content-Length of a response head, if it has one.
fn content_length(head: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// A private dockerd with the busybox of the twinbox store loaded (`save`,
/// then `docker load`): the same image both ways.
fn start_docker(tb: &Twinbox, dir: &Path) -> Result<Dockerd, String> {
    let d = Dockerd::start(dir, Bridge::Own)?;
    let archive = dir.join("busybox.tar");
    let archive = archive.to_str().ok_or("scratch path is not UTF-8")?;
    tb.output(&["save", "-o", archive, "busybox"])?;
    d.output(&["load", "-i", archive])?;
    Ok(d)
}

/// The same busybox httpd as twinbox's, published by Docker on 127.0.0.1.
fn docker_serve(d: &Dockerd, mib: u32, port: u16) -> Result<(), String> {
    let script = format!(
        "dd if=/dev/zero of=/tmp/big bs=1M count={mib} 2>/dev/null; echo ok > /tmp/small; exec httpd -f -p 80 -h /tmp"
    );
    let publish = format!("127.0.0.1:{port}:80");
    d.output(&[
        "run",
        "-d",
        "--name",
        "nb-docker",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .map(|_| ())
}

/// Docker's `run --rm busybox true` with `--network none` and on its bridge.
fn docker_starts(d: &Dockerd, runs: u32) -> Result<(Stats, Stats), String> {
    d.timed(&["run", "--rm", "--network", "none", "busybox", "true"])?;
    d.timed(&["run", "--rm", "busybox", "true"])?;
    let (mut none, mut bridge) = (vec![], vec![]);
    for _ in 0..runs {
        none.push(d.timed(&["run", "--rm", "--network", "none", "busybox", "true"])?);
        bridge.push(d.timed(&["run", "--rm", "busybox", "true"])?);
    }
    Ok((Stats::of(&none), Stats::of(&bridge)))
}
