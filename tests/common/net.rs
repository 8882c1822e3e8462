//! Network helpers of the integration tests: fetching from published ports.

use std::time::{Duration, Instant};

use super::{host, Lab};

/// The host's first global IPv4 address (not loopback, not our bridges).
pub fn host_address() -> Option<String> {
    let out = host("ip", &["-4", "-o", "addr", "show", "scope", "global"]);
    out.lines()
        .filter(|l| !l.contains("twinbox") && !l.contains(" tb-"))
        .find_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .split('/')
                .next()
                .map(String::from)
        })
}

/// GET `http://ADDR/` with a plain TCP client; the body, or "" after 10 s of tries.
pub fn fetch(url: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = (|| -> std::io::Result<String> {
            let sa: std::net::SocketAddr = addr.parse().expect("ip:port");
            let mut s = std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut resp = String::new();
            s.read_to_string(&mut resp)?;
            Ok(resp
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default())
        })();
        match got {
            Ok(body) if !body.is_empty() => return body,
            _ if Instant::now() > deadline => return String::new(),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The shell of a busybox httpd that answers `hello-NAME` on port 80.
pub fn httpd_script(name: &str) -> String {
    format!("echo hello-{name} > /tmp/index.html; exec httpd -f -p 80 -h /tmp")
}

/// `run -d --name NAME [EXTRA] busybox` with [`httpd_script`].
pub fn serve(lab: &Lab, name: &str, extra: &[&str]) {
    let script = httpd_script(name);
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    let r = lab.tb(&args);
    assert_eq!(r.code, 0, "twinbox {args:?}: {}", r.stderr);
}

/// SIGKILL to container `name`'s supervisor, returning once the process is
/// gone (reaped: a zombie would still count as alive), so the next command
/// is the one that finds it dead and finishes the CNI DEL.
pub fn kill_supervisor(lab: &Lab, name: &str) {
    let pid = lab.inspect(name)["Twinbox"]["SupervisorPid"]
        .as_i64()
        .expect("supervisor pid") as i32;
    // SAFETY: a pid this test's container recorded
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_gone(pid);
}

/// Polls until process `pid` no longer exists (10 s at most, then panics).
pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "process {pid} still there after 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port nothing on the host listens on right now (the kernel's pick), for
/// `-p PORT:...`: tests never assume a fixed host port is free.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free tcp port")
}

/// The same for UDP.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free udp port")
}
