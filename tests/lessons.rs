//! The lessons and `compare`, run through the real binary with `--runs 1
//! --json`, checked for the facts each lesson teaches. The VM half boots the
//! host's stock kernel (under QEMU's software emulation on PVM hosts), so VM
//! boots are few: the tour runs once and its JSON serves several tests.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::{lab, Lab, Run};
use serde_json::Value;

/// `twinbox lesson ARGS... --json`, with the parsed JSON.
fn lesson(lab: &Lab, args: &[&str]) -> (Run, Value) {
    let r = lab.tb(args);
    let json = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: stdout is not JSON ({e}), exit {}\nstdout: {}\nstderr: {}",
            r.code,
            r.stdout,
            tail(&r.stderr)
        )
    });
    (r, json)
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn host_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

/// A measured value: `{"value": x}`; panics with the reason when it failed.
fn value<'a>(v: &'a Value, what: &str) -> &'a Value {
    match v.get("value") {
        Some(x) => x,
        None => panic!("{what} was not measured: {v}"),
    }
}

fn no_failures(report: &Value) {
    let failures = report["failures"].as_array().unwrap();
    assert!(failures.is_empty(), "{}: {failures:?}", report["lesson"]);
}

struct Tour {
    lab: Lab,
    run: Run,
    reports: Vec<Value>,
}

