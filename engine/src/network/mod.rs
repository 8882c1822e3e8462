//! Container networking on CNI. `none` is a fresh namespace with only `lo`,
//! `host` shares the host's, and every other mode is a CNI network: a config list
//! in the store (`networks/NAME.conflist`) whose plugins twinbox runs on a
//! persistent namespace (see `netns`) before the container starts and after it ends.

pub mod cni;
pub mod config;
pub mod leases;
pub mod mtu;
pub mod names;
pub mod netfilter;
pub mod netns;
pub mod ports;
pub mod socket_lb;
pub mod subnet;

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
    #[error("cni plugin {plugin:?} not found in {dirs}: install the containernetworking-plugins package (or set CNI_PATH to the plugins' directory)")]
    MissingPlugin { plugin: String, dirs: String },
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
    #[error("{0}")]
    BadOption(String),
    #[error("network {0} already exists: choose another name or remove it with `twinbox network rm {0}`")]
    Exists(String),
    #[error("network {name} is in use by container {containers}: remove or disconnect them first")]
    InUse { name: String, containers: String },
    #[error("firewall: {0}")]
    Firewall(String),
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

pub fn conflist_path(store_root: &Path, name: &str) -> PathBuf {
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

/// The CNI plugins twinbox's own networks run (the default `bridge` and
/// `network create`'s bridge networks): doctor requires exactly these. NAT and
/// forwarding are twinbox's rules (see `netfilter`), not the `firewall` plugin.
pub const PLUGINS: [&str; 3] = ["bridge", "host-local", "portmap"];

/// Address leases of every twinbox network, host-wide: bridges are host-wide
/// devices, and several stores may share `twinbox0`. On tmpfs, like the namespaces.
pub const IPAM_DIR: &str = "/run/twinbox/ipam";

/// The config list of a bridge network: the bridge plugin with host-local IPAM,
/// portmap (with SNAT so 127.0.0.1 works). Outbound NAT and forwarding are
/// network-wide rules twinbox keeps (see `netfilter`), not the bridge plugin's
/// `ipMasq` and the firewall plugin, which add rules for every container.
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
                "ipMasq": false,
                "hairpinMode": true,
                "mtu": mtu::uplink(),
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{subnet}/16"), "gateway": gateway.to_string()}]],
                    "routes": routes,
                    "dataDir": IPAM_DIR,
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ],
        "twinbox": {"internal": internal, "netfilter": NETWORK_WIDE}
    })
}

/// The `twinbox.netfilter` value of config lists whose NAT and forwarding
/// rules twinbox keeps per network.
pub const NETWORK_WIDE: &str = "network";

/// The netfilter view of a config list whose first plugin is `bridge`.
pub fn bridge_of(conflist: &Value) -> Option<netfilter::Bridge> {
    let first = &conflist["plugins"][0];
    if first["type"].as_str() != Some("bridge") {
        return None;
    }
    let meta = &conflist["twinbox"];
    Some(netfilter::Bridge {
        device: first["bridge"].as_str().unwrap_or("cni0").to_string(),
        subnet: first["ipam"]["ranges"][0][0]["subnet"]
            .as_str()
            .or_else(|| first["ipam"]["subnet"].as_str())
            .and_then(|s| s.parse().ok()),
        internal: meta["internal"].as_bool().unwrap_or(false),
        network_wide: meta["netfilter"].as_str() == Some(NETWORK_WIDE),
    })
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
/// the container's directory holds one per network it is on).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attached {
    pub network: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub conflist: Value,
    pub runtime_config: Value,
    pub result: Value,
    /// What peers on a user network resolve to this address: the container's
    /// name, its aliases on this network and its short id.
    #[serde(default)]
    pub names: Vec<String>,
    /// The CNI container id ADD was given: DEL must give the same one, or
    /// host-local keeps the address (a build step's id is not its directory's
    /// name). Empty in caches written before it was kept: the directory's name.
    #[serde(default)]
    pub container_id: String,
}

