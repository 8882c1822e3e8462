//! The 16550 UART at 0x3f8 (COM1), the guest's console. Its interrupt line is
//! an eventfd registered as irqfd for IRQ 4: without the interrupt the guest's
//! user-space output stalls after the first FIFO's worth.

use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::Serial;

use super::bus::PioDevice;
use super::EventFdTrigger;

pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const PORT_COUNT: u16 = 8;

pub struct SerialConsole<W: Write + Send> {
    uart: Serial<EventFdTrigger, NoEvents, W>,
}

impl<W: Write + Send> SerialConsole<W> {
    /// A UART that raises `irq` and writes what the guest sends to `out`.
    pub fn new(irq: EventFdTrigger, out: W) -> Self {
        Self {
            uart: Serial::new(irq, out),
        }
    }
}

impl<W: Write + Send> PioDevice for SerialConsole<W> {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        if let Some(first) = data.first_mut() {
            *first = self.uart.read(offset as u8);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let Some(&value) = data.first() {
            if let Err(e) = self.uart.write(offset as u8, value) {
                tracing::warn!("serial console: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_the_sink_and_raise_the_irq() {
        let irq = EventFdTrigger::new().unwrap();
        let probe = irq.try_clone().unwrap();
        let sink = Shared::default();
        let mut console = SerialConsole::new(irq, sink.clone());
        // Enable the "transmitter empty" interrupt (IER bit 1), then send.
        console.write(1, &[0x02]);
        for b in b"hi\n" {
            console.write(0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        assert!(probe.0.read().unwrap() >= 1, "IRQ 4 was raised");
        // The line status register says the transmitter is empty.
        let mut lsr = [0u8];
        console.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
    }
}
