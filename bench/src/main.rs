//! twinbox-bench: twinbox against runc, measured side by side in one run.
//!
//! Ten series are timed, interleaved round-robin so that machine noise falls
//! on all of them alike, with a pause before each run so that each starts cold:
//!
//! - `twinbox run --rm busybox true`: the whole Docker-like path (image lookup,
//!   container record, overlayfs, cgroup, spec, namespaces, exec, wait, cleanup);
//! - `twinbox runtime run -b BUNDLE ID`: the OCI runtime alone;
//! - `runc run -b BUNDLE ID`: the peer, on the *same* bundle and config.json;
//! - both runtimes again on a copy of the config with `linux.cgroupsPath` set:
//!   without it both make a cgroup per container named after the id;
//! - `twinbox run --rm --network none busybox true` against its floor,
//!   `unshare -mpuin -f /bin/true` (the namespaces alone, no image, no cgroup);
//! - the same run with `--userns=auto` (a user namespace, idmapped layers);
//! - `ctr run --rm busybox true` under one private containerd (Debian's 1.6,
//!   the runc shim), with `--runc-binary` twinbox (as `twinbox-runc`) and
//!   runc: the path Kubernetes' CRI takes (skipped, saying why, without
//!   containerd).
//!
//! Each series gets its warm-up runs, then N timed runs; the report gives the
//! median, the p10–p90 spread and the ratio of the medians twinbox/runc. It also
//! reads the supervisor RSS of a detached container from `twinbox inspect`.
//! Targets are printed next to the figures, never asserted: machines are noisy.
//!
//! Run as root: `cargo build --release && cargo run --release -p twinbox-bench`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};
use twinbox_bench::containerd::Containerd;
use twinbox_bench::stats::{last_line, timed, Stats};

/// Where `cargo build --release` puts the twinbox binary.
const DEFAULT_TWINBOX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/twinbox");
/// Target from the issue: `twinbox runtime run` median at or below this share of runc's.
const RUNTIME_RATIO_TARGET: f64 = 0.35;
/// Target from the issue: `run --rm --network none busybox true` median under this.
const RUN_RM_TARGET_MS: f64 = 10.0;
/// Target from the issue: under containerd, twinbox no slower than runc.
const CONTAINERD_RATIO_TARGET: f64 = 1.0;
/// The name `ctr image import` gives the busybox archive.
const CTR_IMAGE: &str = "docker.io/library/busybox:latest";
/// Target from the design: a detached container's supervisor stays under 2 MiB.
const SUPERVISOR_RSS_TARGET_KIB: u64 = 2048;

#[derive(Parser, Debug)]
#[command(
    name = "twinbox-bench",
    about = "twinbox against runc, side by side: start-up time and supervisor memory"
)]
struct Args {
    /// Timed runs per series
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Untimed warm-up runs per series
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// The twinbox binary (default: the workspace's target/release/twinbox)
    #[arg(long)]
    twinbox: Option<PathBuf>,
    /// The runc binary (default: runc on PATH)
    #[arg(long)]
    runc: Option<PathBuf>,
    /// Scratch directory for the store, bundle and state (removed afterwards)
    #[arg(long, default_value = "/var/tmp")]
    tmp: PathBuf,
    /// Pause before each run, so each starts cold as a user's command does (a
    /// cgroup migration right after another skips an RCU grace period)
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
}