/// The tour, once for the whole file: five lessons, one JSON array, one report.
fn tour() -> Option<&'static Tour> {
    static TOUR: OnceLock<Option<Tour>> = OnceLock::new();
    TOUR.get_or_init(|| {
        let lab = lab()?;
        let report = lab.root().join("tour.html");
        let (run, json) = lesson(
            &lab,
            &[
                "lesson",
                "tour",
                "--runs",
                "1",
                "--json",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        let reports = json.as_array().expect("the tour gives an array").clone();
        remove_at_exit(lab.root());
        Some(Tour { lab, run, reports })
    })
    .as_ref()
}

/// A static is never dropped: remove the tour's private store when the test
/// binary exits.
fn remove_at_exit(dir: &Path) {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    extern "C" fn cleanup() {
        if let Some(d) = DIR.get() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    if DIR.set(dir.to_path_buf()).is_ok() {
        // SAFETY: registers a plain function with no arguments to run at exit.
        unsafe { nix::libc::atexit(cleanup) };
    }
}

fn tour_lesson(name: &str) -> Option<&'static Value> {
    let t = tour()?;
    Some(
        t.reports
            .iter()
            .find(|r| r["lesson"] == name)
            .unwrap_or_else(|| panic!("the tour has no {name} lesson")),
    )
}

#[test]
fn tour_runs_the_five_lessons_and_says_which_vm_ran() {
    let Some(t) = tour() else { return };
    assert_eq!(t.run.code, 0, "{}", tail(&t.run.stderr));
    let names: Vec<&str> = t
        .reports
        .iter()
        .map(|r| r["lesson"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kernel", "startup", "memory", "disk", "isolation"]);
    for r in &t.reports {
        no_failures(r);
        assert!(!r["explanation"].as_array().unwrap().is_empty());
        assert!(
            !r["findings"].as_array().unwrap().is_empty(),
            "{}",
            r["lesson"]
        );
        let backend = &r["vm_backend"];
        assert!(
            backend["name"] == "twinbox" || backend["name"] == "qemu",
            "{backend}"
        );
        assert!(!backend["reason"].as_str().unwrap().is_empty());
        // every command shown is one a student can type
        for step in r["steps"].as_array().unwrap() {
            let cmd = step["command"].as_str().unwrap();
            if step["side"] == "container" {
                assert!(cmd.contains("twinbox run"), "{cmd}");
            }
        }
    }
    // the narration went to stderr, the choice of backend at the top
    assert!(
        t.run.stderr.contains("VM backend:"),
        "{}",
        tail(&t.run.stderr)
    );
    let emulated = t.reports[0]["vm_backend"]["emulated"].as_bool().unwrap();
    if emulated {
        assert!(t.run.stderr.contains("software emulation"));
    }
}

#[test]
fn kernel_lesson_container_shares_the_host_kernel_and_the_vm_does_not() {
    let Some(k) = tour_lesson("kernel") else {
        return;
    };
    let f = &k["facts"];
    let release = host_file("/proc/sys/kernel/osrelease");
    let boot_id = host_file("/proc/sys/kernel/random/boot_id");
    assert_eq!(f["host"]["boot_id"], boot_id.as_str());
    assert_eq!(f["container"]["release"], release.as_str(), "{f}");
    assert_eq!(f["container"]["boot_id"], boot_id.as_str(), "{f}");
    assert_eq!(f["container_same_boot"], true);
    let vm_boot = f["vm"]["boot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("VM kernel not measured: {}", f["vm"]));
    assert_eq!(vm_boot.len(), 36);
    assert_ne!(vm_boot, boot_id);
    assert_eq!(f["vm_same_boot"], false);
}

#[test]
fn startup_lesson_times_both_sides() {
    let Some(s) = tour_lesson("startup") else {
        return;
    };
    let f = &s["facts"];
    for side in ["container", "vm"] {
        for what in ["to_workload_ms", "total_ms"] {
            let stats = value(&f[side][what], &format!("{side} {what}"));
            let median = stats["median"].as_f64().unwrap();
            assert!(median > 0.0, "{side} {what}: {stats}");
            assert_eq!(stats["runs"].as_array().unwrap().len(), 1);
            assert!(
                median
                    <= value(&f[side]["total_ms"], "total")["median"]
                        .as_f64()
                        .unwrap()
            );
        }
    }
    // the finding quotes the measured medians, whichever side was faster
    let c = value(&f["container"]["to_workload_ms"], "c")["median"]
        .as_f64()
        .unwrap();
    let v = value(&f["vm"]["to_workload_ms"], "v")["median"]
        .as_f64()
        .unwrap();
    let finding = s["findings"][0].as_str().unwrap();
    if c < v {
        assert!(finding.contains("started after"), "{finding}");
    } else {
        assert!(finding.contains("did not start faster"), "{finding}");
    }
    assert_eq!(s["charts"].as_array().unwrap().len(), 2);
}

#[test]
fn memory_lesson_measures_cgroup_supervisor_vmm_and_guest() {
    let Some(m) = tour_lesson("memory") else {
        return;
    };
    let f = &m["facts"];
    let peak = value(&f["container"]["cgroup_peak_bytes"], "cgroup peak")
        .as_u64()
        .unwrap();
    let sup = value(&f["container"]["supervisor_rss_bytes"], "supervisor RSS")
        .as_u64()
        .unwrap();
    let total = value(&f["container"]["total_bytes"], "container total")
        .as_u64()
        .unwrap();
    assert!(peak > 0 && sup > 0);
    assert_eq!(total, peak + sup);
    // inside the container /proc/meminfo is the host's
    let host_total = f["host_memtotal_bytes"].as_u64().unwrap();
    assert_eq!(
        f["container"]["memtotal_seen_bytes"].as_u64(),
        Some(host_total)
    );
    let configured = f["vm"]["configured_bytes"].as_u64().unwrap();
    assert_eq!(configured, 256 << 20);
    let rss = value(&f["vm"]["process_rss_bytes"], "VMM RSS")
        .as_u64()
        .unwrap();
    let guest = value(&f["vm"]["guest_resident_bytes"], "guest RAM")
        .as_u64()
        .unwrap();
    let overhead = value(&f["vm"]["vmm_overhead_bytes"], "VMM overhead")
        .as_u64()
        .unwrap();
    assert_eq!(rss, guest + overhead);
    assert!(guest > 0 && guest <= configured + (8 << 20));
    let used = value(&f["vm"]["guest_used_bytes"], "guest used")
        .as_u64()
        .unwrap();
    let seen = f["vm"]["memtotal_seen_bytes"].as_u64().unwrap();
    assert!(used > 0 && used < seen && seen <= configured);
}

#[test]
fn disk_lesson_counts_the_shared_layer_once() {
    let Some(d) = tour_lesson("disk") else { return };
    let c = &d["facts"]["containers"];
    let n = c["count"].as_u64().unwrap();
    assert!(n >= 2);
    assert_eq!(c["share_image_layers"], true);
    let image = c["image_bytes"].as_u64().unwrap();
    let unpacked = c["image_unpacked_bytes"].as_u64().unwrap();
    assert_eq!(c["layer_bytes_counted"].as_u64().unwrap(), unpacked);
    let writable: u64 = c["writable_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap())
        .sum();
    assert!(writable > 0, "each container wrote a file");
    let records = c["record_bytes"].as_u64().unwrap();
    let total = c["store_total_bytes"].as_u64().unwrap();
    assert_eq!(total, image + writable + records, "the image counted once");
    assert_eq!(
        c["if_each_copied_bytes"].as_u64().unwrap(),
        n * image + writable + records
    );
    let v = &d["facts"]["vms"];
    let rootfs = value(&v["rootfs_bytes_in_guest"], "VM root fs")
        .as_u64()
        .unwrap();
    assert!(rootfs > 0);
    assert_eq!(
        value(&v["total_bytes"], "VMs total").as_u64().unwrap(),
        n * rootfs
    );
    assert!(value(&v["initramfs_bytes"], "initramfs").as_u64().unwrap() > 0);
}

#[test]
fn isolation_lesson_container_pid_namespace_hides_the_host() {
    let Some(i) = tour_lesson("isolation") else {
        return;
    };
    let f = &i["facts"];
    let host_procs = f["host"]["processes"].as_u64().unwrap();
    let visible = f["container"]["visible_processes"].as_u64().unwrap();
    assert!(
        visible >= 1 && visible < host_procs && visible <= 5,
        "{visible} of {host_procs}"
    );
    assert_eq!(f["container"]["sees_lesson_process"], false);
    assert_eq!(f["container"]["host_sees_workload"], true, "{f}");
    assert_ne!(f["container"]["inside"]["hostname"], f["host"]["hostname"]);
    assert_eq!(f["container"]["inside"]["interfaces"], "lo");
    assert_eq!(f["vm"]["host_sees_workload"], false, "{f}");
    assert!(!f["vm"]["vmm"].as_array().unwrap().is_empty());
    // with --userns=auto root inside is an unprivileged uid on the host
    let u = &f["container_userns"];
    let host_uid = u["host_uid"]
        .as_u64()
        .expect("the host found the userns container");
    assert!(host_uid >= 65536, "{u}");
    assert!(
        u["inside_user"]
            .as_str()
            .unwrap()
            .starts_with("uid=0(root)"),
        "{u}"
    );
    assert_eq!(u["uid_map"], format!("0 {host_uid} 65536"), "{u}");
    assert_eq!(u["host_view"][0]["uid"], host_uid, "{u}");
}

#[test]
fn html_report_opens_in_chromium_with_charts_and_values() {
    let Some(t) = tour() else { return };
    let report = t.lab.root().join("tour.html");
    assert!(report.is_file(), "no report at {}", report.display());
    let Some(dom) = charts_in_chromium(&report, t.lab.root(), &t.reports) else {
        return;
    };
    let expected: usize = t
        .reports
        .iter()
        .map(|r| r["charts"].as_array().unwrap().len())
        .sum();
    assert!(expected >= 3);
    // measured values in the DOM: boot ids, and every bar's number
    let kernel = &t.reports[0]["facts"];
    for id in [&kernel["host"]["boot_id"], &kernel["vm"]["boot_id"]] {
        assert!(dom.contains(id.as_str().unwrap()), "{id} not in the DOM");
    }
    let bars: Vec<f64> = dom
        .split("data-value=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect();
    let startup = &t.reports[1]["facts"];
    for side in ["container", "vm"] {
        let median = value(&startup[side]["to_workload_ms"], side)["median"]
            .as_f64()
            .unwrap();
        assert!(
            bars.iter().any(|b| (b - median).abs() < 1e-9),
            "{side} median {median} not among the chart bars {bars:?}"
        );
    }
    assert!(dom.contains("What this shows"));
}

/// `twinbox ARGS... --json --report FILE.html`, the JSON parsed, and the
/// report opened in headless Chromium: every chart of the JSON is an SVG in
/// the page with its measured bars.
fn lesson_with_report(lab: &Lab, args: &[&str]) -> (Run, Value) {
    let page = lab.root().join(format!("{}.html", args[1]));
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--json", "--report", page.to_str().unwrap()]);
    let (r, j) = lesson(lab, &all);
    assert!(
        page.is_file(),
        "{args:?} wrote no report at {}: {}",
        page.display(),
        tail(&r.stderr)
    );
    charts_in_chromium(&page, lab.root(), std::slice::from_ref(&j));
    (r, j)
}

/// The report as headless Chromium builds it has one chart figure per chart
/// of the JSON, each an SVG with one bar per measured value (the value as
/// the bar's data-value), and the lessons' findings.
fn charts_in_chromium(page: &Path, scratch: &Path, reports: &[Value]) -> Option<String> {
    let html = std::fs::read_to_string(page).unwrap();
    for external in ["<script", "<link", "src=\"http", "@import"] {
        assert!(
            !html.contains(external),
            "the report must be self-contained: {external}"
        );
    }
    let dom = chromium_dom(page, scratch)?;
    let figures: Vec<&str> = dom.split("<figure class=\"chart\"").skip(1).collect();
    let charts: Vec<&Value> = reports
        .iter()
        .flat_map(|r| r["charts"].as_array().unwrap())
        .collect();
    assert!(!charts.is_empty(), "the lessons drew no chart");
    assert_eq!(
        figures.len(),
        charts.len(),
        "one chart in the page per chart in the JSON"
    );
    for (figure, chart) in figures.iter().zip(&charts) {
        let figure = &figure[..figure.find("</figure>").expect("a closed figure")];
        assert!(figure.contains("<svg"), "chart without SVG: {figure}");
        let bars: Vec<f64> = figure
            .split("data-value=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
            .collect();
        let measured: Vec<f64> = chart["bars"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["value"]["value"].as_f64())
            .collect();
        assert_eq!(bars.len(), measured.len(), "{}: {figure}", chart["title"]);
        for (b, m) in bars.iter().zip(&measured) {
            // relative: the page's decimal text of a large value may differ
            // from the JSON's in the last bit
            assert!(
                (b - m).abs() <= 1e-9 * m.abs().max(1.0),
                "{}: bar {b}, JSON {m}",
                chart["title"]
            );
        }
    }
    for r in reports {
        assert!(
            dom.contains(&format!("id=\"lesson-{}\"", r["lesson"].as_str().unwrap())),
            "no section for {} in the page",
            r["lesson"]
        );
    }
    assert!(dom.contains("What this shows"));
    Some(dom)
}

/// The DOM as headless Chromium builds it; None (and says why) without Chromium.
fn chromium_dom(page: &Path, scratch: &Path) -> Option<String> {
    let Some(browser) = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }) else {
        panic!("chromium is missing: run scripts/install-deps.sh (package chromium)");
    };
    let profile = scratch.join("chromium-profile");
    let out = Command::new("timeout")
        .arg("120")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn limits_lesson_oom_kills_the_memory_hog() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson(&lab, &["lesson", "limits", "--runs", "1", "--json"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let c = &j["facts"]["container"];
    assert_eq!(value(&c["oom_killed"], "OOM kill"), true, "{c}");
    assert_eq!(c["memory_exit_code"], 137);
    assert_eq!(value(&c["fork_refused"], "pids limit"), true);
    assert!(c["processes_running"].as_u64().unwrap() < 8);
    let free = value(&c["cpu_free_ms"], "cpu").as_f64().unwrap();
    let capped = value(&c["cpu_capped_ms"], "cpu capped").as_f64().unwrap();
    assert!(free > 0.0 && capped > 0.0);
    // the loop was sized from the host's own busybox, timed first
    let work = &c["cpu_work"];
    let count = work["count"].as_u64().unwrap();
    assert!((20_000..=1_000_000).contains(&count), "{work}");
    assert!(
        value(&work["calibration_ms"], "calibration")
            .as_f64()
            .unwrap()
            > 0.0
    );
    // the limit is not in /proc/meminfo but in the container's own cgroup file
    assert_eq!(c["memory_limit_seen_bytes"], 16 << 20, "{c}");
    // the container sees the host's RAM; the VM its own
    let host_kib: u64 = host_file("/proc/meminfo")
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(c["memtotal_seen"]
        .as_str()
        .unwrap()
        .contains(&host_kib.to_string()));
    let vm = &j["facts"]["vm"];
    assert_eq!(value(&vm["exit_code"], "VM exit"), 137, "{vm}");
    assert!(!vm["memtotal_seen"]
        .as_str()
        .unwrap()
        .contains(&host_kib.to_string()));
}

#[test]
fn container_only_lessons_show_layers_ephemeral_files_and_registries() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson(&lab, &["lesson", "images", "--json"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let c = &j["facts"]["containers"];
    assert_eq!(c["a_wrote_to_own_layer"], true);
    assert_eq!(c["b_saw_file"], false);
    assert_eq!(c["image_has_file"], false);
    assert_eq!(c["same_layers"], true);
    assert!(j["vm_backend"].is_null());

    let (r, j) = lesson(&lab, &["lesson", "ephemeral", "--json"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    let f = &j["facts"]["files"];
    assert_eq!(f["container_file_survived"], false);
    assert_eq!(f["volume_file_survived"], true);
    assert_eq!(f["host_file_present"], true);

    let (r, j) = lesson(&lab, &["lesson", "registry", "--json"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    assert_eq!(j["facts"]["same_image"], true);
    assert_eq!(j["facts"]["run_exit_code"], 0);
    assert!(j["facts"]["pull"]["downloaded"].as_u64().unwrap() >= 1);
    // nothing left behind: no containers, and the pushed name is gone again
    assert_eq!(lab.container_count(), 0);
    let images = lab.tb(&["images"]);
    assert!(
        !images.stdout.contains("lessons/busybox"),
        "{}",
        images.stdout
    );
}

#[test]
fn distro_lesson_needs_debian_then_shows_one_kernel() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["lesson", "distro", "--json"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("twinbox image bootstrap debian"),
        "{}",
        tail(&r.stderr)
    );
    let b = lab.tb(&["image", "bootstrap", "debian"]);
    assert_eq!(b.code, 0, "debian bootstrap: {}", tail(&b.stderr));
    let (r, j) = lesson(&lab, &["lesson", "distro", "--json"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    let f = &j["facts"];
    assert_eq!(f["same_kernel"], true);
    let release = host_file("/proc/sys/kernel/osrelease");
    assert_eq!(value(&f["debian"], "debian")["kernel"], release.as_str());
    assert_eq!(value(&f["busybox"], "busybox")["kernel"], release.as_str());
    assert!(value(&f["debian"], "debian")["os"]
        .as_str()
        .unwrap()
        .contains("Debian"));
    assert!(!value(&f["busybox"], "busybox")["os"]
        .as_str()
        .unwrap()
        .contains("Debian"));
}

#[test]
fn scale_lesson_runs_many_containers_and_vms_one_by_one_and_finds_where_each_meets_ram() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson_with_report(
        &lab,
        &[
            "lesson",
            "scale",
            "--runs",
            "1",
            "--count",
            "24",
            "--vm-budget",
            "512m",
        ],
    );
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let c = &j["facts"]["containers"];
    assert_eq!(c["running"], 24, "{c}");
    assert_eq!(c["network"], "none");
    let points = c["points"].as_array().unwrap();
    assert!(points.len() >= 2, "a curve, not one point: {c}");
    let counts: Vec<u64> = points
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    assert!(points
        .iter()
        .all(|p| p["accounted_bytes"].as_u64().unwrap() > 0));
    let v = &j["facts"]["vms"];
    assert_eq!(v["count"], 2, "a 512 MiB budget holds two 256 MiB VMs");
    assert_eq!(v["running"], 2, "{v}");
    let c_reach = value(&c["reach"], "containers' reach");
    let v_reach = value(&v["reach"], "VMs' reach");
    let c_meets = c_reach["meets_available_at"].as_u64().unwrap();
    let v_meets = v_reach["meets_available_at"].as_u64().unwrap();
    assert!(
        c_meets > v_meets,
        "more containers than VMs fit: {c_meets} vs {v_meets}"
    );
    assert!(j["findings"].as_array().unwrap().iter().any(|f| f
        .as_str()
        .unwrap()
        .contains(&format!("about {c_meets} containers"))));
    assert_eq!(lab.container_count(), 0);
    // --count belongs to scale; 0 is refused before anything runs
    let bad = lab.tb(&["lesson", "kernel", "--count", "5"]);
    assert_eq!(bad.code, 125, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("for the scale lesson"),
        "{}",
        bad.stderr
    );
    let zero = lab.tb(&["lesson", "scale", "--count", "0"]);
    assert!(zero.stderr.contains("--count 0"), "{}", zero.stderr);
}

#[test]
fn compare_runs_one_workload_both_ways() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson(
        &lab,
        &[
            "compare",
            "--runs",
            "1",
            "--json",
            "busybox",
            "sh",
            "-c",
            "echo same; sleep 0.3",
        ],
    );
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let f = &j["facts"];
    assert_eq!(f["container"]["same_boot_as_host"], true);
    assert_eq!(f["vm"]["same_boot_as_host"], false);
    assert_eq!(value(&f["outputs_match"], "outputs"), true);
    assert_eq!(f["container"]["exit_codes"], serde_json::json!([0]));
    assert_eq!(f["vm"]["exit_codes"], serde_json::json!([0]));
    assert!(
        value(&f["container"]["memory"]["total"], "container memory")
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        value(&f["vm"]["memory"]["process_rss"], "VMM RSS")
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        value(&f["vm"]["guest_used_bytes"], "guest used")
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(f["vm"]["disk"]["initramfs_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn bad_input_is_one_clear_line() {
    let Some(lab) = lab() else { return };
    let r = lab.tb(&["lesson", "nosuch"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("no lesson named \"nosuch\""),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("twinbox lesson list"));
    let r = lab.tb(&["lesson", "kernel", "--vm-backend", "firecracker"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("use twinbox, qemu or auto"),
        "{}",
        r.stderr
    );
    let r = lab.tb(&["lesson", "kernel", "--runs", "0"]);
    assert_eq!(r.code, 125);
    let r = lab.tb(&["lesson", "kernel", "--report", "/nonexistent/dir/r.html"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("/nonexistent/dir"), "{}", r.stderr);
    let r = lab.tb(&["compare", "nosuchimage", "true"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("nosuchimage"), "{}", r.stderr);
    // an explicit backend that cannot work here fails at once, saying what to use
    let pvm = Path::new("/sys/module/kvm_pvm").exists() || !Path::new("/dev/kvm").exists();
    if pvm {
        let r = lab.tb(&["lesson", "kernel", "--vm-backend", "twinbox"]);
        assert_eq!(r.code, 125, "{}", tail(&r.stderr));
        assert!(
            r.stderr.contains("--vm-backend qemu or auto"),
            "{}",
            r.stderr
        );
    }
    let list = lab.tb(&["lesson", "list"]);
    assert_eq!(list.code, 0);
    for name in [
        "kernel",
        "startup",
        "memory",
        "disk",
        "isolation",
        "limits",
        "images",
        "ephemeral",
        "scale",
        "distro",
        "registry",
    ] {
        assert!(list.stdout.contains(name), "{name} not listed");
    }
}

#[test]
fn identity_lesson_handmade_container_is_in_the_kernel_but_not_in_ps() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson_with_report(&lab, &["lesson", "identity", "--runs", "1"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let f = &j["facts"];
    let c = &f["container"];
    assert_eq!(c["in_twinbox_ps"], true);
    assert_eq!(c["in_kernel_pid_namespaces"], true);
    assert_eq!(c["cgroup_names_id"], true);
    let h = &f["handmade"];
    assert_eq!(h["in_twinbox_ps"], false);
    assert_eq!(h["in_kernel_pid_namespaces"], true);
    let own = value(&h["kernel"], "hand-made")["own_namespaces"]
        .as_array()
        .unwrap();
    for ns in ["mnt", "pid", "uts", "ipc", "net"] {
        assert!(own.iter().any(|n| n == ns), "hand-made lacks {ns}: {own:?}");
    }
    // the host's namespaces are the test's own (twinbox runs beside it)
    let host_pid_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert_eq!(
        f["host_namespaces"]["pid"],
        host_pid_ns.to_string_lossy().as_ref()
    );
    assert!(!j["findings"].as_array().unwrap().is_empty());
    // nothing left: no containers, the hand-made cgroup removed, its process gone
    assert_eq!(lab.container_count(), 0);
    let cg = h["cgroup"]["value"].as_str().unwrap();
    assert!(!Path::new(cg).exists(), "{cg} left behind");
    let pid = value(&h["kernel"], "hand-made")["pid"].as_i64().unwrap();
    if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) {
        // the pid may have been reused since, but not by a process in that namespace
        assert_eq!(ns, host_pid_ns, "the hand-made container still runs");
    }
}

#[test]
fn shared_kernel_lesson_one_container_moves_a_count_the_host_and_others_see() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson_with_report(&lab, &["lesson", "shared-kernel", "--runs", "1"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let k = &j["facts"]["kernel_wide"];
    let started = j["facts"]["tasks_started"].as_i64().unwrap();
    // the rise is noisy on a busy machine; the lesson itself calls half a rise
    assert!(k["host_rise"].as_i64().unwrap() >= started / 2, "{k}");
    assert!(
        k["other_container_rise"].as_i64().unwrap() >= started / 2,
        "{k}"
    );
    assert_eq!(k["vm_saw_host_tasks"], false, "{k}");
    let rights = &j["facts"]["rights"];
    let d = value(&rights["default"], "default rights");
    let p = value(&rights["privileged"], "privileged rights");
    assert_eq!(d["seccomp_mode"], 2);
    assert_eq!(p["seccomp_mode"], 0);
    assert!(d["capabilities"].as_u64().unwrap() < p["capabilities"].as_u64().unwrap());
    assert_eq!(d["proc_sys_writable"], false);
    assert_eq!(p["proc_sys_writable"], true);
    assert_eq!(p["kernel_log_readable"], true);
    let allowed = rights["syscalls_allowed_by_default"].as_u64().unwrap();
    let known = rights["syscalls_known"].as_u64().unwrap();
    assert!(allowed > 200 && allowed < known, "{allowed} of {known}");
    assert_eq!(lab.container_count(), 0);
}

#[test]
fn dockerfile_lesson_builds_cached_and_edited_and_serves_the_page() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson_with_report(&lab, &["lesson", "dockerfile", "--runs", "1"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let f = &j["facts"];
    let builds = f["builds"].as_array().unwrap();
    assert_eq!(builds.len(), 3);
    let cold = value(&builds[0], "cold build");
    let ran_cold = cold["ran"].as_array().unwrap();
    for step in ["RUN", "COPY app.sh"] {
        assert!(
            ran_cold.iter().any(|s| s.as_str().unwrap().contains(step)),
            "the cold build must run {step}: {cold}"
        );
    }
    let warm = value(&builds[1], "unchanged build");
    assert_eq!(warm["cached"], warm["steps"], "{warm}");
    assert!(warm["ran"].as_array().unwrap().is_empty(), "{warm}");
    assert_eq!(f["unchanged_rebuild_reran_nothing"], true);
    assert_eq!(f["edit_reran_only_the_last_steps"], true);
    let edit = value(&builds[2], "edited build");
    let ran = edit["ran"].as_array().unwrap();
    assert!(
        ran.iter()
            .any(|s| s.as_str().unwrap().contains("COPY app.sh")),
        "{edit}"
    );
    assert!(
        !ran.iter().any(|s| s.as_str().unwrap().contains("RUN")),
        "the RUN before the edited COPY must come from the cache: {edit}"
    );
    let served = value(&f["container"], "the served page");
    let page = served["page"].as_str().unwrap();
    assert!(page.contains("served by"), "{page}");
    assert!(
        page.contains("version 2"),
        "the edited app must be served: {page}"
    );
    // the same image as a microVM with -p: the page from the host, or (a
    // backend whose VMs have no network card) why not, never pretended
    vm_half(&f["vm"], |v| {
        let page = v["page"].as_str().unwrap();
        assert!(page.contains("served by"), "{page}");
        assert!(page.contains("version 2"), "{page}");
        assert!(v["first_answer_ms"].as_f64().unwrap() > 0.0);
    });
    assert_eq!(lab.container_count(), 0);
}

/// A service lesson's VM half (QEMU here, twinbox's VMM where it boots a
/// kernel): checked with `served` when a VM backend exists, else it must say
/// why it could not run on this host.
fn vm_half(vm: &Value, served: impl FnOnce(&Value)) {
    if vm["ran"] == true {
        served(value(vm, "the microVM half"));
    } else {
        let why = vm["why"].as_str().unwrap_or_default();
        assert!(!why.is_empty(), "{vm}");
    }
}

#[test]
fn network_lesson_sees_veth_bridge_nat_and_times_three_paths() {
    let Some(lab) = lab() else { return };
    if !Path::new("/usr/bin/iperf3").exists() {
        eprintln!("skipping: no iperf3 on this host (scripts/install-deps.sh installs it)");
        return;
    }
    // without iperf3 on PATH the lesson says so in one line and leaves nothing
    let missing: Run = lab
        .cmd(&["lesson", "network", "--runs", "1"])
        .env("PATH", "/nonexistent")
        .output()
        .expect("run twinbox")
        .into();
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .ends_with("no iperf3 on this host: install it with `apt-get install iperf3`"),
        "{}",
        tail(&missing.stderr)
    );
    assert_eq!(lab.container_count(), 0);
    let (r, j) = lesson_with_report(&lab, &["lesson", "network", "--runs", "5"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let f = &j["facts"];
    let ip = value(&f["container_ip"], "container address")
        .as_str()
        .unwrap();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    assert!(f["inside"].as_str().unwrap().contains(ip));
    assert_eq!(f["veth_on_bridge"], true);
    assert_eq!(f["nat_rule_for_container"], true);
    let paths = f["paths"].as_array().unwrap();
    let with_vm = if f["vm"]["ran"] == true { 2 } else { 0 };
    assert_eq!(paths.len(), 3 + with_vm);
    for p in paths {
        // ping goes to addresses; a published port is only a TCP port
        if p["name"].as_str().unwrap().contains("published") {
            assert!(p["latency_ms"].is_null(), "{p}");
        } else {
            let lat = value(&p["latency_ms"], "ping");
            assert_eq!(lat["runs"].as_array().unwrap().len(), 5, "{p}");
            assert!(lat["median"].as_f64().unwrap() > 0.0, "{p}");
        }
        // iperf3's receiver counted what it says it moved, over the seconds asked for
        let run = value(&p["iperf3"], "iperf3");
        let bytes = run["bytes"].as_f64().unwrap();
        let seconds = run["seconds"].as_f64().unwrap();
        assert!(bytes > 0.0 && seconds > 0.0, "{p}");
        let tput = value(&p["throughput"], "throughput").as_f64().unwrap();
        assert!((tput - bytes / seconds).abs() <= 0.05 * tput, "{p}");
        assert!(run["mean_rtt_ms"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(f["iperf3_seconds"], 2);
    vm_half(&f["vm"], |v| {
        let ip = v["ip"].as_str().unwrap();
        assert!(v["inside"].as_str().unwrap().contains(ip));
        assert!(v["inside"]
            .as_str()
            .unwrap()
            .contains("eth0 driver: virtio_net"));
        assert_eq!(v["nat_rule_for_vm"], true);
    });
    assert_eq!(lab.container_count(), 0);
}

#[test]
fn exercise_lesson_runs_postgres_with_e_p_d_queries_it_and_keeps_its_data() {
    let Some(lab) = lab() else { return };
    if !Path::new("/usr/lib/postgresql").is_dir() {
        eprintln!("skipping: no PostgreSQL on this host (scripts/install-deps.sh installs it)");
        return;
    }
    // the steps as a student types them, without running anything
    let steps = lab.tb(&["lesson", "exercise", "--steps"]);
    assert_eq!(steps.code, 0, "{}", steps.stderr);
    assert!(
        steps
            .stdout
            .contains("twinbox run --name psql -e POSTGRES_PASSWORD=mysecretpassword"),
        "{}",
        steps.stdout
    );
    assert!(steps.stdout.contains("psql -h 0.0.0.0 -p"));
    assert!(steps.stdout.contains("twinbox stop"));
    let none = lab.tb(&["lesson", "kernel", "--steps"]);
    assert_eq!(none.code, 125);
    assert!(none.stderr.contains("has no --steps"), "{}", none.stderr);

    let (r, j) = lesson_with_report(&lab, &["lesson", "exercise", "--runs", "1"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let f = &j["facts"];
    let first = value(&f["container"], "the first container");
    assert!(
        first["answer"].as_str().unwrap().contains("PostgreSQL"),
        "{first}"
    );
    assert!(first["ready_ms"].as_f64().unwrap() > 0.0);
    assert!(first["query"]["median"].as_f64().unwrap() > 0.0, "{first}");
    assert_eq!(first["exit_code"], 0, "stop must end the server cleanly");
    let second = value(&f["container_on_the_volume"], "the second container");
    assert!(second["ready_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(f["data_survived"], true);
    vm_half(&f["vm"], |v| {
        assert!(v["answer"].as_str().unwrap().contains("PostgreSQL"), "{v}");
        assert!(v["ready_ms"].as_f64().unwrap() > 0.0);
        assert!(v["query"]["median"].as_f64().unwrap() > 0.0, "{v}");
    });
    let commands: Vec<&str> = j["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["command"].as_str().unwrap())
        .collect();
    for want in ["twinbox ps", "twinbox stop ", "psql -h 0.0.0.0 -p "] {
        assert!(
            commands.iter().any(|c| c.contains(want)),
            "no {want:?} step: {commands:?}"
        );
    }
    assert_eq!(lab.container_count(), 0);
    let vols = lab.tb(&["volume", "ls", "-q"]);
    assert!(!vols.stdout.contains("pgdata"), "{}", vols.stdout);

    // the exercise typed step by step, each step checked after it ran
    // (--auto types the printed text through sh, as a student would)
    let (auto, outcomes) = lesson(&lab, &["lesson", "exercise", "--steps", "--auto", "--json"]);
    assert_eq!(auto.code, 0, "{}", tail(&auto.stderr));
    let outcomes = outcomes.as_array().unwrap();
    let mut ok = 0;
    for o in outcomes {
        match o["checked"]["result"].as_str() {
            Some("ok") => ok += 1,
            // the microVM steps need a host where twinbox's VMM boots a kernel
            Some("not_here") => assert!(o["expect"].as_str().unwrap().contains("VM"), "{o}"),
            _ => panic!("step not checked ok: {o}"),
        }
    }
    assert!(ok >= 13, "{ok} steps ok: {outcomes:?}");
    let by_step = |n: usize| {
        outcomes[n - 1]["checked"]["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(by_step(4).contains("is running"), "{}", by_step(4));
    assert!(by_step(7).contains("PostgreSQL"), "{}", by_step(7));
    assert!(by_step(9).contains("exit code 0"), "{}", by_step(9));
    assert!(
        by_step(12).contains("the first container"),
        "{}",
        by_step(12)
    );
    assert_eq!(lab.container_count(), 0);

    // the official image's contract, on the image the lesson built
    let refused = lab.tb(&["run", "--rm", "--network", "none", "postgres"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        (refused.stdout.clone() + &refused.stderr).contains("superuser password is not specified"),
        "{}",
        refused.stderr
    );
    let init = lab.root().join("initdb.d");
    std::fs::create_dir(&init).unwrap();
    std::fs::write(
        init.join("01-schema.sql"),
        "create table t (x int); insert into t values (42);\n",
    )
    .unwrap();
    std::fs::write(init.join("02-note.sh"), "echo note-from-an-init-script\n").unwrap();
    let mount = format!("{}:/docker-entrypoint-initdb.d:ro", init.display());
    let started = lab.tb(&[
        "run",
        "-d",
        "--name",
        "pg-contract",
        "--network",
        "none",
        "-e",
        "POSTGRES_USER=alice",
        "-e",
        "POSTGRES_PASSWORD=pw",
        "-e",
        "POSTGRES_DB=shop",
        "-e",
        "PGDATA=/var/lib/postgresql/data/pgdata",
        "-v",
        &mount,
        "postgres",
    ]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let answer = loop {
        let q = lab.tb(&[
            "exec",
            "pg-contract",
            "psql",
            "-U",
            "alice",
            "-d",
            "shop",
            "-tAc",
            "select x from t",
        ]);
        if q.code == 0 && q.stdout.trim() == "42" {
            break q.stdout;
        }
        if std::time::Instant::now() > deadline {
            let logs = lab.tb(&["logs", "pg-contract"]);
            panic!(
                "no answer from alice@shop: {} {}\nlogs: {}{}",
                q.stdout, q.stderr, logs.stdout, logs.stderr
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(answer.trim(), "42");
    let logs = lab.tb(&["logs", "pg-contract"]);
    let all = logs.stdout + &logs.stderr;
    assert!(all.contains("note-from-an-init-script"), "{all}");
    // the server runs as the postgres user, not root, with PGDATA honoured
    let who = lab.tb(&[
        "exec",
        "pg-contract",
        "sh",
        "-c",
        "stat -c %U /var/lib/postgresql/data/pgdata/PG_VERSION /proc/1",
    ]);
    assert_eq!(who.stdout, "postgres\npostgres\n", "{}", who.stderr);
    let rm = lab.tb(&["rm", "-f", "-v", "pg-contract"]);
    assert_eq!(rm.code, 0, "{}", rm.stderr);
}

#[test]
fn arch_lesson_arm64_fails_in_a_container_and_boots_in_an_emulated_vm() {
    let Some(lab) = lab() else { return };
    let parts = [
        "/usr/local/share/twinbox/arm64/vmlinuz",
        "/usr/local/share/twinbox/arm64/busybox",
        "/usr/bin/qemu-system-aarch64",
    ];
    if let Some(missing) = parts.iter().find(|p| !Path::new(p).is_file()) {
        eprintln!("skipping: no {missing} (scripts/install-deps.sh fetches the arm64 parts)");
        return;
    }
    let (r, j) = lesson_with_report(&lab, &["lesson", "arch", "--runs", "1"]);
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    let f = &j["facts"];
    assert_eq!(f["binary_machine"], "AArch64");
    assert_eq!(f["on_host"]["exec_format_error"], true, "{}", f["on_host"]);
    if f["binfmt_aarch64"].is_null() {
        // no emulator registered with the kernel: the container refuses it
        assert_eq!(
            f["container"]["exec_format_error"], true,
            "{}",
            f["container"]
        );
    }
    let vm = &f["vm"];
    assert_eq!(vm["ran"], true, "{vm}");
    assert_eq!(vm["machine"], "aarch64", "{vm}");
    assert!(vm["kernel"].as_str().unwrap().contains("arm64"), "{vm}");
    assert_eq!(lab.container_count(), 0);
}

#[test]
fn desktop_lesson_runs_a_container_inside_a_vm_that_runs_twinbox() {
    let Some(lab) = lab() else { return };
    let (r, j) = lesson_with_report(&lab, &["lesson", "desktop", "--runs", "1"]);
    let f = &j["facts"];
    let host_boot = host_file("/proc/sys/kernel/random/boot_id");
    // the container on the host runs on the host's kernel
    let hc = value(&f["host_container"]["kernel"], "the container on the host");
    assert_eq!(hc["boot_id"], host_boot.as_str(), "{hc}");
    assert!(
        value(&f["host_container"]["ms"], "host container")["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let vm = &f["vm"];
    if vm["ran"] != true {
        // no VM backend here: the lesson must say why, as a failure
        assert!(!vm["why"].as_str().unwrap_or_default().is_empty(), "{vm}");
        assert_eq!(r.code, 1, "a VM half that could not run is a failure");
        return;
    }
    assert_eq!(r.code, 0, "{}", tail(&r.stderr));
    no_failures(&j);
    // the chain's inner container reports the VM's kernel, not the host's
    let vm_boot = vm["kernel"]["boot_id"].as_str().unwrap();
    assert_ne!(vm_boot, host_boot, "the VM booted a kernel of its own");
    let inner = value(&vm["container_kernel"], "the container in the VM");
    assert_eq!(inner["boot_id"], vm_boot, "{vm}");
    assert_eq!(inner["release"], vm["kernel"]["release"], "{vm}");
    assert_eq!(vm["container_is_vm_kernel"], true);
    for k in ["direct_ms", "boot_ms"] {
        assert!(vm[k].as_f64().unwrap() > 0.0, "{k}: {vm}");
    }
    assert_eq!(vm["container_ms"].as_array().unwrap().len(), 1, "{vm}");
    assert!(f["chain"].as_str().unwrap().contains("twinbox → container"));
    // four paths in the table and the chart, and the answer in numbers
    assert_eq!(j["charts"][0]["bars"].as_array().unwrap().len(), 5);
    assert!(j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x.as_str().unwrap().contains("Isn't that less efficient?")));
    assert_eq!(lab.container_count(), 0);
}

#[test]
fn exercise_steps_wait_for_enter_on_a_terminal_and_check_each_step() {
    let Some(lab) = lab() else { return };
    let mut term = common::terminal::Terminal::new();
    let mut child = term.spawn(&lab, &["lesson", "exercise", "--steps"]);
    const PROMPT: &str = "[Enter: check, s: skip, q: stop]";
    term.expect("press Enter here when it is done");
    // step 1 not done yet: Enter checks it, finds no image, and asks again
    term.expect("1. a base image");
    term.expect(PROMPT);
    term.send(b"\n");
    let said = term.expect(PROMPT);
    assert!(said.contains('✗'), "{said}");
    assert!(said.contains("fix it and press Enter"), "{said}");
    // the student does it in another terminal (here: the name the check
    // looks for, made by `tag` instead of the slower bootstrap), then Enter
    let tagged = lab.tb(&["tag", "busybox", "postgres-base"]);
    assert_eq!(tagged.code, 0, "{}", tagged.stderr);
    term.send(b"\n");
    let said = term.expect(PROMPT);
    assert!(said.contains('✓'), "{said}");
    assert!(said.contains("2. the build context"), "{said}");
    // s skips step 2 unchecked, q stops at step 3
    term.send(b"s\n");
    let said = term.expect(PROMPT);
    assert!(said.contains("3. three steps"), "{said}");
    assert!(!said.contains('✓'), "a skipped step is not checked: {said}");
    term.send(b"q\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "--steps did not stop after q"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // the steps after q are still printed, for the student to read
    term.expect("4. prints the new container's id");
    assert_eq!(status.code(), Some(0), "nothing checked was wrong");
    assert_eq!(lab.container_count(), 0);
}
