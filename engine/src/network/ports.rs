//! `-p [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp]` (with ranges) as portmap mappings.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{NetworkError, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Unspecified (0.0.0.0) publishes on every host address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
}

impl PortMapping {
    pub fn to_cni(&self) -> Value {
        let mut v = json!({
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        });
        if let Some(ip) = self.host_ip {
            v["hostIP"] = json!(ip.to_string());
        }
        v
    }
}

impl std::fmt::Display for PortMapping {
    /// As `docker ps`: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

fn range(s: &str, what: &str, spec: &str) -> Result<(u16, u16)> {
    let bad = || {
        NetworkError::BadPort(format!(
            "port {spec:?}: bad {what} {s:?}: use 1-65535 or a range like 8000-8010"
        ))
    };
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses one `-p`. A missing host port means a free one, chosen now.
pub fn parse(spec: &str) -> Result<Vec<PortMapping>> {
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((r, p @ ("tcp" | "udp"))) => (r, p),
        Some((_, p)) => {
            return Err(NetworkError::BadPort(format!(
                "port {spec:?}: unknown protocol {p:?}: use tcp or udp"
            )))
        }
        None => (spec, "tcp"),
    };
    let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
    let (ip, host, cont) = match parts.as_slice() {
        [c] => (None, None, *c),
        [c, h] => (None, Some(*h), *c),
        [c, h, ip] => (Some(*ip), (!h.is_empty()).then_some(*h), *c),
        _ => unreachable!("rsplitn yields 1 to 3 parts"),
    };
    let host_ip = match ip.map(|s| s.trim_matches(|c| c == '[' || c == ']')) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
            NetworkError::BadPort(format!("port {spec:?}: bad host address {s:?}"))
        })?),
    };
    let (c0, c1) = range(cont, "container port", spec)?;
    let hosts: Vec<u16> = match host {
        Some(h) => {
            let (h0, h1) = range(h, "host port", spec)?;
            if h1 - h0 != c1 - c0 {
                return Err(NetworkError::BadPort(format!(
                    "port {spec:?}: the host and container ranges differ in size"
                )));
            }
            (h0..=h1).collect()
        }
        None => (c0..=c1)
            .map(|_| free_port(protocol))
            .collect::<Result<_>>()?,
    };
    Ok((c0..=c1)
        .zip(hosts)
        .map(|(c, h)| PortMapping {
            host_ip,
            host_port: h,
            container_port: c,
            protocol: protocol.to_string(),
        })
        .collect())
}

/// A high port the kernel says is free now.
pub fn free_port(protocol: &str) -> Result<u16> {
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let port = if protocol == "udp" {
        UdpSocket::bind(any).and_then(|s| s.local_addr())
    } else {
        TcpListener::bind(any).and_then(|s| s.local_addr())
    };
    port.map(|a| a.port())
        .map_err(|e| NetworkError::BadPort(format!("cannot find a free port: {e}")))
}

/// Fails if any host port is taken (by binding it, as the kernel would refuse).
pub fn check_free(mappings: &[PortMapping]) -> Result<()> {
    for m in mappings {
        let addr = SocketAddr::new(
            m.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            m.host_port,
        );
        let taken = if m.protocol == "udp" {
            UdpSocket::bind(addr).err()
        } else {
            TcpListener::bind(addr).err()
        };
        if let Some(e) = taken {
            return Err(NetworkError::BadPort(format!(
                "port {}/{} on {} is not available: {e}",
                m.host_port,
                m.protocol,
                addr.ip()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let m = parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(m[0].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!((m[0].host_port, m[0].container_port), (8080, 80));
        assert_eq!(m[0].protocol, "udp");
        let m = parse("9000-9002:8000-8002").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[2].host_port, m[2].container_port), (9002, 8002));
        let m = parse("80").unwrap();
        assert!(m[0].host_port > 0);
        assert!(parse("80/sctp").is_err());
        assert!(parse("1-3:80").is_err());
        assert_eq!(
            parse("8080:80").unwrap()[0].to_string(),
            "0.0.0.0:8080->80/tcp"
        );
    }
}
