//! Networks as CNI config lists in the store (`networks/NAME.conflist`), as
//! nerdctl keeps them: `network create` writes one, and a user may drop in a
//! config list of their own that uses any CNI plugins (macvlan, ipvlan...).
//! twinbox's own metadata (id, labels, internal, creation time) rides in a
//! top-level `twinbox` object that CNI ignores.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::subnet::{self, Subnet};
use super::{io_err, NetworkError, Result, DEFAULT_NETWORK};

/// Names that are not CNI networks (or are the default one) and cannot be made.
pub const PREDEFINED: &[&str] = &["bridge", "host", "none", "default"];

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    /// bridge (default), macvlan or ipvlan.
    pub driver: Option<String>,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    /// No outbound route and no traffic to or from other networks.
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`-o parent=eth0` for macvlan/ipvlan, `-o mtu=1400`).
    pub options: BTreeMap<String, String>,
}

/// One network as the store holds it.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    /// Random for networks twinbox made; derived from the file for dropped-in ones.
    pub id: String,
    pub driver: String,
    pub subnet: Option<Subnet>,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub created: Option<String>,
    /// The bridge device, for bridge networks.
    pub bridge: Option<String>,
    pub path: PathBuf,
    pub conflist: Value,
}

impl Network {
    fn from_conflist(name: &str, path: PathBuf, conflist: Value) -> Network {
        let meta = &conflist["twinbox"];
        let first = &conflist["plugins"][0];
        let range = &first["ipam"]["ranges"][0][0];
        let subnet = range["subnet"]
            .as_str()
            .or_else(|| first["ipam"]["subnet"].as_str())
            .and_then(|s| s.parse().ok());
        let gateway = range["gateway"]
            .as_str()
            .or_else(|| first["ipam"]["gateway"].as_str())
            .and_then(|s| s.parse().ok());
        let driver = first["type"].as_str().unwrap_or("unknown").to_string();
        let bridge =
            (driver == "bridge").then(|| first["bridge"].as_str().unwrap_or("cni0").to_string());
        let labels = meta["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let id = meta["id"].as_str().map(String::from).unwrap_or_else(|| {
            // a dropped-in list: a stable id from its name
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(name.as_bytes()))
        });
        Network {
            name: name.to_string(),
            id,
            driver,
            subnet,
            gateway,
            internal: meta["internal"].as_bool().unwrap_or(false),
            labels,
            created: meta["created"].as_str().map(String::from),
            bridge,
            path,
            conflist,
        }
    }

    /// Docker's `host` and `none` as `network ls` and `inspect` show them:
    /// modes, not config lists (driver `host`, `null`), with a stable id.
    pub fn mode(name: &str) -> Option<Network> {
        let driver = match name {
            "host" => "host",
            "none" => "null",
            _ => return None,
        };
        use sha2::Digest;
        Some(Network {
            name: name.to_string(),
            id: hex::encode(sha2::Sha256::digest(format!("twinbox network {name}"))),
            driver: driver.to_string(),
            subnet: None,
            gateway: None,
            internal: false,
            labels: BTreeMap::new(),
            created: None,
            bridge: None,
            path: PathBuf::new(),
            conflist: Value::Null,
        })
    }

    /// `host` or `none`: no config list, no plugins.
    pub fn is_mode(&self) -> bool {
        self.conflist.is_null()
    }

    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// Docker resolves names on user networks only, never on the default bridge.
    pub fn resolves_names(&self) -> bool {
        !self.is_default()
    }
}

/// Docker's rule for names, so a name is also a safe file name.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::BadOption(format!(
            "invalid network name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )))
    }
}

/// The bridge device of a user network: `tb-` and 12 hex digits (15 bytes, the
/// kernel's limit), matched by the isolation rules' `tb-+`.
pub fn bridge_device(id: &str) -> String {
    format!("tb-{}", &id[..12])
}

/// Every network in the store (the default one made on first use), by name.
pub fn list(store_root: &Path) -> Result<Vec<Network>> {
    super::load(store_root, DEFAULT_NETWORK)?;
    let dir = super::networks_dir(store_root);
    let mut out = vec![];
    for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".conflist") else {
            continue;
        };
        match super::load(store_root, name) {
            Ok(conf) => out.push(Network::from_conflist(name, entry.path(), conf)),
            Err(e) => tracing::warn!("skipping network {name}: {e}"),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A network by name, full id or unique id prefix.
pub fn find(store_root: &Path, key: &str) -> Result<Network> {
    find_in(&list(store_root)?, key)
}

/// [`find`] among networks already listed (`default` is the default network).
pub fn find_in(all: &[Network], key: &str) -> Result<Network> {
    let key = if key == "default" {
        DEFAULT_NETWORK
    } else {
        key
    };
    if let Some(n) = all.iter().find(|n| n.name == key || n.id == key) {
        return Ok(n.clone());
    }
    let by_prefix: Vec<&Network> = all
        .iter()
        .filter(|n| key.len() >= 3 && n.id.starts_with(key))
        .collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(NetworkError::Unknown(key.to_string())),
    }
}

