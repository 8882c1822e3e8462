//! A VM on a CNI network, joined the way a container joins it.
//!
//! The engine's CNI runtime ADDs an `eth0` in a network namespace made for
//! the VM (`vms/<id>/netns`), exactly as for a container: the same bridge
//! (`twinbox0` for `bridge`), the same host-local IPAM, the same portmap and
//! firewall rules, and the same cached result for DEL. Inside that namespace
//! a bridge `br0` joins `eth0` and the VM's tap, so the namespace is only a
//! wire: the guest takes eth0's address and MAC (the ones the bridge plugin
//! announced), and eth0 gets a fresh MAC so frames for the guest's MAC pass
//! through to the tap. eth0 keeps its address, because the bridge plugin's
//! DEL reads it to remove the masquerade rule; `arp_ignore` keeps the
//! namespace from answering for it.
//!
//! The tap is the VMM's (see [`crate::vmm::NetConfig`]): not persistent, it
//! vanishes with the VMM, even after kill -9. The veth, the address and the
//! rules go with DEL at the VM's end, or at the next recovery.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use twinbox_engine::network::{self as net, NetworkError, PortMapping};

use crate::hostnet;
use crate::vmm::NetConfig;

/// The interface the CNI plugins create in the VM's namespace.
const VETH: &str = "eth0";
/// The bridge in the VM's namespace that joins the veth and the tap.
pub const BRIDGE: &str = "br0";
/// The VMM's tap, in the VM's namespace (so no host-wide name is taken).
pub const TAP: &str = "tap0";

#[derive(Debug, thiserror::Error)]
pub enum VmNetworkError {
    #[error(transparent)]
    Cni(#[from] NetworkError),
    #[error("network {network}: the plugins gave the VM no IPv4 address")]
    NoAddress { network: String },
    #[error("wiring the VM's network namespace: {0}")]
    Wiring(std::io::Error),
}

/// What a VM got from its network: kept in its record for `vm ps`, for the
/// VMM (tap), and for the guest init (address, route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmNetwork {
    pub network: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: [u8; 6],
    pub mtu: u16,
    pub ports: Vec<PortMapping>,
}

impl VmNetwork {
    /// The VMM's side: its tap in the VM's namespace, on the bridge there.
    pub fn card(&self, vm_dir: &Path) -> NetConfig {
        NetConfig {
            netns: net::netns_path(vm_dir),
            bridge: BRIDGE.into(),
            tap: TAP.into(),
            mac: self.mac,
            mtu: self.mtu,
        }
    }

    /// The guest init's side, with the files a container would get.
    pub fn guest(&self, hostname: &str) -> twinbox_init::GuestNetwork {
        twinbox_init::GuestNetwork {
            address: format!("{}/{}", self.address, self.prefix),
            gateway: self.gateway.map(|g| g.to_string()),
            mtu: self.mtu,
            hosts: format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n",
                self.address
            ),
            resolv_conf: net::resolv_conf(),
        }
    }
}

/// Joins the VM (directory `vm_dir`, id `vm_id`) to CNI network `network`,
/// publishing `ports`. On failure nothing is left behind.
pub fn attach(
    store_root: &Path,
    vm_dir: &Path,
    vm_id: &str,
    network: &str,
    ports: &[PortMapping],
) -> Result<VmNetwork, VmNetworkError> {
    let request = net::Request {
        network: network.to_string(),
        names: vec![],
        ip: None,
        ports: ports.to_vec(),
        mac: None,
    };
    let mut all = net::attach(store_root, vm_dir, vm_id, std::slice::from_ref(&request))?;
    let Some(attached) = all.pop() else {
        let _ = net::detach(vm_dir);
        return Err(VmNetworkError::NoAddress {
            network: network.to_string(),
        });
    };
    let joined = describe(&attached, network, ports).and_then(|vm_net| {
        let netns = attached.netns.clone();
        hostnet::in_netns(&netns, wire_namespace).map_err(VmNetworkError::Wiring)?;
        Ok(vm_net)
    });
    if joined.is_err() {
        let _ = net::detach(vm_dir);
    }
    joined
}

/// CNI DEL from the cache, then the namespace (and with it `br0`) goes.
/// Safe to call twice, and for VMs that never had a network.
pub fn detach(vm_dir: &Path) -> Result<(), NetworkError> {
    net::detach(vm_dir)
}

/// The address, gateway, MAC and MTU the plugins gave eth0.
fn describe(
    attached: &net::Attached,
    network: &str,
    ports: &[PortMapping],
) -> Result<VmNetwork, VmNetworkError> {
    let no_address = || VmNetworkError::NoAddress {
        network: network.to_string(),
    };
    let ip = attached.result["ips"]
        .as_array()
        .and_then(|ips| {
            ips.iter()
                .find(|ip| ip["address"].as_str().is_some_and(|a| !a.contains(':')))
        })
        .ok_or_else(no_address)?;
    let (address, prefix) = ip["address"]
        .as_str()
        .and_then(|a| a.split_once('/'))
        .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?)))
        .ok_or_else(no_address)?;
    let gateway = ip["gateway"].as_str().and_then(|g| g.parse().ok());
    let mac = attached.result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == VETH && i["sandbox"].is_string())
        .and_then(|i| hostnet::parse_mac(i["mac"].as_str()?))
        .unwrap_or_else(hostnet::random_mac);
    let mtu = attached.conflist["plugins"][0]["mtu"]
        .as_u64()
        .and_then(|m| u16::try_from(m).ok())
        .unwrap_or(1500);
    Ok(VmNetwork {
        network: network.to_string(),
        address,
        prefix,
        gateway,
        mac,
        mtu,
        ports: ports.to_vec(),
    })
}

/// Inside the VM's namespace: eth0 gets a fresh MAC (its own goes to the
/// guest) and becomes a port of `br0` that learns no addresses; the
/// namespace answers no ARP.
fn wire_namespace() -> std::io::Result<()> {
    hostnet::sysctl("net/ipv4/conf/all/arp_ignore", "8")?;
    // No IPv6 chatter from the wire's own interfaces.
    let _ = hostnet::sysctl("net/ipv6/conf/all/disable_ipv6", "1");
    let _ = hostnet::sysctl("net/ipv6/conf/default/disable_ipv6", "1");
    hostnet::set_up(VETH, false)?;
    hostnet::set_mac(VETH, hostnet::random_mac())?;
    hostnet::add_bridge(BRIDGE)?;
    let _ = hostnet::sysctl(&format!("net/ipv6/conf/{BRIDGE}/disable_ipv6"), "1");
    hostnet::add_port(BRIDGE, VETH)?;
    // The host bridge runs in hairpin mode (a container reaching itself
    // through a published port) and so sends the guest's broadcasts back up
    // the veth: learning from them would put the guest's MAC on eth0 and
    // drop every reply to it (first seen as ARP replies that never arrived).
    hostnet::set_port_learning(VETH, false)?;
    hostnet::set_up(VETH, true)?;
    hostnet::set_up(BRIDGE, true)
}
