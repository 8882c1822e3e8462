//! network: what a container's network is (a veth pair, one end in the
//! container's namespace as eth0, the other on the host's bridge; NAT and a
//! published port in netfilter), seen from inside and from the host, and what
//! the extra hops cost against loopback, measured with real tools: iperf3
//! (TCP throughput, and the round trip under that load) against the same
//! iperf3 server everywhere, and ping (one small packet's round trip).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::RunOptions;

use super::vm_serving::VmHalf;
use super::{three_acts, Lesson};
use crate::charts;
use crate::context::{boot_timeout, published, sh, Context, RUN_TIMEOUT, VM_MEMORY_MIB};
use crate::measure::net::{self, IperfRun};
use crate::measure::time::Stats;
use crate::report::{
    format_bytes, format_ms, Chart, LessonReport, Measured, Side, Step, Table, Unit,
};
use crate::LessonError;
use twinbox_engine::image::iperf3 as iperf3_image;

pub struct Network;

/// iperf3's own port, inside the container and the VM.
const PORT: u16 = 5201;
/// The bridge device of the default network.
const BRIDGE: &str = "twinbox0";

const INSIDE: &str = "ip -4 addr show eth0; ip route; echo ready; exec iperf3 -s -p 5201";
/// The same in the VM, plus which driver the guest's kernel bound to eth0.
const VM_INSIDE: &str = "ip -4 addr show eth0; ip route; echo \"eth0 driver: $(basename $(readlink /sys/class/net/eth0/device/driver))\"; echo ready; exec iperf3 -s -p 5201";

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
             to the container's address. The host's own connections to a published port are \
             sent there earlier where the kernel allows it: a small BPF program on the cgroup2 \
             root rewrites the destination when the socket connects (what Cilium calls \
             socket-level load balancing), so none of their packets needs rewriting \
             (`twinbox doctor` says whether it is on).",
            "A microVM's network is built from the same parts one level down: inside the \
             guest a virtio-net card, which the VMM connects to a tap device; the tap sits in \
             the VM's own network namespace, bridged there to a veth whose other end is on \
             the same host bridge (twinbox0) as the containers'. The guest's kernel has its \
             own network stack; the host's bridge and netfilter rules are the same kind as the \
             container's.",
            "The lesson starts an iperf3 server in a container, looks at both ends, and \
             measures with two real tools: iperf3 sends TCP data as fast as the path takes it \
             (throughput) and reports the round-trip time the kernel's TCP measured while the \
             path was full; ping sends one small packet at a time and times its echo (latency \
             of an idle path). The paths: loopback on the host (the same iperf3 as a server \
             there), the container's address over the bridge, its published port; then the \
             same server in a microVM, over the bridge and through its published port. A \
             published port is a TCP port: ping has no port to go to, so those two paths get \
             iperf3's numbers only.",
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
    /// ping's round trips (milliseconds); None where ping cannot go: a
    /// published port is a TCP port, not an address.
    latency_ms: Option<Measured<Stats>>,
    /// Bytes per second iperf3's receiver counted.
    throughput: Measured<f64>,
    /// The whole iperf3 run (bytes, seconds, retransmits, round trip under load).
    iperf3: Measured<IperfRun>,
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
    /// Seconds of iperf3 traffic on each path.
    iperf3_seconds: u32,
}

