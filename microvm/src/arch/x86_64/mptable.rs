//! An Intel MultiProcessor Specification 1.4 table: how a guest without ACPI
//! learns its CPUs, its IOAPIC and how the legacy IRQs are wired. Linux scans
//! the last KiB of base memory (0x9fc00) for the `_MP_` floating pointer.

use super::layout::{APIC_ADDR, EBDA_START, IOAPIC_ADDR};

/// Every vCPU needs a 20-byte entry in the KiB below 640 KiB.
pub const MAX_CPUS: u8 = 32;
/// Legacy interrupt lines routed through the IOAPIC.
const IOAPIC_PINS: u8 = 24;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const SPEC_REV: u8 = 4;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;

/// The table's bytes and where they go (at [`EBDA_START`]).
pub fn build(cpus: u8) -> Result<(u64, Vec<u8>), String> {
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(format!("{cpus} vCPUs: the MP table holds 1 to {MAX_CPUS}"));
    }
    let ioapic_id = cpus; // the IOAPIC's id follows the last local APIC id
    let mut entries = Vec::new();
    for cpu in 0..cpus {
        let flags = CPU_ENABLED | if cpu == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        entries.extend([ENTRY_PROCESSOR, cpu, APIC_VERSION, flags]);
        entries.extend(0x600u32.to_le_bytes()); // signature: family 6
        entries.extend(0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend([0u8; 8]);
    }
    entries.extend([ENTRY_BUS, 0]);
    entries.extend(b"ISA   ");
    entries.extend([ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend(IOAPIC_ADDR.to_le_bytes());
    for pin in 0..IOAPIC_PINS {
        entries.extend([
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            pin,
            ioapic_id,
            pin,
        ]);
    }
    // ExtINT on LINT0 and NMI on LINT1 of every local APIC (id 0xff).
    entries.extend([ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend([ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    let entry_count = cpus as u16 + 1 + 1 + IOAPIC_PINS as u16 + 2;

    let table_addr = EBDA_START + 16;
    let mut header = Vec::with_capacity(44);
    header.extend(b"PCMP");
    header.extend(((44 + entries.len()) as u16).to_le_bytes());
    header.extend([SPEC_REV, 0]); // checksum filled below
    header.extend(b"TWINBOX ");
    header.extend(b"MICROVM     ");
    header.extend(0u32.to_le_bytes()); // no OEM table
    header.extend(0u16.to_le_bytes());
    header.extend(entry_count.to_le_bytes());
    header.extend(APIC_ADDR.to_le_bytes());
    header.extend([0u8; 4]); // no extended table
    let mut table = header;
    table.extend(entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(16);
    floating.extend(b"_MP_");
    floating.extend((table_addr as u32).to_le_bytes());
    floating.extend([1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);

    let mut bytes = floating;
    bytes.extend(table);
    if bytes.len() > 1024 {
        return Err(format!(
            "MP table of {} bytes overflows the EBDA",
            bytes.len()
        ));
    }
    Ok((EBDA_START, bytes))
}

/// The byte that makes all bytes sum to zero.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }

    #[test]
    fn floating_pointer_and_table_checksums_hold() {
        let (addr, bytes) = build(4).unwrap();
        assert_eq!(addr, 0x9fc00);
        assert_eq!(&bytes[0..4], b"_MP_");
        assert!(sums_to_zero(&bytes[0..16]));
        let table_addr = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as u64;
        let table = &bytes[(table_addr - addr) as usize..];
        assert_eq!(&table[0..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert!(sums_to_zero(table));
    }

    #[test]
    fn one_processor_entry_per_vcpu_and_only_the_first_boots() {
        let (_, bytes) = build(3).unwrap();
        let table = &bytes[16..];
        let count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(count, 3 + 1 + 1 + 24 + 2);
        let cpus: Vec<(u8, u8)> = (0..3)
            .map(|i| (table[44 + i * 20 + 1], table[44 + i * 20 + 3]))
            .collect();
        assert_eq!(cpus, vec![(0, 3), (1, 1), (2, 1)]);
        // The IOAPIC entry follows the bus entry and takes the next id.
        let ioapic = &table[44 + 3 * 20 + 8..];
        assert_eq!((ioapic[0], ioapic[1]), (ENTRY_IOAPIC, 3));
    }

    #[test]
    fn vcpu_counts_out_of_range_are_refused() {
        assert!(build(0).is_err());
        assert!(build(MAX_CPUS + 1).is_err());
        assert!(build(MAX_CPUS).unwrap().1.len() <= 1024);
    }
}
