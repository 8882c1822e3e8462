//! The network lesson's instruments, real tools run as a student would run
//! them: `iperf3` for TCP throughput (and the round-trip time the kernel's
//! TCP measured while it ran), `ping` for the round trip of one small packet.
//! Every run has a time limit, so a path that never answers cannot hang a
//! lesson.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_engine::util::path::{find_busybox, find_in_path};

/// The host's iperf3, or a one-line error saying how to get it.
pub fn find_iperf3() -> Result<PathBuf, String> {
    find_in_path("iperf3")
        .ok_or_else(|| "no iperf3 on this host: install it with `apt-get install iperf3`".into())
}

/// One iperf3 client run, from its `--json` report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IperfRun {
    /// What the receiving side counted, per second (bytes, not bits).
    pub bytes_per_second: f64,
    pub bytes: u64,
    pub seconds: f64,
    /// TCP segments the sender had to send again.
    pub retransmits: Option<u64>,
    /// The sender's smoothed TCP round-trip time, averaged over the run
    /// (milliseconds): the latency of this path under a full load.
    pub mean_rtt_ms: Option<f64>,
}

/// `iperf3 -c HOST -p PORT -t SECS`, as a student types it.
pub fn iperf3_shown(addr: SocketAddr, secs: u32) -> String {
    format!("iperf3 -c {} -p {} -t {secs}", addr.ip(), addr.port())
}

/// Runs the iperf3 client against a server at `addr` for `secs` seconds.
pub fn iperf3_client(
    iperf3: &std::path::Path,
    addr: SocketAddr,
    secs: u32,
) -> Result<IperfRun, String> {
    let mut cmd = Command::new(iperf3);
    cmd.args(["-c", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args([
            "-t",
            &secs.to_string(),
            "--json",
            "--connect-timeout",
            "3000",
        ]);
    // the transfer, the control connection's start and end, and a margin
    let limit = Duration::from_secs(u64::from(secs) + 20);
    let (code, out, err) = run_bounded(&mut cmd, limit)?;
    let json: serde_json::Value = serde_json::from_str(&out).map_err(|_| {
        let said = err.trim().lines().last().unwrap_or_default().to_string();
        match code {
            None => format!("iperf3 gave no report in {} s", limit.as_secs()),
            Some(c) => format!("iperf3 exited with {c} and no report: {said}"),
        }
    })?;
    parse_iperf3(&json)
}

/// Tries the client until a run succeeds, `timeout` passes, or `alive` says
/// the server is gone (a server just started may not listen yet).
pub fn iperf3_until(
    iperf3: &std::path::Path,
    addr: SocketAddr,
    secs: u32,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<IperfRun, String> {
    let t0 = Instant::now();
    loop {
        match iperf3_client(iperf3, addr, secs) {
            Ok(run) => return Ok(run),
            Err(e) if t0.elapsed() >= timeout || !alive() => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// The numbers a student reads in iperf3's summary, from its JSON.
pub fn parse_iperf3(json: &serde_json::Value) -> Result<IperfRun, String> {
    if let Some(e) = json.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {e}"));
    }
    let end = &json["end"];
    let received = &end["sum_received"];
    let bits = received["bits_per_second"]
        .as_f64()
        .ok_or("iperf3's report has no end.sum_received.bits_per_second")?;
    let sender = &end["streams"][0]["sender"];
    Ok(IperfRun {
        bytes_per_second: bits / 8.0,
        bytes: received["bytes"].as_u64().unwrap_or(0),
        seconds: received["seconds"].as_f64().unwrap_or(0.0),
        retransmits: end["sum_sent"]["retransmits"].as_u64(),
        // iperf3 reports microseconds
        mean_rtt_ms: sender["mean_rtt"].as_f64().map(|us| us / 1000.0),
    })
}

/// `ping` on PATH, else busybox's (a CI host may have only busybox).
fn ping_command() -> Result<Command, String> {
    if let Some(p) = find_in_path("ping") {
        return Ok(Command::new(p));
    }
    let bb = find_busybox().ok_or(
        "no ping on this host: install it with `apt-get install iputils-ping` (or busybox-static)",
    )?;
    let mut c = Command::new(bb);
    c.arg("ping");
    Ok(c)
}

/// `ping -c COUNT -i 0.2 HOST`, as a student types it.
pub fn ping_shown(host: std::net::IpAddr, count: usize) -> String {
    format!("ping -c {count} -i 0.2 {host}")
}

/// Round-trip times (milliseconds) of `count` echo requests to `host`, one
/// per reply, in order; an error when none came back.
pub fn ping(host: std::net::IpAddr, count: usize) -> Result<Vec<f64>, String> {
    let mut cmd = ping_command()?;
    cmd.args(["-c", &count.to_string(), "-i", "0.2", "-W", "2"])
        .arg(host.to_string());
    let limit = Duration::from_secs_f64(count as f64 * 0.2 + 5.0);
    let (_, out, err) = run_bounded(&mut cmd, limit)?;
    let times = parse_ping(&out);
    if times.is_empty() {
        let said = err.trim().lines().last().unwrap_or("no reply").to_string();
        return Err(format!("ping {host}: {said}"));
    }
    Ok(times)
}

/// The `time=0.045 ms` of each reply line (iputils' and busybox's alike).
pub fn parse_ping(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.split_once("time=")?.1;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// Runs a command to its end, killed after `timeout`: exit code (None when
/// killed), stdout, stderr. Both pipes are drained while it runs.
fn run_bounded(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(Option<i32>, String, String), String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code(),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {name}: {e}")),
        }
    };
    Ok((
        code,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ping_replies_from_both_pings() {
        let busybox = "PING 10.0.0.2 (10.0.0.2): 56 data bytes\n64 bytes from 10.0.0.2: seq=0 ttl=64 time=0.245 ms\n64 bytes from 10.0.0.2: seq=1 ttl=64 time=0.073 ms\n\n--- 10.0.0.2 ping statistics ---\nround-trip min/avg/max = 0.073/0.159/0.245 ms\n";
        assert_eq!(parse_ping(busybox), vec![0.245, 0.073]);
        let iputils = "64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.031 ms\nrtt min/avg/max/mdev = 0.031/0.031/0.031/0.000 ms\n";
        assert_eq!(parse_ping(iputils), vec![0.031]);
        assert!(parse_ping("From 10.0.0.1 icmp_seq=1 Destination Host Unreachable").is_empty());
    }

    #[test]
    fn reads_iperf3_summary() {
        let j = serde_json::json!({
            "end": {
                "streams": [{"sender": {"mean_rtt": 52, "bytes": 100}}],
                "sum_sent": {"bytes": 1000, "retransmits": 3},
                "sum_received": {"bytes": 990, "seconds": 1.0, "bits_per_second": 7920.0}
            }
        });
        let r = parse_iperf3(&j).unwrap();
        assert_eq!(r.bytes_per_second, 990.0);
        assert_eq!(r.bytes, 990);
        assert_eq!(r.retransmits, Some(3));
        assert_eq!(r.mean_rtt_ms, Some(0.052));
        let e = parse_iperf3(
            &serde_json::json!({"error": "unable to connect to server: Connection refused"}),
        );
        assert_eq!(
            e.unwrap_err(),
            "iperf3: unable to connect to server: Connection refused"
        );
        assert!(parse_iperf3(&serde_json::json!({"end": {}})).is_err());
    }
}
