//! scale: how many can run at once. Hundreds of containers are started for
//! real, in concurrent batches, and microVMs one by one up to a memory
//! budget; the host's memory and the time until all run are measured as the
//! count grows, and each curve's slope says where it would meet the host's RAM.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use twinbox_engine::container::RunOptions;
use twinbox_engine::network::NetworkMode;

use super::{three_acts, Lesson};
use crate::backend::{qemu, VmRun};
use crate::charts::growth;
use crate::container::Detached;
use crate::context::{boot_timeout, sh, Context, BUSYBOX, VM_MEMORY_MIB};
use crate::measure::memory::{host_meminfo, process_memory};
use crate::report::{
    format_bytes, format_ms, Cell, LessonReport, Measured, Side, Step, Table, Unit,
};
use crate::shell;
use crate::LessonError;

pub struct Scale;

/// `--count` when not given: the course's "many hundreds" starts here.
pub const DEFAULT_COUNT: usize = 200;
/// `--vm-budget` when not given, in MiB.
pub const DEFAULT_VM_BUDGET_MIB: u64 = 1024;
/// Containers started at the same time.
const BATCH: usize = 10;
/// Points measured on the containers' curve.
const POINTS: usize = 8;
/// Each instance runs this until the lesson removes it.
const WORKLOAD: &str = "echo up; exec sleep 100000";

/// One point of a curve: this many running, measured.
#[derive(Debug, Clone, Serialize)]
struct Point {
    count: usize,
    /// From the first start until all `count` ran.
    all_running_ms: f64,
    /// What the instances themselves hold: cgroups and supervisors, or the
    /// VMM processes.
    accounted_bytes: u64,
    /// The drop in the host's available memory since before the first start.
    host_drop_bytes: i64,
}

/// Where a curve would meet the host's available memory, from its slope.
#[derive(Debug, Clone, Serialize)]
struct Reach {
    /// Memory per extra instance: the slope of the measured curve.
    bytes_per_instance: u64,
    /// Time per extra instance, likewise.
    ms_per_instance: f64,
    /// Instances at which the curve reaches the available memory.
    meets_available_at: u64,
    /// How long starting that many would take at the measured rate.
    time_to_fill_ms: f64,
}

impl Lesson for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn title(&self) -> &'static str {
        "how many can run at once"
    }

    fn summary(&self) -> &'static str {
        "hundreds of containers (--count, default 200) and microVMs up to a memory budget: memory and start time as the count grows"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Because a container is only processes, the cost of one more is the memory its \
             processes use and a small supervisor; the course says a host can run many \
             hundreds. Each VM brings a whole kernel, its own page cache and a VMM, and a \
             fixed amount of RAM set aside for it, so far fewer fit on the same host.",
            "This lesson starts the hundreds for real (200 unless --count says otherwise), in \
             batches of 10 at a time, without a network (--network none) so that the bridge \
             is not what is measured. Then it starts microVMs one by one until their RAM \
             reaches a budget (1 GiB unless --vm-budget says otherwise). As each count is \
             reached it measures the memory on the host and the time until all of them run; \
             the slope of each curve says where it would meet this host's RAM.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

struct Measurements {
    count: usize,
    vms: usize,
    budget_mib: u64,
    available: u64,
    total: u64,
    c: Curve,
    v: Curve,
    c_reach: Measured<Reach>,
    v_reach: Measured<Reach>,
}

/// Act one: containers up to `--count`, then VMs up to `--vm-budget`, and
/// where each curve would meet the host's available memory.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let count = ctx.settings.count.unwrap_or(DEFAULT_COUNT);
    let budget_mib = ctx.settings.vm_budget_mib.unwrap_or(DEFAULT_VM_BUDGET_MIB);
    let vms = (budget_mib / VM_MEMORY_MIB).max(1) as usize;
    let before = host_meminfo().map_err(LessonError::BadInput)?;

    let c = containers(ctx, report, count, before.available)?;
    let v = microvms(ctx, report, &image, vms)?;

    let c_reach = reach(&c.points, before.available);
    let v_reach = reach(&v.points, before.available);
    Ok(Measurements {
        count,
        vms,
        budget_mib,
        available: before.available,
        total: before.total,
        c,
        v,
        c_reach,
        v_reach,
    })
}

