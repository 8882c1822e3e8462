//! vm-io: twinbox's VMM against `qemu-system-x86_64 -M microvm -accel kvm`
//! on disk and network I/O, in one run of the nested environment (a real KVM
//! inside QEMU's emulation; see DESIGN.md), with the same kernel, the same
//! image disk, the same tap setup and the same guest init: both go through
//! `twinbox vm run`, once with `--backend twinbox` and once with `--backend
//! qemu` (which picks `-M microvm -accel kvm` where KVM boots stock kernels).
//!
//! - boot to workload with a disk root: `vm run --rootfs disk --timings
//!   busybox true`, the "VMM start to workload" line (the VMM's own start, or
//!   QEMU's spawn, to the init's exec of the workload);
//! - disk reads of a `--disk-mib` data disk attached read-only, after the
//!   guest dropped its caches, timed by the guest's clock: sequential
//!   (`dd if=/dev/vdb of=/dev/null bs=1M`) and `--small-reads` 4 KiB reads
//!   with O_DIRECT (one request each: per-request cost);
//! - twinbox's virtio-blk served on its I/O thread (the default) and on the
//!   vCPU thread (`TWINBOX_BLK_IO=vcpu`), the same two disk measures;
//! - TCP host→guest: `--tcp-mib` MiB sent from the nested host to `nc -l` in
//!   the guest, through the bridge, the VM's namespace and the tap; the clock
//!   runs from the connection to the guest's close after the last byte;
//! - the image disk's build time (the first `--rootfs disk` run of the image)
//!   and its file system (EROFS where mkfs.erofs runs, else ext4).
//!
//! Timings inside the nested machine are emulated: only the ratios between
//! the two VMMs mean something. Goal (issue 13): each at least as good as
//! QEMU's. Run as root, alone in the nested environment:
//!
//! ```sh
//! cargo build --release -p twinbox --bin twinbox
//! cargo build --release -p twinbox-bench --bin vm-io
//! ./target/release/vm-io [--runs N] [--disk-mib N] [--small-reads N] [--tcp-mib N] [--json]
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use twinbox_bench::table::Table;

#[derive(Parser, Debug)]
#[command(
    name = "vm-io",
    about = "twinbox's VMM against QEMU -M microvm on boot, disk and TCP, in the nested environment"
)]
struct Args {
    /// Runs per backend and measurement (they alternate between the two)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Size of the disk read sequentially
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    disk_mib: u32,
    /// 4 KiB O_DIRECT reads (one request each) after the sequential read
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..))]
    small_reads: u32,
    /// Bytes sent host→guest over TCP
    #[arg(long, default_value_t = 128)]
    tcp_mib: u32,
    /// The twinbox binary (default: the workspace's target/release/twinbox)
    #[arg(long)]
    twinbox: Option<PathBuf>,
    /// Print JSON instead of the table
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    inner: Option<Inner>,
}

#[derive(Subcommand, Debug)]
enum Inner {
    /// (inside the nested machine) Send MIB MiB to ADDR:PORT and print the seconds
    #[command(hide = true)]
    Send { addr: SocketAddr, mib: u32 },
}

const BACKENDS: [&str; 2] = ["twinbox", "qemu"];
/// twinbox's VMM with virtio-blk served on the vCPU thread.
const VCPU_SERIES: &str = "twinbox-vcpu";

fn main() {
    let args = Args::parse();
    let result = match &args.inner {
        Some(Inner::Send { addr, mib }) => send(*addr, *mib).map(|secs| println!("{secs:.6}")),
        None => bench(&args),
    };
    if let Err(e) = result {
        eprintln!("vm-io: {e}");
        std::process::exit(1);
    }
}

/// Connects (retrying while the guest's listener is not up yet, for up to
/// 5 minutes), sends `mib` MiB, half-closes, and waits for the guest to close
/// after reading everything. Seconds from the connection to that close.
fn send(addr: SocketAddr, mib: u32) -> Result<f64, String> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut stream = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("connecting to {addr}: {e}")),
        }
    };
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    for _ in 0..mib {
        stream
            .write_all(&chunk)
            .map_err(|e| format!("sending to {addr}: {e}"))?;
    }
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("closing the sending side: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|e| format!("waiting for the guest to close: {e}"))?;
    Ok(start.elapsed().as_secs_f64())
}

