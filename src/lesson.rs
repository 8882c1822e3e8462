//! Lesson verbs: `lesson list`, `lesson NAME`, `lesson tour`, and `compare`.

use std::path::{Path, PathBuf};

use crate::open_store;
use anyhow::{bail, Context as _, Result};
use clap::Args;
use twinbox_lessons::backend::BackendChoice;
use twinbox_lessons::render::{html, json};
use twinbox_lessons::{compare, lessons, Context, LessonReport, Settings, COURSE, TOUR};

use crate::container::require_root;
use crate::format::print_table;

#[derive(Args, Debug)]
pub struct LessonArgs {
    /// A lesson's name, `list` to see them all, `tour` for the main five, or
    /// `course` for every lesson in the course's order (one report)
    name: String,
    /// How many times to repeat timed measurements (each lesson has a default)
    #[arg(long)]
    runs: Option<usize>,
    /// Print the results as JSON on stdout (the narration goes to stderr)
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with charts to this file
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Which VM runs the VM half: twinbox (own KVM VMM), qemu, or auto
    #[arg(long = "vm-backend", default_value = "auto")]
    vm_backend: String,
    /// The lesson's commands for you to type one by one, each checked after
    /// you ran it (press Enter); printed only when stdin is not a terminal
    /// (lessons that are an exercise: `exercise`)
    #[arg(long)]
    steps: bool,
    /// With --steps: type each step here (through sh) and check it, without
    /// waiting for you (for tests and demonstrations)
    #[arg(long, requires = "steps")]
    auto: bool,
    /// How many containers the scale lesson starts (default 200)
    #[arg(long, value_name = "N")]
    count: Option<usize>,
    /// Guest RAM the scale lesson gives VMs, started one by one until it is
    /// used: MiB (1024) or with a unit (1g); default 1g
    #[arg(long = "vm-budget", value_name = "SIZE")]
    vm_budget: Option<String>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// How many timed runs on each side
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Guest RAM of the VM: MiB (256) or with a unit (256m, 1g)
    #[arg(short = 'm', long, default_value = "256")]
    memory: String,
    /// Print the results as JSON on stdout (the narration goes to stderr)
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report with charts to this file
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Which VM runs the VM half: twinbox (own KVM VMM), qemu, or auto
    #[arg(long = "vm-backend", default_value = "auto")]
    vm_backend: String,
    /// Image to run both ways
    image: String,
    /// Command and arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn settings(runs: Option<usize>, backend: &str) -> Result<Settings> {
    let backend: BackendChoice = backend.parse().map_err(anyhow::Error::msg)?;
    if runs == Some(0) {
        bail!("--runs 0: give at least 1");
    }
    Ok(Settings {
        runs,
        backend,
        supervisor_exe: std::env::current_exe()
            .context("cannot find the twinbox binary to start supervisors")?,
        count: None,
        vm_budget_mib: None,
    })
}

