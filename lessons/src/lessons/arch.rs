//! arch: a VM can be of another architecture, a container cannot. An arm64
//! kernel and busybox from Debian boot under qemu-system-aarch64's software
//! emulation on this x86_64 host, while the same arm64 binary in a container
//! fails with "exec format error": a container runs on the host's CPU and
//! kernel. With qemu-user-static it runs, through emulation of user space on
//! the host's kernel, which is emulation, not the container.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::RunOptions;
use twinbox_engine::network::NetworkMode;
use twinbox_microvm::guest::cpio::{CpioWriter, Meta};

use super::{three_acts, Lesson};
use crate::console_vm;
use crate::container::Detached;
use crate::context::{Context, RUN_TIMEOUT};
use crate::report::{format_ms, Cell, LessonReport, Measured, Side, Step, Table, Unit};
use crate::shell;
use crate::LessonError;

pub struct Arch;

/// Where scripts/install-deps.sh puts Debian's arm64 kernel and busybox.
pub const ARM64_DIR: &str = "/usr/local/share/twinbox/arm64";
const SYSTEM_EMULATOR: &str = "qemu-system-aarch64";
const USER_EMULATOR: &str = "/usr/bin/qemu-aarch64-static";
/// The image holding only the arm64 busybox.
const IMAGE: &str = "twinbox-arch/busybox:arm64";
/// The same plus qemu-user-static, for the emulated run.
const IMAGE_EMULATED: &str = "twinbox-arch/busybox:arm64-qemu-user";
/// An emulated arm64 kernel boots in seconds to a minute; a busy host is slower.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const MARK: &str = "TWINBOX-ARCH";
/// What every arm64 run prints: the machine and the kernel it runs on.
const PROBE: &[&str] = &["uname", "-m", "-r"];
const EM_AARCH64: u16 = 183;
const EM_X86_64: u16 = 62;

