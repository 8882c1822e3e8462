//! network: what a container's network is (a veth pair, one end in the
//! container's namespace as eth0, the other on the host's bridge; NAT and a
//! published port in netfilter), seen from inside and from the host, and what
//! the extra hops cost against loopback, measured with the same HTTP server.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::RunOptions;

use super::vm_serving::VmHalf;
use super::{three_acts, Lesson};
use crate::charts;
use crate::context::{boot_timeout, published, sh, Context, BUSYBOX, RUN_TIMEOUT, VM_MEMORY_MIB};
use crate::measure::http;
use crate::measure::time::Stats;
use crate::report::{format_bytes, format_ms, Chart, LessonReport, Measured, Side, Table, Unit};
use crate::LessonError;

pub struct Network;

const PORT: u16 = 8080;
/// Served by the same busybox httpd on every path: small for latency, the
/// busybox binary itself (about 2 MiB) for throughput.
const SMALL: &str = "/etc/hostname";
const LARGE: &str = "/bin/busybox";
/// The bridge device of the default network.
const BRIDGE: &str = "twinbox0";

const INSIDE: &str = "ip -4 addr show eth0; ip route; echo ready; exec httpd -f -p 8080 -h /";
/// The same in the VM, plus which driver the guest's kernel bound to eth0.
const VM_INSIDE: &str = "ip -4 addr show eth0; ip route; echo \"eth0 driver: $(basename $(readlink /sys/class/net/eth0/device/driver))\"; echo ready; exec httpd -f -p 8080 -h /";

impl Lesson for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn title(&self) -> &'static str {
        "a container's network: veth, bridge, NAT, published ports"
    }

    fn summary(&self) -> &'static str {
        "eth0 inside, veth and bridge and NAT rules on the host; latency and throughput against loopback"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A container on the default network gets its own network namespace with one \
             interface, eth0. eth0 is one end of a veth pair, a virtual cable; the other end \
             stays in the host's namespace and is plugged into a bridge (twinbox0), a virtual \
             switch that also carries an address for the host. The container's default route \
             points at that address; netfilter rules on the host masquerade (NAT) its traffic \
             to the outside, and a published port (-p) is a DNAT rule that sends a host port \
             to the container's address.",
            "A microVM's network is built from the same parts one level down: inside the \
             guest a virtio-net card, which the VMM connects to a tap device; the tap sits in \
             the VM's own network namespace, bridged there to a veth whose other end is on \
             the same host bridge (twinbox0) as the containers'. The guest's kernel has its \
             own network stack; the host's bridge and netfilter rules are the same kind as the \
             container's.",
            "The lesson starts a web server (busybox httpd) in a container, looks at both \
             ends, and measures the same server's latency and throughput: through loopback on \
             the host, to the container's address over the bridge, and through the published \
             port; then the same server in a microVM, over the bridge and through its \
             published port.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn default_runs(&self) -> usize {
        20
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// One way to the server, measured.
#[derive(Debug, Clone, Serialize)]
struct Path {
    name: &'static str,
    addr: String,
    latency_ms: Measured<Stats>,
    /// Bytes per second for the large file.
    throughput: Measured<f64>,
}

/// The same server in a microVM: its view, the host's, two timed paths.
#[derive(Debug, Clone, Serialize)]
struct VmNet {
    ip: Ipv4Addr,
    /// `ip addr` and `ip route` inside the guest.
    inside: String,
    /// The guest's eth0 is virtio-net (the driver the guest's kernel bound).
    host_side: Vec<(String, String)>,
    nat_rule_for_vm: bool,
    emulated: bool,
}

struct Measurements {
    vm: VmHalf<VmNet>,
    container_ip: Measured<Ipv4Addr>,
    inside: String,
    host_side: Vec<(String, String)>,
    veth_on_bridge: bool,
    nat_rule_for_container: bool,
    paths: Vec<Path>,
    large_bytes: Option<u64>,
}

