//! memory: a container's memory is what its processes use (charged to its
//! cgroup) plus a small supervisor; a VM reserves its RAM and adds a VMM.

use std::time::Duration;

use serde_json::json;

use super::{three_acts, Lesson};
use crate::backend::VmRun;
use crate::charts;
use crate::context::{cmd_opts, sh, Context, BUSYBOX, RUN_TIMEOUT, VM_MEMORY_MIB};
use crate::measure::memory::{
    host_meminfo, median_measured, parse_meminfo, ContainerMemory, MemInfo,
};
use crate::report::{format_bytes, Cell, LessonReport, Measured, Table};
use crate::LessonError;

pub struct Memory;

/// Prints what the inside sees, then stays up long enough to be measured.
const WORKLOAD: &str = "grep ^Mem /proc/meminfo; echo ready; sleep 2";

impl Lesson for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn title(&self) -> &'static str {
        "containers use less memory than VMs"
    }

    fn summary(&self) -> &'static str {
        "cgroup peak + supervisor RSS against guest RAM + VMM RSS, and what each inside sees"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A container has no memory of its own: its processes take pages from the host \
             like any other process, and the kernel counts them in the container's cgroup \
             (that count is what a memory limit applies to). Besides them, twinbox keeps one \
             small supervisor process per running container, which owns its output and \
             records its exit.",
            "A VM is given a fixed amount of RAM when it starts. The guest kernel manages that \
             RAM itself, and the host sees one big process (the VMM) whose memory is the guest \
             RAM the guest has touched plus the VMM's own code and data. Firecracker measures \
             the VMM's cost as the process's resident memory minus the resident guest RAM; \
             this lesson does the same.",
            "The same small workload runs both ways: it prints what it sees in /proc/meminfo \
             and sleeps two seconds, while the lesson measures from the host.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the lesson measured (medians over the runs; one run: its values).
struct Measurements {
    host: MemInfo,
    c_mems: Vec<ContainerMemory>,
    c_current: Option<u64>,
    c_seen: Measured<MemInfo>,
    c_peak: Measured<u64>,
    c_sup: Measured<u64>,
    c_pss: Measured<u64>,
    c_total: Measured<u64>,
    v_rss: Measured<u64>,
    v_guest: Measured<u64>,
    v_over: Measured<u64>,
    v_method: String,
    v_seen: Measured<MemInfo>,
    v_used: Measured<u64>,
    configured: u64,
}

