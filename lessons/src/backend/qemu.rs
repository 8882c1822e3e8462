//! QEMU as the VM half, booting the same kernel and twinbox initramfs as
//! twinbox's own VMM would. QEMU is a separate process, so its memory is read
//! from outside while it runs: its resident set, and within it the mapping
//! that holds guest RAM (Firecracker's method, applied to QEMU).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twinbox_engine::network::NetworkMode;
use twinbox_microvm::host::{GuestKernel, KvmKind};
use twinbox_microvm::instance;
use twinbox_microvm::qemu::{Accel, Machine, QemuError, QemuOptions, QemuRunner};

use super::{Phase, Prepared, VmBackend, VmMemory, VmRequest, VmRun};
use crate::report::{BackendNote, Measured};
use crate::shell;
use crate::LessonError;

pub struct Qemu {
    note: BackendNote,
    runner: QemuRunner,
    kernel: GuestKernel,
}

impl Qemu {
    pub fn new(reason: String, kind: &KvmKind) -> Result<Qemu, LessonError> {
        let runner = QemuRunner::find().map_err(LessonError::Qemu)?;
        let kernel = instance::choose_kernel(None).map_err(LessonError::Instance)?;
        let (emulated, how) = match runner.accel {
            Accel::Kvm => (false, "KVM".to_string()),
            Accel::Tcg => (
                true,
                format!("software CPU emulation (TCG; host KVM: {kind})"),
            ),
        };
        let machine = match runner.machine {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        };
        Ok(Qemu {
            note: BackendNote {
                name: "qemu".into(),
                description: format!(
                    "QEMU -M {machine} with {how}, guest kernel {}",
                    kernel.version
                ),
                reason,
                emulated,
            },
            runner,
            kernel,
        })
    }

    fn options(&self, req: &VmRequest, tag: &str) -> QemuOptions {
        QemuOptions {
            memory_mib: req.memory_mib as u32,
            cpus: u32::from(req.vcpus),
            timeout: req.boot_timeout + req.run_timeout,
            // a dotted unknown parameter: the kernel ignores it, and it lets
            // the lesson find this run's QEMU process among several
            extra_cmdline: vec![format!("twinbox.run={tag}")],
            ..QemuOptions::default()
        }
    }
}

/// A VM with a network card (and maybe `-p`).
/// Whether the VM goes the way `vm run --backend qemu` goes: with a network
/// card, or with the image as a disk.
fn through_instance(req: &VmRequest) -> bool {
    req.options.network != NetworkMode::None
        || !req.options.ports.is_empty()
        || req.rootfs != instance::Rootfs::Initramfs
}

impl Qemu {
    /// A VM with a network card goes the way `vm run --backend qemu` goes
    /// (the same record, CNI attach and tap on the bridge as twinbox's VMM);
    /// QEMU is this process's child, sampled from outside for its memory.
    fn run_through_instance(
        &self,
        req: &VmRequest,
        live: Box<dyn Write + Send>,
    ) -> Result<VmRun, LessonError> {
        let tag = twinbox_engine::util::id::random_hex(8);
        // the instance ends QEMU itself (its stop flag and watchdog)
        let sampler = Sampler::start(
            format!("twinbox.run={tag}"),
            req.memory_mib << 20,
            Arc::new(AtomicBool::new(false)),
        );
        let result = super::twinbox::run_instance(
            req,
            live,
            instance::Backend::Qemu,
            format!("twinbox.run={tag}"),
        );
        let memory = sampler.finish().into_memory(req.memory_mib << 20);
        let (run, output) = result?;
        Ok(super::twinbox::vm_run(
            run,
            output,
            memory,
            self.note.emulated,
        ))
    }
}

impl VmBackend for Qemu {
    fn note(&self) -> &BackendNote {
        &self.note
    }

    fn prepare(&self, req: &VmRequest) -> Result<Prepared, LessonError> {
        super::prepare_guest(req, &self.kernel)
    }

