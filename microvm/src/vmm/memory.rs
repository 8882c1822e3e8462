//! How much memory the VMM itself uses, by Firecracker's method: the process's
//! resident set minus the resident part of guest memory.

use std::fs;

use serde::Serialize;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct VmmMemory {
    /// Resident bytes of the whole VMM process.
    pub process_rss: u64,
    /// Resident bytes of guest RAM (pages the guest touched).
    pub guest_resident: u64,
    /// `process_rss - guest_resident`: what running the VM costs beyond its RAM.
    pub vmm_overhead: u64,
}

/// Reads /proc/self/smaps and splits the resident set into guest RAM and the rest.
pub fn measure(memory: &GuestMemoryMmap) -> Option<VmmMemory> {
    let ranges: Vec<(u64, u64)> = memory
        .iter()
        .map(|region| {
            let start = region.as_ptr() as u64;
            (start, start + region.len())
        })
        .collect();
    let smaps = fs::read_to_string("/proc/self/smaps").ok()?;
    Some(split_rss(&smaps, &ranges))
}

/// The accounting behind [`measure`], on smaps text (for tests).
pub fn split_rss(smaps: &str, guest_ranges: &[(u64, u64)]) -> VmmMemory {
    let mut total = 0u64;
    let mut guest = 0u64;
    let mut in_guest = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, end)) = range.split_once('-') {
                if let (Ok(start), Ok(end)) =
                    (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
                {
                    in_guest = guest_ranges.iter().any(|&(s, e)| start < e && s < end);
                    continue;
                }
            }
        }
        if let Some(rest) = line.strip_prefix("Rss:") {
            let kib: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            total += kib * 1024;
            if in_guest {
                guest += kib * 1024;
            }
        }
    }
    VmmMemory {
        process_rss: total,
        guest_resident: guest,
        vmm_overhead: total.saturating_sub(guest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/twinbox
Size:               1024 kB
Rss:                 800 kB
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:               20000 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                  12 kB
";

    #[test]
    fn guest_ram_is_subtracted_from_the_resident_set() {
        let m = split_rss(SMAPS, &[(0x7f00_0000_0000, 0x7f00_1000_0000)]);
        assert_eq!(m.process_rss, (800 + 20000 + 12) * 1024);
        assert_eq!(m.guest_resident, 20000 * 1024);
        assert_eq!(m.vmm_overhead, 812 * 1024);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 1 << 20)]).unwrap();
        let m = measure(&mem).unwrap();
        assert!(m.process_rss > 0);
        assert!(m.vmm_overhead <= m.process_rss);
    }
}
