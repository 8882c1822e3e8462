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

/// Set to keep what setting the VM up touched (for measuring what releasing
/// it saves).
pub const KEEP_SETUP_ENV: &str = "TWINBOX_VMM_KEEP_SETUP";

/// Gives back what setting the VM up needed and running it does not: the
/// binary's code and read-only data pages (most of a VMM process's own
/// resident set: the CLI, the store, image and disk code ran before the
/// guest) and its shared libraries', paged out and read back from the files
/// if they run again, and the heap's free memory. Returns the mappings paged
/// out.
///
/// The VMM's own anonymous memory (heap, malloc arenas, stacks: everything
/// but guest RAM, `guest`) is first kept from transparent huge pages. Where
/// THP is `always` (Debian 12's 6.1 in the nested machine), khugepaged
/// collapses any 2 MiB-aligned stretch of a mapping with a page in use into
/// one resident huge page: the heap, 3 MiB long after setup with a few
/// hundred KiB in use, was measured 2 MiB bigger in 2 VMs of 4 once it ran
/// (/proc/PID/smaps AnonHugePages), the VMM's memory beyond guest RAM 6.6
/// MiB instead of 4.6.
pub fn release_setup_memory(guest: &GuestMemoryMmap) -> usize {
    if std::env::var_os(KEEP_SETUP_ENV).is_some() {
        return 0;
    }
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    for (start, end) in own_anonymous_mappings(&maps, &guest_ranges(guest)) {
        // SAFETY: advice on our own anonymous mappings; MADV_NOHUGEPAGE
        // changes no contents, only whether huge pages may back them.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                (end - start) as usize,
                libc::MADV_NOHUGEPAGE,
            )
        };
    }
    // SAFETY: malloc_trim only hands free heap memory back to the kernel
    // (splitting a huge page already there: its free parts go too).
    unsafe { libc::malloc_trim(0) };
    let mut released = 0;
    for (start, end) in code_mappings(&maps) {
        // SAFETY: advice on our own read-only file mappings; MADV_PAGEOUT
        // never loses data (clean file pages are re-read, dirty or anonymous
        // ones stay without swap), it only drops pages from our resident set.
        let rc = unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                (end - start) as usize,
                libc::MADV_PAGEOUT,
            )
        };
        if rc == 0 {
            released += 1;
        }
    }
    released
}

/// The private read-only mappings of files in /proc/self/maps text: the
/// binary's and its shared libraries' code and data (libc, libm, libgcc and
/// the loader were another 2.1 MiB of the VMM's resident set in the nested
/// machine). MADV_PAGEOUT takes only pages no other process maps.
fn code_mappings(maps: &str) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode path
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            let private_read_only = perms.starts_with('r')
                && perms.as_bytes().get(1) == Some(&b'-')
                && perms.ends_with('p');
            if !path.starts_with('/') || path.starts_with("/memfd:") || !private_read_only {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}

/// Private anonymous writable mappings in /proc/self/maps text (the heap,
/// malloc arenas, thread stacks) that do not overlap `guest` host ranges.
fn own_anonymous_mappings(maps: &str, guest: &[(u64, u64)]) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|line| {
            // start-end perms offset dev inode [path]
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            let perms = fields.next()?;
            let inode = fields.nth(2)?;
            let path = fields.next().unwrap_or("");
            let anonymous = inode == "0" && (path.is_empty() || path.starts_with('['));
            if !anonymous || !perms.starts_with("rw") || perms.ends_with('s') {
                return None;
            }
            let range = (
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            );
            let in_guest = guest.iter().any(|&(s, e)| range.0 < e && s < range.1);
            (!in_guest).then_some(range)
        })
        .collect()
}

/// The host address ranges of guest RAM.
fn guest_ranges(memory: &GuestMemoryMmap) -> Vec<(u64, u64)> {
    memory
        .iter()
        .map(|region| {
            let start = region.as_ptr() as u64;
            (start, start + region.len())
        })
        .collect()
}

/// Reads /proc/self/smaps and splits the resident set into guest RAM and the rest.
pub fn measure(memory: &GuestMemoryMmap) -> Option<VmmMemory> {
    let ranges = guest_ranges(memory);
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

/// Another VMM process (QEMU) measured the same way from outside:
/// `/proc/PID/smaps`, with guest RAM the anonymous mapping of the configured
/// size (QEMU may round it up by a little). `None` when the process is gone
/// or has no such mapping (any more: it is tearing down).
pub fn measure_process(pid: i32, guest_bytes: u64) -> Option<VmmMemory> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    split_by_guest_size(&smaps, guest_bytes)
}

