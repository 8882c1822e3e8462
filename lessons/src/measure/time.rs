//! Several runs of one thing: the median and the spread, as the lessons quote them.

use serde::Serialize;

/// Summary of repeated timings (milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub runs: Vec<f64>,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Stats {
            runs: samples.to_vec(),
            median,
            min: sorted[0],
            max: sorted[n - 1],
        })
    }

    /// "12.3 ms (11.9–13.0, 3 runs)", or just the value for one run.
    pub fn describe(&self) -> String {
        use crate::report::format_ms;
        if self.runs.len() == 1 {
            format_ms(self.median)
        } else {
            format!(
                "{} ({}–{}, {} runs)",
                format_ms(self.median),
                format_ms(self.min),
                format_ms(self.max),
                self.runs.len()
            )
        }
    }
}

/// Milliseconds between two RFC 3339 timestamps (wall clock), `None` when
/// either does not parse.
pub fn ms_between(from: &str, to: &str) -> Option<f64> {
    let a = chrono::DateTime::parse_from_rfc3339(from).ok()?;
    let b = chrono::DateTime::parse_from_rfc3339(to).ok()?;
    Some((b - a).num_microseconds()? as f64 / 1000.0)
}

/// How many times larger `a` is than `b`, as words: "4.2×".
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Stats::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        assert_eq!(s.runs, vec![5.0, 1.0, 3.0]);
        let s = Stats::of(&[4.0, 2.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert!(Stats::of(&[]).is_none());
        assert_eq!(Stats::of(&[2.0]).unwrap().describe(), "2.0 ms");
        assert!(s.describe().contains("2 runs"));
    }

    #[test]
    fn wall_clock_differences() {
        let ms = ms_between(
            "2026-01-01T00:00:00.000000000Z",
            "2026-01-01T00:00:01.250000000Z",
        )
        .unwrap();
        assert!((ms - 1250.0).abs() < 1e-6);
        assert!(ms_between("x", "2026-01-01T00:00:00Z").is_none());
    }
}
