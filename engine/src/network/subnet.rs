//! IPv4 subnets: parsing `a.b.c.d/n`, overlap, and picking a free one for a new
//! network so it clashes with neither the host's routes nor other networks.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

/// An IPv4 network in CIDR form, stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = mask(prefix);
        Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    pub fn mask(&self) -> u32 {
        mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr)
    }

    /// Two networks overlap when the shorter prefix holds the other's address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The first usable address (the gateway by convention).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Room for at least one address besides network, gateway and broadcast.
    pub fn usable(&self) -> bool {
        self.prefix <= 29
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("subnet {s:?}: use CIDR notation like 10.100.7.0/24");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Subnet::new(addr, prefix))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The host's routes (except default routes), as subnets, with their device.
pub fn host_routes() -> Vec<(String, Subnet)> {
    let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then(|| {
                (
                    f[0].to_string(),
                    Subnet::new(Ipv4Addr::from(dst), mask.count_ones() as u8),
                )
            })
        })
        .collect()
}

/// Host-wide subnet reservations of user networks (one file per subnet holding
/// the config list path that owns it), so two stores never pick the same one.
/// On tmpfs like the leases; a reservation whose config list is gone is stale.
pub const RESERVATIONS_DIR: &str = "/run/twinbox/subnets";

fn reservation_path(s: &Subnet) -> std::path::PathBuf {
    Path::new(RESERVATIONS_DIR).join(format!("{}_{}", s.addr, s.prefix))
}

/// Every live reservation.
pub fn reserved() -> Vec<(Subnet, String)> {
    let Ok(rd) = fs::read_dir(RESERVATIONS_DIR) else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().replace('_', "/");
            let subnet: Subnet = name.parse().ok()?;
            let owner = fs::read_to_string(e.path()).ok()?;
            if !Path::new(owner.trim()).exists() {
                let _ = fs::remove_file(e.path());
                return None;
            }
            Some((subnet, owner.trim().to_string()))
        })
        .collect()
}

/// Claims `subnet` for the config list at `owner`; false when another holds it.
pub fn reserve(subnet: &Subnet, owner: &Path) -> std::io::Result<bool> {
    fs::create_dir_all(RESERVATIONS_DIR)?;
    let path = reservation_path(subnet);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(owner.to_string_lossy().as_bytes())?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let held = fs::read_to_string(&path).unwrap_or_default();
            if held.trim() == owner.to_string_lossy() {
                return Ok(true);
            }
            if !held.trim().is_empty() && !Path::new(held.trim()).exists() {
                // stale: its store or network is gone
                let _ = fs::remove_file(&path);
                return reserve(subnet, owner);
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Drops the reservation of `subnet` if `owner` holds it.
pub fn release(subnet: &Subnet, owner: &Path) {
    let path = reservation_path(subnet);
    if fs::read_to_string(&path).is_ok_and(|h| h.trim() == owner.to_string_lossy()) {
        let _ = fs::remove_file(path);
    }
}

/// User networks get /24s from 10.100.0.0 upwards (the default bridge takes a
/// /16 from 10.77-10.99): the first one that overlaps nothing in `taken`.
pub fn pick(taken: &[Subnet]) -> Option<Subnet> {
    (100u32..128)
        .flat_map(|b| (0u32..256).map(move |c| (b, c)))
        .map(|(b, c)| Subnet::new(Ipv4Addr::new(10, b as u8, c as u8, 0), 24))
        .find(|s| !taken.iter().any(|t| t.overlaps(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let s: Subnet = "10.100.7.9/24".parse().unwrap();
        assert_eq!(s.to_string(), "10.100.7.0/24");
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 100, 7, 1));
        assert!("10.1.2.3".parse::<Subnet>().is_err());
        assert!("10.1.2.3/33".parse::<Subnet>().is_err());
        assert!("nonsense/8".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap_both_ways() {
        let big: Subnet = "10.0.0.0/8".parse().unwrap();
        let small: Subnet = "10.100.3.0/24".parse().unwrap();
        let other: Subnet = "192.168.1.0/24".parse().unwrap();
        assert!(big.overlaps(&small) && small.overlaps(&big));
        assert!(!small.overlaps(&other));
        assert!(small.contains(Ipv4Addr::new(10, 100, 3, 200)));
        assert!(!small.contains(Ipv4Addr::new(10, 100, 4, 1)));
    }

    #[test]
    fn pick_skips_what_is_taken() {
        let taken: Vec<Subnet> = ["10.100.0.0/24", "10.100.1.0/25", "10.100.2.0/23"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(pick(&taken).unwrap().to_string(), "10.100.4.0/24");
        let all: Subnet = "10.96.0.0/11".parse().unwrap();
        assert_eq!(pick(&[all]), None);
    }
}
