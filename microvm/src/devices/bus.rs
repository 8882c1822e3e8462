//! The port-I/O bus: which device answers which ports. vCPU threads look up
//! the device for every IN/OUT exit; each device sits behind its own lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on the port-I/O bus. Offsets are relative to its base port.
pub trait PioDevice: Send {
    fn read(&mut self, offset: u16, data: &mut [u8]);
    fn write(&mut self, offset: u16, data: &[u8]);
}

/// Ports nobody claimed read as all ones, like a floating ISA bus.
const UNCLAIMED: u8 = 0xff;

#[derive(Default, Clone)]
pub struct PioBus {
    devices: BTreeMap<u16, (u16, Arc<Mutex<dyn PioDevice>>)>,
}

impl PioBus {
    /// Claims `len` ports from `base`; overlapping claims are a programming error.
    pub fn insert(&mut self, base: u16, len: u16, device: Arc<Mutex<dyn PioDevice>>) {
        let end = base + len;
        let overlaps = self
            .devices
            .iter()
            .any(|(&b, &(l, _))| b < end && base < b + l);
        assert!(!overlaps, "ports {base:#x}..{end:#x} claimed twice");
        self.devices.insert(base, (len, device));
    }

    fn find(&self, port: u16) -> Option<(u16, &Arc<Mutex<dyn PioDevice>>)> {
        let (&base, (len, device)) = self.devices.range(..=port).next_back()?;
        (port < base + len).then_some((port - base, device))
    }

    /// Handles an IN; unclaimed ports read 0xff.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        match self.find(port) {
            Some((offset, device)) => lock(device).read(offset, data),
            None => data.fill(UNCLAIMED),
        }
    }

    /// Handles an OUT; writes to unclaimed ports are dropped.
    pub fn write(&self, port: u16, data: &[u8]) {
        if let Some((offset, device)) = self.find(port) {
            lock(device).write(offset, data);
        }
    }
}

/// A device whose lock was poisoned by a panicking vCPU thread is still usable:
/// its state is plain data.
fn lock(device: &Arc<Mutex<dyn PioDevice>>) -> std::sync::MutexGuard<'_, dyn PioDevice + 'static> {
    device.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u16, u8)>);

    impl PioDevice for Recorder {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.0.push((offset, data[0]));
        }
    }

    #[test]
    fn ports_route_to_the_device_with_offsets() {
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = PioBus::default();
        bus.insert(0x3f8, 8, recorder.clone());
        bus.write(0x3fb, &[0x80]);
        let mut data = [0u8; 1];
        bus.read(0x3fd, &mut data);
        assert_eq!(data, [5]);
        assert_eq!(recorder.lock().unwrap().0, vec![(3, 0x80)]);
    }

    #[test]
    fn unclaimed_ports_float_high_and_ignore_writes() {
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = PioBus::default();
        bus.insert(0x3f8, 8, recorder.clone());
        let mut data = [0u8; 2];
        bus.read(0x400, &mut data);
        assert_eq!(data, [0xff, 0xff]);
        bus.write(0x3f7, &[1]);
        assert!(recorder.lock().unwrap().0.is_empty());
    }

    #[test]
    #[should_panic(expected = "claimed twice")]
    fn overlapping_claims_are_refused() {
        let mut bus = PioBus::default();
        bus.insert(0x60, 5, Arc::new(Mutex::new(Recorder::default())));
        bus.insert(0x64, 1, Arc::new(Mutex::new(Recorder::default())));
    }
}
