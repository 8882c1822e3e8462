//! The layer format shared by build and container (diff, commit): reading a
//! stack of unpacked layers the way overlayfs shows them ([`merged`]) and
//! writing a directory tree, whiteouts included, as a layer tar ([`tree`]).
//! It sits below both so neither has to import the other.

pub mod merged;
pub mod tree;
