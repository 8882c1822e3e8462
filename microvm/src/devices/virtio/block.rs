//! virtio-blk backed by a file: read, write, flush, get-id, read-only disks,
//! and discard on writable ones (a hole punched in the file, so a guest's
//! `fstrim` or `-o discard` gives the host its space back). Requests are
//! served on the device's I/O thread ([`super::worker`]).
//!
//! A request is a descriptor chain: a 16-byte header the device reads (type,
//! sector), data buffers, and one status byte the device writes. Anything
//! else (too short, wrong directions, out of range, past the disk's end, not
//! whole sectors) ends with `IOERR`; a chain without a writable status byte
//! is given back unused.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestMemoryBackend, GuestMemoryMmap};

use super::{VirtioDevice, F_EVENT_IDX, F_VERSION_1, TYPE_BLOCK};

pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZE: u16 = 256;

// Feature bits (virtio 1.2, 5.2.3).
const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_DISCARD: u64 = 1 << 13;
/// Indirect descriptor tables (virtio 1.2, 2.7.5.3): a request of 254 data
/// pages takes one ring slot, not 256, so the guest keeps several in flight;
/// without them a 1 MiB readahead filled the whole ring and sequential reads
/// went one request at a time (about half of QEMU's `dd` in bench vm-io).
const F_INDIRECT_DESC: u64 = 1 << 28;

// Request types and status values (5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const T_DISCARD: u32 = 11;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

const HEADER_LEN: u32 = 16;
/// One discard segment: sector (u64), sector count (u32), flags (u32).
const SEGMENT_LEN: u32 = 16;
/// Discard granularity in sectors (4 KiB: the host file system's block).
const DISCARD_ALIGNMENT: u32 = 8;
/// The most sectors one discard request covers (1 GiB).
const MAX_DISCARD_SECTORS: u32 = 1 << 21;
/// virtio_blk_config up to the write-zeroes fields (5.2.4).
const CONFIG_LEN: usize = 60;
/// The serial number GET_ID returns: at most 20 bytes.
pub const ID_LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("disk {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("disk {0}: its size is not a whole number of 512-byte sectors")]
    NotSectors(std::path::PathBuf),
}

pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    config: [u8; CONFIG_LEN],
    queue_sizes: [u16; 1],
}

