//! What this host offers containers: one [`Check`] per thing the engine needs
//! (root, kernel, overlayfs, cgroups and their controllers, namespaces, the
//! busybox the base image comes from, runc for benchmarks), what container
//! networking needs ([`network`]: bridge, veth, netfilter, ip_forward, the CNI
//! plugins). `twinbox doctor` renders the checks; the microVM side adds its own
//! (`twinbox_microvm::host::checks`).

pub mod network;
mod probes;

pub use probes::{
    cgroup_controllers, checks, kernel_release, overlayfs_available, parse_major_minor, MIN_KERNEL,
};

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One finding: what was checked, what was found, what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}
