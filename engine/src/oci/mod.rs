//! The OCI image vocabulary shared by the store, image, registry and build
//! modules: media types and the diff-ids → chain-ids rule.

pub mod chain;
pub mod media;

pub use chain::chain_ids;
