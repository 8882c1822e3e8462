//! shared-kernel: what "containers are less secure" rests on. Every
//! container talks to the one host kernel: what one container does to a
//! kernel-wide resource, the host and every other container see; a VM has a
//! kernel of its own. Shown with harmless cases only, on a shared machine.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::RunOptions;
use twinbox_engine::runtime::security::seccomp;

use super::{three_acts, Lesson};
use crate::backend::VmRun;
use crate::context::{cmd_opts, sh, Context, BUSYBOX, RUN_TIMEOUT, VM_MEMORY_MIB};
use crate::report::{Cell, LessonReport, Measured, Side, Table, Unit};
use crate::LessonError;

pub struct SharedKernel;

/// How many sleeping processes container A starts: enough to stand out of
/// what other programs on a busy machine start and stop meanwhile.
const TASKS: usize = 200;

/// What container B (and the VM) read: the kernel's task count and clock.
const LOOK: &str = "cat /proc/loadavg; cat /proc/uptime";

/// What a container may ask of the kernel, read from inside it.
const RIGHTS: &str = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status
o=$(awk '$2 == \"/proc/sys\" { o = $4 } END { print o }' /proc/mounts)
[ -n \"$o\" ] || o=$(awk '$2 == \"/proc\" { o = $4 } END { print o }' /proc/mounts)
case \"$o\" in ro*) echo 'proc-sys: read-only';; *) echo 'proc-sys: writable';; esac
k=$(dmesg 2>&1); rc=$?
if [ $rc -eq 0 ]; then echo \"kernel-log: readable, $(echo \"$k\" | wc -l) lines, last: $(echo \"$k\" | tail -n 1)\"; else echo \"kernel-log: refused: $(echo \"$k\" | head -n 1)\"; fi";

impl Lesson for SharedKernel {
    fn name(&self) -> &'static str {
        "shared-kernel"
    }

    fn title(&self) -> &'static str {
        "one kernel for all containers: what it means for isolation"
    }

    fn summary(&self) -> &'static str {
        "a kernel-wide count changed by one container seen by the host and another, not by a VM; seccomp, capabilities, --privileged"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Course material says containers are less secure than VMs. The reason is not a \
             weakness of namespaces as such, but that every container is a group of \
             processes making system calls into the one host kernel. Namespaces give each \
             container its own view of some kernel objects (processes, mounts, network), but \
             many things in the kernel exist once: the process table, its clock, its log, its \
             memory, its limits. A bug in any of the several hundred system calls is a bug \
             shared by every container on the machine.",
            "A VM's programs make their system calls into the guest's own kernel. To reach \
             the host, the guest has to go through the few devices the VMM emulates and the \
             hypervisor's exits: a much smaller surface.",
            "This lesson shows both safely: one container starts a few hundred sleeping \
             processes, and the host and a second container see the kernel's task count rise \
             while a VM does not; then it reads what a container may ask of the kernel \
             (capabilities, the seccomp filter, /proc/sys, the kernel log) by default and \
             with --privileged.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// The kernel's task count and clock, as one side reads them.
#[derive(Debug, Clone, Copy, Serialize)]
struct Look {
    tasks: u64,
    uptime_s: f64,
}

/// What a container may ask of the kernel.
#[derive(Debug, Clone, Serialize)]
struct Rights {
    capabilities: u32,
    seccomp_mode: u32,
    proc_sys_writable: bool,
    kernel_log_readable: bool,
    kernel_log_last: Option<String>,
}

struct Measurements {
    host_before: Measured<Look>,
    host_during: Measured<Look>,
    other_container: Measured<Look>,
    vm: Measured<Look>,
    vm_kernel: Option<String>,
    default_rights: Measured<Rights>,
    privileged_rights: Measured<Rights>,
    host_log_has_privileged_line: Option<bool>,
    syscalls_known: usize,
    syscalls_allowed: usize,
    /// The VM backend's name (twinbox, qemu), None without one.
    vm_backend: Option<String>,
}

