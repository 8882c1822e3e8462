//! scale: how many can run at once. Many containers and several VMs run
//! together; the lesson measures what each instance costs the host.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Lesson;
use crate::backend::VmRun;
use crate::charts::bar;
use crate::container::Detached;
use crate::context::{cmd_opts, sh, Context, BOOT_TIMEOUT, BUSYBOX, VM_MEMORY_MIB};
use crate::measure::memory::host_meminfo;
use crate::report::{
    format_bytes, format_ms, Cell, Chart, LessonReport, Measured, Side, Step, Table, Unit,
};
use crate::LessonError;

pub struct Scale;

const CONTAINERS: usize = 10;
/// Few, because under software emulation each VM keeps a host CPU busy.
const VMS: usize = 3;

impl Lesson for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn title(&self) -> &'static str {
        "how many can run at once"
    }

    fn summary(&self) -> &'static str {
        "10 containers and 3 microVMs at the same time: start time and memory per instance"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Because a container is only processes, the cost of one more is the memory its \
             processes use and a small supervisor; a host can run hundreds. Each VM brings a \
             whole kernel, its own page cache and a VMM, and usually a fixed amount of RAM \
             set aside for it, so far fewer fit on the same host.",
            "This lesson starts 10 containers and then 3 microVMs, all running at once, and \
             measures what each instance costs: from the processes themselves, and from the \
             drop in the host's available memory while they all run.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        let image = ctx.image(BUSYBOX)?;
        let before = host_meminfo().map_err(LessonError::BadInput)?;

        // containers
        ctx.say.heading(&format!("{CONTAINERS} containers at once"));
        let t0 = Instant::now();
        let mut running: Vec<Detached> = Vec::new();
        for _ in 0..CONTAINERS {
            running.push(ctx.detached(report, BUSYBOX, &cmd_opts(sh("echo up; sleep 30")))?);
        }
        let all_started_ms = t0.elapsed().as_secs_f64() * 1e3;
        let deadline = Instant::now() + Duration::from_secs(30);
        while running.iter().any(|d| !d.output().contains("up")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let during = host_meminfo().map_err(LessonError::BadInput)?;
        let mut cgroup = 0u64;
        let mut pss = 0u64;
        let mut measured = 0usize;
        for d in &running {
            if let (Some(u), Some(m)) = (
                d.cgroup_usage().and_then(|u| u.memory_bytes),
                d.supervisor_memory(),
            ) {
                cgroup += u;
                pss += m.pss.unwrap_or(m.rss);
                measured += 1;
            }
        }
        ctx.host_step(
            report,
            "twinbox stats   # memory of the running containers",
            &format!(
                "{measured} containers measured: cgroup memory {} in all, supervisors {} (PSS) in all\n",
                format_bytes(cgroup),
                format_bytes(pss)
            ),
        );
        for d in running {
            d.remove()?;
        }
        let c_per: Measured<u64> = if measured > 0 {
            Measured::Value((cgroup + pss) / measured as u64)
        } else {
            Measured::failed("no running container could be measured")
        };
        let c_drop = before.available as i64 - during.available as i64;
        report.check("container memory", &c_per);

        // VMs
        ctx.say.heading(&format!("{VMS} microVMs at once"));
        let vm_before = host_meminfo().map_err(LessonError::BadInput)?;
        let opts = cmd_opts(sh("echo up; sleep 10"));
        let req = ctx.vm_request(BUSYBOX, &image, &opts, VM_MEMORY_MIB);
        let mut vm_during = None;
        let mut runs: Vec<Result<VmRun, String>> = Vec::new();
        let vm_started = Instant::now();
        let vm_all_up_ms;
        match ctx.prepare_vm(&req).and_then(|_| ctx.vm()) {
            Err(why) => {
                runs.push(Err(why));
                vm_all_up_ms = None;
            }
            Ok(vm) => {
                let command = vm.command_line(&req);
                let up = Arc::new(AtomicUsize::new(0));
                let mut up_at = None;
                let results = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..VMS)
                        .map(|i| {
                            ctx.show(Side::Vm, &format!("{command} &   # VM {}", i + 1));
                            let live = Prefixed {
                                prefix: format!("[vm {}] ", i + 1),
                                up: up.clone(),
                                said_up: false,
                                seen: String::new(),
                                line_start: true,
                            };
                            let req = &req;
                            s.spawn(move || vm.run(req, Box::new(live)))
                        })
                        .collect();
                    let deadline = Instant::now() + BOOT_TIMEOUT + Duration::from_secs(30);
                    while up.load(Ordering::Acquire) < VMS
                        && !handles.iter().all(|h| h.is_finished())
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    if up.load(Ordering::Acquire) == VMS {
                        up_at = Some(vm_started.elapsed().as_secs_f64() * 1e3);
                        vm_during = host_meminfo().ok();
                    }
                    handles
                        .into_iter()
                        .map(|h| match h.join() {
                            Ok(Ok(run)) => Ok(run),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("the VM thread panicked".to_string()),
                        })
                        .collect::<Vec<_>>()
                });
                vm_all_up_ms = up_at;
                for (i, r) in results.iter().enumerate() {
                    report.steps.push(Step {
                        side: Side::Vm,
                        command: format!("{command} &   # VM {}", i + 1),
                        output: r.as_ref().map(|r| r.output.clone()).unwrap_or_default(),
                        exit_code: r.as_ref().ok().and_then(|r| r.exit_code),
                        error: match r {
                            Ok(run) => run.failure.clone(),
                            Err(e) => Some(e.clone()),
                        },
                        duration_ms: r.as_ref().ok().map(|r| r.total_ms),
                    });
                }
                runs = results;
            }
        }
        let _ = io::stdout().flush();
        let ok: Vec<&VmRun> = runs
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|r| r.failure.is_none())
            .collect();
        let fail = runs
            .iter()
            .find_map(|r| match r {
                Err(e) => Some(e.clone()),
                Ok(run) => run.failure.clone(),
            })
            .unwrap_or_else(|| "no VM finished".into());
        let one_process = ctx
            .vm()
            .map(|b| b.note().name == "twinbox")
            .unwrap_or(false);
        let rss: Vec<u64> = ok
            .iter()
            .filter_map(|r| r.memory.process_rss.value().copied())
            .collect();
        let v_per: Measured<u64> = if rss.is_empty() {
            Measured::failed(fail.clone())
        } else if one_process {
            // every VM runs in this one process: its RSS holds them all
            Measured::Value(rss.iter().copied().max().unwrap_or(0) / ok.len().max(1) as u64)
        } else {
            Measured::Value(rss.iter().sum::<u64>() / rss.len() as u64)
        };
        report.check("VM memory", &v_per);
        let v_drop = vm_during.map(|d| vm_before.available as i64 - d.available as i64);
        let boots: Vec<f64> = ok.iter().filter_map(|r| r.to_workload_ms).collect();

        let mut t = Table::new("running at the same time", &["", "containers", "microVMs"]);
        t.row(vec![
            "instances".into(),
            CONTAINERS.to_string().into(),
            format!("{} ({} MiB RAM each)", VMS, VM_MEMORY_MIB).into(),
        ]);
        t.row(vec![
            "all started after".into(),
            format_ms(all_started_ms).into(),
            match vm_all_up_ms {
                Some(ms) => format_ms(ms).into(),
                None => Cell::Failed {
                    failed: fail.clone(),
                },
            },
        ]);
        t.row(vec![
            "memory per instance".into(),
            c_per
                .as_ref()
                .map(|b| format!("{} (cgroup + supervisor PSS)", format_bytes(*b)))
                .into(),
            v_per
                .as_ref()
                .map(|b| format!("{} (VMM process RSS)", format_bytes(*b)))
                .into(),
        ]);
        t.row(vec![
            "host's available memory dropped by".into(),
            format!("{} for {CONTAINERS}", change(c_drop)).into(),
            match v_drop {
                Some(d) => format!("{} for {VMS}", change(d)).into(),
                None => Cell::Failed {
                    failed: "the VMs were never all up at once".into(),
                },
            },
        ]);
        let fit = |per: &Measured<u64>| -> Cell {
            per.as_ref()
                .map(|p| format!("about {}", before.available / (*p).max(1)))
                .into()
        };
        t.row(vec![
            format!(
                "would fit in {} available (estimate)",
                format_bytes(before.available)
            )
            .into(),
            fit(&c_per),
            match v_per.value() {
                Some(_) => format!(
                    "about {} by RSS, {} by reserved RAM",
                    before.available / v_per.value().copied().unwrap_or(1).max(1),
                    before.available / (VM_MEMORY_MIB << 20)
                )
                .into(),
                None => Cell::Failed {
                    failed: fail.clone(),
                },
            },
        ]);
        report.tables.push(t);
        let f = |m: &Measured<u64>| m.as_ref().map(|v| *v as f64);
        report.charts.push(Chart {
            title: "memory per instance".into(),
            unit: Unit::Bytes,
            bars: vec![
                bar("container", Side::Container, f(&c_per), None),
                bar("microVM (RSS)", Side::Vm, f(&v_per), None),
                bar(
                    "microVM (RAM reserved)",
                    Side::Vm,
                    Measured::Value((VM_MEMORY_MIB << 20) as f64),
                    None,
                ),
            ],
            note: None,
        });

        if let (Some(c), Some(v)) = (c_per.value(), v_per.value()) {
            report.findings.push(format!(
                "Each of the {CONTAINERS} containers cost about {} ({} in all for the workloads and {} for the supervisors), each of the {VMS} microVMs about {}: {:.0} times as much{}. At that rate the {} this host has available would hold about {} containers or {} VMs, and fewer VMs still if each is given its full {} MiB.",
                format_bytes(*c),
                format_bytes(cgroup),
                format_bytes(pss),
                format_bytes(*v),
                *v as f64 / (*c).max(1) as f64,
                if one_process { " (all VMs ran in this one process; its RSS was split evenly)" } else { "" },
                format_bytes(before.available),
                before.available / (*c).max(1),
                before.available / (*v).max(1),
                VM_MEMORY_MIB
            ));
        }
        if let Some(b) = boots.iter().copied().reduce(f64::max) {
            report.findings.push(format!(
                "{CONTAINERS} containers were all started after {}; the {VMS} VMs, booting side by side, took up to {} to reach their workload.",
                format_ms(all_started_ms),
                format_ms(b)
            ));
        }
        report.caveats.push("The drop in available memory is a whole-host measurement: anything else running changes it too.".into());
        report.caveats.push("Estimates of how many would fit divide free memory by the cost of these tiny workloads; real ones use more on both sides.".into());
        report.fact(
            "containers",
            json!({"count": CONTAINERS, "measured": measured, "per_instance_bytes": c_per, "cgroup_bytes": cgroup,
                   "supervisor_pss_bytes": pss, "all_started_ms": all_started_ms, "available_drop_bytes": c_drop}),
        );
        report.fact(
            "vms",
            json!({"count": VMS, "finished": ok.len(), "per_instance_bytes": v_per, "rss_bytes": rss,
                   "all_up_ms": vm_all_up_ms, "to_workload_ms": boots, "available_drop_bytes": v_drop,
                   "one_process": one_process}),
        );
        Ok(())
    }
}

/// A change in available memory: a rise means other activity hid the cost.
fn change(drop: i64) -> String {
    if drop >= 0 {
        format_bytes(drop as u64)
    } else {
        format!(
            "nothing (it rose by {}: other activity hid the cost)",
            format_bytes(drop.unsigned_abs())
        )
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
