//! Where the container lifecycle meets networking: checks at create, CNI ADD
//! before the container starts, DEL when it ends or is removed.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::image::Config as ImageConfig;

use super::options::RunOptions;
use super::record::Container;
use super::{ContainerError, Result};
use crate::network::{self as net, NetworkMode, PortMapping};

/// `-P`: every EXPOSEd port of the image on a free host port.
pub fn exposed_ports(image: Option<&ImageConfig>) -> Result<Vec<PortMapping>> {
    let mut out = vec![];
    for spec in image
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default()
    {
        out.extend(net::ports::parse(&spec)?);
    }
    Ok(out)
}

/// Checks the network and ports before anything is created and returns the
/// namespace file the container will join (None: a new one, or the host's).
pub fn prepare(
    store_root: &Path,
    container_dir: &Path,
    opts: &RunOptions,
    existing: &[Container],
) -> Result<Option<PathBuf>> {
    if !opts.ports.is_empty() && opts.network.cni_network().is_none() {
        return Err(ContainerError::BadOption(format!(
            "-p needs a network with its own addresses; --network {} has none",
            opts.network
        )));
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
            net::load(store_root, name)?;
            // portmap's DNAT holds no socket: the ports of running containers
            // are checked against their records, others by binding
            for c in existing.iter().filter(|c| {
                c.state()
                    .map(|s| s.status == super::record::Status::Running)
                    .unwrap_or(false)
            }) {
                if let Some(p) = opts.ports.iter().find(|p| {
                    c.options.ports.iter().any(|q| {
                        q.host_port == p.host_port
                            && q.protocol == p.protocol
                            && (q.host_ip.is_none()
                                || p.host_ip.is_none()
                                || q.host_ip == p.host_ip)
                    })
                }) {
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

/// CNI ADD for a container on a CNI network (no-op otherwise), then its own
/// address goes into its /etc/hosts.
pub fn setup(c: &Container) -> Result<()> {
    let Some(name) = c.options.network.cni_network() else {
        return Ok(());
    };
    let attached = net::attach(&store_root_of(c), &c.dir, &c.id, name, &c.options.ports)?;
    if let Some(ip) = attached.ipv4() {
        let hosts = c.dir.join("hosts");
        let text = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{}\n",
            c.hostname
        );
        fs::write(&hosts, text).map_err(|e| ContainerError::io(&hosts, e))?;
    }
    Ok(())
}

/// CNI DEL from the cache and the namespace file; safe to call twice.
pub fn release(c: &Container) -> Result<()> {
    Ok(net::detach(&c.dir)?)
}
