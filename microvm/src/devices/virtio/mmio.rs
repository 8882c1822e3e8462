//! The virtio-mmio transport, version 2 (virtio 1.x): one page of registers
//! per device through which the driver negotiates features, places the
//! queues and reads the device's configuration.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{Interrupt, VirtioDevice, F_EVENT_IDX, F_VERSION_1};
use crate::devices::mmio::MmioDevice;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
/// "TWIN" read little-endian: nobody else's vendor id.
const VENDOR_ID: u32 = 0x4e49_5754;

// Register offsets (virtio 1.2, 4.2.2).
const REG_MAGIC: u64 = 0x000;
const REG_VERSION: u64 = 0x004;
const REG_DEVICE_ID: u64 = 0x008;
const REG_VENDOR_ID: u64 = 0x00c;
const REG_DEVICE_FEATURES: u64 = 0x010;
const REG_DEVICE_FEATURES_SEL: u64 = 0x014;
const REG_DRIVER_FEATURES: u64 = 0x020;
const REG_DRIVER_FEATURES_SEL: u64 = 0x024;
const REG_QUEUE_SEL: u64 = 0x030;
const REG_QUEUE_NUM_MAX: u64 = 0x034;
const REG_QUEUE_NUM: u64 = 0x038;
const REG_QUEUE_READY: u64 = 0x044;
/// Where the driver writes a queue's index to say "new buffers".
pub const REG_QUEUE_NOTIFY: u64 = 0x050;
const REG_INTERRUPT_STATUS: u64 = 0x060;
const REG_INTERRUPT_ACK: u64 = 0x064;
const REG_STATUS: u64 = 0x070;
const REG_QUEUE_DESC_LOW: u64 = 0x080;
const REG_QUEUE_DESC_HIGH: u64 = 0x084;
const REG_QUEUE_DRIVER_LOW: u64 = 0x090;
const REG_QUEUE_DRIVER_HIGH: u64 = 0x094;
const REG_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const REG_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const REG_CONFIG_GENERATION: u64 = 0x0fc;
const REG_CONFIG: u64 = 0x100;

// Device status bits (virtio 1.2, 2.1).
pub const STATUS_ACKNOWLEDGE: u32 = 1;
pub const STATUS_DRIVER: u32 = 2;
pub const STATUS_DRIVER_OK: u32 = 4;
pub const STATUS_FEATURES_OK: u32 = 8;
pub const STATUS_FAILED: u32 = 0x80;

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
}