/// The accounting behind [`measure_process`], on smaps text (for tests).
pub fn split_by_guest_size(smaps: &str, guest_bytes: u64) -> Option<VmmMemory> {
    let mut total = 0u64;
    let mut guest: Option<u64> = None;
    let mut is_guest_ram = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(s), Ok(e)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) {
                // fields: range perms offset dev inode [path]
                let anonymous = words.nth(4).is_none();
                let size = e.saturating_sub(s);
                is_guest_ram = anonymous
                    && guest.is_none()
                    && size >= guest_bytes
                    && size <= guest_bytes + (8 << 20);
                continue;
            }
        }
        if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            total += kib * 1024;
            if is_guest_ram {
                guest = Some(kib * 1024);
                is_guest_ram = false;
            }
        }
    }
    let guest = guest?;
    (total > 0).then(|| VmmMemory {
        process_rss: total,
        guest_resident: guest,
        vmm_overhead: total.saturating_sub(guest),
    })
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
    fn another_process_s_guest_ram_is_the_mapping_of_its_size() {
        let smaps = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/qemu-system-x86_64
Rss:                 800 kB
7e0000000000-7e0010000000 r--p 00000000 08:01 9 /var/tmp/initrd
Rss:                   4 kB
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
Rss:               20000 kB
7f1000000000-7f1010200000 rw-p 00000000 00:00 0
Rss:               50000 kB
";
        let m = split_by_guest_size(smaps, 256 << 20).unwrap();
        assert_eq!(m.process_rss, (800 + 4 + 20000 + 50000) * 1024);
        assert_eq!(m.guest_resident, 20000 * 1024, "the first anonymous one");
        assert_eq!(m.vmm_overhead, (800 + 4 + 50000) * 1024);
        assert!(split_by_guest_size(smaps, 2048 << 20).is_none());
        assert!(measure_process(i32::MAX, 1 << 20).is_none());
    }

    #[test]
    fn only_read_only_file_mappings_are_released() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 08:01 123 /usr/bin/twinbox
55d0c0100000-55d0c0900000 r-xp 00100000 08:01 123 /usr/bin/twinbox
55d0c0900000-55d0c0a00000 rw-p 00900000 08:01 123 /usr/bin/twinbox
7f0000000000-7f0000100000 r-xp 00000000 08:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000100000-7f0000101000 ---p 00100000 08:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000101000-7f0000102000 rw-p 00101000 08:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0010000000-7f0020000000 rw-p 00000000 00:00 0
7f0020000000-7f0020001000 r--s 00000000 00:01 78 /memfd:x (deleted)
7f0030000000-7f0030001000 r--p 00000000 00:01 79 /memfd:y (deleted)
7f0040000000-7f0040003000 rw-s 00000000 00:0e 9633 anon_inode:kvm-vcpu:0
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(
            code_mappings(maps),
            vec![
                (0x55d0_c000_0000, 0x55d0_c010_0000),
                (0x55d0_c010_0000, 0x55d0_c090_0000),
                (0x7f00_0000_0000, 0x7f00_0010_0000),
            ]
        );
    }

    #[test]
    fn the_vmm_own_anonymous_mappings_are_found_and_guest_ram_is_not() {
        let maps = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/twinbox
55d0c0900000-55d0c0a00000 rw-p 00900000 08:01 123 /usr/bin/twinbox
55d0c1000000-55d0c1300000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
7f0010000000-7f0010021000 rw-p 00000000 00:00 0
7f0010021000-7f0014000000 ---p 00000000 00:00 0
7f0020000000-7f0020003000 rw-s 00000000 00:0e 9633                       anon_inode:kvm-vcpu:0
7f0030000000-7f0030001000 rw-s 00000000 00:01 77                         /memfd:x (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
";
        let guest = [(0x7f00_0000_0000, 0x7f00_1000_0000)];
        assert_eq!(
            own_anonymous_mappings(maps, &guest),
            vec![
                (0x55d0_c100_0000, 0x55d0_c130_0000),
                (0x7f00_1000_0000, 0x7f00_1002_1000),
                (0x7ffc_0000_0000, 0x7ffc_0002_1000),
            ]
        );
    }

    #[test]
    fn releasing_keeps_this_process_running() {
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 4 << 20)]).unwrap();
        let guest = guest_ranges(&mem)[0];
        // The test binary's own code is paged out and read back as it runs on.
        assert!(release_setup_memory(&mem) > 0);
        assert!(measure(&mem).unwrap().process_rss > 0);
        // The heap may not get huge pages any more; guest RAM keeps its advice.
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        // The VmFlags line of the first mapping whose header line `want`s.
        let flags = |want: &dyn Fn(&str) -> bool| {
            let mut lines = smaps.lines().skip_while(|l| !want(l));
            lines
                .find(|l| l.starts_with("VmFlags:"))
                .map(str::to_string)
        };
        let heap = flags(&|l: &str| l.ends_with("[heap]")).expect("a heap");
        assert!(heap.split_whitespace().any(|f| f == "nh"), "{heap}");
        let holds_guest = |l: &str| {
            let range = l.split_whitespace().next().and_then(|r| r.split_once('-'));
            range.is_some_and(|(a, b)| {
                let parse = |x| u64::from_str_radix(x, 16).unwrap_or(0);
                parse(a) <= guest.0 && guest.0 < parse(b)
            })
        };
        let ram = flags(&holds_guest).expect("guest RAM");
        assert!(!ram.split_whitespace().any(|f| f == "nh"), "{ram}");
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
