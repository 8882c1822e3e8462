//! Containers as Docker users know them: a record in the store (config + state),
//! an OCI spec made from the image and the `run` options, and a supervisor that
//! owns the running process, its logs and its exit.

pub mod attach;
pub mod commit;
pub mod copy;
pub mod devices;
pub mod diff;
pub mod exec;
pub mod export;
pub mod init;
pub mod lifecycle;
pub mod listing;
pub mod logs;
pub mod names;
pub mod network;
pub mod options;
pub mod pause;
pub mod prune;
pub mod record;
pub mod restart;
pub mod security_opt;
pub mod signals;
pub mod spec;
pub mod streams;
pub mod supervisor;
pub mod terminal;
pub mod ulimit;
pub mod user;
pub mod userns;
pub mod volumes;

use std::path::PathBuf;

pub use lifecycle::{create, create_to_start_later, kill, remove, start_detached, stop, wait};
pub use options::RunOptions;
pub use record::{Container, State, Status};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container id prefix {0:?} matches more than one container: give more characters")]
    Ambiguous(String),
    #[error("the container name {name:?} is already in use by container {id}: remove it or choose another name")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit")]
    BadName(String),
    #[error("invalid option: {0}")]
    BadOption(String),
    /// A `--filter` the listing does not know (Docker's daemon refuses it: exit 1).
    #[error("{0}")]
    BadFilter(String),
    /// `cp` refused its input or could not find a path (Docker's CLI: exit 1).
    #[error("{0}")]
    Copy(String),
    /// A `--device` that does not exist on the host (Docker: exit 127).
    #[error("{0}")]
    NoSuchDevice(String),
    #[error("container {0} is running: stop it first, or use `rm -f`")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {0} is paused: unpause it first")]
    Paused(String),
    #[error("container {0} is not paused")]
    NotPaused(String),
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    #[error("{0}")]
    Image(#[from] crate::image::ImageError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Volume(#[from] crate::volume::VolumeError),
    #[error("{0}")]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("{0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("supervisor: {0}")]
    Supervisor(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {secs} s waiting for container {id} to {what}")]
    Timeout { id: String, what: String, secs: u64 },
}

impl ContainerError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContainerError::Io {
            path: path.into(),
            source,
        }
    }

    /// The exit code Docker gives when this error stops a `run`.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Runtime(e) => e.exit_code(),
            ContainerError::BadFilter(_) | ContainerError::Copy(_) => 1,
            ContainerError::NoSuchDevice(_) => 127,
            _ => 125,
        }
    }
}

pub type Result<T, E = ContainerError> = std::result::Result<T, E>;