/// The containers' half: what was measured and what went wrong.
struct Curve {
    points: Vec<Point>,
    /// Why the curve stops short of its count, if it does.
    failure: Option<String>,
    /// VMs only: the whole runs, once stopped.
    runs: Vec<Result<VmRun, String>>,
    /// VMs only: all of them ran in this one process.
    one_process: bool,
}

fn containers(
    ctx: &Context,
    report: &mut LessonReport,
    count: usize,
    available_before: u64,
) -> Result<Curve, LessonError> {
    ctx.say
        .heading(&format!("{count} containers, {BATCH} started at a time"));
    let opts = RunOptions {
        cmd: sh(WORKLOAD),
        network: NetworkMode::None,
        ..Default::default()
    };
    let one = shell::container_run(BUSYBOX, &opts, true);
    let command =
        format!("for i in $(seq {count}); do {one} & [ $((i % {BATCH})) = 0 ] && wait; done; wait");
    ctx.show(Side::Container, &command);
    let checkpoints: Vec<usize> = (1..=POINTS).map(|i| (count * i).div_ceil(POINTS)).collect();
    let mut running: Vec<Detached> = Vec::new();
    let mut points = Vec::new();
    let mut failure = None;
    let mut output = String::new();
    let t0 = Instant::now();
    while running.len() < count && failure.is_none() {
        let n = BATCH.min(count - running.len());
        let before_batch = running.len();
        let started: Vec<Result<Detached, LessonError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    s.spawn(|| {
                        Detached::start(&ctx.store, BUSYBOX, &opts, &ctx.settings.supervisor_exe)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(LessonError::BadInput("a starting thread panicked".into()))
                    })
                })
                .collect()
        });
        for r in started {
            match r {
                Ok(d) => running.push(d),
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let all_running_ms = t0.elapsed().as_secs_f64() * 1e3;
        let next = checkpoints.iter().find(|c| **c > before_batch);
        if next.is_some_and(|c| running.len() >= *c) || failure.is_some() {
            let p = Point {
                count: running.len(),
                all_running_ms,
                accounted_bytes: running.iter().map(container_bytes).sum(),
                host_drop_bytes: host_drop(available_before),
            };
            let line = format!(
                "{:>5} running after {:>9}: cgroups + supervisors {:>10}, host's available memory down {}\n",
                p.count,
                format_ms(p.all_running_ms),
                format_bytes(p.accounted_bytes),
                signed_bytes(p.host_drop_bytes)
            );
            ctx.say.output(&line);
            output.push_str(&line);
            points.push(p);
        }
    }
    if let Some(why) = &failure {
        ctx.say
            .failure(&format!("stopped at {} containers: {why}", running.len()));
    }
    report.steps.push(Step {
        side: Side::Container,
        command,
        output,
        exit_code: failure.is_none().then_some(0),
        error: failure.clone(),
        duration_ms: points.last().map(|p| p.all_running_ms),
    });
    // removed as they were started: in batches, side by side
    let t_rm = Instant::now();
    let removed = running.len();
    while !running.is_empty() {
        let batch: Vec<Detached> = running.drain(..BATCH.min(running.len())).collect();
        std::thread::scope(|s| {
            for d in batch {
                s.spawn(move || d.remove());
            }
        });
    }
    ctx.host_step(
        report,
        "twinbox rm -f $(twinbox ps -q)",
        &format!(
            "{removed} containers removed in {}\n",
            format_ms(t_rm.elapsed().as_secs_f64() * 1e3)
        ),
    );
    Ok(Curve {
        points,
        failure,
        runs: Vec::new(),
        one_process: false,
    })
}

