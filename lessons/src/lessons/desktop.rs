//! desktop: on macOS and Windows, containers run inside a Linux VM. An image
//! holding twinbox itself (and busybox) boots as a VM, and that twinbox
//! starts a container inside it; the chain host → hypervisor → VM kernel →
//! engine → container → program is timed against the program on the host, a
//! container directly on the host and the program directly in the VM.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::RunOptions;
use twinbox_engine::network::NetworkMode;
use twinbox_microvm::instance::Rootfs;

use super::{three_acts, Lesson};
use crate::context::{BuildDir, Context, BUSYBOX};
use crate::measure::kernel::host_view;
use crate::measure::time::Stats;
use crate::report::{
    format_bytes, format_ms, Cell, LessonReport, Measured, Side, Step, Table, Unit,
};
use crate::shell;
use crate::LessonError;

pub struct Desktop;

/// The image the desktop VM boots: busybox, twinbox and the libraries it links.
const IMAGE: &str = "twinbox-lab/desktop";
/// The prefix of the chain's result lines on the VM's console.
const MARK: &str = "TWINBOX-DESKTOP";
/// The program at the end of every path: which kernel runs it.
const PROGRAM: &str = "uname -r; cat /proc/sys/kernel/random/boot_id";
/// Runs of the program alone, averaged (the VM's clock counts hundredths).
const DIRECT_RUNS: usize = 20;
/// Guest RAM: the engine's store and the VM's writes are tmpfs in it.
const MEMORY_MIB: u64 = 512;
/// The whole chain inside an emulated VM: an engine start, an image made,
/// containers run, every instruction emulated.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(600);
const HOST_RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The VM's side, run by its init. The VM's root is the image's disk under
/// an overlay, as on an installed system, so the engine inside can
/// pivot_root into its containers; its store goes on a tmpfs (overlayfs
/// refuses an overlay as the upper layer of another).
const CHAIN_SCRIPT: &str = r#"#!/bin/sh
# the desktop VM: twinbox inside a Linux VM starts a container
M=TWINBOX-DESKTOP
runs=${1:-1}
export PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin
export HOME=/root TWINBOX_ROOT=/var/lib/twinbox
mkdir -p $TWINBOX_ROOT && mount -t tmpfs -o mode=0700 tmpfs $TWINBOX_ROOT
now() { cut -d' ' -f1 /proc/uptime; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
program='uname -r; cat /proc/sys/kernel/random/boot_id'
echo "$M kernel" $(sh -c "$program")
t=$(now); i=0
while [ $i -lt __DIRECT_RUNS__ ]; do sh -c "$program" >/dev/null; i=$((i + 1)); done
echo "$M direct_ms $(ms $t $(now))"
t=$(now)
if ! out=$(twinbox image bootstrap busybox 2>&1); then
    echo "$M failed twinbox image bootstrap busybox: $(echo $out)"
    exit 1
fi
echo "$M bootstrap_ms $(ms $t $(now))"
i=0
while [ $i -lt $runs ]; do
    t=$(now)
    out=$(twinbox run --rm --network none busybox sh -c "$program" 2>&1)
    code=$?
    echo "$M container_ms $(ms $t $(now))"
    echo "$M container $code $(echo $out)"
    i=$((i + 1))
done
echo "$M done"
"#;

impl Lesson for Desktop {
    fn name(&self) -> &'static str {
        "desktop"
    }

    fn title(&self) -> &'static str {
        "containers on macOS and Windows run inside a Linux VM"
    }

    fn summary(&self) -> &'static str {
        "a VM running twinbox, which runs a container: the chain timed against a container on the host and the program in the VM"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A container needs a Linux kernel: namespaces, cgroups and the overlay file \
             system are Linux's. macOS and Windows have none, so Docker Desktop (and Podman \
             machine, Colima, Rancher Desktop, WSL 2 behind Docker on Windows) first boot a \
             small Linux VM, run the engine in it, and start every container there. The \
             docker command on the desktop only talks to that engine.",
            "This lesson builds such a VM from an image holding busybox and twinbox itself. \
             The VM's workload starts twinbox, which makes its busybox image and runs a \
             container that prints its kernel. The chain is host → hypervisor → VM kernel → \
             engine → container → program, timed against the program on the host, a \
             container directly on this host and the program directly in the VM.",
            "Isn't that less efficient? The numbers say by how much, and which part costs: \
             the VM's boot, paid once when the desktop app starts, or every container.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn default_runs(&self) -> usize {
        3
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// Which kernel ran the program: its release and its boot's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Kernel {
    release: String,
    boot_id: String,
}

