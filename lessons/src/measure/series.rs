//! The measuring harness: one workload run N times on one side (container in
//! the foreground or detached, or microVM), each run timed to the workload's
//! start and to its end, with failures kept as reasons. Lessons choose what
//! to run; this module runs it and counts.

use serde::Serialize;
use twinbox_engine::container::RunOptions;

use crate::backend::{VmRequest, VmRun};
use crate::context::{Context, DetachedEnd, RUN_TIMEOUT};
use crate::measure::time::Stats;
use crate::report::{LessonReport, Measured};

/// N runs of one workload on one side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub to_workload_ms: Vec<f64>,
    pub total_ms: Vec<f64>,
    pub exit_codes: Vec<Option<i32>>,
    /// Why a run failed (a VM that did not boot, a timeout).
    pub failures: Vec<String>,
    /// The first run's output.
    pub output: Option<String>,
}

impl Series {
    pub fn to_workload(&self) -> Measured<Stats> {
        self.stats(&self.to_workload_ms)
    }

    pub fn total(&self) -> Measured<Stats> {
        self.stats(&self.total_ms)
    }

    fn stats(&self, v: &[f64]) -> Measured<Stats> {
        match Stats::of(v) {
            Some(s) => Measured::Value(s),
            None => Measured::failed(
                self.failures
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "no run finished".into()),
            ),
        }
    }
}

/// The container side of a comparison, detached (`run -d`) so its small
/// supervisor process can be measured from outside.
#[derive(Debug, Clone, Default)]
pub struct ContainerSeries {
    pub series: Series,
    /// The last run's end, for memory and disk.
    pub last: Option<DetachedEnd>,
}

pub fn container_series(
    ctx: &Context,
    report: &mut LessonReport,
    image: &str,
    opts: &RunOptions,
    runs: usize,
) -> ContainerSeries {
    let mut out = ContainerSeries::default();
    for i in 0..runs {
        if runs > 1 {
            ctx.say.note(&format!("container run {}/{runs}", i + 1));
        }
        let end = ctx
            .detached(report, image, opts)
            .and_then(|d| ctx.finish_detached(report, d, RUN_TIMEOUT));
        match end {
            Ok(end) => {
                if end.timed_out {
                    out.series
                        .failures
                        .push(format!("stopped after {} s", RUN_TIMEOUT.as_secs()));
                } else {
                    out.series.to_workload_ms.extend(end.to_workload_ms);
                    out.series.total_ms.extend(end.total_ms);
                }
                out.series.exit_codes.push(end.exit_code);
                out.series.output.get_or_insert_with(|| end.output.clone());
                out.last = Some(end);
            }
            Err(e) => {
                ctx.say.failure(&format!("failed: {e}"));
                out.series.failures.push(e.to_string());
                out.series.exit_codes.push(None);
            }
        }
    }
    out
}

/// The same in the foreground (`run --rm`), as a student would time it.
pub fn foreground_series(
    ctx: &Context,
    report: &mut LessonReport,
    image: &str,
    opts: &RunOptions,
    runs: usize,
) -> Series {
    let mut out = Series::default();
    for i in 0..runs {
        if runs > 1 {
            ctx.say.note(&format!("container run {}/{runs}", i + 1));
        }
        match ctx.container(report, image, opts) {
            Ok(run) if run.timed_out => {
                out.failures
                    .push(format!("stopped after {} s", RUN_TIMEOUT.as_secs()));
                out.exit_codes.push(run.exit_code);
            }
            Ok(run) => {
                out.to_workload_ms.extend(run.to_workload_ms);
                out.total_ms.extend(run.total_ms);
                out.exit_codes.push(run.exit_code);
                out.output.get_or_insert(run.output);
            }
            Err(e) => {
                ctx.say.failure(&format!("failed: {e}"));
                out.failures.push(e.to_string());
                out.exit_codes.push(None);
            }
        }
    }
    out
}

/// The VM side: N boots of the same workload.
#[derive(Debug, Clone, Default)]
pub struct VmSeries {
    pub series: Series,
    pub last: Option<VmRun>,
    pub initramfs_bytes: Option<u64>,
    pub initramfs_cache: Option<std::path::PathBuf>,
}

pub fn vm_series(
    ctx: &Context,
    report: &mut LessonReport,
    req: &VmRequest,
    runs: usize,
) -> VmSeries {
    let mut out = VmSeries::default();
    match ctx.prepare_vm(req) {
        Ok(p) => {
            out.initramfs_bytes = Some(p.initramfs_bytes);
            out.initramfs_cache = p.initramfs_cache;
        }
        Err(why) => {
            ctx.say.failure(&format!("the VM half cannot run: {why}"));
            out.series.failures.push(why);
            return out;
        }
    }
    for i in 0..runs {
        if runs > 1 {
            ctx.say.note(&format!("microVM run {}/{runs}", i + 1));
        }
        match ctx.vm_run(report, req) {
            Ok(run) => {
                match &run.failure {
                    Some(why) => out.series.failures.push(why.clone()),
                    None => {
                        out.series.to_workload_ms.extend(run.to_workload_ms);
                        out.series.total_ms.push(run.total_ms);
                        out.series.output.get_or_insert_with(|| run.output.clone());
                    }
                }
                out.series.exit_codes.push(run.exit_code);
                out.last = Some(run);
            }
            Err(why) => {
                out.series.failures.push(why);
                out.series.exit_codes.push(None);
                // a backend that cannot start a VM will not on the next try
                break;
            }
        }
    }
    out
}

/// Output compared as text: the serial console turns "\n" into "\r\n".
pub fn same_output(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_compare_across_line_endings() {
        assert!(same_output("hello\nworld\n", "hello\r\nworld\r\n"));
        assert!(!same_output("hello\n", "bye\n"));
        assert!(same_output("a  \n", "a\n\n"));
    }

    #[test]
    fn series_without_runs_fail_with_the_reason() {
        let s = Series {
            failures: vec!["the guest did not boot".into()],
            ..Default::default()
        };
        assert_eq!(s.total().failure(), Some("the guest did not boot"));
        let ok = Series {
            total_ms: vec![3.0, 1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(ok.total().value().unwrap().median, 2.0);
    }
}
