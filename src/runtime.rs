//! `twinbox runtime ...`: the OCI runtime command line on bundles, like runc.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use twinbox_engine::runtime::oci::{OciRuntime, DEFAULT_STATE_ROOT};

use crate::container::{parse_signal, require_root};

#[derive(Subcommand, Debug)]
pub enum RuntimeCommand {
    /// Create a container from a bundle; it waits for `start`
    Create {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long, default_value = DEFAULT_STATE_ROOT)]
        state_root: PathBuf,
        id: String,
    },
    /// Run the created container's process
    Start {
        #[arg(long, default_value = DEFAULT_STATE_ROOT)]
        state_root: PathBuf,
        id: String,
    },
    /// Print the OCI state JSON
    State {
        #[arg(long, default_value = DEFAULT_STATE_ROOT)]
        state_root: PathBuf,
        id: String,
    },
    /// Send a signal (default TERM)
    Kill {
        #[arg(long, default_value = DEFAULT_STATE_ROOT)]
        state_root: PathBuf,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Remove a stopped container (or any, with --force)
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(long, default_value = DEFAULT_STATE_ROOT)]
        state_root: PathBuf,
        id: String,
    },
    /// Create, start and wait: exit with the process's status
    Run {
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long, default_value = DEFAULT_STATE_ROOT)]
        state_root: PathBuf,
        id: String,
    },
}

pub fn dispatch(cmd: RuntimeCommand) -> Result<i32> {
    require_root("runtime")?;
    match cmd {
        RuntimeCommand::Create {
            bundle,
            state_root,
            id,
        } => {
            OciRuntime::new(state_root).create(&id, &bundle)?;
            Ok(0)
        }
        RuntimeCommand::Start { state_root, id } => {
            OciRuntime::new(state_root).start(&id)?;
            Ok(0)
        }
        RuntimeCommand::State { state_root, id } => {
            let state = OciRuntime::new(state_root).state(&id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        RuntimeCommand::Kill {
            state_root,
            id,
            signal,
        } => {
            OciRuntime::new(state_root).kill(&id, parse_signal(&signal)?)?;
            Ok(0)
        }
        RuntimeCommand::Delete {
            force,
            state_root,
            id,
        } => {
            OciRuntime::new(state_root).delete(&id, force)?;
            Ok(0)
        }
        RuntimeCommand::Run {
            bundle,
            state_root,
            id,
        } => Ok(OciRuntime::new(state_root).run(&id, &bundle)?),
    }
}
