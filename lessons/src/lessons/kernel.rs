//! kernel: a container is a group of host processes, so it runs on the host's
//! kernel; a VM boots a kernel of its own.

use serde_json::json;

use super::{three_acts, Lesson};
use crate::context::{cmd_opts, sh, Context, BUSYBOX, VM_MEMORY_MIB};
use crate::measure::kernel::{host_view, parse_probe, KernelView, PROBE_SCRIPT};
use crate::report::{Cell, LessonReport, Measured, Table};
use crate::LessonError;

pub struct Kernel;

impl Lesson for Kernel {
    fn name(&self) -> &'static str {
        "kernel"
    }

    fn title(&self) -> &'static str {
        "containers share the host's kernel; a VM boots its own"
    }

    fn summary(&self) -> &'static str {
        "uname -r and boot_id inside a container and a microVM, against the host's"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Every running Linux kernel answers two questions about itself: `uname -r` \
             prints its release (the version it was built as), and \
             /proc/sys/kernel/random/boot_id holds a random id the kernel picked when it \
             booted. Two programs that read the same boot_id are running on the same \
             kernel, in the same boot.",
            "A container is not a machine: it is ordinary host processes that the host \
             kernel shows a different view of the system (namespaces). So a container \
             should print the host's release and the host's boot_id. A virtual machine \
             emulates hardware and boots a kernel of its own, so it should print a boot_id \
             that differs from the host's, even if it happens to boot the same kernel version.",
            "This lesson asks the host, a container and a microVM, and compares the answers.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the host, a container and a microVM said about their kernel.
struct Measurements {
    host: KernelView,
    container: Measured<KernelView>,
    vm: Measured<KernelView>,
}

/// Act one: the same probe on the host, in a container and in a microVM.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let host = host_view()
        .map_err(|e| LessonError::BadInput(format!("cannot read the host's kernel: {e}")))?;
    ctx.host_step(
        report,
        PROBE_SCRIPT,
        &format!("{}\n{}\n{}\n", host.release, host.boot_id, host.version),
    );

    let opts = cmd_opts(sh(PROBE_SCRIPT));
    let container: Measured<KernelView> = match ctx.container(report, BUSYBOX, &opts) {
        Ok(run) if run.exit_code == Some(0) => Measured::from_result(parse_probe(&run.output)),
        Ok(run) => Measured::failed(format!(
            "the container exited with {:?}: {}",
            run.exit_code,
            run.output.trim()
        )),
        Err(e) => Measured::failed(e.to_string()),
    };

    let req = ctx.vm_request(BUSYBOX, &image, &opts, VM_MEMORY_MIB);
    let vm: Measured<KernelView> = match ctx.prepare_vm(&req).and_then(|_| ctx.vm_run(report, &req))
    {
        Ok(run) => match (&run.failure, run.exit_code) {
            (Some(why), _) => Measured::failed(why.clone()),
            (None, Some(0)) => Measured::from_result(parse_probe(&run.output)),
            (None, code) => Measured::failed(format!("the VM's workload exited with {code:?}")),
        },
        Err(why) => Measured::failed(why),
    };
    report.check("container kernel", &container);
    report.check("VM kernel", &vm);
    Ok(Measurements {
        host,
        container,
        vm,
    })
}

/// Act two: the three answers side by side.
fn present(m: &Measurements, report: &mut LessonReport) {
    let (host, container, vm) = (&m.host, &m.container, &m.vm);
    let mut table = Table::new(
        "what each side says about its kernel",
        &["", "host", "container", "microVM"],
    );
    let field = |m: &Measured<KernelView>, f: fn(&KernelView) -> String| -> Cell {
        m.as_ref().map(f).into()
    };
    table.row(vec![
        "uname -r".into(),
        host.release.clone().into(),
        field(container, |v| v.release.clone()),
        field(vm, |v| v.release.clone()),
    ]);
    table.row(vec![
        "boot_id".into(),
        host.boot_id.clone().into(),
        field(container, |v| v.boot_id.clone()),
        field(vm, |v| v.boot_id.clone()),
    ]);
    table.row(vec![
        "/proc/version (start)".into(),
        short(&host.version).into(),
        field(container, |v| short(&v.version)),
        field(vm, |v| short(&v.version)),
    ]);
    let same = |m: &Measured<KernelView>| -> Cell {
        match m.value() {
            Some(v) if v.boot_id == host.boot_id => "yes: same boot_id".into(),
            Some(_) => "no: different boot_id".into(),
            None => Cell::Failed {
                failed: "not measured".into(),
            },
        }
    };
    table.row(vec![
        "same running kernel as the host?".into(),
        "-".into(),
        same(container),
        same(vm),
    ]);
    report.tables.push(table);
}

/// Act three: what the answers show, and the facts `--json` carries.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let (host, container, vm) = (&m.host, &m.container, &m.vm);
    findings(report, host, container, vm);
    report.caveats.push(
        "boot_id identifies one boot of one kernel; the release string alone does not (a VM may boot the same kernel version as the host and still be a separate kernel)."
            .into(),
    );
    let view = |m: &Measured<KernelView>| match m {
        Measured::Value(v) => {
            json!({"release": v.release, "boot_id": v.boot_id, "version": v.version})
        }
        Measured::Failed(why) => json!({"failed": why}),
    };
    report.fact(
        "host",
        json!({"release": host.release, "boot_id": host.boot_id, "version": host.version}),
    );
    report.fact("container", view(container));
    report.fact("vm", view(vm));
    report.fact(
        "container_same_kernel",
        container.value().map(|v| v.release == host.release),
    );
    report.fact(
        "container_same_boot",
        container.value().map(|v| v.boot_id == host.boot_id),
    );
    report.fact(
        "vm_same_boot",
        vm.value().map(|v| v.boot_id == host.boot_id),
    );
}

fn short(version: &str) -> String {
    let words: Vec<&str> = version.split_whitespace().take(3).collect();
    words.join(" ")
}

fn findings(
    report: &mut LessonReport,
    host: &KernelView,
    container: &Measured<KernelView>,
    vm: &Measured<KernelView>,
) {
    match container.value() {
        Some(c) if c.boot_id == host.boot_id && c.release == host.release => {
            report.findings.push(format!(
                "The container printed the host's release ({}) and the host's boot_id ({}): \
                 it did not boot anything. Its processes run on the host's kernel, which \
                 only gives them their own view of processes, files and network.",
                c.release, c.boot_id
            ));
        }
        Some(c) => report.findings.push(format!(
            "Unexpected on this run: the container printed release {} and boot_id {}, \
             while the host has {} and {}. A container should see the host's kernel; \
             check how it was started.",
            c.release, c.boot_id, host.release, host.boot_id
        )),
        None => {}
    }
    match vm.value() {
        Some(v) if v.boot_id != host.boot_id => {
            let version = if v.release == host.release {
                format!("the same kernel version as the host ({})", v.release)
            } else {
                format!("kernel {} (the host runs {})", v.release, host.release)
            };
            report.findings.push(format!(
                "The microVM printed {version} and boot_id {}, which is not the host's: \
                 its kernel was booted inside the VM a moment earlier and manages the \
                 VM's (virtual) hardware on its own. The host's kernel only sees the VMM \
                 process that runs it.",
                v.boot_id
            ));
        }
        Some(v) => report.findings.push(format!(
            "Unexpected on this run: the microVM printed the host's boot_id ({}).",
            v.boot_id
        )),
        None => {}
    }
}
