//! ACPI tables for a hardware-reduced machine, as Firecracker describes its
//! microVMs: RSDP → XSDT → FADT (HW_REDUCED_ACPI, pointing at the DSDT) and
//! MADT (local APICs and the IOAPIC). The DSDT names the legacy devices and
//! each virtio-mmio device as `LNRO0005`, the ACPI id Linux's virtio_mmio
//! driver binds to: stock kernels find the disks and NICs without
//! `virtio_mmio.device=` on the command line.
//!
//! The tables sit in the BIOS area at 0xe0000, where Linux scans for the RSDP
//! (and the boot parameters say so as well); the e820 map keeps the area out
//! of the guest's RAM.

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use crate::arch::x86_64::layout::{APIC_ADDR, IOAPIC_ADDR};

/// Where the RSDP goes; the other tables follow it.
pub const RSDP_ADDR: u64 = 0x000e_0000;
/// The tables must end below 1 MiB.
const AREA_END: u64 = 0x0010_0000;

const OEM_ID: [u8; 6] = *b"TWINBX";
const OEM_REVISION: u32 = 1;

// IA-PC boot architecture flags (FADT): an i8042 is there, no VGA, no MSI.
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;

/// A virtio-mmio device as the DSDT describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDeviceInfo {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
}

/// All tables as one block of bytes to be written at [`RSDP_ADDR`].
pub fn build(vcpus: u8, devices: &[MmioDeviceInfo]) -> Result<Vec<u8>, String> {
    let mut blob = Vec::new();
    let place = |blob: &mut Vec<u8>, bytes: &[u8]| -> u64 {
        blob.resize(blob.len().next_multiple_of(16), 0);
        let addr = RSDP_ADDR + blob.len() as u64;
        blob.extend_from_slice(bytes);
        addr
    };
    // The RSDP comes first; its XSDT address is filled in at the end.
    blob.resize(Rsdp::len(), 0);

    let dsdt_addr = place(&mut blob, dsdt(devices)?.as_slice());
    let fadt_addr = place(&mut blob, &to_bytes(&fadt(dsdt_addr)));
    let madt_addr = place(&mut blob, &to_bytes(&madt(vcpus)));
    let mut xsdt = XSDT::new(OEM_ID, *b"TWINXSDT", OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt_addr = place(&mut blob, &to_bytes(&xsdt));
    blob[..Rsdp::len()].copy_from_slice(&to_bytes(&Rsdp::new(OEM_ID, xsdt_addr)));

    if RSDP_ADDR + blob.len() as u64 > AREA_END {
        return Err(format!(
            "ACPI tables of {} bytes do not fit below 1 MiB",
            blob.len()
        ));
    }
    Ok(blob)
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

fn fadt(dsdt_addr: u64) -> acpi_tables::fadt::FADT {
    let mut fadt = FADTBuilder::new(OEM_ID, *b"TWINFADT", OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = (IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED).into();
    fadt.finalize()
}

/// One local APIC per vCPU (APIC id = index) and the IOAPIC with GSIs from
/// 0, its id following the last APIC's as in the MP table.
fn madt(vcpus: u8) -> MADT {
    let mut madt = MADT::new(
        OEM_ID,
        *b"TWINMADT",
        OEM_REVISION,
        LocalInterruptController::Address(APIC_ADDR),
    );
    for cpu in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(vcpus, IOAPIC_ADDR, 0));
    madt
}

fn dsdt(devices: &[MmioDeviceInfo]) -> Result<Sdt, String> {
    let mut body = Vec::new();
    legacy_devices(&mut body);
    for (index, d) in devices.iter().enumerate() {
        let base =
            u32::try_from(d.base).map_err(|_| format!("MMIO base {:#x} above 4 GiB", d.base))?;
        let size = u32::try_from(d.size).map_err(|_| format!("MMIO size {:#x}", d.size))?;
        // ACPI names are four characters: V000..VFFF.
        if index > 0xfff {
            return Err(format!("{} virtio devices: at most 4096", devices.len()));
        }
        let path = format!("_SB_.V{index:03X}");
        let uid = index as u32;
        let window = aml::Memory32Fixed::new(true, base, size);
        // consumer, edge-triggered, active high, exclusive: an irqfd pulse.
        let irq = aml::Interrupt::new(true, true, false, false, d.irq);
        let resources = aml::ResourceTemplate::new(vec![&window, &irq]);
        aml::Device::new(
            path.as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"LNRO0005"),
                &aml::Name::new("_UID".into(), &uid),
                &aml::Name::new("_CCA".into(), &aml::ONE),
                &aml::Name::new("_CRS".into(), &resources),
            ],
        )
        .to_aml_bytes(&mut body);
    }
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, *b"TWINDSDT", OEM_REVISION);
    dsdt.append_slice(&body);
    Ok(dsdt)
}