/// Refuses a report path whose directory does not exist before anything runs.
fn check_report_path(path: &Option<PathBuf>) -> Result<()> {
    if let Some(p) = path {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            bail!(
                "--report {}: directory {} does not exist",
                p.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// `lesson NAME --steps [--auto]`: the exercise typed step by step and checked.
fn steps(root: &Path, args: &LessonArgs) -> Result<i32> {
    use std::io::IsTerminal;
    use twinbox_lessons::guided::{self, Mode, Session};
    let lesson = lessons::find(&args.name)?;
    let Some(steps) = lesson.guided() else {
        bail!(
            "lesson {} has no --steps: only exercises do (try `twinbox lesson exercise --steps`)",
            lesson.name()
        );
    };
    let mode = if args.auto {
        Mode::Auto
    } else if std::io::stdin().is_terminal() {
        Mode::Interactive
    } else {
        Mode::Print
    };
    if mode != Mode::Print {
        require_root("lesson --steps")?;
    }
    let store = open_store(root)?;
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let out: &mut dyn std::io::Write = if args.json { &mut stderr } else { &mut stdout };
    let outcomes = guided::run(
        &steps,
        Session {
            store: &store,
            mode,
            exe: std::env::current_exe()
                .context("cannot find the twinbox binary the steps type")?,
            out,
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    }
    Ok(if guided::all_passed(&outcomes) { 0 } else { 1 })
}

pub fn lesson(root: &Path, args: LessonArgs) -> Result<i32> {
    if args.name == "list" {
        return list();
    }
    if args.steps {
        return steps(root, &args);
    }
    let names: Vec<&str> = if args.name == "tour" {
        TOUR.to_vec()
    } else if args.name == "course" {
        twinbox_lessons::course().map(|l| l.name()).collect()
    } else {
        vec![lessons::find(&args.name)?.name()]
    };
    let mut settings = settings(args.runs, &args.vm_backend)?;
    if (args.count.is_some() || args.vm_budget.is_some()) && !names.contains(&"scale") {
        bail!("--count and --vm-budget are for the scale lesson: try `twinbox lesson scale --count 200`");
    }
    if args.count == Some(0) {
        bail!("--count 0: give at least 1 container");
    }
    settings.count = args.count;
    settings.vm_budget_mib = args.vm_budget.as_deref().map(vm_budget_mib).transpose()?;
    check_report_path(&args.report)?;
    require_root("lesson")?;
    let store = open_store(root)?;
    let json_out = json_output(args.json)?;
    let mut ctx = Context::new(store, settings);
    if args.name == "tour" {
        ctx.say.title("twinbox lesson tour");
        ctx.say.paragraph(&format!(
            "Five short lessons, each running the same workload as a container and as a microVM on this machine: {}. Timed measurements repeat {} (change with --runs); on a machine without hardware virtualization the VMs run under software emulation and the tour takes a few minutes.",
            TOUR.join(", "),
            args.runs.map_or("as often as each lesson chooses".to_string(), |r| format!("{r} times"))
        ));
    }
    if args.name == "course" {
        ctx.say.title("twinbox course");
        ctx.say.paragraph(&format!(
            "Every lesson, in the course's order ({} lessons in {} parts), with one report at the end.",
            names.len(),
            COURSE.len()
        ));
    }
    let reports: Vec<LessonReport> = if names.len() == 1 {
        vec![lessons::run(lessons::find(names[0])?, &mut ctx)?]
    } else {
        lessons::run_all(&names, &mut ctx)?
    };
    finish(&reports, args.report.as_deref(), json_out)
}

/// Writes the HTML report and the JSON, and turns failed measurements into
/// exit code 1 (the results are still all shown).
fn finish(
    reports: &[LessonReport],
    report_path: Option<&Path>,
    json_out: Option<json::StdoutForJson>,
) -> Result<i32> {
    if let Some(path) = report_path {
        let generated = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        let page = html::page(reports, &generated);
        twinbox_engine::store::atomic::write_atomic(path, page.as_bytes())
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let Some(out) = json_out {
        out.finish(&json::to_json(reports))
            .context("cannot write the JSON to stdout")?;
    }
    let failed = reports.iter().any(|r| !r.failures.is_empty());
    Ok(if failed { 1 } else { 0 })
}

fn list() -> Result<i32> {
    for (n, part) in COURSE.iter().enumerate() {
        println!("{}. {}", n + 1, part.title);
        let rows: Vec<Vec<String>> = part
            .lessons
            .iter()
            .filter_map(|name| lessons::find(name).ok())
            .map(|l| {
                vec![
                    format!("  {}", l.name()),
                    l.sides().to_string(),
                    l.summary().to_string(),
                ]
            })
            .collect();
        print_table(&["  LESSON", "RUNS", "SHOWS"], &rows);
        println!();
    }
    println!(
        "run one with `twinbox lesson NAME`, `twinbox lesson tour` for {}, or `twinbox lesson course` for all of them in this order",
        TOUR.join(", ")
    );
    Ok(0)
}

/// Guest memory in MiB: a plain number is MiB, as for `vm run --memory`.
fn parse_memory_mib(text: &str) -> Result<u64> {
    let mib = crate::vm::guest_memory_mib(text)?;
    if mib < 64 {
        bail!("--memory {text}: give the VM at least 64 MiB (a stock kernel needs it to boot)");
    }
    Ok(mib)
}

/// `--vm-budget`: at least one lesson VM's RAM.
fn vm_budget_mib(text: &str) -> Result<u64> {
    let mib = crate::vm::guest_memory_mib(text).with_context(|| format!("--vm-budget {text}"))?;
    let one = twinbox_lessons::context::VM_MEMORY_MIB;
    if mib < one {
        bail!("--vm-budget {text}: give at least {one} MiB, the RAM of one lesson VM");
    }
    Ok(mib)
}

/// With `--json`, stdout carries only the JSON record (narration goes to stderr).
fn json_output(json: bool) -> Result<Option<json::StdoutForJson>> {
    json.then(json::StdoutForJson::redirect)
        .transpose()
        .context("cannot set up --json output")
}

pub fn compare(root: &Path, args: CompareArgs) -> Result<i32> {
    let settings = settings(Some(args.runs), &args.vm_backend)?;
    let memory_mib = parse_memory_mib(&args.memory)?;
    check_report_path(&args.report)?;
    require_root("compare")?;
    let store = open_store(root)?;
    let json_out = json_output(args.json)?;
    let mut ctx = Context::new(store, settings);
    let spec = compare::CompareSpec {
        image: args.image.clone(),
        cmd: args.command.clone(),
        runs: args.runs,
        memory_mib,
    };
    let report = compare::run(&mut ctx, &spec)?;
    finish(&[report], args.report.as_deref(), json_out)
}
