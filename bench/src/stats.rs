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

    /// This series' median over the peer's, as "0.47x".
    pub fn ratio_to(&self, peer: &Stats) -> String {
        format!("{:.2}x", self.median / peer.median)
    }
}

/// Runs the command to its end with no stdin and returns how long it took; a
/// failing command is an error quoting its stderr.
pub fn timed(mut cmd: Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(took)
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
