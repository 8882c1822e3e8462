//! `network create|ls|inspect|rm|prune|connect|disconnect`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use twinbox_engine::container::network as engine;
use twinbox_engine::network::config::CreateOptions;
use twinbox_engine::template::Format;

use crate::open_store;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network (a CNI config list in the store)
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only print network ids
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Output: table, json, or a Go template (`{{.Name}}`)
        #[arg(long, default_value = "")]
        format: String,
        /// Do not truncate the network ids
        #[arg(long = "no-trunc")]
        no_trunc: bool,
        /// Filter: name, id, driver, type (builtin|custom), scope, label (KEY=VALUE)
        #[arg(short = 'f', long = "filter")]
        filter: Vec<String>,
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
        NetworkCommand::Ls {
            quiet,
            format,
            no_trunc,
            filter,
        } => {
            let filters = parse_filters(&filter)?;
            // a format string is checked even when -q makes it unused
            let format = Format::parse(&format, LS_TABLE)?;
            let nets: Vec<_> = engine::list_networks(&store)?
                .into_iter()
                .filter(|n| {
                    filters
                        .iter()
                        .all(|(k, vals)| vals.iter().any(|v| matches(n, k, v)))
                })
                .collect();
            let rows = ls_rows(&nets, no_trunc);
            if quiet {
                for r in &rows {
                    println!("{}", r["ID"].as_str().unwrap_or_default());
                }
                return Ok(0);
            }
            print!("{}", format.render(&rows, &ls_titles(), None)?);
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

/// Docker's `network ls` filters, KEY=VALUE, grouped by key: values of one
/// key are alternatives, keys all apply.
fn parse_filters(items: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in items {
        let Some((k, v)) = f.split_once('=') else {
            bail!("bad filter {f:?}: use KEY=VALUE with name, id, driver, type, scope or label");
        };
        if !["name", "id", "driver", "type", "scope", "label"].contains(&k) {
            bail!("invalid filter {k:?}: use name, id, driver, type, scope or label");
        }
        if k == "type" && !["builtin", "custom"].contains(&v) {
            bail!("invalid filter type={v:?}: use builtin or custom");
        }
        out.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(out)
}

/// Whether a network passes one filter value, as Docker matches them: name
/// as a substring, id as a prefix, a label by key or KEY=VALUE.
fn matches(n: &twinbox_engine::network::config::Network, key: &str, value: &str) -> bool {
    match key {
        "name" => n.name.contains(value),
        "id" => n.id.starts_with(value),
        "driver" => n.driver == value,
        "scope" => value == "local",
        "type" => {
            let builtin = twinbox_engine::network::config::PREDEFINED.contains(&n.name.as_str());
            (value == "builtin") == builtin
        }
        "label" => match value.split_once('=') {
            Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
            None => n.labels.contains_key(value),
        },
        _ => false,
    }
}

/// One row per network with the fields Docker's `network ls --format` offers
/// (its JSON gives every field as a string), host and none included.
fn ls_rows(
    nets: &[twinbox_engine::network::config::Network],
    no_trunc: bool,
) -> Vec<serde_json::Value> {
    nets.iter()
        .map(|n| {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let id = if no_trunc {
                &n.id[..]
            } else {
                &n.id[..12.min(n.id.len())]
            };
            serde_json::json!({
                "ID": id,
                "Name": n.name,
                "Driver": n.driver,
                "Scope": "local",
                "IPv6": "false",
                "Internal": n.internal.to_string(),
                "Labels": labels.join(","),
                "CreatedAt": n.created.as_deref().map(twinbox_engine::template::units::go_time).unwrap_or_default(),
            })
        })
        .collect()
}
