//! virtio-net backed by a tap (or anything that reads and writes whole
//! Ethernet frames on one file descriptor). Queue 0 receives (host → guest),
//! queue 1 transmits. No offloads are offered, so every frame is at most the
//! MTU plus its Ethernet header and the virtio-net header carries nothing but
//! `num_buffers`; the tap is opened without a vnet header (see
//! [`crate::hostnet::open_tap`]).
//!
//! The guest is not trusted: a transmit chain with a device-writable buffer,
//! an unreadable address or more bytes than a frame can have is given back
//! unsent; a receive chain that is read-only, unwritable or too small for the
//! frame at hand is given back empty and that frame is dropped (as a NIC drops
//! what it has no room for). Neither ends the VMM.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::{VirtioDevice, F_VERSION_1, TYPE_NET};

const QUEUE_SIZE: u16 = 256;
pub const RX: usize = 0;
pub const TX: usize = 1;

// Feature bits (virtio 1.2, 5.1.3).
const F_MTU: u64 = 1 << 3;
const F_MAC: u64 = 1 << 5;
const F_STATUS: u64 = 1 << 16;
const S_LINK_UP: u16 = 1;

/// `struct virtio_net_hdr_v1`: 12 bytes in front of every frame (virtio 1.x
/// always has `num_buffers`).
pub const HEADER_LEN: usize = 12;
/// The largest Ethernet frame the device moves: the largest MTU it offers
/// plus the Ethernet header and a VLAN tag.
pub const MAX_MTU: u16 = 9000;
const MAX_FRAME: usize = MAX_MTU as usize + 18;
/// At most this many frames per pass, so a flood cannot keep the device's
/// lock (and the vCPUs touching its registers) waiting.
const FRAMES_PER_PASS: usize = 64;

pub struct Net {
    tap: File,
    config: [u8; 12],
    queue_sizes: [u16; 2],
    /// A header and frame read from the tap that found no receive buffer yet.
    rx_frame: Vec<u8>,
    rx_pending: Option<usize>,
    tx_frame: Vec<u8>,
    /// The tap failed (not just "nothing to read"): stop listening to it.
    tap_broken: bool,
    /// Frames dropped: no room in the guest's buffers, or bad chains.
    pub dropped: u64,
}

