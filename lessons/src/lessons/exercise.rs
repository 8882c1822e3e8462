//! exercise: the course's database exercise as written. A PostgreSQL image
//! built offline from this host's Debian packages with an entrypoint that
//! honours the official image's contract; `run --name psql -e
//! POSTGRES_PASSWORD=... -p 5432:5432 -d`, `ps`, a real `psql` from the host,
//! `stop` with the container id, and the data surviving in a volume into a
//! new container. `twinbox lesson exercise --steps` prints the same steps for
//! a student to type.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_engine::container::options::parse_volume;
use twinbox_engine::container::{lifecycle, Container, RunOptions};
use twinbox_engine::image::postgres;

use super::vm_serving::{vm_memory_text, VmHalf};
use super::{three_acts, Lesson};
use crate::charts;
use crate::container::Detached;
use crate::context::{published, BuildDir, Context, RUN_TIMEOUT};
use crate::guided::{within, Checked, Guided, GuidedStep};
use crate::measure::psql::{self, Patience, Target};
use crate::measure::time::Stats;
use crate::report::{format_bytes, format_ms, Chart, LessonReport, Measured, Side, Step, Table};
use crate::LessonError;

pub struct Exercise;

const DOCKERFILE: &str = include_str!("../../postgres/Dockerfile");
const ENTRYPOINT: &str = include_str!("../../postgres/docker-entrypoint.sh");
const TAG: &str = "postgres";
const PASSWORD: &str = "mysecretpassword";
const COURSE_PORT: u16 = 5432;
const DATA: &str = "/var/lib/postgresql/data";
/// How long a first start (initdb included) may go without an answer and
/// without progress (new output, CPU time used) before the lesson gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The same under software emulation in a VM: a kernel boot and initdb,
/// each many times slower than on hardware.
const VM_READY_TIMEOUT_EMULATED: Duration = Duration::from_secs(420);
/// The most a first start may take in all, however it progresses: initdb
/// on an emulated CPU (the nested test machine, where containers and VMs
/// both run emulated) takes minutes, but a lesson never waits without end.
const READY_CAP: Duration = Duration::from_secs(900);
/// Guest RAM for the database VM: the image lives in it (initramfs), and
/// the server's shared buffers on top.
const VM_MEMORY_MIB: u64 = 768;
/// Queries timed by psql's `\timing`, for the latency's median and spread.
const TIMED_QUERIES: usize = 20;

