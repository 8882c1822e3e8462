//! The CPUID a vCPU sees: what KVM supports on this host, with the hypervisor
//! bit set and the topology fields (APIC ids, CPU counts) made true for this VM.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX bit 31: "running under a hypervisor".
const HYPERVISOR_BIT: u32 = 1 << 31;
/// Leaf 1 EDX bit 28: more than one logical processor per package.
const HTT_BIT: u32 = 1 << 28;
/// Leaf 1 ECX bit 24: the LAPIC timer has TSC-deadline mode. KVM emulates it
/// (KVM_CAP_TSC_DEADLINE_TIMER) but never lists it in its supported CPUID:
/// the VMM has to offer it, as QEMU and Firecracker do. Without it Linux
/// runs its tick on the LAPIC timer's one-shot mode, calibrated against
/// other clocks; in the nested machine that calibration came out short and
/// the guest took about 860 timer interrupts a second instead of 250 (HZ),
/// each one exits to KVM: the guest kernel ran 4x longer for the same
/// sequential disk read as under QEMU (/proc/stat system time, measured).
const TSC_DEADLINE_BIT: u32 = 1 << 24;
/// Leaf 0xB ECX level types.
const LEVEL_TYPE_THREAD: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Adjusts KVM's supported CPUID for vCPU `cpu_index` of `cpu_count`: each vCPU
/// is one core of one package (no SMT), with APIC id = index, and a
/// TSC-deadline timer where KVM has one (`tsc_deadline`).
pub fn filter(entries: &mut [kvm_cpuid_entry2], cpu_index: u8, cpu_count: u8, tsc_deadline: bool) {
    let apic_id = cpu_index as u32;
    let count = cpu_count.max(1) as u32;
    // Bits needed to number `count` cores: the shift the topology leaves report.
    let core_bits = 32 - (count - 1).leading_zeros();
    for entry in entries.iter_mut() {
        match entry.function {
            0x1 => {
                entry.ecx |= HYPERVISOR_BIT;
                if tsc_deadline {
                    entry.ecx |= TSC_DEADLINE_BIT;
                }
                // EBX: APIC id (31:24), logical CPUs per package (23:16),
                // CLFLUSH line size in 8-byte units (15:8).
                entry.ebx = (apic_id << 24) | (count << 16) | (8 << 8);
                if count > 1 {
                    entry.edx |= HTT_BIT;
                } else {
                    entry.edx &= !HTT_BIT;
                }
            }
            0x4 => {
                // Deterministic cache parameters: EAX 31:26 = cores per package - 1.
                entry.eax = (entry.eax & 0x03ff_ffff) | ((count - 1) << 26);
            }
            0xb => {
                entry.edx = apic_id;
                match entry.index {
                    0 => {
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = (LEVEL_TYPE_THREAD << 8) | entry.index;
                    }
                    1 => {
                        entry.eax = core_bits;
                        entry.ebx = count;
                        entry.ecx = (LEVEL_TYPE_CORE << 8) | entry.index;
                    }
                    _ => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = entry.index;
                    }
                }
            }
            0xd if entry.index == 0 => {
                // EBX is the XSAVE area size for the features enabled in XCR0.
                // Linux enables every feature in EAX at once and checks EBX
                // against its own sum ("XSAVE consistency problem"), so start
                // with the size for all of them (ECX), as QEMU does.
                entry.ebx = entry.ecx;
            }
            0x8000_0008 => {
                // AMD: ECX 7:0 = cores - 1, 15:12 = APIC id size.
                entry.ecx = (entry.ecx & !0xf0ff) | (core_bits << 12) | (count - 1);
            }
            0x8000_001e => {
                // AMD extended APIC id and compute-unit id; one thread per core.
                entry.eax = apic_id;
                entry.ebx = apic_id & 0xff;
                entry.ecx = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0x0000_0001,
            edx: 0x1000_0000,
            ..Default::default()
        }
    }

    #[test]
    fn leaf_one_carries_apic_id_count_and_hypervisor_bit() {
        let mut entries = [entry(1, 0)];
        filter(&mut entries, 3, 4, false);
        assert_eq!(entries[0].ebx >> 24, 3);
        assert_eq!((entries[0].ebx >> 16) & 0xff, 4);
        assert_ne!(entries[0].ecx & HYPERVISOR_BIT, 0);
        assert_eq!(entries[0].ecx & 1, 1, "other feature bits are kept");
        assert_ne!(entries[0].edx & HTT_BIT, 0);
    }

    #[test]
    fn the_tsc_deadline_timer_is_offered_only_where_kvm_has_it() {
        let mut entries = [entry(1, 0)];
        filter(&mut entries, 0, 1, false);
        assert_eq!(entries[0].ecx & TSC_DEADLINE_BIT, 0);
        filter(&mut entries, 0, 1, true);
        assert_ne!(entries[0].ecx & TSC_DEADLINE_BIT, 0);
        assert_ne!(entries[0].ecx & HYPERVISOR_BIT, 0);
    }

    #[test]
    fn a_single_cpu_has_no_htt() {
        let mut entries = [entry(1, 0)];
        filter(&mut entries, 0, 1, false);
        assert_eq!(entries[0].edx & HTT_BIT, 0);
        assert_eq!(entries[0].ebx >> 24, 0);
    }

    #[test]
    fn extended_topology_levels_describe_cores() {
        let mut entries = [entry(0xb, 0), entry(0xb, 1), entry(0xb, 2)];
        filter(&mut entries, 2, 3, false);
        assert!(entries.iter().all(|e| e.edx == 2));
        assert_eq!(
            (entries[0].ebx, entries[0].ecx >> 8),
            (1, LEVEL_TYPE_THREAD)
        );
        assert_eq!(
            (entries[1].eax, entries[1].ebx, entries[1].ecx >> 8),
            (2, 3, LEVEL_TYPE_CORE)
        );
        assert_eq!(entries[2].ebx, 0, "level 2 ends the enumeration");
    }

    #[test]
    fn amd_core_count_is_count_minus_one() {
        let mut entries = [entry(0x8000_0008, 0), entry(0x8000_001e, 0)];
        filter(&mut entries, 1, 2, false);
        assert_eq!(entries[0].ecx & 0xff, 1);
        assert_eq!(entries[1].eax, 1);
    }

    #[test]
    fn xsave_size_covers_every_supported_feature() {
        let mut entries = [kvm_cpuid_entry2 {
            function: 0xd,
            index: 0,
            eax: 7,
            ebx: 0x240,
            ecx: 0x340,
            ..Default::default()
        }];
        filter(&mut entries, 0, 1, false);
        assert_eq!(entries[0].ebx, 0x340);
    }

    #[test]
    fn unrelated_leaves_are_untouched() {
        let mut entries = [entry(7, 0)];
        filter(&mut entries, 1, 2, true);
        assert_eq!(entries[0].eax, 0xffff_ffff);
    }
}
