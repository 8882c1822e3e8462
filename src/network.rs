//! `network create|ls|inspect|rm|prune|connect|disconnect`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use twinbox_engine::container::network as engine;
use twinbox_engine::network::config::CreateOptions;
use twinbox_engine::template::Format;

use crate::format::print_table;
use crate::open_store;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network (a CNI config list in the store)
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only print network names
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Output: table, json, or a Go template (`{{.Name}}`)
        #[arg(long, default_value = "")]
        format: String,
    },
    /// Show networks as JSON, with the containers on them
    Inspect {
        /// Format each network with a Go template (`{{.IPAM.Config}}`)
        #[arg(short = 'f', long, default_value = "")]
        format: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container uses them)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container uses
    Prune {
        /// Do not ask for confirmation (accepted for Docker compatibility)
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Connect a container to one more network
    Connect {
        /// Another name containers on the network reach it by
        #[arg(long)]
        alias: Vec<String>,
        /// A fixed IPv4 address on the network
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network it was connected to
    Disconnect {
        /// Accepted for Docker compatibility
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver: bridge (default), macvlan or ipvlan
    #[arg(short = 'd', long)]
    driver: Option<String>,
    /// Subnet in CIDR form (default: a free /24 from 10.100.0.0)
    #[arg(long)]
    subnet: Option<String>,
    /// Gateway address (default: the subnet's first address)
    #[arg(long)]
    gateway: Option<std::net::Ipv4Addr>,
    /// No outbound route and no traffic to or from other networks
    #[arg(long)]
    internal: bool,
    /// KEY=VALUE metadata
    #[arg(long)]
    label: Vec<String>,
    /// Driver option KEY=VALUE (parent=IFACE for macvlan/ipvlan, mtu=BYTES)
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    name: String,
}

fn pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what} {kv:?}: use KEY=VALUE"),
        })
        .collect()
}

pub fn dispatch(root: &Path, cmd: NetworkCommand) -> Result<i32> {
    let store = open_store(root)?;
    match cmd {
        NetworkCommand::Create(a) => {
            let subnet = match &a.subnet {
                Some(s) => Some(s.parse().map_err(anyhow::Error::msg)?),
                None => None,
            };
            let n = engine::create_network(
                &store,
                &CreateOptions {
                    name: a.name.clone(),
                    driver: a.driver.clone(),
                    subnet,
                    gateway: a.gateway,
                    internal: a.internal,
                    labels: pairs(&a.label, "--label")?,
                    options: pairs(&a.opt, "-o")?,
                },
            )?;
            println!("{}", n.id);
        }
        NetworkCommand::Ls { quiet, format } => {
            let nets = engine::list_networks(&store)?;
            if quiet {
                for n in &nets {
                    println!("{}", n.name);
                }
                return Ok(0);
            }
            if !format.is_empty() {
                let format = Format::parse(&format, LS_TABLE)?;
                print!("{}", format.render(&ls_rows(&nets), &ls_titles(), None)?);
                return Ok(0);
            }
            let mut rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    vec![
                        n.id[..12].to_string(),
                        n.name.clone(),
                        n.driver.clone(),
                        "local".into(),
                        n.subnet.map(|s| s.to_string()).unwrap_or_default(),
                        if n.internal { "true" } else { "" }.to_string(),
                    ]
                })
                .collect();
            // Docker lists these two modes as networks too
            for (name, driver) in [("host", "host"), ("none", "null")] {
                rows.push(vec![
                    String::new(),
                    name.into(),
                    driver.into(),
                    "local".into(),
                    String::new(),
                    String::new(),
                ]);
            }
            print_table(
                &[
                    "NETWORK ID",
                    "NAME",
                    "DRIVER",
                    "SCOPE",
                    "SUBNET",
                    "INTERNAL",
                ],
                &rows,
            );
        }
        NetworkCommand::Inspect { names, format } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(engine::inspect_network(&store, n)?);
            }
            crate::format::print_objects(&out, &format)?;
        }
        NetworkCommand::Rm { names } => {
            for n in &names {
                println!("{}", engine::remove_network(&store, n)?);
            }
        }
        NetworkCommand::Prune { force: _ } => {
            let removed = engine::prune_networks(&store)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for n in &removed {
                    println!("{n}");
                }
            }
        }
        NetworkCommand::Connect {
            alias,
            ip,
            network,
            container,
        } => engine::connect(&store, &network, &container, &alias, ip)?,
        NetworkCommand::Disconnect {
            force: _,
            network,
            container,
        } => engine::disconnect(&store, &network, &container)?,
    }
    Ok(0)
}

/// Docker's `network ls` table, for `--format table`.
const LS_TABLE: &str = "{{.ID}}\\t{{.Name}}\\t{{.Driver}}\\t{{.Scope}}";

fn ls_titles() -> serde_json::Value {
    serde_json::json!({"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
        "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"})
}

/// One row per network with the fields Docker's `network ls --format` offers
/// (its JSON gives every field as a string), host and none included.
fn ls_rows(nets: &[twinbox_engine::network::config::Network]) -> Vec<serde_json::Value> {
    let mut rows: Vec<serde_json::Value> = nets
        .iter()
        .map(|n| {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            serde_json::json!({
                "ID": n.id[..12.min(n.id.len())],
                "Name": n.name,
                "Driver": n.driver,
                "Scope": "local",
                "IPv6": "false",
                "Internal": n.internal.to_string(),
                "Labels": labels.join(","),
                "CreatedAt": n.created.as_deref().map(twinbox_engine::template::units::go_time).unwrap_or_default(),
            })
        })
        .collect();
    for (name, driver) in [("host", "host"), ("none", "null")] {
        rows.push(serde_json::json!({
            "ID": "", "Name": name, "Driver": driver, "Scope": "local", "IPv6": "false",
            "Internal": "false", "Labels": "", "CreatedAt": "",
        }));
    }
    rows
}
