//! Identity-mapped page tables for the first GiB, in 2 MiB pages: enough for
//! the kernel's 64-bit entry, which builds its own tables right after.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::layout::{PDPT_ADDR, PD_ADDR, PML4_ADDR};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE_PAGE: u64 = 1 << 7;

/// The three tables as plain arrays: PML4[0] → PDPT, PDPT[0] → PD,
/// PD[i] → 2 MiB page i.
pub fn identity_tables() -> ([u64; 512], [u64; 512], [u64; 512]) {
    let mut pml4 = [0u64; 512];
    let mut pdpt = [0u64; 512];
    let mut pd = [0u64; 512];
    pml4[0] = PDPT_ADDR | PRESENT | WRITABLE;
    pdpt[0] = PD_ADDR | PRESENT | WRITABLE;
    for (i, entry) in pd.iter_mut().enumerate() {
        *entry = ((i as u64) << 21) | PRESENT | WRITABLE | HUGE_PAGE;
    }
    (pml4, pdpt, pd)
}

/// Writes the tables into guest memory and returns the value for CR3.
pub fn write_identity_tables(mem: &GuestMemoryMmap) -> Result<u64, vm_memory::GuestMemoryError> {
    let (pml4, pdpt, pd) = identity_tables();
    for (addr, table) in [(PML4_ADDR, pml4), (PDPT_ADDR, pdpt), (PD_ADDR, pd)] {
        for (i, entry) in table.iter().enumerate() {
            if *entry != 0 {
                mem.write_obj(*entry, GuestAddress(addr + i as u64 * 8))?;
            }
        }
    }
    debug_assert!(mem.address_in_range(GuestAddress(PD_ADDR + 4095)));
    Ok(PML4_ADDR)
}

/// Where an identity-mapped virtual address lands, following the tables the
/// way the MMU does (used by the tests to prove the mapping).
pub fn translate(tables: &([u64; 512], [u64; 512], [u64; 512]), vaddr: u64) -> Option<u64> {
    let (pml4, pdpt, pd) = tables;
    let l4 = pml4[((vaddr >> 39) & 511) as usize];
    if l4 & PRESENT == 0 || l4 & !0xfff != PDPT_ADDR {
        return None;
    }
    let l3 = pdpt[((vaddr >> 30) & 511) as usize];
    if l3 & PRESENT == 0 || l3 & !0xfff != PD_ADDR {
        return None;
    }
    let l2 = pd[((vaddr >> 21) & 511) as usize];
    if l2 & PRESENT == 0 || l2 & HUGE_PAGE == 0 {
        return None;
    }
    Some((l2 & !0x1f_ffff & !(1 << 63)) | (vaddr & 0x1f_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_gib_is_identity_mapped() {
        let tables = identity_tables();
        for addr in [0u64, 0x7000, 0x10_0000, 0x123_4567, (1 << 30) - 1] {
            assert_eq!(translate(&tables, addr), Some(addr), "{addr:#x}");
        }
        assert_eq!(translate(&tables, 1 << 30), None);
    }

    #[test]
    fn tables_land_in_guest_memory() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        assert_eq!(write_identity_tables(&mem).unwrap(), PML4_ADDR);
        let pd5: u64 = mem.read_obj(GuestAddress(PD_ADDR + 5 * 8)).unwrap();
        assert_eq!(pd5, (5 << 21) | 0x83);
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_ADDR)).unwrap();
        assert_eq!(pml4, PDPT_ADDR | 3);
    }
}
