//! Switching from the initramfs to the image's disk: the disk read-only as
//! the overlay's lower layer, the VM's own writable layer above it (a tmpfs,
//! or the VM's disk), and the overlay made the root, with /proc, /sys and /dev
//! moved along. Many VMs share one image disk as containers share a layer.

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use twinbox_init::RootDisk;

use crate::failure::Failure;
use crate::sys;

const LOWER: &str = "/twinbox/lower";
const RW: &str = "/twinbox/rw";
const NEW_ROOT: &str = "/twinbox/root";
/// How long a disk may take to appear after its driver loaded.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

pub fn switch_to(disk: &RootDisk) -> Result<(), Failure> {
    for dir in [LOWER, RW, NEW_ROOT] {
        std::fs::create_dir_all(dir).map_err(|e| Failure::io(format!("create {dir}"), &e))?;
    }
    wait_for(&disk.device)?;
    sys::mount(
        &disk.device,
        Path::new(LOWER),
        &disk.fstype,
        libc::MS_RDONLY,
        "",
    )?;
    match &disk.upper_device {
        Some(device) => {
            wait_for(device)?;
            // Deleted files are discarded at once, so the host's sparse
            // file shrinks again (the VMM punches holes for discards).
            sys::mount(device, Path::new(RW), "ext4", 0, "discard")?;
        }
        None => sys::mount("tmpfs", Path::new(RW), "tmpfs", 0, "mode=0755")?,
    }
    for dir in ["upper", "work"] {
        let path = format!("{RW}/{dir}");
        std::fs::create_dir_all(&path).map_err(|e| Failure::io(format!("create {path}"), &e))?;
    }
    sys::mount(
        "overlay",
        Path::new(NEW_ROOT),
        "overlay",
        0,
        &format!("lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work"),
    )?;
    // /dev carries /dev/pts and /dev/shm along, /sys its cgroup2.
    for mount in ["/dev", "/proc", "/sys"] {
        let target = format!("{NEW_ROOT}{mount}");
        std::fs::create_dir_all(&target)
            .map_err(|e| Failure::io(format!("create {target}"), &e))?;
        sys::mount(mount, Path::new(&target), "", libc::MS_MOVE, "")?;
    }
    std::env::set_current_dir(NEW_ROOT)
        .map_err(|e| Failure::io(format!("chdir {NEW_ROOT}"), &e))?;
    sys::mount(".", Path::new("/"), "", libc::MS_MOVE, "")?;
    let dot = CString::new(".").expect("no NUL");
    // SAFETY: chroot with a valid NUL-terminated path.
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(Failure::last_os("chroot into the image's disk"));
    }
    std::env::set_current_dir("/").map_err(|e| Failure::io("chdir /", &e))
}

/// The driver probes asynchronously: wait (bounded) for the device node.
fn wait_for(device: &str) -> Result<(), Failure> {
    let start = Instant::now();
    while !Path::new(device).exists() {
        if start.elapsed() > DEVICE_WAIT {
            return Err(Failure::msg(
                format!("find {device}"),
                format!(
                    "no such device after {} s (virtio_blk not loaded?)",
                    DEVICE_WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
