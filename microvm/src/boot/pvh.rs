//! PVH boot: the kernel enters in 32-bit mode and reads an `hvm_start_info`
//! (memory map, command line, initramfs as module 0) whose address is in %ebx.

use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::params::e820_map;
use super::BootError;
use crate::arch::x86_64::layout::CMDLINE_ADDR;

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// Where the start info, the module list and the memory map go (free low RAM).
pub const START_INFO_ADDR: u64 = 0x6000;
const MODLIST_ADDR: u64 = 0x6040;
const MEMMAP_ADDR: u64 = 0x6080;
// The start info, module list and a short memory map all fit below the zero page.
const _: () = assert!(MEMMAP_ADDR + 8 * 24 <= crate::arch::x86_64::layout::ZERO_PAGE_ADDR);

/// Writes the start info; returns its address for %ebx.
pub fn write_start_info(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    initrd: Option<(u64, u64)>,
    rsdp: u64,
) -> Result<u64, BootError> {
    let map = e820_map(mem_size);
    for (i, (addr, size, type_)) in map.iter().enumerate() {
        let entry = hvm_memmap_table_entry {
            addr: *addr,
            size: *size,
            type_: *type_,
            reserved: 0,
        };
        mem.write_obj(entry, GuestAddress(MEMMAP_ADDR + (i * 24) as u64))?;
    }
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: MEMMAP_ADDR,
        memmap_entries: map.len() as u32,
        rsdp_paddr: rsdp,
        ..Default::default()
    };
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr,
            size,
            ..Default::default()
        };
        mem.write_obj(module, GuestAddress(MODLIST_ADDR))?;
        info.nr_modules = 1;
        info.modlist_paddr = MODLIST_ADDR;
    }
    mem.write_obj(info, GuestAddress(START_INFO_ADDR))?;
    Ok(START_INFO_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_carries_magic_map_and_module() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let addr = write_start_info(&mem, 256 << 20, Some((0x0f00_0000, 4096)), 0xe0000).unwrap();
        let info: hvm_start_info = mem.read_obj(GuestAddress(addr)).unwrap();
        assert_eq!(info.magic, XEN_HVM_START_MAGIC);
        assert_eq!(info.memmap_entries, 3);
        assert_eq!(info.nr_modules, 1);
        let module: hvm_modlist_entry = mem.read_obj(GuestAddress(info.modlist_paddr)).unwrap();
        assert_eq!((module.paddr, module.size), (0x0f00_0000, 4096));
        let last: hvm_memmap_table_entry =
            mem.read_obj(GuestAddress(MEMMAP_ADDR + 2 * 24)).unwrap();
        assert_eq!(last.addr, 0x10_0000);
    }
}