impl Lesson for Exercise {
    fn name(&self) -> &'static str {
        "exercise"
    }

    fn title(&self) -> &'static str {
        "the course exercise: a PostgreSQL server with -e -p -d, ps, psql, stop"
    }

    fn summary(&self) -> &'static str {
        "build a PostgreSQL image offline, run it with -e -p -d, query it with psql from the host, stop it, keep its data in a volume"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "The course's exercise starts a database the way people start most services: \
             `run --name psql -e POSTGRES_PASSWORD=... -p 5432:5432 -d postgres`. `-e` hands the \
             program its settings as environment variables, `-p` publishes the server's port on \
             the host, `-d` leaves it running in the background, and `--name` gives it a name to \
             use instead of its id. `ps` lists it, a client on the host connects through the \
             published port, and `stop` with the container's id ends it.",
            "The official postgres image is a contract more than a program: on its first start \
             its entrypoint creates a database cluster in PGDATA, sets the superuser's password \
             from POSTGRES_PASSWORD (POSTGRES_USER and POSTGRES_DB name the user and database), \
             runs the scripts in /docker-entrypoint-initdb.d, and then starts the server as an \
             unprivileged user. On later starts, when PGDATA already holds a cluster, it only \
             starts the server. Here the image is built without any registry from this host's \
             own PostgreSQL packages, with an entrypoint that keeps the same contract.",
            "A container's files go when the container goes; a volume does not. With the data \
             directory in a named volume, a new container started from the same image finds \
             the database of the old one, and starts faster because there is nothing to \
             initialise.",
            "Last, the same image runs as a microVM (`vm run -d --network bridge -p`): the \
             same entrypoint initialises a cluster inside the guest and starts the same server, \
             and the same psql on the host connects through the VM's published port. Timed \
             the same way: until it accepts connections, one query, a whole psql call.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn default_runs(&self) -> usize {
        3
    }

    fn guided(&self) -> Option<Guided> {
        let port = choose_port().0;
        let vm_port = crate::measure::http::free_port()
            .ok()
            .filter(|p| *p != port)
            .unwrap_or(port + 1);
        Some(guided_steps(port, vm_port))
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// 5432 as the course has it, or a free port when something here holds it.
fn choose_port() -> (u16, bool) {
    if psql::port_is_free(COURSE_PORT) {
        (COURSE_PORT, true)
    } else {
        let p = crate::measure::http::free_port().unwrap_or(15432);
        (p, false)
    }
}

/// One database server's life in a container.
#[derive(Debug, Clone, Serialize)]
struct Served {
    container: String,
    /// From `run -d` until a query from the host is answered.
    ready_ms: f64,
    /// What the first query answered.
    answer: String,
    /// psql's own timing of one query (`\timing`), over TIMED_QUERIES.
    query: Option<Stats>,
    /// A whole psql call from the host: connect, authenticate, query, exit.
    round_trip: Option<Stats>,
    cgroup_bytes: Option<u64>,
    supervisor_rss: Option<u64>,
    /// `stop` until the server had exited.
    stop_ms: Option<f64>,
    exit_code: Option<i32>,
}

struct Measurements {
    base_built: Measured<String>,
    build_ms: Measured<f64>,
    port: u16,
    course_port: bool,
    first: Measured<Served>,
    second: Measured<Served>,
    /// What the second container read from the table the first one wrote.
    survived: Measured<String>,
    volume: String,
    vm: VmHalf<VmDb>,
}

/// The same database in a microVM.
#[derive(Debug, Clone, Serialize)]
struct VmDb {
    host_port: u16,
    /// From asking for the VM (before its VMM exists) until a query from
    /// the host is answered: a kernel boot, initdb, the server's start.
    ready_ms: f64,
    answer: String,
    query: Option<Stats>,
    round_trip: Option<Stats>,
    process_rss: Measured<u64>,
    guest_resident: Measured<u64>,
    configured_bytes: u64,
    emulated: bool,
}

/// Act one: the image, the first server (initialised), a table written, the
/// server stopped; a second server on the same volume reads it back.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let client = psql::find_client().ok_or_else(|| {
        LessonError::BadInput(
            "no psql on this host: install it with `apt-get install postgresql-client`".into(),
        )
    })?;
    ctx.say.heading("a PostgreSQL image, built offline");
    let base_built = bootstrap_base(ctx, report);
    let dir = BuildDir::new(
        "postgres",
        &[
            ("Dockerfile", DOCKERFILE, 0o644),
            ("docker-entrypoint.sh", ENTRYPOINT, 0o755),
        ],
    )?;
    ctx.host_step(report, "cat Dockerfile", DOCKERFILE);
    let build_ms = if base_built.value().is_some() {
        build_image(ctx, report, &dir.path)
    } else {
        Measured::failed("the base image was not made")
    };

    let (port, course_port) = choose_port();
    if !course_port {
        ctx.say.note(&format!(
            "(port {COURSE_PORT} is taken on this host, so this run publishes the server on {port} instead)"
        ));
    }
    let name = free_name(ctx, "psql");
    let volume = free_volume(ctx, "pgdata");
    let target = course_target(client, port);
    let runs = report.runs;

    ctx.say
        .heading("run it: a name, a password, a published port, in the background");
    let (first, survived, second) = if build_ms.value().is_some() {
        let first = serve(
            ctx,
            report,
            &target,
            &name,
            &volume,
            true,
            runs,
            |ctx, report| {
                let create = "create table visits (id serial primary key, who text); insert into visits (who) values ('the first container')";
                query_step(ctx, report, &target, create).map(|_| ())
            },
        );
        ctx.say
            .heading("a new container on the same volume: the data is still there");
        let mut read_back = Measured::failed("the first container did not run");
        let name2 = free_name(ctx, &format!("{name}-again"));
        let second = if first.value().is_some() {
            serve(
                ctx,
                report,
                &target,
                &name2,
                &volume,
                false,
                runs,
                |ctx, report| {
                    read_back = Measured::from_result(query_step(
                        ctx,
                        report,
                        &target,
                        "select who from visits",
                    ));
                    Ok(())
                },
            )
        } else {
            Measured::failed("the first container did not run")
        };
        (first, read_back, second)
    } else {
        let why = "the image was not built";
        (
            Measured::failed(why),
            Measured::failed(why),
            Measured::failed(why),
        )
    };
    match twinbox_engine::container::volumes::remove(&ctx.store, &volume) {
        Ok(()) => ctx.host_step(
            report,
            &format!("twinbox volume rm {volume}"),
            &format!("{volume}\n"),
        ),
        Err(e) => ctx.say.failure(&format!("removing volume {volume}: {e}")),
    }
    ctx.say.heading("the same database in a microVM");
    let vm = if first.value().is_none() {
        VmHalf::Failed("the container half did not run".into())
    } else if let Some(why) = ctx.vm_cannot_serve() {
        ctx.say.note(&format!("not run here: {why}."));
        VmHalf::NotHere(why)
    } else {
        VmHalf::from_measured(serve_vm(ctx, report, &target, runs))
    };

    report.check("the base image", &base_built);
    report.check("the image build", &build_ms);
    report.check("the first container", &first);
    report.check("the data read back by a new container", &survived);
    report.check("the second container", &second);
    if let VmHalf::Failed(why) = &vm {
        report.check::<()>("the database in a microVM", &Measured::failed(why));
    }
    Ok(Measurements {
        vm,
        base_built,
        build_ms,
        port,
        course_port,
        first,
        second,
        survived,
        volume,
    })
}

