//! Where the container lifecycle meets networking: checks at create, CNI ADD
//! before the container starts, DEL when it ends or is removed.

use std::path::{Path, PathBuf};

use oci_spec::image::Config as ImageConfig;

use super::lifecycle::is_running;
use super::options::RunOptions;
use super::record::Container;
use super::{ContainerError, Result};
use crate::network::{self as net, NetworkMode, PortMapping};
use crate::store::Store;

/// `-P`: every EXPOSEd port of the image and every `--expose` on a free host
/// port (each once).
pub fn exposed_ports(image: Option<&ImageConfig>, expose: &[String]) -> Result<Vec<PortMapping>> {
    let mut specs: Vec<String> = vec![];
    for spec in image
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default()
        .into_iter()
        .chain(expose.iter().cloned())
    {
        let spec = if spec.contains('/') {
            spec
        } else {
            format!("{spec}/tcp")
        };
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    let mut out = vec![];
    for spec in specs {
        out.extend(net::ports::parse(&spec)?);
    }
    Ok(out)
}

/// The `--add-host` lines of the container's hosts file (`IP\tNAME`), with
/// `host-gateway` as the host's address on the container's network (its
/// gateway, which the bridge plugin puts on the host), or on the default
/// bridge for host and none; Docker's is its default bridge's.
pub fn extra_hosts(store_root: &Path, opts: &RunOptions) -> Result<String> {
    let mut out = String::new();
    for entry in &opts.extra_hosts {
        let (name, addr) = entry.split_once(':').unwrap_or((entry, ""));
        let ip = if addr == super::options::HOST_GATEWAY {
            let network = opts.network.cni_network().unwrap_or(net::DEFAULT_NETWORK);
            let n = net::config::find(store_root, network)?;
            match n.gateway {
                Some(g) => g.to_string(),
                None => {
                    return Err(ContainerError::BadOption(format!(
                        "--add-host {entry}: network {network} has no gateway address for host-gateway; give the host's address instead"
                    )))
                }
            }
        } else {
            addr.to_string()
        };
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// What running containers publish: portmap's DNAT holds no socket, so these
/// ports are taken without the kernel knowing.
fn published_by_running(existing: &[Container]) -> Vec<PortMapping> {
    existing
        .iter()
        .filter(|c| is_running(c))
        .flat_map(|c| c.options.ports.iter().cloned())
        .collect()
}

/// `-p FIRST-LAST:PORT`: each range's first host port that no running
/// container publishes and that the kernel lets bind, added to the ports
/// (picked once, at create: restarts keep it, as twinbox keeps `-p PORT`'s).
pub fn pick_from_ranges(opts: &mut RunOptions, existing: &[Container]) -> Result<()> {
    if opts.port_ranges.is_empty() {
        return Ok(()); // no container's state needs reading
    }
    let mut taken = published_by_running(existing);
    taken.extend(opts.ports.iter().cloned());
    for r in &opts.port_ranges {
        let m = r.first_free(&taken)?;
        taken.push(m.clone());
        opts.ports.push(m);
    }
    Ok(())
}

/// Checks the network and ports before anything is created and returns the
/// namespace file the container will join (None: a new one, or the host's).
pub fn prepare(
    store_root: &Path,
    container_dir: &Path,
    opts: &RunOptions,
    existing: &[Container],
) -> Result<Option<PathBuf>> {
    if let NetworkMode::Container(_) = &opts.network {
        // as Docker: the other container's hosts file, resolver and ports are
        // this one's, so these would do nothing
        for (given, flag) in [
            (!opts.extra_hosts.is_empty(), "--add-host"),
            (!opts.dns.is_empty(), "--dns"),
            (!opts.dns_search.is_empty(), "--dns-search"),
            (!opts.dns_options.is_empty(), "--dns-option"),
            (!opts.expose.is_empty(), "--expose"),
        ] {
            if given {
                return Err(ContainerError::BadOption(format!(
                    "conflicting options: {flag} and --network {}: the container shares the other's network, hosts file and resolver",
                    opts.network
                )));
            }
        }
    }
    if let (NetworkMode::Container(_), true) = (&opts.network, opts.publish_all) {
        return Err(ContainerError::BadOption(format!(
            "conflicting options: -P and --network {}: the container publishes nothing of its own",
            opts.network
        )));
    }
    if opts.mac_address.is_some() && opts.network.cni_network().is_none() {
        return Err(ContainerError::BadOption(format!(
            "conflicting options: --mac-address and --network {}: the container has no interface of its own to give it",
            opts.network
        )));
    }
    if !opts.ports.is_empty() && opts.network.cni_network().is_none() {
        return Err(ContainerError::BadOption(format!(
            "-p needs a network with its own addresses; --network {} has none",
            opts.network
        )));
    }
    let user_network = opts
        .network
        .cni_network()
        .is_some_and(|n| n != net::DEFAULT_NETWORK);
    if !opts.network_aliases.is_empty() && !user_network {
        return Err(ContainerError::BadOption(format!(
            "--network-alias works on user networks only; --network {} resolves no names",
            opts.network
        )));
    }
    if let Some(ip) = opts.ip {
        if !user_network {
            return Err(ContainerError::BadOption(format!(
                "--ip works on user networks only (make one with `twinbox network create --subnet`); --network {} assigns addresses itself",
                opts.network
            )));
        }
        let name = opts.network.cni_network().unwrap_or_default();
        let n = net::config::find(store_root, name)?;
        if !n.subnet.is_some_and(|s| s.contains(ip)) {
            return Err(ContainerError::BadOption(format!(
                "--ip {ip} is not in the subnet of network {name}{}",
                n.subnet.map(|s| format!(" ({s})")).unwrap_or_default()
            )));
        }
    }
    match &opts.network {
        NetworkMode::None | NetworkMode::Host => Ok(None),
        NetworkMode::Container(other) => {
            let c = existing
                .iter()
                .find(|c| c.name == *other || c.id.starts_with(other.as_str()))
                .ok_or_else(|| ContainerError::NotFound(other.clone()))?;
            if c.options.network.cni_network().is_none() {
                return Err(ContainerError::BadOption(format!(
                    "--network container:{other}: {other} has no network of its own to share (it uses {})",
                    c.options.network
                )));
            }
            Ok(Some(net::netns_path(&c.dir)))
        }
        mode => {
            let name = mode.cni_network().unwrap_or(net::DEFAULT_NETWORK);
            net::check_plugins(store_root, name, !opts.ports.is_empty())?;
            // portmap's DNAT holds no socket: the ports of running containers
            // are checked against their records, others by binding
            let running = existing
                .iter()
                .filter(|c| !opts.ports.is_empty() && is_running(c));
            for c in running {
                if let Some(p) = opts
                    .ports
                    .iter()
                    .find(|p| c.options.ports.iter().any(|q| net::ports::clash(q, p)))
                {
                    return Err(ContainerError::BadOption(format!(
                        "port {}/{} is already published by container {}",
                        p.host_port, p.protocol, c.name
                    )));
                }
            }
            net::ports::check_free(&opts.ports)?;
            Ok(Some(net::netns_path(container_dir)))
        }
    }
}

fn store_root_of(c: &Container) -> PathBuf {
    // containers live in STORE/containers/ID
    c.dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The names peers resolve to a container on a network: its name, the aliases
/// and its short id, as Docker's DNS answers them.
fn names_of(c: &Container, aliases: &[String]) -> Vec<String> {
    let mut names = vec![c.name.clone()];
    names.extend(aliases.iter().cloned());
    names.push(c.short_id().to_string());
    names
}

/// Whether the container names network `name` (first, unless it left it, or
/// connected), whatever its state.
fn is_on(c: &Container, name: &str) -> bool {
    (c.options.network.cni_network() == Some(name) && !c.options.left_first_network)
        || c.options.connected.iter().any(|n| n.network == name)
}

/// The request for the container's first network, with the published ports.
fn first_request(c: &Container, first: &str) -> net::Request {
    net::Request {
        network: first.to_string(),
        names: names_of(c, &c.options.network_aliases),
        ip: c.options.ip,
        ports: c.options.ports.clone(),
        mac: c.options.mac_address.clone(),
    }
}

/// The networks a container joins when it starts: its first one (with the
/// published ports) unless it left it, then those it was connected to.
fn requests(c: &Container) -> Vec<net::Request> {
    let Some(first) = c.options.network.cni_network() else {
        return vec![];
    };
    let mut out = vec![];
    if !c.options.left_first_network {
        out.push(first_request(c, first));
    }
    for conn in &c.options.connected {
        out.push(net::Request {
            network: conn.network.clone(),
            names: names_of(c, &conn.aliases),
            ip: conn.ip,
            ports: vec![],
            mac: None,
        });
    }
    out
}

/// CNI ADD for a container on CNI networks (no-op otherwise); the hosts files
/// of its peers and its own are brought up to date on the way.
pub fn setup(c: &Container) -> Result<()> {
    if c.options.network.cni_network().is_none() {
        return Ok(());
    }
    // with no network left the namespace is still made: the spec joins it
    let reqs = requests(c);
    net::attach(&store_root_of(c), &c.dir, &c.id, &reqs)?;
    Ok(())
}

/// CNI DEL from the cache and the namespace file; safe to call twice.
pub fn release(c: &Container) -> Result<()> {
    Ok(net::detach(&c.dir)?)
}

/// The containers that name network `name` (first or connected), whatever state.
pub fn users(store: &Store, name: &str) -> Result<Vec<Container>> {
    Ok(Container::list(store)?
        .into_iter()
        .filter(|c| is_on(c, name))
        .collect())
}

/// `network create`.
pub fn create_network(
    store: &Store,
    opts: &net::config::CreateOptions,
) -> Result<net::config::Network> {
    Ok(net::config::create(store.root(), opts)?)
}

/// `network ls`: every CNI network of the store and Docker's host and none,
/// in Docker's order (names compared with their numbers as numbers).
pub fn list_networks(store: &Store) -> Result<Vec<net::config::Network>> {
    let mut all = net::config::list(store.root())?;
    all.extend(
        ["host", "none"]
            .into_iter()
            .filter_map(net::config::Network::mode),
    );
    all.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    Ok(all)
}

/// Docker's `sortorder.NaturalLess`: runs of digits compare as numbers.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = vec![];
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// A network as `network inspect` and `rm` name it: by name, id or unique id
/// prefix, host and none included.
fn find_any(store: &Store, key: &str) -> Result<net::config::Network> {
    Ok(net::config::find_in(&list_networks(store)?, key)?)
}

/// `network connect` and `disconnect` take CNI networks only, as Docker
/// refuses host and none there.
fn find_joinable(store: &Store, key: &str) -> Result<net::config::Network> {
    let n = find_any(store, key)?;
    if n.is_mode() {
        return Err(ContainerError::BadOption(format!(
            "network {}: a container cannot be connected to or disconnected from the {} network; choose it with run --network {}",
            key, n.name, n.name
        )));
    }
    Ok(n)
}

/// `network rm`: refused while any container names the network.
pub fn remove_network(store: &Store, key: &str) -> Result<String> {
    let n = find_any(store, key)?;
    if net::config::PREDEFINED.contains(&n.name.as_str()) {
        return Err(ContainerError::BadOption(format!(
            "network {} is predefined and cannot be removed",
            n.name
        )));
    }
    let _lock = store.lock()?;
    let using = users(store, &n.name)?;
    if !using.is_empty() {
        return Err(net::NetworkError::InUse {
            name: n.name.clone(),
            containers: using
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    net::config::remove(store.root(), &n)?;
    Ok(n.name)
}

/// `network prune`: every network no container names, except the predefined.
pub fn prune_networks(store: &Store) -> Result<Vec<String>> {
    let _lock = store.lock()?;
    let all = Container::list(store)?;
    let mut removed = vec![];
    for n in net::config::list(store.root())? {
        if net::config::PREDEFINED.contains(&n.name.as_str()) {
            continue;
        }
        let used = all.iter().any(|c| is_on(c, &n.name));
        if !used {
            net::config::remove(store.root(), &n)?;
            removed.push(n.name);
        }
    }
    Ok(removed)
}

/// `network inspect`, shaped like Docker's.
pub fn inspect_network(store: &Store, key: &str) -> Result<serde_json::Value> {
    use serde_json::json;
    let n = find_any(store, key)?;
    if n.is_mode() {
        return inspect_mode(store, &n);
    }
    let mut containers = serde_json::Map::new();
    for c in Container::list(store)? {
        for a in net::attached(&c.dir)
            .iter()
            .filter(|a| a.network == n.name && !a.result.is_null())
        {
            let prefix = n.subnet.map(|s| s.prefix).unwrap_or(32);
            containers.insert(
                c.id.clone(),
                json!({
                    "Name": c.name,
                    "Interface": a.ifname,
                    "MacAddress": a.mac().unwrap_or(""),
                    "IPv4Address": a.ipv4().map(|ip| format!("{ip}/{prefix}")).unwrap_or_default(),
                    "Aliases": a.names,
                }),
            );
        }
    }
    let ipam_config: Vec<serde_json::Value> = n
        .subnet
        .iter()
        .map(|s| {
            let mut v = json!({"Subnet": s.to_string()});
            if let Some(g) = n.gateway {
                v["Gateway"] = json!(g.to_string());
            }
            v
        })
        .collect();
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "host-local", "Config": ipam_config},
        "Internal": n.internal,
        "Attachable": true,
        "Containers": containers,
        "Options": n.conflist["twinbox"]["options"].clone(),
        "Labels": n.labels,
        "Bridge": n.bridge,
        "ConfigFile": n.path,
        "Users": users(store, &n.name)?.iter().map(|c| c.name.clone()).collect::<Vec<_>>(),
    }))
}

/// `network inspect host|none`: Docker's shape, with the running containers
/// in that mode.
fn inspect_mode(store: &Store, n: &net::config::Network) -> Result<serde_json::Value> {
    use serde_json::json;
    let mode: NetworkMode = n.name.parse().unwrap_or_default();
    let mut containers = serde_json::Map::new();
    for c in Container::list(store)?
        .into_iter()
        .filter(|c| c.options.network == mode && is_running(c))
    {
        containers.insert(
            c.id.clone(),
            json!({"Name": c.name, "MacAddress": "", "IPv4Address": ""}),
        );
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": serde_json::Value::Null,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Config": []},
        "Internal": false,
        "Attachable": false,
        "Containers": containers,
        "Options": {},
        "Labels": {},
    }))
}

