//! A time budget for the proptest fuzz targets, so a slow machine cannot
//! stretch the suite: each target runs new cases in small batches until its
//! budget is spent (or a case ceiling is reached), never stopping in the middle
//! of a case or of the shrinking of a failure.
//!
//! - `TWINBOX_FUZZ_SECONDS` (default 3, what CI uses): the budget of each target.
//!   Set, it also lifts the case ceiling: `TWINBOX_FUZZ_SECONDS=600 cargo test
//!   -p twinbox-engine --test fuzz -- --nocapture` fuzzes for ten minutes a target.
//! - `PROPTEST_CASES`: the case ceiling (default: the target's own count when no
//!   budget is set, none when one is).
//!
//! Every batch first replays the failures kept beside the target's source file
//! (`*.proptest-regressions`, proptest's file), so the corpus that found bugs is
//! re-run on every run however small the budget.
//!
//! This file is shared by the engine's targets and the microvm crate's virtqueue
//! targets (included there by path), so both read the same knobs.

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

pub const SECONDS_VAR: &str = "TWINBOX_FUZZ_SECONDS";
const DEFAULT_SECONDS: f64 = 3.0;

/// How long a target may run and how many new cases it may try at most.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub budget: Duration,
    pub max_cases: u64,
}

impl Bound {
    /// The bound of a target whose case count without a budget is `cases`.
    pub fn from_env(cases: u32) -> Bound {
        let env_seconds = std::env::var(SECONDS_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0);
        let env_cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        let max_cases = match (env_cases, env_seconds) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => u64::from(cases),
        };
        Bound {
            budget: Duration::from_secs_f64(env_seconds.unwrap_or(DEFAULT_SECONDS)),
            max_cases,
        }
    }
}

/// Runs `test` on values of `strategy` within the bound read from the
/// environment (`cases` is the target's ceiling when no budget is set); a
/// failure is shrunk, kept in the regressions file beside the caller's source
/// and panics with the smallest failing value.
#[track_caller]
pub fn fuzz<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
{
    let source_file = std::panic::Location::caller().file();
    let bound = Bound::from_env(cases);
    let started = Instant::now();
    let mut ran: u64 = 0;
    // Small batches first, so a slow target stops near its budget; larger
    // ones later, so the replay of kept failures costs little per case.
    let mut batch: u64 = 4;
    loop {
        let n = batch.min(bound.max_cases - ran);
        let config = Config {
            cases: u32::try_from(n).unwrap_or(u32::MAX),
            // Shrinking a tar stream can take long; a kept failure is small enough.
            max_shrink_iters: 256,
            source_file: Some(source_file),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name}: {e}\n{runner}");
        }
        ran += n;
        let spent = started.elapsed();
        if ran >= bound.max_cases || spent >= bound.budget {
            break;
        }
        // the next batch at most doubles, and fits in what is left of the budget
        // at the pace so far
        let per_case = spent.as_secs_f64() / ran as f64;
        let fits = (bound.budget - spent).as_secs_f64() / per_case.max(1e-9);
        batch = (batch * 2).min(256).min(fits as u64).max(1);
    }
    eprintln!(
        "fuzz target {name}: {ran} cases in {:.1} s (budget {:.1} s, ceiling {})",
        started.elapsed().as_secs_f64(),
        bound.budget.as_secs_f64(),
        bound.max_cases
    );
}