impl Attached {
    /// The container's IPv4 address on this network.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.result["ips"]
            .as_array()?
            .iter()
            .find_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
    }

    /// The interface's MAC address, as the plugin reported it.
    pub fn mac(&self) -> Option<&str> {
        self.result["interfaces"]
            .as_array()?
            .iter()
            .find(|i| i["name"].as_str() == Some(&self.ifname) && i["sandbox"].is_string())
            .and_then(|i| i["mac"].as_str())
    }
}

fn cache_path(container_dir: &Path) -> PathBuf {
    container_dir.join("network.json")
}

/// The container's persistent namespace file.
pub fn netns_path(container_dir: &Path) -> PathBuf {
    container_dir.join("netns")
}

/// One network to join: which, under what extra names, with which address.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub network: String,
    /// Names peers resolve to this endpoint (container name, aliases, short id).
    pub names: Vec<String>,
    /// A fixed address (`--ip`) instead of the next free one.
    pub ip: Option<Ipv4Addr>,
    /// `-p` mappings (portmap); only the first network of a container gets them.
    pub ports: Vec<PortMapping>,
    /// A fixed MAC address (`--mac-address`) for the interface, asked of the
    /// first plugin through the `mac` capability (the bridge plugin has it).
    pub mac: Option<String>,
}

/// CNI ADD of `req.network` for interface `ifname` in the namespace at `netns`.
/// The building block of every attachment, containers' and VM taps' alike: it
/// knows no container, only a namespace, an interface and an id for the plugins.
/// `before_add` sees the attachment before the plugins run, so a caller can
/// cache it and undo a crash halfway through with DEL.
pub fn add(
    store_root: &Path,
    id: &str,
    netns: &Path,
    ifname: &str,
    req: &Request,
    before_add: impl FnOnce(&Attached) -> Result<()>,
) -> Result<Attached> {
    let mut conflist = plugins_for(load(store_root, &req.network)?, req);
    let mut runtime_config =
        json!({"portMappings": req.ports.iter().map(PortMapping::to_cni).collect::<Vec<_>>()});
    if let Some(ip) = req.ip {
        let net = config::find(store_root, &req.network)?;
        match net.subnet {
            Some(s) if s.contains(ip) => {
                runtime_config["ips"] = json!([format!("{ip}/{}", s.prefix)]);
            }
            _ => {
                return Err(NetworkError::BadOption(format!(
                    "--ip {ip} is not in the subnet of network {}{}",
                    req.network,
                    net.subnet.map(|s| format!(" ({s})")).unwrap_or_default()
                )))
            }
        }
    }
    if let Some(mac) = &req.mac {
        runtime_config["mac"] = json!(mac);
        // lists written before twinbox asked for MACs lack the capability
        if let Some(first) = conflist["plugins"]
            .as_array_mut()
            .and_then(|p| p.first_mut())
            .filter(|p| p.is_object())
        {
            first["capabilities"]["mac"] = json!(true);
        }
    }
    let mut attached = Attached {
        network: req.network.clone(),
        netns: netns.to_path_buf(),
        ifname: ifname.to_string(),
        conflist,
        runtime_config,
        result: Value::Null,
        names: req.names.clone(),
        container_id: id.to_string(),
    };
    before_add(&attached)?;
    let at = cni::Attachment {
        container_id: id,
        netns,
        ifname,
        runtime_config: &attached.runtime_config,
    };
    attached.result = cni::run_list(&attached.conflist, cni::Op::Add, &at, None)?;
    if let Err(e) = secure(&attached) {
        let _ = del(id, &attached);
        return Err(e);
    }
    if let Some(mac) = &req.mac {
        // a plugin without the capability ignores it: say so, not a random MAC
        if attached.mac().map(str::to_ascii_lowercase).as_deref() != Some(mac.as_str()) {
            let _ = del(id, &attached);
            return Err(NetworkError::BadOption(format!(
                "--mac-address {mac}: network {}'s {} plugin does not set MAC addresses",
                req.network,
                attached.conflist["plugins"][0]["type"]
                    .as_str()
                    .unwrap_or("first")
            )));
        }
    }
    // portmap's DNAT is in place: the host's own connections may now skip it
    // (to an IPv4 address only: without one, DNAT alone)
    if attached.ipv4().is_some() {
        if let Err(e) = socket_lb::publish(&lb_entries(&attached)) {
            tracing::debug!(reason = %e, "published ports stay on DNAT only");
        }
    }
    Ok(attached)
}

