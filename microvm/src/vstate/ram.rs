//! Guest RAM, mapped so that KVM can give the guest huge pages.
//!
//! KVM maps guest memory with 2 MiB pages in its nested page tables only
//! where the host backs it with transparent huge pages *and* the host
//! address and the guest-physical address are the same modulo 2 MiB (else
//! it disallows large pages for the whole memory slot). vm-memory's own
//! mapping takes whatever address mmap returns, which is only 4 KiB-aligned,
//! so every 4 KiB page the guest touched cost it a nested page fault, an exit
//! to KVM: measured in the nested machine (KVM's pf_taken), about 29,000
//! during a boot and 29,000 more for a 128 MiB sequential disk read, where
//! QEMU (which aligns its RAM) took 55; the read ran at 0.4x of QEMU's.
//!
//! Here each region is mapped with 2 MiB to spare and the unaligned ends are
//! given back; the mapping stays owned by [`Mapping`], which the VM drops
//! after every view of guest memory onto it.

use std::io;

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// The alignment KVM needs for its 2 MiB mappings.
pub const HUGE_PAGE: usize = 2 << 20;

/// A guest RAM region's host mapping; unmapped when dropped.
#[derive(Debug)]
pub struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of private anonymous memory at a host address equal
    /// to `guest_start` modulo [`HUGE_PAGE`].
    fn new(guest_start: u64, len: usize) -> io::Result<Mapping> {
        let total = len
            .checked_add(HUGE_PAGE)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let raw = raw as usize;
        let want = (guest_start % HUGE_PAGE as u64) as usize;
        let head = (want + HUGE_PAGE - raw % HUGE_PAGE) % HUGE_PAGE;
        let addr = raw + head;
        let tail = total - head - len;
        for (at, n) in [(raw, head), (addr + len, tail)] {
            if n > 0 {
                // SAFETY: the unused ends of the mapping just made, nothing
                // else refers to them.
                unsafe { libc::munmap(at as *mut libc::c_void, n) };
            }
        }
        Ok(Mapping { addr, len })
    }

    pub fn addr(&self) -> usize {
        self.addr
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping; the VM drops its guest memory views first.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// Guest memory over `ranges`, each region in a [`Mapping`] of its own. The
/// returned guest memory (and every clone of it) must be dropped before the
/// mappings.
pub fn map(ranges: &[(GuestAddress, usize)]) -> Result<(Vec<Mapping>, GuestMemoryMmap), String> {
    let mut mappings = Vec::new();
    let mut regions = Vec::new();
    for &(start, len) in ranges {
        let mapping = Mapping::new(start.0, len).map_err(|e| e.to_string())?;
        // SAFETY: the pointer and length are the live mapping just made,
        // which outlives the region (the caller drops guest memory first).
        let region = unsafe {
            MmapRegion::build_raw(
                mapping.addr as *mut u8,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            )
        }
        .map_err(|e| e.to_string())?;
        mappings.push(mapping);
        let region = GuestRegionMmap::new(region, start)
            .ok_or_else(|| format!("guest memory at {:#x} wraps around", start.0))?;
        regions.push(region);
    }
    let memory = GuestMemoryMmap::from_regions(regions).map_err(|e| e.to_string())?;
    Ok((mappings, memory))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Address, Bytes, GuestMemoryBackend};

    #[test]
    fn regions_sit_at_host_addresses_congruent_to_their_guest_addresses() {
        let ranges = [
            (GuestAddress(0), 6 << 20),
            (GuestAddress(0x1_0000_0000), 4 << 20),
            // a region starting off a huge page boundary keeps the congruence
            (GuestAddress(0x1_0030_0000 + (8 << 20)), 1 << 20),
        ];
        let (mappings, memory) = map(&ranges).unwrap();
        for ((start, len), mapping) in ranges.iter().zip(&mappings) {
            let host = memory.get_host_address(*start).unwrap() as usize;
            assert_eq!(host, mapping.addr());
            assert_eq!(host % HUGE_PAGE, (start.0 % HUGE_PAGE as u64) as usize);
            // the whole region is usable and starts zeroed
            let last = start.unchecked_add(*len as u64 - 1);
            assert_eq!(memory.read_obj::<u8>(last).unwrap(), 0);
            memory.write_obj(0xa5u8, last).unwrap();
            assert_eq!(memory.read_obj::<u8>(last).unwrap(), 0xa5);
        }
        assert!(
            memory.read_obj::<u8>(GuestAddress(6 << 20)).is_err(),
            "nothing between the regions"
        );
        drop(memory);
        drop(mappings);
    }
}
