//! What the benchmarks share: timing a command, summarising samples (median and
//! p10–p90) and printing series as a table with their ratio to a peer measured in
//! the same run.

pub mod containerd;
pub mod dockerd;
pub mod setup;
pub mod stats;
pub mod table;
