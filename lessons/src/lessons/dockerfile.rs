//! dockerfile: Dockerfile → image → container. The course's small web app
//! (shipped in lessons/app/) is built from the offline busybox image, rebuilt
//! unchanged (all cached) and after an edit (only the last step reruns), run
//! with `-d -p`, and its page fetched from the host.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use twinbox_engine::image::inspect::history;

use super::vm_serving::{vm_memory_text, VmHalf};
use super::{three_acts, Lesson};
use crate::charts;
use crate::context::{
    boot_timeout, published, BuildDir, Context, BUSYBOX, RUN_TIMEOUT, VM_MEMORY_MIB,
};
use crate::measure::http;
use crate::report::{
    format_bytes, format_ms, Cell, Chart, LessonReport, Measured, Side, Table, Unit,
};
use crate::LessonError;

pub struct DockerfileLesson;

const DOCKERFILE: &str = include_str!("../../app/Dockerfile");
const APP: &str = include_str!("../../app/app.sh");
/// What the edit adds to the app before the third build.
const EDIT: &str = "echo \"version 2: edited after the first build\"\n";
const TAG: &str = "lessons/course-app:latest";
const APP_PORT: u16 = 8000;
const PATH: &str = "/cgi-bin/app";

impl Lesson for DockerfileLesson {
    fn name(&self) -> &'static str {
        "dockerfile"
    }

    fn title(&self) -> &'static str {
        "Dockerfile → image → container: the course's web app"
    }

    fn summary(&self) -> &'static str {
        "build the course app (cold, cached, after an edit), run it with -d -p, fetch its page from the host"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A Dockerfile is a recipe: start FROM an image, RUN commands in it, COPY files \
             in, and set how the result starts (ENV, EXPOSE, CMD). `build` follows it step by \
             step; every step that changes files becomes a layer, and the others only write \
             metadata into the image's config. The finished image is a list of layers plus \
             that config: a class, from which `run` makes objects (containers).",
            "Each step is remembered by what it did and what it was given (the command, the \
             files copied, the steps before it). Building again with nothing changed reuses \
             every step; change one file, and only the steps from the first one that sees \
             the change run again. That is why a Dockerfile copies the app's code as late as \
             it can.",
            "The course's app is a Flask program; here the same one-page app is a small CGI \
             script served by busybox's httpd, so it builds without downloading anything. It \
             is built three times, started with `run -d -p`, and its page fetched from the \
             host through the published port.",
            "Then the same image runs as a microVM (`vm run -d --network bridge -p`): the \
             image's layers become the guest's root, its own kernel boots, and the same CMD \
             starts the same server behind a virtio-net card on the same bridge. The page is \
             fetched from the host the same way, and both halves are timed to their first \
             answered request and measured for memory.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// One `twinbox build`.
#[derive(Debug, Clone, Serialize)]
struct Build {
    what: &'static str,
    ms: f64,
    steps: usize,
    cached: usize,
    /// The steps that ran (not taken from the cache), as BuildKit labels them.
    ran: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Served {
    /// From `run -d` to the first answered request.
    first_answer_ms: f64,
    page: String,
    host_port: u16,
    cgroup_bytes: Option<u64>,
    supervisor_rss: Option<u64>,
}

/// The same image served by a microVM.
#[derive(Debug, Clone, Serialize)]
struct VmServedApp {
    /// From asking for the VM (before its VMM exists) to the first answer.
    first_answer_ms: f64,
    page: String,
    host_port: u16,
    /// The VM process's resident set while it served (QEMU's, or the
    /// lesson's own with twinbox's VMM in it), and the guest RAM in it.
    process_rss: Measured<u64>,
    guest_resident: Measured<u64>,
    configured_bytes: u64,
    emulated: bool,
}

struct Measurements {
    builds: Vec<Measured<Build>>,
    layers: Vec<(String, u64, bool)>,
    served: Measured<Served>,
    vm: VmHalf<VmServedApp>,
}

/// Act one: three builds, then the app served and fetched.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    ctx.image(BUSYBOX)?;
    let dir = BuildDir::new(
        "app",
        &[("Dockerfile", DOCKERFILE, 0o644), ("app.sh", APP, 0o755)],
    )?;
    let context = dir.path.clone();
    ctx.host_step(report, "cat Dockerfile", DOCKERFILE);
    ctx.host_step(report, "cat app.sh", APP);

    let mut builds = Vec::new();
    ctx.say.heading("the first build: every step runs");
    builds.push(build_once(ctx, report, &context, "cold", true));
    ctx.say.heading("the same build again, nothing changed");
    builds.push(build_once(ctx, report, &context, "unchanged", false));
    ctx.say.heading("after editing the app");
    let edited = format!("{APP}{EDIT}");
    dir.write("app.sh", &edited, 0o755)?;
    ctx.host_step(report, &format!("echo '{}' >> app.sh", EDIT.trim_end()), "");
    builds.push(build_once(ctx, report, &context, "after the edit", false));

