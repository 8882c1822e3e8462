//! twinbox-microvm: a minimal KVM microVM runner and what it needs to know
//! about the host.
//!
//! Rooms, in boot order:
//! - [`host`]: which KVM this host has, which guest kernels are installed
//! - [`guest`]: the guest's initramfs: image layers, twinbox-init, modules, config
//! - [`vstate`]: the KVM VM and its vCPUs
//! - [`arch`]: x86_64 memory layout, GDT, page tables, CPUID, MSRs, MP table
//! - [`boot`]: kernel, command line, initramfs, zero page / PVH start info
//! - [`devices`]: the port-I/O and MMIO buses, serial console, i8042, boot
//!   timer, virtio-mmio block device
//! - [`acpi`]: the tables that describe the machine and its virtio devices
//! - [`vmm`]: all of the above put together: boot a guest, wait for its end
//! - [`qemu`]: the same guest booted by QEMU (fallback where KVM cannot, and peer)
//! - [`threads`]: the VMM's threads, with stacks below a huge page

pub mod acpi;
pub mod arch;
pub mod boot;
pub mod console;
pub mod devices;
pub mod guest;
pub mod host;
pub mod hostnet;
pub mod instance;
pub mod qemu;
pub mod threads;
pub mod vmm;
pub mod vstate;