impl MmioTransport {
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
    ) -> MmioTransport {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("queue sizes are powers of two up to 32768"))
            .collect();
        MmioTransport {
            device,
            mem,
            interrupt,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
        }
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    /// The driver has new buffers in queue `index`: let the device serve
    /// them, then interrupt if the driver wants to hear about it. Ignored
    /// unless the driver finished setting up and the queue is valid.
    pub fn notify(&mut self, index: usize) {
        if !self.live() {
            return;
        }
        let Some(queue) = self.queues.get(index) else {
            return;
        };
        if !queue.ready() || !queue.is_valid(&self.mem) {
            return;
        }
        let used = self
            .device
            .process_queue(&self.mem, index, &mut self.queues);
        if used && self.needs_notification(index) {
            self.interrupt.signal(super::INT_USED_RING);
        }
    }

    fn live(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && self.status & STATUS_FAILED == 0
    }

    /// The device's host file to poll for input, while the driver is live
    /// and the device wants input.
    pub fn host_fd(&self) -> Option<std::os::fd::RawFd> {
        if !self.live() {
            return None;
        }
        self.device.host_fd()
    }

    /// The device's host file has input: let the device take it, then
    /// interrupt if the driver wants to hear about it.
    pub fn host_input(&mut self) {
        if !self.live() {
            return;
        }
        let changed = self.device.process_host_input(&self.mem, &mut self.queues);
        if let Some(index) = changed.filter(|&i| i < self.queues.len()) {
            if self.needs_notification(index) {
                self.interrupt.signal(super::INT_USED_RING);
            }
        }
    }

    fn needs_notification(&mut self, index: usize) -> bool {
        // A used ring the guest broke (unreadable event index) still gets
        // its interrupt: the driver then finds out for itself.
        self.queues[index]
            .needs_notification(&self.mem)
            .unwrap_or(true)
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Queue layout may change only while the driver sets the device up.
    fn queue_setup_allowed(&self) -> bool {
        self.status & STATUS_FEATURES_OK != 0 && self.status & STATUS_DRIVER_OK == 0
    }

    fn reset(&mut self) {
        for queue in &mut self.queues {
            queue.reset();
        }
        self.device.reset();
        self.interrupt.clear();
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.status = 0;
    }

    fn set_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let mut value = value;
        // FEATURES_OK sticks only if the driver took nothing we did not
        // offer and speaks virtio 1.x.
        if value & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            let offered = self.device.features();
            let acceptable =
                self.driver_features & !offered == 0 && self.driver_features & F_VERSION_1 != 0;
            if acceptable {
                let event_idx = self.driver_features & F_EVENT_IDX != 0;
                for queue in &mut self.queues {
                    queue.set_event_idx(event_idx);
                }
            } else {
                value &= !STATUS_FEATURES_OK;
            }
        }
        // DRIVER_OK without FEATURES_OK is a driver bug: refuse to go live.
        if value & STATUS_DRIVER_OK != 0 && value & STATUS_FEATURES_OK == 0 {
            value &= !STATUS_DRIVER_OK;
        }
        self.status = value;
    }

    fn read_u32(&self, offset: u64) -> u32 {
        let queue = self.queues.get(self.queue_sel as usize);
        match offset {
            REG_MAGIC => MAGIC,
            REG_VERSION => VERSION,
            REG_DEVICE_ID => self.device.device_type(),
            REG_VENDOR_ID => VENDOR_ID,
            REG_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device.features() as u32,
                1 => (self.device.features() >> 32) as u32,
                _ => 0,
            },
            REG_QUEUE_NUM_MAX => queue.map_or(0, |q| q.max_size() as u32),
            REG_QUEUE_READY => queue.map_or(0, |q| q.ready() as u32),
            REG_INTERRUPT_STATUS => self.interrupt.status(),
            REG_STATUS => self.status,
            // The configuration never changes behind the driver's back.
            REG_CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_u32(&mut self, offset: u64, value: u32) {
        let setup = self.queue_setup_allowed();
        match offset {
            REG_DEVICE_FEATURES_SEL => self.device_features_sel = value,
            // Features are fixed once the driver set FEATURES_OK.
            REG_DRIVER_FEATURES if self.status & STATUS_FEATURES_OK == 0 => {
                match self.driver_features_sel {
                    0 => {
                        self.driver_features = (self.driver_features & !0xffff_ffff) | value as u64
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | ((value as u64) << 32)
                    }
                    _ => {}
                }
            }
            REG_DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            REG_QUEUE_SEL => self.queue_sel = value,
            REG_QUEUE_NOTIFY => self.notify(value as usize),
            REG_INTERRUPT_ACK => self.interrupt.ack(value),
            REG_STATUS => self.set_status(value),
            _ if setup => {
                let Some(queue) = self.selected_queue() else {
                    return;
                };
                match offset {
                    // The queue crate ignores sizes that are not a power of
                    // two or exceed the maximum; is_valid() then refuses it.
                    REG_QUEUE_NUM => queue.set_size(value as u16),
                    REG_QUEUE_READY => queue.set_ready(value == 1),
                    REG_QUEUE_DESC_LOW => queue.set_desc_table_address(Some(value), None),
                    REG_QUEUE_DESC_HIGH => queue.set_desc_table_address(None, Some(value)),
                    REG_QUEUE_DRIVER_LOW => queue.set_avail_ring_address(Some(value), None),
                    REG_QUEUE_DRIVER_HIGH => queue.set_avail_ring_address(None, Some(value)),
                    REG_QUEUE_DEVICE_LOW => queue.set_used_ring_address(Some(value), None),
                    REG_QUEUE_DEVICE_HIGH => queue.set_used_ring_address(None, Some(value)),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

impl MmioDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= REG_CONFIG {
            self.device.read_config(offset - REG_CONFIG, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            data.copy_from_slice(&self.read_u32(offset).to_le_bytes());
        } else {
            // The registers are 32 bits wide and accessed as such.
            data.fill(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= REG_CONFIG {
            self.device.write_config(offset - REG_CONFIG, data);
        } else if data.len() == 4 && offset.is_multiple_of(4) {
            let value = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            self.write_u32(offset, value);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    /// A device that counts notifications and marks every chain used.
    pub(crate) struct Echo {
        pub served: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl VirtioDevice for Echo {
        fn device_type(&self) -> u32 {
            0x42
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn features(&self) -> u64 {
            F_VERSION_1 | 1 << 5
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (offset as usize + i) as u8;
            }
        }
        fn process_queue(
            &mut self,
            mem: &GuestMemoryMmap,
            index: usize,
            queues: &mut [Queue],
        ) -> bool {
            let queue = &mut queues[index];
            let mut used = false;
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                queue.add_used(mem, chain.head_index(), 0).unwrap();
                self.served
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                used = true;
            }
            used
        }
    }

    pub(crate) fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn transport() -> (
        MmioTransport,
        Arc<Interrupt>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let served = Arc::default();
        let irq = Arc::new(Interrupt::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()));
        let device = Echo {
            served: Arc::clone(&served),
        };
        (
            MmioTransport::new(Box::new(device), memory(), irq.clone()),
            irq,
            served,
        )
    }

    fn r(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        t.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn w(t: &mut MmioTransport, offset: u64, value: u32) {
        t.write(offset, &value.to_le_bytes());
    }

    /// The Linux driver's sequence, up to DRIVER_OK, with queue 0 at 0x1000.
    pub(crate) fn bring_up(t: &mut MmioTransport, features: u64) {
        w(t, REG_STATUS, STATUS_ACKNOWLEDGE);
        w(t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(t, REG_DRIVER_FEATURES_SEL, 0);
        w(t, REG_DRIVER_FEATURES, features as u32);
        w(t, REG_DRIVER_FEATURES_SEL, 1);
        w(t, REG_DRIVER_FEATURES, (features >> 32) as u32);
        w(
            t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        w(t, REG_QUEUE_SEL, 0);
        w(t, REG_QUEUE_NUM, 16);
        w(t, REG_QUEUE_DESC_LOW, 0x1000);
        w(t, REG_QUEUE_DRIVER_LOW, 0x2000);
        w(t, REG_QUEUE_DEVICE_LOW, 0x3000);
        w(t, REG_QUEUE_READY, 1);
        w(
            t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK,
        );
    }

    #[test]
    fn identity_registers() {
        let (mut t, _, _) = transport();
        assert_eq!(r(&mut t, REG_MAGIC), MAGIC);
        assert_eq!(r(&mut t, REG_VERSION), 2);
        assert_eq!(r(&mut t, REG_DEVICE_ID), 0x42);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1);
        w(&mut t, REG_DEVICE_FEATURES_SEL, 0);
        assert_eq!(r(&mut t, REG_DEVICE_FEATURES), 1 << 5);
        w(&mut t, REG_QUEUE_SEL, 1);
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 8);
        w(&mut t, REG_QUEUE_SEL, 7);
        assert_eq!(r(&mut t, REG_QUEUE_NUM_MAX), 0, "no such queue");
        let mut config = [0u8; 3];
        t.read(REG_CONFIG + 4, &mut config);
        assert_eq!(config, [4, 5, 6]);
    }

    #[test]
    fn features_not_offered_or_legacy_drivers_are_refused() {
        let (mut t, _, _) = transport();
        bring_up(&mut t, F_VERSION_1 | 1 << 7);
        assert_eq!(t.status() & (STATUS_FEATURES_OK | STATUS_DRIVER_OK), 0);
        w(&mut t, REG_STATUS, 0);
        bring_up(&mut t, 1 << 5);
        assert_eq!(t.status() & STATUS_FEATURES_OK, 0, "no VERSION_1");
        w(&mut t, REG_STATUS, 0);
        bring_up(&mut t, F_VERSION_1 | 1 << 5);
        assert_ne!(t.status() & STATUS_DRIVER_OK, 0);
    }

    #[test]
    fn notify_serves_the_queue_and_raises_the_interrupt() {
        let (mut t, irq, served) = transport();
        // Before DRIVER_OK a notification does nothing.
        w(&mut t, REG_QUEUE_NOTIFY, 0);
        bring_up(&mut t, F_VERSION_1);
        let mem = t.mem.clone();
        use vm_memory::Bytes;
        // One descriptor at index 0, offered in the available ring.
        mem.write_obj(0x5000u64, GuestAddress(0x1000)).unwrap();
        mem.write_obj(16u32, GuestAddress(0x1008)).unwrap();
        mem.write_obj(0u16, GuestAddress(0x2004)).unwrap();
        mem.write_obj(1u16, GuestAddress(0x2002)).unwrap();
        w(&mut t, REG_QUEUE_NOTIFY, 0);
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(r(&mut t, REG_INTERRUPT_STATUS), 1);
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x3002)).unwrap(), 1);
        w(&mut t, REG_INTERRUPT_ACK, 1);
        assert_eq!(irq.status(), 0);
        // Queues that do not exist or are not ready are ignored.
        w(&mut t, REG_QUEUE_NOTIFY, 1);
        w(&mut t, REG_QUEUE_NOTIFY, 99);
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn queues_cannot_move_while_live_and_reset_clears() {
        let (mut t, _, _) = transport();
        bring_up(&mut t, F_VERSION_1);
        w(&mut t, REG_QUEUE_DESC_LOW, 0x8000);
        assert_eq!(t.queues[0].desc_table(), 0x1000);
        w(&mut t, REG_STATUS, 0);
        assert_eq!(t.status(), 0);
        assert!(!t.queues[0].ready());
    }

    #[test]
    fn odd_sized_register_accesses_are_harmless() {
        let (mut t, _, _) = transport();
        let mut byte = [0u8; 1];
        t.read(REG_MAGIC, &mut byte);
        assert_eq!(byte, [0]);
        t.write(REG_STATUS + 1, &[0xff, 0xff]);
        assert_eq!(t.status(), 0);
        let mut big = [0u8; 8];
        t.read(REG_QUEUE_NUM_MAX + 2, &mut big);
        t.write(0xfff, &[1]);
    }

    #[test]
    fn a_queue_outside_guest_memory_is_never_served() {
        let (mut t, _, served) = transport();
        w(&mut t, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        w(&mut t, REG_DRIVER_FEATURES_SEL, 1);
        w(&mut t, REG_DRIVER_FEATURES, 1);
        w(
            &mut t,
            REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK,
        );
        w(&mut t, REG_QUEUE_NUM, 16);
        w(&mut t, REG_QUEUE_DESC_LOW, 0xffff_f000);
        w(&mut t, REG_QUEUE_DESC_HIGH, 0xffff_ffff);
        w(&mut t, REG_QUEUE_DRIVER_LOW, 0x2000);
        w(&mut t, REG_QUEUE_DEVICE_LOW, 0x3000);
        w(&mut t, REG_QUEUE_READY, 1);
        w(&mut t, REG_STATUS, 0xf);
        w(&mut t, REG_QUEUE_NOTIFY, 0);
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
