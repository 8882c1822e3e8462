//! twinbox-init: the guest side of twinbox's microVMs.
//!
//! The binary (`src/main.rs`) is PID 1 inside the guest. This library is the
//! contract it shares with the host: ports, event codes, the configuration
//! file and the console markers, so both sides use the same constants.

pub mod protocol;

pub use protocol::*;
