//! What the host offers the microVM runner: which kind of KVM `/dev/kvm` is
//! (VT-x, AMD-V, PVM or none) and which guest kernels are installed.
//!
//! `twinbox doctor` prints these facts; `vm run` and the lessons use them to
//! decide whether twinbox's VMM can boot a stock kernel here or must say why not.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use twinbox_engine::host::Check;

/// Where KVM lives.
pub const KVM_DEVICE: &str = "/dev/kvm";
/// Loaded kernel modules show up here as directories.
pub const SYS_MODULE_DIR: &str = "/sys/module";
/// Where distributions install kernels.
pub const BOOT_DIR: &str = "/boot";
/// Where distributions install kernel modules, one directory per kernel version.
pub const MODULES_DIR: &str = "/lib/modules";

/// The only KVM API version there has ever been (`KVM_GET_API_VERSION`).
const KVM_API_VERSION: libc::c_int = 12;
/// `_IO(KVMIO, 0x00)` with `KVMIO = 0xAE`.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;

/// The kind of KVM behind `/dev/kvm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KvmKind {
    /// Intel hardware virtualization (`kvm_intel`).
    #[serde(rename = "vtx")]
    VtX,
    /// AMD hardware virtualization (`kvm_amd`).
    #[serde(rename = "amdv")]
    AmdV,
    /// Pagetable-based virtual machines (`kvm_pvm`): KVM without hardware
    /// support, found on hosts that are themselves VMs. Needs a PVM guest kernel.
    Pvm,
    /// `/dev/kvm` works but none of the known modules is loaded (built in, or
    /// another vendor module).
    Unknown,
    /// No usable KVM; `reason` says why in plain words and what to do.
    Absent { reason: String },
}

impl KvmKind {
    /// True when `/dev/kvm` can be opened and used at all.
    pub fn is_present(&self) -> bool {
        !matches!(self, KvmKind::Absent { .. })
    }
}

impl fmt::Display for KvmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvmKind::VtX => f.write_str("VT-x"),
            KvmKind::AmdV => f.write_str("AMD-V"),
            KvmKind::Pvm => f.write_str("PVM"),
            KvmKind::Unknown => f.write_str("unknown"),
            KvmKind::Absent { reason } => write!(f, "absent ({reason})"),
        }
    }
}

/// Which KVM this host has: opens `/dev/kvm` read-write, asks its API version,
/// and looks at the loaded modules under `/sys/module`.
pub fn kvm_kind() -> KvmKind {
    kvm_kind_at(Path::new(KVM_DEVICE), Path::new(SYS_MODULE_DIR))
}

/// [`kvm_kind`] with the device and the module directory given (for tests).
pub fn kvm_kind_at(device: &Path, sys_module: &Path) -> KvmKind {
    if !device.exists() {
        return KvmKind::Absent {
            reason: format!(
                "no {}: load kvm_intel or kvm_amd, or use a host with virtualization",
                device.display()
            ),
        };
    }
    let file = match OpenOptions::new().read(true).write(true).open(device) {
        Ok(f) => f,
        Err(e) => {
            return KvmKind::Absent {
                reason: format!(
                    "cannot open {}: {e}: run as root or join the kvm group",
                    device.display()
                ),
            }
        }
    };
    if is_char_device(&file) {
        // SAFETY: KVM_GET_API_VERSION only returns an int; its argument must be 0
        // (KVM answers EINVAL otherwise, so it is passed explicitly rather than
        // left to whatever the variadic register holds). The fd is valid here.
        let version = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                KVM_GET_API_VERSION as _,
                0 as libc::c_ulong,
            )
        };
        if version != KVM_API_VERSION {
            let why = if version < 0 {
                io::Error::last_os_error().to_string()
            } else {
                format!("API version {version}, expected {KVM_API_VERSION}")
            };
            return KvmKind::Absent {
                reason: format!(
                    "{} does not answer like KVM ({why}): check the kvm modules",
                    device.display()
                ),
            };
        }
    }
    kind_from_modules(sys_module)
}

fn is_char_device(file: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    file.metadata()
        .map(|m| m.file_type().is_char_device())
        .unwrap_or(false)
}

/// Decide the kind from the loaded modules. PVM wins: a PVM host may also have
/// `kvm_intel` or `kvm_amd` loaded without hardware support behind them.
fn kind_from_modules(sys_module: &Path) -> KvmKind {
    if sys_module.join("kvm_pvm").exists() {
        KvmKind::Pvm
    } else if sys_module.join("kvm_intel").exists() {
        KvmKind::VtX
    } else if sys_module.join("kvm_amd").exists() {
        KvmKind::AmdV
    } else {
        KvmKind::Unknown
    }
}

