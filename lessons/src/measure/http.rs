//! A minimal HTTP/1.0 client for the lessons that serve something: one GET,
//! timed, against a container, a published port or the host's loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A port nobody listens on right now on 127.0.0.1 (the kernel picks it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port(),
    )
}

/// One answer: status code and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET PATH` on `addr`, with a connect and a read timeout.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw).ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// Splits an answer into status and body (a CGI's header lines may end in a
/// bare "\n").
fn parse(raw: &[u8]) -> Option<Answer> {
    let end = [&b"\r\n\r\n"[..], b"\n\n", b"\r\n\n"]
        .iter()
        .filter_map(|sep| {
            raw.windows(sep.len())
                .position(|w| w == *sep)
                .map(|i| (i, sep.len()))
        })
        .min()?;
    let head = String::from_utf8_lossy(&raw[..end.0]);
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Answer {
        code,
        body: raw[end.0 + end.1..].to_vec(),
    })
}

/// GETs until a 200 answer or the timeout; stops early when `alive` says the
/// server is gone.
pub fn get_until(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    alive: impl Fn() -> bool,
) -> Result<Answer, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match get(addr, path) {
            Ok(a) if a.code == 200 => return Ok(a),
            Ok(a) => last = format!("HTTP {}", a.code),
            Err(e) => last = e.to_string(),
        }
        if !alive() {
            return Err(format!("the server exited ({last})"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no answer within {} s: {last}", timeout.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_status_and_body() {
        let a = parse(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\n\nhello\n").unwrap();
        assert_eq!((a.code, a.text().as_str()), (200, "hello\n"));
        let a = parse(b"HTTP/1.1 404 Not Found\r\n\r\n").unwrap();
        assert_eq!(a.code, 404);
        assert!(parse(b"garbage").is_none());
    }
}
