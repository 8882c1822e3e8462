//! A VM's record in the store (`vms/<id>/vm.json`), written atomically at each
//! state change so `vm ps` and `vm stop` see the truth after any crash.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use twinbox_engine::store::atomic::{read_json, write_json_atomic};
use twinbox_engine::util::procfs;

use super::InstanceError;
use crate::vmm::{Timings, VmEnd, VmmMemory};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    pub id: String,
    pub name: String,
    /// The image reference as the user gave it, and its manifest digest.
    pub image: String,
    pub image_id: String,
    pub kernel: PathBuf,
    pub kernel_version: String,
    /// Words added to the kernel command line (`--kernel-args`).
    #[serde(default)]
    pub kernel_args: String,
    pub memory_mib: u64,
    pub vcpus: u8,
    pub command: Vec<String>,
    pub created: String,
    pub auto_remove: bool,
    /// The twinbox process that created the record: while the VM is Created and
    /// this process is gone, nobody will start it (recovery finishes it).
    #[serde(default)]
    pub owner: Option<i32>,
    pub state: VmState,
    /// The network the VM joined: address, MAC, published ports.
    #[serde(default)]
    pub network: Option<super::network::VmNetwork>,
    /// The VMM that runs it.
    #[serde(default)]
    pub backend: super::Backend,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum VmState {
    Created,
    Running {
        /// The VMM process and its start time (to tell a reused pid apart).
        pid: i32,
        start_ticks: u64,
        started: String,
    },
    Exited {
        exit_code: Option<i32>,
        end: VmEnd,
        finished: String,
        timings: Timings,
        memory: Option<VmmMemory>,
    },
}

impl VmRecord {
    pub fn dir(vms_dir: &Path, id: &str) -> PathBuf {
        vms_dir.join(id)
    }

    pub fn path(vms_dir: &Path, id: &str) -> PathBuf {
        Self::dir(vms_dir, id).join("vm.json")
    }

    pub fn console_log(&self, vms_dir: &Path) -> PathBuf {
        Self::dir(vms_dir, &self.id).join("console.log")
    }

    pub fn load(vms_dir: &Path, id: &str) -> Result<VmRecord, InstanceError> {
        Ok(read_json(&Self::path(vms_dir, id))?)
    }

    pub fn save(&self, vms_dir: &Path) -> Result<(), InstanceError> {
        Ok(write_json_atomic(&Self::path(vms_dir, &self.id), self)?)
    }

    /// Whether the VMM named in the record still runs (a killed VMM leaves
    /// "running" behind; this catches it).
    pub fn is_running(&self) -> bool {
        match &self.state {
            VmState::Running {
                pid, start_ticks, ..
            } => procfs::start_ticks(*pid) == Some(*start_ticks),
            _ => false,
        }
    }

    /// Docker-style status text for `vm ps`.
    pub fn status_text(&self) -> String {
        match &self.state {
            VmState::Created => "Created".into(),
            VmState::Running { .. } if self.is_running() => "Running".into(),
            VmState::Running { .. } => "Exited (unknown)".into(),
            VmState::Exited { exit_code, end, .. } => match (exit_code, end) {
                (Some(code), _) => format!("Exited ({code})"),
                (None, VmEnd::Stopped) => "Stopped".into(),
                (None, VmEnd::BootTimeout) => "Failed (boot timeout)".into(),
                (None, VmEnd::TripleFault) => "Failed (triple fault)".into(),
                (None, VmEnd::Failed(why)) => {
                    let short: String = why.chars().take(48).collect();
                    format!("Failed ({short})")
                }
                (None, VmEnd::Reset) => "Exited (no exit code)".into(),
            },
        }
    }
}
