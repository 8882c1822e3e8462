//! startup: a container starts a process; a VM first starts a machine and
//! boots a kernel. Timed over N runs on each side.

use serde_json::json;

use super::{three_acts, Lesson};
use crate::charts;
use crate::context::{cmd_opts, Context, VmSeries, BUSYBOX, VM_MEMORY_MIB};
use crate::measure::series::Series;
use crate::measure::time::Stats;
use crate::report::{format_ms, Cell, LessonReport, Measured, Table};
use crate::LessonError;

pub struct Startup;

const WORKLOAD: [&str; 2] = ["echo", "hello"];

impl Lesson for Startup {
    fn name(&self) -> &'static str {
        "startup"
    }

    fn title(&self) -> &'static str {
        "containers start faster than VMs"
    }

    fn summary(&self) -> &'static str {
        "time to the workload's start and to its end, N runs each, median and spread"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Starting a container means asking the already-running host kernel for a few \
             new namespaces and a cgroup, mounting the image's layers, and starting one \
             process. Starting a VM means creating a virtual machine, loading a kernel into \
             its memory, letting that kernel boot (find its devices, mount its root file \
             system, start its init), and only then starting the process.",
            "This lesson runs the same tiny workload (`echo hello`) several times each way \
             and measures two moments, from the start of the command: when the workload \
             itself starts (its execve), and when everything has ended.",
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

/// What the lesson measured: N foreground container runs and N VM boots.
struct Measurements {
    containers: Series,
    vms: VmSeries,
    c_start: Measured<Stats>,
    v_start: Measured<Stats>,
    c_total: Measured<Stats>,
    v_total: Measured<Stats>,
    emulated: bool,
}

/// Act one: run the workload both ways.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let runs = report.runs;
    let opts = cmd_opts(WORKLOAD.iter().map(|s| s.to_string()).collect());
    ctx.say.heading(&format!("{runs} container run(s)"));
    let containers = ctx.foreground_series(report, BUSYBOX, &opts, runs);
    ctx.say.heading(&format!("{runs} microVM run(s)"));
    let req = ctx.vm_request(BUSYBOX, &image, &opts, VM_MEMORY_MIB);
    let vms = ctx.vm_series(report, &req, runs);
    let m = Measurements {
        c_start: containers.to_workload(),
        v_start: vms.series.to_workload(),
        c_total: containers.total(),
        v_total: vms.series.total(),
        containers,
        vms,
        emulated: ctx.emulated(),
    };
    for (what, v) in [
        ("container time to workload start", &m.c_start),
        ("VM time to workload start", &m.v_start),
        ("container total time", &m.c_total),
        ("VM total time", &m.v_total),
    ] {
        report.check(what, v);
    }
    Ok(m)
}

/// Act two: each run in a table, where the VM's time went, two charts.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new(
        "each run (milliseconds from the start of the command)",
        &[
            "run",
            "container: workload starts",
            "container: all done",
            "microVM: workload starts",
            "microVM: all done",
        ],
    );
    let cell = |v: &[f64], i: usize, s: &Series| -> Cell {
        match v.get(i) {
            Some(ms) => format_ms(*ms).into(),
            None => Cell::Failed {
                failed: s
                    .failures
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "not measured".into()),
            },
        }
    };
    let (c, v) = (&m.containers, &m.vms.series);
    for i in 0..report.runs {
        t.row(vec![
            format!("{}", i + 1).into(),
            cell(&c.to_workload_ms, i, c),
            cell(&c.total_ms, i, c),
            cell(&v.to_workload_ms, i, v),
            cell(&v.total_ms, i, v),
        ]);
    }
    report.tables.push(t);
    if let Some(last) = m.vms.last() {
        let mut phases = Table::new(
            "where the microVM's time went (last run)",
            &["phase", "time"],
        );
        for p in &last.phases {
            phases.row(vec![
                p.name.clone().into(),
                p.ms.map(format_ms).map(Cell::from).unwrap_or(Cell::Failed {
                    failed: "not reached".into(),
                }),
            ]);
        }
        report.tables.push(phases);
    }
    report.charts.extend(charts::start_and_end(
        &m.c_start, &m.v_start, &m.c_total, &m.v_total, m.emulated,
    ));
}

/// Act three: what the numbers show, the caveats, and the facts for machines.
fn explain(m: &Measurements, report: &mut LessonReport) {
    findings(
        report, &m.c_start, &m.v_start, &m.c_total, &m.v_total, m.emulated,
    );
    let runs = report.runs;
    report.caveats.push(format!(
        "{runs} run(s) per side on a shared machine: other work on it moves the numbers; the spread shows how much."
    ));
    report.caveats.push(
        "Both sides start warm: the image's layers are unpacked and the guest's initramfs is built (and cached) before the first timed run. The container's time includes starting its supervisor process; the VM's includes writing the initramfs for the VMM."
            .into(),
    );
    let s = |v: &Measured<Stats>| serde_json::to_value(v).unwrap_or_default();
    report.fact(
        "container",
        json!({"to_workload_ms": s(&m.c_start), "total_ms": s(&m.c_total), "exit_codes": m.containers.exit_codes}),
    );
    report.fact(
        "vm",
        json!({
            "to_workload_ms": s(&m.v_start), "total_ms": s(&m.v_total),
            "exit_codes": m.vms.series.exit_codes,
            "phases": m.vms.last().map(|r| r.phases.clone()),
            "emulated": m.emulated,
        }),
    );
    report.fact(
        "container_started_first",
        match (m.c_start.value(), m.v_start.value()) {
            (Some(c), Some(v)) => Some(c.median < v.median),
            _ => None,
        },
    );
}

fn findings(
    report: &mut LessonReport,
    c_start: &Measured<Stats>,
    v_start: &Measured<Stats>,
    c_total: &Measured<Stats>,
    v_total: &Measured<Stats>,
    emulated: bool,
) {
    let (Some(c), Some(v)) = (c_start.value(), v_start.value()) else {
        report.findings.push(
            "One side has no timing (see the failures below), so this run cannot compare start-up times.".into(),
        );
        return;
    };
    if c.median < v.median {
        report.findings.push(format!(
            "The container's workload started after {} (median of {} runs), the microVM's after {}: about {:.0} times as long. The VM's extra time is the machine being built and its kernel booting before `echo` could run.",
            format_ms(c.median),
            c.runs.len(),
            format_ms(v.median),
            v.median / c.median.max(0.001)
        ));
    } else {
        report.findings.push(format!(
            "On this run the container did not start faster: its workload started after {} (median), the microVM's after {}. Something slowed the container down (a busy machine, a cold cache); run the lesson again and compare.",
            format_ms(c.median),
            format_ms(v.median)
        ));
    }
    if let (Some(c), Some(v)) = (c_total.value(), v_total.value()) {
        report.findings.push(format!(
            "Until everything had ended (the workload exited and was cleaned up): {} for the container, {} for the microVM{}.",
            format_ms(c.median),
            format_ms(v.median),
            if emulated {
                "; remember the VM numbers come from software emulation and a VM on hardware-assisted KVM boots much faster, though still not as fast as a process starts"
            } else {
                ""
            }
        ));
    }
}