    let layers = match ctx.image(TAG) {
        Ok(image) => {
            let rows = history(&ctx.store, &image);
            ctx.host_step(
                report,
                &format!("twinbox history {TAG}"),
                &rows
                    .iter()
                    .map(|r| format!("{:>10}  {}\n", format_bytes(r.size), r.created_by))
                    .collect::<String>(),
            );
            rows.into_iter()
                .map(|r| (r.created_by, r.size, r.empty_layer))
                .collect()
        }
        Err(_) => Vec::new(),
    };

    ctx.say
        .heading("run it, publish its port, fetch the page from the host");
    let served = if builds.iter().all(|b| b.value().is_some()) {
        serve(ctx, report)
    } else {
        Measured::failed("the image was not built")
    };
    for (i, b) in builds.iter().enumerate() {
        report.check(&format!("build {}", i + 1), b);
    }
    ctx.say
        .heading("the same image as a microVM, its port published, the page fetched");
    let vm = if served.value().is_none() {
        VmHalf::Failed("the container half did not serve the image".into())
    } else if let Some(why) = ctx.vm_cannot_serve() {
        ctx.say.note(&format!("not run here: {why}."));
        VmHalf::NotHere(why)
    } else {
        VmHalf::from_measured(serve_vm(ctx, report))
    };
    report.check("the app's page from the host", &served);
    if let VmHalf::Failed(why) = &vm {
        report.check::<()>("the app's page from the microVM", &Measured::failed(why));
    }
    Ok(Measurements {
        builds,
        layers,
        served,
        vm,
    })
}

