//! Measuring instruments: clocks and spreads, what a kernel says about itself,
//! memory of processes and guests, bytes on disk.

pub mod disk;
pub mod kernel;
pub mod memory;
pub mod time;