/// An attachment's published IPv4 ports as `socket_lb` entries, aimed at its
/// address (0.0.0.0 before ADD gave one: for withdrawing only; none where
/// portmap does not run, since the socket path only shortcuts what portmap's
/// rules would do anyway).
fn lb_entries(a: &Attached) -> Vec<socket_lb::Entry> {
    let portmap = a.conflist["plugins"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["type"].as_str() == Some("portmap")));
    if !portmap {
        return vec![];
    }
    let target = a.ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mappings = a.runtime_config["portMappings"].as_array();
    mappings
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let host_ip = match m["hostIP"].as_str() {
                None | Some("") => Ipv4Addr::UNSPECIFIED,
                Some(ip) => ip.parse().ok()?, // IPv6: DNAT only
            };
            Some(socket_lb::Entry {
                host_ip,
                host_port: u16::try_from(m["hostPort"].as_u64()?).ok()?,
                protocol: socket_lb::Protocol::parse(m["protocol"].as_str().unwrap_or("tcp"))?,
                target_ip: target,
                target_port: u16::try_from(m["containerPort"].as_u64()?).ok()?,
            })
        })
        .collect()
}

/// Netfilter rules of the bridge networks twinbox knows (after ADD: the bridge
/// plugin has made the bridge by then), and the bridge's MTU.
fn secure(a: &Attached) -> Result<()> {
    match bridge_of(&a.conflist) {
        Some(b) => {
            align_bridge_mtu(&b.device, &a.conflist);
            netfilter::ensure(&b)
        }
        None => Ok(()),
    }
}

/// The bridge carries its network's MTU. The plugin sets it only when it makes
/// the bridge, and the kernel moves an unset one with its ports (a bridge left
/// without ports and then joined by a 1500-byte one stays at 1500): set once,
/// it holds, so every port and the host side agree.
fn align_bridge_mtu(device: &str, conflist: &Value) {
    let Some(want) = conflist["plugins"][0]["mtu"].as_u64() else {
        return;
    };
    if mtu::link(device).is_some_and(|have| u64::from(have) != want) {
        if let Err(e) = fs::write(format!("/sys/class/net/{device}/mtu"), want.to_string()) {
            tracing::warn!(bridge = device, mtu = want, error = %e, "cannot set the bridge's mtu");
        }
    }
}

/// The plugins to run for one attachment: portmap only when there is a port to
/// publish (without one it adds nothing, but costs two execs per container).
fn plugins_for(mut conflist: Value, req: &Request) -> Value {
    if req.ports.is_empty() {
        if let Some(plugins) = conflist["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"].as_str() != Some("portmap"));
        }
    }
    conflist
}

/// Whether every plugin network `name` would run is installed (portmap only
/// when there are ports to publish), before anything is made for a container.
pub fn check_plugins(store_root: &Path, name: &str, publishes: bool) -> Result<()> {
    let mut conflist = load(store_root, name)?;
    if !publishes {
        if let Some(plugins) = conflist["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"].as_str() != Some("portmap"));
        }
    }
    cni::check_plugins(&conflist)
}

