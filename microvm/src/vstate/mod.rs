//! The KVM objects: the VM (memory, interrupt controller, timer) and its vCPUs
//! (registers, CPUID, the run loop), as Firecracker's `vstate` splits them,
//! and the host mappings of guest RAM ([`ram`]).

pub mod ram;
pub mod vcpu;
pub mod vm;

/// What can go wrong with KVM itself.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error(
        "cannot open /dev/kvm: {0}: load kvm_intel or kvm_amd, or check the device's permissions"
    )]
    Open(#[source] kvm_ioctls::Error),
    #[error("{what}: {source}")]
    Ioctl {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("guest memory of {mib} MiB: {detail}")]
    Memory { mib: u64, detail: String },
    #[error("writing boot structures to guest memory: {0}")]
    GuestWrite(#[from] vm_memory::GuestMemoryError),
}

/// Wraps a KVM ioctl error with the name of what was being done.
pub(crate) fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> KvmError {
    move |source| KvmError::Ioctl { what, source }
}