/// A running container's own memory: its cgroup and its supervisor (PSS).
fn container_bytes(d: &Detached) -> u64 {
    let cgroup = d.cgroup_usage().and_then(|u| u.memory_bytes).unwrap_or(0);
    let supervisor = d
        .supervisor_memory()
        .map(|m| m.pss.unwrap_or(m.rss))
        .unwrap_or(0);
    cgroup + supervisor
}

fn host_drop(available_before: u64) -> i64 {
    host_meminfo()
        .map(|m| available_before as i64 - m.available as i64)
        .unwrap_or(0)
}

fn microvms(
    ctx: &Context,
    report: &mut LessonReport,
    image: &twinbox_engine::image::Image,
    vms: usize,
) -> Result<Curve, LessonError> {
    ctx.say.heading(&format!(
        "microVMs of {VM_MEMORY_MIB} MiB, one by one, up to {vms}"
    ));
    let available_before = host_meminfo().map_err(LessonError::BadInput)?.available;
    let opts = RunOptions {
        cmd: sh(WORKLOAD),
        ..Default::default()
    };
    let mut req = ctx.vm_request(BUSYBOX, image, &opts, VM_MEMORY_MIB);
    // the first VM runs while all the others boot
    req.run_timeout = (boot_timeout() + Duration::from_secs(30)) * vms as u32;
    let vm = match ctx.prepare_vm(&req).and_then(|_| ctx.vm()) {
        Ok(vm) => vm,
        Err(why) => {
            return Ok(Curve {
                points: Vec::new(),
                failure: Some(why),
                runs: Vec::new(),
                one_process: false,
            })
        }
    };
    let one_process = vm.note().name == "twinbox";
    let self_rss = || process_memory(std::process::id() as i32).map_or(0, |m| m.rss);
    let rss_before = self_rss();
    let vmm_bytes = || -> u64 {
        if one_process {
            self_rss().saturating_sub(rss_before)
        } else {
            qemu::running_vms()
                .into_iter()
                .filter_map(process_memory)
                .map(|m| m.rss)
                .sum()
        }
    };
    let command = vm.command_line(&req);
    let up = Arc::new(AtomicUsize::new(0));
    let mut points = Vec::new();
    let mut failure = None;
    let req = &req;
    let runs: Vec<Result<VmRun, String>> = std::thread::scope(|s| {
        let t0 = Instant::now();
        let mut handles = Vec::new();
        for i in 0..vms {
            ctx.show(Side::Vm, &format!("{command} &   # VM {}", i + 1));
            let live = Prefixed {
                prefix: format!("[vm {}] ", i + 1),
                up: up.clone(),
                said_up: false,
                seen: String::new(),
                line_start: true,
            };
            handles.push(s.spawn(move || vm.run(req, Box::new(live))));
            let deadline = Instant::now() + boot_timeout() + Duration::from_secs(30);
            while up.load(Ordering::Acquire) < i + 1
                && !handles[i].is_finished()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            if up.load(Ordering::Acquire) < i + 1 {
                failure = Some(format!("VM {} did not reach its workload", i + 1));
                break;
            }
            // let the guest settle after its boot before looking
            std::thread::sleep(Duration::from_millis(500));
            let p = Point {
                count: i + 1,
                all_running_ms: t0.elapsed().as_secs_f64() * 1e3,
                accounted_bytes: vmm_bytes(),
                host_drop_bytes: host_drop(available_before),
            };
            let _ = io::stdout().flush();
            ctx.say.output(&format!(
                "{:>5} running after {:>9}: VMM processes {:>10}, host's available memory down {}\n",
                p.count,
                format_ms(p.all_running_ms),
                format_bytes(p.accounted_bytes),
                signed_bytes(p.host_drop_bytes)
            ));
            points.push(p);
        }
        // measured: end them all now rather than when their sleep ends
        req.stop.store(true, Ordering::Release);
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(Ok(run)) => Ok(run),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the VM thread panicked".to_string()),
            })
            .collect()
    });
    let _ = io::stdout().flush();
    for (i, r) in runs.iter().enumerate() {
        let came_up = i < points.len();
        report.steps.push(Step {
            side: Side::Vm,
            command: format!("{command} &   # VM {}", i + 1),
            output: r.as_ref().map(|r| r.output.clone()).unwrap_or_default(),
            exit_code: r.as_ref().ok().and_then(|r| r.exit_code),
            // a VM the lesson stopped after measuring it did not fail
            error: match r {
                Ok(_) if came_up => None,
                Ok(run) => run.failure.clone(),
                Err(e) => Some(e.clone()),
            },
            duration_ms: r.as_ref().ok().map(|r| r.total_ms),
        });
    }
    if let Some(why) = &failure {
        let detail = runs
            .iter()
            .skip(points.len())
            .find_map(|r| match r {
                Err(e) => Some(e.clone()),
                Ok(run) => run.failure.clone(),
            })
            .map(|d| format!("{why}: {d}"))
            .unwrap_or_else(|| why.clone());
        ctx.say.failure(&detail);
        failure = Some(detail);
    }
    Ok(Curve {
        points,
        failure,
        runs,
        one_process,
    })
}

