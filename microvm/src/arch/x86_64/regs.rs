//! The registers a vCPU starts with, for the two ways into a Linux kernel:
//! the 64-bit boot protocol (long mode, paging on, boot params in %rsi) and
//! PVH (32-bit protected mode, paging off, start info in %ebx).

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

use super::gdt::{self, CODE_INDEX, DATA_INDEX, TSS_INDEX};
use super::layout::{BOOT_STACK_TOP, GDT_ADDR, IDT_ADDR};

const X86_CR0_PE: u64 = 1;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// How the guest enters its kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit boot protocol: `entry` is startup_64, `boot_params` the zero page.
    Linux64 { entry: u64, boot_params: u64 },
    /// PVH: `entry` from the kernel's XEN_ELFNOTE_PHYS32_ENTRY note.
    Pvh { entry: u64, start_info: u64 },
}

/// General-purpose registers at the first instruction.
pub fn boot_regs(mode: EntryMode) -> kvm_regs {
    match mode {
        EntryMode::Linux64 { entry, boot_params } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry,
            rsp: BOOT_STACK_TOP,
            rbp: BOOT_STACK_TOP,
            rsi: boot_params,
            ..Default::default()
        },
        EntryMode::Pvh { entry, start_info } => kvm_regs {
            rflags: RFLAGS_RESERVED,
            rip: entry,
            rbx: start_info,
            ..Default::default()
        },
    }
}

/// The GDT entries written to guest memory for `mode`: PVH needs a 32-bit code
/// segment where the 64-bit protocol needs a long-mode one.
pub fn boot_gdt(mode: EntryMode) -> [u64; 4] {
    let mut table = gdt::boot_gdt();
    if let EntryMode::Pvh { .. } = mode {
        table[CODE_INDEX as usize] = gdt::descriptor(0xc09b, 0, 0xfffff);
    }
    table
}

/// Special registers: segments from the boot GDT, and for the 64-bit protocol
/// long mode with the identity page tables at `cr3`.
pub fn boot_sregs(mut sregs: kvm_sregs, mode: EntryMode, cr3: u64) -> kvm_sregs {
    let table = boot_gdt(mode);
    let code = gdt::segment(CODE_INDEX, table[CODE_INDEX as usize]);
    let data = gdt::segment(DATA_INDEX, table[DATA_INDEX as usize]);
    let tss = gdt::segment(TSS_INDEX, table[TSS_INDEX as usize]);
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (std::mem::size_of_val(&table) - 1) as u16;
    sregs.idt.base = IDT_ADDR;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    match mode {
        EntryMode::Linux64 { .. } => {
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.cr3 = cr3;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.efer |= EFER_LME | EFER_LMA;
        }
        EntryMode::Pvh { .. } => {
            sregs.cr0 = (sregs.cr0 | X86_CR0_PE | X86_CR0_ET) & !X86_CR0_PG;
            sregs.cr4 = 0;
            sregs.efer = 0;
        }
    }
    sregs
}

/// The FPU after FNINIT with SSE exceptions masked, as the kernel expects.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux64_starts_in_long_mode_with_boot_params_in_rsi() {
        let mode = EntryMode::Linux64 {
            entry: 0x100200,
            boot_params: 0x7000,
        };
        let regs = boot_regs(mode);
        assert_eq!((regs.rip, regs.rsi, regs.rflags), (0x100200, 0x7000, 2));
        let sregs = boot_sregs(kvm_sregs::default(), mode, 0x9000);
        assert_eq!(sregs.cr3, 0x9000);
        assert_ne!(sregs.cr0 & X86_CR0_PG, 0);
        assert_ne!(sregs.cr4 & X86_CR4_PAE, 0);
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((sregs.cs.selector, sregs.cs.l), (8, 1));
        assert_eq!((sregs.ss.selector, sregs.tr.selector), (0x10, 0x18));
        assert_eq!(sregs.gdt.limit, 31);
    }

    #[test]
    fn pvh_starts_in_flat_32_bit_protected_mode() {
        let mode = EntryMode::Pvh {
            entry: 0x1000000,
            start_info: 0x6000,
        };
        let regs = boot_regs(mode);
        assert_eq!((regs.rip, regs.rbx), (0x1000000, 0x6000));
        let sregs = boot_sregs(kvm_sregs::default(), mode, 0x9000);
        assert_eq!(sregs.cr0 & X86_CR0_PG, 0);
        assert_ne!(sregs.cr0 & X86_CR0_PE, 0);
        assert_eq!(sregs.efer, 0);
        assert_eq!((sregs.cs.l, sregs.cs.db), (0, 1));
    }

    #[test]
    fn fpu_masks_exceptions() {
        assert_eq!(boot_fpu().fcw, 0x37f);
        assert_eq!(boot_fpu().mxcsr, 0x1f80);
    }
}
