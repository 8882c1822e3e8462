//! rm-bench: `twinbox run --rm --network none busybox true`, builds against
//! each other and against the floor, with each run's CPU time and waits.
//!
//! The main bench times ten series; this one times only the run the 10 ms goal
//! is about, for one or more twinbox binaries (before and after a change), and
//! `unshare -mpuin -f /bin/true` (the namespaces alone: the floor). Series run
//! round-robin, `--pause-ms` apart, so machine noise falls on all alike. Each
//! binary gets its own store in the scratch directory.
//!
//! Wall time under load hides what a change saves, so each run's resource
//! usage is read too (`wait4`'s rusage of the command and the children it
//! reaped, the container's init included): CPU time (user + system) and
//! voluntary context switches (each one a wait: a disk round trip, an RCU
//! grace period, a child's exit). Medians are reported for all three.
//!
//! Run as root: `cargo build --release && cargo run --release -p twinbox-bench
//! --bin rm-bench -- [--twinbox LABEL=PATH]... [--runs N]`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use twinbox_bench::setup::{prepare, DEFAULT_TWINBOX};
use twinbox_bench::stats::{last_line, Stats};
use twinbox_bench::table::{ms, Table};

#[derive(Parser, Debug)]
#[command(
    name = "rm-bench",
    about = "run --rm --network none busybox true: twinbox builds against each other and the unshare floor"
)]
struct Args {
    /// A build to time, as LABEL=PATH (repeat to compare; default: the
    /// workspace's release binary, labelled "twinbox")
    #[arg(long = "twinbox")]
    twinbox: Vec<String>,
    /// Timed runs per series
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Untimed warm-up runs per series
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Pause before each run, so each starts cold as a user's command does
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// Extra arguments for every twinbox run, before the image (e.g. --userns=auto)
    #[arg(long = "run-arg", allow_hyphen_values = true)]
    run_args: Vec<String>,
    /// Scratch directory for the stores (removed afterwards)
    #[arg(long, default_value = "/var/tmp")]
    tmp: PathBuf,
}

/// One run's cost: wall time, CPU time of the command and its reaped children,
/// and how often they waited.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    waits: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("rm-bench: {e}");
        std::process::exit(1);
    }
}

struct Build {
    label: String,
    bin: PathBuf,
    root: PathBuf,
}

fn run(args: &Args) -> Result<(), String> {
    let (_, scratch) = prepare(
        "namespaces, mounts and cgroups need it",
        None,
        &args.tmp,
        "twinbox-rm-bench-",
    )?;
    let specs = if args.twinbox.is_empty() {
        vec![format!("twinbox={DEFAULT_TWINBOX}")]
    } else {
        args.twinbox.clone()
    };
    let mut builds = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (label, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("--twinbox {spec:?}: give LABEL=PATH"))?;
        let bin = PathBuf::from(path);
        if !bin.is_file() {
            return Err(format!("--twinbox {label}: {path} is not a file"));
        }
        let root = scratch.path().join(format!("store-{i}"));
        let b = Build {
            label: label.to_string(),
            bin,
            root,
        };
        let out = b
            .cmd()
            .args(["image", "bootstrap", "busybox"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: cannot start: {e}", b.bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{label}: image bootstrap busybox failed: {}",
                last_line(&out.stderr)
            ));
        }
        builds.push(b);
    }
    eprintln!(
        "rm-bench: {} series, {} warm-up + {} runs each, interleaved, {} ms apart; load average {}",
        builds.len() + 1,
        args.warmup,
        args.runs,
        args.pause_ms,
        load_average()
    );
    let pause = Duration::from_millis(args.pause_ms);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); builds.len() + 1];
    for n in 0..args.warmup + args.runs {
        for (i, series) in samples.iter_mut().enumerate() {
            std::thread::sleep(pause);
            let s = match builds.get(i) {
                Some(b) => {
                    let mut cmd = b.cmd();
                    cmd.args(["run", "--rm", "--network", "none"])
                        .args(&args.run_args)
                        .args(["busybox", "true"]);
                    measure(&mut cmd, &format!("{}: run --rm", b.label))?
                }
                None => measure(
                    Command::new("unshare").args(["-mpuin", "-f", "/bin/true"]),
                    "unshare -mpuin -f /bin/true",
                )?,
            };
            if n >= args.warmup {
                series.push(s);
            }
        }
    }
    let load_after = load_average();
    let floor = Stats::of(
        &samples[builds.len()]
            .iter()
            .map(|s| s.wall)
            .collect::<Vec<_>>(),
    );
    let mut table = Table::new(&[
        "series",
        "median ms",
        "p10-p90",
        "vs floor",
        "vs first",
        "cpu ms",
        "waits",
    ]);
    let first = Stats::of(&samples[0].iter().map(|s| s.wall).collect::<Vec<_>>());
    let labels = builds
        .iter()
        .map(|b| format!("{} run --rm", b.label))
        .chain(std::iter::once("unshare -mpuin -f /bin/true".to_string()));
    for (label, series) in labels.zip(&samples) {
        let wall = Stats::of(&series.iter().map(|s| s.wall).collect::<Vec<_>>());
        let cpu = Stats::of(&series.iter().map(|s| s.cpu).collect::<Vec<_>>());
        let mut waits: Vec<u64> = series.iter().map(|s| s.waits).collect();
        waits.sort_unstable();
        table.row(vec![
            label,
            ms(wall.median),
            format!("{}-{}", ms(wall.p10), ms(wall.p90)),
            wall.ratio_to(&floor),
            wall.ratio_to(&first),
            ms(cpu.median),
            waits[waits.len() / 2].to_string(),
        ]);
    }
    print!("{}", table.render());
    println!("load average after: {load_after}; goal: twinbox median under 10 ms");
    Ok(())
}

impl Build {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("TWINBOX_ROOT", &self.root)
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG");
        cmd
    }
}

/// Runs `cmd` to a successful exit, output discarded, and reads its rusage.
fn measure(cmd: &mut Command, what: &str) -> Result<Sample, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, once; both out-pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    if pid < 0 {
        return Err(format!(
            "{what}: wait4: {}",
            std::io::Error::last_os_error()
        ));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{what} failed (wait status {status})"));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Sample {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        waits: usage.ru_nvcsw as u64,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
