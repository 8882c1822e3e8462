//! Container networking on CNI. `none` is a fresh namespace with only `lo`,
//! `host` shares the host's, and every other mode is a CNI network: a config list
//! in the store (`networks/NAME.conflist`) whose plugins twinbox runs on a
//! persistent namespace (see `netns`) before the container starts and after it ends.

pub mod cni;
pub mod loopback;
pub mod netns;
pub mod ports;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use ports::PortMapping;

pub type Result<T> = std::result::Result<T, NetworkError>;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("cni plugin {0:?} not found in /opt/cni/bin or /usr/lib/cni: install the containernetworking-plugins package")]
    MissingPlugin(String),
    #[error("network plugin {plugin} ({op}): {message}")]
    Plugin {
        plugin: String,
        op: &'static str,
        message: String,
    },
    #[error("network namespace: {0}")]
    Netns(String),
    #[error("network {0:?} not found: create it with `twinbox network create {0}` or use bridge, host or none")]
    Unknown(String),
    #[error("{0}")]
    BadPort(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> NetworkError {
    NetworkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The default network, as Docker's `bridge`.
pub const DEFAULT_NETWORK: &str = "bridge";
const DEFAULT_BRIDGE_DEVICE: &str = "twinbox0";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Own network namespace with only the loopback interface, up. The library
    /// default (lessons measure containers without networking); the CLI's is bridge.
    #[default]
    None,
    /// Share the host's network namespace.
    Host,
    /// A CNI network by name (`bridge` is the default one).
    Cni(String),
    /// Join the namespace of another container (by name or id).
    Container(String),
}

impl NetworkMode {
    /// The CNI network this mode attaches to, if any.
    pub fn cni_network(&self) -> Option<&str> {
        match self {
            NetworkMode::Cni(n) => Some(n),
            _ => None,
        }
    }
}

impl FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            "default" | "bridge" => Ok(NetworkMode::Cni(DEFAULT_NETWORK.into())),
            other => match other.strip_prefix("container:") {
                Some("") => Err("--network container: needs a container name".into()),
                Some(c) => Ok(NetworkMode::Container(c.into())),
                None => Ok(NetworkMode::Cni(other.into())),
            },
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::Cni(n) => f.write_str(n),
            NetworkMode::Container(c) => write!(f, "container:{c}"),
        }
    }
}

/// Where networks live: `STORE/networks`.
pub fn networks_dir(store_root: &Path) -> PathBuf {
    store_root.join("networks")
}

fn conflist_path(store_root: &Path, name: &str) -> PathBuf {
    networks_dir(store_root).join(format!("{name}.conflist"))
}

/// Reads network `name`'s config list, writing the default `bridge` on first use.
pub fn load(store_root: &Path, name: &str) -> Result<Value> {
    let path = conflist_path(store_root, name);
    if !path.exists() {
        if name != DEFAULT_NETWORK {
            return Err(NetworkError::Unknown(name.into()));
        }
        let subnet = free_subnet().ok_or_else(|| {
            NetworkError::Netns(
                "no free private /16 for the bridge network (10.77-10.99 all routed)".into(),
            )
        })?;
        let conf = bridge_conflist(DEFAULT_NETWORK, DEFAULT_BRIDGE_DEVICE, subnet, false);
        let dir = networks_dir(store_root);
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        crate::store::atomic::write_json_atomic(&path, &conf)
            .map_err(|e| NetworkError::Netns(e.to_string()))?;
    }
    let text = fs::read(&path).map_err(|e| io_err(&path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| NetworkError::Netns(format!("{}: {e}", path.display())))
}

/// Address leases of every twinbox network, host-wide: bridges are host-wide
/// devices, and several stores may share `twinbox0`. On tmpfs, like the namespaces.
pub const IPAM_DIR: &str = "/run/twinbox/ipam";

/// The config list of a bridge network: the bridge plugin with host-local IPAM and
/// outbound NAT, portmap (with SNAT so 127.0.0.1 works), firewall.
pub fn bridge_conflist(name: &str, device: &str, subnet: Ipv4Addr, internal: bool) -> Value {
    let o = subnet.octets();
    let gateway = Ipv4Addr::new(o[0], o[1], 0, 1);
    let mut routes = vec![];
    if !internal {
        routes.push(json!({"dst": "0.0.0.0/0"}));
    }
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": device,
                "isGateway": !internal,
                "ipMasq": !internal,
                "hairpinMode": true,
                "mtu": host_mtu(),
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{subnet}/16"), "gateway": gateway.to_string()}]],
                    "routes": routes,
                    "dataDir": IPAM_DIR,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "firewall"}
        ]
    })
}

