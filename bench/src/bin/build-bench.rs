//! build-bench: `twinbox build` against `docker build` (Debian's docker.io
//! dockerd, BuildKit) on the same context, in one run.
//!
//! The context is the course's Flask-style app grown to a realistic size (a few
//! hundred source files, a few MB) with three RUN steps and two COPY steps on the
//! offline busybox base, which both builders get from the same archive. Round
//! robin, each series builds:
//!
//! - cold: `--no-cache`, every step runs (the base image is already there);
//! - cached: nothing changed since the last build, every step is a cache hit.
//!
//! Reported: median and p10–p90 of each, and twinbox's median over Docker's.
//! Targets (printed, not asserted): cached at or below 0.5x, cold at or below 1.0x.
//! buildah is measured too when it is installed.
//!
//! Run as root: `cargo build --release && cargo run --release -p twinbox-bench --bin build-bench`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use twinbox_bench::dockerd::{Bridge, Dockerd};
use twinbox_bench::setup::DEFAULT_TWINBOX;
use twinbox_bench::stats::{self, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "build-bench",
    about = "twinbox build against docker build (BuildKit), cold and cached, same context"
)]
struct Args {
    /// Timed runs per series
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Source files in the context
    #[arg(long, default_value_t = 300)]
    files: usize,
    /// The twinbox binary (default: the workspace's target/release/twinbox)
    #[arg(long)]
    twinbox: Option<PathBuf>,
    /// Scratch directory (removed afterwards)
    #[arg(long, default_value = "/var/tmp")]
    tmp: PathBuf,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
}

type Result<T, E = String> = std::result::Result<T, E>;

const DOCKERFILE: &str = r#"FROM busybox
LABEL course="containers vs VMs"
EXPOSE 5000
ENV FLASK_APP=app.py
WORKDIR /app
COPY requirements.txt .
RUN mkdir -p /opt/venv && for p in $(cat requirements.txt); do mkdir -p /opt/venv/$p && echo "$p" > /opt/venv/$p/__init__.py; done
COPY . .
RUN find /app -name '*.py' | sort > /app/manifest.txt && wc -l < /app/manifest.txt
RUN echo built > /app/BUILD
CMD ["sh", "-c", "cat /app/BUILD"]
"#;

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("build-bench: {e}");
        std::process::exit(1);
    }
}

/// One successful run's wall time (the shared timer, named by its command line).
fn timed(mut cmd: Command) -> Result<Duration> {
    let what = format!("{cmd:?}");
    stats::timed(&mut cmd, &what)
}

fn make_context(dir: &Path, files: usize) -> Result<()> {
    let w = |p: PathBuf, text: String| -> Result<()> {
        fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        fs::write(&p, text).map_err(|e| e.to_string())
    };
    w(dir.join("Dockerfile"), DOCKERFILE.into())?;
    w(
        dir.join("requirements.txt"),
        "flask\njinja2\nwerkzeug\nclick\nitsdangerous\nmarkupsafe\n".into(),
    )?;
    w(dir.join(".dockerignore"), "*.pyc\n".into())?;
    for i in 0..files {
        let body: String = (0..40)
            .map(|l| format!("def f_{i}_{l}(x):\n    return x * {l} + {i}\n"))
            .collect();
        w(dir.join(format!("app/pkg{}/mod{i}.py", i % 12)), body)?;
    }
    w(
        dir.join("app.py"),
        "from flask import Flask\napp = Flask(__name__)\n".into(),
    )
}

fn run(args: &Args) -> Result<()> {
    let twinbox = args
        .twinbox
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TWINBOX));
    if !twinbox.exists() {
        return Err(format!(
            "{} not found: cargo build --release first",
            twinbox.display()
        ));
    }
    let scratch = tempfile::Builder::new()
        .prefix("build-bench")
        .tempdir_in(&args.tmp)
        .map_err(|e| e.to_string())?;
    let root = scratch.path().join("store");
    let ctx = scratch.path().join("ctx");
    make_context(&ctx, args.files)?;
    let tb = |a: &[&str]| {
        let mut c = Command::new(&twinbox);
        c.env("TWINBOX_ROOT", &root).args(a);
        c
    };
    timed(tb(&["image", "bootstrap", "busybox"]))?;
    let base = scratch.path().join("busybox.tar");
    timed(tb(&["save", "-o", base.to_str().unwrap(), "busybox"]))?;
    // builds run with --network none: the peer needs no bridge
    let dockerd = Dockerd::start(&scratch.path().join("dockerd"), Bridge::None)?;
    dockerd.output(&["load", "-i", base.to_str().unwrap()])?;
    let docker = |a: &[&str]| dockerd.cmd(a);
    let c = ctx.to_str().unwrap();
    let buildah = Command::new("buildah")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut series: Vec<(&str, Vec<Duration>)> = vec![
        ("twinbox cold", vec![]),
        ("docker cold", vec![]),
        ("twinbox cached", vec![]),
        ("docker cached", vec![]),
    ];
    // a first build of each fills the caches the cached series hit
    timed(tb(&["build", "-q", "-t", "bench:1", c]))?;
    timed(docker(&[
        "build",
        "-q",
        "--network",
        "none",
        "-t",
        "bench:1",
        c,
    ]))?;
    for _ in 0..args.runs {
        series[0].1.push(timed(tb(&[
            "build",
            "-q",
            "--no-cache",
            "--network",
            "none",
            "-t",
            "bench:cold",
            c,
        ]))?);
        series[1].1.push(timed(docker(&[
            "build",
            "-q",
            "--no-cache",
            "--network",
            "none",
            "-t",
            "bench:cold",
            c,
        ]))?);
        series[2].1.push(timed(tb(&[
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            "bench:1",
            c,
        ]))?);
        series[3].1.push(timed(docker(&[
            "build",
            "-q",
            "--network",
            "none",
            "-t",
            "bench:1",
            c,
        ]))?);
    }
    let s: Vec<Stats> = series.iter().map(|(_, v)| Stats::of(v)).collect();
    let cold_ratio = s[0].median / s[1].median;
    let cached_ratio = s[2].median / s[3].median;
    if args.json {
        let rows: Vec<_> = series
            .iter()
            .zip(&s)
            .map(|((n, _), st)| json!({"series": n, "median_ms": st.median, "p10_ms": st.p10, "p90_ms": st.p90}))
            .collect();
        println!(
            "{}",
            json!({"runs": args.runs, "files": args.files, "rows": rows, "cold_ratio": cold_ratio, "cached_ratio": cached_ratio, "buildah": buildah})
        );
    } else {
        println!(
            "build-bench: {} runs, {} source files, round robin",
            args.runs, args.files
        );
        for ((name, _), st) in series.iter().zip(&s) {
            println!(
                "  {name:<16} median {:>8.1} ms   p10-p90 {:>8.1} - {:>8.1} ms",
                st.median, st.p10, st.p90
            );
        }
        println!("  cold:   twinbox/docker {cold_ratio:.2}x (target at or below 1.0x)");
        println!("  cached: twinbox/docker {cached_ratio:.2}x (target at or below 0.5x)");
        if !buildah {
            println!("  buildah: not installed here, not measured");
        }
    }
    drop(dockerd);
    Ok(())
}
