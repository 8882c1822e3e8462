//! The VM half of a lesson. twinbox's own KVM VMM is the default; where it
//! cannot boot a stock kernel (no /dev/kvm, or a PVM host), QEMU runs the same
//! guest (the same kernel, initramfs and init) instead, with KVM where QEMU
//! can use it and software emulation (TCG) otherwise. `auto` picks and says why.

pub mod qemu;
pub mod twinbox;

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use twinbox_engine::container::RunOptions;
use twinbox_engine::image::Image;
use twinbox_engine::store::Store;
use twinbox_microvm::guest::{build_initrd, GuestSpec, Initrd};
use twinbox_microvm::host::{self, GuestKernel, KvmKind};
use twinbox_microvm::instance::{self, Rootfs};

use crate::report::{BackendNote, Measured};
use crate::LessonError;

/// `--vm-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    Twinbox,
    Qemu,
    #[default]
    Auto,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "twinbox" => Ok(BackendChoice::Twinbox),
            "qemu" => Ok(BackendChoice::Qemu),
            "auto" => Ok(BackendChoice::Auto),
            other => Err(format!(
                "unknown VM backend {other:?}: use twinbox, qemu or auto"
            )),
        }
    }
}

/// One VM to boot: the same image config and options a container would get.
pub struct VmRequest<'a> {
    pub store: &'a Store,
    /// The image as the user named it (for the printed command).
    pub image_ref: &'a str,
    pub image: &'a Image,
    pub options: RunOptions,
    pub memory_mib: u64,
    pub vcpus: u8,
    pub boot_timeout: Duration,
    /// How long the workload may run after it started.
    pub run_timeout: Duration,
    /// Set to end the VM early (the lesson measured what it needed).
    pub stop: Arc<AtomicBool>,
    /// The image in the initramfs (the default), or as a disk under an
    /// overlay (`vm run --rootfs disk`), where a container runtime inside can
    /// pivot_root as on any installed system.
    pub rootfs: Rootfs,
}

/// A boot phase as the backend measured it.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub ms: Option<f64>,
}

/// What the VM cost in memory, and what the numbers include.
#[derive(Debug, Clone, Serialize)]
pub struct VmMemory {
    /// Guest RAM as configured: what the VM reserves whether it uses it or not.
    pub configured_bytes: u64,
    /// Resident set of the process that ran the VM.
    pub process_rss: Measured<u64>,
    /// The part of that which is guest RAM the guest touched.
    pub guest_resident: Measured<u64>,
    /// Firecracker's method: process RSS minus resident guest RAM, i.e. what
    /// the VMM itself costs.
    pub vmm_overhead: Measured<u64>,
    /// Plain words: how these were measured and what they include.
    pub method: String,
}

/// How one VM run went.
#[derive(Debug, Clone, Serialize)]
pub struct VmRun {
    pub exit_code: Option<i32>,
    /// The workload's output only (the kernel's console messages are left out).
    pub output: String,
    /// Why there is no exit code, when there is none.
    pub failure: Option<String>,
    /// From the start (before the VMM exists) to the workload's `execve`.
    pub to_workload_ms: Option<f64>,
    pub total_ms: f64,
    pub phases: Vec<Phase>,
    pub memory: VmMemory,
    pub kernel: String,
    pub emulated: bool,
}

/// The guest's boot files, made once per image and reused.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub kernel: PathBuf,
    pub kernel_release: String,
    /// Bytes of the initramfs every boot of this image loads into guest RAM.
    pub initramfs_bytes: u64,
    /// Where it is cached on disk, when it is.
    pub initramfs_cache: Option<PathBuf>,
    pub build_ms: f64,
}

pub trait VmBackend: Send + Sync {
    fn note(&self) -> &BackendNote;

    /// Builds (or finds cached) what the guest boots, before any timing.
    fn prepare(&self, req: &VmRequest) -> Result<Prepared, LessonError>;

    /// The command a student types to do the same by hand.
    fn command_line(&self, req: &VmRequest) -> String;

    /// Whether a server in this backend's VMs can be reached from the host
    /// (a network card on the bridge and `-p`); why not, when it cannot.
    fn serves(&self) -> Result<(), String> {
        Ok(())
    }

    /// Boots, runs the workload to its end; its output goes to `live` as it comes.
    fn run(&self, req: &VmRequest, live: Box<dyn Write + Send>) -> Result<VmRun, LessonError>;
}