/// The slope of a curve (least squares over its points) and where it meets
/// `available`.
fn reach(points: &[Point], available: u64) -> Measured<Reach> {
    let Some(last) = points.last() else {
        return Measured::failed("nothing was measured");
    };
    let per = |f: &dyn Fn(&Point) -> f64| -> f64 {
        let fallback = f(last) / last.count.max(1) as f64;
        if points.len() < 2 {
            return fallback;
        }
        let n = points.len() as f64;
        let mx = points.iter().map(|p| p.count as f64).sum::<f64>() / n;
        let my = points.iter().map(f).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.count as f64 - mx).powi(2)).sum();
        let sxy: f64 = points
            .iter()
            .map(|p| (p.count as f64 - mx) * (f(p) - my))
            .sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        // noise on a busy host can flatten a short curve: then the average
        if slope > 0.0 {
            slope
        } else {
            fallback
        }
    };
    let bytes = per(&|p| p.accounted_bytes as f64).max(1.0);
    let ms = per(&|p| p.all_running_ms);
    // the curve, extended at its slope from its last measured point
    let left = available.saturating_sub(last.accounted_bytes) as f64;
    let meets = last.count as u64 + (left / bytes) as u64;
    let time_to_fill_ms = last.all_running_ms + (meets - last.count as u64) as f64 * ms;
    Measured::Value(Reach {
        bytes_per_instance: bytes as u64,
        ms_per_instance: ms,
        meets_available_at: meets,
        time_to_fill_ms,
    })
}