/// Whether twinbox's VMM can boot a stock distribution kernel on this KVM.
/// `Err` carries the reason in plain words, with what to do instead.
pub fn can_boot_stock_kernel(kind: &KvmKind) -> Result<(), String> {
    match kind {
        KvmKind::Absent { reason } => Err(format!("no usable KVM: {reason}")),
        KvmKind::Pvm => Err(PVM_HINT.to_string()),
        KvmKind::VtX | KvmKind::AmdV | KvmKind::Unknown => Ok(()),
    }
}

/// Why a stock kernel does not boot under PVM, and what to do.
pub const PVM_HINT: &str = "PVM needs a PVM-enabled guest kernel: a stock distribution kernel \
     stops with an emulation failure; pass one with --kernel, or use a host with VT-x/AMD-V";

/// How a kernel image is packaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelFormat {
    /// x86 boot protocol image (`vmlinuz`): "HdrS" at offset 0x202.
    BzImage,
    /// Uncompressed ELF (`vmlinux`).
    Elf,
}

impl fmt::Display for KernelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelFormat::BzImage => f.write_str("bzImage"),
            KernelFormat::Elf => f.write_str("ELF"),
        }
    }
}

/// Offset of the "HdrS" boot protocol magic in a bzImage.
const BZIMAGE_MAGIC_OFFSET: u64 = 0x202;

/// Detect a kernel image's format from its magic bytes. `Ok(None)` when the file
/// is readable but neither a bzImage nor an ELF file.
pub fn detect_format(path: &Path) -> io::Result<Option<KernelFormat>> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 4];
    if read_full(&mut file, &mut head)? && head == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    file.seek(SeekFrom::Start(BZIMAGE_MAGIC_OFFSET))?;
    let mut magic = [0u8; 4];
    if read_full(&mut file, &mut magic)? && magic == *b"HdrS" {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// Fill `buf`; false when the file ends first.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<bool> {
    match file.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// A guest kernel found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestKernel {
    pub path: PathBuf,
    /// The kernel release, from the file name (`vmlinuz-6.1.0-18-amd64` → `6.1.0-18-amd64`).
    pub version: String,
    /// `/lib/modules/<version>` when it exists (the virtio drivers of stock
    /// kernels are modules).
    pub modules_dir: Option<PathBuf>,
    pub format: KernelFormat,
}

/// The kernels installed in `/boot` (`vmlinuz-*`, `vmlinux-*`), newest first.
/// Files that cannot be read (e.g. mode 0600 when not root) or are not kernel
/// images are skipped.
pub fn find_kernels() -> Vec<GuestKernel> {
    find_kernels_in(Path::new(BOOT_DIR), Path::new(MODULES_DIR))
}

/// [`find_kernels`] with the directories given (for tests).
pub fn find_kernels_in(boot: &Path, modules_root: &Path) -> Vec<GuestKernel> {
    let Ok(entries) = fs::read_dir(boot) else {
        return Vec::new();
    };
    let mut kernels: Vec<GuestKernel> = entries
        .flatten()
        .filter_map(|entry| {
            let version = kernel_version_from_name(&entry.file_name())?;
            let path = entry.path();
            if !path.is_file() {
                return None;
            }
            let format = detect_format(&path).ok().flatten()?;
            let modules = modules_root.join(&version);
            Some(GuestKernel {
                modules_dir: modules.is_dir().then_some(modules),
                path,
                version,
                format,
            })
        })
        .collect();
    kernels
        .sort_by(|a, b| compare_versions(&b.version, &a.version).then_with(|| a.path.cmp(&b.path)));
    kernels
}

/// The release in a kernel file name: `vmlinuz-<release>` or `vmlinux-<release>`.
/// `None` for other names, an empty release, and backup copies (`.old`, `.bak`,
/// `.dpkg-*`).
pub fn kernel_version_from_name(name: &OsStr) -> Option<String> {
    let name = name.to_str()?;
    let version = name
        .strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))?;
    let backup = [".old", ".bak", ".sig"]
        .iter()
        .any(|s| version.ends_with(s))
        || version.contains(".dpkg-");
    if version.is_empty() || backup {
        return None;
    }
    Some(version.to_string())
}

/// Order kernel releases by their numbers (`6.10.0` after `6.9.2`), then as text.
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn numbers(s: &str) -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    }
    numbers(a).cmp(&numbers(b)).then_with(|| a.cmp(b))
}

/// The microVM side of `twinbox doctor`: KVM, guest kernels, QEMU.
pub fn checks() -> Vec<Check> {
    let kvm = kvm_kind();
    vec![check_kvm(&kvm), check_guest_kernels(&kvm), check_qemu()]
}