/// Act one: the server in a container, both ends looked at, three paths timed.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let iperf3 = net::find_iperf3().map_err(LessonError::BadInput)?;
    let runs = report.runs;
    // a short transfer is enough to fill these paths; --runs 1 is a check
    let secs: u32 = if runs <= 3 { 1 } else { 2 };
    ctx.say
        .heading("the measuring tool: iperf3, in an image built offline");
    let image = iperf3_base(ctx, report)?;
    let host_port = free_port()?;
    let opts = RunOptions {
        cmd: sh(INSIDE),
        ..published(Some(Ipv4Addr::LOCALHOST.into()), host_port, PORT)
    };
    ctx.say
        .heading("inside: an iperf3 server in a container on the default bridge");
    let mut d = ctx.detached(report, iperf3_image::DEFAULT_NAME, &opts)?;
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

    // the same server program on the host's loopback
    let loop_port = free_port()?;
    let mut loopback = start_host_server(&iperf3, loop_port).map_err(|e| e.to_string());
    if loopback.is_ok() {
        ctx.host_step(
            report,
            &format!(
                "iperf3 -s -B 127.0.0.1 -p {loop_port} &   # the same server on the host, for comparison"
            ),
            "",
        );
    }

    ctx.say.heading(&format!(
        "on each path: iperf3 for {secs} s, then ping ×{}",
        runs.max(3)
    ));
    let mut paths = Vec::new();
    let lo = SocketAddr::from((Ipv4Addr::LOCALHOST, loop_port));
    let mut targets: Vec<(&'static str, Result<SocketAddr, String>, bool)> = vec![(
        "host loopback",
        loopback.as_ref().map(|_| lo).map_err(|e| e.clone()),
        true,
    )];
    targets.push((
        "container over the bridge",
        container_ip
            .value()
            .map(|ip| SocketAddr::from((*ip, PORT)))
            .ok_or_else(|| "no container address".to_string()),
        true,
    ));
    targets.push((
        "published port (127.0.0.1)",
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))),
        false,
    ));
    for (name, target, pingable) in targets {
        let path = match target {
            Ok(addr) => time_path(
                ctx,
                &iperf3,
                name,
                addr,
                pingable,
                runs,
                secs,
                Duration::from_secs(20),
                &mut || true,
            ),
            Err(why) => Path {
                name,
                addr: "-".into(),
                latency_ms: pingable.then(|| Measured::failed(why.clone())),
                throughput: Measured::failed(why.clone()),
                iperf3: Measured::failed(why),
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
            ctx, report, &image, &iperf3, runs, secs, &mut paths,
        ))
    };
    if let VmHalf::Failed(why) = &vm {
        report.check::<()>("the server in a microVM", &Measured::failed(why));
    }
    report.check("container address", &container_ip);
    for p in &paths {
        if let Some(l) = &p.latency_ms {
            report.check(&format!("{} latency", p.name), l);
        }
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
        iperf3_seconds: secs,
    })
}

fn free_port() -> Result<u16, LessonError> {
    crate::measure::http::free_port().map_err(|e| LessonError::io("finding a free port", e))
}

/// `twinbox image bootstrap iperf3` (busybox and the host's iperf3 with its
/// libraries), unless the image is already in the store.
fn iperf3_base(
    ctx: &Context,
    report: &mut LessonReport,
) -> Result<twinbox_engine::image::Image, LessonError> {
    let command = "twinbox image bootstrap iperf3";
    ctx.show(Side::Host, command);
    if let Ok(img) = ctx.image(iperf3_image::DEFAULT_NAME) {
        ctx.say.output(&format!(
            "(already in the store: {} {})\n",
            iperf3_image::DEFAULT_NAME,
            img.id
        ));
        return Ok(img);
    }
    let t0 = Instant::now();
    let result = iperf3_image::bootstrap_iperf3(&ctx.store, iperf3_image::DEFAULT_NAME);
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (output, error) = match &result {
        Ok(img) => (format!("{} {}\n", iperf3_image::DEFAULT_NAME, img.id), None),
        Err(e) => (String::new(), Some(e.to_string())),
    };
    ctx.record(
        report,
        Step::ran(Side::Host, command.to_string(), output, error, ms),
    );
    Ok(result?)
}

