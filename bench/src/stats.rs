//! Samples to figures. Benchmarks time a few runs on a noisy machine, so they
//! report the median and the p10–p90 spread, never a mean.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A series summarised, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub runs: usize,
}

impl Stats {
    /// Summarises the samples (linear interpolation between ranks). An empty
    /// series gives NaNs, which the table prints as "-".
    pub fn of(samples: &[Duration]) -> Stats {
        let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            if v.is_empty() {
                return f64::NAN;
            }
            let pos = q * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
        };
        Stats {
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
            runs: v.len(),
        }
    }

    /// Milliseconds rounded to microseconds, for `--json` reports.
    pub fn to_json(self) -> serde_json::Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        serde_json::json!({ "median_ms": r(self.median), "p10_ms": r(self.p10), "p90_ms": r(self.p90) })
    }

    /// This series' median over the peer's, as "0.47x".
    pub fn ratio_to(&self, peer: &Stats) -> String {
        format!("{:.2}x", self.median / peer.median)
    }
}

/// Wall time from spawn to exit of one successful run, no stdin, output
/// discarded; a failing run is an error with `what` and its last stderr line.
pub fn timed(cmd: &mut Command, what: &str) -> Result<Duration, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            last_line(&out.stderr)
        ));
    }
    Ok(took)
}

/// The last non-empty line of a program's output, for one-line errors.
pub fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no error output")
        .trim()
        .to_string()
}

/// Times a closure.
pub fn timed_fn<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_interpolate() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let s = Stats::of(&ms(&[40, 10, 30, 20]));
        assert_eq!(s.median, 25.0);
        assert!((s.p10 - 13.0).abs() < 1e-9 && (s.p90 - 37.0).abs() < 1e-9);
        assert_eq!(s.runs, 4);
        assert_eq!(
            Stats::of(&ms(&[5, 5])).ratio_to(&Stats::of(&ms(&[10]))),
            "0.50x"
        );
        assert!(Stats::of(&[]).median.is_nan());
    }
}
