//! The lessons, one file each, and the driver every lesson runs through:
//! title, the VM backend note, the explanation, the lesson's own steps, then
//! the summary (tables, charts, findings, caveats).

mod arch;
mod desktop;
mod disk;
mod distro;
mod dockerfile;
mod ephemeral;
mod exercise;
mod identity;
mod images;
mod isolation;
mod kernel;
mod limits;
mod memory;
mod network;
mod registry;
mod scale;
mod shared_kernel;
mod startup;
mod vm_serving;

use crate::context::Context;
use crate::report::LessonReport;
use crate::LessonError;

pub trait Lesson: Sync {
    fn name(&self) -> &'static str;
    fn title(&self) -> &'static str;
    /// One line for `twinbox lesson list`.
    fn summary(&self) -> &'static str;
    /// The opening explanation, in plain words, one paragraph each.
    fn explanation(&self) -> &'static [&'static str];
    /// Whether the lesson boots VMs (and so needs a VM backend).
    fn uses_vm(&self) -> bool;
    /// What the lesson runs, for `twinbox lesson list`.
    fn sides(&self) -> &'static str {
        if self.uses_vm() {
            "container + microVM"
        } else {
            "container"
        }
    }
    /// `--runs` when not given.
    fn default_runs(&self) -> usize {
        1
    }
    /// The lesson's commands for a student to type one by one, each with
    /// a check of its effect (`twinbox lesson NAME --steps`), for lessons
    /// that are an exercise.
    fn guided(&self) -> Option<crate::guided::Guided> {
        None
    }
    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError>;
}

/// The shape of a lesson's `run`, in three acts: `measure` runs the steps
/// (shown live and recorded), `present` turns what they gave into tables and
/// charts, `explain` into findings, caveats and the facts of `--json`.
pub(crate) fn three_acts<M>(
    ctx: &Context,
    report: &mut LessonReport,
    measure: impl FnOnce(&Context, &mut LessonReport) -> Result<M, LessonError>,
    present: fn(&M, &mut LessonReport),
    explain: fn(&M, &mut LessonReport),
) -> Result<(), LessonError> {
    let m = measure(ctx, report)?;
    present(&m, report);
    explain(&m, report);
    Ok(())
}

pub static LESSONS: &[&dyn Lesson] = &[
    &kernel::Kernel,
    &startup::Startup,
    &memory::Memory,
    &disk::Disk,
    &isolation::Isolation,
    &limits::Limits,
    &images::Images,
    &ephemeral::Ephemeral,
    &scale::Scale,
    &distro::Distro,
    &registry::Registry,
    &identity::Identity,
    &shared_kernel::SharedKernel,
    &dockerfile::DockerfileLesson,
    &network::Network,
    &exercise::Exercise,
    &arch::Arch,
    &desktop::Desktop,
];

/// A part of the course: a heading and its lessons, in the order taught.
pub struct Part {
    pub title: &'static str,
    pub lessons: &'static [&'static str],
}

/// The course's order, part by part: `lesson list` groups by it and
/// `lesson course` runs it from the first lesson to the last.
pub const COURSE: &[Part] = &[
    Part {
        title: "what a container is",
        lessons: &[
            "kernel",
            "identity",
            "isolation",
            "shared-kernel",
            "arch",
            "desktop",
        ],
    },
    Part {
        title: "what each costs",
        lessons: &["startup", "memory", "disk", "scale", "limits"],
    },
    Part {
        title: "images and their life",
        lessons: &["images", "dockerfile", "ephemeral", "registry", "distro"],
    },
    Part {
        title: "services",
        lessons: &["network", "exercise"],
    },
];

/// Every lesson in the course's order.
pub fn course() -> impl Iterator<Item = &'static dyn Lesson> {
    COURSE
        .iter()
        .flat_map(|p| p.lessons.iter())
        .filter_map(|n| find(n).ok())
}