/// Act one: the shared count, then the rights.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let host_before = Measured::from_result(host_look());
    show_host_look(ctx, report, &host_before, "before");

    ctx.say
        .heading(&format!("container A starts {TASKS} sleeping processes"));
    let a_script =
        format!("i=0; while [ $i -lt {TASKS} ]; do sleep 600 & i=$((i+1)); done; echo ready; wait");
    let mut a = ctx.detached(report, BUSYBOX, &cmd_opts(sh(&a_script)))?;
    let ready = a.wait_for_output("ready", Duration::from_secs(60), &mut std::io::stdout());
    let host_during = if ready {
        Measured::from_result(host_look())
    } else {
        Measured::failed("container A did not start its processes")
    };
    show_host_look(ctx, report, &host_during, "while A runs");

    ctx.say
        .heading("container B, a separate container, reads the same numbers");
    let other_container = match ctx.container(report, BUSYBOX, &cmd_opts(sh(LOOK))) {
        Ok(run) if run.exit_code == Some(0) => Measured::from_result(parse_look(&run.output)),
        Ok(run) => Measured::failed(format!("container B exited with {:?}", run.exit_code)),
        Err(e) => Measured::failed(e.to_string()),
    };

    ctx.say.heading("a microVM reads them from its own kernel");
    let req = ctx.vm_request(BUSYBOX, &image, &cmd_opts(sh(LOOK)), VM_MEMORY_MIB);
    let vm_run: Result<VmRun, String> = ctx.prepare_vm(&req).and_then(|_| ctx.vm_run(report, &req));
    let (vm, vm_kernel) = match vm_run {
        Ok(run) => match (&run.failure, run.exit_code) {
            (Some(why), _) => (Measured::failed(why.clone()), None),
            (None, Some(0)) => (
                Measured::from_result(parse_look(&run.output)),
                Some(run.kernel.clone()),
            ),
            (None, code) => (
                Measured::failed(format!("the VM's workload exited with {code:?}")),
                None,
            ),
        },
        Err(why) => (Measured::Failed(why), None),
    };
    a.stop()?;
    let _ = ctx.finish_detached(report, a, RUN_TIMEOUT)?;

    ctx.say.heading("what a container may ask of the kernel");
    let default_rights = rights(ctx, report, &cmd_opts(sh(RIGHTS)));
    let privileged_rights = rights(
        ctx,
        report,
        &RunOptions {
            privileged: true,
            ..cmd_opts(sh(RIGHTS))
        },
    );
    let host_log = std::process::Command::new("dmesg")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let host_log_has_privileged_line = match (&host_log, privileged_rights.value()) {
        (Some(log), Some(r)) => r
            .kernel_log_last
            .as_deref()
            .map(|last| log.lines().any(|l| message(l) == message(last))),
        _ => None,
    };
    if let Some(log) = &host_log {
        let last: Vec<&str> = log.lines().rev().take(3).collect();
        ctx.host_step(
            report,
            "dmesg | tail -n 3   # the host's kernel log",
            &last
                .iter()
                .rev()
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        );
    }

    let known: BTreeSet<&str> = seccomp::x86_64_syscall_names().collect();
    let allowed: BTreeSet<String> = seccomp::docker_default_profile()
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == oci_allow())
        .flat_map(|s| s.names().iter().cloned())
        .filter(|n| known.contains(n.as_str()))
        .collect();

    for (what, v) in [
        ("host task count", &host_before),
        ("host task count while A runs", &host_during),
        ("container B's view", &other_container),
        ("the VM's view", &vm),
    ] {
        report.check(what, v);
    }
    report.check("default container's rights", &default_rights);
    report.check("privileged container's rights", &privileged_rights);
    Ok(Measurements {
        host_before,
        host_during,
        other_container,
        vm,
        vm_kernel,
        default_rights,
        privileged_rights,
        host_log_has_privileged_line,
        syscalls_known: known.len(),
        syscalls_allowed: allowed.len(),
        vm_backend: ctx.vm().ok().map(|b| b.note().name.clone()),
    })
}

fn oci_allow() -> oci_spec::runtime::LinuxSeccompAction {
    oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
}

/// The kernel's task count one side saw, as a chart's value.
fn tasks(v: &Measured<Look>) -> Measured<f64> {
    v.as_ref().map(|l| l.tasks as f64)
}

