//! distro: any distribution's userland runs on the one host kernel; what
//! differs is the files (the image), not the kernel.

use serde_json::json;

use super::{three_acts, Lesson};
use crate::context::{cmd_opts, sh, Context, BUSYBOX};
use crate::report::{LessonReport, Measured, Table};
use crate::LessonError;

pub struct Distro;

/// Names `twinbox image bootstrap debian` may have given the image.
const DEBIAN_NAMES: &[&str] = &["debian", "debian:bookworm", "debian:12"];

const PROBE: &str = "if [ -r /etc/os-release ]; then . /etc/os-release; echo \"os: $PRETTY_NAME\"; else echo \"os: $(busybox 2>/dev/null | head -n 1 | cut -d' ' -f1,2), no /etc/os-release\"; fi
echo \"kernel: $(uname -r)\"
if [ -L /bin/ls ]; then echo \"ls is: a link to $(readlink /bin/ls)\"; else echo 'ls is: a program of its own'; fi
echo \"C library: $(ls /lib/x86_64-linux-gnu/libc.so.6 /lib/ld-musl-x86_64.so.1 2>/dev/null)\"";

impl Lesson for Distro {
    fn name(&self) -> &'static str {
        "distro"
    }

    fn title(&self) -> &'static str {
        "any distribution's userland on one kernel"
    }

    fn summary(&self) -> &'static str {
        "a busybox and a Debian container: /etc/os-release differs, uname -r does not"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "A Linux distribution is mostly files: a C library, shell and tools, a package \
             manager, /etc/os-release saying its name. The kernel is a separate program. \
             Because a container only brings files and uses the host's kernel, containers of \
             different distributions can run side by side on one host, each with its own \
             userland, all on the same kernel.",
            "This lesson runs the same probe in a busybox container and in a Debian \
             container (`twinbox image bootstrap debian` builds that image from the Debian \
             mirror). It has no VM half: a VM would bring its own kernel too.",
        ]
    }

    fn uses_vm(&self) -> bool {
        false
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the host and the two containers said about their system.
struct Measurements {
    host_os: String,
    host_kernel: String,
    /// The busybox container's probe, then the Debian one's.
    probes: Vec<(&'static str, Measured<Probe>)>,
}

/// Act one: the host's distribution and kernel, then the same probe in a
/// busybox and a Debian container.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    ctx.image(BUSYBOX)?;
    let debian = DEBIAN_NAMES
        .iter()
        .find(|n| ctx.image(n).is_ok())
        .copied()
        .ok_or_else(|| LessonError::MissingImage {
            image: "debian".into(),
            hint: "build it with `twinbox image bootstrap debian` (needs mmdebstrap and the Debian mirror), then run this lesson again".into(),
        })?;
    let host_os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "no /etc/os-release".into());
    let host_kernel = crate::measure::kernel::host_view()
        .map(|v| v.release)
        .map_err(LessonError::BadInput)?;
    ctx.host_step(
        report,
        ". /etc/os-release; echo $PRETTY_NAME; uname -r",
        &format!("{host_os}\n{host_kernel}\n"),
    );
    let mut probes = Vec::new();
    for image in [BUSYBOX, debian] {
        let run = ctx.container(report, image, &cmd_opts(sh(PROBE)));
        let probe: Measured<Probe> = match run {
            Ok(r) if r.exit_code == Some(0) => Measured::Value(Probe::parse(&r.output)),
            Ok(r) => Measured::failed(format!(
                "exited with {:?}: {}",
                r.exit_code,
                r.output.trim()
            )),
            Err(e) => Measured::failed(e.to_string()),
        };
        report.check(&format!("{image} probe"), &probe);
        probes.push((image, probe));
    }
    Ok(Measurements {
        host_os,
        host_kernel,
        probes,
    })
}

/// Act two: one kernel, two userlands, side by side.
fn present(m: &Measurements, report: &mut LessonReport) {
    let Measurements {
        host_os,
        host_kernel,
        probes,
    } = m;
    let mut t = Table::new(
        "one kernel, two userlands",
        &["", "host", "busybox container", "Debian container"],
    );
    let cell = |i: usize, f: fn(&Probe) -> String| probes[i].1.as_ref().map(f).into();
    t.row(vec![
        "distribution".into(),
        host_os.clone().into(),
        cell(0, |p| p.os.clone()),
        cell(1, |p| p.os.clone()),
    ]);
    t.row(vec![
        "kernel (uname -r)".into(),
        host_kernel.clone().into(),
        cell(0, |p| p.kernel.clone()),
        cell(1, |p| p.kernel.clone()),
    ]);
    t.row(vec![
        "/bin/ls".into(),
        "-".into(),
        cell(0, |p| p.ls.clone()),
        cell(1, |p| p.ls.clone()),
    ]);
    t.row(vec![
        "C library".into(),
        "-".into(),
        cell(0, |p| p.libc.clone()),
        cell(1, |p| p.libc.clone()),
    ]);
    report.tables.push(t);
}

/// Act three: different systems, one kernel; the facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let Measurements {
        host_os,
        host_kernel,
        probes,
    } = m;
    if let (Some(b), Some(d)) = (probes[0].1.value(), probes[1].1.value()) {
        let same_kernel = &b.kernel == host_kernel && &d.kernel == host_kernel;
        report.findings.push(format!(
            "The two containers reported different systems (\"{}\" and \"{}\") but {}: each brought its own userland in its image, and both ran on the host's one kernel.",
            b.os,
            d.os,
            if same_kernel { format!("the same kernel, {host_kernel}") } else { "unexpectedly, different kernels".to_string() }
        ));
        report.fact("same_kernel", same_kernel);
    }
    report.fact("host", json!({"os": host_os, "kernel": host_kernel}));
    for (image, p) in probes {
        report.fact(
            if *image == BUSYBOX {
                "busybox"
            } else {
                "debian"
            },
            serde_json::to_value(p).unwrap_or_default(),
        );
    }
    report.caveats.push("A container can run another distribution's userland, not another kernel: a program that needs kernel features the host lacks fails the same way in every container.".into());
}

#[derive(Debug, Clone, serde::Serialize)]
struct Probe {
    os: String,
    kernel: String,
    ls: String,
    libc: String,
}

impl Probe {
    fn parse(out: &str) -> Probe {
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        Probe {
            os: field("os:"),
            kernel: field("kernel:"),
            ls: field("ls is:"),
            libc: Some(field("C library:"))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "none (one static program)".into()),
        }
    }
}