/// CNI DEL of one attachment, from its cached config and result.
pub fn del(id: &str, a: &Attached) -> Result<()> {
    // the socket path goes first, so no connection is sent to an address
    // that is about to be given back; without a result (ADD died before it
    // was cached) the address is unknown: the ports go whatever they point at
    let entries = lb_entries(a);
    if let Err(e) = socket_lb::withdraw(&entries, a.ipv4().is_none()) {
        tracing::debug!(reason = %e, "cannot withdraw published ports from the socket path");
    }
    let at = cni::Attachment {
        container_id: id,
        netns: &a.netns,
        ifname: &a.ifname,
        runtime_config: &a.runtime_config,
    };
    let prev = (!a.result.is_null()).then_some(&a.result);
    cni::run_list(&a.conflist, cni::Op::Del, &at, prev).map(|_| ())
}

/// CNI CHECK of every cached attachment of a running container: the plugins
/// verify that what ADD made is still there (the interface and its addresses
/// and routes in the namespace, the address lease). Returns
/// each failing attachment's network and the plugin's message.
pub fn check(container_dir: &Path) -> Vec<(String, NetworkError)> {
    let mut failed = vec![];
    for a in attached(container_dir) {
        if a.result.is_null() {
            failed.push((
                a.network.clone(),
                NetworkError::Netns("ADD never finished (no cached result)".into()),
            ));
            continue;
        }
        let id = id_of(container_dir, &a);
        let at = cni::Attachment {
            container_id: &id,
            netns: &a.netns,
            ifname: &a.ifname,
            runtime_config: &a.runtime_config,
        };
        // portmap 1.1.1's CHECK looks for an IPv6 DNAT chain it never makes
        // for an IPv4-only container, and fails every healthy one
        let mut conflist = a.conflist.clone();
        if let Some(plugins) = conflist["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"].as_str() != Some("portmap"));
        }
        if let Err(e) = cni::run_list(&conflist, cni::Op::Check, &at, Some(&a.result)) {
            failed.push((a.network.clone(), e));
        }
    }
    failed
}