/// `network connect [--alias] [--ip] NET CONTAINER`: recorded so every later
/// start joins it too, and joined at once when the container runs.
pub fn connect(
    store: &Store,
    network: &str,
    container: &str,
    aliases: &[String],
    ip: Option<std::net::Ipv4Addr>,
) -> Result<()> {
    let n = find_joinable(store, network)?;
    let _lock = store.lock()?;
    let mut c = Container::find(store, container)?;
    if c.options.network.cni_network().is_none() {
        return Err(ContainerError::BadOption(format!(
            "container {} uses --network {}: only containers on a CNI network can join more",
            c.name, c.options.network
        )));
    }
    if is_on(&c, &n.name) {
        return Err(ContainerError::BadOption(format!(
            "container {} is already on network {}",
            c.name, n.name
        )));
    }
    let running = is_running(&c);
    if c.options.network.cni_network() == Some(n.name.as_str()) {
        // back to the first network it left: its ports and aliases come along
        if !aliases.is_empty() || ip.is_some() {
            return Err(ContainerError::BadOption(format!(
                "network {} is the first network of container {}: it rejoins with the aliases and address it was created with",
                n.name, c.name
            )));
        }
        if running {
            net::connect(&c.dir, &first_request(&c, &n.name))?;
        }
        c.options.left_first_network = false;
        return c.save();
    }
    if !aliases.is_empty() && !n.resolves_names() {
        return Err(ContainerError::BadOption(
            "--alias works on user networks only (the default bridge resolves no names)".into(),
        ));
    }
    let conn = super::options::Connection {
        network: n.name.clone(),
        aliases: aliases.to_vec(),
        ip,
    };
    if running {
        net::connect(
            &c.dir,
            &net::Request {
                network: n.name.clone(),
                names: names_of(&c, aliases),
                ip,
                ports: vec![],
                mac: None,
            },
        )?;
    }
    c.options.connected.push(conn);
    c.save()
}

/// `network disconnect NET CONTAINER`: leaves a network it was connected to.
pub fn disconnect(store: &Store, network: &str, container: &str) -> Result<()> {
    let n = find_joinable(store, network)?;
    let _lock = store.lock()?;
    let mut c = Container::find(store, container)?;
    if !is_on(&c, &n.name) {
        return Err(ContainerError::BadOption(format!(
            "container {} is not connected to network {}",
            c.name, n.name
        )));
    }
    if c.options.network.cni_network() == Some(n.name.as_str()) {
        // as Docker: the first network can go too (its published ports with it);
        // the container keeps its namespace and its other networks
        net::disconnect(&c.dir, &n.name)?;
        c.options.left_first_network = true;
        return c.save();
    }
    let before = c.options.connected.len();
    c.options.connected.retain(|x| x.network != n.name);
    if c.options.connected.len() == before {
        return Err(ContainerError::BadOption(format!(
            "container {} is not connected to network {}",
            c.name, n.name
        )));
    }
    net::disconnect(&c.dir, &n.name)?;
    c.save()
}