/// Act two: both curves as a table and two charts, and where each meets RAM.
fn present(m: &Measurements, report: &mut LessonReport) {
    let Measurements {
        available,
        c,
        v,
        c_reach,
        v_reach,
        ..
    } = m;
    let available = *available;
    let mut t = Table::new(
        "as the count grows",
        &[
            "running",
            "all running after",
            "their own memory",
            "host's available memory down",
        ],
    );
    for (side, curve) in [("containers", c), ("microVMs", v)] {
        for p in &curve.points {
            t.row(vec![
                plural(p.count, side).into(),
                format_ms(p.all_running_ms).into(),
                format_bytes(p.accounted_bytes).into(),
                signed_bytes(p.host_drop_bytes).into(),
            ]);
        }
        if let Some(why) = &curve.failure {
            t.row(vec![
                format!("{side}: stopped").into(),
                Cell::Failed {
                    failed: why.clone(),
                },
                "".into(),
                "".into(),
            ]);
        }
    }
    report.tables.push(t);

    let mut t = Table::new(
        format!(
            "where each curve meets the {} this host had available",
            format_bytes(available)
        ),
        &["", "containers", "microVMs"],
    );
    let cell =
        |r: &Measured<Reach>, f: &dyn Fn(&Reach) -> String| -> Cell { r.as_ref().map(f).into() };
    t.row(vec![
        "memory per extra instance (slope)".into(),
        cell(c_reach, &|r| format_bytes(r.bytes_per_instance)),
        cell(v_reach, &|r| format_bytes(r.bytes_per_instance)),
    ]);
    t.row(vec![
        "start time per extra instance (slope)".into(),
        cell(c_reach, &|r| format_ms(r.ms_per_instance)),
        cell(v_reach, &|r| format_ms(r.ms_per_instance)),
    ]);
    t.row(vec![
        "the curve meets the available memory at".into(),
        cell(c_reach, &|r| format!("about {}", r.meets_available_at)),
        cell(v_reach, &|r| {
            format!(
                "about {} ({} if every guest touches its {VM_MEMORY_MIB} MiB)",
                r.meets_available_at,
                available / (VM_MEMORY_MIB << 20)
            )
        }),
    ]);
    t.row(vec![
        "starting that many at the measured rate".into(),
        cell(c_reach, &|r| format_ms(r.time_to_fill_ms)),
        cell(v_reach, &|r| format_ms(r.time_to_fill_ms)),
    ]);
    report.tables.push(t);

    let label = |n: usize, side: &str| plural(n, side);
    let mut mem = Vec::new();
    let mut time = Vec::new();
    for (side, name, curve) in [
        (Side::Container, "containers", c),
        (Side::Vm, "microVMs", v),
    ] {
        for p in &curve.points {
            mem.push((
                label(p.count, name),
                side,
                Measured::Value(p.accounted_bytes as f64),
            ));
            time.push((
                label(p.count, name),
                side,
                Measured::Value(p.all_running_ms),
            ));
        }
        if curve.points.is_empty() {
            let why = curve.failure.clone().unwrap_or_default();
            mem.push((name.to_string(), side, Measured::Failed(why.clone())));
            time.push((name.to_string(), side, Measured::Failed(why)));
        }
    }
    report.charts.push(growth(
        "memory the instances hold as the count grows",
        Unit::Bytes,
        &mem,
        Some("containers: their cgroups plus their supervisors (PSS); microVMs: the VMM processes' resident memory".into()),
    ));
    report.charts.push(growth(
        "time until all of them run",
        Unit::Milliseconds,
        &time,
        Some(format!(
            "containers {BATCH} at a time; microVMs one after another, each once the one before reached its workload"
        )),
    ));
}