fn check_kvm(kind: &KvmKind) -> Check {
    const NAME: &str = "kvm";
    match kind {
        KvmKind::VtX | KvmKind::AmdV => Check::ok(NAME, format!("/dev/kvm ({kind})")),
        KvmKind::Unknown => Check::ok(
            NAME,
            "/dev/kvm (kind unknown: no kvm_intel, kvm_amd or kvm_pvm module)",
        ),
        KvmKind::Pvm => Check::warn(NAME, "/dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V)", PVM_HINT),
        KvmKind::Absent { reason } => Check::warn(
            NAME,
            reason.clone(),
            "VM lessons fall back to QEMU (software emulation)",
        ),
    }
}

fn check_guest_kernels(kind: &KvmKind) -> Check {
    const NAME: &str = "guest kernel";
    let kernels = find_kernels();
    if kernels.is_empty() {
        let mut hint = "install linux-image-amd64 or pass --kernel".to_string();
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            hint.push_str(" (as non-root, /boot/vmlinuz-* may be unreadable)");
        }
        return Check::warn(NAME, format!("none in {}", BOOT_DIR), hint);
    }
    let found: Vec<String> = kernels
        .iter()
        .map(|k| {
            let modules = if k.modules_dir.is_some() {
                ", modules"
            } else {
                ", no modules"
            };
            format!("{} ({}{modules})", k.path.display(), k.format)
        })
        .collect();
    let detail = found.join(", ");
    if let Err(why) = can_boot_stock_kernel(kind) {
        return Check::warn(
            NAME,
            format!("{detail}; stock kernels will not boot here"),
            why,
        );
    }
    if kernels.iter().all(|k| k.modules_dir.is_none()) {
        return Check::warn(
            NAME,
            detail,
            format!(
                "no {}/<version> for these kernels: stock kernels load their virtio drivers as modules; install the matching linux-image package",
                MODULES_DIR
            ),
        );
    }
    Check::ok(NAME, detail)
}

