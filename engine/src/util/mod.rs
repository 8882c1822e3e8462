//! Small helpers every crate of twinbox needs, kept once: time stamps,
//! random ids, PATH lookup and the last lines of a text. Atomic file writes
//! live in [`crate::store::atomic`], what /proc says in [`crate::host::procfs`].

pub mod id;
pub mod path;
pub mod text;
pub mod time;
