//! pull-bench: `twinbox pull` from a local registry against skopeo + umoci on the
//! same image, in one run.
//!
//! The image has three gzip layers of many files each (tens of MB, half noise and
//! half repetitive text, so gzip works as on real images). It is pushed once by
//! skopeo to a CNCF registry on loopback. Then, round-robin, each series pulls it
//! into an empty place and unpacks every layer:
//!
//! - `twinbox pull REF` into a fresh store (download, verify digests and diff
//!   ids, unpack to layers/, fsync, then name the image);
//! - `skopeo copy docker://REF oci:DIR:tag` then `umoci unpack --image DIR:tag BUNDLE`
//!   (the usual peer pair for "pull and unpack" without a daemon);
//! - `skopeo copy` then `tar -xzf` of each layer blob into one dir (the least a
//!   peer can do: no whiteout handling, no verification beyond skopeo's).
//!
//! Reported: median and p10–p90 of each, and twinbox's median over each peer's.
//! Target (printed, not asserted): ratio at or below 1.0.
//!
//! Run as root: `cargo build --release && cargo run --release -p twinbox-bench --bin pull-bench`.

#[path = "../../../tests/registry/harness.rs"]
mod harness;
#[path = "../../../tests/registry/layout.rs"]
mod layout;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use twinbox_bench::setup::DEFAULT_TWINBOX;

use layout::{Entry, Layout, OCI_MANIFEST};

const RATIO_TARGET: f64 = 1.0;

#[derive(Parser, Debug)]
#[command(
    name = "pull-bench",
    about = "twinbox pull against skopeo copy + umoci unpack (and + tar -x), same image, local registry"
)]
struct Args {
    /// Timed runs per series
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Untimed warm-up runs per series
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Megabytes of file data per layer (three layers)
    #[arg(long, default_value_t = 24)]
    layer_mb: usize,
    /// The twinbox binary (default: the workspace's target/release/twinbox)
    #[arg(long)]
    twinbox: Option<PathBuf>,
    /// Scratch directory (removed afterwards)
    #[arg(long, default_value = "/var/tmp")]
    tmp: PathBuf,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
    /// After the runs, keep the registry up with the image and wait for Enter
    /// (to profile a pull by hand)
    #[arg(long, hide = true)]
    hold: bool,
}

type Result<T, E = String> = std::result::Result<T, E>;

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("pull-bench: {e}");
        std::process::exit(1);
    }
}

fn say(args: &Args, line: &str) {
    if !args.json {
        eprintln!("{line}");
    }
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Times `f`, after a `sync` so that no series pays for flushing another's
/// dirty pages (twinbox syncs the layers it publishes; the peers do not).
fn timed(what: &str, f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    check(&mut Command::new("sync"), "sync")?;
    let start = Instant::now();
    f().map_err(|e| format!("{what}: {e}"))?;
    Ok(start.elapsed())
}

/// Three layers of `mb` MB each, in files of 256 KiB: half noise, half text.
fn build_image(dir: &Path, mb: usize) -> (u64, u64) {
    let layout = Layout::create(dir);
    let mut layers = Vec::new();
    let file_size = 256 * 1024;
    for l in 0..3u64 {
        let mut entries = vec![Entry::Dir(format!("data{l}"))];
        for f in 0..(mb * 4) as u64 {
            let mut data = layout::noise(file_size / 2, l * 100_000 + f);
            let text = format!("layer {l} file {f}: the same line again and again\n");
            while data.len() < file_size {
                data.extend_from_slice(text.as_bytes());
            }
            data.truncate(file_size);
            entries.push(Entry::File(format!("data{l}/f{f:05}"), data, 0o644));
        }
        layers.push(layout.layer(&entries));
    }
    let refs: Vec<&layout::Layer> = layers.iter().collect();
    let manifest = layout.image("amd64", &refs, &["true"]);
    layout.name(&[(&manifest, OCI_MANIFEST, "bench")]);
    let compressed = layers.iter().map(|l| l.blob.size).sum();
    (compressed, (3 * mb * 4 * file_size) as u64)
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
    }
}

