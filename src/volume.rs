//! `volume create|ls|inspect|rm|prune`.

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use twinbox_engine::volume;

use crate::format::print_table;
use crate::open_store;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume (a random name when none is given)
    Create { name: Option<String> },
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses them)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (every unused one with --all)
    Prune {
        #[arg(short = 'a', long)]
        all: bool,
        /// Do not ask for confirmation (accepted for Docker compatibility)
        #[arg(short = 'f', long)]
        force: bool,
    },
}

#[derive(Args)]
pub struct LsArgs {
    /// Only print volume names
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn dispatch(root: &Path, cmd: VolumeCommand) -> Result<i32> {
    let store = open_store(root)?;
    match cmd {
        VolumeCommand::Create { name } => {
            let (v, _) = volume::create(&store, name.as_deref())?;
            println!("{}", v.name);
        }
        VolumeCommand::Ls(args) => {
            let vols = volume::list(&store)?;
            if args.quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
            } else {
                let rows: Vec<Vec<String>> = vols
                    .iter()
                    .map(|v| vec!["local".to_string(), v.name.clone()])
                    .collect();
                print_table(&["DRIVER", "VOLUME NAME"], &rows);
            }
        }
        VolumeCommand::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                let v = volume::find(&store, n)?;
                let mut j = serde_json::to_value(&v)?;
                j["Driver"] = "local".into();
                j["Scope"] = "local".into();
                j["UsedBy"] = volume::users(&store, &v.name).into();
                out.push(j);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        VolumeCommand::Rm { names } => {
            for n in &names {
                volume::remove(&store, n)?;
                println!("{n}");
            }
        }
        VolumeCommand::Prune { all, force: _ } => {
            let removed = volume::prune(&store, all)?;
            if !removed.is_empty() {
                println!("Deleted Volumes:");
                for n in &removed {
                    println!("{n}");
                }
                println!();
            }
            println!("Total reclaimed volumes: {}", removed.len());
        }
    }
    Ok(0)
}
