//! The harness's runs: one workload N times on one side (a detached
//! container, a foreground one, or a microVM), each run shown and recorded
//! like any other step, and counted in a [`Series`].

use twinbox_engine::container::RunOptions;

use super::{Context, RUN_TIMEOUT};
use crate::backend::{VmRequest, VmRun};
use crate::container::DetachedEnd;
use crate::measure::series::Series;
use crate::report::LessonReport;

/// The container side of a comparison, detached (`run -d`) so its small
/// supervisor process can be measured from outside.
#[derive(Debug, Clone, Default)]
pub struct ContainerSeries {
    pub series: Series,
    /// The last run's end, for memory and disk.
    pub last: Option<DetachedEnd>,
}

/// The VM side: N boots of the same workload.
#[derive(Debug, Clone, Default)]
pub struct VmSeries {
    pub series: Series,
    /// Every boot that ran (to its end or to its failure), in order.
    pub runs: Vec<VmRun>,
    pub initramfs_bytes: Option<u64>,
    pub initramfs_cache: Option<std::path::PathBuf>,
}

impl VmSeries {
    pub fn last(&self) -> Option<&VmRun> {
        self.runs.last()
    }
}

fn stopped() -> String {
    format!("stopped after {} s", RUN_TIMEOUT.as_secs())
}

impl Context {
    fn run_note(&self, side: &str, i: usize, runs: usize) {
        if runs > 1 {
            self.say.note(&format!("{side} run {}/{runs}", i + 1));
        }
    }

    /// `run -d` N times, each waited for and measured from outside.
    pub fn container_series(
        &self,
        report: &mut LessonReport,
        image: &str,
        opts: &RunOptions,
        runs: usize,
    ) -> ContainerSeries {
        let mut out = ContainerSeries::default();
        for i in 0..runs {
            self.run_note("container", i, runs);
            let end = self
                .detached(report, image, opts)
                .and_then(|d| self.finish_detached(report, d, RUN_TIMEOUT));
            match end {
                Ok(end) => {
                    out.series.record(
                        end.to_workload_ms,
                        end.total_ms,
                        end.exit_code,
                        end.timed_out.then(stopped),
                        Some(&end.output),
                    );
                    out.last = Some(end);
                }
                Err(e) => {
                    self.say.failure(&format!("failed: {e}"));
                    out.series.record_error(e.to_string());
                }
            }
        }
        out
    }

    /// The same in the foreground (`run --rm`), as a student would time it.
    pub fn foreground_series(
        &self,
        report: &mut LessonReport,
        image: &str,
        opts: &RunOptions,
        runs: usize,
    ) -> Series {
        let mut out = Series::default();
        for i in 0..runs {
            self.run_note("container", i, runs);
            match self.container(report, image, opts) {
                Ok(run) => out.record(
                    run.to_workload_ms,
                    run.total_ms,
                    run.exit_code,
                    run.timed_out.then(stopped),
                    (!run.timed_out).then_some(run.output.as_str()),
                ),
                Err(e) => {
                    self.say.failure(&format!("failed: {e}"));
                    out.record_error(e.to_string());
                }
            }
        }
        out
    }

    /// N boots of the same workload, after its initramfs is ready.
    pub fn vm_series(&self, report: &mut LessonReport, req: &VmRequest, runs: usize) -> VmSeries {
        let mut out = VmSeries::default();
        match self.prepare_vm(req) {
            Ok(p) => {
                out.initramfs_bytes = Some(p.initramfs_bytes);
                out.initramfs_cache = p.initramfs_cache;
            }
            Err(why) => {
                self.say.failure(&format!("the VM half cannot run: {why}"));
                out.series.failures.push(why);
                return out;
            }
        }
        for i in 0..runs {
            self.run_note("microVM", i, runs);
            match self.vm_run(report, req) {
                Ok(run) => {
                    out.series.record(
                        run.to_workload_ms,
                        Some(run.total_ms),
                        run.exit_code,
                        run.failure.clone(),
                        run.failure.is_none().then_some(run.output.as_str()),
                    );
                    out.runs.push(run);
                }
                Err(why) => {
                    out.series.record_error(why);
                    // a backend that cannot start a VM will not on the next try
                    break;
                }
            }
        }
        out
    }
}