/// The script the nested machine runs: `@@vmio@@ WHAT BACKEND VALUE...` lines.
fn script(args: &Args) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
# vm-io, inside the nested machine (generated by bench/src/bin/vm-io.rs)
cni-enable
data=/tmp/vmio-data.img
dd if=/dev/zero of=$data bs=1M count=__DISK_MIB__ 2>/dev/null || echo "@@vmio@@ failed - making the data disk $data"
out=$(twinbox vm run --rm --rootfs disk --network none --timings busybox true 2>&1)
echo "@@vmio@@ disk-build - $(echo "$out" | sed -n 's/.*built in \([0-9.]*\) ms.*/\1/p') $(echo "$out" | sed -n 's/^image disk *\([^ ]*\) \([a-z0-9]*\) .*/\1 \2/p')"
# twinbox's VMM memory beyond guest RAM (the memory lesson's method), with the
# setup pages released (the default) and kept
for keep in released kept; do
    [ $keep = kept ] && export TWINBOX_VMM_KEEP_SETUP=1
    twinbox vm run --name mem-$keep --rootfs disk --network none busybox sleep 1 >/dev/null 2>&1
    unset TWINBOX_VMM_KEEP_SETUP
    echo "@@vmio@@ memory $keep $(twinbox vm inspect mem-$keep 2>/dev/null | sed -n 's/.*"vmm_overhead": *\([0-9]*\).*/\1/p' | head -n 1)"
    twinbox vm rm mem-$keep >/dev/null 2>&1
done
# The disk measures, in the guest: caches dropped, then the sequential read
# and the small direct reads, each timed by the guest's clock.
disk_job='sync; echo 3 >/proc/sys/vm/drop_caches
a=$(cut -d" " -f1 /proc/uptime)
dd if=/dev/vdb of=/dev/null bs=1M 2>/tmp/dd || { echo "ddfail $(tr "\n" " " </tmp/dd)"; exit 1; }
b=$(cut -d" " -f1 /proc/uptime)
dd if=/dev/vdb of=/dev/null bs=4k count=__SMALL_READS__ iflag=direct 2>/tmp/dd || { echo "ddfail $(tr "\n" " " </tmp/dd)"; exit 1; }
c=$(cut -d" " -f1 /proc/uptime)
echo "secs $a $b $c"'
disk() { # SERIES [ENV=VALUE]
    out=$(env $2 twinbox vm run --backend ${1%-vcpu} --rm --rootfs disk --network none --disk $data:ro busybox sh -c "$disk_job" 2>&1)
    echo "@@vmio@@ disk $1 $(echo "$out" | sed -n 's/^secs //p')"
    echo "$out" | grep -q '^secs ' || echo "@@vmio@@ failed $1 disk: $(echo "$out" | tail -n 5 | tr '\n' '|')"
}
i=0
while [ $i -lt __RUNS__ ]; do
    i=$((i + 1))
    disk twinbox-vcpu TWINBOX_BLK_IO=vcpu
    for b in twinbox qemu; do
        out=$(twinbox vm run --backend $b --rm --rootfs disk --network none --timings busybox true 2>&1)
        echo "@@vmio@@ boot $b $(echo "$out" | sed -n 's/^VMM start to workload *\([0-9.]*\) ms/\1/p')"
        [ -z "$(echo "$out" | sed -n 's/^VMM start to workload *\([0-9.]*\) ms/\1/p')" ] &&
            echo "@@vmio@@ failed $b $(echo "$out" | tail -n 5 | tr '\n' '|')"
        disk $b
        twinbox vm run -d --backend $b --name tcp-$b --rootfs disk busybox sh -c 'nc -l -p 5001 >/dev/null' >/dev/null
        addr=$(twinbox vm inspect tcp-$b 2>/dev/null | sed -n 's/.*"address": *"\([0-9.]*\)".*/\1/p' | head -n 1)
        [ $i = 1 ] && [ $b = qemu ] && echo "@@vmio@@ qemu-cmd - $(ps -o args | grep '^[^ ]*qemu-system' | cut -c1-90 | head -n 1)"
        echo "@@vmio@@ tcp $b $(timeout 400 vm-io send $addr:5001 __TCP_MIB__ 2>&1 | tr '\n' ' ')"
        twinbox vm rm -f tcp-$b >/dev/null 2>&1
    done