/// Act one: the workload N times each way, sampled from the host while it sleeps.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let runs = report.runs;
    let opts = cmd_opts(sh(WORKLOAD));
    let host = host_meminfo().map_err(LessonError::BadInput)?;

    let mut c_mems: Vec<ContainerMemory> = Vec::new();
    let mut c_current: Option<u64> = None;
    let mut c_seen: Measured<MemInfo> = Measured::failed("the container did not run");
    for i in 0..runs {
        if runs > 1 {
            ctx.say.note(&format!("container run {}/{runs}", i + 1));
        }
        let mut d = match ctx.detached(report, BUSYBOX, &opts) {
            Ok(d) => d,
            Err(e) => {
                ctx.say.failure(&format!("failed: {e}"));
                c_mems.push(ContainerMemory::failed("no container run finished"));
                continue;
            }
        };
        // measure while it sleeps: the cgroup's current usage
        let mut out = std::io::stdout();
        if d.wait_for_output("ready", Duration::from_secs(30), &mut out) {
            c_current = d.cgroup_usage().and_then(|u| u.memory_bytes);
        }
        let end = ctx.finish_detached(report, d, RUN_TIMEOUT)?;
        c_seen = Measured::from_result(parse_meminfo(&end.output));
        c_mems.push(end.memory());
    }

    let req = ctx.vm_request(BUSYBOX, &image, &opts, VM_MEMORY_MIB);
    let vms = ctx.vm_series(report, &req, runs);

    let c_peak = median_measured(c_mems.iter().map(|m| &m.cgroup_peak), "no container run");
    let c_sup = median_measured(c_mems.iter().map(|m| &m.supervisor_rss), "no container run");
    let c_pss = median_measured(c_mems.iter().map(|m| &m.supervisor_pss), "no container run");
    let c_total = median_measured(c_mems.iter().map(|m| &m.total), "no container run");

    let vm_fail = vms
        .series
        .failures
        .first()
        .cloned()
        .unwrap_or_else(|| "no VM run finished".into());
    let ok_runs: Vec<&VmRun> = vms.runs.iter().filter(|r| r.failure.is_none()).collect();
    let v_rss = median_measured(ok_runs.iter().map(|r| &r.memory.process_rss), &vm_fail);
    let v_guest = median_measured(ok_runs.iter().map(|r| &r.memory.guest_resident), &vm_fail);
    let v_over = median_measured(ok_runs.iter().map(|r| &r.memory.vmm_overhead), &vm_fail);
    let v_method = ok_runs
        .first()
        .map(|r| r.memory.method.clone())
        .unwrap_or_default();
    let v_seen: Measured<MemInfo> = match ok_runs.last() {
        Some(r) => Measured::from_result(parse_meminfo(&r.output)),
        None => Measured::failed(vm_fail.clone()),
    };
    let v_used = v_seen.as_ref().map(|m| m.used());
    for (what, m) in [
        ("container cgroup peak", &c_peak),
        ("container supervisor RSS", &c_sup),
        ("VMM process RSS", &v_rss),
        ("guest-reported use", &v_used),
    ] {
        report.check(what, m);
    }
    Ok(Measurements {
        host,
        c_mems,
        c_current,
        c_seen,
        c_peak,
        c_sup,
        c_pss,
        c_total,
        v_rss,
        v_guest,
        v_over,
        v_method,
        v_seen,
        v_used,
        configured: VM_MEMORY_MIB << 20,
    })
}

/// Act two: the table of what each side and the host see, and the chart.
fn present(m: &Measurements, report: &mut LessonReport) {
    let configured = m.configured;
    let b = |m: &Measured<u64>| -> Cell { m.as_ref().map(|v| format_bytes(*v)).into() };
    let mut t = Table::new(
        "memory, as each side and the host see it",
        &["", "container", "microVM"],
    );
    t.row(vec![
        "RAM the inside sees (MemTotal)".into(),
        m.c_seen
            .as_ref()
            .map(|seen| {
                format!(
                    "{} (the host's: {})",
                    format_bytes(seen.total),
                    format_bytes(m.host.total)
                )
            })
            .into(),
        m.v_seen
            .as_ref()
            .map(|seen| format!("{} (its own RAM)", format_bytes(seen.total)))
            .into(),
    ]);
    t.row(vec![
        "reserved up front".into(),
        "nothing".into(),
        format!("{} guest RAM", format_bytes(configured)).into(),
    ]);
    t.row(vec![
        "used by the workload".into(),
        m.c_peak
            .as_ref()
            .map(|v| format!("{} cgroup peak", format_bytes(*v)))
            .into(),
        m.v_used
            .as_ref()
            .map(|v| {
                format!(
                    "{} (guest kernel + workload, MemTotal − MemAvailable)",
                    format_bytes(*v)
                )
            })
            .into(),
    ]);
    t.row(vec![
        "process on the host that runs it".into(),
        m.c_sup
            .as_ref()
            .map(|v| format!("supervisor: {} RSS", format_bytes(*v)))
            .into(),
        m.v_rss
            .as_ref()
            .map(|v| format!("VMM: {} RSS", format_bytes(*v)))
            .into(),
    ]);
    t.row(vec![
        "  of which guest RAM".into(),
        "-".into(),
        b(&m.v_guest),
    ]);
    t.row(vec![
        "  of which the process itself".into(),
        m.c_pss
            .as_ref()
            .map(|v| {
                format!(
                    "{} PSS (shared pages split among sharers)",
                    format_bytes(*v)
                )
            })
            .into(),
        m.v_over
            .as_ref()
            .map(|v| format!("{} VMM overhead (RSS − guest RAM)", format_bytes(*v)))
            .into(),
    ]);
    t.row(vec![
        "total on the host".into(),
        m.c_total
            .as_ref()
            .map(|v| format!("{} (cgroup peak + supervisor RSS)", format_bytes(*v)))
            .into(),
        m.v_rss
            .as_ref()
            .map(|v| format!("{} (VMM RSS, guest RAM included)", format_bytes(*v)))
            .into(),
    ]);
    report.tables.push(t);
    report.charts.push(charts::host_memory(
        &m.c_total,
        &m.v_rss,
        configured,
        Some(format!(
            "container: cgroup peak ({}) plus the supervisor's RSS; microVM: {}",
            m.c_peak
                .as_ref()
                .map(|v| format_bytes(*v))
                .value()
                .cloned()
                .unwrap_or_else(|| "failed".into()),
            if m.v_method.is_empty() {
                "not measured".to_string()
            } else {
                m.v_method.clone()
            }
        )),
    ));
}