impl Net {
    /// `tap` must be non-blocking and move one frame per read and write.
    pub fn new(tap: File, mac: [u8; 6], mtu: u16) -> Net {
        let mtu = mtu.clamp(68, MAX_MTU);
        let mut config = [0u8; 12];
        config[0..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&S_LINK_UP.to_le_bytes());
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&mtu.to_le_bytes());
        Net {
            tap,
            config,
            queue_sizes: [QUEUE_SIZE, QUEUE_SIZE],
            rx_frame: vec![0; HEADER_LEN + MAX_FRAME],
            rx_pending: None,
            tx_frame: vec![0; HEADER_LEN + MAX_FRAME],
            tap_broken: false,
            dropped: 0,
        }
    }

    /// Moves frames from the tap into receive buffers while both last.
    fn receive(&mut self, mem: &GuestMemoryMmap, queue: &mut Queue) -> bool {
        let mut used = false;
        for _ in 0..FRAMES_PER_PASS {
            if self.rx_pending.is_none() && !self.read_frame() {
                break;
            }
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break; // the frame waits for the guest's next buffers
            };
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.collect();
            let len = self.rx_pending.take().unwrap_or(0);
            let written = match self.deliver(mem, &descs, &self.rx_frame[..len]) {
                Some(n) => n,
                None => {
                    self.dropped += 1;
                    0
                }
            };
            if queue.add_used(mem, head, written).is_err() {
                return used;
            }
            used = true;
        }
        used
    }

    /// Reads one frame from the tap behind a fresh header; false when there is none.
    fn read_frame(&mut self) -> bool {
        if self.tap_broken {
            return false;
        }
        match self.tap.read(&mut self.rx_frame[HEADER_LEN..]) {
            Ok(0) => {
                self.tap_broken = true;
                false
            }
            Ok(n) => {
                self.rx_frame[..HEADER_LEN].fill(0);
                // num_buffers: the frame fits in one chain.
                self.rx_frame[10] = 1;
                self.rx_pending = Some(HEADER_LEN + n);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => false,
            Err(e) => {
                tracing::warn!("virtio-net: reading the tap: {e}");
                self.tap_broken = true;
                false
            }
        }
    }

    /// Copies `frame` into the chain's buffers, which must all be
    /// device-writable and hold it whole. The bytes written, or `None`.
    fn deliver(&self, mem: &GuestMemoryMmap, descs: &[Descriptor], frame: &[u8]) -> Option<u32> {
        if !complete(descs) || descs.iter().any(|d| !d.is_write_only()) {
            return None;
        }
        let room = descs
            .iter()
            .try_fold(0usize, |sum, d| sum.checked_add(d.len() as usize))?;
        if room < frame.len() {
            return None;
        }
        let mut rest = frame;
        for d in descs {
            if rest.is_empty() {
                break;
            }
            let n = rest.len().min(d.len() as usize);
            mem.write_slice(&rest[..n], d.addr()).ok()?;
            rest = &rest[n..];
        }
        u32::try_from(frame.len()).ok()
    }

    /// Sends every chain the guest offered; bad ones are given back unsent.
    fn transmit(&mut self, mem: &GuestMemoryMmap, queue: &mut Queue) -> bool {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<Descriptor> = chain.collect();
            match self.gather(mem, &descs) {
                Some(len) if len > HEADER_LEN => {
                    // A tap takes a frame whole or not at all.
                    match self.tap.write(&self.tx_frame[HEADER_LEN..len]) {
                        Ok(n) if n == len - HEADER_LEN => {}
                        Ok(_) => self.dropped += 1,
                        // A full or downed tap drops the frame, as a wire would.
                        Err(e) => {
                            tracing::debug!("virtio-net: writing the tap: {e}");
                            self.dropped += 1;
                        }
                    }
                }
                _ => self.dropped += 1,
            }
            if queue.add_used(mem, head, 0).is_err() {
                return used;
            }
            used = true;
        }
        used
    }

    /// Collects a transmit chain (header and frame) into `tx_frame`.
    fn gather(&mut self, mem: &GuestMemoryMmap, descs: &[Descriptor]) -> Option<usize> {
        if !complete(descs) {
            return None;
        }
        let mut len = 0usize;
        for d in descs {
            if d.is_write_only() {
                return None;
            }
            let end = len.checked_add(d.len() as usize)?;
            let buf = self.tx_frame.get_mut(len..end)?;
            mem.read_slice(buf, d.addr()).ok()?;
            len = end;
        }
        Some(len)
    }
}