type Result<T, E = String> = std::result::Result<T, E>;

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("twinbox-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        return Err("needs root (namespaces, mounts and cgroups): run it with sudo".into());
    }
    let twinbox = find_twinbox(args.twinbox.as_deref())?;
    let runc = find_runc(args.runc.as_deref())?;
    let runc_version = version_of(&runc, "--version");

    let scratch = Scratch::new(&args.tmp)?;
    let lab = Lab::prepare(&twinbox, &runc, &scratch.dir)?;

    let total = args.warmup + args.runs;
    progress(
        args,
        &format!(
            "timing {} series, {} warm-up + {} runs each, interleaved, {} ms apart",
            Series::ALL.len(),
            args.warmup,
            args.runs,
            args.pause_ms
        ),
    );
    let pause = Duration::from_millis(args.pause_ms);
    let mut samples: [Vec<Duration>; SERIES] = Default::default();
    for n in 0..total {
        let times = lab.round(n, pause)?;
        if n >= args.warmup {
            for (s, t) in samples.iter_mut().zip(times) {
                s.push(t);
            }
        }
    }
    let stats = samples.map(|s| Stats::of(&s));

    progress(args, "measuring the supervisor RSS of a detached container");
    let supervisor = lab.supervisor_rss()?;

    let containerd = lab.containerd.as_ref().err().cloned();
    let report = Report::new(
        args,
        &twinbox,
        &runc,
        runc_version,
        stats,
        supervisor,
        containerd,
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).expect("json of plain values")
        );
    } else {
        report.print_table();
    }
    Ok(())
}

fn progress(args: &Args, what: &str) {
    if !args.json {
        eprintln!("twinbox-bench: {what}");
    }
}

