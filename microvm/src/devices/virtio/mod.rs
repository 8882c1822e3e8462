//! virtio 1.x devices on the MMIO transport, as Firecracker has them: the
//! transport's registers ([`mmio`]), the devices behind it ([`block`],
//! [`net`]), and the I/O thread that serves their queues ([`worker`]). Queues are split
//! virtqueues from rust-vmm's `virtio-queue`.
//!
//! The guest is not trusted: whatever it puts in a queue ends that request
//! with an error status (or gives the buffer back unused), never the VMM.

pub mod block;
#[cfg(test)]
pub(crate) mod fuzz;
pub mod mmio;
pub mod net;
pub mod worker;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Where the first virtio-mmio device sits: in the 32-bit MMIO gap, clear of
/// the IOAPIC and LAPIC pages.
pub const MMIO_BASE: u64 = 0xd000_0000;
/// Each device gets one page of registers.
pub const MMIO_SIZE: u64 = 0x1000;
/// The first device's interrupt (GSI on the IOAPIC); 0-4 and 8 are taken by
/// the PIT, i8042, serial and RTC.
pub const FIRST_IRQ: u32 = 5;
/// At most this many devices: IRQs 5, 6, 7, 9, 10, 11, ...
pub const MAX_DEVICES: usize = 8;

/// The MMIO window and IRQ of the `index`th device.
pub fn slot(index: usize) -> (u64, u32) {
    let irq = FIRST_IRQ + index as u32;
    let irq = if irq >= 8 { irq + 1 } else { irq };
    (MMIO_BASE + index as u64 * MMIO_SIZE, irq)
}

/// Feature bits every device offers.
pub const F_VERSION_1: u64 = 1 << 32;
pub const F_EVENT_IDX: u64 = 1 << 29;

/// virtio device ids.
pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;

/// A device behind the transport: its identity and configuration space, and
/// the work it does when the driver hands it buffers.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// The largest size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered (the transport adds none of its own).
    fn features(&self) -> u64;
    /// The device-specific configuration space at `offset`; bytes past its
    /// end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver wrote QueueNotify for `index` (or the ioeventfd fired).
    /// Returns true when a used ring changed.
    fn process_queue(&mut self, mem: &GuestMemoryMmap, index: usize, queues: &mut [Queue]) -> bool;
    /// The driver reset the device: forget in-flight state.
    fn reset(&mut self) {}
    /// A host file the device waits on besides its queues (a tap), while it
    /// wants to hear from it; the I/O thread polls it for input.
    fn host_fd(&self) -> Option<RawFd> {
        None
    }
    /// The host file has input. Returns the queue whose used ring changed.
    fn process_host_input(
        &mut self,
        _mem: &GuestMemoryMmap,
        _queues: &mut [Queue],
    ) -> Option<usize> {
        None
    }
}

/// Interrupt status bits of the transport.
pub const INT_USED_RING: u32 = 1;
pub const INT_CONFIG: u32 = 2;

/// A device's interrupt: the status the driver reads and acknowledges, and
/// an eventfd registered as an irqfd (edge: every write is one interrupt).
pub struct Interrupt {
    status: AtomicU32,
    line: EventFd,
}

impl Interrupt {
    pub fn new(line: EventFd) -> Interrupt {
        Interrupt {
            status: AtomicU32::new(0),
            line,
        }
    }

    pub fn signal(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::SeqCst);
        if let Err(e) = self.line.write(1) {
            tracing::warn!("raising a virtio interrupt: {e}");
        }
    }

    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    pub fn clear(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}