/// Subnets a new network must not overlap: the host's routes (other than our
/// own bridges'), every network of this store, and other stores' reservations.
fn taken_subnets(store_root: &Path) -> Result<Vec<(Subnet, String)>> {
    let mut taken: Vec<(Subnet, String)> = subnet::host_routes()
        .into_iter()
        .map(|(dev, s)| (s, format!("the host route via {dev}")))
        .collect();
    for n in list(store_root)? {
        if let Some(s) = n.subnet {
            taken.push((s, format!("network {}", n.name)));
        }
    }
    for (s, owner) in subnet::reserved() {
        taken.push((s, format!("the network of {owner}")));
    }
    Ok(taken)
}

/// The `network create -d` drivers: each is the CNI plugin of that name.
pub const DRIVERS: [&str; 3] = ["bridge", "macvlan", "ipvlan"];

/// Writes a new network's config list. Refuses taken names and clashing subnets.
pub fn create(store_root: &Path, opts: &CreateOptions) -> Result<Network> {
    validate_name(&opts.name)?;
    if PREDEFINED.contains(&opts.name.as_str()) {
        return Err(NetworkError::BadOption(format!(
            "network {} is predefined: choose another name",
            opts.name
        )));
    }
    let dir = super::networks_dir(store_root);
    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let _lock = super::names::NetworksLock::acquire(store_root)?;
    let path = super::conflist_path(store_root, &opts.name);
    if path.exists() {
        return Err(NetworkError::Exists(opts.name.clone()));
    }
    let driver = opts.driver.clone().unwrap_or_else(|| "bridge".into());
    if !DRIVERS.contains(&driver.as_str()) {
        return Err(NetworkError::BadOption(format!(
            "network driver {driver:?} is not built in: use bridge, macvlan or ipvlan, or write your own config list into {}",
            dir.display()
        )));
    }
    let taken = taken_subnets(store_root)?;
    let subnet = match opts.subnet {
        Some(s) => {
            if !s.usable() {
                return Err(NetworkError::BadOption(format!(
                    "subnet {s} is too small: use a prefix of /29 or shorter"
                )));
            }
            if let Some((t, who)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                return Err(NetworkError::BadOption(format!(
                    "subnet {s} overlaps {t} of {who}: choose another with --subnet"
                )));
            }
            s
        }
        None => {
            let only: Vec<Subnet> = taken.iter().map(|(s, _)| *s).collect();
            subnet::pick(&only).ok_or_else(|| {
                NetworkError::BadOption(
                    "no free /24 left in 10.100.0.0-10.127.255.0: give one with --subnet".into(),
                )
            })?
        }
    };
    let gateway = opts.gateway.unwrap_or_else(|| subnet.first_host());
    if !subnet.contains(gateway) || gateway == subnet.addr {
        return Err(NetworkError::BadOption(format!(
            "gateway {gateway} is not a host address of subnet {subnet}"
        )));
    }
    let id = crate::util::id::random_hex(32);
    let ipam = json!({
        "type": "host-local",
        "ranges": [[{"subnet": subnet.to_string(), "gateway": gateway.to_string()}]],
        "routes": if opts.internal { json!([]) } else { json!([{"dst": "0.0.0.0/0"}]) },
        // per network id: two stores may each have a network of the same name
        "dataDir": format!("{}/{id}", super::IPAM_DIR),
    });
    let mtu = match mtu_option(&opts.options)? {
        Some(m) => m,
        None => super::mtu::uplink(),
    };
    let first = match driver.as_str() {
        "bridge" => json!({
            "type": "bridge",
            "bridge": bridge_device(&id),
            "isGateway": !opts.internal,
            "ipMasq": false,
            "hairpinMode": true,
            "mtu": mtu,
            "capabilities": {"ips": true},
            "ipam": ipam,
        }),
        kind => {
            let parent = match opts.options.get("parent") {
                Some(p) => p.clone(),
                None => default_parent().ok_or_else(|| {
                    NetworkError::BadOption(format!(
                        "{kind} needs a parent interface: give one with -o parent=IFACE"
                    ))
                })?,
            };
            if !Path::new("/sys/class/net").join(&parent).exists() {
                return Err(NetworkError::BadOption(format!(
                    "-o parent={parent}: no such interface on this host"
                )));
            }
            let mode = if kind == "macvlan" { "bridge" } else { "l2" };
            json!({
                "type": kind,
                "master": parent,
                "mode": mode,
                "mtu": mtu,
                "capabilities": {"ips": true},
                "ipam": ipam,
            })
        }
    };
    let mut plugins = vec![first];
    if driver == "bridge" {
        plugins
            .push(json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}));
    }
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": opts.name,
        "plugins": plugins,
        "twinbox": {
            "id": id,
            "created": crate::util::time::now_rfc3339(),
            "internal": opts.internal,
            "netfilter": super::NETWORK_WIDE,
            "labels": opts.labels,
            "options": opts.options,
        }
    });
    if !subnet::reserve(&subnet, &path)
        .map_err(|e| io_err(Path::new(subnet::RESERVATIONS_DIR), e))?
    {
        return Err(NetworkError::BadOption(format!(
            "subnet {subnet} was just taken by another twinbox store: try again"
        )));
    }
    if let Err(e) = crate::store::atomic::write_json_atomic(&path, &conflist) {
        subnet::release(&subnet, &path);
        return Err(NetworkError::Netns(e.to_string()));
    }
    Ok(Network::from_conflist(&opts.name, path, conflist))
}