/// Act one: the server in a container, both ends looked at, three paths timed.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let runs = report.runs;
    let host_port = http::free_port().map_err(|e| LessonError::io("finding a free port", e))?;
    let opts = RunOptions {
        cmd: sh(INSIDE),
        ..published(Some(Ipv4Addr::LOCALHOST.into()), host_port, PORT)
    };
    ctx.say
        .heading("inside: a server in a container on the default bridge");
    let mut d = ctx.detached(report, BUSYBOX, &opts)?;
    let ready = d.wait_for_output("ready", Duration::from_secs(30), &mut std::io::stdout());
    let inside = d.output();
    let container_ip = if ready {
        Measured::from_option(parse_inet(&inside), "no IPv4 address on eth0")
    } else {
        Measured::failed("the container did not start")
    };

    ctx.say.heading("the host's side");
    let mut host_side = Vec::new();
    for (cmd, args) in [
        (
            "ip -o -4 addr show dev twinbox0",
            vec!["-o", "-4", "addr", "show", "dev", BRIDGE],
        ),
        (
            "ip -o link show master twinbox0",
            vec!["-o", "link", "show", "master", BRIDGE],
        ),
        ("iptables -t nat -S", vec![]),
    ] {
        let out = if cmd.starts_with("iptables") {
            run_tool("iptables", &["-t", "nat", "-S"])
        } else {
            run_tool("ip", &args)
        };
        let shown = if cmd.starts_with("iptables") {
            // only the lines about this container
            let ip = container_ip
                .value()
                .map(|i| i.to_string())
                .unwrap_or_default();
            out.lines()
                .filter(|l| {
                    !ip.is_empty() && (l.contains(&ip) || l.contains(&host_port.to_string()))
                })
                .map(|l| format!("{l}\n"))
                .collect()
        } else {
            out
        };
        let shown_cmd = if cmd.starts_with("iptables") {
            format!(
                "iptables -t nat -S | grep -e {} -e {host_port}",
                container_ip
                    .value()
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "?".into())
            )
        } else {
            cmd.to_string()
        };
        ctx.host_step(report, &shown_cmd, &shown);
        host_side.push((shown_cmd, shown));
    }
    // eth0@ifN inside names the host-side end: interface N on the host
    let peer = parse_peer_index(&inside);
    let veth_on_bridge = peer.is_some_and(|n| {
        host_side[1]
            .1
            .lines()
            .any(|l| l.starts_with(&format!("{n}: ")) && l.contains("veth"))
    });
    let nat_rule_for_container = !host_side[2].1.trim().is_empty();

    // the same server binary on the host's loopback, serving the same files
    let layers = image.lower_dirs(&ctx.store);
    let loop_port = http::free_port().map_err(|e| LessonError::io("finding a free port", e))?;
    let mut loopback = match layers.as_slice() {
        [root] => start_host_httpd(root, loop_port).map_err(|e| e.to_string()),
        _ => Err("the busybox image has more than one layer".to_string()),
    };
    if loopback.is_ok() {
        ctx.host_step(
            report,
            &format!(
                "busybox httpd -f -p 127.0.0.1:{loop_port} -h {} &   # the same server on the host, for comparison",
                layers[0].display()
            ),
            "",
        );
    }

    ctx.say.heading(&format!(
        "{runs} small requests and 3 large ones on each path"
    ));
    let mut paths = Vec::new();
    let mut large_bytes = None;
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, loop_port));
    let mut targets: Vec<(&'static str, Result<SocketAddr, String>)> = vec![(
        "host loopback",
        loopback.as_ref().map(|_| lo).map_err(|e| e.clone()),
    )];
    targets.push((
        "container over the bridge",
        container_ip
            .value()
            .map(|ip| SocketAddr::from((*ip, PORT)))
            .ok_or_else(|| "no container address".to_string()),
    ));
    targets.push((
        "published port (127.0.0.1 → DNAT)",
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))),
    ));
    for (name, target) in targets {
        let path = match target {
            Ok(addr) => {
                let _ = http::get_until(addr, SMALL, Duration::from_secs(20), || true);
                let (latency, tput, bytes) = time_path(addr, runs);
                large_bytes = large_bytes.or(bytes);
                show_timed(ctx, addr, runs, &latency, &tput);
                Path {
                    name,
                    addr: addr.to_string(),
                    latency_ms: latency,
                    throughput: tput,
                }
            }
            Err(why) => Path {
                name,
                addr: "-".into(),
                latency_ms: Measured::failed(why.clone()),
                throughput: Measured::failed(why),
            },
        };
        paths.push(path);
    }
    if let Ok(child) = &mut loopback {
        let _ = child.kill();
        let _ = child.wait();
    }
    d.stop()?;
    ctx.finish_detached(report, d, RUN_TIMEOUT)?;

    ctx.say
        .heading("the same server in a microVM: virtio-net, a tap, the same bridge");
    let vm = if let Some(why) = ctx.vm_cannot_serve() {
        ctx.say.note(&format!("not run here: {why}."));
        VmHalf::NotHere(why)
    } else {
        VmHalf::from_measured(vm_half(
            ctx,
            report,
            &image,
            runs,
            &mut paths,
            &mut large_bytes,
        ))
    };
    if let VmHalf::Failed(why) = &vm {
        report.check::<()>("the server in a microVM", &Measured::failed(why));
    }
    report.check("container address", &container_ip);
    for p in &paths {
        report.check(&format!("{} latency", p.name), &p.latency_ms);
        report.check(&format!("{} throughput", p.name), &p.throughput);
    }
    Ok(Measurements {
        vm,
        container_ip,
        inside,
        host_side,
        veth_on_bridge,
        nat_rule_for_container,
        paths,
        large_bytes,
    })
}

