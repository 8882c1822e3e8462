//! The few devices a microVM needs, each a small struct behind the port-I/O
//! bus: the 16550 console, the i8042 (whose reset ends the VM), the CMOS
//! clock, and the boot timer the guest init writes to; and on the MMIO bus
//! the virtio devices (disks).

pub mod boot_timer;
pub mod bus;
pub mod i8042;
pub mod mmio;
pub mod rtc;
pub mod serial;
pub mod virtio;

use vm_superio::Trigger;
use vmm_sys_util::eventfd::EventFd;

/// An eventfd as the interrupt/event line of a vm-superio device: registered
/// as an irqfd it raises a guest IRQ; read by the VMM it signals an event.
pub struct EventFdTrigger(pub EventFd);

impl EventFdTrigger {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self(EventFd::new(libc::EFD_NONBLOCK)?))
    }

    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self(self.0.try_clone()?))
    }
}

impl Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}
