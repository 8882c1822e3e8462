//! Getting a Linux kernel into guest memory: the image (ELF vmlinux or
//! bzImage, through linux-loader), its command line, the initramfs, and the
//! boot information the kernel reads first (the zero page, or PVH start info).

pub mod cmdline;
pub mod params;
pub mod pvh;

use std::fs::File;
use std::path::{Path, PathBuf};

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{BzImage, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::HIMEM_START;
use crate::arch::x86_64::regs::EntryMode;
use crate::host::{detect_format, KernelFormat};

/// What can go wrong while loading a kernel.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot read kernel {path}: {source}")]
    ReadKernel {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is neither a bzImage nor an ELF vmlinux: pass a Linux kernel with --kernel")]
    NotAKernel { path: PathBuf },
    #[error("cannot load kernel {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("initramfs of {size} bytes does not fit below {limit:#x} in {mem_mib} MiB of guest memory: give the VM more --memory")]
    InitrdTooLarge { size: u64, limit: u64, mem_mib: u64 },
    #[error("kernel command line: {0}")]
    Cmdline(String),
    #[error("writing boot data to guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// A kernel placed in guest memory.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    /// Where the kernel's 64-bit entry point is.
    pub entry_64: u64,
    /// The PVH entry from the ELF note, when the kernel has one.
    pub pvh_entry: Option<u64>,
    /// First byte after the kernel image.
    pub end: u64,
    /// The bzImage's setup header, copied into the zero page.
    pub setup_header: Option<setup_header>,
}

/// Offset of startup_64 from the protected-mode code of a bzImage.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

/// Loads `path` at 1 MiB (bzImage) or at its ELF load addresses.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, BootError> {
    let read_err = |source| BootError::ReadKernel {
        path: path.to_path_buf(),
        source,
    };
    let format = detect_format(path)
        .map_err(read_err)?
        .ok_or_else(|| BootError::NotAKernel {
            path: path.to_path_buf(),
        })?;
    let mut file = File::open(path).map_err(read_err)?;
    let load_err = |e: linux_loader::loader::Error| BootError::Load {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let himem = Some(GuestAddress(HIMEM_START));
    match format {
        KernelFormat::Elf => {
            let result = Elf::load(mem, None, &mut file, himem).map_err(load_err)?;
            let pvh_entry = match result.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(addr) => Some(addr.0),
                _ => None,
            };
            Ok(LoadedKernel {
                format,
                entry_64: result.kernel_load.0,
                pvh_entry,
                end: result.kernel_end,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let result = BzImage::load(mem, None, &mut file, himem).map_err(load_err)?;
            Ok(LoadedKernel {
                format,
                entry_64: result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
                pvh_entry: None,
                end: result.kernel_end,
                setup_header: result.setup_header,
            })
        }
    }
}

/// Where an initramfs of `size` bytes goes: as high as possible, page aligned,
/// below `limit` (the kernel's `initrd_addr_max`) and the end of low RAM, and
/// above the kernel.
pub fn initrd_address(
    size: u64,
    kernel_end: u64,
    low_ram_end: u64,
    limit: u64,
) -> Result<u64, BootError> {
    let top = low_ram_end.min(limit.saturating_add(1));
    let too_large = || BootError::InitrdTooLarge {
        size,
        limit: top,
        mem_mib: low_ram_end >> 20,
    };
    let start = top.checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if start < kernel_end {
        return Err(too_large());
    }
    Ok(start)
}

/// Copies the initramfs into guest memory at `addr`.
pub fn load_initrd(mem: &GuestMemoryMmap, addr: u64, initrd: &[u8]) -> Result<(), BootError> {
    mem.write_slice(initrd, GuestAddress(addr))?;
    Ok(())
}

/// How the vCPU enters this kernel: PVH when it has the note and `prefer_pvh`,
/// the 64-bit protocol otherwise.
pub fn entry_mode(
    kernel: &LoadedKernel,
    prefer_pvh: bool,
    zero_page: u64,
    start_info: u64,
) -> EntryMode {
    match kernel.pvh_entry {
        Some(entry) if prefer_pvh => EntryMode::Pvh { entry, start_info },
        _ => EntryMode::Linux64 {
            entry: kernel.entry_64,
            boot_params: zero_page,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initrd_goes_to_the_top_page_aligned() {
        let addr = initrd_address(10_000, 0x200_0000, 256 << 20, 0x37ff_ffff).unwrap();
        assert_eq!(addr, ((256 << 20) - 10_000) & !0xfff);
        assert_eq!(addr % 4096, 0);
    }

    #[test]
    fn initrd_respects_initrd_addr_max() {
        let addr = initrd_address(4096, 0x200_0000, 2 << 30, 0x37ff_ffff).unwrap();
        assert_eq!(addr + 4096, 0x3800_0000);
    }

    #[test]
    fn initrd_too_large_says_what_to_do() {
        let err = initrd_address(300 << 20, 0x200_0000, 256 << 20, u64::MAX).unwrap_err();
        assert!(err.to_string().contains("--memory"), "{err}");
    }

    #[test]
    fn a_file_that_is_no_kernel_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, b"hello").unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 4 << 20)]).unwrap();
        let err = load_kernel(&mem, &path).unwrap_err();
        assert!(err.to_string().contains("notes.txt"), "{err}");
    }
}