/// False for a chain the queue stopped following (a loop, a next index past
/// the table): its last descriptor still points further.
fn complete(descs: &[Descriptor]) -> bool {
    descs.last().is_some_and(|d| !d.has_next())
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        F_VERSION_1 | F_MAC | F_MTU | F_STATUS
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|at| self.config.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    fn process_queue(&mut self, mem: &GuestMemoryMmap, index: usize, queues: &mut [Queue]) -> bool {
        let Some(queue) = queues.get_mut(index) else {
            return false;
        };
        match index {
            RX => self.receive(mem, queue),
            TX => self.transmit(mem, queue),
            _ => false,
        }
    }

    fn host_fd(&self) -> Option<RawFd> {
        // With a frame waiting for buffers, the tap waits too (the guest's
        // next receive notification resumes it).
        (!self.tap_broken && self.rx_pending.is_none()).then(|| self.tap.as_raw_fd())
    }

    fn process_host_input(&mut self, mem: &GuestMemoryMmap, queues: &mut [Queue]) -> Option<usize> {
        let queue = queues.get_mut(RX)?;
        self.receive(mem, queue).then_some(RX)
    }

    fn reset(&mut self) {
        self.rx_pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;
    use vm_memory::GuestAddress;

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    /// Queue 0 (rx) tables at 0x1000.., queue 1 (tx) at 0x4000..
    const RINGS: [(u64, u64, u64); 2] = [(0x1000, 0x2000, 0x3000), (0x4000, 0x5000, 0x6000)];

    struct Rig {
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        net: Net,
        /// The other end of the "tap": what the host network sees.
        wire: File,
        avail: [u16; 2],
    }

    /// A datagram socket pair stands in for the tap: one frame per read and write.
    fn pair() -> (File, File) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two fds, which become ours.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both fds are fresh and owned by nobody else.
        unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
    }

    pub(super) fn queue(rings: (u64, u64, u64), mem: &GuestMemoryMmap) -> Queue {
        let mut q = Queue::new(16).unwrap();
        q.set_size(16);
        q.set_desc_table_address(Some(rings.0 as u32), Some(0));
        q.set_avail_ring_address(Some(rings.1 as u32), Some(0));
        q.set_used_ring_address(Some(rings.2 as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(mem));
        q
    }

    fn rig() -> Rig {
        let (tap, wire) = pair();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let queues = RINGS.iter().map(|r| queue(*r, &mem)).collect();
        Rig {
            net: Net::new(tap, [2, 0, 0, 0, 0, 1], 1400),
            mem,
            queues,
            wire,
            avail: [0; 2],
        }
    }

    impl Rig {
        fn desc(&self, q: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let at = RINGS[q].0 + index as u64 * 16;
            self.mem.write_obj(addr, GuestAddress(at)).unwrap();
            self.mem.write_obj(len, GuestAddress(at + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at + 14)).unwrap();
        }

        /// Offers the chain at `head` on queue `q` (without serving it).
        fn offer(&mut self, q: usize, head: u16) {
            let avail = RINGS[q].1;
            let slot = avail + 4 + (self.avail[q] % 16) as u64 * 2;
            self.mem.write_obj(head, GuestAddress(slot)).unwrap();
            self.avail[q] = self.avail[q].wrapping_add(1);
            self.mem
                .write_obj(self.avail[q], GuestAddress(avail + 2))
                .unwrap();
        }

        fn used(&self, q: usize) -> (u16, u32, u32) {
            let used = RINGS[q].2;
            let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
            let entry = used + 4 + (idx.wrapping_sub(1) % 16) as u64 * 8;
            (
                idx,
                self.mem.read_obj(GuestAddress(entry)).unwrap(),
                self.mem.read_obj(GuestAddress(entry + 4)).unwrap(),
            )
        }

        fn send(&mut self, head: u16) -> bool {
            self.offer(TX, head);
            self.net.process_queue(&self.mem, TX, &mut self.queues)
        }

        fn wire_frame(&mut self) -> Option<Vec<u8>> {
            let mut buf = vec![0u8; 70_000];
            match self.wire.read(&mut buf) {
                Ok(n) => Some(buf[..n].to_vec()),
                Err(_) => None,
            }
        }

        fn host_input(&mut self) -> Option<usize> {
            self.net.process_host_input(&self.mem, &mut self.queues)
        }
    }

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[..6].copy_from_slice(&[0xff; 6]);
        f
    }

    #[test]
    fn config_space_has_mac_link_and_mtu() {
        let r = rig();
        let mut mac = [0u8; 6];
        r.net.read_config(0, &mut mac);
        assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
        let mut rest = [0u8; 6];
        r.net.read_config(6, &mut rest);
        assert_eq!(u16::from_le_bytes([rest[0], rest[1]]), S_LINK_UP);
        assert_eq!(u16::from_le_bytes([rest[4], rest[5]]), 1400);
        let mut past = [7u8; 4];
        r.net.read_config(u64::MAX, &mut past);
        assert_eq!(past, [0; 4]);
        assert_eq!(
            r.net.features() & (F_MAC | F_MTU | F_VERSION_1),
            F_MAC | F_MTU | F_VERSION_1
        );
    }

    #[test]
    fn transmits_frames_without_their_header() {
        let mut r = rig();
        let f = frame(100, 0xab);
        r.mem
            .write_slice(&[9; HEADER_LEN], GuestAddress(0x10000))
            .unwrap();
        r.mem.write_slice(&f[..40], GuestAddress(0x20000)).unwrap();
        r.mem.write_slice(&f[40..], GuestAddress(0x30000)).unwrap();
        r.desc(TX, 0, 0x10000, HEADER_LEN as u32, NEXT, 1);
        r.desc(TX, 1, 0x20000, 40, NEXT, 2);
        r.desc(TX, 2, 0x30000, 60, 0, 0);
        assert!(r.send(0));
        assert_eq!(r.used(TX), (1, 0, 0));
        assert_eq!(r.wire_frame().unwrap(), f);
    }

    #[test]
    fn receives_frames_behind_a_header() {
        let mut r = rig();
        // Nothing offered yet: the frame waits, and the tap is not polled.
        let f = frame(300, 0x5a);
        r.wire.write_all(&f).unwrap();
        assert_eq!(r.host_input(), None);
        assert!(r.net.host_fd().is_none(), "a frame is waiting for buffers");
        // Two buffers: the header and 200 bytes, then the rest.
        r.mem
            .write_slice(&[0xee; 64], GuestAddress(0x10000))
            .unwrap();
        r.desc(RX, 0, 0x10000, 212, NEXT | WRITE, 1);
        r.desc(RX, 1, 0x20000, 2048, WRITE, 0);
        r.offer(RX, 0);
        assert!(r.net.process_queue(&r.mem, RX, &mut r.queues));
        assert_eq!(r.used(RX), (1, 0, (HEADER_LEN + 300) as u32));
        let mut got = vec![0u8; HEADER_LEN + 300];
        r.mem
            .read_slice(&mut got[..212], GuestAddress(0x10000))
            .unwrap();
        r.mem
            .read_slice(&mut got[212..], GuestAddress(0x20000))
            .unwrap();
        let mut header = [0u8; HEADER_LEN];
        header[10] = 1;
        assert_eq!(got[..HEADER_LEN], header);
        assert_eq!(got[HEADER_LEN..], f[..]);
        assert!(r.net.host_fd().is_some());
        // The next frame goes straight in when a buffer is there.
        r.offer(RX, 1);
        r.wire.write_all(&frame(60, 1)).unwrap();
        assert_eq!(r.host_input(), Some(RX));
        assert_eq!(r.used(RX), (2, 1, (HEADER_LEN + 60) as u32));
    }

    // --- hostile queues ------------------------------------------------------

    #[test]
    fn bad_transmit_chains_are_given_back_unsent() {
        let mut r = rig();
        // A device-writable buffer in a transmit chain.
        r.desc(TX, 0, 0x10000, 64, NEXT | WRITE, 1);
        r.desc(TX, 1, 0x20000, 64, 0, 0);
        assert!(r.send(0));
        // A buffer outside guest memory, and one straddling its end.
        r.desc(TX, 0, 0xffff_ffff_0000, 64, 0, 0);
        assert!(r.send(0));
        r.desc(TX, 0, (1 << 20) - 16, 64, 0, 0);
        assert!(r.send(0));
        // More than a frame can be (4 GiB claimed).
        r.desc(TX, 0, 0x10000, u32::MAX, 0, 0);
        assert!(r.send(0));
        r.desc(
            TX,
            0,
            0x10000,
            MAX_FRAME as u32 + HEADER_LEN as u32 + 1,
            0,
            0,
        );
        assert!(r.send(0));
        // A header and nothing else.
        r.desc(TX, 0, 0x10000, HEADER_LEN as u32, 0, 0);
        assert!(r.send(0));
        // A loop, and a next index past the table.
        r.desc(TX, 0, 0x10000, 64, NEXT, 1);
        r.desc(TX, 1, 0x20000, 64, NEXT, 0);
        assert!(r.send(0));
        r.desc(TX, 1, 0x20000, 64, NEXT, 999);
        assert!(r.send(0));
        assert_eq!(r.used(TX).0, 8, "every chain comes back");
        assert_eq!(r.wire_frame(), None, "nothing reached the wire");
        // A good frame still goes out.
        let f = frame(64, 3);
        r.mem
            .write_slice(&f, GuestAddress(0x20000 + HEADER_LEN as u64))
            .unwrap();
        r.desc(TX, 0, 0x20000, (HEADER_LEN + 64) as u32, 0, 0);
        assert!(r.send(0));
        assert_eq!(r.wire_frame().unwrap(), f);
    }

    #[test]
    fn bad_receive_chains_drop_the_frame_not_the_vmm() {
        let mut r = rig();
        let cases: [&[(u64, u32, u16)]; 5] = [
            // read-only buffer
            &[(0x10000, 2048, 0)],
            // too small for header and frame
            &[(0x10000, 100, WRITE)],
            // outside guest memory
            &[(0xffff_ffff_0000, 2048, WRITE)],
            // straddling its end
            &[((1 << 20) - 100, 2048, WRITE)],
            // writable, then read-only
            &[(0x10000, 100, WRITE), (0x20000, 2048, 0)],
        ];
        for (i, chain) in cases.iter().enumerate() {
            for (j, (addr, len, flags)) in chain.iter().enumerate() {
                let next = if j + 1 < chain.len() { NEXT } else { 0 };
                r.desc(RX, j as u16, *addr, *len, flags | next, j as u16 + 1);
            }
            r.wire.write_all(&frame(500, i as u8)).unwrap();
            r.offer(RX, 0);
            assert_eq!(r.host_input(), Some(RX), "case {i}");
            assert_eq!(r.used(RX), (i as u16 + 1, 0, 0), "case {i}");
        }
        assert_eq!(r.net.dropped, 5);
        // A loop in a receive chain ends that chain.
        r.desc(RX, 0, 0x10000, 8, NEXT | WRITE, 1);
        r.desc(RX, 1, 0x20000, 8, NEXT | WRITE, 0);
        r.wire.write_all(&frame(500, 9)).unwrap();
        r.offer(RX, 0);
        r.host_input();
        // Good buffers receive again.
        r.desc(RX, 0, 0x10000, 2048, WRITE, 0);
        r.offer(RX, 0);
        r.wire.write_all(&frame(70, 7)).unwrap();
        assert_eq!(r.host_input(), Some(RX));
        assert_eq!(r.used(RX).2, (HEADER_LEN + 70) as u32);
    }

    #[test]
    fn a_closed_tap_is_not_polled_again() {
        let mut r = rig();
        let Rig { wire, .. } = &mut r;
        drop(std::mem::replace(wire, pair().0));
        assert_eq!(r.host_input(), None);
        assert!(r.net.host_fd().is_none());
    }

    #[test]
    fn a_flood_is_served_in_bounded_passes() {
        let mut r = rig();
        for i in 0..(FRAMES_PER_PASS + 10) {
            if r.wire.write_all(&frame(60, i as u8)).is_err() {
                break;
            }
        }
        // The avail index runs far ahead of the ring: never followed past it.
        r.desc(RX, 0, 0x10000, 2048, WRITE, 0);
        r.mem
            .write_obj(5000u16, GuestAddress(RINGS[RX].1 + 2))
            .unwrap();
        r.host_input();
        let (used, _, _) = r.used(RX);
        assert!(used as usize <= 16, "{used}");
    }

    // --- a real tap ----------------------------------------------------------

    /// In a namespace of its own: the "guest" asks for the tap's address with
    /// ARP through the transmit queue; the host kernel's reply arrives on
    /// the receive queue.
    #[test]
    fn a_real_tap_carries_arp_both_ways() {
        use crate::hostnet;
        let outcome = std::thread::spawn(|| -> Result<Option<Vec<u8>>, String> {
            // SAFETY: unshare moves only this thread into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Ok(None); // not root: nothing to test here
            }
            let Ok(tap) = hostnet::open_tap("tbxtest0") else {
                return Ok(None); // no /dev/net/tun
            };
            hostnet::set_ipv4("tbxtest0", std::net::Ipv4Addr::new(10, 9, 0, 1), 24)
                .map_err(|e| e.to_string())?;
            hostnet::set_up("tbxtest0", true).map_err(|e| e.to_string())?;
            let mut r = rig();
            r.net = Net::new(tap, [2, 0, 0, 0, 0, 2], 1500);
            // ARP who-has 10.9.0.1 tell 10.9.0.2, from 02:00:00:00:00:02.
            let guest_mac = [2u8, 0, 0, 0, 0, 2];
            let mut arp = vec![0xffu8; 6];
            arp.extend(guest_mac);
            arp.extend([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            arp.extend(guest_mac);
            arp.extend([10, 9, 0, 2]);
            arp.extend([0; 6]);
            arp.extend([10, 9, 0, 1]);
            let mut chain = vec![0u8; HEADER_LEN];
            chain.extend(&arp);
            r.mem.write_slice(&chain, GuestAddress(0x20000)).unwrap();
            r.desc(TX, 0, 0x20000, chain.len() as u32, 0, 0);
            r.desc(RX, 0, 0x40000, 2048, WRITE, 0);
            r.offer(RX, 0);
            if !r.send(0) {
                return Err("the transmit chain was not used".into());
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                let Some(fd) = r.net.host_fd() else { break };
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
                if r.host_input() == Some(RX) {
                    let (_, _, len) = r.used(RX);
                    let mut got = vec![0u8; len as usize];
                    r.mem.read_slice(&mut got, GuestAddress(0x40000)).unwrap();
                    // Skip what is not the ARP reply (IPv6 chatter).
                    if got.get(HEADER_LEN + 12..HEADER_LEN + 14) == Some(&[0x08, 0x06][..]) {
                        return Ok(Some(got));
                    }
                    r.offer(RX, 0);
                }
            }
            Err("no ARP reply from the host kernel within 5 s".into())
        })
        .join()
        .unwrap();
        let Some(got) = outcome.unwrap() else {
            eprintln!("skipped: needs root and /dev/net/tun");
            return;
        };
        let frame = &got[HEADER_LEN..];
        assert_eq!(&frame[..6], &[2, 0, 0, 0, 0, 2], "to the guest's MAC");
        assert_eq!(&frame[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&frame[28..32], &[10, 9, 0, 1], "for the tap's address");
    }

    // --- fuzz target: random queues ------------------------------------------

    /// Where the rig's buffers live, and the lengths its requests use.
    const DATA_AREAS: &[u64] = &[0x10000, 0x20000, 0x30000];
    const LENGTHS: &[u32] = &[0, 12, 64, 1514, 2048];

    fn descriptor() -> impl proptest::strategy::Strategy<Value = (u64, u32, u16, u16)> {
        crate::devices::virtio::fuzz::descriptor(DATA_AREAS, LENGTHS)
    }

    /// Whatever both queues hold, the device neither panics nor spins,
    /// gives back at most what was offered, and puts on the wire only
    /// frames no larger than a frame can be.
    #[test]
    fn random_queues_never_take_the_vmm_down() {
        let inputs = (
            proptest::collection::vec(proptest::collection::vec(descriptor(), 16), 2),
            proptest::collection::vec(proptest::prelude::any::<u16>(), 16),
            proptest::collection::vec(proptest::prelude::any::<u16>(), 2),
            proptest::collection::vec(1usize..3000, 0..6),
        );
        crate::devices::virtio::fuzz::fuzz(
            "virtio-net random queues",
            200,
            inputs,
            |(tables, heads, avail, frames)| {
                let mut r = rig();
                for (q, table) in tables.iter().enumerate() {
                    for (i, (addr, len, flags, next)) in table.iter().enumerate() {
                        r.desc(q, i as u16, *addr, *len, *flags, *next);
                    }
                    for (i, head) in heads.iter().enumerate() {
                        r.mem
                            .write_obj(*head, GuestAddress(RINGS[q].1 + 4 + i as u64 * 2))
                            .unwrap();
                    }
                    r.mem
                        .write_obj(avail[q], GuestAddress(RINGS[q].1 + 2))
                        .unwrap();
                }
                for (i, len) in frames.iter().enumerate() {
                    let _ = r.wire.write_all(&frame(*len.max(&14), i as u8));
                }
                r.net.process_queue(&r.mem, TX, &mut r.queues);
                r.host_input();
                r.net.process_queue(&r.mem, RX, &mut r.queues);
                for q in [RX, TX] {
                    let used: u16 = r.mem.read_obj(GuestAddress(RINGS[q].2 + 2)).unwrap();
                    proptest::prop_assert!(
                        used <= avail[q].min(16),
                        "queue {} used {} of {}",
                        q,
                        used,
                        avail[q]
                    );
                }
                while let Some(f) = r.wire_frame() {
                    proptest::prop_assert!(f.len() <= MAX_FRAME);
                }
                Ok(())
            },
        );
    }
}