/// The MTU of the interface holding the default route (1500 if unknown).
pub fn host_mtu() -> u32 {
    let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
    routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
        })
        .find_map(|dev| {
            fs::read_to_string(format!("/sys/class/net/{dev}/mtu"))
                .ok()
                .and_then(|m| m.trim().parse().ok())
        })
        .unwrap_or(1500)
}

/// The first 10.N.0.0/16 (N from 77) that no host route overlaps.
fn free_subnet() -> Option<Ipv4Addr> {
    let routes = fs::read_to_string("/proc/net/route").unwrap_or_default();
    let taken: Vec<(u32, u32)> = routes
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // our own bridge's route is no clash (another store made it)
            if *f.first()? == DEFAULT_BRIDGE_DEVICE {
                return None;
            }
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (mask != 0).then_some((dst, mask))
        })
        .collect();
    (77..100).map(|n| Ipv4Addr::new(10, n, 0, 0)).find(|net| {
        let n = u32::from(*net);
        let m = 0xffff_0000u32;
        !taken.iter().any(|(dst, mask)| {
            let common = m & mask;
            n & common == dst & common
        })
    })
}

/// What a container's attachment left behind, kept for DEL (`network.json` in
/// the container's directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub network: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub conflist: Value,
    pub runtime_config: Value,
    pub result: Value,
}

impl Attached {
    /// The container's IPv4 address on this network.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.result["ips"]
            .as_array()?
            .iter()
            .find_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
    }
}

fn cache_path(container_dir: &Path) -> PathBuf {
    container_dir.join("network.json")
}

/// The container's persistent namespace file.
pub fn netns_path(container_dir: &Path) -> PathBuf {
    container_dir.join("netns")
}

/// Creates the container's namespace and attaches it to `network` (CNI ADD),
/// caching the result for DEL. On failure nothing is left behind.
pub fn attach(
    store_root: &Path,
    container_dir: &Path,
    container_id: &str,
    network: &str,
    ports: &[PortMapping],
) -> Result<Attached> {
    // leftovers of a crashed run go first
    detach(container_dir)?;
    let conflist = load(store_root, network)?;
    let netns = netns_path(container_dir);
    netns::create(&netns)?;
    let runtime_config =
        json!({"portMappings": ports.iter().map(PortMapping::to_cni).collect::<Vec<_>>()});
    let mut attached = Attached {
        network: network.to_string(),
        netns: netns.clone(),
        ifname: "eth0".into(),
        conflist,
        runtime_config,
        result: Value::Null,
    };
    // cached before ADD: a crash halfway through can still be undone by DEL
    save(container_dir, &attached)?;
    let at = cni::Attachment {
        container_id,
        netns: &netns,
        ifname: "eth0",
        runtime_config: &attached.runtime_config,
    };
    match cni::run_list(&attached.conflist, cni::Op::Add, &at, None) {
        Ok(result) => {
            attached.result = result;
            save(container_dir, &attached)?;
            Ok(attached)
        }
        Err(e) => {
            let _ = detach(container_dir);
            Err(e)
        }
    }
}

fn save(container_dir: &Path, a: &Attached) -> Result<()> {
    let path = cache_path(container_dir);
    crate::store::atomic::write_json_atomic(&path, a)
        .map_err(|e| NetworkError::Netns(e.to_string()))
}

/// The cached attachment of a container, if it has one.
pub fn attached(container_dir: &Path) -> Option<Attached> {
    let text = fs::read(cache_path(container_dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// CNI DEL from the cache, then the namespace goes. Idempotent.
pub fn detach(container_dir: &Path) -> Result<()> {
    let netns = netns_path(container_dir);
    let mut outcome = Ok(());
    if let Some(a) = attached(container_dir) {
        let id = container_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let at = cni::Attachment {
            container_id: &id,
            netns: &a.netns,
            ifname: &a.ifname,
            runtime_config: &a.runtime_config,
        };
        let prev = (!a.result.is_null()).then_some(&a.result);
        outcome = cni::run_list(&a.conflist, cni::Op::Del, &at, prev).map(|_| ());
    }
    netns::remove(&netns);
    let _ = fs::remove_file(cache_path(container_dir));
    outcome
}

/// `/etc/resolv.conf` for a container in its own network: the host's, unless it
/// points at a local resolver unreachable from the namespace; then public ones.
pub fn resolv_conf() -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let local = host.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("nameserver")
            && w.next()
                .is_some_and(|a| a.starts_with("127.") || a == "::1")
    });
    if local || !host.contains("nameserver") {
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n".into()
    } else {
        host
    }
}
