//! `twinbox compare IMAGE [CMD...]`: the same workload as a container and as a
//! microVM, side by side: the kernel each sees, time to the workload's start
//! and to its end over N runs, memory, disk, exit codes, and whether the
//! outputs match. It runs in three acts, as the lessons do: measure (with
//! `measure::series`), tables and charts (with `charts`), then the findings.

use serde_json::json;
use twinbox_engine::image::Image;

use crate::backend::VmMemory;
use crate::charts;
use crate::container::DetachedEnd;
use crate::context::{cmd_opts, sh, ContainerSeries, Context, VmSeries};
use crate::measure::disk::{image_footprint, ImageFootprint};
use crate::measure::kernel::{host_view, parse_probe, KernelView, PROBE_SCRIPT};
use crate::measure::memory::{parse_meminfo, ContainerMemory, MemInfo};
use crate::measure::series::{same_output, Series};
use crate::measure::time::Stats;
use crate::report::{format_bytes, BackendNote, Cell, LessonReport, Measured, Table};
use crate::LessonError;

pub struct CompareSpec {
    pub image: String,
    /// Replaces the image's Cmd when not empty.
    pub cmd: Vec<String>,
    pub runs: usize,
    pub memory_mib: u64,
}

/// The kernel (and, in a VM, the memory) a side reports, from one probe run.
#[derive(Debug, Clone)]
pub struct Probe {
    pub kernel: Measured<KernelView>,
    pub meminfo: Measured<MemInfo>,
}

const FULL_PROBE: &str =
    "uname -r; cat /proc/sys/kernel/random/boot_id; cat /proc/version; cat /proc/meminfo";

fn probe_from(output: &str) -> Probe {
    Probe {
        kernel: Measured::from_result(parse_probe(output)),
        meminfo: Measured::from_result(parse_meminfo(output)),
    }
}

fn failed_probe(why: String) -> Probe {
    Probe {
        kernel: Measured::Failed(why.clone()),
        meminfo: Measured::Failed(why),
    }
}

pub fn container_probe(ctx: &Context, report: &mut LessonReport, image: &str) -> Probe {
    match ctx.container(report, image, &cmd_opts(sh(FULL_PROBE))) {
        Ok(run) if run.exit_code == Some(0) => probe_from(&run.output),
        Ok(run) => failed_probe(format!(
            "the probe exited with {:?} (does the image have sh, uname and cat?): {}",
            run.exit_code,
            run.output.trim()
        )),
        Err(e) => failed_probe(e.to_string()),
    }
}

pub fn vm_probe(
    ctx: &Context,
    report: &mut LessonReport,
    image_ref: &str,
    image: &Image,
    memory_mib: u64,
) -> Probe {
    let req = ctx.vm_request(image_ref, image, &cmd_opts(sh(FULL_PROBE)), memory_mib);
    match ctx.prepare_vm(&req).and_then(|_| ctx.vm_run(report, &req)) {
        Ok(run) => match (&run.failure, run.exit_code) {
            (Some(why), _) => failed_probe(why.clone()),
            (None, Some(0)) => probe_from(&run.output),
            (None, code) => failed_probe(format!(
                "the probe exited with {code:?} (does the image have sh, uname and cat?)"
            )),
        },
        Err(why) => failed_probe(why),
    }
}

fn vm_memory_failed(why: &str, configured: u64) -> VmMemory {
    VmMemory {
        configured_bytes: configured,
        process_rss: Measured::failed(why),
        guest_resident: Measured::failed(why),
        vmm_overhead: Measured::failed(why),
        method: String::new(),
    }
}

fn bytes(m: &Measured<u64>) -> Cell {
    m.as_ref().map(|b| format_bytes(*b)).into()
}

fn stats_cell(m: &Measured<Stats>) -> Cell {
    m.as_ref().map(|s| s.describe()).into()
}

