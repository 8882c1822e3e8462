//! Measuring instruments: clocks and spreads, what a kernel says about itself,
//! memory of processes and guests, bytes on disk, and the harness that runs
//! one workload N times on one side ([`series`]).

pub mod disk;
pub mod http;
pub mod kernel;
pub mod memory;
pub mod net;
pub mod psql;
pub mod series;
pub mod time;