impl Lesson for Arch {
    fn name(&self) -> &'static str {
        "arch"
    }

    fn title(&self) -> &'static str {
        "a VM can be of another architecture, a container cannot"
    }

    fn summary(&self) -> &'static str {
        "an arm64 kernel and busybox boot under emulation; the same binary in a container fails with exec format error"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A container is processes on the host's kernel, so its programs must be built for \
             the host's CPU: the kernel loads an ELF file only for its own machine and refuses \
             any other with ENOEXEC, \"exec format error\". An image built for arm64 cannot \
             run on an x86_64 host, however it is packaged.",
            "A virtual machine brings its own kernel and, with an emulator, its own CPU: QEMU \
             can interpret arm64 instructions one by one on an x86_64 host and boot an arm64 \
             kernel on them. That is slow (software emulation, no hardware help), but it is a \
             whole arm64 machine.",
            "This lesson takes Debian's arm64 kernel and busybox, runs the busybox on the host \
             and in a container (both refused), then through qemu-user-static (user space \
             emulated, still the host's kernel), and boots the kernel with that busybox under \
             qemu-system-aarch64.",
        ]
    }

    fn uses_vm(&self) -> bool {
        false
    }

    /// Its VM is an arm64 machine under qemu-system-aarch64, not the lesson
    /// VM backend's.
    fn sides(&self) -> &'static str {
        "container + arm64 VM (QEMU)"
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the four runs of the arm64 busybox gave (None: the arm64 parts are
/// missing, and the lesson said which).
struct Measurements {
    host_machine: String,
    machine: Option<u16>,
    direct: Outcome,
    container: Outcome,
    emulated: Option<Outcome>,
    vm: VmOutcome,
    binfmt: Option<String>,
}

/// Act one: the binary on the host, in a container, through qemu-user and in
/// an arm64 VM.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Option<Measurements>, LessonError> {
    let files = match Arm64Files::find() {
        Ok(f) => f,
        Err(missing) => {
            ctx.say.failure(&missing);
            report.failures.push(missing.clone());
            report.fact("missing", missing);
            return Ok(None);
        }
    };
    let host_machine = uname_m();
    ctx.host_step(report, "uname -m", &format!("{host_machine}\n"));
    let machine = elf_machine(&files.busybox);
    ctx.host_step(
        report,
        &format!("readelf -h {} | grep Machine", files.busybox.display()),
        &format!(
            "  Machine:                           {}\n",
            machine_name(machine)
        ),
    );

    // on the host itself
    ctx.say.heading("the arm64 busybox on this host");
    let direct = run_direct(&files.busybox);
    let shown = format!("{} {}", files.busybox.display(), PROBE.join(" "));
    ctx.host_step(report, &shown, &format!("{}\n", direct.text()));

    // in a container
    ctx.say.heading("the same binary in a container");
    make_image(ctx, &files, false)?;
    let opts = RunOptions {
        cmd: probe_argv("/bin/busybox"),
        network: NetworkMode::None,
        auto_remove: true,
        ..Default::default()
    };
    let container = run_container(ctx, report, IMAGE, &opts);
    let binfmt = binfmt_aarch64();
    if let Some(entry) = &binfmt {
        ctx.say.note(&format!(
            "this host's kernel has a binfmt_misc entry for aarch64 ({entry}): it hands such binaries to an emulator, so a run that works went through emulation"
        ));
    }

    // through user-space emulation
    let emulated = if Path::new(USER_EMULATOR).is_file() {
        ctx.say
            .heading("the same binary through qemu-user-static, in a container");
        make_image(ctx, &files, true)?;
        let mut cmd = vec![USER_EMULATOR.to_string()];
        cmd.extend(probe_argv("/bin/busybox"));
        let opts = RunOptions {
            cmd,
            ..opts.clone()
        };
        Some(run_container(ctx, report, IMAGE_EMULATED, &opts))
    } else {
        ctx.say.note(&format!(
            "{USER_EMULATOR} is not installed (package qemu-user-static): the emulated run in a container is left out"
        ));
        None
    };

    // a whole arm64 machine
    ctx.say
        .heading("an arm64 kernel and that busybox, under qemu-system-aarch64");
    let vm = boot_vm(ctx, report, &files);

    Ok(Some(Measurements {
        host_machine,
        machine,
        direct,
        container,
        emulated,
        vm,
        binfmt,
    }))
}

/// Debian's arm64 kernel and busybox, as install-deps.sh keeps them.
struct Arm64Files {
    kernel: PathBuf,
    busybox: PathBuf,
    emulator: PathBuf,
}

impl Arm64Files {
    fn find() -> Result<Arm64Files, String> {
        let dir = Path::new(ARM64_DIR);
        let kernel = dir.join("vmlinuz");
        let busybox = dir.join("busybox");
        let emulator = console_vm::which(SYSTEM_EMULATOR);
        let mut missing = Vec::new();
        if !kernel.is_file() {
            missing.push(format!("an arm64 kernel at {}", kernel.display()));
        }
        if !busybox.is_file() {
            missing.push(format!("an arm64 busybox at {}", busybox.display()));
        }
        if emulator.is_none() {
            missing.push(format!("{SYSTEM_EMULATOR} (package qemu-system-arm)"));
        }
        match emulator {
            Some(emulator) if missing.is_empty() => Ok(Arm64Files {
                kernel,
                busybox,
                emulator,
            }),
            _ => Err(format!(
                "this lesson needs {}: scripts/install-deps.sh installs them (Debian's linux-image-arm64 and busybox-static for arm64, and qemu-system-arm)",
                missing.join(", ")
            )),
        }
    }
}

/// The host's machine, as `uname -m` names it.
fn uname_m() -> String {
    std::env::consts::ARCH.into()
}

/// The ELF header's e_machine: which CPU the file's code is for.
fn elf_machine(path: &Path) -> Option<u16> {
    let mut head = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
    (&head[..4] == b"\x7fELF").then(|| u16::from_le_bytes([head[18], head[19]]))
}