/// The 16550 on COM1 and the i8042, so the kernel finds them through ACPI
/// as it would on a PC.
fn legacy_devices(body: &mut Vec<u8>) {
    let (irq4, ports) = (
        aml::Interrupt::new(true, true, false, false, 4),
        aml::IO::new(0x3f8, 0x3f8, 1, 8),
    );
    let com1 = aml::ResourceTemplate::new(vec![&irq4, &ports]);
    aml::Device::new(
        "_SB_.COM1".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
            &aml::Name::new("_UID".into(), &aml::ONE),
            &aml::Name::new("_CRS".into(), &com1),
        ],
    )
    .to_aml_bytes(body);
    let (data, command, irq1) = (
        aml::IO::new(0x60, 0x60, 1, 1),
        aml::IO::new(0x64, 0x64, 1, 1),
        aml::Interrupt::new(true, true, false, false, 1),
    );
    let ps2 = aml::ResourceTemplate::new(vec![&data, &command, &irq1]);
    aml::Device::new(
        "_SB_.PS2_".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0303")),
            &aml::Name::new("_CRS".into(), &ps2),
        ],
    )
    .to_aml_bytes(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(bytes: &[u8]) -> bool {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The table at guest address `addr`, by its header's length.
    fn table(blob: &[u8], addr: u64) -> &[u8] {
        let at = (addr - RSDP_ADDR) as usize;
        let len = u32_at(blob, at + 4) as usize;
        &blob[at..at + len]
    }

    fn devices() -> Vec<MmioDeviceInfo> {
        vec![
            MmioDeviceInfo {
                base: 0xd000_0000,
                size: 0x1000,
                irq: 5,
            },
            MmioDeviceInfo {
                base: 0xd000_1000,
                size: 0x1000,
                irq: 6,
            },
        ]
    }

    #[test]
    fn rsdp_xsdt_and_every_table_check_out() {
        let blob = build(2, &devices()).unwrap();
        assert_eq!(&blob[0..8], b"RSD PTR ");
        assert!(sums_to_zero(&blob[0..20]), "ACPI 1.0 checksum");
        assert!(sums_to_zero(&blob[0..36]), "extended checksum");
        assert_eq!(blob[15], 2, "revision 2: an XSDT");
        let xsdt = table(&blob, u64_at(&blob, 24));
        assert_eq!(&xsdt[0..4], b"XSDT");
        assert!(sums_to_zero(xsdt));
        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|at| u64_at(xsdt, at))
            .collect();
        let signatures: Vec<&[u8]> = entries.iter().map(|&a| &table(&blob, a)[0..4]).collect();
        assert_eq!(signatures, [b"FACP", b"APIC"]);
        for &addr in &entries {
            assert!(sums_to_zero(table(&blob, addr)));
        }
        assert!(RSDP_ADDR + (blob.len() as u64) <= AREA_END);
    }

    #[test]
    fn fadt_is_hardware_reduced_and_points_at_the_dsdt() {
        let blob = build(1, &devices()).unwrap();
        let xsdt = table(&blob, u64_at(&blob, 24));
        let fadt = table(&blob, u64_at(xsdt, 36));
        assert_ne!(u32_at(fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(fadt[109] & IAPC_8042 as u8, 0);
        let dsdt = table(&blob, u64_at(fadt, 140));
        assert_eq!(&dsdt[0..4], b"DSDT");
        assert!(sums_to_zero(dsdt));
    }

    #[test]
    fn madt_lists_each_cpu_and_the_ioapic() {
        let blob = build(3, &[]).unwrap();
        let xsdt = table(&blob, u64_at(&blob, 24));
        let madt = table(&blob, u64_at(xsdt, 44));
        assert_eq!(u32_at(madt, 36), APIC_ADDR);
        let mut at = 44;
        let mut apics = Vec::new();
        let mut ioapic = None;
        while at < madt.len() {
            let (kind, len) = (madt[at], madt[at + 1] as usize);
            match kind {
                0 => apics.push((madt[at + 2], madt[at + 3], u32_at(madt, at + 4))),
                1 => ioapic = Some((madt[at + 2], u32_at(madt, at + 4), u32_at(madt, at + 8))),
                other => panic!("unexpected MADT entry {other}"),
            }
            at += len;
        }
        assert_eq!(apics, [(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        assert_eq!(ioapic, Some((3, IOAPIC_ADDR, 0)));
    }

    #[test]
    fn dsdt_names_each_virtio_device_with_its_window_and_irq() {
        let blob = build(1, &devices()).unwrap();
        let xsdt = table(&blob, u64_at(&blob, 24));
        let fadt = table(&blob, u64_at(xsdt, 36));
        let dsdt = table(&blob, u64_at(fadt, 140));
        let find_all = |needle: &[u8]| {
            dsdt.windows(needle.len())
                .enumerate()
                .filter(|(_, w)| *w == needle)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(find_all(b"LNRO0005\0").len(), 2);
        assert_eq!(find_all(b"V000").len(), 1);
        assert_eq!(find_all(b"V001").len(), 1);
        // Memory32Fixed: tag 0x86, length 9, read-write, base, size.
        for (base, irq) in [(0xd000_0000u32, 5u32), (0xd000_1000, 6)] {
            let mut mem = vec![0x86, 9, 0, 1];
            mem.extend(base.to_le_bytes());
            mem.extend(0x1000u32.to_le_bytes());
            assert_eq!(find_all(&mem).len(), 1, "{base:#x}");
            // Extended interrupt: tag 0x89, length 6, consumer + edge, one IRQ.
            let mut int = vec![0x89, 6, 0, 0b11, 1];
            int.extend(irq.to_le_bytes());
            assert_eq!(find_all(&int).len(), 1, "irq {irq}");
        }
        assert_eq!(find_all(b"COM1").len(), 1);
    }

    #[test]
    fn too_many_devices_do_not_overflow_the_bios_area() {
        // 3000 devices have names but not room below 1 MiB; 5000 not even names.
        for count in [3000, 5000] {
            let many: Vec<MmioDeviceInfo> = (0..count)
                .map(|i| MmioDeviceInfo {
                    base: 0xd000_0000 + i * 0x1000,
                    size: 0x1000,
                    irq: 5,
                })
                .collect();
            assert!(build(1, &many).is_err(), "{count}");
        }
    }
}