impl Kernel {
    /// From the program's output, whitespace-separated: `RELEASE BOOT_ID`.
    fn parse(text: &str) -> Option<Kernel> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let at = words.iter().rposition(|w| is_uuid(w))?;
        let release = words.get(at.checked_sub(1)?)?;
        Some(Kernel {
            release: release.to_string(),
            boot_id: words[at].to_string(),
        })
    }
}

fn is_uuid(s: &str) -> bool {
    let lens: Vec<usize> = s.split('-').map(str::len).collect();
    lens == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

/// What the desktop VM reported, on its own clock.
#[derive(Debug, Clone, Serialize)]
struct Inside {
    /// The VM's own kernel, the program run directly in it.
    kernel: Kernel,
    /// From the VM's start to its workload (as the backend measured it).
    boot_ms: Option<f64>,
    /// The program run directly in the VM: one run, averaged.
    direct_ms: f64,
    /// `twinbox image bootstrap busybox` inside: the VM's first image.
    bootstrap_ms: Option<f64>,
    /// `twinbox run --rm` inside, whole, per run.
    container_ms: Vec<f64>,
    /// What the container inside said about its kernel.
    container_kernel: Measured<Kernel>,
    /// From the VM's start to its power-off.
    total_ms: f64,
    memory_mib: u64,
}

/// The image the VM boots.
#[derive(Debug, Clone, Serialize)]
struct DesktopImage {
    /// Bytes of twinbox as copied in (debug info stripped when possible).
    twinbox_bytes: u64,
    libraries: Vec<String>,
    build_ms: f64,
}

struct Measurements {
    host: Kernel,
    /// The program alone on the host, one run averaged.
    host_direct_ms: Measured<f64>,
    /// `twinbox run --rm` on the host, whole, per run.
    host_container: Measured<Stats>,
    host_container_kernel: Measured<Kernel>,
    image: Measured<DesktopImage>,
    vm: Measured<Inside>,
    emulated: bool,
    hypervisor: String,
}

/// Act one: the program on the host, in a container on the host, then the
/// desktop VM with the program alone and in a container inside it.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    ctx.image(BUSYBOX)?;
    let runs = ctx.runs(3);
    let host = host_view()
        .map(|v| Kernel {
            release: v.release,
            boot_id: v.boot_id,
        })
        .map_err(|e| LessonError::BadInput(format!("cannot read the host's kernel: {e}")))?;

    ctx.say.heading("the program directly on this host");
    let host_direct_ms = direct_on_host(ctx, report);

    ctx.say.heading("a container directly on this host");
    let mut host_ms = Vec::new();
    let mut host_container_kernel = Measured::failed("the container did not run");
    for _ in 0..runs {
        match cli_run(ctx, report) {
            Ok((ms, out)) => {
                host_ms.push(ms);
                host_container_kernel = Measured::from_option(
                    Kernel::parse(&out),
                    format!("no kernel in the container's output: {}", out.trim()),
                );
            }
            Err(why) => {
                host_container_kernel = Measured::failed(why);
                break;
            }
        }
    }
    let host_container = Measured::from_option(Stats::of(&host_ms), "the container did not run");

    ctx.say.heading("a Linux VM with twinbox inside");
    let (hypervisor, emulated) = match ctx.vm() {
        Ok(b) => (b.note().name.clone(), b.note().emulated),
        Err(_) => ("none".to_string(), false),
    };
    let image = build_desktop_image(ctx, report);
    let vm = match (&image, ctx.vm()) {
        (Measured::Failed(why), _) => Measured::failed(format!("no desktop image: {why}")),
        (_, Err(why)) => Measured::failed(format!("no VM backend on this host: {why}")),
        (Measured::Value(_), Ok(_)) => desktop_vm(ctx, report, runs),
    };
    if let Measured::Failed(why) = &vm {
        ctx.say.failure(why);
    }
    report.check("the container on the host", &host_container);
    report.check("the desktop VM", &vm);
    Ok(Measurements {
        host,
        host_direct_ms,
        host_container,
        host_container_kernel,
        image,
        vm,
        emulated,
        hypervisor,
    })
}

