//! The layer format shared by build, container (diff, commit) and image
//! export: reading a stack of unpacked layers the way overlayfs shows them
//! ([`merged`]) and writing a directory tree, whiteouts included, as a layer
//! tar ([`tree`]); a layer copied with its owners shifted into a user
//! namespace's range ([`shift`]). It sits below them so none has to import another.

pub mod merged;
pub mod shift;
pub mod tree;