/// Act two: the shared numbers side by side, and the rights table.
fn present(m: &Measurements, report: &mut LessonReport) {
    let look = |v: &Measured<Look>, f: fn(&Look) -> String| -> Cell { v.as_ref().map(f).into() };
    let mut t = Table::new(
        "one kernel-wide count and the kernel's clock, seen from each side",
        &[
            "",
            "tasks the kernel runs (/proc/loadavg)",
            "kernel up for (/proc/uptime)",
        ],
    );
    for (label, v) in [
        ("host, before A", &m.host_before),
        ("host, while A runs", &m.host_during),
        ("container B, while A runs", &m.other_container),
        ("microVM, while A runs", &m.vm),
    ] {
        t.row(vec![
            label.into(),
            look(v, |l| l.tasks.to_string()),
            look(v, |l| format!("{:.0} s", l.uptime_s)),
        ]);
    }
    report.tables.push(t);
    report.charts.push(crate::charts::growth(
        &format!("tasks the kernel runs, while container A holds {TASKS} sleepers"),
        Unit::Count,
        &[
            ("host, before A".into(), Side::Host, tasks(&m.host_before)),
            (
                "host, while A runs".into(),
                Side::Host,
                tasks(&m.host_during),
            ),
            (
                "container B, while A runs".into(),
                Side::Container,
                tasks(&m.other_container),
            ),
            ("microVM, while A runs".into(), Side::Vm, tasks(&m.vm)),
        ],
        None,
    ));

    let r = |v: &Measured<Rights>, f: fn(&Rights) -> String| -> Cell { v.as_ref().map(f).into() };
    let vm_devices = match m.vm_backend.as_deref() {
        Some("twinbox") => "serial port, i8042, RTC, boot timer, virtio-mmio block and net",
        Some(_) => "the devices of QEMU's emulated machine (serial, disk, network, ...)",
        None => "(no VM backend here)",
    };
    let mut t = Table::new(
        "what the workload may ask of the host kernel",
        &[
            "",
            "container (default)",
            "container --privileged",
            "microVM",
        ],
    );
    t.row(vec![
        "system calls into the host kernel".into(),
        format!(
            "{} of {} (seccomp allow-list)",
            m.syscalls_allowed, m.syscalls_known
        )
        .into(),
        format!("all {} (no seccomp filter)", m.syscalls_known).into(),
        "none: its calls go to its own kernel".into(),
    ]);
    t.row(vec![
        "seccomp mode (/proc/self/status)".into(),
        r(&m.default_rights, |x| seccomp_mode(x.seccomp_mode)),
        r(&m.privileged_rights, |x| seccomp_mode(x.seccomp_mode)),
        "-".into(),
    ]);
    t.row(vec![
        "capabilities held".into(),
        r(&m.default_rights, |x| x.capabilities.to_string()),
        r(&m.privileged_rights, |x| x.capabilities.to_string()),
        "all, over its own kernel only".into(),
    ]);
    t.row(vec![
        "/proc/sys (kernel settings)".into(),
        r(&m.default_rights, |x| writable(x.proc_sys_writable)),
        r(&m.privileged_rights, |x| writable(x.proc_sys_writable)),
        "its own kernel's settings".into(),
    ]);
    t.row(vec![
        "the host's kernel log".into(),
        r(&m.default_rights, |x| readable(x.kernel_log_readable)),
        r(&m.privileged_rights, |x| readable(x.kernel_log_readable)),
        "not reachable: it reads its own kernel's log".into(),
    ]);
    t.row(vec![
        "what it reaches of the host otherwise".into(),
        "the host kernel, through namespaces".into(),
        "the host kernel, with little in between".into(),
        vm_devices.into(),
    ]);
    report.tables.push(t);
}

