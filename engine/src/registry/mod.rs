//! Registries: the OCI distribution protocol, pulling images into the store and
//! pushing them out.
//!
//! Rooms:
//! - [`client`]: HTTP against one registry (ping, manifests, blobs, uploads, mounts)
//! - [`auth`]: anonymous, bearer-token (Docker Hub's flow) and basic auth; `auth.json`
//! - [`media`]: manifest and index media types, and the platform chosen from an index
//! - [`pull`] and [`push`]: the two verbs, with progress through [`Progress`]
//! - [`sources`]: which repositories a blob was seen in, for cross-repository mounts
//!
//! Why a small client of our own on `ureq` and not `oci-client`: oci-client is
//! async (tokio + reqwest + hyper), which doubles the engine's dependency tree and
//! its build time on a 2-core CI, while every caller here is synchronous. Its pull
//! API also wants to own where blobs go. `ureq` is blocking, streams a response
//! body as `impl Read` straight into the layer ingest, and gives redirects,
//! timeouts and rustls; the distribution protocol itself is a handful of requests.

pub mod auth;
pub mod client;
pub mod media;
pub mod progress;
pub mod pull;
pub mod push;
pub mod sources;
mod workers;

pub use crate::oci::Platform;
pub use auth::{AuthFile, Credentials};
pub use client::{Client, ConnectOptions};
pub use progress::{NoProgress, Progress};

use crate::image::ImageError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry} did not answer in time ({what})")]
    Timeout { registry: String, what: String },
    #[error("{what}: {message}")]
    Remote {
        what: String,
        /// HTTP status
        status: u16,
        /// The registry's own error code (MANIFEST_UNKNOWN, NAME_UNKNOWN, ...)
        code: Option<String>,
        message: String,
    },
    #[error("{what} not found: {message}")]
    NotFound { what: String, message: String },
    #[error("authentication to {registry} refused: {message}")]
    AuthRefused { registry: String, message: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("truncated {what}: expected {expected} bytes, got {actual}")]
    Truncated {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error(transparent)]
    Platform(#[from] crate::oci::PlatformError),
    #[error("{what}: {message}")]
    BadResponse { what: String, message: String },
    #[error("credentials file {path}: {message}")]
    AuthFile { path: String, message: String },
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