/// `sh -c PROGRAM` on the host, run many times and averaged.
fn direct_on_host(ctx: &Context, report: &mut LessonReport) -> Measured<f64> {
    let command = format!(
        "time (for i in $(seq {DIRECT_RUNS}); do sh -c {} >/dev/null; done)",
        shell::quote(PROGRAM)
    );
    let mut first = String::new();
    let t0 = Instant::now();
    for i in 0..DIRECT_RUNS {
        match Command::new("sh").args(["-c", PROGRAM]).output() {
            Ok(o) if o.status.success() => {
                if i == 0 {
                    first = String::from_utf8_lossy(&o.stdout).into_owned();
                }
            }
            Ok(o) => return Measured::failed(format!("sh exited with {}", o.status)),
            Err(e) => return Measured::failed(format!("cannot run sh: {e}")),
        }
    }
    let total = t0.elapsed().as_secs_f64() * 1e3;
    ctx.host_step(
        report,
        &command,
        &format!(
            "{first}(real {}: {} per run)\n",
            format_ms(total),
            format_ms(total / DIRECT_RUNS as f64)
        ),
    );
    Measured::Value(total / DIRECT_RUNS as f64)
}

/// `twinbox run --rm --network none busybox sh -c PROGRAM` on the host: the
/// same command the VM runs inside, timed the same way (the whole command).
fn cli_run(ctx: &Context, report: &mut LessonReport) -> Result<(f64, String), String> {
    let args = [
        "run",
        "--rm",
        "--network",
        "none",
        BUSYBOX,
        "sh",
        "-c",
        PROGRAM,
    ];
    let mut shown = vec!["twinbox".to_string()];
    shown.extend(args.iter().map(|s| s.to_string()));
    let command = shell::join(&shown);
    ctx.show(Side::Container, &command);
    let t0 = Instant::now();
    let out = run_with_timeout(
        Command::new(&ctx.settings.supervisor_exe)
            .args(args)
            .env("TWINBOX_ROOT", ctx.store.root()),
        HOST_RUN_TIMEOUT,
    );
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let (code, text, error) = match out {
        Ok((code, stdout, stderr)) => {
            let error = (code != Some(0)).then(|| {
                format!(
                    "twinbox run exited with {code:?}: {}",
                    stderr.trim().lines().last().unwrap_or_default()
                )
            });
            (code, stdout, error)
        }
        Err(why) => (None, String::new(), Some(why)),
    };
    ctx.record(
        report,
        Step {
            side: Side::Container,
            command,
            output: text.clone(),
            exit_code: code,
            error: error.clone(),
            duration_ms: Some(ms),
        },
    );
    match error {
        Some(e) => Err(e),
        None => Ok((ms, text)),
    }
}

/// Runs a command to its end, killed after `timeout`: exit code, stdout, stderr.
fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(Option<i32>, String, String), String> {
    use std::io::Read;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start twinbox: {e}"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for twinbox: {e}")),
        }
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(s) => Ok((s.code(), stdout, stderr)),
        None => Err(format!("stopped after {} s", timeout.as_secs())),
    }
}