/// Act three: the findings, quoting the counts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let rise = match (m.host_before.value(), m.host_during.value()) {
        (Some(b), Some(d)) => Some(d.tasks as i64 - b.tasks as i64),
        _ => None,
    };
    let b_sees = match (m.host_before.value(), m.other_container.value()) {
        (Some(b), Some(o)) => Some(o.tasks as i64 - b.tasks as i64),
        _ => None,
    };
    let threshold = (TASKS / 2) as i64;
    let host_saw = rise.is_some_and(|r| r >= threshold);
    let b_saw = b_sees.is_some_and(|r| r >= threshold);
    let vm_saw = match (m.vm.value(), m.host_during.value()) {
        (Some(v), Some(h)) => Some(v.tasks >= h.tasks),
        _ => None,
    };
    if let (Some(r), Some(b)) = (rise, b_sees) {
        if host_saw && b_saw {
            report.findings.push(format!(
                "Container A started {TASKS} sleeping processes. The host's kernel then counted {r:+} tasks against before, and container B, which shares nothing with A but the kernel, read {b:+}: a count kept once for the whole machine, which every container sees and every container's use fills up (the same holds for the kernel's pid space, its memory and its open-file table)."
            ));
        } else {
            report.findings.push(format!(
                "This run did not show the shared count clearly: the host's task count moved by {r:+} and container B's view by {b:+} against the {TASKS} processes container A started; other programs on a busy machine start and stop processes too. Run the lesson again."
            ));
        }
    }
    if let (Some(v), Some(h)) = (m.vm.value(), m.host_during.value()) {
        report.findings.push(format!(
            "The microVM's kernel{} counted {} tasks and had been up {:.0} s; the host's counted {} and had been up {:.0} s. The guest knows nothing of the host's processes: what A does to the host kernel does not reach a VM's kernel.",
            m.vm_kernel.as_deref().map(|k| format!(" ({k})")).unwrap_or_default(),
            v.tasks,
            v.uptime_s,
            h.tasks,
            h.uptime_s
        ));
    }
    if let (Some(d), Some(p)) = (m.default_rights.value(), m.privileged_rights.value()) {
        report.findings.push(format!(
            "By default a container's processes hold {} capabilities, run under seccomp mode {} (a filter allowing {} of the kernel's {} x86_64 system calls), see /proc/sys {} and {} read the host's kernel log. With --privileged they hold {}, seccomp mode {}, /proc/sys is {} and the host's kernel log is {}{}: --privileged gives away most of what separated the container from the host kernel.",
            d.capabilities,
            d.seccomp_mode,
            m.syscalls_allowed,
            m.syscalls_known,
            writable(d.proc_sys_writable),
            if d.kernel_log_readable { "can" } else { "cannot" },
            p.capabilities,
            p.seccomp_mode,
            writable(p.proc_sys_writable),
            readable(p.kernel_log_readable),
            match m.host_log_has_privileged_line {
                Some(true) => " (its last line is a line of the host's own `dmesg`)",
                _ => "",
            }
        ));
    }
    report.caveats.push(
        "Only harmless cases run here: sleeping processes, reading counters, a log and a file mode. The real risks of a shared kernel (a kernel bug reachable through an allowed system call, exhausting memory or pids without limits) are not demonstrated on a shared machine."
            .into(),
    );
    report.caveats.push(format!(
        "The task counts move with everything else the machine runs; the lesson calls a rise of at least {threshold} (half of {TASKS}) a rise."
    ));
    report.caveats.push(
        "A VM is not free of shared parts either: the VMM is a host process, and KVM and the emulated devices are code in the host kernel and the VMM that a guest can reach. The surface is smaller, not zero."
            .into(),
    );
    report.fact("tasks_started", TASKS);
    report.fact(
        "kernel_wide",
        json!({
            "host_before": m.host_before, "host_during": m.host_during,
            "other_container": m.other_container, "vm": m.vm,
            "host_rise": rise, "other_container_rise": b_sees,
            "host_saw_rise": host_saw, "other_container_saw_rise": b_saw,
            "vm_saw_host_tasks": vm_saw,
        }),
    );
    report.fact(
        "rights",
        json!({
            "default": m.default_rights, "privileged": m.privileged_rights,
            "syscalls_known": m.syscalls_known, "syscalls_allowed_by_default": m.syscalls_allowed,
            "host_log_has_privileged_line": m.host_log_has_privileged_line,
        }),
    );
}

fn seccomp_mode(mode: u32) -> String {
    match mode {
        0 => "0 (no filter)".into(),
        1 => "1 (strict)".into(),
        2 => "2 (filter)".into(),
        n => n.to_string(),
    }
}

fn writable(w: bool) -> String {
    if w { "writable" } else { "read-only" }.into()
}

fn readable(r: bool) -> String {
    if r { "readable" } else { "refused" }.into()
}

