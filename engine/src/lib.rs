//! twinbox-engine: the container half of twinbox.
//!
//! Rooms, in the order data flows through them:
//! - [`store`]: the on-disk OCI image layout, unpacked layers, locking
//! - [`image`]: references, image configs, bootstrap (busybox) and import
//! - [`registry`]: pull and push over the OCI distribution API, login
//! - [`container`]: the container record, create/start/stop, the supervisor and logs
//! - [`runtime`]: an OCI runtime spec turned into an isolated process
//! - [`cgroups`]: resource limits and usage, v1 and v2 behind one interface
//! - [`system`]: store-wide care: recovery after crashes, `system check`
//! - [`template`]: Go templates for `--format`, as Docker reads them

pub mod build;
pub mod cgroups;
pub mod container;
pub mod dockerfile;
pub mod fault;
pub mod host;
pub mod image;
pub mod layer;
pub mod network;
pub mod oci;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod system;
pub mod template;
pub mod util;
pub mod volume;
