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

/// `-p 8000-8010:80`: one container port on the first free host port of a
/// range, as Docker picks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRange {
    pub host_ip: Option<IpAddr>,
    pub first: u16,
    pub last: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl HostRange {
    /// The mapping on the first port of the range that is not in `taken`
    /// (ports published without a socket: other containers' NAT) and that the
    /// kernel lets bind now.
    pub fn first_free(&self, taken: &[PortMapping]) -> Result<PortMapping> {
        (self.first..=self.last)
            .map(|h| PortMapping {
                host_ip: self.host_ip,
                host_port: h,
                container_port: self.container_port,
                protocol: self.protocol.clone(),
            })
            .find(|m| !taken.iter().any(|t| clash(t, m)) && check_free(std::slice::from_ref(m)).is_ok())
            .ok_or_else(|| {
                NetworkError::BadPort(format!(
                    "no free host port in {}-{}/{} on {} for container port {}: free one or choose another range",
                    self.first,
                    self.last,
                    self.protocol,
                    self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    self.container_port
                ))
            })
    }

    /// Whether `m` is this range's pick (same container port and protocol,
    /// a host port within the range).
    pub fn holds(&self, m: &PortMapping) -> bool {
        m.container_port == self.container_port
            && m.protocol == self.protocol
            && m.host_ip == self.host_ip
            && (self.first..=self.last).contains(&m.host_port)
    }
}

/// Whether two mappings want the same host port (an unspecified address
/// clashes with every one).
pub fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.host_port == b.host_port
        && a.protocol == b.protocol
        && (a.host_ip.is_none() || b.host_ip.is_none() || a.host_ip == b.host_ip)
}

/// One `-p` as given: fixed mappings, or a host range to pick a port from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    Fixed(Vec<PortMapping>),
    FirstFreeIn(HostRange),
}

/// Parses one `-p`; a host range for one container port is resolved now, to
/// the first port the kernel lets bind (containers take [`parse_publish`] and
/// pick among their peers' ports too).
pub fn parse(spec: &str) -> Result<Vec<PortMapping>> {
    match parse_publish(spec)? {
        Publish::Fixed(m) => Ok(m),
        Publish::FirstFreeIn(r) => Ok(vec![r.first_free(&[])?]),
    }
}

/// Parses one `-p`. A missing host port means a free one, chosen now; a host
/// range for a single container port is left to pick from.
pub fn parse_publish(spec: &str) -> Result<Publish> {
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
            if c0 == c1 && h1 > h0 {
                return Ok(Publish::FirstFreeIn(HostRange {
                    host_ip,
                    first: h0,
                    last: h1,
                    container_port: c0,
                    protocol: protocol.to_string(),
                }));
            }
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
    Ok(Publish::Fixed(
        (c0..=c1)
            .zip(hosts)
            .map(|(c, h)| PortMapping {
                host_ip,
                host_port: h,
                container_port: c,
                protocol: protocol.to_string(),
            })
            .collect(),
    ))
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
        assert!(parse("1-3:80-81").is_err());
        assert!(parse("3-1:80").is_err());
        assert_eq!(
            parse("8080:80").unwrap()[0].to_string(),
            "0.0.0.0:8080->80/tcp"
        );
    }

    #[test]
    fn a_host_range_for_one_port_picks_the_first_free() {
        let r = match parse_publish("127.0.0.1:55720-55730:80/udp").unwrap() {
            Publish::FirstFreeIn(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!((r.first, r.last, r.container_port), (55720, 55730, 80));
        assert_eq!(r.protocol, "udp");
        assert_eq!(r.host_ip, Some("127.0.0.1".parse().unwrap()));
        // a port held by a socket and one published by a peer are skipped
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let first = held.local_addr().unwrap().port();
        let range = HostRange {
            first,
            last: first.saturating_add(5),
            ..r.clone()
        };
        let peer = PortMapping {
            host_ip: None,
            host_port: first + 1,
            container_port: 9,
            protocol: "udp".into(),
        };
        let got = range.first_free(std::slice::from_ref(&peer)).unwrap();
        assert!(
            got.host_port > first + 1 && got.host_port <= first + 5,
            "{got:?}"
        );
        assert!(range.holds(&got));
        let full = HostRange {
            last: first,
            ..range.clone()
        };
        let e = full.first_free(&[]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("no free host port in {first}-{first}/udp")),
            "{e}"
        );
        // a container range keeps Docker's same-size rule
        assert!(
            matches!(parse_publish("9000-9001:80-81").unwrap(), Publish::Fixed(m) if m.len() == 2)
        );
    }
}