impl Block {
    /// Opens `path` as a disk; `id` (up to 20 bytes) is what GET_ID returns
    /// (`/sys/block/vdX/serial` in the guest).
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Block, BlockError> {
        let open = |source| BlockError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open)?;
        let len = file.metadata().map_err(open)?.len();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::NotSectors(path.to_path_buf()));
        }
        Ok(Block::new(file, len / SECTOR_SIZE, read_only, id))
    }

    fn new(file: File, sectors: u64, read_only: bool, id: &str) -> Block {
        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&sectors.to_le_bytes());
        // seg_max: every descriptor but the header and the status.
        config[12..16].copy_from_slice(&(QUEUE_SIZE as u32 - 2).to_le_bytes());
        // max_discard_sectors, max_discard_seg, discard_sector_alignment
        config[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        config[40..44].copy_from_slice(&1u32.to_le_bytes());
        config[44..48].copy_from_slice(&DISCARD_ALIGNMENT.to_le_bytes());
        let mut id_bytes = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Block {
            file,
            sectors,
            read_only,
            id: id_bytes,
            config,
            queue_sizes: [QUEUE_SIZE],
        }
    }

    /// Serves one request; returns how many bytes it wrote into the
    /// driver's buffers (the used length).
    fn serve(&mut self, mem: &GuestMemoryMmap, descs: &[Descriptor]) -> u32 {
        let [header, data @ .., status] = descs else {
            return 0; // nowhere to put a status
        };
        if !status.is_write_only() || status.len() < 1 {
            return 0;
        }
        let (code, written) = self.execute(mem, header, data);
        match mem.write_obj(code, status.addr()) {
            Ok(()) => written.saturating_add(1),
            Err(_) => 0,
        }
    }

    /// The request's status and the data bytes written to the driver.
    fn execute(
        &mut self,
        mem: &GuestMemoryMmap,
        header: &Descriptor,
        data: &[Descriptor],
    ) -> (u8, u32) {
        if header.is_write_only() || header.len() < HEADER_LEN {
            return (S_IOERR, 0);
        }
        let Ok(raw) = mem.read_obj::<[u8; 16]>(header.addr()) else {
            return (S_IOERR, 0);
        };
        let kind = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes"));
        let sector = u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes"));
        match kind {
            T_IN => match self.transfer(mem, sector, data, true) {
                Some(n) => (S_OK, n),
                None => (S_IOERR, 0),
            },
            T_OUT if self.read_only => (S_IOERR, 0),
            T_OUT => match self.transfer(mem, sector, data, false) {
                Some(_) => (S_OK, 0),
                None => (S_IOERR, 0),
            },
            T_FLUSH if self.read_only => (S_OK, 0),
            T_FLUSH => match self.file.sync_data() {
                Ok(()) => (S_OK, 0),
                Err(_) => (S_IOERR, 0),
            },
            T_GET_ID => match data.first() {
                Some(d) if d.is_write_only() => {
                    let n = (d.len() as usize).min(ID_LEN);
                    match mem.write_slice(&self.id[..n], d.addr()) {
                        Ok(()) => (S_OK, n as u32),
                        Err(_) => (S_IOERR, 0),
                    }
                }
                _ => (S_IOERR, 0),
            },
            T_DISCARD if self.read_only => (S_IOERR, 0),
            T_DISCARD => (self.discard(mem, data), 0),
            _ => (S_UNSUPP, 0),
        }
    }

    /// Punches a hole for each segment (all must lie within the disk and be
    /// at most [`MAX_DISCARD_SECTORS`] long); the file keeps its size, and
    /// the guest reads zeros there afterwards.
    fn discard(&mut self, mem: &GuestMemoryMmap, data: &[Descriptor]) -> u8 {
        let [segments] = data else {
            return S_IOERR;
        };
        let len = segments.len();
        if segments.is_write_only() || len == 0 || !len.is_multiple_of(SEGMENT_LEN) {
            return S_IOERR;
        }
        for index in 0..len / SEGMENT_LEN {
            let Some(at) = segments.addr().checked_add(u64::from(index * SEGMENT_LEN)) else {
                return S_IOERR;
            };
            let Ok(raw) = mem.read_obj::<[u8; 16]>(at) else {
                return S_IOERR;
            };
            let sector = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
            let count = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"));
            let flags = u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes"));
            // Only the unmap flag exists for discard; anything else is a bad request.
            if flags & !1 != 0 || count > MAX_DISCARD_SECTORS {
                return S_UNSUPP;
            }
            let in_range = sector
                .checked_add(u64::from(count))
                .is_some_and(|end| end <= self.sectors);
            if !in_range {
                return S_IOERR;
            }
            if count == 0 {
                continue;
            }
            // SAFETY: fallocate on our own open file, with plain integers.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    (sector * SECTOR_SIZE) as libc::off_t,
                    (u64::from(count) * SECTOR_SIZE) as libc::off_t,
                )
            };
            if rc != 0 {
                // A file system without holes: the guest stops asking.
                return match std::io::Error::last_os_error().raw_os_error() {
                    Some(libc::EOPNOTSUPP) => S_UNSUPP,
                    _ => S_IOERR,
                };
            }
        }
        S_OK
    }

    /// Reads (`into_guest`) or writes whole sectors from `sector` through the
    /// data buffers, which must all point the right way. `None` on any
    /// violation or I/O error; the bytes moved otherwise.
    ///
    /// One `preadv`/`pwritev` moves the whole request: the data buffers
    /// become iovecs over guest memory (each checked to lie inside it). One
    /// system call per buffer made sequential reads cost a call per 4 KiB
    /// page, which held twinbox at about half of QEMU's `dd` throughput in
    /// the nested bench.
    fn transfer(
        &mut self,
        mem: &GuestMemoryMmap,
        sector: u64,
        data: &[Descriptor],
        into_guest: bool,
    ) -> Option<u32> {
        if data.is_empty() || data.iter().any(|d| d.is_write_only() != into_guest) {
            return None;
        }
        let total = data
            .iter()
            .try_fold(0u64, |sum, d| sum.checked_add(d.len() as u64))?;
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(total)?;
        if !total.is_multiple_of(SECTOR_SIZE) || end > self.sectors * SECTOR_SIZE {
            return None;
        }
        // Bounded by the disk's size (checked above) and the chain's length.
        let mut slices = Vec::with_capacity(data.len());
        for d in data {
            for slice in mem.get_slices(d.addr(), d.len() as usize) {
                slices.push(slice.ok()?);
            }
        }
        let guards: Vec<_> = slices.iter().map(|s| s.ptr_guard_mut()).collect();
        let mut iovecs: Vec<libc::iovec> = guards
            .iter()
            .filter(|g| g.len() > 0)
            .map(|g| libc::iovec {
                iov_base: g.as_ptr().cast(),
                iov_len: g.len(),
            })
            .collect();
        move_all(&self.file, &mut iovecs, start, into_guest).ok()?;
        u32::try_from(total).ok()
    }
}

