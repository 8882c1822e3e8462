//! The memory-mapped I/O bus: which device answers which guest-physical
//! addresses outside RAM. vCPU threads look up the device for every MMIO exit;
//! each device sits behind its own lock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device on the MMIO bus. Offsets are relative to its base address.
pub trait MmioDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

#[derive(Default, Clone)]
pub struct MmioBus {
    devices: BTreeMap<u64, (u64, Arc<Mutex<dyn MmioDevice>>)>,
}

impl MmioBus {
    /// Claims `len` bytes from `base`; overlapping claims are a programming error.
    pub fn insert(&mut self, base: u64, len: u64, device: Arc<Mutex<dyn MmioDevice>>) {
        let end = base + len;
        let overlaps = self
            .devices
            .iter()
            .any(|(&b, &(l, _))| b < end && base < b + l);
        assert!(!overlaps, "MMIO {base:#x}..{end:#x} claimed twice");
        self.devices.insert(base, (len, device));
    }

    fn find(&self, addr: u64) -> Option<(u64, &Arc<Mutex<dyn MmioDevice>>)> {
        let (&base, (len, device)) = self.devices.range(..=addr).next_back()?;
        (addr < base + len).then_some((addr - base, device))
    }

    /// Handles a load; unclaimed addresses read as all ones.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.find(addr) {
            Some((offset, device)) => lock(device).read(offset, data),
            None => data.fill(0xff),
        }
    }

    /// Handles a store; stores to unclaimed addresses are dropped.
    pub fn write(&self, addr: u64, data: &[u8]) {
        if let Some((offset, device)) = self.find(addr) {
            lock(device).write(offset, data);
        }
    }
}

/// A poisoned lock (a vCPU thread panicked) still holds plain device state.
fn lock(
    device: &Arc<Mutex<dyn MmioDevice>>,
) -> std::sync::MutexGuard<'_, dyn MmioDevice + 'static> {
    device.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Vec<(u64, Vec<u8>)>);

    impl MmioDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn addresses_route_to_the_device_with_offsets() {
        let a = Arc::new(Mutex::new(Recorder::default()));
        let b = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = MmioBus::default();
        bus.insert(0xd000_0000, 0x1000, a.clone());
        bus.insert(0xd000_1000, 0x1000, b.clone());
        bus.write(0xd000_1070, &[1, 2, 3, 4]);
        let mut data = [0u8; 4];
        bus.read(0xd000_0008, &mut data);
        assert_eq!(data, [8; 4]);
        assert!(a.lock().unwrap().0.is_empty());
        assert_eq!(b.lock().unwrap().0, vec![(0x70, vec![1, 2, 3, 4])]);
    }

    #[test]
    fn unclaimed_addresses_read_all_ones() {
        let mut bus = MmioBus::default();
        bus.insert(
            0xd000_0000,
            0x1000,
            Arc::new(Mutex::new(Recorder::default())),
        );
        let mut data = [0u8; 4];
        bus.read(0xd000_1000, &mut data);
        assert_eq!(data, [0xff; 4]);
        bus.read(0xcfff_fffc, &mut data);
        assert_eq!(data, [0xff; 4]);
    }

    #[test]
    #[should_panic(expected = "claimed twice")]
    fn overlapping_claims_are_refused() {
        let mut bus = MmioBus::default();
        bus.insert(0x1000, 0x1000, Arc::new(Mutex::new(Recorder::default())));
        bus.insert(0x1800, 0x1000, Arc::new(Mutex::new(Recorder::default())));
    }
}