fn machine_name(m: Option<u16>) -> String {
    match m {
        Some(EM_AARCH64) => "AArch64".into(),
        Some(EM_X86_64) => "Advanced Micro Devices X86-64".into(),
        Some(other) => format!("<unknown>: {other:#x}"),
        None => "not an ELF file".into(),
    }
}

fn probe_argv(busybox: &str) -> Vec<String> {
    let mut v = vec![busybox.to_string()];
    v.extend(PROBE.iter().map(|s| s.to_string()));
    v
}

/// How one run of the arm64 binary went.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    /// It ran: its output (machine and kernel release).
    output: Option<String>,
    /// It did not: why, as the system said it.
    error: Option<String>,
    exit_code: Option<i32>,
    ms: Option<f64>,
}

impl Outcome {
    fn text(&self) -> String {
        match (&self.output, &self.error) {
            (Some(o), _) => o.trim().to_string(),
            (None, Some(e)) => e.clone(),
            (None, None) => "nothing".into(),
        }
    }

    fn exec_format_error(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.to_lowercase().contains("exec format error"))
    }

    /// (machine, kernel release) from `uname -m -r`'s one line.
    fn uname(&self) -> Option<(String, String)> {
        let o = self.output.as_deref()?;
        let line = o.lines().find(|l| l.split_whitespace().count() == 2)?;
        let mut w = line.split_whitespace();
        let (release, machine) = (w.next()?, w.next()?);
        Some((machine.to_string(), release.to_string()))
    }
}

fn run_direct(busybox: &Path) -> Outcome {
    let t0 = Instant::now();
    let r = Command::new(busybox).args(PROBE).output();
    let ms = Some(t0.elapsed().as_secs_f64() * 1e3);
    match r {
        Ok(out) => Outcome {
            output: Some(String::from_utf8_lossy(&out.stdout).into_owned()),
            error: None,
            exit_code: out.status.code(),
            ms,
        },
        Err(e) => Outcome {
            output: None,
            // the shell's words for ENOEXEC, and the errno's
            error: Some(format!(
                "sh: {}: exec format error ({e})",
                busybox.display()
            )),
            exit_code: Some(126),
            ms,
        },
    }
}

/// Builds the arm64 image (once): busybox alone, or with qemu-user-static.
fn make_image(ctx: &Context, files: &Arm64Files, with_emulator: bool) -> Result<(), LessonError> {
    let name = if with_emulator { IMAGE_EMULATED } else { IMAGE };
    let busybox = std::fs::read(&files.busybox)
        .map_err(|e| LessonError::io(files.busybox.display().to_string(), e))?;
    let mut entries: Vec<(&str, Vec<u8>)> = vec![("bin/busybox", busybox)];
    if with_emulator {
        let emu = std::fs::read(USER_EMULATOR).map_err(|e| LessonError::io(USER_EMULATOR, e))?;
        entries.push(("usr/bin/qemu-aarch64-static", emu));
    }
    let image = crate::image::single_layer(
        &ctx.store,
        name,
        &entries,
        oci_spec::image::Arch::ARM64,
        &format!(
            "COPY {} /bin/busybox (Debian's busybox-static for arm64){}",
            files.busybox.display(),
            if with_emulator {
                " and /usr/bin/qemu-aarch64-static"
            } else {
                ""
            }
        ),
    )?;
    ctx.say.note(&format!(
        "(image {name} made from Debian's arm64 busybox: {}, architecture arm64)",
        &image.id.hex()[..12]
    ));
    Ok(())
}

