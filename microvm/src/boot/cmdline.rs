//! The kernel command line twinbox boots with.

use linux_loader::cmdline::Cmdline;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::arch::x86_64::layout::{CMDLINE_ADDR, CMDLINE_MAX_LEN};

/// What every twinbox guest needs: the console on the 16550, reboot through
/// the i8042 (that is how the VM ends), no PCI scan (there is no PCI), a
/// quiet boot, and the guest init.
pub const BASE: &str = "console=ttyS0 reboot=k panic=-1 pci=off \
     i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd tsc=reliable \
     no_timer_check quiet loglevel=4 rdinit=/twinbox/init";

/// `virtio_mmio.device=4K@0xd0000000:5 ...` for kernels that take their
/// virtio-mmio devices from the command line (VIRTIO_MMIO_CMDLINE_DEVICES);
/// others ignore it and read the ACPI tables.
pub fn virtio_mmio_devices(devices: &[crate::acpi::MmioDeviceInfo]) -> String {
    devices
        .iter()
        .map(|d| {
            format!(
                "virtio_mmio.device={}K@{:#x}:{}",
                d.size >> 10,
                d.base,
                d.irq
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command line: [`BASE`] and then `extra` (later keys win in Linux).
pub fn build(extra: &str) -> Result<Cmdline, BootError> {
    let mut cmdline =
        Cmdline::new(CMDLINE_MAX_LEN).map_err(|e| BootError::Cmdline(e.to_string()))?;
    cmdline
        .insert_str(BASE)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    if !extra.trim().is_empty() {
        cmdline
            .insert_str(extra.trim())
            .map_err(|e| BootError::Cmdline(e.to_string()))?;
    }
    Ok(cmdline)
}

/// Writes the command line to its fixed address; returns its length with the NUL.
pub fn write(mem: &GuestMemoryMmap, cmdline: &Cmdline) -> Result<u32, BootError> {
    linux_loader::loader::load_cmdline(mem, GuestAddress(CMDLINE_ADDR), cmdline)
        .map_err(|e| BootError::Cmdline(e.to_string()))?;
    let len = cmdline
        .as_cstring()
        .map_err(|e| BootError::Cmdline(e.to_string()))?
        .as_bytes_with_nul()
        .len();
    Ok(len as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn base_and_extra_arguments_are_joined() {
        let cmdline = build("loglevel=8 foo=bar").unwrap();
        let text = cmdline.as_cstring().unwrap().into_string().unwrap();
        assert!(text.starts_with("console=ttyS0 reboot=k"));
        assert!(text.ends_with("loglevel=8 foo=bar"));
    }

    #[test]
    fn an_overlong_command_line_is_refused() {
        let long = "x".repeat(CMDLINE_MAX_LEN);
        assert!(build(&long).is_err());
    }

    #[test]
    fn written_command_line_is_nul_terminated() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cmdline = build("").unwrap();
        let len = write(&mem, &cmdline).unwrap() as usize;
        let mut buf = vec![0u8; len];
        mem.read_slice(&mut buf, GuestAddress(CMDLINE_ADDR))
            .unwrap();
        assert_eq!(buf[len - 1], 0);
        assert_eq!(&buf[..len - 1], BASE.as_bytes());
    }
}