/// `twinbox image bootstrap postgres`, unless the base is already there.
fn bootstrap_base(ctx: &Context, report: &mut LessonReport) -> Measured<String> {
    let command = "twinbox image bootstrap postgres".to_string();
    if let Ok(img) = ctx.image(postgres::DEFAULT_NAME) {
        ctx.show(Side::Host, &command);
        let out = format!(
            "(already in the store: {} {})\n",
            postgres::DEFAULT_NAME,
            img.id
        );
        ctx.say.output(&out);
        return Measured::Value(img.id.to_string());
    }
    ctx.show(Side::Host, &command);
    let t0 = Instant::now();
    let result = postgres::bootstrap_postgres(&ctx.store, postgres::DEFAULT_NAME);
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (output, error, measured) = match result {
        Ok(img) => {
            let out = format!("{} {}\n", postgres::DEFAULT_NAME, img.id);
            (out, None, Measured::Value(img.id.to_string()))
        }
        Err(e) => (
            String::new(),
            Some(e.to_string()),
            Measured::failed(e.to_string()),
        ),
    };
    ctx.record(report, Step::ran(Side::Host, command, output, error, ms));
    measured
}

fn build_image(ctx: &Context, report: &mut LessonReport, context: &Path) -> Measured<f64> {
    Measured::from_result(
        ctx.build_image(report, context, DOCKERFILE, TAG, false)
            .map(|b| b.ms),
    )
}

/// `vm run -d --network bridge -p PORT:5432 -e POSTGRES_PASSWORD=... postgres`,
/// then psql from the host until it answers, the same queries timed, and
/// the VM stopped.
fn serve_vm(
    ctx: &Context,
    report: &mut LessonReport,
    target: &Target,
    runs: usize,
) -> Measured<VmDb> {
    let image = match ctx.image(TAG) {
        Ok(i) => i,
        Err(e) => return Measured::failed(e.to_string()),
    };
    let host_port = match crate::measure::http::free_port() {
        Ok(p) => p,
        Err(e) => return Measured::failed(format!("no free port: {e}")),
    };
    let target = Target {
        port: host_port,
        ..target.clone()
    };
    let opts = RunOptions {
        env: vec![format!("POSTGRES_PASSWORD={PASSWORD}")],
        ..published(None, host_port, COURSE_PORT)
    };
    let ready_timeout = if ctx.emulated() {
        VM_READY_TIMEOUT_EMULATED
    } else {
        READY_TIMEOUT
    };
    let mut req = ctx.vm_request(TAG, &image, &opts, VM_MEMORY_MIB);
    req.run_timeout = READY_CAP + Duration::from_secs(120);
    if let Err(why) = ctx.prepare_vm(&req) {
        return Measured::failed(why);
    }
    if ctx.emulated() {
        ctx.say.note(&format!(
            "(under software emulation a kernel boot and initdb take minutes; the lesson waits up to {} s)",
            ready_timeout.as_secs()
        ));
    }
    let served = ctx.vm_serving(report, &req, |s| {
        // the guest's console moves while it boots and initdb runs
        let patience = Patience {
            idle: ready_timeout,
            cap: READY_CAP,
        };
        let ready_ms = target.wait_ready(
            s.started,
            patience,
            || s.running(),
            || s.output().len() as u64,
        )?;
        let answer = target
            .run(&["-c", "select version()"], Duration::from_secs(30))?
            .output;
        ctx.show(Side::Host, &target.shown(&["-c", "select version()"]));
        ctx.say.output(&answer);
        Ok((
            ready_ms,
            answer,
            timed_queries(&target),
            round_trips(&target, runs),
        ))
    });
    match served {
        Measured::Value(v) => {
            let (ready_ms, answer, query, round_trip) = v.found;
            Measured::Value(VmDb {
                host_port,
                ready_ms,
                answer,
                query,
                round_trip,
                process_rss: v.run.memory.process_rss,
                guest_resident: v.run.memory.guest_resident,
                configured_bytes: v.run.memory.configured_bytes,
                emulated: v.run.emulated,
            })
        }
        Measured::Failed(why) => Measured::Failed(why),
    }
}

/// `name`, or `name-XXXX` when a container of that name already exists.
fn free_name(ctx: &Context, name: &str) -> String {
    if Container::find(&ctx.store, name).is_err() {
        return name.to_string();
    }
    let other = format!("{name}-{}", twinbox_engine::util::id::random_hex(2));
    ctx.say.note(&format!(
        "(a container named {name} already exists here; this run uses {other})"
    ));
    other
}

/// `name`, or `name-XXXX` when a volume of that name already exists (the
/// lesson removes its own volume at the end and never touches another).
fn free_volume(ctx: &Context, name: &str) -> String {
    if twinbox_engine::volume::find(&ctx.store, name).is_err() {
        return name.to_string();
    }
    let other = format!("{name}-{}", twinbox_engine::util::id::random_hex(2));
    ctx.say.note(&format!(
        "(a volume named {name} already exists here; this run uses {other} and leaves {name} alone)"
    ));
    other
}

/// One psql call from the host, shown and recorded; its output on success.
fn query_step(
    ctx: &Context,
    report: &mut LessonReport,
    target: &Target,
    sql: &str,
) -> Result<String, String> {
    let shown = target.shown(&["-c", sql]);
    let result = target.run(&["-c", sql], Duration::from_secs(30));
    let text = match &result {
        Ok(a) => a.output.clone(),
        Err(e) => format!("{e}\n"),
    };
    ctx.show(Side::Host, &shown);
    ctx.say.output(&text);
    report.steps.push(Step {
        side: Side::Host,
        command: shown,
        output: text,
        exit_code: Some(if result.is_ok() { 0 } else { 1 }),
        error: result.as_ref().err().cloned(),
        duration_ms: result.as_ref().ok().map(|a| a.wall_ms),
    });
    result.map(|a| a.output)
}

