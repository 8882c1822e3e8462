//! The Global Descriptor Table a 64-bit guest starts with: null, code, data and
//! a TSS descriptor, and the `kvm_segment`s the vCPU's segment registers take
//! from it (KVM wants both: the table in memory and the decoded registers).

use kvm_bindings::kvm_segment;

/// Selector indexes into [`boot_gdt`].
pub const CODE_INDEX: u16 = 1;
pub const DATA_INDEX: u16 = 2;
pub const TSS_INDEX: u16 = 3;

/// Builds a segment descriptor from its flags (the top nibble of byte 6 and
/// the access byte, as `0xFAA` = flags|access), base and limit.
pub const fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: 64-bit code (L=1), flat data, and a 32-bit busy TSS.
pub fn boot_gdt() -> [u64; 4] {
    [
        0,
        descriptor(0xa09b, 0, 0xfffff),
        descriptor(0xc093, 0, 0xfffff),
        descriptor(0x808b, 0, 0xfffff),
    ]
}

/// Decodes a descriptor into the segment register KVM loads for `index`.
pub fn segment(index: u16, entry: u64) -> kvm_segment {
    let granularity = ((entry >> 55) & 1) as u8;
    let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
    kvm_segment {
        base: ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000),
        // With 4 KiB granularity the limit counts pages.
        limit: if granularity == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: granularity,
        avl: ((entry >> 52) & 1) as u8,
        unusable: if (entry >> 47) & 1 == 0 { 1 } else { 0 },
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_64_bit_present_and_flat() {
        let gdt = boot_gdt();
        let cs = segment(CODE_INDEX, gdt[CODE_INDEX as usize]);
        assert_eq!(gdt[1], 0x00af_9b00_0000_ffff);
        assert_eq!(cs.selector, 8);
        assert_eq!((cs.l, cs.db, cs.present, cs.s, cs.g), (1, 0, 1, 1, 1));
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.base, 0);
        assert_eq!(cs.limit, 0xffff_ffff);
    }

    #[test]
    fn data_and_tss_segments_decode() {
        let gdt = boot_gdt();
        let ds = segment(DATA_INDEX, gdt[DATA_INDEX as usize]);
        assert_eq!(gdt[2], 0x00cf_9300_0000_ffff);
        assert_eq!((ds.selector, ds.type_, ds.db, ds.l), (0x10, 3, 1, 0));
        let tr = segment(TSS_INDEX, gdt[TSS_INDEX as usize]);
        assert_eq!((tr.selector, tr.type_, tr.s), (0x18, 0xb, 0));
    }

    #[test]
    fn base_bits_are_split_as_the_sdm_says() {
        let entry = descriptor(0x0093, 0x1234_5678, 0xabcd);
        assert_eq!(segment(1, entry).base, 0x1234_5678);
        assert_eq!(segment(1, entry).limit, 0xabcd);
    }
}
