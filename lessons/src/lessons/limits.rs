//! limits: cgroups cap what a container may use (memory, processes, CPU
//! time) on a shared kernel; a VM's limits are its virtual hardware.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use twinbox_engine::container::RunOptions;

use super::{three_acts, Lesson};
use crate::charts;
use crate::container::ContainerRun;
use crate::context::{cmd_opts, sh, Context, BUSYBOX, RUN_TIMEOUT, VM_MEMORY_MIB};
use crate::report::{format_bytes, format_ms, Cell, LessonReport, Measured, Table};
use crate::LessonError;

pub struct Limits;

const MEMORY_LIMIT: u64 = 16 << 20;
const PIDS_LIMIT: i64 = 8;
const CPUS: f64 = 0.5;

/// Shows what the inside believes it has (and, in a container, the limit
/// its cgroup file holds: v2's memory.max, v1's memory.limit_in_bytes), then
/// asks for 64 MiB.
const MEMORY_HOG: &str =
    "echo \"$(grep MemTotal /proc/meminfo), CPUs: $(grep -c ^processor /proc/cpuinfo)\"
limit=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null)
[ -n \"$limit\" ] && echo \"cgroup memory limit: $limit\"
echo 'allocating 64 MiB...'
head -c 64m /dev/zero | tail > /dev/null
code=$?
echo \"the allocating process ended with exit code $code\"
exit $code";

/// Starts 15 sleepers from a child shell (which dies when a fork is refused),
/// then counts the processes with a shell builtin (no fork needed).
const FORKER: &str = "sh -c 'for i in $(seq 1 15); do sleep 2 & done' 2>&1
echo \"the loop's shell ended with exit code $?\"
set -- /proc/[0-9]*
echo \"processes running now: $#\"";

/// Pure shell work, counting to N: its time shows the CPU share it got.
fn busy(n: u64) -> String {
    format!("i=0; while [ $i -lt {n} ]; do i=$((i+1)); done; echo \"counted to $i\"")
}

/// How far the calibration counts on the host, and the bounds of the
/// counting loop sized from it: about CPU_WORK of work on this machine, so
/// an emulated machine (the nested test machine, 30-100 times slower) counts
/// less instead of outlasting every wait.
const CALIBRATION: u64 = 20_000;
const MIN_COUNT: u64 = 20_000;
const MAX_COUNT: u64 = 1_000_000;
const CPU_WORK: Duration = Duration::from_millis(1500);
/// Most the calibration may take (a machine this slow runs no lesson).
const CALIBRATION_LIMIT: Duration = Duration::from_secs(120);

/// The counting loop sized for this machine, from the same busybox shell
/// timed on the host: how far to count, and the calibration's own numbers.
#[derive(Debug, Clone, serde::Serialize)]
struct CpuWork {
    count: u64,
    /// Counting to CALIBRATION, busybox's start included.
    calibration_ms: Measured<f64>,
    /// busybox's start alone (counting to zero).
    start_ms: f64,
    /// What counting to `count` should take here, from the calibration.
    expected_ms: f64,
}

impl CpuWork {
    fn measure() -> CpuWork {
        // the same shell counting to zero: starting busybox is not counting
        // (on an emulated CPU it is most of a short run)
        let start_ms = time_host_loop(0).unwrap_or(0.0);
        let calibration_ms = Measured::from_result(time_host_loop(CALIBRATION));
        let per_step_ms = calibration_ms
            .value()
            .map(|ms| {
                let counting = ms - start_ms;
                if counting > 0.0 {
                    counting
                } else {
                    *ms
                }
            })
            .map(|ms| ms / CALIBRATION as f64)
            .filter(|v| *v > 0.0);
        let count = per_step_ms.map_or(MAX_COUNT, |per| {
            // a round number, for the command a student reads
            let n = (CPU_WORK.as_secs_f64() * 1000.0 / per) as u64;
            (n / 10_000 * 10_000).clamp(MIN_COUNT, MAX_COUNT)
        });
        CpuWork {
            count,
            start_ms,
            expected_ms: per_step_ms.map_or(0.0, |per| per * count as f64),
            calibration_ms,
        }
    }

    /// The wait for the run without a limit: the usual one, longer where the
    /// calibration says the loop itself takes a while (ten times what it
    /// predicts: a container's start and a busy machine come on top).
    fn free_wait(&self) -> Duration {
        RUN_TIMEOUT + Duration::from_secs_f64(self.expected_ms * 10.0 / 1000.0)
    }

    /// The wait for the capped run, from the free run measured just before:
    /// at --cpus 0.5 the same work takes about twice as long; four times
    /// that is the margin.
    fn capped_wait(&self, free_ms: Option<f64>) -> Duration {
        let basis = free_ms.unwrap_or(self.expected_ms);
        RUN_TIMEOUT + Duration::from_secs_f64(basis * 4.0 / CPUS / 1000.0)
    }
}

/// Milliseconds the host's busybox shell takes to count to `n` (the image's
/// shell is the host's busybox: the same program, the same CPU).
fn time_host_loop(n: u64) -> Result<f64, String> {
    let bb = twinbox_engine::util::path::find_busybox()
        .ok_or("no busybox on this host to time the loop with")?;
    let t0 = Instant::now();
    let mut child = Command::new(bb)
        .args(["sh", "-c", &busy(n)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run busybox: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(t0.elapsed().as_secs_f64() * 1000.0),
            Ok(Some(s)) => return Err(format!("the calibration loop failed ({s})")),
            Ok(None) if t0.elapsed() > CALIBRATION_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the calibration loop took over {} s",
                    CALIBRATION_LIMIT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the calibration loop: {e}")),
        }
    }
}

impl Lesson for Limits {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn title(&self) -> &'static str {
        "cgroups limit a container; a VM is limited by its hardware"
    }

    fn summary(&self) -> &'static str {
        "memory limit and OOM kill, pids limit, CPU quota; a VM's fixed RAM and vCPUs"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Containers share one kernel and one machine, so the kernel needs a way to stop \
             one container from taking everything: control groups (cgroups). A memory \
             limit makes the kernel's OOM killer end a process of the container that goes \
             over it; a pids limit makes fork() fail; a CPU quota lets the container run \
             only part of each 100 ms period. None of this changes what the container sees \
             in /proc: it still reports the host's RAM and CPUs.",
            "A VM's limits are its virtual hardware: the RAM and vCPUs it was given. Its own \
             kernel sees exactly that, and when a program in it wants more memory, the \
             guest's OOM killer deals with it, inside the guest, without the host noticing.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What each limit did: the container runs (kept whole, for their exit
/// codes and output) and the VM asking for more RAM than it has.
struct Measurements {
    mem: Result<ContainerRun, LessonError>,
    oom: Measured<bool>,
    /// The limit the container read from its own cgroup file (bytes).
    limit_seen: Option<u64>,
    work: CpuWork,
    pids: Result<ContainerRun, LessonError>,
    refused: Measured<bool>,
    running: Option<u32>,
    free_ms: Measured<f64>,
    capped_ms: Measured<f64>,
    vm_code: Measured<i32>,
    /// The MemTotal line each inside printed.
    c_seen: String,
    v_seen: String,
}

/// Act one: a memory hog, a fork loop and a counting loop under limits, then
/// the memory hog in a VM.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;

    ctx.say
        .heading("memory: a 16 MiB limit, and a program that wants 64 MiB");
    let mem_opts = RunOptions {
        memory_bytes: Some(MEMORY_LIMIT),
        ..cmd_opts(sh(MEMORY_HOG))
    };
    let mem = ctx.container(report, BUSYBOX, &mem_opts);
    let oom: Measured<bool> = match &mem {
        Ok(run) => Measured::Value(run.oom_killed),
        Err(e) => Measured::failed(e.to_string()),
    };
    report.check("memory limit", &oom);

    ctx.say
        .heading("processes: a limit of 8, and a loop that starts 15");
    let pids_opts = RunOptions {
        pids_limit: Some(PIDS_LIMIT),
        ..cmd_opts(sh(FORKER))
    };
    let pids = ctx.container(report, BUSYBOX, &pids_opts);
    let refused: Measured<bool> = match &pids {
        Ok(run) => Measured::Value(
            run.output.contains("can't fork")
                || run.output.contains("Resource temporarily unavailable"),
        ),
        Err(e) => Measured::failed(e.to_string()),
    };
    let running: Option<u32> = pids.as_ref().ok().and_then(|r| {
        r.output
            .lines()
            .find_map(|l| l.strip_prefix("processes running now: "))
            .and_then(|n| n.trim().parse().ok())
    });
    report.check("pids limit", &refused);

    ctx.say
        .heading("CPU: the same work without a limit, then with --cpus 0.5");
    let work = CpuWork::measure();
    ctx.say.note(&format!(
        "(this machine's busybox shell counted to {CALIBRATION} in {} ({} of it starting), so the loop counts to {}: about {} of work here)",
        work.calibration_ms
            .value()
            .map_or_else(|| "an unknown time".into(), |ms| format_ms(*ms)),
        format_ms(work.start_ms),
        work.count,
        format_ms(work.expected_ms)
    ));
    let free = ctx.container_within(
        report,
        BUSYBOX,
        &cmd_opts(sh(&busy(work.count))),
        work.free_wait(),
    );
    let cpu_opts = RunOptions {
        cpus: Some(CPUS),
        ..cmd_opts(sh(&busy(work.count)))
    };
    let secs = |r: &Result<ContainerRun, LessonError>| -> Measured<f64> {
        match r {
            Ok(run) if run.exit_code == Some(0) => {
                Measured::from_option(run.total_ms, "no exit time recorded")
            }
            Ok(run) => Measured::failed(format!("exited with {:?}", run.exit_code)),
            Err(e) => Measured::failed(e.to_string()),
        }
    };
    let free_ms = secs(&free);
    let capped = ctx.container_within(
        report,
        BUSYBOX,
        &cpu_opts,
        work.capped_wait(free_ms.value().copied()),
    );
    let capped_ms = secs(&capped);
    report.check("CPU run without limit", &free_ms);
    report.check("CPU run with --cpus 0.5", &capped_ms);

    ctx.say.heading(&format!(
        "the VM: {VM_MEMORY_MIB} MiB of RAM and 1 vCPU, and a program that wants 400 MiB"
    ));
    let vm_script = MEMORY_HOG
        .replace("64m", "400m")
        .replace("64 MiB", "400 MiB");
    let req = ctx.vm_request(BUSYBOX, &image, &cmd_opts(sh(&vm_script)), VM_MEMORY_MIB);
    let vm = ctx.prepare_vm(&req).and_then(|_| ctx.vm_run(report, &req));
    let vm_code: Measured<i32> = match &vm {
        Ok(run) => match (&run.failure, run.exit_code) {
            (Some(why), _) => Measured::failed(why.clone()),
            (None, Some(c)) => Measured::Value(c),
            (None, None) => Measured::failed("no exit code"),
        },
        Err(why) => Measured::failed(why.clone()),
    };
    report.check("VM memory", &vm_code);
    let seen = |out: &str| -> String {
        out.lines()
            .find(|l| l.starts_with("MemTotal"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let c_seen = mem.as_ref().map(|r| seen(&r.output)).unwrap_or_default();
    let limit_seen = mem.as_ref().ok().and_then(|r| {
        r.output
            .lines()
            .find_map(|l| l.strip_prefix("cgroup memory limit: "))
            .and_then(|v| v.trim().parse().ok())
    });
    let v_seen = vm.as_ref().map(|r| seen(&r.output)).unwrap_or_default();

    Ok(Measurements {
        mem,
        oom,
        limit_seen,
        work,
        pids,
        refused,
        running,
        free_ms,
        capped_ms,
        vm_code,
        c_seen,
        v_seen,
    })
}

/// Act two: each limit and what happened, and the CPU chart.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new("limits and what happened", &["", "container", "microVM"]);
    t.row(vec![
        "what the inside sees".into(),
        m.c_seen.clone().into(),
        match &m.vm_code {
            Measured::Failed(w) => Cell::Failed { failed: w.clone() },
            _ => m.v_seen.clone().into(),
        },
    ]);
    t.row(vec![
        "memory limit".into(),
        format!("{} (cgroup)", format_bytes(MEMORY_LIMIT)).into(),
        format!("{VM_MEMORY_MIB} MiB (its RAM)").into(),
    ]);
    t.row(vec![
        "asking for more".into(),
        match &m.mem {
            Ok(run) => format!(
                "exit code {}, {}",
                run.exit_code.map_or("none".into(), |c| c.to_string()),
                if run.oom_killed {
                    "OOM kill recorded by the cgroup"
                } else {
                    "no OOM kill recorded"
                }
            )
            .into(),
            Err(e) => Cell::Failed {
                failed: e.to_string(),
            },
        },
        m.vm_code
            .as_ref()
            .map(|c| format!("exit code {c} (the guest's own OOM killer)"))
            .into(),
    ]);
    t.row(vec![
        "process limit".into(),
        match &m.pids {
            Ok(_) => format!(
                "{PIDS_LIMIT}: {}; {} processes were running",
                if m.refused.value() == Some(&true) {
                    "fork refused"
                } else {
                    "fork never refused"
                },
                m.running.map_or("?".into(), |n| n.to_string())
            )
            .into(),
            Err(e) => Cell::Failed {
                failed: e.to_string(),
            },
        },
        "none besides the guest kernel's own".into(),
    ]);
    t.row(vec![
        "CPU".into(),
        match (m.free_ms.value(), m.capped_ms.value()) {
            (Some(f), Some(c)) => format!(
                "same work: {} free, {} with --cpus {CPUS}",
                format_ms(*f),
                format_ms(*c)
            )
            .into(),
            _ => Cell::Failed {
                failed: m
                    .free_ms
                    .failure()
                    .or(m.capped_ms.failure())
                    .unwrap_or("")
                    .to_string(),
            },
        },
        "1 vCPU: all the guest has".into(),
    ]);
    report.tables.push(t);
    report.charts.push(charts::cpu_quota(
        CPUS,
        m.free_ms.clone(),
        m.capped_ms.clone(),
    ));
}

/// Act three: what each limit showed, the caveat, and the facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let c_seen = &m.c_seen;
    let v_seen = &m.v_seen;
    match &m.mem {
        Ok(run) if run.oom_killed => report.findings.push(format!(
            "Inside the container, /proc/meminfo said `{c_seen}`, the host's memory, yet when the workload asked for 64 MiB the kernel's OOM killer ended it at the {} limit (exit code {}; the cgroup counted an OOM kill). The limit is enforced, just not shown where programs look for their memory: {}",
            format_bytes(MEMORY_LIMIT),
            run.exit_code.map_or("none".into(), |c| c.to_string()),
            match m.limit_seen {
                Some(b) => format!("only the container's own cgroup file holds it ({}).", format_bytes(b)),
                None => "the container's cgroup file was not readable on this run.".into(),
            }
        )),
        Ok(_) => report.findings.push("Unexpected on this run: the memory hog was not OOM-killed under the 16 MiB limit.".into()),
        Err(_) => {}
    }
    if m.refused.value() == Some(&true) {
        report.findings.push(format!(
            "With --pids-limit {PIDS_LIMIT}, fork() failed once the container had {PIDS_LIMIT} processes (\"can't fork\"); {} were running afterwards. A fork bomb in a container stops there.",
            m.running.map_or("an unknown number".into(), |n| n.to_string())
        ));
    }
    if let (Some(f), Some(c)) = (m.free_ms.value(), m.capped_ms.value()) {
        if c > f {
            report.findings.push(format!(
                "The same counting loop took {} without a limit and {} with --cpus {CPUS} ({:.1} times as long): the quota throttles the container without it seeing fewer CPUs.",
                format_ms(*f),
                format_ms(*c),
                c / f
            ));
        } else {
            report.findings.push(format!(
                "On this run the CPU quota did not slow the loop down ({} free, {} capped); the machine may have been too busy for the difference to show.",
                format_ms(*f),
                format_ms(*c)
            ));
        }
    }
    if let Some(code) = m.vm_code.value() {
        report.findings.push(format!(
            "The VM's kernel reported `{v_seen}`: the RAM it was given. Asking for 400 MiB ended with exit code {code}{}; the host only saw the VMM process, whose size is bounded by the VM's RAM.",
            if *code == 137 { ", an OOM kill by the guest's own kernel" } else { "" }
        ));
    }
    report.caveats.push("The CPU comparison is two single runs on a shared machine; rerun with a quieter machine for a cleaner ratio.".into());
    report.fact(
        "container",
        json!({
            "memory_limit_bytes": MEMORY_LIMIT,
            "oom_killed": m.oom,
            "memory_exit_code": m.mem.as_ref().ok().and_then(|r| r.exit_code),
            "memtotal_seen": c_seen,
            "memory_limit_seen_bytes": m.limit_seen,
            "pids_limit": PIDS_LIMIT,
            "fork_refused": m.refused,
            "processes_running": m.running,
            "cpu_free_ms": m.free_ms,
            "cpu_capped_ms": m.capped_ms,
            "cpus": CPUS,
            "cpu_work": m.work,
        }),
    );
    report.fact(
        "vm",
        json!({"memory_mib": VM_MEMORY_MIB, "exit_code": m.vm_code, "memtotal_seen": v_seen}),
    );
}