/// The most iovecs one `preadv`/`pwritev` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Reads the file at `offset` into `iovecs` (`into_memory`), or writes them
/// there, until every byte has moved: short transfers continue where they
/// stopped, `EINTR` is retried, and end of file (the disk shrank under the
/// VMM) is an error. `iovecs` is consumed.
fn move_all(
    file: &File,
    iovecs: &mut [libc::iovec],
    mut offset: u64,
    into_memory: bool,
) -> std::io::Result<()> {
    let mut first = 0;
    while first < iovecs.len() {
        let batch = &iovecs[first..iovecs.len().min(first + IOV_MAX)];
        let at = libc::off_t::try_from(offset)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: each iovec covers memory inside a guest memory region that
        // outlives the call (its slice's guard is held by the caller); the
        // count is at most IOV_MAX.
        let n = unsafe {
            if into_memory {
                libc::preadv(file.as_raw_fd(), batch.as_ptr(), batch.len() as i32, at)
            } else {
                libc::pwritev(file.as_raw_fd(), batch.as_ptr(), batch.len() as i32, at)
            }
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut moved = n as usize;
        offset += moved as u64;
        while moved > 0 {
            let Some(iov) = iovecs.get_mut(first) else {
                break; // the kernel never moves more than was asked
            };
            if moved >= iov.iov_len {
                moved -= iov.iov_len;
                first += 1;
            } else {
                // SAFETY: stays inside the same iovec (moved < its length).
                iov.iov_base = unsafe { iov.iov_base.cast::<u8>().add(moved) }.cast();
                iov.iov_len -= moved;
                moved = 0;
            }
        }
    }
    Ok(())
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        let access = if self.read_only { F_RO } else { F_DISCARD };
        F_VERSION_1 | F_EVENT_IDX | F_INDIRECT_DESC | F_SEG_MAX | F_FLUSH | access
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
        let mut used = false;
        loop {
            // With EVENT_IDX, re-check after re-enabling notifications so a
            // request added meanwhile is not left waiting; a pass that finds
            // nothing ends it (a hostile avail index must not spin us).
            let mut served = false;
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                served = true;
                let head = chain.head_index();
                let descs: Vec<Descriptor> = chain.collect();
                let len = self.serve(mem, &descs);
                if queue.add_used(mem, head, len).is_err() {
                    return used;
                }
                used = true;
            }
            match queue.enable_notification(mem) {
                Ok(true) if served => continue,
                _ => break,
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use vm_memory::GuestAddress;

    const DESC: u64 = 0x1000;
    const AVAIL: u64 = 0x2000;
    const USED: u64 = 0x3000;
    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const INDIRECT: u16 = 4;

    struct Rig {
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        disk: Block,
        file: tempfile::NamedTempFile,
        avail_idx: u16,
    }

    /// A 64 KiB disk whose sector n is filled with byte n, and a queue of 16.
    fn rig(read_only: bool) -> Rig {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for n in 0..128u8 {
            file.write_all(&[n; 512]).unwrap();
        }
        let disk = Block::open(file.path(), read_only, "twinbox-disk-0").unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut q = Queue::new(16).unwrap();
        q.set_size(16);
        q.set_desc_table_address(Some(DESC as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(&mem));
        Rig {
            mem,
            queues: vec![q],
            disk,
            file,
            avail_idx: 0,
        }
    }

    impl Rig {
        fn desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let at = GuestAddress(DESC + index as u64 * 16);
            self.mem.write_obj(addr, at).unwrap();
            self.mem.write_obj(len, GuestAddress(at.0 + 8)).unwrap();
            self.mem.write_obj(flags, GuestAddress(at.0 + 12)).unwrap();
            self.mem.write_obj(next, GuestAddress(at.0 + 14)).unwrap();
        }

        fn header(&self, addr: u64, kind: u32, sector: u64) {
            self.mem.write_obj(kind, GuestAddress(addr)).unwrap();
            self.mem.write_obj(0u32, GuestAddress(addr + 4)).unwrap();
            self.mem.write_obj(sector, GuestAddress(addr + 8)).unwrap();
        }

        /// Offers the chain starting at `head`, lets the device serve it and
        /// returns the used entry (id, len).
        fn submit(&mut self, head: u16) -> (u32, u32) {
            let slot = AVAIL + 4 + (self.avail_idx % 16) as u64 * 2;
            self.mem.write_obj(head, GuestAddress(slot)).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.mem
                .write_obj(self.avail_idx, GuestAddress(AVAIL + 2))
                .unwrap();
            assert!(self.disk.process_queue(&self.mem, 0, &mut self.queues));
            let used_idx: u16 = self.mem.read_obj(GuestAddress(USED + 2)).unwrap();
            assert_eq!(used_idx, self.avail_idx, "every request is given back");
            let entry = USED + 4 + ((used_idx - 1) % 16) as u64 * 8;
            (
                self.mem.read_obj(GuestAddress(entry)).unwrap(),
                self.mem.read_obj(GuestAddress(entry + 4)).unwrap(),
            )
        }

        fn status(&self, addr: u64) -> u8 {
            self.mem.read_obj(GuestAddress(addr)).unwrap()
        }

        /// header at 0x10000, data at 0x20000, status at 0x30000.
        fn simple(&mut self, kind: u32, sector: u64, data_len: u32, data_flags: u16) -> (u32, u8) {
            self.header(0x10000, kind, sector);
            self.mem.write_obj(0xffu8, GuestAddress(0x30000)).unwrap();
            self.desc(0, 0x10000, 16, NEXT, 1);
            self.desc(1, 0x20000, data_len, NEXT | data_flags, 2);
            self.desc(2, 0x30000, 1, WRITE, 0);
            let (id, len) = self.submit(0);
            assert_eq!(id, 0);
            (len, self.status(0x30000))
        }
    }

    #[test]
    fn reads_sectors_into_the_guest() {
        let mut r = rig(false);
        let (len, status) = r.simple(T_IN, 3, 1024, WRITE);
        assert_eq!((len, status), (1025, S_OK));
        let mut got = [0u8; 1024];
        r.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
        assert!(got[..512].iter().all(|&b| b == 3));
        assert!(got[512..].iter().all(|&b| b == 4));
    }

    #[test]
    fn writes_and_flushes_to_the_file() {
        let mut r = rig(false);
        r.mem
            .write_slice(&[0xab; 512], GuestAddress(0x20000))
            .unwrap();
        let (len, status) = r.simple(T_OUT, 10, 512, 0);
        assert_eq!((len, status), (1, S_OK));
        r.header(0x10000, T_FLUSH, 0);
        r.desc(0, 0x10000, 16, NEXT, 2);
        r.desc(2, 0x30000, 1, WRITE, 0);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_OK);
        let mut content = Vec::new();
        r.file.reopen().unwrap().read_to_end(&mut content).unwrap();
        assert!(content[10 * 512..11 * 512].iter().all(|&b| b == 0xab));
        assert!(content[11 * 512..12 * 512].iter().all(|&b| b == 11));
    }

    /// A read and a write whose data is split over buffers of uneven sizes
    /// (each not a sector, together whole sectors) scattered in guest memory.
    #[test]
    fn requests_spread_over_many_buffers_move_as_one() {
        let mut r = rig(false);
        let buffers = [
            (0x20000u64, 100u32),
            (0x48000, 412),
            (0x21000, 1000),
            (0x60000, 24),
        ];
        let chain = |r: &mut Rig, kind: u32, sector: u64, flags: u16| {
            r.header(0x10000, kind, sector);
            r.mem.write_obj(0xffu8, GuestAddress(0x30000)).unwrap();
            r.desc(0, 0x10000, 16, NEXT, 1);
            for (i, (addr, len)) in buffers.iter().enumerate() {
                let i = i as u16 + 1;
                r.desc(i, *addr, *len, NEXT | flags, i + 1);
            }
            r.desc(buffers.len() as u16 + 1, 0x30000, 1, WRITE, 0);
            let (_, len) = r.submit(0);
            (len, r.status(0x30000))
        };
        // sectors 5..8 read: 1536 bytes, the first 100 into the first buffer...
        assert_eq!(chain(&mut r, T_IN, 5, WRITE), (1537, S_OK));
        let mut got = Vec::new();
        for (addr, len) in buffers {
            let mut part = vec![0u8; len as usize];
            r.mem.read_slice(&mut part, GuestAddress(addr)).unwrap();
            got.extend(part);
        }
        let want: Vec<u8> = (5..8u8).flat_map(|n| [n; 512]).collect();
        assert_eq!(got, want);
        // ...and written back two sectors further on, in the same order.
        assert_eq!(chain(&mut r, T_OUT, 20, 0), (1, S_OK));
        let mut content = Vec::new();
        r.file.reopen().unwrap().read_to_end(&mut content).unwrap();
        assert_eq!(&content[20 * 512..23 * 512], &want[..]);
        assert!(content[23 * 512..24 * 512].iter().all(|&b| b == 23));
    }

    /// A request in an indirect table (one ring slot for the whole chain)
    /// is served like a direct one; the feature is offered.
    #[test]
    fn indirect_tables_carry_whole_requests() {
        let mut r = rig(false);
        assert_ne!(r.disk.features() & F_INDIRECT_DESC, 0);
        r.header(0x10000, T_IN, 6);
        r.mem.write_obj(0xffu8, GuestAddress(0x30000)).unwrap();
        // the table at 0x50000: header, two data buffers, status
        let entries: [(u64, u32, u16, u16); 4] = [
            (0x10000, 16, NEXT, 1),
            (0x20000, 512, NEXT | WRITE, 2),
            (0x48000, 1024, NEXT | WRITE, 3),
            (0x30000, 1, WRITE, 0),
        ];
        for (i, (addr, len, flags, next)) in entries.iter().enumerate() {
            let at = 0x50000 + i as u64 * 16;
            r.mem.write_obj(*addr, GuestAddress(at)).unwrap();
            r.mem.write_obj(*len, GuestAddress(at + 8)).unwrap();
            r.mem.write_obj(*flags, GuestAddress(at + 12)).unwrap();
            r.mem.write_obj(*next, GuestAddress(at + 14)).unwrap();
        }
        r.desc(0, 0x50000, 64, INDIRECT, 0);
        assert_eq!(r.submit(0), (0, 1537));
        assert_eq!(r.status(0x30000), S_OK);
        let mut got = vec![0u8; 1024];
        r.mem.read_slice(&mut got, GuestAddress(0x48000)).unwrap();
        assert!(got[..512].iter().all(|&b| b == 7) && got[512..].iter().all(|&b| b == 8));
    }

    /// A buffer may cross from one guest memory region into the next when
    /// they touch, never into a hole between them.
    #[test]
    fn buffers_cross_adjacent_regions_but_not_holes() {
        let mut r = rig(false);
        r.mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x40000),
            (GuestAddress(0x40000), 0xc0000),
        ])
        .unwrap();
        r.header(0x10000, T_IN, 2);
        r.desc(0, 0x10000, 16, NEXT, 1);
        r.desc(1, 0x40000 - 256, 512, NEXT | WRITE, 2);
        r.desc(2, 0x30000, 1, WRITE, 0);
        assert_eq!(r.submit(0), (0, 513));
        assert_eq!(r.status(0x30000), S_OK);
        let mut got = [0u8; 512];
        r.mem
            .read_slice(&mut got, GuestAddress(0x40000 - 256))
            .unwrap();
        assert_eq!(got, [2; 512]);

        let mut r = rig(false);
        r.mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x40000),
            (GuestAddress(0x50000), 0xb0000),
        ])
        .unwrap();
        r.header(0x10000, T_IN, 2);
        r.desc(0, 0x10000, 16, NEXT, 1);
        r.desc(1, 0x40000 - 256, 512, NEXT | WRITE, 2);
        r.desc(2, 0x30000, 1, WRITE, 0);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_IOERR);
        // the part inside memory was not written either
        let mut head = [7u8; 256];
        r.mem
            .read_slice(&mut head, GuestAddress(0x40000 - 256))
            .unwrap();
        assert_eq!(head, [0; 256]);
    }

    /// More iovecs than one call takes are moved in batches, each resuming
    /// where the last stopped; reading past the file's end is an error.
    #[test]
    fn move_all_batches_iovecs_and_stops_at_the_end_of_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..3000 * 7).map(|i| (i % 251) as u8).collect();
        file.write_all(&content).unwrap();
        let mut buf = vec![0u8; 3000 * 7];
        let mut iovecs: Vec<libc::iovec> = buf
            .chunks_mut(7)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        assert!(iovecs.len() > 2 * IOV_MAX);
        move_all(file.as_file(), &mut iovecs, 0, true).unwrap();
        assert_eq!(buf, content);
        // written back at an offset through the same kind of list
        let mut iovecs: Vec<libc::iovec> = buf
            .chunks_mut(5)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        move_all(file.as_file(), &mut iovecs, 100, false).unwrap();
        let mut back = Vec::new();
        file.reopen().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(&back[..100], &content[..100]);
        assert_eq!(&back[100..], &content[..]);
        let mut tail = [0u8; 64];
        let mut iovecs = [libc::iovec {
            iov_base: tail.as_mut_ptr().cast(),
            iov_len: tail.len(),
        }];
        let end = back.len() as u64 - 32;
        let err = move_all(file.as_file(), &mut iovecs, end, true).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn get_id_and_config() {
        let mut r = rig(false);
        let (len, status) = r.simple(T_GET_ID, 0, 20, WRITE);
        assert_eq!((len, status), (21, S_OK));
        let mut id = [0u8; 20];
        r.mem.read_slice(&mut id, GuestAddress(0x20000)).unwrap();
        assert_eq!(&id[..14], b"twinbox-disk-0");
        let mut capacity = [0u8; 8];
        r.disk.read_config(0, &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 128);
        let mut past = [1u8; 4];
        r.disk.read_config(u64::MAX - 1, &mut past);
        assert_eq!(past, [0; 4]);
    }

    #[test]
    fn read_only_disks_refuse_writes() {
        let mut r = rig(true);
        assert_ne!(r.disk.features() & F_RO, 0);
        let (len, status) = r.simple(T_OUT, 0, 512, 0);
        assert_eq!((len, status), (1, S_IOERR));
        let (_, status) = r.simple(T_IN, 0, 512, WRITE);
        assert_eq!(status, S_OK);
    }

    /// Writes discard segments at 0x20000 and submits them.
    fn discard(r: &mut Rig, segments: &[(u64, u32, u32)]) -> (u32, u8) {
        for (i, (sector, count, flags)) in segments.iter().enumerate() {
            let at = 0x20000 + i as u64 * 16;
            r.mem.write_obj(*sector, GuestAddress(at)).unwrap();
            r.mem.write_obj(*count, GuestAddress(at + 8)).unwrap();
            r.mem.write_obj(*flags, GuestAddress(at + 12)).unwrap();
        }
        r.simple(T_DISCARD, 0, segments.len() as u32 * 16, 0)
    }

    #[test]
    fn discard_punches_a_hole_and_reads_back_zeros() {
        let mut r = rig(false);
        assert_ne!(r.disk.features() & F_DISCARD, 0);
        let mut max_segments = [0u8; 4];
        r.disk.read_config(40, &mut max_segments);
        assert_eq!(u32::from_le_bytes(max_segments), 1);
        // The rig's file is 64 KiB of data: all allocated.
        let blocks = |r: &Rig| {
            use std::os::unix::fs::MetadataExt;
            r.file.as_file().metadata().unwrap().blocks()
        };
        let before = blocks(&r);
        assert_eq!(discard(&mut r, &[(8, 32, 1)]), (1, S_OK));
        let after = blocks(&r);
        assert!(after < before, "the hole gave the space back");
        assert_eq!(r.file.as_file().metadata().unwrap().len(), 128 * 512);
        let (_, status) = r.simple(T_IN, 8, 512, WRITE);
        assert_eq!(status, S_OK);
        let mut got = [1u8; 512];
        r.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
        assert_eq!(got, [0; 512], "a discarded sector reads as zeros");
        let (_, status) = r.simple(T_IN, 40, 512, WRITE);
        assert_eq!(status, S_OK);
        r.mem.read_slice(&mut got, GuestAddress(0x20000)).unwrap();
        assert_eq!(got, [40; 512], "the sector after the hole is kept");
    }

    #[test]
    fn bad_discards_are_errors_and_read_only_disks_refuse_them() {
        let mut r = rig(false);
        assert_eq!(discard(&mut r, &[(120, 16, 0)]).1, S_IOERR, "past the end");
        assert_eq!(discard(&mut r, &[(u64::MAX, 2, 0)]).1, S_IOERR, "overflow");
        assert_eq!(discard(&mut r, &[(0, 8, 2)]).1, S_UNSUPP, "unknown flag");
        assert_eq!(discard(&mut r, &[(0, 0, 0)]).1, S_OK, "nothing to do");
        // A segment the device may not read, and a torn one.
        assert_eq!(r.simple(T_DISCARD, 0, 16, WRITE).1, S_IOERR);
        assert_eq!(r.simple(T_DISCARD, 0, 12, 0).1, S_IOERR);
        let mut ro = rig(true);
        assert_eq!(ro.disk.features() & F_DISCARD, 0);
        assert_eq!(discard(&mut ro, &[(0, 8, 0)]).1, S_IOERR);
        let mut content = Vec::new();
        ro.file.reopen().unwrap().read_to_end(&mut content).unwrap();
        assert!(content[..512].iter().all(|&b| b == 0), "sector 0 kept");
        assert!(content[512..1024].iter().all(|&b| b == 1), "sector 1 kept");
    }

    #[test]
    fn unknown_types_are_unsupported() {
        let mut r = rig(false);
        assert_eq!(r.simple(12, 0, 512, 0).1, S_UNSUPP);
        assert_eq!(r.simple(0xdead, 0, 512, 0).1, S_UNSUPP);
    }

    // --- hostile queues ------------------------------------------------------

    #[test]
    fn wrong_directions_are_errors() {
        let mut r = rig(false);
        // A read whose data buffer the device may not write.
        assert_eq!(r.simple(T_IN, 0, 512, 0), (1, S_IOERR));
        // A write whose data buffer is device-writable.
        assert_eq!(r.simple(T_OUT, 0, 512, WRITE), (1, S_IOERR));
        // A writable header.
        r.header(0x10000, T_IN, 0);
        r.desc(0, 0x10000, 16, NEXT | WRITE, 1);
        r.desc(1, 0x20000, 512, NEXT | WRITE, 2);
        r.desc(2, 0x30000, 1, WRITE, 0);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_IOERR);
        // A read-only status byte: nothing can be reported, the chain comes back unused.
        r.desc(2, 0x30000, 1, 0, 0);
        assert_eq!(r.submit(0), (0, 0));
    }

    #[test]
    fn out_of_range_requests_are_errors() {
        let mut r = rig(false);
        // Past the end of the 128-sector disk, and sector numbers that overflow.
        assert_eq!(r.simple(T_IN, 127, 1024, WRITE).1, S_IOERR);
        assert_eq!(r.simple(T_IN, u64::MAX / 256, 512, WRITE).1, S_IOERR);
        // Not whole sectors.
        assert_eq!(r.simple(T_IN, 0, 100, WRITE).1, S_IOERR);
        // A data buffer outside guest memory (1 MiB).
        r.header(0x10000, T_IN, 0);
        r.desc(0, 0x10000, 16, NEXT, 1);
        r.desc(1, 0xffff_0000_0000, 512, NEXT | WRITE, 2);
        r.desc(2, 0x30000, 1, WRITE, 0);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_IOERR);
        // A buffer straddling the end of guest memory.
        r.desc(1, (1 << 20) - 256, 512, NEXT | WRITE, 2);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_IOERR);
        // A header outside guest memory, and one too short.
        r.desc(0, 0xffff_ffff_0000, 16, NEXT, 1);
        r.desc(1, 0x20000, 512, NEXT | WRITE, 2);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_IOERR);
        r.desc(0, 0x10000, 8, NEXT, 1);
        assert_eq!(r.submit(0), (0, 1));
        assert_eq!(r.status(0x30000), S_IOERR);
        // A status byte outside guest memory: given back unused.
        r.desc(0, 0x10000, 16, NEXT, 1);
        r.desc(2, 0xffff_ffff_0000, 1, WRITE, 0);
        assert_eq!(r.submit(0), (0, 0));
    }

    #[test]
    fn oversized_requests_are_errors() {
        let mut r = rig(false);
        // Nearly 4 GiB claimed in one buffer (not whole sectors, past the
        // disk, past guest memory: refused before any I/O).
        assert_eq!(r.simple(T_IN, 0, u32::MAX - 17, WRITE), (1, S_IOERR));
        assert_eq!(r.simple(T_IN, 0, u32::MAX - 511 - 17, WRITE).1, S_IOERR);
        // A chain longer than 4 GiB in all is illegal (virtio 2.7.5.2): the
        // queue stops reading it, so with no status byte it comes back unused.
        assert_eq!(r.simple(T_IN, 0, u32::MAX, WRITE), (0, 0xff));
        // Two buffers whose lengths together exceed 4 GiB: the chain ends early.
        r.header(0x10000, T_IN, 0);
        r.desc(0, 0x10000, 16, NEXT, 1);
        r.desc(1, 0x20000, u32::MAX - 511, NEXT | WRITE, 2);
        r.desc(2, 0x20000, u32::MAX - 511, NEXT | WRITE, 3);
        r.desc(3, 0x30000, 1, WRITE, 0);
        r.mem.write_obj(0xffu8, GuestAddress(0x30000)).unwrap();
        let (_, len) = r.submit(0);
        assert!(len <= 1, "{len}");
    }

    #[test]
    fn loops_and_bad_indices_end_the_request_not_the_vmm() {
        let mut r = rig(false);
        // A chain that points back at itself.
        r.header(0x10000, T_IN, 0);
        r.desc(0, 0x10000, 16, NEXT, 1);
        r.desc(1, 0x20000, 512, NEXT | WRITE, 0);
        let (id, _) = r.submit(0);
        assert_eq!(id, 0);
        // A next index past the table.
        r.desc(1, 0x20000, 512, NEXT | WRITE, 999);
        r.submit(0);
        // A header-only chain: no status byte.
        r.desc(0, 0x10000, 16, 0, 0);
        assert_eq!(r.submit(0), (0, 0));
        // An indirect table outside memory, and one that nests another.
        r.desc(0, 0xffff_ffff_0000, 64, INDIRECT, 0);
        assert_eq!(r.submit(0), (0, 0));
        r.mem.write_obj(0x40000u64, GuestAddress(0x50000)).unwrap();
        r.mem.write_obj(32u32, GuestAddress(0x50008)).unwrap();
        r.mem.write_obj(INDIRECT, GuestAddress(0x5000c)).unwrap();
        r.desc(0, 0x50000, 32, INDIRECT, 0);
        assert_eq!(r.submit(0), (0, 0));
        // The device still serves a good request afterwards.
        assert_eq!(r.simple(T_IN, 1, 512, WRITE), (513, S_OK));
    }

    #[test]
    fn an_available_index_running_ahead_is_not_followed() {
        let mut r = rig(false);
        // The driver claims 1000 new entries in a ring of 16.
        r.mem.write_obj(1000u16, GuestAddress(AVAIL + 2)).unwrap();
        r.disk.process_queue(&r.mem, 0, &mut r.queues);
        let used: u16 = r.mem.read_obj(GuestAddress(USED + 2)).unwrap();
        assert!(used <= 16, "{used}");
    }

    #[test]
    fn disks_that_are_not_whole_sectors_are_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [0u8; 700]).unwrap();
        let err = Block::open(file.path(), true, "x").err().unwrap();
        assert!(err.to_string().contains("512-byte sectors"), "{err}");
        let err = Block::open(Path::new("/nonexistent/disk.img"), true, "x")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/disk.img"), "{err}");
    }

    // --- fuzz target: random queues (proptest, runs on stable in cargo test) --

    /// Where the rig's buffers live, and the lengths its requests use.
    const DATA_AREAS: &[u64] = &[0x10000, 0x20000, 0x30000, 0x50000];
    const LENGTHS: &[u32] = &[1, 16, 512, 1024, 4096];

    fn descriptor() -> impl proptest::strategy::Strategy<Value = (u64, u32, u16, u16)> {
        crate::devices::virtio::fuzz::descriptor(DATA_AREAS, LENGTHS)
    }

    /// However a request's data is cut into buffers (any sizes, scattered),
    /// a read brings exactly the disk's bytes from its sector on and a write
    /// puts exactly the buffers' bytes there; a total that is not whole
    /// sectors or runs past the disk is refused and moves nothing.
    #[test]
    fn any_split_of_a_request_moves_the_same_bytes() {
        let inputs = (
            0u64..132,
            proptest::collection::vec(1u32..1200, 1..10),
            proptest::prelude::any::<bool>(),
            proptest::prelude::any::<u8>(),
            0u8..4,
        );
        crate::devices::virtio::fuzz::fuzz(
            "virtio-blk split requests",
            200,
            inputs,
            |(sector, mut lengths, write, fill, pad)| {
                // mostly whole sectors, so that the good path is the common one
                if pad != 0 {
                    let total: u32 = lengths.iter().sum();
                    *lengths.last_mut().unwrap() += (512 - total % 512) % 512;
                }
                let mut r = rig(false);
                let original: Vec<u8> = (0..128u8).flat_map(|n| [n; 512]).collect();
                // buffer i at 0x40000 + i * 0x1000 (each under 0x1000 long)
                let at = |i: usize| 0x40000 + i as u64 * 0x1000;
                r.header(0x10000, if write { T_OUT } else { T_IN }, sector);
                r.mem.write_obj(0xffu8, GuestAddress(0x30000)).unwrap();
                r.desc(0, 0x10000, 16, NEXT, 1);
                let flags = if write { 0 } else { WRITE };
                for (i, len) in lengths.iter().enumerate() {
                    r.mem
                        .write_slice(&vec![fill; *len as usize], GuestAddress(at(i)))
                        .unwrap();
                    let i16 = i as u16 + 1;
                    r.desc(i16, at(i), *len, NEXT | flags, i16 + 1);
                }
                r.desc(lengths.len() as u16 + 1, 0x30000, 1, WRITE, 0);
                let (_, used) = r.submit(0);
                let status = r.status(0x30000);
                let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
                let fits = total.is_multiple_of(512) && sector * 512 + total <= 128 * 512;
                let mut content = Vec::new();
                r.file.reopen().unwrap().read_to_end(&mut content).unwrap();
                let from = (sector * 512) as usize;
                if !fits {
                    proptest::prop_assert_eq!((used, status), (1, S_IOERR));
                    proptest::prop_assert!(content == original, "a refused request wrote");
                    return Ok(());
                }
                proptest::prop_assert_eq!(status, S_OK);
                let range = from..from + total as usize;
                if write {
                    proptest::prop_assert_eq!(used, 1);
                    proptest::prop_assert!(content[range.clone()].iter().all(|&b| b == fill));
                    proptest::prop_assert!(content[..from] == original[..from]);
                    proptest::prop_assert!(content[range.end..] == original[range.end..]);
                } else {
                    proptest::prop_assert_eq!(u64::from(used), total + 1);
                    let mut got = Vec::new();
                    for (i, len) in lengths.iter().enumerate() {
                        let mut part = vec![0u8; *len as usize];
                        r.mem.read_slice(&mut part, GuestAddress(at(i))).unwrap();
                        got.extend(part);
                    }
                    proptest::prop_assert!(got == original[range], "read the wrong bytes");
                }
                Ok(())
            },
        );
    }

    /// Whatever the driver puts in the descriptor table, the available
    /// ring and the request headers, the device neither panics nor
    /// spins, gives back at most what was offered, and writes the disk
    /// only within its bounds (its length never changes).
    #[test]
    fn random_queues_never_take_the_vmm_down() {
        let inputs = (
            proptest::collection::vec(descriptor(), 16),
            proptest::collection::vec(proptest::prelude::any::<u16>(), 16),
            proptest::prelude::any::<u16>(),
            proptest::collection::vec(
                (
                    proptest::prelude::prop_oneof![0u32..12, proptest::prelude::any::<u32>()],
                    proptest::prelude::prop_oneof![0u64..140, proptest::prelude::any::<u64>()],
                ),
                3,
            ),
            proptest::prelude::any::<bool>(),
        );
        crate::devices::virtio::fuzz::fuzz(
            "virtio-blk random queues",
            300,
            inputs,
            |(table, heads, avail_idx, headers, read_only)| {
                let mut r = rig(read_only);
                for (i, (addr, len, flags, next)) in table.iter().enumerate() {
                    r.desc(i as u16, *addr, *len, *flags, *next);
                }
                for (i, head) in heads.iter().enumerate() {
                    r.mem
                        .write_obj(*head, GuestAddress(AVAIL + 4 + i as u64 * 2))
                        .unwrap();
                }
                for (at, (kind, sector)) in [0x10000u64, 0x20000, 0x50000].iter().zip(&headers) {
                    r.header(*at, *kind, *sector);
                }
                r.mem.write_obj(avail_idx, GuestAddress(AVAIL + 2)).unwrap();
                r.disk.process_queue(&r.mem, 0, &mut r.queues);
                let used: u16 = r.mem.read_obj(GuestAddress(USED + 2)).unwrap();
                proptest::prop_assert!(used <= avail_idx.min(16), "used {} of {}", used, avail_idx);
                proptest::prop_assert_eq!(r.file.as_file().metadata().unwrap().len(), 128 * 512);
                // The same device still serves a good request on a reset queue
                // (the random one may have been left past its ring).
                let mut q = Queue::new(16).unwrap();
                q.set_size(16);
                q.set_desc_table_address(Some(DESC as u32), Some(0));
                q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
                q.set_used_ring_address(Some(USED as u32), Some(0));
                q.set_ready(true);
                r.queues = vec![q];
                r.avail_idx = 0;
                r.mem.write_obj(0u16, GuestAddress(USED + 2)).unwrap();
                proptest::prop_assert_eq!(r.simple(T_IN, 2, 512, WRITE), (513, S_OK));
                Ok(())
            },
        );
    }
}