/// Picks the backend for `choice` and says why; fails early, with what to do,
/// when the chosen backend cannot work on this host.
pub fn select(choice: BackendChoice) -> Result<Box<dyn VmBackend>, LessonError> {
    let kind = host::kvm_kind();
    let own = instance::check_host(false).map(drop).map_err(|_| match &kind {
        KvmKind::Pvm => "this host's /dev/kvm is PVM (KVM without VT-x/AMD-V), which needs a PVM-enabled guest kernel".to_string(),
        KvmKind::Absent { reason } => format!("no usable KVM: {reason}"),
        other => format!("KVM ({other}) is not usable"),
    });
    match choice {
        BackendChoice::Twinbox => match own {
            Ok(_) => Ok(Box::new(twinbox::OwnVmm::new(
                "chosen with --vm-backend twinbox".into(),
            )?)),
            Err(why) => Err(LessonError::Backend(format!(
                "twinbox's own VMM cannot boot a kernel here ({why}); use --vm-backend qemu or auto"
            ))),
        },
        BackendChoice::Qemu => Ok(Box::new(qemu::Qemu::new(
            "chosen with --vm-backend qemu".into(),
            &kind,
        )?)),
        BackendChoice::Auto => match own {
            Ok(_) => Ok(Box::new(twinbox::OwnVmm::new(format!(
                "Chosen by auto: {} can boot a stock kernel, so twinbox's own VMM runs the VMs",
                kind_words(&kind)
            ))?)),
            Err(why) => {
                let reason = format!(
                    "Chosen by auto: twinbox's own VMM cannot boot a stock kernel on this host ({why}), so QEMU boots the same kernel and initramfs instead"
                );
                Ok(Box::new(qemu::Qemu::new(reason, &kind)?))
            }
        },
    }
}

/// Where the guest helper caches the image part of the initramfs (one file
/// per image, shared by every VM of that image).
/// The guest's initramfs for this request: the image's config and the run
/// options, as `twinbox run` combines them, on the backend's kernel.
fn guest_initrd(req: &VmRequest, kernel: &GuestKernel) -> Result<Initrd, LessonError> {
    let spec = GuestSpec::from_image(req.image, &req.options);
    build_initrd(req.store, req.image, &spec, kernel).map_err(LessonError::Guest)
}

/// `twinbox vm run ...` for the request, as typed.
fn vm_run_line(req: &VmRequest) -> String {
    let line = crate::shell::vm_run(req.image_ref, &req.options, req.memory_mib, req.vcpus);
    match req.rootfs {
        Rootfs::Initramfs => line,
        Rootfs::Disk { .. } => line.replacen("vm run", "vm run --rootfs disk", 1),
    }
}

/// What either backend boots for `req`, and how long building it took.
fn prepare_guest(req: &VmRequest, kernel: &GuestKernel) -> Result<Prepared, LessonError> {
    let t0 = std::time::Instant::now();
    if let Rootfs::Disk { .. } = req.rootfs {
        // the image's disk, built once per image; the initramfs is only the
        // init and the modules, made at boot
        use twinbox_microvm::guest::disk;
        let fs = disk::DiskFs::choose(kernel.modules_dir.as_deref()).map_err(LessonError::Guest)?;
        let disk = disk::root_disk(req.store, req.image, fs).map_err(LessonError::Guest)?;
        return Ok(Prepared {
            kernel: kernel.path.clone(),
            kernel_release: kernel.version.clone(),
            initramfs_bytes: disk.bytes,
            initramfs_cache: Some(disk.path),
            build_ms: t0.elapsed().as_secs_f64() * 1e3,
        });
    }
    let initrd = guest_initrd(req, kernel)?;
    Ok(Prepared {
        kernel: kernel.path.clone(),
        kernel_release: kernel.version.clone(),
        initramfs_bytes: initrd.total_len,
        initramfs_cache: Some(image_part_cache(req)),
        build_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

pub fn image_part_cache(req: &VmRequest) -> PathBuf {
    req.store
        .root()
        .join("cache/initramfs")
        .join(format!("{}.cpio.gz", req.image.manifest_digest.hex()))
}

fn kind_words(kind: &KvmKind) -> String {
    format!("this host's KVM ({kind:?})")
}