fn show_host_look(ctx: &Context, report: &mut LessonReport, look: &Measured<Look>, when: &str) {
    let text = match look {
        Measured::Value(l) => format!("tasks: {}, up {:.2} s\n", l.tasks, l.uptime_s),
        Measured::Failed(why) => format!("failed: {why}\n"),
    };
    ctx.host_step(report, &format!("{LOOK}   # on the host, {when}"), &text);
}

fn host_look() -> Result<Look, String> {
    let text = std::fs::read_to_string("/proc/loadavg")
        .map_err(|e| format!("/proc/loadavg: {e}"))?
        + &std::fs::read_to_string("/proc/uptime").map_err(|e| format!("/proc/uptime: {e}"))?;
    parse_look(&text)
}

/// `/proc/loadavg` ("0.1 0.2 0.3 2/190 4242") then `/proc/uptime` ("123.4 56.7").
fn parse_look(text: &str) -> Result<Look, String> {
    let mut tasks = None;
    let mut uptime_s = None;
    for line in text.lines().map(str::trim) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.len() {
            5 if tasks.is_none() => {
                tasks = f[3].split('/').nth(1).and_then(|t| t.parse().ok());
            }
            2 if uptime_s.is_none() => uptime_s = f[0].parse().ok(),
            _ => {}
        }
    }
    Ok(Look {
        tasks: tasks.ok_or("no /proc/loadavg line in the output")?,
        uptime_s: uptime_s.ok_or("no /proc/uptime line in the output")?,
    })
}

fn rights(ctx: &Context, report: &mut LessonReport, opts: &RunOptions) -> Measured<Rights> {
    match ctx.container(report, BUSYBOX, opts) {
        Ok(run) if run.exit_code == Some(0) => Measured::from_result(parse_rights(&run.output)),
        Ok(run) => Measured::failed(format!("the probe exited with {:?}", run.exit_code)),
        Err(e) => Measured::failed(e.to_string()),
    }
}

fn parse_rights(text: &str) -> Result<Rights, String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let cap_eff = field("CapEff:").ok_or("no CapEff line")?;
    let caps = u64::from_str_radix(cap_eff, 16).map_err(|e| format!("CapEff {cap_eff}: {e}"))?;
    let seccomp_mode = field("Seccomp:")
        .ok_or("no Seccomp line")?
        .parse()
        .map_err(|e| format!("Seccomp: {e}"))?;
    let log = field("kernel-log:").ok_or("no kernel-log line")?;
    Ok(Rights {
        capabilities: caps.count_ones(),
        seccomp_mode,
        proc_sys_writable: field("proc-sys:").ok_or("no proc-sys line")? == "writable",
        kernel_log_readable: log.starts_with("readable"),
        kernel_log_last: log
            .split_once(", last: ")
            .map(|(_, l)| l.to_string())
            .filter(|l| !l.is_empty()),
    })
}

/// A kernel log line without its time stamp and level, as both `dmesg`s print it.
fn message(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, m)| m).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_loadavg_and_uptime() {
        let l = parse_look("0.50 0.40 0.30 3/412 9999\n1234.56 2000.00\n").unwrap();
        assert_eq!(l.tasks, 412);
        assert!((l.uptime_s - 1234.56).abs() < 1e-9);
        assert!(parse_look("nothing").is_err());
    }

    #[test]
    fn reads_rights() {
        let r = parse_rights(
            "NoNewPrivs:\t0\nSeccomp:\t2\nCapEff:\t00000000a80425fb\nproc-sys: read-only\nkernel-log: refused: dmesg: klogctl: Operation not permitted\n",
        )
        .unwrap();
        assert_eq!((r.capabilities, r.seccomp_mode), (14, 2));
        assert!(!r.proc_sys_writable && !r.kernel_log_readable);
        let p = parse_rights(
            "Seccomp:\t0\nCapEff:\t000001ffffffffff\nproc-sys: writable\nkernel-log: readable, 900 lines, last: [  12.5] eth0: link up\n",
        )
        .unwrap();
        assert_eq!(p.capabilities, 41);
        assert_eq!(p.kernel_log_last.as_deref(), Some("[  12.5] eth0: link up"));
        assert_eq!(message("[    12.500000] eth0: link up"), "eth0: link up");
    }
}