fn run_container(
    ctx: &Context,
    report: &mut LessonReport,
    image: &str,
    opts: &RunOptions,
) -> Outcome {
    let command = shell::container_run(image, opts, false);
    ctx.show(Side::Container, &command);
    let t0 = Instant::now();
    let outcome = match Detached::start(&ctx.store, image, opts, &ctx.settings.supervisor_exe) {
        Err(e) => Outcome {
            output: None,
            error: Some(e.to_string()),
            exit_code: Some(126),
            ms: Some(t0.elapsed().as_secs_f64() * 1e3),
        },
        Ok(mut d) => {
            let mut sink = std::io::sink();
            let (code, _) = d.wait(RUN_TIMEOUT, &mut sink).unwrap_or((None, true));
            let out = d.output();
            let ms = d.total_ms();
            let _ = d.remove();
            if code == Some(0) {
                Outcome {
                    output: Some(out),
                    error: None,
                    exit_code: code,
                    ms,
                }
            } else {
                Outcome {
                    output: None,
                    error: Some(if out.trim().is_empty() {
                        format!("exit code {code:?}")
                    } else {
                        out.trim().to_string()
                    }),
                    exit_code: code,
                    ms,
                }
            }
        }
    };
    match &outcome.error {
        Some(e) => ctx.say.failure(e),
        None => ctx.say.output(&outcome.text()),
    }
    ctx.say.output("\n");
    report.steps.push(Step {
        side: Side::Container,
        command,
        output: outcome.output.clone().unwrap_or_default(),
        exit_code: outcome.exit_code,
        error: outcome.error.clone(),
        duration_ms: outcome.ms,
    });
    outcome
}

/// The arm64 VM's run: its answer and its times.
#[derive(Debug, Clone, Serialize)]
struct VmOutcome {
    ran: Outcome,
    /// From starting QEMU to the init's first line.
    to_init_ms: Option<f64>,
    total_ms: f64,
    /// The guest's CPU as its /proc/cpuinfo says.
    cpu: Option<String>,
}

fn boot_vm(ctx: &Context, report: &mut LessonReport, files: &Arm64Files) -> VmOutcome {
    let scratch = ctx
        .store
        .root()
        .join("tmp")
        .join(format!("arch-{}", twinbox_engine::util::id::random_hex(6)));
    let initrd = scratch.join("initramfs.cpio");
    let made = std::fs::create_dir_all(&scratch)
        .map_err(|e| e.to_string())
        .and_then(|()| write_initramfs(&initrd, &files.busybox).map_err(|e| e.to_string()));
    let args: Vec<String> = vec![
        "-M".into(),
        "virt".into(),
        "-cpu".into(),
        "cortex-a57".into(),
        "-m".into(),
        "256".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        files.kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        "console=ttyAMA0 quiet panic=-1".into(),
    ];
    let mut shown = vec![files.emulator.display().to_string()];
    shown.extend(args.iter().cloned());
    let command = shell::join(&shown).replace(&scratch.display().to_string(), ".");
    ctx.show(Side::Vm, &command);
    let said = |name: &str, rest: &str| {
        if name == "uname" || name == "cpu" {
            ctx.say.output(&format!("{rest}\n"));
        }
    };
    let mut said = said;
    let result =
        made.and_then(|()| console_vm::run(&files.emulator, &args, MARK, BOOT_TIMEOUT, &mut said));
    let _ = std::fs::remove_dir_all(&scratch);
    let vm = match result {
        Ok(console) => {
            let answer = console.mark("uname").map(str::to_string);
            VmOutcome {
                ran: Outcome {
                    error: answer.is_none().then(|| {
                        format!(
                            "the guest did not answer; its console ended with: {}",
                            console.tail()
                        )
                    }),
                    output: answer,
                    exit_code: None,
                    ms: console.at("init"),
                },
                to_init_ms: console.at("init"),
                total_ms: console.total_ms,
                cpu: console.mark("cpu").map(|c| c.trim().to_string()),
            }
        }
        Err(why) => VmOutcome {
            ran: Outcome {
                output: None,
                error: Some(why),
                exit_code: None,
                ms: None,
            },
            to_init_ms: None,
            total_ms: 0.0,
            cpu: None,
        },
    };
    if let Some(e) = &vm.ran.error {
        ctx.say.failure(e);
    }
    report.steps.push(Step {
        side: Side::Vm,
        command,
        output: vm.ran.output.clone().unwrap_or_default(),
        exit_code: None,
        error: vm.ran.error.clone(),
        duration_ms: Some(vm.total_ms),
    });
    vm
}