/// `-o mtu=N`, or Docker's `-o com.docker.network.driver.mtu=N`: 68 up to
/// 65535, what a bridge and a veth take.
fn mtu_option(options: &BTreeMap<String, String>) -> Result<Option<u32>> {
    let given = ["mtu", "com.docker.network.driver.mtu"]
        .into_iter()
        .find_map(|k| options.get(k).map(|v| (k, v)));
    let Some((key, value)) = given else {
        return Ok(None);
    };
    match value.parse::<u32>() {
        Ok(m) if (68..=65535).contains(&m) => Ok(Some(m)),
        _ => Err(NetworkError::BadOption(format!(
            "-o {key}={value}: give a number of bytes from 68 to 65535"
        ))),
    }
}

/// The interface of the host's default route: where macvlan/ipvlan attach.
fn default_parent() -> Option<String> {
    let routes = fs::read_to_string("/proc/net/route").ok()?;
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    })
}

/// Deletes a network's config list, its netfilter rules, leases and bridge.
/// The caller has checked that no container uses it.
pub fn remove(store_root: &Path, network: &Network) -> Result<()> {
    if PREDEFINED.contains(&network.name.as_str()) {
        return Err(NetworkError::BadOption(format!(
            "network {} is predefined and cannot be removed",
            network.name
        )));
    }
    let _lock = super::names::NetworksLock::acquire(store_root)?;
    if let Some(b) = super::bridge_of(&network.conflist) {
        super::netfilter::remove(&b)?;
    }
    // only what twinbox made: a dropped-in list's bridge and leases are the user's
    if network.meta_id().is_some() {
        if let Some(dev) = &network.bridge {
            delete_link(dev);
        }
        let leases = Path::new(super::IPAM_DIR).join(&network.id);
        let _ = fs::remove_dir_all(leases);
    }
    if let Some(s) = network.subnet {
        subnet::release(&s, &network.path);
    }
    match fs::remove_file(&network.path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&network.path, e)),
    }
}

impl Network {
    /// The id twinbox gave it; None for a dropped-in config list.
    fn meta_id(&self) -> Option<&str> {
        self.conflist["twinbox"]["id"].as_str()
    }
}

/// The bridge plugin makes the bridge but never deletes it (it may be shared).
fn delete_link(dev: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", dev])
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn mtu_option_takes_twinbox_and_docker_keys_in_range() {
        assert_eq!(mtu_option(&opts(&[])).unwrap(), None);
        assert_eq!(mtu_option(&opts(&[("mtu", "9000")])).unwrap(), Some(9000));
        assert_eq!(
            mtu_option(&opts(&[("com.docker.network.driver.mtu", "65520")])).unwrap(),
            Some(65520)
        );
        for bad in ["67", "65536", "big", ""] {
            let e = mtu_option(&opts(&[("mtu", bad)])).unwrap_err().to_string();
            assert!(e.starts_with(&format!("-o mtu={bad}: ")), "{e}");
        }
    }
}