/// What `twinbox lesson tour` runs, in order.
pub const TOUR: &[&str] = &["kernel", "startup", "memory", "disk", "isolation"];

pub fn find(name: &str) -> Result<&'static dyn Lesson, LessonError> {
    LESSONS
        .iter()
        .copied()
        .find(|l| l.name() == name)
        .ok_or_else(|| LessonError::UnknownLesson(name.to_string()))
}

/// Runs several lessons one after another (`tour`, `course`) for one report:
/// a lesson that cannot run at all (an image missing, a bad host) is recorded
/// as failed with the reason, and the next one still runs.
pub fn run_all(names: &[&str], ctx: &mut Context) -> Result<Vec<LessonReport>, LessonError> {
    let lessons: Vec<&dyn Lesson> = names.iter().map(|n| find(n)).collect::<Result<_, _>>()?;
    let mut reports = Vec::new();
    for lesson in lessons {
        match run(lesson, ctx) {
            Ok(r) => reports.push(r),
            Err(e) => {
                ctx.say
                    .failure(&format!("lesson {} could not run: {e}", lesson.name()));
                let mut r = LessonReport::new(lesson.name(), lesson.title());
                r.explanation = lesson.explanation().iter().map(|p| p.to_string()).collect();
                r.failures.push(format!("the lesson could not run: {e}"));
                reports.push(r);
            }
        }
    }
    Ok(reports)
}

/// Runs one lesson from its title to its summary.
pub fn run(lesson: &dyn Lesson, ctx: &mut Context) -> Result<LessonReport, LessonError> {
    let mut report = LessonReport::new(lesson.name(), lesson.title());
    report.runs = ctx.runs(lesson.default_runs());
    report.host_kernel = crate::measure::kernel::host_view()
        .map(|v| v.release)
        .unwrap_or_else(|e| format!("unknown ({e})"));
    report.explanation = lesson.explanation().iter().map(|p| p.to_string()).collect();
    ctx.say
        .title(&format!("lesson {}: {}", lesson.name(), lesson.title()));
    if lesson.uses_vm() {
        ctx.select_backend()?;
        match ctx.vm() {
            Ok(b) => {
                let note = b.note().clone();
                let mut banner = format!(
                    "VM backend: {} ({}). {}.",
                    note.name, note.description, note.reason
                );
                if note.emulated {
                    banner.push_str(
                        " VM timings below are from software emulation and are not representative of a VM on hardware-assisted KVM.",
                    );
                }
                ctx.say.banner(&banner);
                report.vm_backend = Some(note);
            }
            Err(why) => {
                ctx.say.failure(&format!("no VM backend works on this host: {why}; the VM half of this lesson will show as failed"));
                report.failures.push(format!("VM backend: {why}"));
            }
        }
    }
    for p in lesson.explanation() {
        ctx.say.paragraph("");
        ctx.say.paragraph(p);
    }
    lesson.run(ctx, &mut report)?;
    if report.vm_backend.as_ref().is_some_and(|b| b.emulated) {
        report.caveats.push(
            "The VM ran under QEMU's software CPU emulation (TCG), because this host's KVM cannot boot a stock kernel. Every VM time here is many times slower than on a machine with VT-x/AMD-V; compare the container and VM numbers for their direction, not their exact ratio."
                .into(),
        );
    }
    ctx.say.summary(&report);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lesson_is_in_the_course_once() {
        let taught: Vec<&str> = COURSE
            .iter()
            .flat_map(|p| p.lessons.iter().copied())
            .collect();
        for l in LESSONS {
            assert_eq!(
                taught.iter().filter(|n| **n == l.name()).count(),
                1,
                "{} must be in exactly one part of the course",
                l.name()
            );
        }
        assert_eq!(
            taught.len(),
            LESSONS.len(),
            "the course names a lesson that does not exist"
        );
        for t in TOUR {
            assert!(find(t).is_ok());
        }
    }
}