/// The server in a microVM on the default bridge with a published port:
/// its own view, the host's, and the two paths to it timed like the others.
fn vm_half(
    ctx: &Context,
    report: &mut LessonReport,
    image: &twinbox_engine::image::Image,
    runs: usize,
    paths: &mut Vec<Path>,
    large_bytes: &mut Option<u64>,
) -> Measured<VmNet> {
    let host_port = match http::free_port() {
        Ok(p) => p,
        Err(e) => return Measured::failed(format!("no free port: {e}")),
    };
    let opts = RunOptions {
        cmd: sh(VM_INSIDE),
        ..published(None, host_port, PORT)
    };
    let req = ctx.vm_request(BUSYBOX, image, &opts, VM_MEMORY_MIB);
    if let Err(why) = ctx.prepare_vm(&req) {
        return Measured::failed(why);
    }
    let mut timed = Vec::new();
    let served = ctx.vm_serving(report, &req, |s| {
        if !s.wait_for("ready", boot_timeout()) {
            return Err("the VM's server did not start".into());
        }
        let inside = s.output();
        let ip = parse_inet(&inside).ok_or("no IPv4 address on the guest's eth0")?;
        let mut host_side = Vec::new();
        let members = run_tool("ip", &["-o", "link", "show", "master", BRIDGE]);
        host_side.push((format!("ip -o link show master {BRIDGE}"), members));
        let nat: String = run_tool("iptables", &["-t", "nat", "-S"])
            .lines()
            .filter(|l| l.contains(&ip.to_string()) || l.contains(&host_port.to_string()))
            .map(|l| format!("{l}\n"))
            .collect();
        host_side.push((
            format!("iptables -t nat -S | grep -e {ip} -e {host_port}"),
            nat,
        ));
        for (name, addr) in [
            ("microVM over the bridge", SocketAddr::from((ip, PORT))),
            (
                "microVM published port (127.0.0.1 → DNAT)",
                SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)),
            ),
        ] {
            let _ = http::get_until(addr, SMALL, Duration::from_secs(30), || s.running());
            timed.push((name, addr, time_path(addr, runs)));
        }
        Ok((ip, inside, host_side))
    });
    for (name, addr, (latency, tput, bytes)) in timed {
        show_timed(ctx, addr, runs, &latency, &tput);
        *large_bytes = large_bytes.or(bytes);
        paths.push(Path {
            name,
            addr: addr.to_string(),
            latency_ms: latency,
            throughput: tput,
        });
    }
    match served {
        Measured::Value(v) => {
            let (ip, inside, host_side) = v.found;
            for (cmd, out) in &host_side {
                ctx.host_step(report, cmd, out);
            }
            let nat_rule_for_vm = !host_side[1].1.trim().is_empty();
            Measured::Value(VmNet {
                ip,
                inside,
                host_side,
                nat_rule_for_vm,
                emulated: v.run.emulated,
            })
        }
        Measured::Failed(why) => Measured::Failed(why),
    }
}

