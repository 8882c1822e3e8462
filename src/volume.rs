//! `volume create|ls|inspect|rm|prune`.

use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};
use twinbox_engine::container::volumes;
use twinbox_engine::volume;

use twinbox_engine::template::Format;

use crate::format::print_objects;
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
        /// Format each volume with a Go template (`{{.Mountpoint}}`)
        #[arg(short = 'f', long, default_value = "")]
        format: String,
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
    /// Output: table, json, or a Go template (`{{.Name}}`)
    #[arg(long, default_value = "")]
    format: String,
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
                let format = Format::parse(&args.format, volume::LS_TABLE)?;
                let rows: Vec<serde_json::Value> = vols.iter().map(volume::row).collect();
                print!("{}", format.render(&rows, &volume::titles(), None)?);
            }
        }
        VolumeCommand::Inspect { names, format } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(volumes::describe(&store, &volume::find(&store, n)?));
            }
            print_objects(&out, &format)?;
        }
        VolumeCommand::Rm { names } => {
            for n in &names {
                volumes::remove(&store, n)?;
                println!("{n}");
            }
        }
        VolumeCommand::Prune { all, force: _ } => {
            let removed = volumes::prune(&store, all)?;
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