/// `vm run -d --network bridge -p PORT:8000` of the built image, then GET
/// from the host until it answers; the VM is stopped after.
fn serve_vm(ctx: &Context, report: &mut LessonReport) -> Measured<VmServedApp> {
    let image = match ctx.image(TAG) {
        Ok(i) => i,
        Err(e) => return Measured::failed(e.to_string()),
    };
    let host_port = match http::free_port() {
        Ok(p) => p,
        Err(e) => return Measured::failed(format!("no free port on 127.0.0.1: {e}")),
    };
    let opts = published(None, host_port, APP_PORT);
    let req = ctx.vm_request(TAG, &image, &opts, VM_MEMORY_MIB);
    if let Err(why) = ctx.prepare_vm(&req) {
        return Measured::failed(why);
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    let served = ctx.vm_serving(report, &req, |s| {
        let page = http::get_until(addr, PATH, boot_timeout(), || s.running())?.text();
        let first_answer_ms = s.elapsed_ms();
        ctx.say.output(&page);
        Ok((page, first_answer_ms))
    });
    let url = format!("http://127.0.0.1:{host_port}{PATH}");
    match served {
        Measured::Value(v) => {
            let (page, first_answer_ms) = v.found;
            ctx.host_step(report, &format!("wget -qO- {url}"), &page);
            Measured::Value(VmServedApp {
                first_answer_ms,
                page,
                host_port,
                process_rss: v.run.memory.process_rss,
                guest_resident: v.run.memory.guest_resident,
                configured_bytes: v.run.memory.configured_bytes,
                emulated: v.run.emulated,
            })
        }
        Measured::Failed(why) => Measured::Failed(why),
    }
}

fn build_once(
    ctx: &Context,
    report: &mut LessonReport,
    context: &Path,
    what: &'static str,
    no_cache: bool,
) -> Measured<Build> {
    match ctx.build_image(report, context, DOCKERFILE, TAG, no_cache) {
        Ok(b) => Measured::Value(Build {
            what,
            ms: b.ms,
            steps: b.steps,
            cached: b.cached,
            ran: ran_steps(&b.lines),
        }),
        Err(why) => Measured::Failed(why),
    }
}

/// The labels of the steps that ran, from the recorder's lines: a step is
/// started, then either reported cached or done.
fn ran_steps(lines: &[String]) -> Vec<String> {
    let mut started: Vec<(String, String)> = Vec::new();
    let mut cached: Vec<String> = Vec::new();
    for l in lines {
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
        if text == "CACHED" {
            cached.push(id.to_string());
        } else if text.starts_with('[') && !text.contains("] FROM ") {
            // a Dockerfile step ("[2/4] RUN ..."); FROM and exporting are not
            started.push((id.to_string(), text.to_string()));
        }
    }
    started
        .into_iter()
        .filter(|(id, _)| !cached.contains(id))
        .map(|(_, label)| label)
        .collect()
}

/// `run -d -p 127.0.0.1:PORT:8000`, then GET until it answers.
fn serve(ctx: &Context, report: &mut LessonReport) -> Measured<Served> {
    let host_port = match http::free_port() {
        Ok(p) => p,
        Err(e) => return Measured::failed(format!("no free port on 127.0.0.1: {e}")),
    };
    let opts = published(Some(Ipv4Addr::LOCALHOST.into()), host_port, APP_PORT);
    let t0 = Instant::now();
    let d = match ctx.detached(report, TAG, &opts) {
        Ok(d) => d,
        Err(e) => return Measured::failed(format!("run -d -p: {e}")),
    };
    let url = format!("http://127.0.0.1:{host_port}{PATH}");
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    let answer =
        http::get_until(addr, PATH, Duration::from_secs(30), || d.is_running()).map(|a| a.text());
    let first_answer_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let cgroup_bytes = d.cgroup_usage().and_then(|u| u.memory_bytes);
    let supervisor_rss = d.supervisor_memory().map(|m| m.rss);
    let shown = match &answer {
        Ok(page) => page.clone(),
        Err(why) => format!("failed: {why}\n"),
    };
    ctx.host_step(report, &format!("wget -qO- {url}"), &shown);
    let stop = d.stop();
    let end = ctx.finish_detached(report, d, RUN_TIMEOUT);
    if let Err(e) = stop
        .map_err(|e| e.to_string())
        .and(end.map(|_| ()).map_err(|e| e.to_string()))
    {
        return Measured::failed(format!("stopping the app: {e}"));
    }
    match answer {
        Ok(page) => Measured::Value(Served {
            first_answer_ms,
            page,
            host_port,
            cgroup_bytes,
            supervisor_rss,
        }),
        Err(why) => Measured::Failed(why),
    }
}

/// Act two: the builds side by side, the layers, the serving numbers.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new(
        "three builds of the same Dockerfile",
        &["build", "time", "steps", "from the cache", "ran"],
    );
    for b in &m.builds {
        match b {
            Measured::Value(b) => t.row(vec![
                b.what.into(),
                format_ms(b.ms).into(),
                b.steps.to_string().into(),
                b.cached.to_string().into(),
                if b.ran.is_empty() {
                    "nothing".to_string()
                } else {
                    b.ran.join("; ")
                }
                .into(),
            ]),
            Measured::Failed(why) => t.row(vec![
                "build".into(),
                Cell::Failed {
                    failed: why.clone(),
                },
                "".into(),
                "".into(),
                "".into(),
            ]),
        };
    }
    report.tables.push(t);
    if !m.layers.is_empty() {
        let mut t = Table::new(
            "the image's history: which steps made layers",
            &["step", "layer"],
        );
        for (by, size, empty) in &m.layers {
            t.row(vec![
                by.clone().into(),
                if *empty {
                    "none (config only)".to_string()
                } else {
                    format_bytes(*size)
                }
                .into(),
            ]);
        }
        report.tables.push(t);
    }
    let mut t = Table::new("the app, served", &["", "container", "microVM"]);
    let s = m.served.as_ref();
    t.row(vec![
        "time from run -d to the first answered request".into(),
        s.clone().map(|s| format_ms(s.first_answer_ms)).into(),
        m.vm.cell(|v| {
            format!(
                "{}{}",
                format_ms(v.first_answer_ms),
                if v.emulated { " (emulated)" } else { "" }
            )
        }),
    ]);
    t.row(vec![
        "memory while serving".into(),
        s.clone()
            .map(|s| match (s.cgroup_bytes, s.supervisor_rss) {
                (Some(c), Some(r)) => format!(
                    "{} ({} cgroup + {} supervisor)",
                    format_bytes(c + r),
                    format_bytes(c),
                    format_bytes(r)
                ),
                _ => "not sampled".into(),
            })
            .into(),
        m.vm.cell(|v| vm_memory_text(&v.process_rss, &v.guest_resident, v.configured_bytes)),
    ]);
    report.tables.push(t);
    report.charts.push(Chart {
        title: "time from run -d to the first answered request".into(),
        unit: Unit::Milliseconds,
        bars: vec![
            charts::bar(
                "container",
                Side::Container,
                s.clone().map(|s| s.first_answer_ms),
                None,
            ),
            charts::bar(
                "microVM",
                Side::Vm,
                m.vm.measured(|v| v.first_answer_ms),
                None,
            ),
        ],
        note: None,
    });
}

