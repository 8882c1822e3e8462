//! The i8042 keyboard controller at 0x60-0x64. Linux booted with `reboot=k`
//! resets the machine by writing 0xfe to its command port: for a microVM that
//! is the end of the guest, so the reset line is an eventfd the VMM waits on.

use vm_superio::I8042Device;

use super::bus::PioDevice;
use super::EventFdTrigger;

pub const I8042_PORT: u16 = 0x60;
pub const PORT_COUNT: u16 = 5;

pub struct I8042 {
    controller: I8042Device<EventFdTrigger>,
}

impl I8042 {
    pub fn new(reset: EventFdTrigger) -> Self {
        Self {
            controller: I8042Device::new(reset),
        }
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        if let Some(first) = data.first_mut() {
            *first = self.controller.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let Some(&value) = data.first() {
            if let Err(e) = self.controller.write(offset as u8, value) {
                tracing::warn!("i8042 reset line: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_reset_command_fires_the_reset_line() {
        let reset = EventFdTrigger::new().unwrap();
        let probe = reset.try_clone().unwrap();
        let mut i8042 = I8042::new(reset);
        i8042.write(0, &[0xfe]);
        assert!(probe.0.read().is_err(), "a data-port write is no reset");
        i8042.write(4, &[0xfe]);
        assert_eq!(probe.0.read().unwrap(), 1);
    }
}