fn check_qemu() -> Check {
    match twinbox_engine::util::path::find_in_path("qemu-system-x86_64") {
        Some(p) => Check::ok("qemu", p.display().to_string()),
        None => Check::warn(
            "qemu",
            "qemu-system-x86_64 not on PATH",
            "apt-get install qemu-system-x86 (the VM fallback and the peer VMM)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        p
    }

    fn bzimage_bytes() -> Vec<u8> {
        let mut data = vec![0u8; 0x400];
        data[0x1fe] = 0x55;
        data[0x1ff] = 0xaa;
        data[0x202..0x206].copy_from_slice(b"HdrS");
        data
    }

    fn elf_bytes() -> Vec<u8> {
        let mut data = b"\x7fELF\x02\x01\x01".to_vec();
        data.resize(128, 0);
        data
    }

    #[test]
    fn detects_bzimage_and_elf() {
        let dir = tempfile::tempdir().unwrap();
        let bz = write(dir.path(), "bz", &bzimage_bytes());
        let elf = write(dir.path(), "elf", &elf_bytes());
        assert_eq!(detect_format(&bz).unwrap(), Some(KernelFormat::BzImage));
        assert_eq!(detect_format(&elf).unwrap(), Some(KernelFormat::Elf));
    }

    #[test]
    fn rejects_other_and_short_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty", b"");
        let short = write(dir.path(), "short", b"\x7fEL");
        let text = write(dir.path(), "text", &[b'x'; 0x300]);
        // "HdrS" at the wrong offset is not a bzImage.
        let mut shifted = vec![0u8; 0x300];
        shifted[0x200..0x204].copy_from_slice(b"HdrS");
        let shifted = write(dir.path(), "shifted", &shifted);
        for p in [empty, short, text, shifted] {
            assert_eq!(detect_format(&p).unwrap(), None, "{}", p.display());
        }
        assert!(detect_format(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn parses_versions_from_file_names() {
        let v = |s: &str| kernel_version_from_name(&OsString::from(s));
        assert_eq!(
            v("vmlinuz-6.1.0-18-amd64").as_deref(),
            Some("6.1.0-18-amd64")
        );
        assert_eq!(v("vmlinux-6.18.44-fc").as_deref(), Some("6.18.44-fc"));
        assert_eq!(v("vmlinuz-"), None);
        assert_eq!(v("vmlinuz"), None);
        assert_eq!(v("initrd.img-6.1.0-18-amd64"), None);
        assert_eq!(v("config-6.1.0-18-amd64"), None);
        assert_eq!(v("vmlinuz-6.1.0-17-amd64.old"), None);
        assert_eq!(v("vmlinuz-6.1.0-17-amd64.dpkg-tmp"), None);
    }

    #[test]
    fn finds_kernels_with_modules_newest_first() {
        let boot = tempfile::tempdir().unwrap();
        let modules = tempfile::tempdir().unwrap();
        write(boot.path(), "vmlinuz-6.1.0-9-amd64", &bzimage_bytes());
        write(boot.path(), "vmlinuz-6.1.0-18-amd64", &bzimage_bytes());
        write(boot.path(), "vmlinux-6.18.0-pvm", &elf_bytes());
        write(boot.path(), "vmlinuz-5.10.0-broken", b"not a kernel");
        write(boot.path(), "System.map-6.1.0-18-amd64", b"");
        fs::create_dir(modules.path().join("6.1.0-18-amd64")).unwrap();

        let found = find_kernels_in(boot.path(), modules.path());
        let versions: Vec<&str> = found.iter().map(|k| k.version.as_str()).collect();
        assert_eq!(versions, ["6.18.0-pvm", "6.1.0-18-amd64", "6.1.0-9-amd64"]);
        assert_eq!(found[0].format, KernelFormat::Elf);
        assert_eq!(found[0].modules_dir, None);
        assert_eq!(found[1].format, KernelFormat::BzImage);
        assert_eq!(
            found[1].modules_dir.as_deref(),
            Some(modules.path().join("6.1.0-18-amd64").as_path())
        );
        assert_eq!(found[1].path, boot.path().join("vmlinuz-6.1.0-18-amd64"));
    }

    #[test]
    fn missing_boot_dir_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_kernels_in(&dir.path().join("nope"), dir.path()).is_empty());
    }

    #[test]
    fn display_strings() {
        assert_eq!(KvmKind::VtX.to_string(), "VT-x");
        assert_eq!(KvmKind::AmdV.to_string(), "AMD-V");
        assert_eq!(KvmKind::Pvm.to_string(), "PVM");
        assert_eq!(KvmKind::Unknown.to_string(), "unknown");
        let absent = KvmKind::Absent {
            reason: "no /dev/kvm".into(),
        };
        assert_eq!(absent.to_string(), "absent (no /dev/kvm)");
        assert_eq!(KernelFormat::BzImage.to_string(), "bzImage");
        assert_eq!(KernelFormat::Elf.to_string(), "ELF");
    }

    #[test]
    fn serializes_with_a_kind_tag() {
        let j = |k: &KvmKind| serde_json::to_string(k).unwrap();
        assert_eq!(j(&KvmKind::VtX), r#"{"kind":"vtx"}"#);
        assert_eq!(j(&KvmKind::Pvm), r#"{"kind":"pvm"}"#);
        assert_eq!(
            j(&KvmKind::Absent { reason: "x".into() }),
            r#"{"kind":"absent","reason":"x"}"#
        );
    }

    #[test]
    fn missing_device_is_absent_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let kind = kvm_kind_at(&dir.path().join("kvm"), dir.path());
        match &kind {
            KvmKind::Absent { reason } => {
                assert!(reason.starts_with("no "), "{reason}");
                assert!(reason.contains("load kvm_intel or kvm_amd"), "{reason}");
            }
            other => panic!("expected Absent, got {other:?}"),
        }
        assert!(!kind.is_present());
        assert!(can_boot_stock_kernel(&kind).is_err());
    }

    #[test]
    fn modules_decide_the_kind_pvm_first() {
        let sys = tempfile::tempdir().unwrap();
        // A regular file stands in for the device: no ioctl is tried on it.
        let dev = write(sys.path(), "kvm-device", b"");
        assert_eq!(kvm_kind_at(&dev, sys.path()), KvmKind::Unknown);
        fs::create_dir(sys.path().join("kvm_amd")).unwrap();
        assert_eq!(kvm_kind_at(&dev, sys.path()), KvmKind::AmdV);
        fs::create_dir(sys.path().join("kvm_intel")).unwrap();
        assert_eq!(kvm_kind_at(&dev, sys.path()), KvmKind::VtX);
        fs::create_dir(sys.path().join("kvm_pvm")).unwrap();
        assert_eq!(kvm_kind_at(&dev, sys.path()), KvmKind::Pvm);
    }

    #[test]
    fn stock_kernels_boot_only_with_hardware_kvm() {
        assert!(can_boot_stock_kernel(&KvmKind::VtX).is_ok());
        assert!(can_boot_stock_kernel(&KvmKind::AmdV).is_ok());
        assert!(can_boot_stock_kernel(&KvmKind::Unknown).is_ok());
        let pvm = can_boot_stock_kernel(&KvmKind::Pvm).unwrap_err();
        assert!(
            pvm.starts_with("PVM needs a PVM-enabled guest kernel"),
            "{pvm}"
        );
        assert!(pvm.contains("--kernel"), "{pvm}");
    }
}