fn run(args: &Args) -> Result<()> {
    if !nix_is_root() {
        return Err("needs root (twinbox's store and umoci unpack): run it with sudo".into());
    }
    for tool in ["docker-registry", "skopeo", "umoci", "tar"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            return Err(format!("{tool} not found: run scripts/install-deps.sh"));
        }
    }
    let twinbox = args
        .twinbox
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TWINBOX));
    if !twinbox.is_file() {
        return Err(format!(
            "{} not found: run `cargo build --release` first or pass --twinbox",
            twinbox.display()
        ));
    }
    let scratch = tempfile::Builder::new()
        .prefix("twinbox-pull-bench")
        .tempdir_in(&args.tmp)
        .map_err(|e| format!("scratch dir in {}: {e}", args.tmp.display()))?;
    let s = scratch.path();

    say(
        args,
        &format!(
            "building a 3-layer image, {} MB of files per layer",
            args.layer_mb
        ),
    );
    let (compressed, raw) = build_image(&s.join("layout"), args.layer_mb);
    let reg = harness::Registry::start();
    let name = format!("{}/bench/app:v1", reg.host());
    harness::skopeo_copy(
        &[],
        &format!("oci:{}:bench", s.join("layout").display()),
        &format!("docker://{name}"),
    );
    say(
        args,
        &format!(
            "image {name}: {:.1} MB compressed, {:.1} MB unpacked; {} warm-up + {} runs per series",
            compressed as f64 / 1e6,
            raw as f64 / 1e6,
            args.warmup,
            args.runs
        ),
    );

    let mut samples: [Vec<Duration>; 3] = Default::default();
    for n in 0..args.warmup + args.runs {
        let round = s.join(format!("round-{n}"));
        fs::create_dir_all(&round).map_err(|e| e.to_string())?;
        let store = round.join("store");
        let t_twinbox = timed("twinbox pull", || {
            check(
                Command::new(&twinbox)
                    .env("TWINBOX_ROOT", &store)
                    .args(["pull", "-q", &name]),
                "twinbox pull",
            )
        })?;
        let oci = round.join("oci");
        let bundle = round.join("bundle");
        let t_umoci = timed("skopeo + umoci", || {
            skopeo_pull(&name, &oci)?;
            check(
                Command::new("umoci")
                    .args(["unpack", "--image"])
                    .arg(format!("{}:bench", oci.display()))
                    .arg(&bundle),
                "umoci unpack",
            )
        })?;
        let oci2 = round.join("oci2");
        let rootfs = round.join("rootfs");
        let t_tar = timed("skopeo + tar", || {
            skopeo_pull(&name, &oci2)?;
            fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
            for blob in layer_blobs(&oci2)? {
                check(
                    Command::new("tar")
                        .arg("-xzf")
                        .arg(&blob)
                        .arg("-C")
                        .arg(&rootfs),
                    "tar -x",
                )?;
            }
            Ok(())
        })?;
        // verify the work was done: every series has the last file of the top layer
        let last = format!("data2/f{:05}", args.layer_mb * 4 - 1);
        if !bundle.join("rootfs").join(&last).is_file() || !rootfs.join(&last).is_file() {
            return Err(format!("a peer did not unpack {last}"));
        }
        let _ = fs::remove_dir_all(&round);
        if n >= args.warmup {
            for (v, t) in samples.iter_mut().zip([t_twinbox, t_umoci, t_tar]) {
                v.push(t);
            }
        }
        say(
            args,
            &format!(
                "  run {n}: twinbox {:.0} ms, skopeo+umoci {:.0} ms, skopeo+tar {:.0} ms",
                t_twinbox.as_secs_f64() * 1e3,
                t_umoci.as_secs_f64() * 1e3,
                t_tar.as_secs_f64() * 1e3
            ),
        );
    }
    if args.hold {
        eprintln!("registry up: {name}; press Enter to stop");
        let _ = std::io::stdin().read_line(&mut String::new());
    }
    let [tw, um, ta] = samples.map(|s| stats(&s));
    let versus_umoci = tw.median / um.median;
    let versus_tar = tw.median / ta.median;
    if args.json {
        let j = |s: Stats| json!({"median_ms": s.median, "p10_ms": s.p10, "p90_ms": s.p90});
        let report = json!({
            "image": {"layers": 3, "compressed_bytes": compressed, "unpacked_bytes": raw},
            "runs": args.runs,
            "twinbox_pull": j(tw),
            "skopeo_umoci": j(um),
            "skopeo_tar": j(ta),
            "ratio_vs_skopeo_umoci": versus_umoci,
            "ratio_vs_skopeo_tar": versus_tar,
            "ratio_target": RATIO_TARGET,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain json")
        );
        return Ok(());
    }
    println!(
        "pull + unpack of a 3-layer image ({:.1} MB compressed, {:.1} MB of files), {} runs",
        compressed as f64 / 1e6,
        raw as f64 / 1e6,
        args.runs
    );
    println!("{:<28} {:>10} {:>18}", "series", "median", "p10-p90");
    for (label, st) in [
        ("twinbox pull", tw),
        ("skopeo copy + umoci unpack", um),
        ("skopeo copy + tar -x", ta),
    ] {
        println!(
            "{label:<28} {:>7.0} ms {:>8.0}-{:.0} ms",
            st.median, st.p10, st.p90
        );
    }
    let verdict = |r: f64| if r <= RATIO_TARGET { "meets" } else { "misses" };
    println!(
        "ratio twinbox / (skopeo + umoci): {versus_umoci:.2}x ({} the {RATIO_TARGET:.1}x target)",
        verdict(versus_umoci)
    );
    println!(
        "ratio twinbox / (skopeo + tar -x): {versus_tar:.2}x ({} the {RATIO_TARGET:.1}x target)",
        verdict(versus_tar)
    );
    Ok(())
}

fn skopeo_pull(name: &str, dir: &Path) -> Result<()> {
    check(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--src-tls-verify=false"])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:bench", dir.display())),
        "skopeo copy",
    )
}

/// The layer blobs of the one image in an OCI layout, bottom first.
fn layer_blobs(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = |p: PathBuf| -> Result<serde_json::Value> {
        let data = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", p.display()))
    };
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(dir.join("index.json"))?;
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("index.json names no manifest")?;
    let manifest = read(blob(manifest))?;
    Ok(manifest["layers"]
        .as_array()
        .ok_or("manifest has no layers")?
        .iter()
        .filter_map(|l| l["digest"].as_str().map(blob))
        .collect())
}

fn nix_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0
}
