//! Everything a guest needs besides the kernel: its initramfs, made of the
//! image's flattened layers, the twinbox-init binary, kernel modules and the
//! per-run configuration (see [`initrd`]).

pub mod cpio;
pub mod disk;
pub mod initrd;
pub mod modules;
pub mod rootfs;

use std::path::{Path, PathBuf};

pub use initrd::{build_initrd, init_binary, GuestSpec, Initrd};
pub use twinbox_init::RootDisk;

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no twinbox-init binary (looked at {looked}): this build embedded none (see the cargo warning: install libc6-dev and rebuild), or set TWINBOX_INIT to its path")]
    NoInit { looked: String },
    #[error("{0}: twinbox-init must be a static executable (it runs alone in the guest): rebuild twinbox, which embeds one, or build it with crt-static")]
    InitNotStatic(PathBuf),
    #[error("kernel module {name:?} is not in {dep_file}: check the name (modinfo NAME), or leave it out")]
    ModuleNotFound { name: String, dep_file: PathBuf },
    #[error(
        "kernel module {0:?}: modules.dep lists a dependency cycle: run depmod for this kernel"
    )]
    ModuleCycle(String),
    #[error("kernel {version} has no modules directory ({expected}): install its modules, or ask for none")]
    NoModules { version: String, expected: PathBuf },
    #[error("{0}")]
    BadSpec(String),
    #[error("{0}")]
    Tool(String),
    #[error("{0}")]
    Container(#[from] twinbox_engine::container::ContainerError),
    #[error("{0}")]
    Store(#[from] twinbox_engine::store::StoreError),
}

impl GuestError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        GuestError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}