/// `twinbox run -d` the server, wait until it answers, `ps`, query it (and
/// `work` on it), time queries, sample memory, `stop` it by id, `rm` it.
#[allow(clippy::too_many_arguments)]
fn serve(
    ctx: &Context,
    report: &mut LessonReport,
    target: &Target,
    name: &str,
    volume: &str,
    first: bool,
    runs: usize,
    work: impl FnOnce(&Context, &mut LessonReport) -> Result<(), String>,
) -> Measured<Served> {
    let volume_spec = match parse_volume(&format!("{volume}:{DATA}")) {
        Ok(v) => v,
        Err(e) => return Measured::failed(e.to_string()),
    };
    let opts = RunOptions {
        name: Some(name.to_string()),
        // the password only matters on the first start; the course passes
        // it every time, and so does this lesson
        env: vec![format!("POSTGRES_PASSWORD={PASSWORD}")],
        volumes: vec![volume_spec],
        ..published(None, target.port, COURSE_PORT)
    };
    let t0 = Instant::now();
    let mut d = match ctx.detached(report, TAG, &opts) {
        Ok(d) => d,
        Err(e) => return Measured::failed(format!("run -d: {e}")),
    };
    let patience = Patience {
        idle: READY_TIMEOUT,
        cap: READY_CAP,
    };
    let ready = target.wait_ready(t0, patience, || d.is_running(), || progress_of(&d));
    let log = d.new_output();
    ctx.host_step(
        report,
        &format!("twinbox logs {name}"),
        &last_lines(&log, if first { 12 } else { 6 }),
    );
    let ready_ms = match ready {
        Ok(ms) => ms,
        Err(why) => {
            let _ = stop_and_remove(ctx, report, d, name);
            return Measured::Failed(why);
        }
    };
    ctx.host_step(report, "twinbox ps", &ps_table(ctx));
    let answer = match query_step(ctx, report, target, "select version()") {
        Ok(a) => a,
        Err(why) => {
            let _ = stop_and_remove(ctx, report, d, name);
            return Measured::Failed(why);
        }
    };
    if let Err(why) = work(ctx, report) {
        let _ = stop_and_remove(ctx, report, d, name);
        return Measured::Failed(why);
    }
    let query = timed_queries(target);
    let round_trip = round_trips(target, runs);
    let cgroup_bytes = d.cgroup_usage().and_then(|u| u.memory_bytes);
    let supervisor_rss = d.supervisor_memory().map(|m| m.rss);
    let (stop_ms, exit_code) = match stop_and_remove(ctx, report, d, name) {
        Ok(x) => x,
        Err(why) => return Measured::Failed(why),
    };
    Measured::Value(Served {
        container: name.to_string(),
        ready_ms,
        answer,
        query,
        round_trip,
        cgroup_bytes,
        supervisor_rss,
        stop_ms: Some(stop_ms),
        exit_code,
    })
}

/// A counter that moves while the container works: its log's size plus the
/// CPU time its cgroup used.
fn progress_of(d: &Detached) -> u64 {
    let log = std::fs::metadata(d.container.log_path()).map_or(0, |m| m.len());
    let cpu = d.cgroup_usage().and_then(|u| u.cpu_usage_ns).unwrap_or(0);
    log.wrapping_add(cpu)
}

/// `twinbox stop ID` then `twinbox rm NAME`.
fn stop_and_remove(
    ctx: &Context,
    report: &mut LessonReport,
    d: Detached,
    name: &str,
) -> Result<(f64, Option<i32>), String> {
    let id = d.container.short_id();
    let t0 = Instant::now();
    let stopped = lifecycle::stop(&d.container, Duration::from_secs(10));
    let stop_ms = t0.elapsed().as_secs_f64() * 1000.0;
    ctx.host_step(report, &format!("twinbox stop {id}"), &format!("{id}\n"));
    let end = ctx.finish_detached(report, d, RUN_TIMEOUT);
    stopped.map_err(|e| format!("stop: {e}"))?;
    let end = end.map_err(|e| format!("rm: {e}"))?;
    ctx.host_step(report, &format!("twinbox rm {name}"), &format!("{name}\n"));
    Ok((stop_ms, end.exit_code))
}

/// psql's own timing of a small query, TIMED_QUERIES times on one connection.
fn timed_queries(target: &Target) -> Option<Stats> {
    let mut args: Vec<&str> = vec!["-c", "\\timing on"];
    for _ in 0..TIMED_QUERIES {
        args.extend(["-c", "select count(*) from pg_class"]);
    }
    let a = target.run(&args, Duration::from_secs(30)).ok()?;
    Stats::of(&psql::timings(&a.output))
}

