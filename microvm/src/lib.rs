//! twinbox-microvm: a minimal KVM microVM runner and what it needs to know
//! about the host.

pub mod host;