/// Act three: the findings, quoting both slopes; caveats, checks and facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let Measurements {
        count,
        vms,
        budget_mib,
        available,
        total,
        c,
        v,
        c_reach,
        v_reach,
    } = m;
    let (count, vms, budget_mib, available, total) =
        (*count, *vms, *budget_mib, *available, *total);
    if let (Some(cr), Some(cl)) = (c_reach.value(), c.points.last()) {
        report.findings.push(format!(
            "{} containers ran at once here (asked for {count}); they held {} in all, and the curve rose by about {} per container. At that slope it meets the {} this host had available at about {} containers, which would take about {} to start at the rate measured.",
            cl.count,
            format_bytes(cl.accounted_bytes),
            format_bytes(cr.bytes_per_instance),
            format_bytes(available),
            cr.meets_available_at,
            format_ms(cr.time_to_fill_ms)
        ));
    }
    if let (Some(vr), Some(vl)) = (v_reach.value(), v.points.last()) {
        report.findings.push(format!(
            "{} microVMs of {VM_MEMORY_MIB} MiB ran at once (a budget of {budget_mib} MiB); their VMM processes held {}, about {} more per VM. That curve meets the available memory at about {} VMs, and at {} if every guest touches all the RAM it was given: {} the containers' count.",
            vl.count,
            format_bytes(vl.accounted_bytes),
            format_bytes(vr.bytes_per_instance),
            vr.meets_available_at,
            available / (VM_MEMORY_MIB << 20),
            match c_reach.value() {
                Some(cr) if cr.meets_available_at > vr.meets_available_at => format!(
                    "about {:.0} times fewer than",
                    cr.meets_available_at as f64 / vr.meets_available_at.max(1) as f64
                ),
                Some(_) => "not fewer than (the measurement disagrees with the course here)".into(),
                None => "to compare with".into(),
            }
        ));
    }
    if let (Some(cl), Some(vl)) = (c.points.last(), v.points.last()) {
        report.findings.push(format!(
            "{} containers were all running after {}; {} VMs, one after another, after {}.",
            cl.count,
            format_ms(cl.all_running_ms),
            vl.count,
            format_ms(vl.all_running_ms)
        ));
    }
    report.caveats.push("\"Their own memory\" counts what each instance holds (cgroup memory and the supervisor, or the VMM process); the kernel's own objects for each (namespaces, mounts, page tables) are not in it. The drop in the host's available memory includes them, but also anything else the host did meanwhile, so it is shown beside it and not used for the slope.".into());
    report.caveats.push(format!("Where a curve meets the host's RAM is where it would go at its measured slope, from its last measured point; these workloads are tiny (a shell that sleeps), so real ones reach it sooner on both sides. The host has {} in all.", format_bytes(total)));
    if v.one_process {
        report.caveats.push("twinbox's VMM runs every VM inside the lesson's own process, so the VMs' memory is that process's growth since before the first VM.".into());
    }
    report.check(
        "containers",
        &Measured::from_option(
            c.points.last().filter(|_| c.failure.is_none()).map(|_| ()),
            c.failure.clone().unwrap_or_default(),
        ),
    );
    report.check(
        "microVMs",
        &Measured::from_option(
            v.points.last().filter(|_| v.failure.is_none()).map(|_| ()),
            v.failure.clone().unwrap_or_default(),
        ),
    );
    let vm_runs: Vec<_> = v
        .runs
        .iter()
        .map(|r| match r {
            Ok(run) => json!({"to_workload_ms": run.to_workload_ms, "memory": run.memory}),
            Err(e) => json!({"error": e}),
        })
        .collect();
    report.fact(
        "containers",
        json!({"count": count, "batch": BATCH, "network": "none", "running": c.points.last().map(|p| p.count),
               "points": c.points, "reach": c_reach, "failure": c.failure}),
    );
    report.fact(
        "vms",
        json!({"count": vms, "budget_mib": budget_mib, "memory_mib": VM_MEMORY_MIB,
               "running": v.points.last().map(|p| p.count), "points": v.points, "reach": v_reach,
               "one_process": v.one_process, "runs": vm_runs, "failure": v.failure}),
    );
    report.fact(
        "host",
        json!({"available_bytes": available, "total_bytes": total}),
    );
}

/// "1 microVM", "2 microVMs" (`many` is the plural).
fn plural(n: usize, many: &str) -> String {
    if n == 1 {
        format!("1 {}", many.trim_end_matches('s'))
    } else {
        format!("{n} {many}")
    }
}

/// A change in available memory, which other activity can turn into a rise.
fn signed_bytes(drop: i64) -> String {
    if drop >= 0 {
        format_bytes(drop as u64)
    } else {
        format!("-{} (it rose)", format_bytes(drop.unsigned_abs()))
    }
}

/// Prefixes each line of one VM's output and counts VMs that said "up".
struct Prefixed {
    prefix: String,
    up: Arc<AtomicUsize>,
    said_up: bool,
    seen: String,
    line_start: bool,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        // the serial console may deliver a byte at a time
        if !self.said_up {
            self.seen.push_str(&text);
            if self.seen.contains("up") {
                self.said_up = true;
                self.up.fetch_add(1, Ordering::AcqRel);
            }
        }
        let mut out = String::new();
        for c in text.chars() {
            if self.line_start && c != '\r' {
                out.push_str(&self.prefix);
                self.line_start = false;
            }
            if c == '\n' {
                self.line_start = true;
            }
            out.push(c);
        }
        let mut stdout = io::stdout().lock();
        let _ = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
