//! The OCI runtime: a runtime spec (config.json) becomes an isolated process.

pub mod security;
