//! Crash points for the fault-injection tests: `TWINBOX_FAULT=NAME` makes the
//! process SIGKILL itself when it reaches the point called NAME, exactly as a
//! user's `kill -9` or a power cut would stop it there. Unset (always, outside
//! the tests), a point costs one cached environment lookup.
//!
//! The names, in the order a workload meets them, are listed in [`POINTS`]; the
//! test in tests/faults.rs walks every one.

use std::sync::OnceLock;

/// The environment variable that names the point to die at.
pub const ENV: &str = "TWINBOX_FAULT";

/// Every crash point, with the operation that reaches it.
pub const POINTS: &[(&str, &str)] = &[
    (
        "ingest.staged",
        "a layer unpacked in tmp/, nothing published",
    ),
    (
        "ingest.blob-installed",
        "the blob published, its unpacked layer not yet",
    ),
    (
        "image.before-ref",
        "blobs and layers in, the image's name not yet",
    ),
    (
        "create.before-record",
        "a container's dirs made, its record not written",
    ),
    (
        "run.started",
        "the container running, its supervisor about to relay output",
    ),
    (
        "rm.cgroup-released",
        "rm: the cgroup gone, the record not yet",
    ),
    (
        "rmi.untagged",
        "rmi: the name removed, blobs and layers not collected",
    ),
    (
        "build.step-running",
        "build: a RUN step's process running in its cgroup, the step not done",
    ),
    (
        "build.step-committed",
        "build: a step's layer cached, the image not committed",
    ),
    (
        "vm.created",
        "vm run: the VM's record written, its VMM not started",
    ),
    (
        "vm.disk-built",
        "vm run --rootfs disk: the image's disk written in scratch, its layers mounted, not cached",
    ),
    (
        "vm.disk-cached",
        "vm run --rootfs disk: the image's disk in the cache, no VM started",
    ),
];

/// Dies here (SIGKILL, no cleanup of any kind) when `TWINBOX_FAULT` names `point`.
pub fn point(point: &str) {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var(ENV).ok());
    if armed.as_deref() == Some(point) {
        tracing::warn!(point, "fault injection: killing this process");
        // SAFETY: raising a signal on ourselves; SIGKILL cannot be caught.
        unsafe { libc::raise(libc::SIGKILL) };
    }
}