/// `twinbox build -t twinbox-lab/desktop .` from busybox, this twinbox
/// binary and the libraries it links, and the chain script.
fn build_desktop_image(ctx: &Context, report: &mut LessonReport) -> Measured<DesktopImage> {
    let made = (|| -> Result<DesktopImage, String> {
        let dir = BuildDir::new("desktop", &[("chain.sh", &chain_script(), 0o755)])
            .map_err(|e| e.to_string())?;
        let exe = &ctx.settings.supervisor_exe;
        let twinbox = dir.path.join("twinbox");
        let stripped = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(exe)
            .arg(&twinbox)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !stripped {
            std::fs::copy(exe, &twinbox).map_err(|e| format!("copy {}: {e}", exe.display()))?;
        }
        let libraries = libraries(exe);
        for lib in &libraries {
            let to = dir
                .path
                .join("libs")
                .join(lib.strip_prefix("/").unwrap_or(lib));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
            }
            std::fs::copy(lib, &to).map_err(|e| format!("copy {}: {e}", lib.display()))?;
        }
        if libraries.is_empty() {
            std::fs::create_dir_all(dir.path.join("libs"))
                .map_err(|e| format!("mkdir libs: {e}"))?;
        }
        let twinbox_bytes = std::fs::metadata(&twinbox).map(|m| m.len()).unwrap_or(0);
        ctx.say.note(&format!(
            "(build context: the chain script, twinbox itself{} {}, and the {} libraries it links, as `ldd` lists them)",
            if stripped { " without its debug info," } else { "," },
            format_bytes(twinbox_bytes),
            libraries.len()
        ));
        let dockerfile = format!(
            "FROM {BUSYBOX}\n\
             COPY libs/ /\n\
             COPY twinbox /usr/local/bin/twinbox\n\
             COPY chain.sh /chain.sh\n\
             CMD [\"/bin/sh\", \"/chain.sh\", \"1\"]\n"
        );
        dir.write("Dockerfile", &dockerfile, 0o644)
            .map_err(|e| e.to_string())?;
        ctx.say.output(&dockerfile);
        let built = ctx.build_image(report, &dir.path, &dockerfile, IMAGE, false)?;
        Ok(DesktopImage {
            twinbox_bytes,
            libraries: libraries.iter().map(|l| l.display().to_string()).collect(),
            build_ms: built.ms,
        })
    })();
    if let Err(e) = &made {
        ctx.say.failure(e);
    }
    Measured::from_result(made)
}

fn chain_script() -> String {
    CHAIN_SCRIPT.replace("__DIRECT_RUNS__", &DIRECT_RUNS.to_string())
}

/// The shared libraries a program links, with the loader itself: what
/// `ldd` lists, asked of the loader directly where there is no ldd (ldd is
/// a script around `ld.so --list`).
fn libraries(program: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(program).output().or_else(|_| {
        Command::new("/lib64/ld-linux-x86-64.so.2")
            .arg("--list")
            .arg(program)
            .output()
    });
    let Ok(out) = out else {
        return Vec::new();
    };
    let mut libs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// Boots the desktop image as a VM and reads the chain's marked lines.
fn desktop_vm(ctx: &Context, report: &mut LessonReport, runs: usize) -> Measured<Inside> {
    let image = match ctx.image(IMAGE) {
        Ok(i) => i,
        Err(e) => return Measured::failed(e.to_string()),
    };
    let opts = RunOptions {
        cmd: vec!["/bin/sh".into(), "/chain.sh".into(), runs.to_string()],
        network: NetworkMode::None,
        ..Default::default()
    };
    let mut req = ctx.vm_request(IMAGE, &image, &opts, MEMORY_MIB);
    req.run_timeout = CHAIN_TIMEOUT;
    req.rootfs = Rootfs::Disk {
        writable_bytes: None,
    };
    ctx.say.note(&format!(
        "(in the VM: /chain.sh mounts a tmpfs for twinbox's store, then times `{PROGRAM}` {DIRECT_RUNS} times, `twinbox image bootstrap busybox`, and `twinbox run --rm --network none busybox sh -c '{PROGRAM}'` {runs} time(s))"
    ));
    let run = match ctx.prepare_vm(&req).and_then(|_| ctx.vm_run(report, &req)) {
        Ok(r) => r,
        Err(why) => return Measured::failed(why),
    };
    let marks = marks(&run.output);
    let mark = |name: &str| {
        marks
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rest)| rest.as_str())
    };
    let failed = mark("failed").map(str::to_string).or(run.failure.clone());
    let Some(kernel) = mark("kernel").and_then(Kernel::parse) else {
        return Measured::failed(failed.unwrap_or_else(|| {
            format!(
                "the VM did not say its kernel; its output ended with: {}",
                crate::console_vm::tail(&run.output)
            )
        }));
    };
    let Some(direct_ms) = mark("direct_ms").and_then(|v| v.parse::<f64>().ok()) else {
        return Measured::failed(
            failed.unwrap_or_else(|| "the VM did not time the program".into()),
        );
    };
    let container_ms: Vec<f64> = marks
        .iter()
        .filter(|(n, _)| n == "container_ms")
        .filter_map(|(_, v)| v.parse().ok())
        .collect();
    let container_kernel = match mark("container") {
        Some(rest) => {
            let (code, out) = rest.split_once(' ').unwrap_or((rest, ""));
            match (code, Kernel::parse(out)) {
                ("0", Some(k)) => Measured::Value(k),
                _ => Measured::failed(format!(
                    "twinbox run in the VM exited with {code}: {}",
                    out.trim()
                )),
            }
        }
        None => {
            Measured::failed(failed.unwrap_or_else(|| "the VM's twinbox ran no container".into()))
        }
    };
    if container_kernel.value().is_some() && mark("done").is_none() {
        return Measured::failed("the VM's chain did not finish");
    }
    Measured::Value(Inside {
        kernel,
        boot_ms: run.to_workload_ms,
        direct_ms: direct_ms / DIRECT_RUNS as f64,
        bootstrap_ms: mark("bootstrap_ms").and_then(|v| v.parse().ok()),
        container_ms,
        container_kernel,
        total_ms: run.total_ms,
        memory_mib: MEMORY_MIB,
    })
}

