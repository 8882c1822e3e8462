//! twinbox-lessons: guided lessons that run one workload as a container and as
//! a microVM, measure both on this machine, and explain what the numbers show.
//!
//! Rooms:
//! - [`lessons`]: one file per lesson, and the list of them
//! - [`context`]: what every lesson gets (store, runs, VM backend) and the
//!   helpers that run a step and record it
//! - [`guided`]: `--steps`, an exercise typed by the student and checked
//!   step by step
//! - [`compare`]: the side-by-side harness behind `twinbox compare`
//! - [`backend`]: the VM half (twinbox's own VMM, or QEMU), chosen with a reason
//! - [`container`]: the container half, through the engine library
//! - [`measure`]: clocks, kernels, memory, disk, and the harness that runs a
//!   workload N times on one side
//! - [`charts`]: every chart a lesson draws, built in one place
//! - [`report`] and [`render`]: the record a lesson produces, and the terminal,
//!   JSON and HTML views of it

pub mod backend;
pub mod charts;
pub mod compare;
pub mod console_vm;
pub mod container;
pub mod context;
pub mod guided;
pub mod image;
pub mod lessons;
pub mod measure;
pub mod render;
pub mod report;
pub mod shell;

pub use context::{Context, Settings};
pub use lessons::{course, find, Lesson, COURSE, LESSONS, TOUR};
pub use report::LessonReport;

#[derive(Debug, thiserror::Error)]
pub enum LessonError {
    #[error("no lesson named {0:?}: see `twinbox lesson list`")]
    UnknownLesson(String),
    #[error("{0}")]
    BadInput(String),
    #[error("image {image} is not in the store: {hint}")]
    MissingImage { image: String, hint: String },
    #[error("VM backend: {0}")]
    Backend(String),
    #[error("VM backend: {0}")]
    Instance(#[source] twinbox_microvm::instance::InstanceError),
    #[error("VM backend: {0}")]
    Qemu(#[source] twinbox_microvm::qemu::QemuError),
    #[error("guest: {0}")]
    Guest(#[source] twinbox_microvm::guest::GuestError),
    #[error("{0}")]
    Container(#[from] twinbox_engine::container::ContainerError),
    #[error("{0}")]
    Image(#[from] twinbox_engine::image::ImageError),
    #[error("{0}")]
    Store(#[from] twinbox_engine::store::StoreError),
    #[error("registry: {0}")]
    Registry(String),
    #[error("registry: {0}")]
    RegistryClient(#[source] twinbox_engine::registry::RegistryError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl LessonError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LessonError::Io {
            what: what.into(),
            source,
        }
    }
}
