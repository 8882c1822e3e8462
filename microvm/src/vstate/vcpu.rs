//! A vCPU: its boot state (CPUID, MSRs, registers, FPU, LAPIC wiring) and the
//! run loop that turns port I/O exits into device calls on the bus.

use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{
    kvm_mp_state, CpuId, Msrs, KVM_MP_STATE_RUNNABLE, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::vm::Vm;
use super::{ioctl, KvmError};
use crate::arch::x86_64::{cpuid, msrs, regs};
use crate::devices::bus::PioBus;
use crate::devices::mmio::MmioBus;

/// LAPIC register offsets of the two local interrupt pins.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

/// Why a vCPU stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VcpuStop {
    /// The VMM asked it to stop (the VM is ending for another reason).
    Requested,
    /// The guest reset or powered off through KVM (system event).
    GuestReset,
    /// A triple fault: the guest crashed so hard the CPU shut down.
    TripleFault,
    /// KVM could not run the guest; the text says what KVM reported.
    Failed(String),
}

pub struct Vcpu {
    pub index: u8,
    fd: VcpuFd,
}

impl Vcpu {
    pub fn new(vm: &Vm, index: u8) -> Result<Vcpu, KvmError> {
        let fd = vm
            .fd
            .create_vcpu(index as u64)
            .map_err(ioctl("creating a vCPU"))?;
        Ok(Vcpu { index, fd })
    }

    /// Everything a vCPU needs before its first instruction. Only the boot
    /// processor gets registers; the others wait for the kernel's INIT/SIPI
    /// unless `start_all` (used by test guests that run on every vCPU).
    pub fn configure(
        &self,
        vm: &Vm,
        cpu_count: u8,
        mode: regs::EntryMode,
        cr3: u64,
        start_all: bool,
    ) -> Result<(), KvmError> {
        let mut cpuid: CpuId = vm.supported_cpuid.clone();
        cpuid::filter(cpuid.as_mut_slice(), self.index, cpu_count, vm.tsc_deadline);
        self.fd.set_cpuid2(&cpuid).map_err(ioctl("setting CPUID"))?;

        let boot_msrs = Msrs::from_entries(&msrs::boot_msrs())
            .map_err(|_| ioctl("building the MSR list")(kvm_ioctls::Error::new(libc::E2BIG)))?;
        self.fd
            .set_msrs(&boot_msrs)
            .map_err(ioctl("setting the boot MSRs"))?;
        self.configure_lapic()?;

        if self.index == 0 || start_all {
            self.fd
                .set_regs(&regs::boot_regs(mode))
                .map_err(ioctl("setting registers"))?;
            let sregs = self.fd.get_sregs().map_err(ioctl("reading sregs"))?;
            self.fd
                .set_sregs(&regs::boot_sregs(sregs, mode, cr3))
                .map_err(ioctl("setting sregs"))?;
            self.fd
                .set_fpu(&regs::boot_fpu())
                .map_err(ioctl("setting the FPU"))?;
        }
        if self.index != 0 && start_all {
            let runnable = kvm_mp_state {
                mp_state: KVM_MP_STATE_RUNNABLE,
            };
            self.fd
                .set_mp_state(runnable)
                .map_err(ioctl("making an AP runnable"))?;
        }
        Ok(())
    }

    /// Wires LINT0 as ExtINT (the legacy PIC) and LINT1 as NMI, as firmware would.
    fn configure_lapic(&self) -> Result<(), KvmError> {
        let mut lapic = self.fd.get_lapic().map_err(ioctl("reading the LAPIC"))?;
        for (offset, mode) in [(APIC_LVT0, APIC_MODE_EXTINT), (APIC_LVT1, APIC_MODE_NMI)] {
            let value = read_lapic_reg(&lapic.regs, offset);
            let value = (value & !0x700) | (mode << 8);
            write_lapic_reg(&mut lapic.regs, offset, value);
        }
        self.fd
            .set_lapic(&lapic)
            .map_err(ioctl("writing the LAPIC"))
    }

    /// Runs the guest until it ends or `stop` is set. Port I/O goes to `bus`,
    /// memory-mapped I/O to `mmio` (unclaimed addresses read as all ones).
    pub fn run(&mut self, bus: &PioBus, mmio: &MmioBus, stop: &AtomicBool) -> VcpuStop {
        loop {
            if stop.load(Ordering::Acquire) {
                return VcpuStop::Requested;
            }
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => bus.read(port, data),
                Ok(VcpuExit::IoOut(port, data)) => bus.write(port, data),
                Ok(VcpuExit::MmioRead(addr, data)) => mmio.read(addr, data),
                Ok(VcpuExit::MmioWrite(addr, data)) => mmio.write(addr, data),
                Ok(VcpuExit::Hlt) => return VcpuStop::GuestReset,
                Ok(VcpuExit::Shutdown) => return VcpuStop::TripleFault,
                Ok(VcpuExit::SystemEvent(kind, _))
                    if kind == KVM_SYSTEM_EVENT_RESET || kind == KVM_SYSTEM_EVENT_SHUTDOWN =>
                {
                    return VcpuStop::GuestReset
                }
                Ok(VcpuExit::InternalError) => {
                    return VcpuStop::Failed("KVM internal error (emulation failure)".into())
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    return VcpuStop::Failed(format!(
                        "KVM could not enter the guest on cpu {cpu} (hardware reason {reason:#x})"
                    ))
                }
                Ok(other) => {
                    return VcpuStop::Failed(format!("unexpected KVM exit {other:?}"));
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => return VcpuStop::Failed(format!("KVM_RUN: {e}")),
            }
        }
    }
}

fn read_lapic_reg(regs: &[std::os::raw::c_char; 1024], offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

fn write_lapic_reg(regs: &mut [std::os::raw::c_char; 1024], offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        regs[offset + i] = byte as std::os::raw::c_char;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_registers_round_trip_little_endian() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        write_lapic_reg(&mut regs, APIC_LVT0, 0x0001_0700);
        assert_eq!(read_lapic_reg(&regs, APIC_LVT0), 0x0001_0700);
        assert_eq!(regs[APIC_LVT0 + 1] as u8, 0x07);
    }
}
