//! What the harness counts: one workload run N times on one side, each run
//! timed to the workload's start and to its end, with failures kept as
//! reasons. The runs themselves are made through the lesson's context
//! (`Context::container_series`, `foreground_series`, `vm_series`).

use serde::Serialize;

use crate::measure::time::Stats;
use crate::report::Measured;

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

    /// A run that ended: its times count, unless `failure` says why it
    /// does not (a timeout, a VM that did not boot); its exit code is kept
    /// either way, and the first output offered.
    pub fn record(
        &mut self,
        to_workload_ms: Option<f64>,
        total_ms: Option<f64>,
        exit_code: Option<i32>,
        failure: Option<String>,
        output: Option<&str>,
    ) {
        match failure {
            Some(why) => self.failures.push(why),
            None => {
                self.to_workload_ms.extend(to_workload_ms);
                self.total_ms.extend(total_ms);
            }
        }
        self.exit_codes.push(exit_code);
        if let Some(out) = output {
            self.output.get_or_insert_with(|| out.to_string());
        }
    }

    /// A run that could not be made at all.
    pub fn record_error(&mut self, why: String) {
        self.failures.push(why);
        self.exit_codes.push(None);
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