/// The guest's whole file system: the arm64 busybox and an init that says
/// what it runs on, then powers off.
fn write_initramfs(path: &Path, busybox: &Path) -> std::io::Result<()> {
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         echo \"{MARK} init\"\n\
         echo \"{MARK} uname $(/bin/busybox uname -r -m)\"\n\
         echo \"{MARK} cpu $(/bin/busybox grep -m1 -i -E 'CPU part|model name|CPU implementer' /proc/cpuinfo)\"\n\
         /bin/busybox poweroff -f\n"
    );
    let binary = std::fs::read(busybox)?;
    let file = std::fs::File::create(path)?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(file));
    for dir in ["bin", "proc", "dev"] {
        w.dir(dir.as_bytes(), Meta::root(0o755))?;
    }
    w.file(b"bin/busybox", Meta::root(0o755), &binary)?;
    w.file(b"init", Meta::root(0o755), init.as_bytes())?;
    use std::io::Write;
    w.finish()?.flush()
}

/// A binfmt_misc entry that hands aarch64 ELF files to an emulator, if the
/// host has one enabled.
fn binfmt_aarch64() -> Option<String> {
    let dir = Path::new("/proc/sys/fs/binfmt_misc");
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        // the magic of an aarch64 ELF: e_machine 0xb7 at offset 18
        if text.starts_with("enabled")
            && text.contains("magic 7f454c460201010000000000000000000200b700")
        {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// Act two: the table of the four runs, the checks and the facts.
fn present(m: &Option<Measurements>, report: &mut LessonReport) {
    let Some(m) = m else {
        return;
    };
    let (host_machine, direct, container, vm, binfmt) =
        (&m.host_machine, &m.direct, &m.container, &m.vm, &m.binfmt);
    let (machine, emulated) = (m.machine, m.emulated.as_ref());
    let mut t = Table::new(
        "the arm64 busybox, four ways",
        &["where", "uname -m", "kernel", "time"],
    );
    let row = |t: &mut Table, name: &str, o: &Outcome, ms: Option<f64>| {
        let (m, k): (Cell, Cell) = match (o.uname(), &o.error) {
            (Some((m, k)), _) => (m.into(), k.into()),
            (None, e) => (
                Cell::Failed {
                    failed: e.clone().unwrap_or_else(|| "no answer".into()),
                },
                "".into(),
            ),
        };
        t.row(vec![
            name.into(),
            m,
            k,
            ms.map(format_ms).unwrap_or_default().into(),
        ]);
    };
    row(
        &mut t,
        &format!("on the host ({host_machine})"),
        direct,
        direct.ms,
    );
    row(&mut t, "in a container", container, container.ms);
    if let Some(e) = emulated {
        row(
            &mut t,
            "in a container, through qemu-aarch64-static",
            e,
            e.ms,
        );
    }
    row(
        &mut t,
        "in an arm64 VM (qemu-system-aarch64)",
        &vm.ran,
        vm.to_init_ms,
    );
    report.tables.push(t);
    let answered = |o: &Outcome, ms: Option<f64>| -> Measured<f64> {
        match (o.uname(), ms) {
            (Some(_), Some(ms)) => Measured::Value(ms),
            _ => Measured::failed(o.text()),
        }
    };
    let mut points = vec![
        (
            format!("on the host ({host_machine})"),
            Side::Host,
            answered(direct, direct.ms),
        ),
        (
            "in a container".to_string(),
            Side::Container,
            answered(container, container.ms),
        ),
    ];
    if let Some(e) = emulated {
        points.push((
            "in a container, through qemu-aarch64-static".into(),
            Side::Container,
            answered(e, e.ms),
        ));
    }
    points.push((
        "arm64 VM, to its init".into(),
        Side::Vm,
        answered(&vm.ran, vm.to_init_ms),
    ));
    report.charts.push(crate::charts::growth(
        "the arm64 busybox: time to its answer, or why there was none",
        Unit::Milliseconds,
        &points,
        Some("the qemu-user and VM runs are software emulation of an arm64 CPU".into()),
    ));

    report.check(
        "the container's refusal",
        &Measured::from_option(
            (container.exec_format_error() || binfmt.is_some()).then_some(()),
            format!("the container's run neither failed with exec format error nor went through binfmt: {}", container.text()),
        ),
    );
    report.check(
        "the arm64 VM",
        &Measured::from_option(vm.ran.uname(), vm.ran.text()),
    );
    report.fact("host_machine", host_machine);
    report.fact("binary_machine", machine_name(machine));
    report.fact(
        "on_host",
        json!({"exec_format_error": direct.exec_format_error(), "outcome": direct}),
    );
    report.fact(
        "container",
        json!({"exec_format_error": container.exec_format_error(), "outcome": container}),
    );
    report.fact(
        "container_emulated",
        emulated.map(|e| json!({"machine": e.uname().map(|u| u.0), "kernel": e.uname().map(|u| u.1), "outcome": e})),
    );
    report.fact(
        "vm",
        json!({"ran": vm.ran.uname().is_some(), "machine": vm.ran.uname().map(|u| u.0),
               "kernel": vm.ran.uname().map(|u| u.1), "cpu": vm.cpu, "to_init_ms": vm.to_init_ms,
               "total_ms": vm.total_ms, "error": vm.ran.error, "emulated": true}),
    );
    report.fact("binfmt_aarch64", binfmt);
}

/// Act three: what the runs show.
fn explain(m: &Option<Measurements>, report: &mut LessonReport) {
    let Some(m) = m else {
        return;
    };
    let (host_machine, container, vm, binfmt) = (&m.host_machine, &m.container, &m.vm, &m.binfmt);
    let (machine, emulated) = (m.machine, m.emulated.as_ref());
    let host_release = report.host_kernel.clone();
    if container.exec_format_error() {
        report.findings.push(format!(
            "The arm64 busybox ({}) did not run in the container: the host's kernel refused it with \"exec format error\", as it did outside any container. A container is processes on the host's {host_machine} CPU and its kernel {host_release}; no packaging changes which instructions the CPU understands.",
            machine_name(machine)
        ));
    } else if binfmt.is_some() && container.output.is_some() {
        report.findings.push(format!(
            "The arm64 busybox ran in the container only because this host's kernel has a binfmt_misc entry ({}) that hands aarch64 programs to an emulator: the container did not make it run, the emulator did, on the host's kernel {host_release}.",
            binfmt.as_deref().unwrap_or("")
        ));
    }
    if let Some((m, k)) = emulated.and_then(Outcome::uname) {
        report.findings.push(format!(
            "Through qemu-aarch64-static the same binary said it runs on {m} with kernel {k}: the emulator translates its arm64 instructions and passes its system calls to the host's kernel. It is user-space emulation inside a container, still on the host's kernel, not an arm64 container."
        ));
    }
    if let Some((m, k)) = vm.ran.uname() {
        report.findings.push(format!(
            "Under qemu-system-aarch64 the arm64 kernel {k} booted to the same busybox, which said {m}{}; its init spoke {} after QEMU started, all of it in software emulation of an arm64 CPU. A VM can be of another architecture because it brings its own kernel and, emulated, its own CPU.",
            vm.cpu
                .as_deref()
                .map(|c| format!(" on a CPU that /proc/cpuinfo describes as \"{c}\""))
                .unwrap_or_default(),
            vm.to_init_ms.map(format_ms).unwrap_or_else(|| "late".into())
        ));
    }
    report.caveats.push("Both emulated runs are software emulation (QEMU's TCG): much slower than the same code on a real arm64 CPU. Docker's multi-architecture images and `--platform` use the same qemu-user trick through binfmt_misc.".into());
}