/// The server in a microVM on the default bridge with a published port:
/// its own view, the host's, and the two paths to it timed like the others.
fn vm_half(
    ctx: &Context,
    report: &mut LessonReport,
    image: &twinbox_engine::image::Image,
    iperf3: &std::path::Path,
    runs: usize,
    secs: u32,
    paths: &mut Vec<Path>,
) -> Measured<VmNet> {
    let host_port = match crate::measure::http::free_port() {
        Ok(p) => p,
        Err(e) => return Measured::failed(format!("no free port: {e}")),
    };
    let opts = RunOptions {
        cmd: sh(VM_INSIDE),
        ..published(None, host_port, PORT)
    };
    let req = ctx.vm_request(iperf3_image::DEFAULT_NAME, image, &opts, VM_MEMORY_MIB);
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
        for (name, addr, pingable) in [
            (
                "microVM over the bridge",
                SocketAddr::from((ip, PORT)),
                true,
            ),
            (
                "microVM published port (127.0.0.1)",
                SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)),
                false,
            ),
        ] {
            timed.push(time_path(
                ctx,
                iperf3,
                name,
                addr,
                pingable,
                runs,
                secs,
                Duration::from_secs(30),
                &mut || s.running(),
            ));
        }
        Ok((ip, inside, host_side))
    });
    paths.extend(timed);
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
        "the same iperf3 server reached each way",
        &[
            "path",
            "address",
            "ping round trip (median, spread)",
            "iperf3 throughput",
            "TCP round trip under load",
        ],
    );
    for p in &m.paths {
        t.row(vec![
            p.name.into(),
            p.addr.clone().into(),
            match &p.latency_ms {
                Some(l) => l.as_ref().map(|s| s.describe()).into(),
                None => "no ping through a port".into(),
            },
            p.throughput
                .as_ref()
                .map(|b| format!("{}/s", format_bytes(*b as u64)))
                .into(),
            p.iperf3
                .as_ref()
                .map(|r| r.mean_rtt_ms.map_or("-".into(), format_ms))
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
        title: "ping: round trip of one small packet (median; whiskers: fastest to slowest)".into(),
        unit: Unit::Milliseconds,
        bars: m
            .paths
            .iter()
            .filter_map(|p| {
                let l = p.latency_ms.as_ref()?;
                Some(charts::stats_bar(p.name, side_of(p.name), l))
            })
            .collect(),
        note: None,
    });
    report.charts.push(Chart {
        title: format!(
            "iperf3: TCP throughput, bytes per second ({} s on each path)",
            m.iperf3_seconds
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

/// How the host's connections through a published port reach the container.
fn published_path() -> &'static str {
    match twinbox_engine::network::socket_lb::status() {
        twinbox_engine::network::socket_lb::Status::Off(_) => {
            "where each packet is also rewritten by DNAT"
        }
        _ => "whose destination was rewritten once, when the socket connected (so no packet is NATed)",
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
    let ping_median = |p: Option<&Path>| {
        p.and_then(|p| p.latency_ms.as_ref())
            .and_then(|l| l.value())
            .map(|s| s.median)
    };
    let tput = |p: Option<&Path>| p.and_then(|p| p.throughput.value()).copied();
    let (lo, ct, ct_pub) = (
        get("host loopback"),
        get("container over"),
        get("published port"),
    );
    if let (Some(l), Some(b)) = (ping_median(lo), ping_median(ct)) {
        report.findings.push(format!(
            "ping: one small packet went there and back in {} (median) on the host's loopback and in {} to the container over the veth and bridge ({}): the extra hops cost {}.",
            format_ms(l),
            format_ms(b),
            times(b, l, "loopback's"),
            if b - l >= 0.005 {
                format!("about {} per round trip", format_ms(b - l))
            } else {
                "nothing measurable on this run".into()
            }
        ));
    }
    if let (Some(l), Some(b)) = (tput(lo), tput(ct)) {
        report.findings.push(format!(
            "iperf3: {}/s on loopback, {}/s to the container over the bridge ({} of loopback){}. Both stay in the host's memory: no network card is involved, the packets cross a few more kernel functions (the veth pair, the bridge, netfilter's hooks).",
            format_bytes(l as u64),
            format_bytes(b as u64),
            percent(b, l),
            tput(ct_pub)
                .map(|p| format!(
                    ", and {}/s through the published port, {} ({} of loopback)",
                    format_bytes(p as u64),
                    published_path(),
                    percent(p, l)
                ))
                .unwrap_or_default()
        ));
    }
    report.caveats.push(
        "ping times an idle path (ICMP echo, one 64-byte packet at a time); iperf3 fills the path with TCP data for a few seconds, and its round-trip column is what the kernel's TCP measured while the path was full, so it includes queueing. A published port is a TCP port: ping cannot go through it. The numbers are from a shared machine: compare the paths with each other, not with other machines."
            .into(),
    );
    if let Some(v) = m.vm.value() {
        let vm_path = get("microVM over");
        let emulated = if v.emulated {
            " (here under software emulation, which inflates the VM's numbers many times)"
        } else {
            ""
        };
        if let (Some(a), Some(b)) = (ping_median(ct), ping_median(vm_path)) {
            report.findings.push(format!(
                "The microVM's server ({}, eth0 inside the guest) answered ping in {} over the same bridge, against {} for the container ({}): {} a tap, the VMM's virtio-net device and the guest's own network stack{emulated}.",
                v.ip,
                format_ms(b),
                format_ms(a),
                times(b, a, "the container's"),
                if b > a {
                    "the packet also crosses"
                } else {
                    "no slower this time (the machine's noise is larger than the difference), although the packet also crosses"
                },
            ));
        }
        if let (Some(a), Some(b)) = (tput(ct), tput(vm_path)) {
            report.findings.push(format!(
                "iperf3 moved {}/s to the microVM against {}/s to the container ({} of the container's){}: every packet to the VM is copied by the VMM between the tap and the guest's virtio queues, and the guest's kernel runs its own TCP{emulated}.",
                format_bytes(b as u64),
                format_bytes(a as u64),
                percent(b, a),
                tput(lo)
                    .map(|l| format!(", {} of loopback", percent(b, l)))
                    .unwrap_or_default(),
            ));
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
    report.fact("iperf3_seconds", m.iperf3_seconds);
    report.fact("host_side", &m.host_side);
    report.fact("vm", m.vm.fact());
}

/// "2.3× loopback's": the ratio of time a to time b, whose path is `of`.
fn times(a: f64, b: f64, of: &str) -> String {
    if b > 0.0 {
        format!("{:.1}× {of}", a / b)
    } else {
        "no ratio: the reference was zero".into()
    }
}

/// a as a percentage of b, for throughputs.
fn percent(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.0}%", 100.0 * a / b)
    } else {
        "no ratio".into()
    }
}

/// One path measured: ping (where it can go) and iperf3, shown as a student
/// would type them. `alive` says whether the server is still there to wait for.
#[allow(clippy::too_many_arguments)]
fn time_path(
    ctx: &Context,
    iperf3: &std::path::Path,
    name: &'static str,
    addr: SocketAddr,
    pingable: bool,
    runs: usize,
    secs: u32,
    wait: Duration,
    alive: &mut dyn FnMut() -> bool,
) -> Path {
    // iperf3 first: its retries wait for a server that is still starting
    ctx.show(Side::Host, &net::iperf3_shown(addr, secs));
    let run = Measured::from_result(net::iperf3_until(iperf3, addr, secs, wait, alive));
    ctx.say.output(&match run.value() {
        Some(r) => format!(
            "{}/s received in {:.1} s{}{}\n",
            format_bytes(r.bytes_per_second as u64),
            r.seconds,
            r.retransmits
                .map(|n| format!(", {n} retransmits"))
                .unwrap_or_default(),
            r.mean_rtt_ms
                .map(|ms| format!(", TCP round trip under load {}", format_ms(ms)))
                .unwrap_or_default()
        ),
        None => format!("failed: {}\n", run.failure().unwrap_or_default()),
    });
    let latency = pingable.then(|| {
        let host = addr.ip();
        // a median of at least three: one echo alone can be the odd one
        let count = runs.max(3);
        ctx.show(Side::Host, &net::ping_shown(host, count));
        let l = Measured::from_result(net::ping(host, count)).map(|t| Stats::of(&t));
        let l = match l {
            Measured::Value(Some(s)) => Measured::Value(s),
            Measured::Value(None) => Measured::failed("no reply"),
            Measured::Failed(why) => Measured::Failed(why),
        };
        ctx.say.output(&match l.value() {
            Some(s) => format!("round trip {}\n", s.describe()),
            None => format!("failed: {}\n", l.failure().unwrap_or_default()),
        });
        l
    });
    Path {
        name,
        addr: addr.to_string(),
        latency_ms: latency,
        throughput: run.as_ref().map(|r| r.bytes_per_second),
        iperf3: run,
    }
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

/// The host's iperf3 as a server on loopback, for the path with no hop.
fn start_host_server(iperf3: &std::path::Path, port: u16) -> std::io::Result<Child> {
    Command::new(iperf3)
        .args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()])
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