/// Whole psql calls (connect, authenticate, one query, exit), `runs` times.
fn round_trips(target: &Target, runs: usize) -> Option<Stats> {
    let samples: Vec<f64> = (0..runs)
        .filter_map(|_| {
            target
                .run(&["-tAc", "select 1"], Duration::from_secs(30))
                .ok()
                .map(|a| a.wall_ms)
        })
        .collect();
    Stats::of(&samples)
}

/// What `twinbox ps` shows, from the same records.
fn ps_table(ctx: &Context) -> String {
    let mut out = format!(
        "{:<14}{:<10}{:<12}{:<26}{}\n",
        "CONTAINER ID", "IMAGE", "STATUS", "PORTS", "NAMES"
    );
    for c in Container::list(&ctx.store).unwrap_or_default() {
        let Ok(s) = c.state() else { continue };
        if s.status != twinbox_engine::container::Status::Running {
            continue;
        }
        let ports: Vec<String> = c
            .options
            .ports
            .iter()
            .map(|p| {
                format!(
                    "0.0.0.0:{}->{}/{}",
                    p.host_port, p.container_port, p.protocol
                )
            })
            .collect();
        out.push_str(&format!(
            "{:<14}{:<10}{:<12}{:<26}{}\n",
            c.short_id(),
            c.image,
            "Up",
            ports.join(", "),
            c.name
        ));
    }
    out
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

/// Act two: the two starts side by side, the query's latency, the memory.
fn present(m: &Measurements, report: &mut LessonReport) {
    let first = m.first.as_ref();
    let second = m.second.as_ref();
    let vm_query: Measured<Stats> = match m.vm.measured(|v| v.query.clone()) {
        Measured::Value(Some(s)) => Measured::Value(s),
        Measured::Value(None) => Measured::failed("not timed"),
        Measured::Failed(why) => Measured::Failed(why),
    };
    let emulated = m.vm.value().is_some_and(|v| v.emulated);
    let mark = if emulated { " (emulated)" } else { "" };
    let mut t = Table::new(
        "the database, container and microVM",
        &["", "container", "microVM"],
    );
    t.row(vec![
        "first start (initdb) until it accepts connections".into(),
        first.clone().map(|s| format_ms(s.ready_ms)).into(),
        m.vm.cell(|v| format!("{}{mark} (boot included)", format_ms(v.ready_ms))),
    ]);
    t.row(vec![
        "start on the existing volume until it accepts connections".into(),
        second.clone().map(|s| format_ms(s.ready_ms)).into(),
        "no volume: the VM's data is in its own RAM".into(),
    ]);
    t.row(vec![
        format!("one query (psql \\timing, {TIMED_QUERIES} on one connection)").into(),
        first
            .clone()
            .map(|s| s.query.as_ref().map_or("not timed".into(), Stats::describe))
            .into(),
        m.vm.cell(|v| {
            v.query
                .as_ref()
                .map_or("not timed".into(), |q| format!("{}{mark}", q.describe()))
        }),
    ]);
    t.row(vec![
        "a whole psql call from the host (connect, log in, query, exit)".into(),
        first
            .clone()
            .map(|s| {
                s.round_trip
                    .as_ref()
                    .map_or("not timed".into(), Stats::describe)
            })
            .into(),
        m.vm.cell(|v| {
            v.round_trip
                .as_ref()
                .map_or("not timed".into(), |q| format!("{}{mark}", q.describe()))
        }),
    ]);
    t.row(vec![
        "memory (container: cgroup + supervisor RSS; VM: its process's RSS)".into(),
        first.clone().map(memory_text).into(),
        m.vm.cell(|v| vm_memory_text(&v.process_rss, &v.guest_resident, v.configured_bytes)),
    ]);
    t.row(vec![
        "stop until the server exited".into(),
        first
            .clone()
            .map(|s| s.stop_ms.map_or("not timed".into(), format_ms))
            .into(),
        m.vm.cell(|_| "stopped by the lesson (not timed)".into()),
    ]);
    report.tables.push(t);

    let ready = |m: &Measured<&Served>| -> Measured<f64> { m.clone().map(|s| s.ready_ms) };
    report.charts.push(Chart {
        title: "time from run -d until the database answers a query".into(),
        unit: crate::report::Unit::Milliseconds,
        bars: vec![
            charts::bar(
                "container, first start (initdb)",
                Side::Container,
                ready(&first),
                None,
            ),
            charts::bar(
                "container, start on the volume",
                Side::Container,
                ready(&second),
                None,
            ),
            charts::bar(
                "microVM, first start (boot and initdb)",
                Side::Vm,
                m.vm.measured(|v| v.ready_ms),
                None,
            ),
        ],
        note: charts::emulation_note(emulated),
    });
    let query: Measured<Stats> = match first.clone().map(|s| s.query.clone()) {
        Measured::Value(Some(s)) => Measured::Value(s),
        Measured::Value(None) => Measured::failed("not timed"),
        Measured::Failed(why) => Measured::Failed(why),
    };
    report.charts.push(charts::timing(
        "one query's latency, timed by psql",
        &query,
        &vm_query,
        emulated,
    ));
}

fn memory_text(s: &Served) -> String {
    match (s.cgroup_bytes, s.supervisor_rss) {
        (Some(c), Some(r)) => format!(
            "{} ({} cgroup + {} supervisor)",
            format_bytes(c + r),
            format_bytes(c),
            format_bytes(r)
        ),
        _ => "not sampled".into(),
    }
}

/// Act three: what the numbers say.
fn explain(m: &Measurements, report: &mut LessonReport) {
    if let (Some(a), Some(b)) = (m.first.value(), m.second.value()) {
        report.findings.push(format!(
            "The first container accepted connections {} after `run -d`: its entrypoint ran initdb, set the password, started a server on its Unix socket only, and then the real one. The second container, on the same volume, found a cluster in PGDATA and only started the server: {}{}.",
            format_ms(a.ready_ms),
            format_ms(b.ready_ms),
            if b.ready_ms < a.ready_ms {
                format!(", {:.1}x faster", a.ready_ms / b.ready_ms.max(0.001))
            } else {
                " (not faster this time: the machine was busy)".into()
            }
        ));
        if let Some(q) = &a.query {
            report.findings.push(format!(
                "From the host, through the published port {} (sent on to the container's address on the bridge), one query took {} as psql timed it; a whole psql call, connecting and logging in each time, took {}.",
                m.port,
                q.describe(),
                a.round_trip.as_ref().map_or("not timed".into(), Stats::describe)
            ));
        }
        report.findings.push(format!(
            "The server used {} while it ran. `stop` sent SIGTERM and the server shut down cleanly in {} (exit code {}).",
            memory_text(a),
            a.stop_ms.map_or("?".into(), format_ms),
            a.exit_code.map_or("unknown".into(), |c| c.to_string())
        ));
    }
    if let Some(row) = m.survived.value() {
        report.findings.push(format!(
            "The first container was removed, but its data was in the volume {}: the second container read back {:?} from the table the first one wrote.",
            m.volume,
            row.lines().nth(2).unwrap_or(row).trim()
        ));
    }
    if let (Some(c), Some(v)) = (m.first.value(), m.vm.value()) {
        report.findings.push(format!(
            "The same image in a microVM accepted connections {} after it was asked for{} (a kernel boot, then the same initdb and server start), against {} for the container. One query took {} in the VM against {} in the container; the VM held {}, the container {}.",
            format_ms(v.ready_ms),
            if v.emulated { ", under software emulation" } else { "" },
            format_ms(c.ready_ms),
            v.query.as_ref().map_or("(not timed)".into(), Stats::describe),
            c.query.as_ref().map_or("(not timed)".into(), Stats::describe),
            vm_memory_text(&v.process_rss, &v.guest_resident, v.configured_bytes),
            memory_text(c)
        ));
    }
    if let Some(f) = m.vm.not_here_finding("The same database in a microVM") {
        report.findings.push(f);
    }
    if m.vm.value().is_some() {
        report.caveats.push(
            "The VM's data directory is inside the guest (its root lives in guest RAM): it goes with the VM. A VM keeps data across restarts on a disk (`vm run --disk`), the VM's counterpart of a volume."
                .into(),
        );
    }
    if !m.course_port {
        report.caveats.push(format!(
            "Port {COURSE_PORT} was taken on this host, so the server was published on {} instead; everything else is as the course has it.",
            m.port
        ));
    }
    report.caveats.push(
        "The image is not the official one from Docker Hub: it is built from this host's PostgreSQL packages with busybox as its userland, and its entrypoint is a shell script that keeps the official one's contract (variables, init scripts, the postgres user). The server program is the same Debian build either way."
            .into(),
    );
    report.caveats.push(
        "The first start includes initdb, which writes and syncs a few megabytes: on a busy or slow disk it dominates the time until the first answer."
            .into(),
    );
    let survived = m
        .survived
        .value()
        .map(|r| r.contains("the first container"));
    report.fact("base_image", &m.base_built);
    report.fact("build_ms", &m.build_ms);
    report.fact("port", m.port);
    report.fact("course_port", m.course_port);
    report.fact("volume", &m.volume);
    report.fact("container", &m.first);
    report.fact("container_on_the_volume", &m.second);
    report.fact("data_survived", survived);
    report.fact("vm", m.vm.fact());
}

/// The exercise as a student types it, one step at a time, each with the
/// check of what it should have done. `vm_port` is where the microVM step
/// publishes the same server.
pub fn guided_steps(port: u16, vm_port: u16) -> Guided {
    let note = if port == COURSE_PORT {
        String::new()
    } else {
        format!(
            "\n\n(port {COURSE_PORT} is taken on this host: these steps publish on {port} instead)"
        )
    };
    let psql_cmd = |p: u16, sql: &str| {
        format!(
            "PGPASSWORD={PASSWORD} psql -h 0.0.0.0 -p {p} -U postgres -c {}",
            crate::shell::quote(sql)
        )
    };
    let run_cmd = format!(
        "twinbox run --name psql -e POSTGRES_PASSWORD={PASSWORD} -v pgdata:{DATA} -p {port}:{COURSE_PORT} -d {TAG}"
    );
    let vm_not_here = twinbox_microvm::instance::check_host(false)
        .err()
        .map(|e| format!("twinbox's VMM cannot boot a kernel here ({e})"));
    let step = |expect: &str, command: String, check: crate::guided::Check| GuidedStep {
        expect: expect.to_string(),
        command,
        check,
        not_here: None,
    };
    let steps = vec![
        step(
            "a base image from this host's PostgreSQL and busybox (no registry): prints postgres-base:latest and its id",
            "twinbox image bootstrap postgres".into(),
            Box::new(|store| image_there(store, postgres::DEFAULT_NAME)),
        ),
        step(
            "the build context: the official image's setup on top of the base (checked by the build)",
            format!(
                "mkdir -p postgres && cd postgres\ncat > Dockerfile <<'EOF'\n{DOCKERFILE}EOF\ncat > docker-entrypoint.sh <<'EOF'\n{ENTRYPOINT}EOF\nchmod +x docker-entrypoint.sh"
            ),
            Box::new(|_| Checked::Ok("nothing to check yet: the next step reads these files".into())),
        ),
        step(
            "three steps; `twinbox images` now lists postgres",
            format!("twinbox build -t {TAG} ."),
            Box::new(|store| image_there(store, TAG)),
        ),
        step(
            "prints the new container's id",
            run_cmd.clone(),
            Box::new(move |store| within(Duration::from_secs(10), || running(store, "psql", port))),
        ),
        step(
            "psql is Up, with 0.0.0.0:PORT->5432/tcp",
            "twinbox ps".into(),
            Box::new(move |store| running(store, "psql", port)),
        ),
        step(
            "initdb's output, then \"database system is ready to accept connections\"",
            "twinbox logs psql".into(),
            Box::new(|store| {
                within(READY_TIMEOUT, || {
                    logged(store, "psql", "ready to accept connections")
                })
            }),
        ),
        step(
            "PostgreSQL's version, answered through the published port",
            psql_cmd(port, "select version()"),
            Box::new(move |_| answers(port, "select version()", "PostgreSQL", READY_TIMEOUT)),
        ),
        step(
            "INSERT 0 1",
            psql_cmd(port, "create table visits (id serial primary key, who text); insert into visits (who) values ('the first container')"),
            Box::new(move |_| answers(port, "select who from visits", "the first container", Duration::from_secs(10))),
        ),
        step(
            "with the id from the first column of `twinbox ps` (the name psql works too); `twinbox ps -a` then shows it Exited (0)",
            "twinbox stop $(twinbox ps -q --filter name=^psql$)".into(),
            Box::new(|store| within(Duration::from_secs(20), || stopped(store, "psql"))),
        ),
        step(
            "the container is gone; the volume pgdata is not (`twinbox volume ls`)",
            "twinbox rm psql".into(),
            Box::new(|store| match (Container::find(store, "psql"), twinbox_engine::volume::find(store, "pgdata")) {
                (Ok(c), _) => Checked::Wrong(format!("container psql ({}) is still there", c.short_id())),
                (Err(_), Ok(_)) => Checked::Ok("psql is gone, the volume pgdata is still there".into()),
                (Err(_), Err(_)) => Checked::Wrong("the volume pgdata is gone too: it was not given with -v pgdata:...".into()),
            }),
        ),
        step(
            "a new container on the same volume: no initdb this time",
            run_cmd,
            Box::new(move |store| within(Duration::from_secs(10), || running(store, "psql", port))),
        ),
        step(
            "the row the first container wrote (the first call may need a second while the server starts)",
            psql_cmd(port, "select who from visits"),
            Box::new(move |_| answers(port, "select who from visits", "the first container", READY_TIMEOUT)),
        ),
        step(
            "cleans up",
            "twinbox rm -f psql && twinbox volume rm pgdata".into(),
            Box::new(|store| match (Container::find(store, "psql"), twinbox_engine::volume::find(store, "pgdata")) {
                (Err(_), Err(_)) => Checked::Ok("no container psql, no volume pgdata".into()),
                (Ok(_), _) => Checked::Wrong("container psql is still there".into()),
                (_, Ok(_)) => Checked::Wrong("volume pgdata is still there".into()),
            }),
        ),
        GuidedStep {
            not_here: vm_not_here.clone(),
            ..step(
                "the same image as a microVM, its port published (a kernel boot, then the same initdb)",
                format!(
                    "twinbox vm run -d --name psql-vm -m 768m --network bridge -e POSTGRES_PASSWORD={PASSWORD} -p {vm_port}:{COURSE_PORT} {TAG}"
                ),
                Box::new(move |_| answers(vm_port, "select 1", "1", Duration::from_secs(300))),
            )
        },
        GuidedStep {
            not_here: vm_not_here,
            ..step(
                "the same query, answered by the microVM",
                psql_cmd(vm_port, "select version()"),
                Box::new(move |_| answers(vm_port, "select version()", "PostgreSQL", Duration::from_secs(30))),
            )
        },
        GuidedStep {
            not_here: twinbox_microvm::instance::check_host(false)
                .err()
                .map(|e| format!("twinbox's VMM cannot boot a kernel here ({e})")),
            ..step(
                "the VM is gone",
                "twinbox vm rm -f psql-vm".into(),
                Box::new(|store| match twinbox_microvm::instance::list(store) {
                    Ok(vms) if vms.iter().any(|v| v.name == "psql-vm") => {
                        Checked::Wrong("VM psql-vm is still there".into())
                    }
                    Ok(_) => Checked::Ok("no VM psql-vm".into()),
                    Err(e) => Checked::Wrong(format!("cannot list VMs: {e}")),
                }),
            )
        },
    ];
    Guided {
        intro: format!(
            "The course's database exercise, step by step (or run it all with `twinbox lesson exercise`).{note}"
        ),
        steps,
    }
}

fn image_there(store: &twinbox_engine::store::Store, name: &str) -> Checked {
    match twinbox_engine::image::Image::resolve(store, name) {
        Ok(i) => Checked::Ok(format!("image {name} is in the store ({})", i.id)),
        Err(e) => Checked::Wrong(format!("no image {name} yet ({e})")),
    }
}

/// The container `name` runs and publishes `port` to 5432.
fn running(store: &twinbox_engine::store::Store, name: &str, port: u16) -> Checked {
    let c = match Container::find(store, name) {
        Ok(c) => c,
        Err(_) => {
            return Checked::Wrong(format!(
                "no container named {name} (`twinbox ps -a` lists them)"
            ))
        }
    };
    let status = match c.state() {
        Ok(s) => s.status,
        Err(e) => return Checked::Wrong(format!("cannot read {name}'s state: {e}")),
    };
    if status != twinbox_engine::container::Status::Running {
        return Checked::Wrong(format!(
            "{name} exists but is {status}: `twinbox logs {name}` says why"
        ));
    }
    if !c
        .options
        .ports
        .iter()
        .any(|p| p.host_port == port && p.container_port == COURSE_PORT)
    {
        return Checked::Wrong(format!(
            "{name} runs but does not publish {port}:{COURSE_PORT} (-p)"
        ));
    }
    Checked::Ok(format!(
        "{name} ({}) is running, 0.0.0.0:{port}->{COURSE_PORT}/tcp",
        c.short_id()
    ))
}

fn logged(store: &twinbox_engine::store::Store, name: &str, needle: &str) -> Checked {
    let Ok(c) = Container::find(store, name) else {
        return Checked::Wrong(format!("no container named {name}"));
    };
    let log: String = twinbox_engine::container::logs::read_log(&c.log_path())
        .into_iter()
        .map(|l| l.log)
        .collect();
    if log.contains(needle) {
        Checked::Ok(format!("the log says \"{needle}\""))
    } else {
        Checked::Wrong(format!("the log does not say \"{needle}\" yet"))
    }
}

fn stopped(store: &twinbox_engine::store::Store, name: &str) -> Checked {
    let Ok(c) = Container::find(store, name) else {
        return Checked::Wrong(format!(
            "no container named {name}: stop keeps it, rm removes it"
        ));
    };
    match c.state() {
        Ok(s) if s.status == twinbox_engine::container::Status::Running => {
            Checked::Wrong(format!("{name} is still running"))
        }
        Ok(s) => Checked::Ok(format!(
            "{name} is {}, exit code {}",
            s.status,
            s.exit_code.map_or("unknown".into(), |c| c.to_string())
        )),
        Err(e) => Checked::Wrong(format!("cannot read {name}'s state: {e}")),
    }
}

/// psql as the course types it: `psql -h 0.0.0.0 -p PORT -U postgres`, with
/// the exercise's password.
fn course_target(client: std::path::PathBuf, port: u16) -> Target {
    Target {
        client,
        host: "0.0.0.0".into(),
        port,
        user: "postgres".into(),
        password: PASSWORD.into(),
    }
}

/// psql from the host on `port` answers `sql` with something holding `want`.
fn answers(port: u16, sql: &str, want: &str, timeout: Duration) -> Checked {
    let Some(client) = psql::find_client() else {
        return Checked::Wrong("no psql on this host: apt-get install postgresql-client".into());
    };
    let target = course_target(client, port);
    within(timeout, || {
        match target.run(&["-tAc", sql], Duration::from_secs(10)) {
            Ok(a) if a.output.contains(want) => Checked::Ok(format!(
                "psql on port {port} answered: {}",
                a.output.lines().next().unwrap_or("").trim()
            )),
            Ok(a) => Checked::Wrong(format!(
                "psql on port {port} answered {:?}",
                a.output.trim()
            )),
            Err(e) => Checked::Wrong(format!("psql on port {port}: {e}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_the_course_commands() {
        let student_steps = |p: u16| guided_steps(p, p + 1).text();
        let s = student_steps(5432);
        assert!(s.contains(
            "twinbox run --name psql -e POSTGRES_PASSWORD=mysecretpassword -v pgdata:/var/lib/postgresql/data -p 5432:5432 -d postgres"
        ));
        assert!(s.contains("psql -h 0.0.0.0 -p 5432 -U postgres -c 'select version()'"));
        assert!(!s.contains("taken on this host"));
        let other = student_steps(15999);
        assert!(other.contains("-p 15999:5432"));
        assert!(other.contains("taken on this host"));
    }
}