/// `MARK name rest` lines of the VM's output, in order.
fn marks(output: &str) -> Vec<(String, String)> {
    let prefix = format!("{MARK} ");
    output
        .lines()
        .filter_map(|l| {
            let at = l.find(&prefix)?;
            let rest = l[at + prefix.len()..].trim_end_matches('\r');
            let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((name.to_string(), rest.trim().to_string()))
        })
        .collect()
}

/// The chain as a student reads it.
fn chain(m: &Measurements) -> String {
    let vm_kernel =
        m.vm.value()
            .map(|v| v.kernel.release.clone())
            .unwrap_or_else(|| "?".into());
    format!(
        "host ({}) → {} ({}) → VM kernel {vm_kernel} → twinbox → container → sh -c '{PROGRAM}'",
        m.host.release,
        m.hypervisor,
        if m.emulated {
            "software emulation"
        } else {
            "KVM"
        }
    )
}

/// Act two: the four paths side by side, as a table and a chart.
fn present(m: &Measurements, report: &mut LessonReport) {
    let inner =
        m.vm.as_ref()
            .map(|v| Stats::of(&v.container_ms))
            .value()
            .cloned()
            .flatten();
    let vm_failed = || Cell::Failed {
        failed: m.vm.failure().unwrap_or("not measured").to_string(),
    };
    let kernel_cell = |k: &Measured<Kernel>| -> Cell {
        k.as_ref()
            .map(|k| format!("{} ({})", k.release, &k.boot_id[..8]))
            .into()
    };
    let mut t = Table::new(
        "one program, four paths",
        &["path", "kernel that ran it (boot_id)", "time"],
    );
    let host_kernel = Measured::Value(m.host.clone());
    t.row(vec![
        "host → program".into(),
        kernel_cell(&host_kernel),
        m.host_direct_ms
            .as_ref()
            .map(|d| format!("{} (average of {DIRECT_RUNS})", format_ms(*d)))
            .into(),
    ]);
    t.row(vec![
        "host → twinbox → container → program".into(),
        kernel_cell(&m.host_container_kernel),
        m.host_container
            .as_ref()
            .map(|s| format!("{} (twinbox run --rm, median)", format_ms(s.median)))
            .into(),
    ]);
    match m.vm.value() {
        Some(v) => {
            t.row(vec![
                format!("host → {} → VM kernel → program", m.hypervisor).into(),
                kernel_cell(&Measured::Value(v.kernel.clone())),
                format!("{} (average of {DIRECT_RUNS})", format_ms(v.direct_ms)).into(),
            ]);
            t.row(vec![
                format!(
                    "host → {} → VM kernel → twinbox → container → program",
                    m.hypervisor
                )
                .into(),
                kernel_cell(&v.container_kernel),
                inner
                    .as_ref()
                    .map(|s| format!("{} (twinbox run --rm, median)", format_ms(s.median)).into())
                    .unwrap_or_else(|| Cell::Failed {
                        failed: v
                            .container_kernel
                            .failure()
                            .unwrap_or("not measured")
                            .into(),
                    }),
            ]);
            t.row(vec![
                "once, before any of it: the VM's boot to its workload".into(),
                "".into(),
                v.boot_ms
                    .map(|b| format_ms(b).into())
                    .unwrap_or_else(|| Cell::Failed {
                        failed: "not measured".into(),
                    }),
            ]);
            t.row(vec![
                "once, in the VM: its first image (twinbox image bootstrap busybox)".into(),
                "".into(),
                v.bootstrap_ms
                    .map(|b| format_ms(b).into())
                    .unwrap_or_else(|| Cell::Failed {
                        failed: "not measured".into(),
                    }),
            ]);
        }
        None => {
            t.row(vec![
                "host → VM kernel → program".into(),
                vm_failed(),
                "".into(),
            ]);
            t.row(vec![
                "host → VM kernel → twinbox → container → program".into(),
                vm_failed(),
                "".into(),
            ]);
        }
    }
    report.tables.push(t);

    let vm_why = m.vm.failure().unwrap_or("not measured").to_string();
    let vm_value = |f: &dyn Fn(&Inside) -> Option<f64>| -> Measured<f64> {
        match m.vm.value() {
            Some(v) => Measured::from_option(f(v), "not measured"),
            None => Measured::failed(vm_why.clone()),
        }
    };
    report.charts.push(crate::charts::growth(
        "time to run the program, by path (ms)",
        Unit::Milliseconds,
        &[
            (
                "host → program".into(),
                Side::Host,
                m.host_direct_ms.clone(),
            ),
            (
                "host → container → program".into(),
                Side::Container,
                m.host_container.as_ref().map(|s| s.median),
            ),
            (
                "host → VM → program".into(),
                Side::Vm,
                vm_value(&|v| Some(v.direct_ms)),
            ),
            (
                "host → VM → container → program".into(),
                Side::Vm,
                vm_value(&|_| inner.as_ref().map(|s| s.median)),
            ),
            (
                "the VM's boot (once)".into(),
                Side::Vm,
                vm_value(&|v| v.boot_ms),
            ),
        ],
        crate::charts::emulation_note(m.emulated),
    ));
}