    fn command_line(&self, req: &VmRequest) -> String {
        if through_instance(req) {
            return super::vm_run_line(req).replacen("vm run", "vm run --backend qemu", 1);
        }
        let initrd = std::path::Path::new("initramfs.cpio.gz");
        let mut opts = self.options(req, "x");
        opts.extra_cmdline.clear();
        let mut words = vec![self.runner.binary.display().to_string()];
        words.extend(self.runner.args(&self.kernel.path, initrd, &opts));
        shell::join(&words)
    }

    fn run(&self, req: &VmRequest, live: Box<dyn Write + Send>) -> Result<VmRun, LessonError> {
        if through_instance(req) {
            return self.run_through_instance(req, live);
        }
        let started = Instant::now();
        let initrd = super::guest_initrd(req, &self.kernel)?;
        let tag = twinbox_engine::util::id::random_hex(8);
        let opts = self.options(req, &tag);
        let sampler = Sampler::start(
            format!("twinbox.run={tag}"),
            req.memory_mib << 20,
            req.stop.clone(),
        );
        let mut live = live;
        let qemu_started = Instant::now();
        let result = self
            .runner
            .run(&self.kernel, &initrd.bytes, &opts, Some(&mut *live));
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        let sample = sampler.finish();
        let before_qemu_ms = qemu_started.duration_since(started).as_secs_f64() * 1e3;
        let memory = sample.into_memory(req.memory_mib << 20);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        match result {
            Ok(outcome) => {
                let t = outcome.timings;
                let shutdown = match (t.to_workload_start, t.workload) {
                    (Some(a), Some(b)) => Some(ms(t.total.saturating_sub(a + b))),
                    _ => None,
                };
                Ok(VmRun {
                    exit_code: Some(i32::from(outcome.exit_code)),
                    output: String::from_utf8_lossy(&outcome.output).into_owned(),
                    failure: None,
                    to_workload_ms: t.to_workload_start.map(|d| before_qemu_ms + ms(d)),
                    total_ms,
                    phases: vec![
                        Phase {
                            name: "initramfs (cached image part + config)".into(),
                            ms: Some(before_qemu_ms),
                        },
                        Phase {
                            name: "QEMU start, kernel boot, init".into(),
                            ms: t.to_workload_start.map(ms),
                        },
                        Phase {
                            name: "workload".into(),
                            ms: t.workload.map(ms),
                        },
                        Phase {
                            name: "power-off and QEMU exit".into(),
                            ms: shutdown,
                        },
                    ],
                    memory,
                    kernel: self.kernel.version.clone(),
                    emulated: outcome.emulated,
                })
            }
            Err(e) => Ok(VmRun {
                exit_code: None,
                output: String::new(),
                failure: Some(one_line(&e)),
                to_workload_ms: None,
                total_ms,
                phases: Vec::new(),
                memory,
                kernel: self.kernel.version.clone(),
                emulated: self.note.emulated,
            }),
        }
    }
}

/// A QEMU error on one line (console tails are joined with " | ").
fn one_line(e: &QemuError) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The last look at the QEMU process before it ended.
#[derive(Debug, Default, Clone, Copy)]
struct Sample {
    rss: Option<u64>,
    guest: Option<u64>,
    seen: bool,
}

impl Sample {
    fn into_memory(self, configured: u64) -> VmMemory {
        let missing = |what: &str| {
            if self.seen {
                Measured::Failed(format!("could not read {what} of the QEMU process"))
            } else {
                Measured::Failed(
                    "the QEMU process was never seen running (it ended too fast to sample)".into(),
                )
            }
        };
        let rss = match self.rss {
            Some(r) => Measured::Value(r),
            None => missing("the resident set"),
        };
        let guest = match self.guest {
            Some(g) => Measured::Value(g),
            None => missing("the guest RAM mapping (of the configured size)"),
        };
        let overhead = match (self.rss, self.guest) {
            (Some(r), Some(g)) => Measured::Value(r.saturating_sub(g)),
            _ => Measured::Failed("needs both the resident set and guest RAM".into()),
        };
        VmMemory {
            configured_bytes: configured,
            process_rss: rss,
            guest_resident: guest,
            vmm_overhead: overhead,
            method: "the QEMU process is sampled from /proc/PID/smaps every 50 ms; the \
                     numbers are the last sample before it exited: its whole resident set, \
                     the resident part of its guest RAM mapping, and the difference (QEMU's \
                     own code, devices and, under TCG, its translated-code cache)"
                .into(),
        }
    }
}