/// Act two: the path table and two charts.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new(
        "the same HTTP server reached three ways",
        &["path", "address", "latency (median, spread)", "throughput"],
    );
    for p in &m.paths {
        t.row(vec![
            p.name.into(),
            p.addr.clone().into(),
            p.latency_ms.as_ref().map(|s| s.describe()).into(),
            p.throughput
                .as_ref()
                .map(|b| format!("{}/s", format_bytes(*b as u64)))
                .into(),
        ]);
    }
    report.tables.push(t);
    let mut t = Table::new("the network, from each end", &["", "seen"]);
    t.row(vec![
        "inside: eth0".into(),
        m.container_ip
            .as_ref()
            .map(|ip| format!("{ip}, default route via the bridge"))
            .into(),
    ]);
    t.row(vec![
        "host: the container's veth on twinbox0".into(),
        if m.veth_on_bridge { "yes" } else { "not found" }.into(),
    ]);
    t.row(vec![
        "host: NAT rules naming the container".into(),
        if m.nat_rule_for_container {
            "yes"
        } else {
            "none found"
        }
        .into(),
    ]);
    t.row(vec![
        "inside the microVM: eth0".into(),
        m.vm.cell(|v| {
            format!(
                "{}, {}",
                v.ip,
                v.inside
                    .lines()
                    .find(|l| l.starts_with("eth0 driver"))
                    .unwrap_or("driver not seen")
            )
        }),
    ]);
    t.row(vec![
        "host: NAT rules naming the microVM".into(),
        m.vm.cell(|v| {
            if v.nat_rule_for_vm {
                "yes"
            } else {
                "none found"
            }
            .into()
        }),
    ]);
    report.tables.push(t);
    report.charts.push(Chart {
        title: "latency of one small request (median; whiskers: fastest to slowest)".into(),
        unit: Unit::Milliseconds,
        bars: m
            .paths
            .iter()
            .map(|p| charts::stats_bar(p.name, side_of(p.name), &p.latency_ms))
            .collect(),
        note: None,
    });
    report.charts.push(Chart {
        title: format!(
            "throughput, bytes per second ({} file, 3 times)",
            m.large_bytes.map_or("large".into(), format_bytes)
        ),
        unit: Unit::Bytes,
        bars: m
            .paths
            .iter()
            .map(|p| charts::bar(p.name, side_of(p.name), p.throughput.clone(), None))
            .collect(),
        note: None,
    });
}

fn side_of(name: &str) -> Side {
    if name.starts_with("host") {
        Side::Host
    } else if name.starts_with("microVM") {
        Side::Vm
    } else {
        Side::Container
    }
}

/// Act three: the findings, with the numbers.
fn explain(m: &Measurements, report: &mut LessonReport) {
    if let Some(ip) = m.container_ip.value() {
        report.findings.push(format!(
            "Inside, the container has one interface, eth0, with address {ip} and a default route through the bridge. On the host, the other end of its veth pair {} on {BRIDGE}, and netfilter's NAT table {} rules naming the container's address or its published port.",
            if m.veth_on_bridge { "is plugged in" } else { "was not found" },
            if m.nat_rule_for_container { "has" } else { "has no" }
        ));
    }
    let get = |n: &str| m.paths.iter().find(|p| p.name.starts_with(n));
    if let (Some(lo), Some(br)) = (get("host loopback"), get("container over")) {
        if let (Some(l), Some(b)) = (lo.latency_ms.value(), br.latency_ms.value()) {
            report.findings.push(format!(
                "The same server answered a small request in {} (median) on the host's loopback and in {} over the veth and bridge{}: the extra hops cost {}.",
                format_ms(l.median),
                format_ms(b.median),
                get("published")
                    .and_then(|p| p.latency_ms.value())
                    .map(|p| format!(", {} through the published port", format_ms(p.median)))
                    .unwrap_or_default(),
                if b.median - l.median >= 0.05 {
                    format!("about {} per request", format_ms(b.median - l.median))
                } else {
                    "nothing measurable on this run".into()
                }
            ));
        }
        if let (Some(l), Some(b)) = (lo.throughput.value(), br.throughput.value()) {
            report.findings.push(format!(
                "Throughput: {}/s on loopback, {}/s to the container. Both stay in the host's memory: no network card is involved, the packets cross a few more kernel functions.",
                format_bytes(*l as u64),
                format_bytes(*b as u64)
            ));
        }
    }
    report.caveats.push(
        "The tool is busybox's httpd and a plain HTTP client in twinbox; each request opens a new TCP connection, so the latency includes the handshake. The numbers are from a shared machine: compare the paths with each other, not with other machines."
            .into(),
    );
    if let Some(v) = m.vm.value() {
        let vm_path = get("microVM over");
        let ct_path = get("container over");
        if let (Some(vp), Some(cp)) = (vm_path, ct_path) {
            if let (Some(a), Some(b)) = (cp.latency_ms.value(), vp.latency_ms.value()) {
                report.findings.push(format!(
                    "The microVM's server ({}, eth0 inside the guest) answered a small request in {} over the same bridge, against {} for the container{}: {} a tap, the VMM's virtio-net device and the guest's own network stack{}.",
                    v.ip,
                    format_ms(b.median),
                    format_ms(a.median),
                    vm_path
                        .and_then(|p| p.throughput.value())
                        .map(|t| format!(", and moved {}/s", format_bytes(*t as u64)))
                        .unwrap_or_default(),
                    if b.median > a.median {
                        "the packet also crosses"
                    } else {
                        "no slower this time (the machine's noise is larger than the difference), although the packet also crosses"
                    },
                    if v.emulated { " (here under software emulation, which inflates the VM's numbers many times)" } else { "" }
                ));
            }
        }
    }
    if let Some(f) =
        m.vm.not_here_finding("The microVM half (virtio-net on a tap in the same bridge)")
    {
        report.findings.push(f);
    }
    let path_json: Vec<_> = m.paths.iter().map(|p| json!(p)).collect();
    report.fact("container_ip", &m.container_ip);
    report.fact("inside", &m.inside);
    report.fact("veth_on_bridge", m.veth_on_bridge);
    report.fact("nat_rule_for_container", m.nat_rule_for_container);
    report.fact("paths", path_json);
    report.fact("host_side", &m.host_side);
    report.fact("vm", m.vm.fact());
}