/// Act three: what the chain shows, and the facts of `--json`.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let chain = chain(m);
    report.findings.push(format!("The chain: {chain}."));
    if let Some(v) = m.vm.value() {
        match v.container_kernel.value() {
            Some(ck) if ck.boot_id == v.kernel.boot_id && ck.boot_id != m.host.boot_id => {
                report.findings.push(format!(
                    "The container inside the VM printed boot_id {} and release {}: the VM's kernel, not this host's ({}, boot_id {}). On a desktop every container shares the VM's Linux kernel; the desktop's own system never runs a container.",
                    ck.boot_id, ck.release, m.host.release, m.host.boot_id
                ));
            }
            Some(ck) => report.findings.push(format!(
                "Unexpected on this run: the container inside the VM printed boot_id {} while the VM's kernel has {} and the host's {}.",
                ck.boot_id, v.kernel.boot_id, m.host.boot_id
            )),
            None => {}
        }
        let inner = Stats::of(&v.container_ms);
        if let (Some(h), Some(i), Measured::Value(hd)) =
            (m.host_container.value(), inner.as_ref(), &m.host_direct_ms)
        {
            let engine_host = h.median - hd;
            let engine_vm = i.median - v.direct_ms;
            report.findings.push(format!(
                "Isn't that less efficient? The program alone took {} on the host and {} in the VM ({:.1} times); through twinbox and a container it took {} on the host and {} in the VM ({:.1} times). What the container adds is the engine's work (namespaces, overlay, cgroup, supervisor): about {} on the host and {} in the VM, the same work on a {} CPU{}.",
                format_ms(*hd),
                format_ms(v.direct_ms),
                v.direct_ms / hd.max(0.001),
                format_ms(h.median),
                format_ms(i.median),
                i.median / h.median.max(0.001),
                format_ms(engine_host.max(0.0)),
                format_ms(engine_vm.max(0.0)),
                if m.emulated { "software-emulated" } else { "virtual" },
                if m.emulated {
                    " (with hardware virtualization the VM's CPU runs the same instructions at nearly the host's speed, so both ratios fall close to 1)"
                } else {
                    ""
                }
            ));
            if let Some(b) = v.boot_ms {
                report.findings.push(format!(
                    "The VM's boot ({}) is paid once, when the desktop app starts, not per container: after it, {} container runs fit in the time of one boot. That is why Docker Desktop keeps its VM running between commands.",
                    format_ms(b),
                    (b / i.median.max(0.001)).floor()
                ));
            }
        }
    }
    if let Measured::Value(img) = &m.image {
        report.caveats.push(format!(
            "The VM's image holds busybox, this host's twinbox binary ({}) and the {} libraries it links; the VM boots it as a disk under an overlay whose writable layer, like twinbox's store inside, is in the VM's {} MiB of RAM. Desktop VMs boot a tuned kernel and keep the engine running; here the engine is started for each command, as on the host.",
            format_bytes(img.twinbox_bytes),
            img.libraries.len(),
            MEMORY_MIB
        ));
    }
    report.caveats.push(
        "Times in the VM come from its own clock (/proc/uptime, hundredths of a second), times on the host from the host's; each time is a whole command, the same command on both sides."
            .into(),
    );
    report.fact("chain", &chain);
    report.fact("host", json!({"kernel": m.host}));
    report.fact("host_direct_ms", &m.host_direct_ms);
    report.fact(
        "host_container",
        json!({"ms": m.host_container, "kernel": m.host_container_kernel}),
    );
    report.fact("image", &m.image);
    report.fact("hypervisor", &m.hypervisor);
    report.fact("emulated", m.emulated);
    report.fact(
        "vm",
        match &m.vm {
            Measured::Value(v) => json!({
                "ran": true,
                "kernel": v.kernel,
                "boot_ms": v.boot_ms,
                "direct_ms": v.direct_ms,
                "bootstrap_ms": v.bootstrap_ms,
                "container_ms": v.container_ms,
                "container_kernel": v.container_kernel,
                "container_is_vm_kernel": v.container_kernel.value().map(|k| k.boot_id == v.kernel.boot_id),
                "total_ms": v.total_ms,
                "memory_mib": v.memory_mib,
            }),
            Measured::Failed(why) => json!({"ran": false, "why": why}),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_read_from_the_programs_words() {
        let k = Kernel::parse("6.1.0-56-amd64 0b9a2c1e-2d3f-4a5b-8c7d-1e2f3a4b5c6d").unwrap();
        assert_eq!(k.release, "6.1.0-56-amd64");
        assert_eq!(k.boot_id, "0b9a2c1e-2d3f-4a5b-8c7d-1e2f3a4b5c6d");
        assert_eq!(Kernel::parse("error: no such image"), None);
        assert_eq!(Kernel::parse("0b9a2c1e-2d3f-4a5b-8c7d-1e2f3a4b5c6d"), None);
    }

    #[test]
    fn marks_are_read_wherever_the_console_puts_them() {
        let out = "noise\r\nTWINBOX-DESKTOP kernel 6.1 x\r\n[  1.0] TWINBOX-DESKTOP container 0 a b\nTWINBOX-DESKTOP done\n";
        let m = marks(out);
        assert_eq!(
            m,
            vec![
                ("kernel".to_string(), "6.1 x".to_string()),
                ("container".to_string(), "0 a b".to_string()),
                ("done".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn chain_script_runs_the_program_the_lesson_names() {
        let s = chain_script();
        assert!(s.contains(&format!("program='{PROGRAM}'")));
        assert!(s.contains(&format!("-lt {DIRECT_RUNS} ]")));
        assert!(s.starts_with("#!/bin/sh\n"));
    }
}
