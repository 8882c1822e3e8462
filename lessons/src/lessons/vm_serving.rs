//! Serving from a microVM: what the service lessons (dockerfile, exercise,
//! network) say about their VM half while a server inside a microVM cannot
//! yet be reached from the host. One wording, so that the three stay true
//! together and change together.

/// Why the VM half of a service lesson is not run, in one sentence.
pub const WHY_NOT: &str = "twinbox's microVMs have a virtio-net card on the bridge (`vm run --network`), but a server inside one cannot be reached from the host yet: TCP serving through the guest's card and `vm run -p` is being fixed (issue 13)";

/// The short form, for a table cell.
pub const CELL: &str = "not run: TCP serving from a microVM is being fixed (issue 13)";

/// A finding: what is not shown and why, without pretending.
pub fn finding(what: &str) -> String {
    format!("{what} is not shown: {WHY_NOT}. The lesson adds that half when a server in a microVM answers the host; it does not pretend.")
}

/// The `vm` fact of a lesson whose VM half did not run.
pub fn fact() -> serde_json::Value {
    serde_json::json!({"ran": false, "why": WHY_NOT})
}