/// Act three: what the builds and the page show.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let b: Vec<Option<&Build>> = m.builds.iter().map(|b| b.value()).collect();
    if let [Some(cold), Some(warm), Some(edit)] = b.as_slice() {
        let unchanged = if warm.ran.is_empty() {
            format!(
                "it took {} and took {} of {} steps from the cache (nothing ran)",
                format_ms(warm.ms),
                warm.cached,
                warm.steps
            )
        } else {
            format!(
                "it took {} but ran {} again: the cache should have given every step, and here it did not",
                format_ms(warm.ms),
                warm.ran.join(", ")
            )
        };
        let edited = if edit_reran_only_the_end(cold, edit) {
            format!(
                "{} step(s) came from the cache and only {} ran again, because the COPY of app.sh is the first step that sees the change",
                edit.cached,
                edit.ran.join(", ")
            )
        } else {
            format!(
                "{} step(s) came from the cache and {} ran: not what the cache should do, since only the COPY of app.sh and what follows it see the change",
                edit.cached,
                if edit.ran.is_empty() { "nothing".to_string() } else { edit.ran.join(", ") }
            )
        };
        report.findings.push(format!(
            "The first build (--no-cache) ran {} in {}. Built again unchanged, {unchanged}. After adding one line to app.sh it took {}: {edited}.",
            cold.ran.join(" and "),
            format_ms(cold.ms),
            format_ms(edit.ms),
        ));
    }
    if let Some(s) = m.served.value() {
        report.findings.push(format!(
            "The container answered its first request {} after `run -d`, through 127.0.0.1:{} on the host, published to port {APP_PORT} inside. The page it served: \"{}\".",
            format_ms(s.first_answer_ms),
            s.host_port,
            s.page.lines().next().unwrap_or("").trim()
        ));
    }
    if let (Some(c), Some(v)) = (m.served.value(), m.vm.value()) {
        report.findings.push(format!(
            "The same image as a microVM answered the same page through 127.0.0.1:{} after {}{}, against {} for the container: {}. It held {} against the container's {}.",
            v.host_port,
            format_ms(v.first_answer_ms),
            if v.emulated { " under software emulation" } else { "" },
            format_ms(c.first_answer_ms),
            if v.first_answer_ms > c.first_answer_ms {
                "the VM boots a kernel and its init before the same CMD starts"
            } else {
                "not slower this time, although the VM boots a kernel and its init before the same CMD starts (the container's start was slow on this busy machine)"
            },
            vm_memory_text(&v.process_rss, &v.guest_resident, v.configured_bytes),
            match (c.cgroup_bytes, c.supervisor_rss) {
                (Some(a), Some(b)) => format_bytes(a + b),
                _ => "(not sampled)".into(),
            }
        ));
        let said = |page: &str| {
            page.lines()
                .find(|l| l.contains("served by"))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        report.findings.push(format!(
            "The app says where it runs: \"{}\" from the container, \"{}\" from the microVM. Same image and command; the container's kernel is the host's, the VM's is its own.",
            said(&c.page),
            said(&v.page)
        ));
    }
    if let Some(f) = m.vm.not_here_finding("The same image as a microVM with -p") {
        report.findings.push(f);
    }
    report.caveats.push(
        "The course's app uses Python and Flask; installing them needs a package index. This app keeps the shape (one route, an environment variable, a port) with busybox httpd so that the lesson runs offline."
            .into(),
    );
    report.caveats.push(
        "The first build uses --no-cache so that it is cold even when the lesson ran before; the base image is already in the store, as it would be after a first pull."
            .into(),
    );
    let unchanged_reran_nothing = b
        .get(1)
        .copied()
        .flatten()
        .map(|w| w.ran.is_empty() && w.cached == w.steps);
    let reran_only_the_end = match (b.first().copied().flatten(), b.get(2).copied().flatten()) {
        (Some(c), Some(e)) => Some(edit_reran_only_the_end(c, e)),
        _ => None,
    };
    report.fact("builds", &m.builds);
    report.fact("unchanged_rebuild_reran_nothing", unchanged_reran_nothing);
    report.fact("edit_reran_only_the_last_steps", reran_only_the_end);
    report.fact("container", &m.served);
    report.fact("vm", m.vm.fact());
}

/// Whether the build after the edit took the steps before the edited COPY
/// from the cache and reran only from there on.
fn edit_reran_only_the_end(cold: &Build, edit: &Build) -> bool {
    edit.cached >= 1 && edit.cached < edit.steps && edit.steps == cold.steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_that_ran_are_the_started_ones_not_cached() {
        let lines: Vec<String> = [
            "#1 [1/3] FROM busybox",
            "#1 DONE",
            "#2 [2/3] RUN mkdir -p /srv",
            "#2 CACHED",
            "#3 [3/3] COPY app.sh cgi-bin/app",
            "#3 DONE 0.1s",
            "#4 exporting to image",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(ran_steps(&lines), vec!["[3/3] COPY app.sh cgi-bin/app"]);
    }
}