done
"#,
    );
    for (key, value) in [
        ("__RUNS__", args.runs),
        ("__DISK_MIB__", args.disk_mib),
        ("__SMALL_READS__", args.small_reads),
        ("__TCP_MIB__", args.tcp_mib),
    ] {
        s = s.replace(key, &value.to_string());
    }
    s
}

fn bench(args: &Args) -> Result<(), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace")?
        .to_path_buf();
    let twinbox = args
        .twinbox
        .clone()
        .unwrap_or_else(|| repo.join("target/release/twinbox"));
    if !twinbox.is_file() {
        return Err(format!(
            "{}: no twinbox binary: cargo build --release -p twinbox --bin twinbox",
            twinbox.display()
        ));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let script_file = tempfile::Builder::new()
        .prefix("vm-io")
        .suffix(".sh")
        .tempfile()
        .map_err(|e| e.to_string())?;
    std::fs::write(script_file.path(), script(args)).map_err(|e| e.to_string())?;
    // The nested machine carries this binary (as a tool on PATH) for `send`.
    let path = format!(
        "{}:{}",
        me.parent().ok_or("no binary directory")?.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let out = Command::new(repo.join("scripts/nested.sh"))
        .arg(script_file.path())
        .env("TWINBOX_BIN", &twinbox)
        .env("TWINBOX_NESTED_TOOLS", "vm-io")
        .env("PATH", path)
        .output()
        .map_err(|e| format!("running scripts/nested.sh: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "scripts/nested.sh ended with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            text
        ));
    }
    let results = Results::parse(&text);
    if args.json {
        println!("{}", results.to_json(args));
    } else {
        print!("{}", results.render(args));
        println!(
            "nested run: {:.0} s; timings are emulated (QEMU TCG outside): compare the ratios only",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The samples per measurement and backend.
#[derive(Debug, Default)]
struct Results {
    /// ms from the VMM's start to the workload
    boot: BTreeMap<String, Vec<f64>>,
    /// seconds of the guest's clock for the sequential read
    disk: BTreeMap<String, Vec<f64>>,
    /// seconds of the guest's clock for the small direct reads
    small: BTreeMap<String, Vec<f64>>,
    /// seconds for the TCP transfer
    tcp: BTreeMap<String, Vec<f64>>,
    disk_build_ms: Option<f64>,
    disk_size: Option<String>,
    /// The image disk's file system (`ext4`, `erofs`).
    disk_fs: Option<String>,
    /// twinbox's VMM bytes beyond guest RAM: "released" (default), "kept".
    memory: BTreeMap<String, f64>,
    /// The start of QEMU's command line as the nested machine ran it.
    qemu_command: Option<String>,
    problems: Vec<String>,
}

impl Results {
    fn parse(text: &str) -> Results {
        let mut r = Results::default();
        for line in text.lines().map(|l| l.trim_end_matches('\r')) {
            let Some(rest) = line.strip_prefix("@@vmio@@ ") else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (what, backend) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let values: Vec<&str> = words.collect();
            let number = |i: usize| values.get(i).and_then(|v| v.parse::<f64>().ok());
            let sample = match what {
                "boot" | "tcp" => number(0),
                "disk" => {
                    let small = number(1).zip(number(2)).map(|(b, c)| c - b);
                    if let Some(v) = small.filter(|v| *v > 0.0) {
                        r.small.entry(backend.to_string()).or_default().push(v);
                    }
                    number(0).zip(number(1)).map(|(a, b)| b - a)
                }
                "disk-build" => {
                    r.disk_build_ms = number(0);
                    r.disk_size = values.get(1).map(|s| s.to_string());
                    r.disk_fs = values.get(2).map(|s| s.to_string());
                    continue;
                }
                "memory" => {
                    match number(0) {
                        Some(bytes) => {
                            r.memory.insert(backend.to_string(), bytes);
                        }
                        None => r.problems.push(format!("memory {backend}: no number")),
                    }
                    continue;
                }
                "qemu-cmd" => {
                    r.qemu_command = Some(values.join(" "));
                    continue;
                }
                "failed" => {
                    r.problems.push(format!("{backend}: {}", values.join(" ")));
                    continue;
                }
                _ => continue,
            };
            let Some(v) = sample.filter(|v| *v > 0.0) else {
                r.problems.push(format!(
                    "{what} {backend}: no number in {:?}",
                    values.join(" ")
                ));
                continue;
            };
            let series = match what {
                "boot" => &mut r.boot,
                "disk" => &mut r.disk,
                _ => &mut r.tcp,
            };
            series.entry(backend.to_string()).or_default().push(v);
        }
        r
    }

    fn rows(&self, args: &Args) -> Vec<Row> {
        let med = |m: &BTreeMap<String, Vec<f64>>, b: &str| m.get(b).and_then(|v| median(v));
        let rate = |m: &BTreeMap<String, Vec<f64>>, b: &str, mib: u32| {
            med(m, b).map(|secs| f64::from(mib) / secs)
        };
        let (mib, reads) = (args.disk_mib, args.small_reads);
        vec![
            (
                "boot to workload (disk root)",
                "ms",
                med(&self.boot, BACKENDS[0]),
                med(&self.boot, BACKENDS[1]),
                false,
            ),
            (
                "sequential disk read (dd bs=1M)",
                "MiB/s",
                rate(&self.disk, BACKENDS[0], mib),
                rate(&self.disk, BACKENDS[1], mib),
                true,
            ),
            (
                "4 KiB O_DIRECT disk reads",
                "reads/s",
                rate(&self.small, BACKENDS[0], reads),
                rate(&self.small, BACKENDS[1], reads),
                true,
            ),
            (
                "TCP host→guest",
                "MiB/s",
                rate(&self.tcp, BACKENDS[0], args.tcp_mib),
                rate(&self.tcp, BACKENDS[1], args.tcp_mib),
                true,
            ),
        ]
    }

    /// twinbox's virtio-blk on its I/O thread (the default) against the vCPU
    /// thread: (name, unit, I/O thread, vCPU thread, higher is better).
    fn block_io_rows(&self, args: &Args) -> Vec<Row> {
        let rate = |m: &BTreeMap<String, Vec<f64>>, b: &str, n: u32| {
            m.get(b)
                .and_then(|v| median(v))
                .map(|secs| f64::from(n) / secs)
        };
        vec![
            (
                "sequential disk read (dd bs=1M)",
                "MiB/s",
                rate(&self.disk, BACKENDS[0], args.disk_mib),
                rate(&self.disk, VCPU_SERIES, args.disk_mib),
                true,
            ),
            (
                "4 KiB O_DIRECT disk reads",
                "reads/s",
                rate(&self.small, BACKENDS[0], args.small_reads),
                rate(&self.small, VCPU_SERIES, args.small_reads),
                true,
            ),
        ]
    }

    fn render(&self, args: &Args) -> String {
        let mut t = Table::new(&[
            "measure",
            "twinbox",
            "qemu microvm",
            "twinbox/qemu",
            "goal met",
        ]);
        for (name, unit, ours, theirs, higher_better) in self.rows(args) {
            let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} {unit}"));
            let (ratio, met) = match (ours, theirs) {
                (Some(o), Some(q)) => (
                    format!("{:.2}x", o / q),
                    if (o >= q) == higher_better {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                ),
                _ => ("-".into(), "-".into()),
            };
            t.row(vec![name.to_string(), cell(ours), cell(theirs), ratio, met]);
        }
        let mut out = t.render();
        let mut io = Table::new(&[
            "twinbox virtio-blk",
            "I/O thread",
            "vCPU thread",
            "thread/vcpu",
        ]);
        for (name, unit, thread, vcpu, _) in self.block_io_rows(args) {
            let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} {unit}"));
            let ratio = thread
                .zip(vcpu)
                .map_or("-".to_string(), |(t, v)| format!("{:.2}x", t / v));
            io.row(vec![name.to_string(), cell(thread), cell(vcpu), ratio]);
        }
        out.push('\n');
        out.push_str(&io.render());
        out.push_str(&format!(
            "image disk (busybox, {}): {} built in {} ms\nruns per cell: {} (medians); disk {} MiB, {} small reads, TCP {} MiB\n",
            self.disk_fs.as_deref().unwrap_or("?"),
            self.disk_size.as_deref().unwrap_or("?"),
            self.disk_build_ms
                .map_or("?".to_string(), |v| format!("{v:.1}")),
            args.runs,
            args.disk_mib,
            args.small_reads,
            args.tcp_mib
        ));
        let mib = |k: &str| {
            self.memory
                .get(k)
                .map_or("?".to_string(), |b| format!("{:.2} MiB", b / 1048576.0))
        };
        out.push_str(&format!(
            "twinbox VMM memory beyond guest RAM (Firecracker's method, the memory lesson's): {} (setup pages released), {} (kept); goal 5 MiB\n",
            mib("released"),
            mib("kept")
        ));
        if let Some(cmd) = &self.qemu_command {
            out.push_str(&format!("qemu ran as: {cmd}...\n"));
        }
        for p in &self.problems {
            out.push_str(&format!("problem: {p}\n"));
        }
        out
    }

    fn to_json(&self, args: &Args) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows(args)
            .into_iter()
            .map(|(name, unit, ours, theirs, higher_better)| {
                serde_json::json!({
                    "measure": name, "unit": unit, "twinbox": ours, "qemu": theirs,
                    "ratio": ours.zip(theirs).map(|(o, q)| o / q),
                    "higher_is_better": higher_better,
                })
            })
            .collect();
        let block_io: Vec<serde_json::Value> = self
            .block_io_rows(args)
            .into_iter()
            .map(|(name, unit, thread, vcpu, _)| {
                serde_json::json!({
                    "measure": name, "unit": unit, "io_thread": thread, "vcpu_thread": vcpu,
                    "ratio": thread.zip(vcpu).map(|(t, v)| t / v),
                })
            })
            .collect();
        serde_json::json!({
            "rows": rows,
            "block_io": block_io,
            "samples": {
                "boot_ms": self.boot, "disk_secs": self.disk, "small_reads_secs": self.small,
                "tcp_secs": self.tcp,
            },
            "disk_build_ms": self.disk_build_ms,
            "disk_size": self.disk_size,
            "disk_fs": self.disk_fs,
            "qemu_command": self.qemu_command,
            "vmm_memory_bytes": self.memory,
            "problems": self.problems,
        })
    }
}

/// (name, unit, twinbox's median, QEMU's median, higher is better)
type Row = (&'static str, &'static str, Option<f64>, Option<f64>, bool);

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_medians_and_ratios() {
        let text = "noise\n@@vmio@@ disk-build - 117.4 2.0MB erofs\r\n\
            @@vmio@@ boot twinbox 900.0\n@@vmio@@ boot qemu 1200.5\n@@vmio@@ boot twinbox 1100\n\
            @@vmio@@ disk twinbox 3.50 4.50 5.50\n@@vmio@@ disk qemu 5.00 7.00 11.0\n\
            @@vmio@@ disk twinbox-vcpu 1.0 3.0 7.0\n@@vmio@@ disk twinbox-vcpu\n\
            @@vmio@@ tcp twinbox 2.0\n@@vmio@@ tcp qemu vm-io: connecting failed\n\
            @@vmio@@ memory released 2097152\n";
        let r = Results::parse(text);
        assert_eq!(r.disk_build_ms, Some(117.4));
        assert_eq!(r.disk_fs.as_deref(), Some("erofs"));
        assert_eq!(r.boot["twinbox"], vec![900.0, 1100.0]);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        let args = Args::parse_from([
            "vm-io",
            "--disk-mib",
            "100",
            "--small-reads",
            "1000",
            "--tcp-mib",
            "64",
        ]);
        let rows = r.rows(&args);
        assert_eq!(rows[0].2, Some(1000.0));
        assert_eq!(rows[1].2, Some(100.0));
        assert_eq!(rows[1].3, Some(50.0));
        assert_eq!(rows[2].2, Some(1000.0));
        assert_eq!(rows[2].3, Some(250.0));
        assert_eq!(rows[3].2, Some(32.0));
        assert_eq!(rows[3].3, None);
        let io = r.block_io_rows(&args);
        assert_eq!((io[0].2, io[0].3), (Some(100.0), Some(50.0)));
        assert_eq!((io[1].2, io[1].3), (Some(1000.0), Some(250.0)));
        let table = r.render(&args);
        assert!(table.contains("2.00x"), "{table}");
        assert!(table.contains("problem: tcp qemu"), "{table}");
        assert!(table.contains("problem: disk twinbox-vcpu"), "{table}");
        assert!(table.contains("4.00x"), "{table}");
        assert!(
            table.contains("2.00 MiB (setup pages released), ? (kept)"),
            "{table}"
        );
    }
}
