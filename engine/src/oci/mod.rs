//! The OCI image vocabulary, once, for the store, image, registry and build
//! modules: the `oci-spec` crate's documents (descriptor, manifest, index, image
//! config) and what twinbox adds to them: media types (OCI and Docker), the
//! diff ids → chain ids rule, the platform chosen from an index, and the one
//! writer of an image's config and manifest bytes.

pub mod chain;
pub mod document;
pub mod media;
pub mod platform;

pub use chain::{chain_id, chain_ids};
pub use document::{descriptor, digest_of, ImageDocuments, OciError};
pub use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex as Index, ImageManifest as Manifest, MediaType,
};
pub use platform::{Platform, PlatformError};