/// Act three: what this shows, quoting the numbers; caveats; facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let configured = m.configured;
    if let (Some(c), Some(v)) = (m.c_total.value(), m.v_rss.value()) {
        if c < v {
            report.findings.push(format!(
                "Running `{WORKLOAD}` cost {} on the host as a container (its cgroup peaked at {} and its supervisor had {} resident) and {} as a microVM, whose VMM process held {} of guest RAM and {} of its own. The VM also reserved {} that no other program can count on, while its guest reported {} in use.",
                format_bytes(*c),
                m.c_peak.value().map_or("?".into(), |v| format_bytes(*v)),
                m.c_sup.value().map_or("?".into(), |v| format_bytes(*v)),
                format_bytes(*v),
                m.v_guest.value().map_or("?".into(), |v| format_bytes(*v)),
                m.v_over.value().map_or("?".into(), |v| format_bytes(*v)),
                format_bytes(configured),
                m.v_used.value().map_or("an amount that was not measured".into(), |v| format_bytes(*v)),
            ));
        } else {
            report.findings.push(format!(
                "On this run the container did not use less: {} on the host as a container against {} as a microVM. That contradicts the usual expectation; look at the table for which part grew.",
                format_bytes(*c),
                format_bytes(*v)
            ));
        }
    }
    if let Some(seen) = m.c_seen.value() {
        report.findings.push(format!(
            "Inside the container, /proc/meminfo reports {} of RAM: that is the host's memory. A container has no RAM of its own to report; a memory limit (see the limits lesson) is enforced by its cgroup without changing this number. Inside the VM, MemTotal is {}: the RAM it was given, minus what its kernel keeps for itself.",
            format_bytes(seen.total),
            m.v_seen.value().map_or("not measured".into(), |seen| format_bytes(seen.total))
        ));
    }
    report.caveats.push(
        "RSS counts pages shared with other processes (the twinbox binary's code, libc) in full; PSS divides them among the processes that share them, so many supervisors cost less than many times one RSS."
            .into(),
    );
    report.caveats.push(
        "The VM's guest RAM only becomes resident as the guest touches it; a long-running guest tends to touch (and keep) much more of it, as its kernel uses free RAM as page cache."
            .into(),
    );
    report.fact(
        "container",
        json!({"cgroup_peak_bytes": m.c_peak, "cgroup_current_bytes": m.c_current,
               "supervisor_rss_bytes": m.c_sup, "supervisor_pss_bytes": m.c_pss, "total_bytes": m.c_total,
               "memtotal_seen_bytes": m.c_seen.value().map(|seen| seen.total), "runs": m.c_mems}),
    );
    report.fact(
        "vm",
        json!({"configured_bytes": configured, "process_rss_bytes": m.v_rss, "guest_resident_bytes": m.v_guest,
               "vmm_overhead_bytes": m.v_over, "guest_used_bytes": m.v_used,
               "memtotal_seen_bytes": m.v_seen.value().map(|seen| seen.total), "method": m.v_method}),
    );
    report.fact("host_memtotal_bytes", m.host.total);
}
