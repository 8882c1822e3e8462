//! Serving from a microVM: the VM half of the service lessons (dockerfile,
//! exercise, network), in one wording so that the three stay true together.
//! A server in a microVM answers the host through `vm run --network bridge
//! -p` on twinbox's own VMM; a backend that gives its VMs no network card
//! says so, and the half shows as not run here, with the reason.

use serde::Serialize;
use serde_json::json;

use crate::report::{format_bytes, Cell, Measured};

/// The VM half of a service lesson.
pub enum VmHalf<T> {
    /// The server answered the host.
    Served(T),
    /// It was tried and did not answer (a failure of the lesson).
    Failed(String),
    /// This host's backend cannot serve from a VM: not a failure, a limit.
    NotHere(String),
}

impl<T> VmHalf<T> {
    /// The outcome of [`crate::Context::vm_serving`], or why it was not tried.
    pub fn from_measured(m: Measured<T>) -> VmHalf<T> {
        match m {
            Measured::Value(v) => VmHalf::Served(v),
            Measured::Failed(why) => VmHalf::Failed(why),
        }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            VmHalf::Served(v) => Some(v),
            _ => None,
        }
    }

    /// A table cell from the served value, else the failure or the reason.
    pub fn cell(&self, f: impl FnOnce(&T) -> String) -> Cell {
        match self {
            VmHalf::Served(v) => f(v).into(),
            VmHalf::Failed(why) => Cell::Failed {
                failed: why.clone(),
            },
            VmHalf::NotHere(_) => "not run on this host (see below)".into(),
        }
    }

    /// As a measurement for charts (a half not run shows as missing, not zero).
    pub fn measured<U>(&self, f: impl FnOnce(&T) -> U) -> Measured<U> {
        match self {
            VmHalf::Served(v) => Measured::Value(f(v)),
            VmHalf::Failed(why) => Measured::Failed(why.clone()),
            VmHalf::NotHere(why) => Measured::Failed(format!("not run here: {why}")),
        }
    }

    /// The finding for a half that did not run here; `None` otherwise.
    pub fn not_here_finding(&self, what: &str) -> Option<String> {
        match self {
            VmHalf::NotHere(why) => Some(format!(
                "{what} is not shown on this host: {why}. Where twinbox's VMM boots a kernel (a host with VT-x/AMD-V, or the nested environment), the same lesson runs it; it does not pretend here."
            )),
            _ => None,
        }
    }
}

impl<T: Serialize> VmHalf<T> {
    /// The `vm` fact of `--json`: `ran`, and the value, the failure or why not.
    pub fn fact(&self) -> serde_json::Value {
        match self {
            VmHalf::Served(v) => json!({"ran": true, "value": v}),
            VmHalf::Failed(why) => json!({"ran": true, "failed": why}),
            VmHalf::NotHere(why) => json!({"ran": false, "why": why}),
        }
    }
}

/// The VM's memory in one phrase: the process's resident set and the guest
/// RAM part of it, or why it was not sampled.
pub(super) fn vm_memory_text(
    process_rss: &Measured<u64>,
    guest_resident: &Measured<u64>,
    configured_bytes: u64,
) -> String {
    match (process_rss, guest_resident) {
        (Measured::Value(rss), Measured::Value(guest)) => format!(
            "{} VM process RSS ({} of it guest RAM touched, of {} configured)",
            format_bytes(*rss),
            format_bytes(*guest),
            format_bytes(configured_bytes)
        ),
        (Measured::Value(rss), _) => format!("{} VM process RSS", format_bytes(*rss)),
        (Measured::Failed(why), _) => format!("not sampled: {why}"),
    }
}
