//! The zero page of the Linux 64-bit boot protocol: setup header, command
//! line, initramfs and the e820 memory map.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::arch::x86_64::layout::{
    ram_regions, CMDLINE_ADDR, EBDA_START, HIMEM_START, MMIO_GAP_START, ZERO_PAGE_ADDR,
};

pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
const BOOT_FLAG: u16 = 0xaa55;
const HEADER_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_ALIGNMENT: u32 = 0x0100_0000;
/// "Undefined boot loader" in the boot protocol's type_of_loader.
const LOADER_UNDEFINED: u8 = 0xff;
/// initrd_addr_max for kernels without a setup header (the protocol's default).
pub const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// The memory map the guest sees: base memory below the EBDA, the EBDA
/// (holding the MP table) reserved, then RAM from 1 MiB, split around the gap.
pub fn e820_map(mem_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, 0xa0000 - EBDA_START, E820_RESERVED),
    ];
    for (start, len) in ram_regions(mem_size) {
        let begin = start.max(HIMEM_START);
        let end = start + len;
        if end > begin {
            map.push((begin, end - begin, E820_RAM));
        }
    }
    map
}

/// The end of the RAM below the 32-bit MMIO gap.
pub fn low_ram_end(mem_size: u64) -> u64 {
    mem_size.min(MMIO_GAP_START)
}

/// Fills in a zero page.
pub fn zero_page(
    header: Option<setup_header>,
    cmdline_len: u32,
    initrd: Option<(u64, u64)>,
    mem_size: u64,
) -> Result<boot_params, BootError> {
    let mut params = boot_params::default();
    match header {
        Some(hdr) => params.hdr = hdr,
        None => {
            params.hdr.boot_flag = BOOT_FLAG;
            params.hdr.header = HEADER_MAGIC;
            params.hdr.kernel_alignment = KERNEL_ALIGNMENT;
        }
    }
    params.hdr.type_of_loader = LOADER_UNDEFINED;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = cmdline_len;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(mem_size);
    if map.len() > params.e820_table.len() {
        return Err(BootError::Cmdline("e820 map too long".into()));
    }
    for (slot, (addr, size, type_)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *type_,
        };
    }
    params.e820_entries = map.len() as u8;
    Ok(params)
}

/// The initrd_addr_max the kernel announces (or the protocol default).
pub fn initrd_addr_max(header: Option<&setup_header>) -> u64 {
    match header {
        Some(hdr) if hdr.initrd_addr_max != 0 => hdr.initrd_addr_max as u64,
        _ => DEFAULT_INITRD_ADDR_MAX,
    }
}

/// Writes the zero page to its fixed address.
pub fn write(mem: &GuestMemoryMmap, params: &boot_params) -> Result<u64, BootError> {
    mem.write_obj(*params, GuestAddress(ZERO_PAGE_ADDR))?;
    Ok(ZERO_PAGE_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_map_has_base_ebda_and_high_ram() {
        let map = e820_map(256 << 20);
        assert_eq!(
            map,
            vec![
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x400, E820_RESERVED),
                (0x10_0000, (256 << 20) - 0x10_0000, E820_RAM),
            ]
        );
    }

    #[test]
    fn big_guest_map_skips_the_mmio_gap() {
        let map = e820_map(4 << 30);
        let ram: u64 = map.iter().filter(|e| e.2 == E820_RAM).map(|e| e.1).sum();
        assert_eq!(ram, (4 << 30) - 0x10_0000 + 0x9fc00);
        assert!(map
            .iter()
            .all(|e| e.0 >= MMIO_GAP_START + (1 << 30) || e.0 + e.1 <= MMIO_GAP_START));
    }

    #[test]
    fn zero_page_points_at_cmdline_initrd_and_map() {
        let params = zero_page(None, 42, Some((0x0f00_0000, 12345)), 256 << 20).unwrap();
        let hdr = params.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, HEADER_MAGIC);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_ADDR as u32);
        assert_eq!({ hdr.cmdline_size }, 42);
        assert_eq!(
            ({ hdr.ramdisk_image }, { hdr.ramdisk_size }),
            (0x0f00_0000, 12345)
        );
        assert_eq!(params.e820_entries, 3);
        let last = params.e820_table[2];
        assert_eq!(({ last.addr }, { last.r#type }), (0x10_0000, E820_RAM));
    }

    #[test]
    fn a_bzimage_header_is_kept() {
        let hdr = setup_header {
            version: 0x020f,
            initrd_addr_max: 0x7fff_ffff,
            ..Default::default()
        };
        let params = zero_page(Some(hdr), 1, None, 64 << 20).unwrap();
        assert_eq!({ params.hdr.version }, 0x020f);
        assert_eq!(initrd_addr_max(Some(&hdr)), 0x7fff_ffff);
        assert_eq!(initrd_addr_max(None), DEFAULT_INITRD_ADDR_MAX);
        assert_eq!({ params.hdr.ramdisk_image }, 0);
    }
}
