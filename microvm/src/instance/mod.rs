//! VMs as users manage them, symmetric with containers: a request in, a
//! running or finished VM out ([`run`]), the record per VM in the store
//! (`vms/<id>/`) with its console log, and the verbs `vm ps/stop/rm` on it.

pub mod ending;
pub mod network;
pub mod record;
pub mod recover;
pub mod run;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use twinbox_engine::container::names;
use twinbox_engine::store::{Store, StoreError};
use twinbox_engine::util::time::now_rfc3339;

use crate::host::{self, GuestKernel, KvmKind};
use crate::vmm::{self, VmEnd, VmmError};
pub use ending::Ending;
pub use record::{VmRecord, VmState};
pub use run::{run, stop_on_signals, vmm_main, Finished, Mode, Rootfs, RunRequest, Started};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("no usable KVM on this host: {0}")]
    NoKvm(String),
    #[error("this host's /dev/kvm is PVM (kvm_pvm, KVM without VT-x/AMD-V): {hint}")]
    PvmStockKernel { hint: &'static str },
    #[error("no guest kernel found in /boot: install one (apt-get install linux-image-amd64) or pass --kernel PATH")]
    NoKernel,
    #[error("kernel {path}: {detail}")]
    BadKernel { path: PathBuf, detail: String },
    #[error("no such VM: {0}")]
    NotFound(String),
    #[error("VM name {0:?} is already in use: remove it with `twinbox vm rm {0}` or choose another --name")]
    NameInUse(String),
    #[error("VM {0} is running: stop it first or use `vm rm -f`")]
    Running(String),
    #[error("invalid VM name {0:?}: use letters, digits, '_', '.', '-' (2-128 characters)")]
    BadName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Vmm(#[from] VmmError),
    #[error("cannot build the guest's initramfs")]
    Guest(#[from] crate::guest::GuestError),
    #[error(transparent)]
    Qemu(#[from] crate::qemu::QemuError),
    #[error("{0}")]
    Detached(String),
    #[error("cannot make the VM's disks")]
    Disk(#[source] crate::guest::GuestError),
    #[error("{0}")]
    Unsupported(&'static str),
    #[error(transparent)]
    Network(#[from] network::VmNetworkError),
}

type Result<T> = std::result::Result<T, InstanceError>;

/// Which VMM boots a VM: twinbox's own, or QEMU (KVM where KVM can boot a
/// stock kernel, software emulation otherwise), with the same disks, network
/// and record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Twinbox,
    Qemu,
}

pub fn vms_dir(store: &Store) -> PathBuf {
    store.root().join("vms")
}

/// Refuses hosts where twinbox's VMM cannot boot a stock kernel, before
/// anything boots: no KVM at all, or PVM without a kernel chosen by the user.
pub fn check_host(kernel_given: bool) -> Result<KvmKind> {
    match host::kvm_kind() {
        KvmKind::Absent { reason } => Err(InstanceError::NoKvm(reason)),
        KvmKind::Pvm if !kernel_given => Err(InstanceError::PvmStockKernel {
            hint: host::PVM_HINT,
        }),
        kind => Ok(kind),
    }
}

/// The kernel to boot: `explicit` when given, else the newest in /boot.
pub fn choose_kernel(explicit: Option<&Path>) -> Result<GuestKernel> {
    let Some(path) = explicit else {
        return host::find_kernels()
            .into_iter()
            .next()
            .ok_or(InstanceError::NoKernel);
    };
    let bad = |detail: String| InstanceError::BadKernel {
        path: path.to_path_buf(),
        detail,
    };
    let format = host::detect_format(path)
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("not a bzImage or ELF vmlinux".into()))?;
    let version = path
        .file_name()
        .and_then(host::kernel_version_from_name)
        .unwrap_or_else(|| "custom".into());
    let modules = Path::new(host::MODULES_DIR).join(&version);
    Ok(GuestKernel {
        path: path.to_path_buf(),
        modules_dir: modules.is_dir().then_some(modules),
        version,
        format,
    })
}

/// What a new VM record says about itself.
pub struct NewVm<'a> {
    pub name: Option<&'a str>,
    pub image: &'a str,
    pub image_id: String,
    pub kernel: &'a GuestKernel,
    pub kernel_args: String,
    pub memory_mib: u64,
    pub vcpus: u8,
    pub command: Vec<String>,
    pub auto_remove: bool,
    pub backend: Backend,
}

/// Writes the record of a new VM (state Created) and its directory.
pub fn create(store: &Store, new: NewVm) -> Result<VmRecord> {
    let dir = vms_dir(store);
    fs::create_dir_all(&dir).map_err(|source| InstanceError::Io {
        what: "creating",
        path: dir.clone(),
        source,
    })?;
    let _lock = store.lock()?;
    let existing = list(store)?;
    let name = match new.name {
        Some(name) => {
            names::validate_name(name).map_err(|_| InstanceError::BadName(name.to_string()))?
        }
        None => names::unused_random_name(|n| existing.iter().any(|vm| vm.name == n)),
    };
    if existing.iter().any(|vm| vm.name == name) {
        return Err(InstanceError::NameInUse(name));
    }
    let record = VmRecord {
        id: names::new_id(),
        name,
        image: new.image.to_string(),
        image_id: new.image_id,
        kernel: new.kernel.path.clone(),
        kernel_version: new.kernel.version.clone(),
        kernel_args: new.kernel_args,
        memory_mib: new.memory_mib,
        vcpus: new.vcpus,
        command: new.command,
        created: now_rfc3339(),
        auto_remove: new.auto_remove,
        owner: Some(std::process::id() as i32),
        state: VmState::Created,
        network: None,
        backend: new.backend,
    };
    let vm_dir = VmRecord::dir(&dir, &record.id);
    fs::create_dir_all(&vm_dir).map_err(|source| InstanceError::Io {
        what: "creating",
        path: vm_dir,
        source,
    })?;
    record.save(&dir)?;
    twinbox_engine::fault::point("vm.created");
    Ok(record)
}

/// Records an end that came without an outcome (the VMM failed to start).
fn finish(
    store: &Store,
    record: &mut VmRecord,
    exit_code: Option<i32>,
    end: VmEnd,
    memory: Option<vmm::VmmMemory>,
) -> Result<()> {
    release_network(store, record);
    record.state = VmState::Exited {
        exit_code,
        end,
        finished: now_rfc3339(),
        timings: vmm::Timings::default(),
        memory,
    };
    if record.auto_remove {
        remove_dir(store, &record.id)
    } else {
        record.save(&vms_dir(store))
    }
}

/// Every VM record, oldest first.
pub fn list(store: &Store) -> Result<Vec<VmRecord>> {
    let dir = vms_dir(store);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut vms: Vec<VmRecord> = entries
        .flatten()
        .filter_map(|e| VmRecord::load(&dir, &e.file_name().to_string_lossy()).ok())
        .collect();
    vms.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(vms)
}

/// A VM by exact name, full id, or unique id prefix.
pub fn find(store: &Store, key: &str) -> Result<VmRecord> {
    let vms = list(store)?;
    if let Some(vm) = vms.iter().find(|vm| vm.name == key || vm.id == key) {
        return Ok(vm.clone());
    }
    let mut matches = vms.into_iter().filter(|vm| vm.id.starts_with(key));
    match (matches.next(), matches.next()) {
        (Some(vm), None) if !key.is_empty() => Ok(vm),
        _ => Err(InstanceError::NotFound(key.to_string())),
    }
}

/// Stops a running VM: SIGTERM to its VMM (which stops the vCPUs and records
/// the end), SIGKILL after `grace`. Returns false when it was not running.
pub fn stop(store: &Store, record: &VmRecord, grace: Duration) -> Result<bool> {
    let VmState::Running { pid, .. } = record.state else {
        return Ok(false);
    };
    if !record.is_running() {
        return Ok(false);
    }
    // SAFETY: plain kill(2) on a pid we just confirmed is our VMM.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while record_running(store, &record.id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if record_running(store, &record.id) {
        // SAFETY: as above; the VMM ignored SIGTERM for the whole grace period.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut dead = record.clone();
        finish(store, &mut dead, None, VmEnd::Stopped, None)?;
    }
    Ok(true)
}

fn record_running(store: &Store, id: &str) -> bool {
    VmRecord::load(&vms_dir(store), id)
        .map(|r| r.is_running())
        .unwrap_or(false)
}

/// Removes a VM's record and console log; a running VM only with `force`
/// (then it is stopped first).
pub fn remove(store: &Store, record: &VmRecord, force: bool) -> Result<()> {
    if record.is_running() {
        if !force {
            return Err(InstanceError::Running(record.name.clone()));
        }
        stop(store, record, Duration::from_secs(5))?;
    }
    remove_dir(store, &record.id)
}

/// CNI DEL for a VM that joined a network, and its namespace goes; a
/// failure is logged (the cache stays, so a later call retries).
fn release_network(store: &Store, record: &VmRecord) {
    let dir = VmRecord::dir(&vms_dir(store), &record.id);
    if let Err(e) = network::detach(&dir) {
        tracing::warn!("releasing the network of VM {}: {e}", record.name);
    }
}

fn remove_dir(store: &Store, id: &str) -> Result<()> {
    let dir = VmRecord::dir(&vms_dir(store), id);
    if let Err(e) = network::detach(&dir) {
        tracing::warn!("releasing the network of VM {id}: {e}");
    }
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(InstanceError::Io {
            what: "removing",
            path: dir,
            source,
        }),
    }
}