fn codes(series: &Series) -> String {
    if series.exit_codes.is_empty() {
        return "-".into();
    }
    series
        .exit_codes
        .iter()
        .map(|c| c.map_or("none".to_string(), |c| c.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the whole comparison and returns it as a report.
pub fn run(ctx: &mut Context, spec: &CompareSpec) -> Result<LessonReport, LessonError> {
    if spec.runs == 0 {
        return Err(LessonError::BadInput("--runs 0: give at least 1".into()));
    }
    let title = if spec.cmd.is_empty() {
        spec.image.clone()
    } else {
        format!("{} {}", spec.image, crate::shell::join(&spec.cmd))
    };
    let mut report = LessonReport::new("compare", &format!("compare: {title}"));
    report.runs = spec.runs;
    report.explanation = vec![
        "The same image config (entrypoint, command, environment, working directory, user) \
         runs once as a container, which is a group of host processes, and once as a microVM, \
         which boots its own kernel. A short probe on each side first reads the kernel's \
         release and boot_id (and, in the VM, /proc/meminfo); then the workload runs the \
         given number of times on each side."
            .into(),
    ];
    let image = ctx.image(&spec.image)?;
    ctx.select_backend()?;
    ctx.say.title(&report.title.clone());
    match ctx.vm() {
        Ok(b) => {
            let note: BackendNote = b.note().clone();
            let mut banner = format!(
                "VM backend: {} ({}). {}.",
                note.name, note.description, note.reason
            );
            if note.emulated {
                banner.push_str(" VM timings are from software emulation and are not representative of a VM on hardware-assisted KVM.");
            }
            ctx.say.banner(&banner);
            report.vm_backend = Some(note);
        }
        Err(why) => {
            ctx.say
                .failure(&format!("no VM backend works on this host: {why}"));
            report.failures.push(format!("VM backend: {why}"));
        }
    }
    for p in report.explanation.clone() {
        ctx.say.paragraph(&p);
    }
    let m = measure(ctx, &mut report, spec, &image)?;
    present(&m, &mut report);
    explain(&m, &mut report);
    ctx.say.summary(&report);
    Ok(report)
}

/// What both sides gave: the probes, the N runs, memory and disk.
struct Measurements {
    host: KernelView,
    c_probe: Probe,
    v_probe: Probe,
    containers: ContainerSeries,
    vms: VmSeries,
    footprint: ImageFootprint,
    c_mem: ContainerMemory,
    v_mem: VmMemory,
    guest_used: Measured<u64>,
    outputs_match: Measured<bool>,
    c_start: Measured<Stats>,
    v_start: Measured<Stats>,
    c_total: Measured<Stats>,
    v_total: Measured<Stats>,
    emulated: bool,
}

/// Act one: the host's kernel, a probe on each side, then the workload N
/// times each way.
fn measure(
    ctx: &Context,
    report: &mut LessonReport,
    spec: &CompareSpec,
    image: &Image,
) -> Result<Measurements, LessonError> {
    let host = host_view()
        .map_err(|e| LessonError::BadInput(format!("cannot read the host's kernel: {e}")))?;
    report.host_kernel = host.release.clone();
    ctx.host_step(
        report,
        PROBE_SCRIPT,
        &format!("{}\n{}\n{}\n", host.release, host.boot_id, host.version),
    );

    ctx.say.heading("the kernel each side sees");
    let c_probe = container_probe(ctx, report, &spec.image);
    let v_probe = vm_probe(ctx, report, &spec.image, image, spec.memory_mib);

    let opts = cmd_opts(spec.cmd.clone());
    ctx.say
        .heading(&format!("the workload, {} run(s) on each side", spec.runs));
    let containers = ctx.container_series(report, &spec.image, &opts, spec.runs);
    let req = ctx.vm_request(&spec.image, image, &opts, spec.memory_mib);
    let vms = ctx.vm_series(report, &req, spec.runs);

    let footprint = image_footprint(&ctx.store, image);
    let c_mem = containers.last.as_ref().map_or_else(
        || ContainerMemory::failed("no container run finished"),
        DetachedEnd::memory,
    );
    let v_mem = match vms.last() {
        Some(run) => run.memory.clone(),
        None => vm_memory_failed(
            vms.series
                .failures
                .first()
                .map_or("no VM run finished", |s| s.as_str()),
            spec.memory_mib << 20,
        ),
    };
    let guest_used = v_probe.meminfo.as_ref().map(|m| m.used());
    let outputs_match: Measured<bool> = match (&containers.series.output, &vms.series.output) {
        (Some(a), Some(b)) => Measured::Value(same_output(a, b)),
        _ => Measured::failed("one side produced no finished run"),
    };
    let m = Measurements {
        c_start: containers.series.to_workload(),
        v_start: vms.series.to_workload(),
        c_total: containers.series.total(),
        v_total: vms.series.total(),
        host,
        c_probe,
        v_probe,
        containers,
        vms,
        footprint,
        c_mem,
        v_mem,
        guest_used,
        outputs_match,
        emulated: ctx.emulated(),
    };
    for (what, k) in [
        ("container kernel", &m.c_probe.kernel),
        ("VM kernel", &m.v_probe.kernel),
    ] {
        report.check(what, k);
    }
    report.check("container time to workload start", &m.c_start);
    report.check("VM time to workload start", &m.v_start);
    report.check("container memory", &m.c_mem.total);
    report.check("VM memory", &m.v_mem.process_rss);
    report.check("guest memory", &m.guest_used);
    Ok(m)
}

/// Act two: the side-by-side table and the timing and memory charts.
fn present(s: &Measurements, report: &mut LessonReport) {
    let host = &s.host;
    let kernel_cell = |m: &Measured<KernelView>| -> Cell {
        m.as_ref()
            .map(|k| {
                if k.boot_id == host.boot_id {
                    format!("{} (the host's kernel)", k.release)
                } else {
                    format!("{} (its own kernel)", k.release)
                }
            })
            .into()
    };
    let boot_cell = |m: &Measured<KernelView>| -> Cell {
        m.as_ref()
            .map(|k| {
                if k.boot_id == host.boot_id {
                    "same as the host's".to_string()
                } else {
                    format!("{} (differs from the host's)", k.boot_id)
                }
            })
            .into()
    };
    let (c_start, v_start, c_total, v_total) = (&s.c_start, &s.v_start, &s.c_total, &s.v_total);
    let writable = s.containers.last.as_ref().map(|e| e.footprint.writable);

    let mut t = Table::new("side by side", &["", "container", "microVM"]);
    t.row(vec![
        "kernel (uname -r)".into(),
        kernel_cell(&s.c_probe.kernel),
        kernel_cell(&s.v_probe.kernel),
    ]);
    t.row(vec![
        "boot_id".into(),
        boot_cell(&s.c_probe.kernel),
        boot_cell(&s.v_probe.kernel),
    ]);
    let emu = if s.emulated { " [emulated]" } else { "" };
    t.row(vec![
        "time to workload start".into(),
        stats_cell(c_start),
        match stats_cell(v_start) {
            Cell::Text(x) => Cell::Text(format!("{x}{emu}")),
            f => f,
        },
    ]);
    t.row(vec![
        "total time".into(),
        stats_cell(c_total),
        match stats_cell(v_total) {
            Cell::Text(x) => Cell::Text(format!("{x}{emu}")),
            f => f,
        },
    ]);
    t.row(vec![
        "memory reserved".into(),
        "none (shares the host's RAM)".into(),
        format!("{} guest RAM", format_bytes(s.v_mem.configured_bytes)).into(),
    ]);
    t.row(vec![
        "memory used by the workload".into(),
        s.c_mem
            .cgroup_peak
            .as_ref()
            .map(|b| format!("{} cgroup peak", format_bytes(*b)))
            .into(),
        s.guest_used
            .as_ref()
            .map(|b| format!("{} used, as the guest reports it", format_bytes(*b)))
            .into(),
    ]);
    t.row(vec![
        "host process running it".into(),
        s.c_mem
            .supervisor_rss
            .as_ref()
            .map(|b| format!("{} supervisor RSS", format_bytes(*b)))
            .into(),
        s.v_mem
            .process_rss
            .as_ref()
            .map(|b| format!("{} VMM RSS", format_bytes(*b)))
            .into(),
    ]);
    t.row(vec![
        "VMM overhead (RSS minus guest RAM)".into(),
        "-".into(),
        bytes(&s.v_mem.vmm_overhead),
    ]);
    t.row(vec![
        "memory total on the host".into(),
        s.c_mem
            .total
            .as_ref()
            .map(|b| format!("{} (peak + supervisor)", format_bytes(*b)))
            .into(),
        s.v_mem
            .process_rss
            .as_ref()
            .map(|b| format!("{} (VMM process, guest RAM included)", format_bytes(*b)))
            .into(),
    ]);
    t.row(vec![
        "disk".into(),
        format!(
            "{} image in the store (shared by every container) + {} written by this one",
            format_bytes(s.footprint.total()),
            writable.map_or("?".into(), format_bytes)
        )
        .into(),
        match s.vms.initramfs_bytes {
            Some(b) => format!("{} initramfs loaded into each VM's RAM", format_bytes(b)).into(),
            None => Cell::Failed {
                failed: "no initramfs was built".into(),
            },
        },
    ]);
    t.row(vec![
        "exit codes".into(),
        codes(&s.containers.series).into(),
        codes(&s.vms.series).into(),
    ]);
    t.row(vec![
        "output".into(),
        s.outputs_match
            .as_ref()
            .map(|m| {
                if *m {
                    "same on both sides"
                } else {
                    "differs (see the steps above)"
                }
            })
            .into(),
        "".into(),
    ]);
    report.tables.push(t);

    report.charts.extend(charts::start_and_end(
        c_start, v_start, c_total, v_total, s.emulated,
    ));
    report.charts.push(charts::host_memory(
        &s.c_mem.total,
        &s.v_mem.process_rss,
        s.v_mem.configured_bytes,
        Some(s.v_mem.method.clone()).filter(|m| !m.is_empty()),
    ));
}

/// Act three: what the numbers show, and the facts for `--json`.
fn explain(s: &Measurements, report: &mut LessonReport) {
    let host = &s.host;
    let (c_start, v_start, c_total, v_total) = (&s.c_start, &s.v_start, &s.c_total, &s.v_total);
    let writable = s.containers.last.as_ref().map(|e| e.footprint.writable);

    if let (Some(c), Some(v)) = (c_start.value(), v_start.value()) {
        let finding = if c.median < v.median {
            format!(
                "The container reached its workload in {} (median), the microVM in {}: {:.0}× longer, because the VM first has to start a VMM and boot a kernel.",
                crate::report::format_ms(c.median),
                crate::report::format_ms(v.median),
                v.median / c.median.max(0.001)
            )
        } else {
            format!(
                "On this run the container took {} to reach its workload and the microVM {}: the container was not faster here.",
                crate::report::format_ms(c.median),
                crate::report::format_ms(v.median)
            )
        };
        report.findings.push(finding);
    }
    if s.emulated {
        report.caveats.push("The VM ran under software emulation (TCG): its times are many times longer than on hardware-assisted KVM.".into());
    }
    report.caveats.push("Both sides reuse what is cached: the image's unpacked layers (container) and the initramfs built from them (VM) are made before the timed runs.".into());

    let stats_json = |m: &Measured<Stats>| serde_json::to_value(m).unwrap_or_default();
    let kernel_json = |m: &Measured<KernelView>| serde_json::to_value(m).unwrap_or_default();
    report.fact(
        "host",
        json!({"release": host.release, "boot_id": host.boot_id}),
    );
    report.fact(
        "container",
        json!({
            "kernel": kernel_json(&s.c_probe.kernel),
            "same_boot_as_host": s.c_probe.kernel.value().map(|k| k.boot_id == host.boot_id),
            "to_workload_ms": stats_json(c_start),
            "total_ms": stats_json(c_total),
            "memory": s.c_mem,
            "disk": {"image_bytes": s.footprint.total(), "image_unpacked_bytes": s.footprint.unpacked(), "writable_bytes": writable},
            "exit_codes": s.containers.series.exit_codes,
            "output": s.containers.series.output,
        }),
    );
    report.fact(
        "vm",
        json!({
            "kernel": kernel_json(&s.v_probe.kernel),
            "same_boot_as_host": s.v_probe.kernel.value().map(|k| k.boot_id == host.boot_id),
            "to_workload_ms": stats_json(v_start),
            "total_ms": stats_json(v_total),
            "memory": s.v_mem,
            "guest_meminfo": serde_json::to_value(&s.v_probe.meminfo).unwrap_or_default(),
            "guest_used_bytes": serde_json::to_value(&s.guest_used).unwrap_or_default(),
            "disk": {"initramfs_bytes": s.vms.initramfs_bytes, "initramfs_cache": s.vms.initramfs_cache},
            "exit_codes": s.vms.series.exit_codes,
            "output": s.vms.series.output,
            "phases": s.vms.last().map(|r| r.phases.clone()),
            "emulated": s.emulated,
        }),
    );
    report.fact(
        "outputs_match",
        serde_json::to_value(&s.outputs_match).unwrap_or_default(),
    );
}
