//! The VM: guest memory registered with KVM, the in-kernel interrupt
//! controllers (PIC, IOAPIC, LAPICs) and PIT, and IRQ lines as eventfds.

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{ioctl, ram, KvmError};
use crate::arch::x86_64::layout::{ram_regions, KVM_TSS_ADDR};

pub struct Vm {
    pub kvm: Kvm,
    pub fd: VmFd,
    pub memory: GuestMemoryMmap,
    pub mem_size: u64,
    /// What KVM can offer a vCPU on this host; each vCPU gets a filtered copy.
    pub supported_cpuid: CpuId,
    /// KVM emulates the LAPIC's TSC-deadline mode (not in `supported_cpuid`).
    pub tsc_deadline: bool,
    /// The host mappings under `memory`, unmapped after it (fields drop in
    /// order): clones of `memory` must not outlive the VM.
    _ram: Vec<ram::Mapping>,
}

/// The legacy interrupt controllers (PIC, IOAPIC, LAPICs) and the PIT, in KVM.
fn create_irqchip_and_pit(fd: &VmFd) -> Result<(), KvmError> {
    fd.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(ioctl("setting the TSS address"))?;
    fd.create_irq_chip()
        .map_err(ioctl("creating the in-kernel irqchip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    fd.create_pit2(pit).map_err(ioctl("creating the PIT"))
}

/// Tells KVM where each guest RAM region lives in this process.
fn register_memory(fd: &VmFd, memory: &GuestMemoryMmap) -> Result<(), KvmError> {
    for (slot, region) in memory.iter().enumerate() {
        let host = memory
            .get_host_address(region.start_addr())
            .map_err(KvmError::GuestWrite)?;
        let entry = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: host as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mmap owned by `memory`, which the
        // returned `Vm` keeps as long as the VM fd, and slots do not overlap
        // because the regions do not.
        unsafe { fd.set_user_memory_region(entry) }.map_err(ioctl("registering guest memory"))?;
    }
    Ok(())
}

impl Vm {
    /// Opens KVM, creates the VM with `mem_size` bytes of RAM, the irqchip and the PIT.
    pub fn new(mem_size: u64) -> Result<Vm, KvmError> {
        let kvm = Kvm::new().map_err(KvmError::Open)?;
        let fd = kvm.create_vm().map_err(ioctl("creating the VM"))?;
        let ranges: Vec<(GuestAddress, usize)> = ram_regions(mem_size)
            .into_iter()
            .map(|(start, len)| (GuestAddress(start), len as usize))
            .collect();
        // `ram` is declared first so that `memory` is dropped before it.
        let (ram, memory) = ram::map(&ranges).map_err(|detail| KvmError::Memory {
            mib: mem_size >> 20,
            detail,
        })?;
        // Registering memory waits for an SRCU grace period in the host kernel
        // (milliseconds): let it overlap with creating the interrupt
        // controllers and asking for the CPUID instead of queueing behind them.
        let (registered, supported_cpuid) = std::thread::scope(|scope| {
            // No thread to spare: register first, then the rest, in turn.
            let registering =
                crate::threads::spawn_scoped(scope, "kvm-memory", || register_memory(&fd, &memory))
                    .map_err(|_| register_memory(&fd, &memory));
            let rest = create_irqchip_and_pit(&fd).and_then(|()| {
                kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
                    .map_err(ioctl("asking KVM's supported CPUID"))
            });
            let registered = match registering {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(KvmError::Memory {
                        mib: mem_size >> 20,
                        detail: "the memory registration thread panicked".into(),
                    })
                }),
                Err(done_here) => done_here,
            };
            (registered, rest)
        });
        registered?;
        let supported_cpuid = supported_cpuid?;
        let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
        Ok(Vm {
            tsc_deadline,
            _ram: ram,
            kvm,
            fd,
            memory,
            mem_size,
            supported_cpuid,
        })
    }

    /// An eventfd that raises `irq` on the guest's interrupt controller.
    pub fn irq_line(&self, irq: u32) -> Result<EventFd, KvmError> {
        let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| KvmError::Io {
            what: "creating an irq eventfd",
            source,
        })?;
        self.fd
            .register_irqfd(&evt, irq)
            .map_err(ioctl("registering an irqfd"))?;
        Ok(evt)
    }
}
