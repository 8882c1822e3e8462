//! The guest physical memory map. Low addresses follow the Linux boot protocol's
//! conventions (and Firecracker's choices); everything above 1 MiB is RAM for
//! the kernel, with the initramfs at the top.

/// The GDT, loaded before the first instruction.
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT: the kernel installs its own before enabling interrupts.
pub const IDT_ADDR: u64 = 0x520;
/// The boot parameters ("zero page") handed to the kernel in %rsi.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Top of the stack the kernel starts on (it switches away almost at once).
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Level-4 page table; the next two pages hold the PDPT and the page directory.
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Room for the command line (the kernel's COMMAND_LINE_SIZE on x86 is 2048).
pub const CMDLINE_MAX_LEN: usize = 2048;
/// Start of the Extended BIOS Data Area: RAM below it, the MP table inside it.
pub const EBDA_START: u64 = 0x9fc00;
/// Where the kernel is loaded: the 1 MiB line, as bzImage expects.
pub const HIMEM_START: u64 = 0x10_0000;
/// The 32-bit hole for device memory (IOAPIC, LAPIC) starts here.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Where the IOAPIC and the local APICs sit, as the MP table announces.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
pub const APIC_ADDR: u32 = 0xfee0_0000;
/// KVM needs three pages of guest-physical space for the TSS on Intel; any
/// address in the MMIO gap that RAM never reaches will do.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;

/// The RAM regions of a guest with `mem_size` bytes: low memory below the EBDA
/// and everything from 1 MiB up, split around the 32-bit MMIO gap.
pub fn ram_regions(mem_size: u64) -> Vec<(u64, u64)> {
    if mem_size <= MMIO_GAP_START {
        vec![(0, mem_size)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_size - MMIO_GAP_START),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guests_have_one_region() {
        assert_eq!(ram_regions(256 << 20), vec![(0, 256 << 20)]);
    }

    #[test]
    fn big_guests_skip_the_mmio_gap() {
        let regions = ram_regions(4 << 30);
        assert_eq!(regions[0], (0, MMIO_GAP_START));
        assert_eq!(regions[1].0, MMIO_GAP_END);
        assert_eq!(regions[0].1 + regions[1].1, 4 << 30);
    }

    #[test]
    fn fixed_structures_do_not_overlap() {
        let mut spans = [
            (GDT_ADDR, 4 * 8),
            (IDT_ADDR, 8),
            (ZERO_PAGE_ADDR, 4096),
            (PML4_ADDR, 4096),
            (PDPT_ADDR, 4096),
            (PD_ADDR, 4096),
            (CMDLINE_ADDR, CMDLINE_MAX_LEN as u64),
        ];
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:?}");
        }
        assert!(CMDLINE_ADDR + CMDLINE_MAX_LEN as u64 <= EBDA_START);
    }
}