/// Samples the QEMU child whose command line carries `tag`, until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    last: Arc<Mutex<Sample>>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    /// Also stops QEMU (SIGTERM) when `end_vm` is set.
    fn start(tag: String, guest_bytes: u64, end_vm: Arc<AtomicBool>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(Sample::default()));
        let thread = {
            let (stop, last) = (stop.clone(), last.clone());
            std::thread::spawn(move || {
                let me = std::process::id() as i32;
                let mut pid = None;
                while !stop.load(Ordering::Acquire) {
                    if pid.is_none() {
                        pid = find_child(me, &tag);
                    }
                    if let Some(p) = pid {
                        if end_vm.load(Ordering::Acquire) {
                            // SAFETY: a signal to our own QEMU child, found by its tag.
                            unsafe { libc::kill(p, libc::SIGTERM) };
                        } else if let Some(s) = sample(p, guest_bytes) {
                            *last.lock().unwrap_or_else(|e| e.into_inner()) = s;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(if pid.is_some() { 50 } else { 5 }));
                }
            })
        };
        Sampler { stop, last, thread }
    }

    fn finish(self) -> Sample {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
        let s = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        s
    }
}

/// A child of `parent` whose command line contains `tag`.
fn find_child(parent: i32, tag: &str) -> Option<i32> {
    children_tagged(parent, tag).into_iter().next()
}

/// The QEMU processes this process runs for lessons now (each carries a
/// `twinbox.run=` tag on its kernel command line).
pub fn running_vms() -> Vec<i32> {
    children_tagged(std::process::id() as i32, "twinbox.run=")
}

/// Children of `parent` whose command line contains `tag`.
fn children_tagged(parent: i32, tag: &str) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        if twinbox_engine::util::procfs::cmdline(pid).contains(tag) {
            found.push(pid);
        }
    }
    found
}

/// One look at the running QEMU; `None` when it is gone or already tearing
/// down its memory (no guest RAM mapping left), so such a look never replaces
/// the last whole one.
fn sample(pid: i32, guest_bytes: u64) -> Option<Sample> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (rss, guest) = split_smaps(&smaps, guest_bytes);
    if rss == 0 || guest.is_none() {
        return None;
    }
    Some(Sample {
        rss: Some(rss),
        guest,
        seen: true,
    })
}

/// Total Rss, and the Rss of the anonymous mapping that holds guest RAM: the
/// one whose size is the configured RAM (QEMU may round it up by a little).
fn split_smaps(smaps: &str, guest_bytes: u64) -> (u64, Option<u64>) {
    let mut total = 0;
    let mut guest: Option<u64> = None;
    let mut current_size = 0u64;
    let mut current_anon = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(s), Ok(e)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) {
                current_size = e - s;
                // fields: range perms offset dev inode [path]
                current_anon = words.nth(4).is_none();
                continue;
            }
        }
        if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            total += kib * 1024;
            let is_guest_ram = current_anon
                && current_size >= guest_bytes
                && current_size <= guest_bytes + (8 << 20);
            if is_guest_ram && guest.is_none() {
                guest = Some(kib * 1024);
            }
        }
    }
    (total, guest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_guest_ram_mapping() {
        let smaps = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 123 /usr/bin/qemu-system-x86_64
Rss:                 800 kB
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
Rss:               20000 kB
7f1000000000-7f1040000000 rw-p 00000000 00:00 0
Rss:               50000 kB
";
        let (total, guest) = split_smaps(smaps, 256 << 20);
        assert_eq!(total, (800 + 20000 + 50000) * 1024);
        assert_eq!(guest, Some(20000 * 1024));
        let (_, none) = split_smaps(smaps, 2048 << 20);
        assert_eq!(none, None);
    }
}
