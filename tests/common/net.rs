//! Network helpers of the integration tests: fetching from published ports.

use std::time::{Duration, Instant};

use super::host;

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