/// A store container's id: its directory's name.
fn dir_id(container_dir: &Path) -> String {
    container_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The CNI container id an attachment was added with.
fn id_of(container_dir: &Path, a: &Attached) -> String {
    if a.container_id.is_empty() {
        dir_id(container_dir)
    } else {
        a.container_id.clone()
    }
}

/// Containers live in STORE/containers/ID (build steps elsewhere: no peers).
fn store_of(container_dir: &Path) -> Option<&Path> {
    let parent = container_dir.parent()?;
    (parent.file_name()? == "containers").then_some(parent.parent()?)
}

/// Creates the container's namespace and attaches it to each requested network
/// (eth0, eth1...), caching every result for DEL, then updates the hosts files
/// of everyone on those networks. On failure nothing is left behind.
pub fn attach(
    store_root: &Path,
    container_dir: &Path,
    container_id: &str,
    requests: &[Request],
) -> Result<Vec<Attached>> {
    // leftovers of a crashed run go first
    detach(container_dir)?;
    let netns = netns_path(container_dir);
    netns::create(&netns)?;
    let mut done: Vec<Attached> = vec![];
    for (i, req) in requests.iter().enumerate() {
        let ifname = format!("eth{i}");
        let cached = |a: &Attached| {
            let mut all = done.clone();
            all.push(a.clone());
            // cached before ADD: a crash halfway through can still be undone by DEL
            save(container_dir, &all)
        };
        match add(store_root, container_id, &netns, &ifname, req, cached) {
            Ok(a) => {
                done.push(a);
                save(container_dir, &done)?;
            }
            Err(e) => {
                let _ = detach(container_dir);
                return Err(e);
            }
        }
    }
    if store_of(container_dir).is_some() {
        for a in &done {
            names::refresh(store_root, &a.network, None)?;
        }
    }
    Ok(done)
}

/// Joins one more network on a running container's namespace (the next free
/// ethN), as `network connect` does.
pub fn connect(container_dir: &Path, req: &Request) -> Result<Attached> {
    let store_root = store_of(container_dir).ok_or_else(|| {
        NetworkError::Netns(format!(
            "{} is not a container of a store: only containers can join networks",
            container_dir.display()
        ))
    })?;
    let mut all = attached(container_dir);
    if all.iter().any(|a| a.network == req.network) {
        return Err(NetworkError::BadOption(format!(
            "the container is already on network {}",
            req.network
        )));
    }
    let netns = netns_path(container_dir);
    let ifname = (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !all.iter().any(|a| &a.ifname == n))
        .unwrap_or_default();
    let before = all.clone();
    let cached = |a: &Attached| {
        let mut with = before.clone();
        with.push(a.clone());
        save(container_dir, &with)
    };
    let a = match add(
        store_root,
        &dir_id(container_dir),
        &netns,
        &ifname,
        req,
        cached,
    ) {
        Ok(a) => a,
        Err(e) => {
            let _ = save(container_dir, &before);
            return Err(e);
        }
    };
    all.push(a.clone());
    save(container_dir, &all)?;
    names::refresh(store_root, &a.network, None)?;
    Ok(a)
}

/// Leaves one network (CNI DEL of that attachment only), as `network disconnect`.
/// Not attached is fine.
pub fn disconnect(container_dir: &Path, network: &str) -> Result<()> {
    let all = attached(container_dir);
    let Some(a) = all.iter().find(|a| a.network == network) else {
        return Ok(());
    };
    let outcome = del(&id_of(container_dir, a), a);
    let rest: Vec<Attached> = all
        .iter()
        .filter(|x| x.network != network)
        .cloned()
        .collect();
    save(container_dir, &rest)?;
    if let Some(root) = store_of(container_dir) {
        names::refresh(root, network, Some(container_dir))?;
    }
    outcome
}

/// A container's new name: peers on its user networks resolve it instead of
/// the old one from now on (a stopped container's names are made at start).
pub fn rename(container_dir: &Path, old: &str, new: &str) -> Result<()> {
    let mut all = attached(container_dir);
    if all.is_empty() {
        return Ok(());
    }
    for name in all.iter_mut().flat_map(|a| a.names.iter_mut()) {
        if name == old {
            *name = new.to_string();
        }
    }
    save(container_dir, &all)?;
    if let Some(root) = store_of(container_dir) {
        for a in all.iter().filter(|a| a.network != DEFAULT_NETWORK) {
            names::refresh(root, &a.network, None)?;
        }
    }
    Ok(())
}

fn save(container_dir: &Path, all: &[Attached]) -> Result<()> {
    let path = cache_path(container_dir);
    crate::store::atomic::write_json_atomic(&path, &all)
        .map_err(|e| NetworkError::Netns(e.to_string()))
}

/// The cached attachments of a container (none when it has no network). Reads
/// the one-object form older versions wrote, too.
pub fn attached(container_dir: &Path) -> Vec<Attached> {
    let Ok(text) = fs::read(cache_path(container_dir)) else {
        return vec![];
    };
    serde_json::from_slice::<Vec<Attached>>(&text)
        .or_else(|_| serde_json::from_slice::<Attached>(&text).map(|a| vec![a]))
        .unwrap_or_default()
}

/// CNI DEL of every attachment from the cache (last first), then the namespace
/// goes and peers' hosts files forget the container. Idempotent.
pub fn detach(container_dir: &Path) -> Result<()> {
    let netns = netns_path(container_dir);
    let mut outcome = Ok(());
    let all = attached(container_dir);
    for a in all.iter().rev() {
        if let Err(e) = del(&id_of(container_dir, a), a) {
            outcome = outcome.and(Err(e));
        }
    }
    netns::remove(&netns);
    let _ = fs::remove_file(cache_path(container_dir));
    if let Some(root) = store_of(container_dir) {
        for a in all.iter().filter(|a| a.network != DEFAULT_NETWORK) {
            let _ = names::refresh(root, &a.network, None);
        }
    }
    outcome
}

/// `--dns`, `--dns-search` and `--dns-option` over a resolv.conf: each given
/// list replaces the file's own (`search .` means none), as Docker builds it;
/// with none given the file is unchanged.
pub fn with_dns(
    base: &str,
    dns: &[std::net::IpAddr],
    search: &[String],
    options: &[String],
) -> String {
    if dns.is_empty() && search.is_empty() && options.is_empty() {
        return base.to_string();
    }
    let words = |key: &str| -> Vec<String> {
        base.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .flat_map(|rest| rest.split_whitespace().map(String::from))
            .collect()
    };
    let nameservers: Vec<String> = if dns.is_empty() {
        words("nameserver")
    } else {
        dns.iter().map(|ip| ip.to_string()).collect()
    };
    let search = if search.is_empty() {
        words("search")
    } else {
        search.to_vec()
    };
    let options = if options.is_empty() {
        words("options")
    } else {
        options.to_vec()
    };
    let mut out = String::new();
    if !search.is_empty() && search.join(" ").trim() != "." {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plugin type in a config list, IPAM plugins included.
    fn types(conflist: &Value) -> Vec<String> {
        let mut all = vec![];
        for p in conflist["plugins"].as_array().into_iter().flatten() {
            for t in [&p["type"], &p["ipam"]["type"]] {
                if let Some(t) = t.as_str() {
                    all.push(t.to_string());
                }
            }
        }
        all
    }

    #[test]
    fn dns_flags_replace_each_list_of_resolv_conf() {
        let host = "# made by hand\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch corp.example\noptions edns0\n";
        assert_eq!(with_dns(host, &[], &[], &[]), host);
        assert_eq!(
            with_dns(host, &["1.1.1.1".parse().unwrap()], &[], &[]),
            "search corp.example\nnameserver 1.1.1.1\noptions edns0\n"
        );
        assert_eq!(
            with_dns(
                host,
                &[],
                &[".".into()],
                &["ndots:2".into(), "rotate".into()]
            ),
            "nameserver 10.0.0.2\nnameserver 10.0.0.3\noptions ndots:2 rotate\n"
        );
        assert_eq!(
            with_dns("", &[], &["a.example".into(), "b.example".into()], &[]),
            "search a.example b.example\n"
        );
    }

    #[test]
    fn published_ipv4_ports_become_socket_entries_where_portmap_runs() {
        let ports = [
            ports::parse("8080:80").unwrap(),
            ports::parse("127.0.0.1:5353:53/udp").unwrap(),
            ports::parse("[::1]:9000:90").unwrap(),
        ]
        .concat();
        let conflist = bridge_conflist("bridge", "twinbox0", Ipv4Addr::new(10, 77, 0, 0), false);
        let mut a = Attached {
            network: "bridge".into(),
            netns: PathBuf::new(),
            ifname: "eth0".into(),
            conflist: plugins_for(conflist.clone(), &Request::default()),
            runtime_config: json!({"portMappings": ports.iter().map(PortMapping::to_cni).collect::<Vec<_>>()}),
            result: json!({"ips": [{"address": "10.77.0.9/16"}]}),
            names: vec![],
            container_id: "c".into(),
        };
        assert!(lb_entries(&a).is_empty(), "no portmap, no socket path");
        a.conflist = conflist;
        let e = lb_entries(&a);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].host_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!((e[0].host_port, e[0].target_port), (8080, 80));
        assert_eq!(e[0].target_ip, Ipv4Addr::new(10, 77, 0, 9));
        assert_eq!(e[1].host_ip, Ipv4Addr::LOCALHOST);
        assert_eq!(e[1].protocol, socket_lb::Protocol::Udp);
    }

    #[test]
    fn doctor_requires_exactly_the_plugins_the_default_network_runs() {
        let mut used = types(&bridge_conflist(
            "bridge",
            "twinbox0",
            Ipv4Addr::new(10, 77, 0, 0),
            false,
        ));
        used.sort();
        let mut needed: Vec<String> = PLUGINS.iter().map(|p| p.to_string()).collect();
        needed.sort();
        assert_eq!(used, needed);
    }
}
