//! Small helpers every crate of twinbox needs, kept once: time stamps,
//! random ids, finding programs, what /proc says about a process and the
//! last lines of a text, waiting on descriptors, loading eBPF programs
//! (the socket load balancer's and the cgroup v2 device filter's). Atomic file writes live with the store
//! ([`crate::store::atomic`]), since every store write goes through them.

pub mod bpf;
pub mod id;
pub mod path;
pub mod poll;
pub mod procfs;
pub mod text;
pub mod time;
