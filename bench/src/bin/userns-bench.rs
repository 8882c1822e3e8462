//! userns-bench: what `run --userns=auto` costs, with the image's layers shown
//! through idmapped mounts and with the fallback's chowned copies, against the
//! same run without a user namespace, in one run.
//!
//! Per image (busybox, plus any `--load`ed archive named with `--image`),
//! round-robin with a pause before each run:
//!
//! - `run --rm --network none IMAGE true`: the peer, no user namespace;
//! - `--userns=auto`, idmapped, first run: the store has forgotten its probe
//!   (`cache/userns-layers.json`), so the run probes the kernel again;
//! - `--userns=auto`, idmapped, cached: the probe's answer remembered;
//! - `--userns=auto` with `TWINBOX_USERNS_FORCE_CHOWN=1`, first run: the
//!   layers' chowned copies removed before it (`layers-shifted/`), so it
//!   copies every layer of the image;
//! - the same, cached: the copies of the previous run reused (each `--rm`
//!   run takes the first free id range, the same one each time).
//!
//! Reported: median and p10–p90 of each, and its ratio to the peer; the size
//! of the chowned copies. No goal: the issue asks for the cost, measured.
//!
//! Run as root: `cargo build --release && cargo run --release -p twinbox-bench --bin userns-bench
//! -- --load debian.tar --image debian:bookworm`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use twinbox_bench::stats::{timed, Stats};
use twinbox_bench::table::Table;

#[derive(Parser, Debug)]
#[command(
    name = "userns-bench",
    about = "run --userns=auto with idmapped layers and with chowned copies, against no user namespace"
)]
struct Args {
    /// Timed runs per series
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Untimed warm-up runs per series
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// An image archive (`twinbox save`) to load into the bench's store
    #[arg(long)]
    load: Vec<PathBuf>,
    /// An image to measure besides busybox (one a --load archive holds)
    #[arg(long)]
    image: Vec<String>,
    /// The twinbox binary (default: the workspace's target/release/twinbox)
    #[arg(long)]
    twinbox: Option<PathBuf>,
    /// Where the scratch store goes (removed afterwards)
    #[arg(long, default_value = "/var/tmp")]
    tmp: PathBuf,
    /// Pause before each run
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
}

const SERIES: [&str; 5] = [
    "no user namespace",
    "idmapped, first",
    "idmapped, cached",
    "chowned, first",
    "chowned, cached",
];

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("userns-bench: {e}");
        std::process::exit(1);
    }
}

struct Lab {
    twinbox: PathBuf,
    store: PathBuf,
}

impl Lab {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.twinbox);
        c.env("TWINBOX_ROOT", &self.store)
            .env_remove("TWINBOX_LOG")
            .env_remove("TWINBOX_USERNS_FORCE_CHOWN");
        c
    }

    fn run(&self, image: &str, series: usize) -> Result<Duration, String> {
        let mut c = self.cmd();
        c.args(["run", "--rm", "--network", "none"]);
        if series > 0 {
            c.arg("--userns=auto");
        }
        if series >= 3 {
            c.env("TWINBOX_USERNS_FORCE_CHOWN", "1");
        }
        c.args([image, "true"]);
        timed(
            &mut c,
            &format!("twinbox run --rm ({}) {image} true", SERIES[series]),
        )
    }

    /// Makes the next run of `series` a first one.
    fn forget(&self, series: usize) -> Result<(), String> {
        let (path, dir) = match series {
            1 => (self.store.join("cache/userns-layers.json"), false),
            3 => (self.store.join("layers-shifted"), true),
            _ => return Ok(()),
        };
        let r = if dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("cannot remove {}: {e}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Bytes under `layers-shifted/` (the chowned copies of every image so far).
    fn shifted_bytes(&self) -> u64 {
        fn size(p: &Path) -> u64 {
            let Ok(md) = fs::symlink_metadata(p) else {
                return 0;
            };
            if md.is_dir() {
                fs::read_dir(p)
                    .map(|rd| rd.flatten().map(|e| size(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                md.len()
            }
        }
        size(&self.store.join("layers-shifted"))
    }
}

fn check(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            twinbox_bench::stats::last_line(&out.stderr)
        ));
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let (twinbox, scratch) = twinbox_bench::setup::prepare(
        "user namespaces, mounts and chown need root",
        args.twinbox.as_deref(),
        &args.tmp,
        "userns-bench-",
    )?;
    let lab = Lab {
        twinbox,
        store: scratch.path().join("store"),
    };
    check(
        lab.cmd().args(["image", "bootstrap", "busybox"]),
        "twinbox image bootstrap busybox",
    )?;
    for archive in &args.load {
        check(
            lab.cmd().arg("load").arg("-i").arg(archive),
            &format!("twinbox load -i {}", archive.display()),
        )?;
    }
    let mut images = vec!["busybox".to_string()];
    images.extend(args.image.iter().cloned());
    let pause = Duration::from_millis(args.pause_ms);

    let mut results = Vec::new();
    for image in &images {
        let mut samples: [Vec<Duration>; 5] = Default::default();
        lab.forget(3)?;
        let before = lab.shifted_bytes();
        for n in 0..args.warmup + args.runs {
            for (s, slot) in samples.iter_mut().enumerate() {
                lab.forget(s)?;
                std::thread::sleep(pause);
                let t = lab.run(image, s)?;
                if n >= args.warmup {
                    slot.push(t);
                }
            }
        }
        // the chowned series made copies, the idmapped ones none
        let copies = lab.shifted_bytes() - before;
        if copies == 0 {
            return Err(format!(
                "the chowned runs of {image} left no copies in layers-shifted/"
            ));
        }
        let stats = samples.map(|s| Stats::of(&s));
        results.push((image.clone(), stats, copies));
    }

    if args.json {
        let out: Vec<_> = results
            .iter()
            .map(|(image, stats, copies)| {
                json!({
                    "image": image,
                    "series": SERIES.iter().zip(stats).map(|(name, s)| json!({
                        "name": name,
                        "stats": s.to_json(),
                        "ratio_to_no_userns": (s.median / stats[0].median * 1000.0).round() / 1000.0,
                    })).collect::<Vec<_>>(),
                    "chowned_copy_bytes": copies,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "runs": args.runs, "warmup": args.warmup, "results": out })
            )
            .expect("json of plain values")
        );
        return Ok(());
    }
    println!(
        "run --rm --network none IMAGE true: {} runs per series after {} warm-up, {} ms apart; times in ms",
        args.runs, args.warmup, args.pause_ms
    );
    let mut t = Table::new(&["image", "series", "median", "p10–p90", "vs no userns"]);
    for (image, stats, copies) in &results {
        for (name, s) in SERIES.iter().zip(stats) {
            t.row(vec![
                image.clone(),
                name.to_string(),
                format!("{:.1}", s.median),
                format!("{:.1}–{:.1}", s.p10, s.p90),
                s.ratio_to(&stats[0]),
            ]);
        }
        t.row(vec![
            image.clone(),
            "chowned copies".into(),
            format!("{:.1} MB", *copies as f64 / 1e6),
            String::new(),
            String::new(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}