/// `runs` small GETs timed one by one, then the large file three times.
/// What a student sees for one timed path: the command, then its medians.
fn show_timed(
    ctx: &Context,
    addr: SocketAddr,
    runs: usize,
    latency: &Measured<Stats>,
    tput: &Measured<f64>,
) {
    ctx.show(
        Side::Host,
        &format!("wget -qO- http://{addr}{SMALL}   # ×{runs}, and {LARGE} ×3"),
    );
    ctx.say.output(&format!(
        "median {} per request, {} per second\n",
        latency
            .value()
            .map_or("failed".into(), |s| format_ms(s.median)),
        tput.value()
            .map_or("failed".into(), |b| format_bytes(*b as u64))
    ));
}

fn time_path(addr: SocketAddr, runs: usize) -> (Measured<Stats>, Measured<f64>, Option<u64>) {
    let mut times = Vec::new();
    let mut why = None;
    for _ in 0..runs {
        let t0 = Instant::now();
        match http::get(addr, SMALL) {
            Ok(a) if a.code == 200 => times.push(t0.elapsed().as_secs_f64() * 1000.0),
            Ok(a) => why = Some(format!("HTTP {}", a.code)),
            Err(e) => why = Some(e.to_string()),
        }
    }
    let latency = Measured::from_option(
        Stats::of(&times),
        why.clone().unwrap_or_else(|| "no request answered".into()),
    );
    let mut bytes = 0u64;
    let mut secs = 0.0;
    for _ in 0..3 {
        let t0 = Instant::now();
        match http::get(addr, LARGE) {
            Ok(a) if a.code == 200 => {
                secs += t0.elapsed().as_secs_f64();
                bytes += a.body.len() as u64;
            }
            Ok(a) => why = Some(format!("HTTP {}", a.code)),
            Err(e) => why = Some(e.to_string()),
        }
    }
    let throughput = if bytes > 0 && secs > 0.0 {
        Measured::Value(bytes as f64 / secs)
    } else {
        Measured::failed(why.unwrap_or_else(|| "nothing transferred".into()))
    };
    (latency, throughput, (bytes > 0).then_some(bytes / 3))
}

fn parse_inet(text: &str) -> Option<Ipv4Addr> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("inet "))?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The host-side interface index of eth0's veth peer ("2: eth0@if373: ...").
fn parse_peer_index(text: &str) -> Option<u32> {
    let rest = text.lines().find_map(|l| l.split_once(": eth0@if"))?.1;
    rest.split(':').next()?.parse().ok()
}

fn run_tool(tool: &str, args: &[&str]) -> String {
    match Command::new(tool).args(args).output() {
        Ok(o) => {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        }
        Err(e) => format!("{tool}: {e}\n"),
    }
}

/// The host's busybox httpd on loopback, serving the busybox image's files.
fn start_host_httpd(root: &std::path::Path, port: u16) -> std::io::Result<Child> {
    let bin = root.join("bin/busybox");
    Command::new(bin)
        .args(["httpd", "-f", "-p"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-h")
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_eth0_address() {
        let out = "2: eth0@if9: <BROADCAST,UP> mtu 1400\n    inet 10.77.0.5/16 brd 10.77.255.255 scope global eth0\ndefault via 10.77.0.1 dev eth0\n";
        assert_eq!(parse_inet(out), Some(Ipv4Addr::new(10, 77, 0, 5)));
        assert_eq!(parse_inet("nothing"), None);
        assert_eq!(parse_peer_index(out), Some(9));
    }
}