fn find_twinbox(given: Option<&Path>) -> Result<PathBuf> {
    let path = given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TWINBOX));
    if !path.is_file() {
        return Err(match given {
            Some(_) => format!("twinbox binary {} not found", path.display()),
            None => format!(
                "twinbox binary {} not found: run `cargo build --release` first (or pass --twinbox PATH)",
                path.display()
            ),
        });
    }
    path.canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn find_runc(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("runc binary {} not found", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
        .ok_or_else(|| "runc not found: apt-get install runc".to_string())
}

/// First line's last word of `BIN --version`, e.g. "1.1.5+ds1".
fn version_of(bin: &Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().last())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A scratch directory removed on drop, whatever happened.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(parent: &Path) -> Result<Self> {
        let dir = parent.join(format!("twinbox-bench-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
        }
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Scratch { dir })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("twinbox-bench: cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// The prepared store, bundle and state directories, and the commands to time.
struct Lab {
    twinbox: PathBuf,
    runc: PathBuf,
    store: PathBuf,
    bundle: PathBuf,
    /// Same config.json plus `linux.cgroupsPath`, rootfs shared with `bundle`.
    bundle_cg: PathBuf,
    runc_state: PathBuf,
    twinbox_state: PathBuf,
    /// A private containerd, or why there is none.
    containerd: std::result::Result<Containerd, String>,
    /// The twinbox binary under the name containerd's shim calls (argv[0]).
    twinbox_runc: PathBuf,
}

impl Lab {
    fn prepare(twinbox: &Path, runc: &Path, scratch: &Path) -> Result<Self> {
        let lab = Lab {
            twinbox: twinbox.to_path_buf(),
            runc: runc.to_path_buf(),
            store: scratch.join("store"),
            bundle: scratch.join("bundle"),
            bundle_cg: scratch.join("bundle-cgroup"),
            runc_state: scratch.join("runc-state"),
            twinbox_state: scratch.join("twinbox-state"),
            containerd: Err("not started".into()),
            twinbox_runc: scratch.join("twinbox-runc"),
        };
        for d in [
            &lab.store,
            &lab.bundle,
            &lab.bundle_cg,
            &lab.runc_state,
            &lab.twinbox_state,
        ] {
            fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        check(
            lab.twinbox_cmd().args(["image", "bootstrap", "busybox"]),
            "twinbox image bootstrap busybox",
        )?;

        // The bundle's rootfs: a copy of busybox's one unpacked layer.
        let layers = lab.store.join("layers");
        let mut found: Vec<PathBuf> = fs::read_dir(&layers)
            .map_err(|e| format!("{}: {e}", layers.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        if found.len() != 1 {
            return Err(format!(
                "expected one layer in {}, found {}",
                layers.display(),
                found.len()
            ));
        }
        let layer = found.remove(0);
        let rootfs = lab.bundle.join("rootfs");
        check(
            Command::new("cp").arg("-a").arg(&layer).arg(&rootfs),
            "cp -a LAYER rootfs",
        )?;

        // config.json from `runc spec`, made non-interactive and running `true`.
        check(
            Command::new(&lab.runc).arg("spec").current_dir(&lab.bundle),
            "runc spec",
        )?;
        let config = lab.bundle.join("config.json");
        let text = fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        let mut spec: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["true"]);
        write_json(&config, &spec)?;

        // The same spec with a cgroups path, for a second bundle that shares the
        // rootfs: without one runc still makes a cgroup (named after the id, in
        // every hierarchy) while `twinbox runtime` makes none.
        spec["root"]["path"] = json!(rootfs.display().to_string());
        spec["linux"]["cgroupsPath"] = json!(format!("/twinbox-bench-{}", std::process::id()));
        write_json(&lab.bundle_cg.join("config.json"), &spec)?;

        // containerd with busybox imported; twinbox linked as twinbox-runc
        let mut lab = lab;
        lab.containerd = Containerd::start(&scratch.join("containerd"))?;
        if let Ok(ctd) = &lab.containerd {
            let archive = scratch.join("busybox.tar");
            check(
                lab.twinbox_cmd()
                    .args(["save", "-o"])
                    .arg(&archive)
                    .arg("busybox"),
                "twinbox save busybox",
            )?;
            ctd.import(&archive)?;
            fs::hard_link(&lab.twinbox, &lab.twinbox_runc)
                .or_else(|_| fs::copy(&lab.twinbox, &lab.twinbox_runc).map(drop))
                .map_err(|e| format!("{}: {e}", lab.twinbox_runc.display()))?;
        }
        Ok(lab)
    }

    /// `ctr run --rm busybox true` with `runtime` as the shim's runc.
    fn ctr_run(&self, runtime: &Path, state: &str, id: &str) -> Result<Duration> {
        match &self.containerd {
            Ok(ctd) => ctd.time_run(
                runtime,
                &self.store.with_file_name(state),
                CTR_IMAGE,
                id,
                &["true"],
            ),
            Err(_) => Ok(Duration::ZERO),
        }
    }

    fn twinbox_cmd(&self) -> Command {
        let mut c = Command::new(&self.twinbox);
        c.env("TWINBOX_ROOT", &self.store).env_remove("TWINBOX_LOG");
        c
    }

    fn twinbox_run_rm(&self) -> Result<Duration> {
        timed(
            self.twinbox_cmd().args(["run", "--rm", "busybox", "true"]),
            "twinbox run --rm busybox true",
        )
    }

    fn twinbox_run_rm_none(&self, extra: &[&str]) -> Result<Duration> {
        timed(
            self.twinbox_cmd()
                .args(["run", "--rm", "--network", "none"])
                .args(extra)
                .args(["busybox", "true"]),
            "twinbox run --rm --network none busybox true",
        )
    }

    fn twinbox_runtime_run(&self, bundle: &Path, id: &str) -> Result<Duration> {
        let mut c = self.twinbox_cmd();
        c.args(["runtime", "--root"])
            .arg(&self.twinbox_state)
            .args(["run", "-b"])
            .arg(bundle)
            .arg(id);
        timed(&mut c, "twinbox runtime run -b BUNDLE ID")
    }

    fn runc_run(&self, bundle: &Path, id: &str) -> Result<Duration> {
        let mut c = Command::new(&self.runc);
        c.arg("--root")
            .arg(&self.runc_state)
            .args(["run", "-b"])
            .arg(bundle)
            .arg(id);
        timed(&mut c, "runc run -b BUNDLE ID")
    }

    /// One timed run of every series, in `Series::ALL` order, with a pause
    /// before each so that every run starts cold, as a user's command does.
    fn round(&self, n: u32, pause: Duration) -> Result<[Duration; SERIES]> {
        let mut out = [Duration::ZERO; SERIES];
        for (slot, series) in out.iter_mut().zip(Series::ALL) {
            std::thread::sleep(pause);
            let id = format!("bench-{n}");
            *slot = match series {
                Series::RunRm => self.twinbox_run_rm()?,
                Series::Runtime => self.twinbox_runtime_run(&self.bundle, &id)?,
                Series::Runc => self.runc_run(&self.bundle, &id)?,
                Series::RuntimeCgroup => self.twinbox_runtime_run(&self.bundle_cg, &id)?,
                Series::RuncCgroup => self.runc_run(&self.bundle_cg, &id)?,
                Series::RunRmNone => self.twinbox_run_rm_none(&[])?,
                Series::RunRmUserns => self.twinbox_run_rm_none(&["--userns=auto"])?,
                Series::CtrTwinbox => self.ctr_run(&self.twinbox_runc, "ctr-twinbox-state", &id)?,
                Series::CtrRunc => self.ctr_run(&self.runc, "ctr-runc-state", &id)?,
                Series::Floor => timed(
                    Command::new("unshare").args(["-mpuin", "-f", "/bin/true"]),
                    "unshare -mpuin -f /bin/true",
                )?,
            };
        }
        Ok(out)
    }

    /// `run -d ... sleep 30`, then `inspect` → `[0].Twinbox.SupervisorRssBytes`, then `rm -f`.
    fn supervisor_rss(&self) -> Result<SupervisorMemory> {
        let name = format!("bench-rss-{}", std::process::id());
        check(
            self.twinbox_cmd()
                .args(["run", "-d", "--name", &name, "busybox", "sleep", "30"]),
            "twinbox run -d busybox sleep 30",
        )?;
        let result = (|| -> Result<SupervisorMemory> {
            // let the supervisor settle into its relay loop (log open, buffers allocated)
            std::thread::sleep(Duration::from_millis(300));
            let out = check(
                self.twinbox_cmd().args(["inspect", &name]),
                "twinbox inspect",
            )?;
            let v: Value = serde_json::from_slice(&out)
                .map_err(|e| format!("twinbox inspect printed bad json: {e}"))?;
            let tb = &v[0]["Twinbox"];
            Ok(SupervisorMemory {
                rss_bytes: tb["SupervisorRssBytes"].as_u64().ok_or_else(|| {
                    "twinbox inspect gave no Twinbox.SupervisorRssBytes".to_string()
                })?,
                // newer twinbox builds add these; older ones print only the RSS
                pss_bytes: tb["SupervisorPssBytes"].as_u64(),
                private_bytes: tb["SupervisorPrivateBytes"].as_u64(),
            })
        })();
        let removed = check(
            self.twinbox_cmd().args(["rm", "-f", &name]),
            "twinbox rm -f",
        );
        let memory = result?;
        removed?;
        Ok(memory)
    }
}

/// Runs a command to success and returns its stdout; the error carries its stderr.
fn check(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            last_line(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

const SERIES: usize = 10;

/// The timed series, in the order each round runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    RunRm,
    Runtime,
    Runc,
    RuntimeCgroup,
    RuncCgroup,
    RunRmNone,
    RunRmUserns,
    CtrTwinbox,
    CtrRunc,
    Floor,
}

impl Series {
    const ALL: [Series; SERIES] = [
        Series::RunRm,
        Series::Runtime,
        Series::Runc,
        Series::RuntimeCgroup,
        Series::RuncCgroup,
        Series::RunRmNone,
        Series::RunRmUserns,
        Series::CtrTwinbox,
        Series::CtrRunc,
        Series::Floor,
    ];
}

/// What a comparison is held against; printed, never asserted.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// twinbox's median below this many milliseconds
    MedianBelowMs(f64),
    /// the ratio of the medians twinbox/runc at or below this
    RatioAtMost(f64),
    /// a cost shown, with no goal
    None,
}

/// One row: a twinbox series against a runc series.
struct Comparison {
    name: &'static str,
    label: &'static str,
    twinbox_command: &'static str,
    runc_command: &'static str,
    twinbox: Stats,
    runc: Stats,
    target: Target,
}

impl Comparison {
    fn ratio(&self) -> f64 {
        self.twinbox.median / self.runc.median
    }
    /// Whether the goal is met; `None` for a row without one.
    fn met(&self) -> Option<bool> {
        match self.target {
            Target::MedianBelowMs(ms) => Some(self.twinbox.median < ms),
            Target::RatioAtMost(r) => Some(self.ratio() <= r),
            Target::None => None,
        }
    }
    fn target_text(&self) -> String {
        match self.target {
            Target::MedianBelowMs(ms) => format!("twinbox < {ms:.0} ms"),
            Target::RatioAtMost(r) => format!("ratio <= {r:.2}x"),
            Target::None => "-".into(),
        }
    }
}

/// What `twinbox inspect` says about a detached container's supervisor.
#[derive(Debug, Clone, Copy)]
struct SupervisorMemory {
    rss_bytes: u64,
    pss_bytes: Option<u64>,
    private_bytes: Option<u64>,
}

struct Report {
    runs: u32,
    warmup: u32,
    pause_ms: u64,
    twinbox: String,
    runc: String,
    runc_version: String,
    comparisons: Vec<Comparison>,
    supervisor: SupervisorMemory,
    /// Why the containerd rows are missing, if they are.
    containerd_skipped: Option<String>,
}

impl Report {
    fn new(
        args: &Args,
        twinbox: &Path,
        runc: &Path,
        runc_version: String,
        stats: [Stats; SERIES],
        supervisor: SupervisorMemory,
        containerd_skipped: Option<String>,
    ) -> Self {
        let [run_rm, runtime, runc_plain, runtime_cg, runc_cg, run_none, run_userns, ctr_twinbox, ctr_runc, floor] =
            stats;
        let mut comparisons = vec![
            Comparison {
                name: "run_rm_network_none",
                label: "run --rm --network none  vs  unshare floor",
                twinbox_command: "twinbox run --rm --network none busybox true",
                runc_command: "unshare -mpuin -f /bin/true",
                twinbox: run_none,
                runc: floor,
                target: Target::MedianBelowMs(RUN_RM_TARGET_MS),
            },
            Comparison {
                name: "run_rm_userns_auto",
                label: "the same with --userns=auto  vs  without",
                twinbox_command: "twinbox run --rm --network none --userns=auto busybox true",
                runc_command: "twinbox run --rm --network none busybox true",
                twinbox: run_userns,
                runc: run_none,
                target: Target::None,
            },
            Comparison {
                name: "run_rm",
                label: "run --rm (bridge network)  vs  runc run",
                twinbox_command: "twinbox run --rm busybox true",
                runc_command: "runc run -b BUNDLE ID",
                twinbox: run_rm,
                runc: runc_plain,
                target: Target::None,
            },
            Comparison {
                name: "runtime_run",
                label: "runtime run -b BUNDLE  vs  runc run",
                twinbox_command: "twinbox runtime run -b BUNDLE ID",
                runc_command: "runc run -b BUNDLE ID",
                twinbox: runtime,
                runc: runc_plain,
                target: Target::RatioAtMost(RUNTIME_RATIO_TARGET),
            },
            Comparison {
                name: "runtime_run_cgroups_path",
                label: "the same, both with linux.cgroupsPath",
                twinbox_command: "twinbox runtime run -b BUNDLE_WITH_CGROUPS_PATH ID",
                runc_command: "runc run -b BUNDLE_WITH_CGROUPS_PATH ID",
                twinbox: runtime_cg,
                runc: runc_cg,
                target: Target::RatioAtMost(RUNTIME_RATIO_TARGET),
            },
        ];
        if containerd_skipped.is_none() {
            comparisons.push(Comparison {
                name: "containerd_ctr_run_rm",
                label: "ctr run --rm (containerd, runc shim): twinbox  vs  runc",
                twinbox_command: "ctr run --runc-binary twinbox-runc --rm busybox ID true",
                runc_command: "ctr run --runc-binary runc --rm busybox ID true",
                twinbox: ctr_twinbox,
                runc: ctr_runc,
                target: Target::RatioAtMost(CONTAINERD_RATIO_TARGET),
            });
        }
        Report {
            runs: args.runs,
            warmup: args.warmup,
            pause_ms: args.pause_ms,
            twinbox: twinbox.display().to_string(),
            runc: runc.display().to_string(),
            runc_version,
            comparisons,
            supervisor,
            containerd_skipped,
        }
    }

    fn rss_kib(&self) -> u64 {
        self.supervisor.rss_bytes / 1024
    }
    fn rss_met(&self) -> bool {
        self.rss_kib() < SUPERVISOR_RSS_TARGET_KIB
    }

    fn print_table(&self) {
        let spread = |s: &Stats| format!("{:.2}–{:.2}", s.p10, s.p90);
        let verdict = |met: bool| if met { "met" } else { "missed" };
        println!(
            "twinbox against runc {}: {} runs each after {} warm-up runs, {} ms apart; times in ms",
            self.runc_version, self.runs, self.warmup, self.pause_ms
        );
        println!();
        let header = [
            "comparison",
            "twinbox",
            "p10–p90",
            "peer",
            "p10–p90",
            "ratio",
            "target",
        ];
        let rows: Vec<[String; 7]> = self
            .comparisons
            .iter()
            .map(|c| {
                [
                    c.label.to_string(),
                    format!("{:.2}", c.twinbox.median),
                    spread(&c.twinbox),
                    format!("{:.2}", c.runc.median),
                    spread(&c.runc),
                    format!("{:.2}x", c.ratio()),
                    match c.met() {
                        Some(met) => format!("{}: {}", c.target_text(), verdict(met)),
                        None => "-".into(),
                    },
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            println!("{}", padded.join("  ").trim_end());
        };
        line(&header);
        for r in &rows {
            line(&r.iter().map(String::as_str).collect::<Vec<_>>());
        }
        if let Some(why) = &self.containerd_skipped {
            println!("no containerd rows: {why}");
        }
        println!();
        let kib = |b: Option<u64>| b.map_or("?".to_string(), |b| (b / 1024).to_string());
        println!(
            "supervisor RSS of a detached container (run -d ... sleep 30): {} KiB  (target < {} KiB: {})",
            self.rss_kib(),
            SUPERVISOR_RSS_TARGET_KIB,
            verdict(self.rss_met())
        );
        println!(
            "  PSS {} KiB, private {} KiB (RSS counts shared library and page-cache pages in full)",
            kib(self.supervisor.pss_bytes),
            kib(self.supervisor.private_bytes)
        );
        println!();
        println!(
            "both runtimes get the same config.json (runc spec; args [\"true\"], terminal false)."
        );
        println!("without linux.cgroupsPath both runtimes make a cgroup per container (named after the id);");
        println!("run --rm does more (image, record, overlayfs, cgroup, cleanup) than runc run on a ready bundle.");
    }

    fn to_json(&self) -> Value {
        let comparisons: Vec<Value> = self
            .comparisons
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "twinbox_command": c.twinbox_command,
                    "runc_command": c.runc_command,
                    "twinbox": c.twinbox.to_json(),
                    "runc": c.runc.to_json(),
                    "ratio": round3(c.ratio()),
                    "target": c.target_text(),
                    "target_met": c.met(),
                })
            })
            .collect();
        json!({
            "runs": self.runs,
            "warmup": self.warmup,
            "pause_ms": self.pause_ms,
            "twinbox": self.twinbox,
            "runc": self.runc,
            "runc_version": self.runc_version,
            "comparisons": comparisons,
            "containerd_skipped": self.containerd_skipped,
            "supervisor_rss": {
                "bytes": self.supervisor.rss_bytes,
                "kib": self.rss_kib(),
                "pss_bytes": self.supervisor.pss_bytes,
                "private_bytes": self.supervisor.private_bytes,
                "target_kib": SUPERVISOR_RSS_TARGET_KIB,
                "target_met": self.rss_met(),
            },
        })
    }
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("json of a parsed value");
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
