//! images: an image is a stack of read-only layers; a container is one
//! running instance of it with a writable layer of its own (class and object).

use serde_json::json;
use twinbox_engine::container::RunOptions;
use twinbox_engine::image::inspect::{history, HistoryRow};
use twinbox_engine::system::usage::tree_bytes;

use super::{three_acts, Lesson};
use crate::container::Detached;
use crate::context::{cmd_opts, sh, Context, BUSYBOX};
use crate::measure::disk::container_footprint;
use crate::report::{format_bytes, LessonReport, Table};
use crate::LessonError;

pub struct Images;

impl Lesson for Images {
    fn name(&self) -> &'static str {
        "images"
    }

    fn title(&self) -> &'static str {
        "an image is layers; a container is an instance of it"
    }

    fn summary(&self) -> &'static str {
        "an image's layers and history; two containers from one image, each with its own changes"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "An image is a read-only template: a stack of file-system layers plus a small \
             config (which program to start, its environment, its working directory). \
             `twinbox history` lists the steps that made each layer.",
            "A container is one instance made from that template, the way an object is made \
             from a class: it gets the image's files and a writable layer of its own on top. \
             Two containers from the same image start identical, and what one writes, the \
             other never sees; the image itself never changes.",
            "This lesson has no VM half: it is about what images and containers are.",
        ]
    }

    fn uses_vm(&self) -> bool {
        false
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// One of the image's layers, as the table shows it.
struct Layer {
    chain_id: String,
    unpacked: u64,
    made_by: String,
}

/// One of the two containers, looked at after it ended.
struct Instance {
    name: String,
    image_id: String,
    wrote: &'static str,
    saw_file: bool,
    writable: u64,
}

/// The image's history and layers, and what two containers made from it did.
struct Measurements {
    image_id: String,
    image_short: String,
    history_steps: usize,
    layers: Vec<Layer>,
    instances: [Instance; 2],
    /// How many layer directories container A stacked.
    lower_dirs: usize,
    a_wrote: bool,
    b_saw: bool,
    image_has: bool,
    same_layers: bool,
}

/// Act one: the image's history, then container A writes a file and
/// container B looks for it, and the host looks where it went.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let rows = history(&ctx.store, &image);
    let made_by = |r: &HistoryRow| {
        if r.created_by.is_empty() {
            r.comment.clone()
        } else {
            r.created_by.clone()
        }
    };
    let mut text = format!("{:<62} SIZE\n", "CREATED BY");
    for r in &rows {
        let by: String = made_by(r).chars().take(60).collect();
        text.push_str(&format!("{by:<62} {}\n", format_bytes(r.size)));
    }
    ctx.host_step(report, &format!("twinbox history {BUSYBOX}"), &text);
    let layers = image
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Layer {
            chain_id: l.chain_id.short().to_string(),
            unpacked: tree_bytes(&ctx.store.layer_dir(&l.chain_id)),
            made_by: rows
                .iter()
                .rev()
                .filter(|r| !r.empty_layer)
                .nth(i)
                .map(made_by)
                .unwrap_or_default(),
        })
        .collect();

    let pid = std::process::id();
    let writer = RunOptions {
        name: Some(format!("images-a-{pid}")),
        ..cmd_opts(sh(
            "echo 'written by container A' > /hello.txt; cat /hello.txt",
        ))
    };
    let reader = RunOptions {
        name: Some(format!("images-b-{pid}")),
        ..cmd_opts(sh(
            "cat /hello.txt 2>&1 || echo 'container B has no /hello.txt'",
        ))
    };
    let a = ctx.container_kept(report, BUSYBOX, &writer)?;
    let b = ctx.container_kept(report, BUSYBOX, &reader)?;
    let in_upper = |d: &Detached| d.container.upper().join("hello.txt").exists();
    let a_wrote = in_upper(&a);
    let b_has = in_upper(&b);
    let b_saw = b.output().contains("written by container A");
    let image_has = image
        .lower_dirs(&ctx.store)
        .iter()
        .any(|dir| dir.join("hello.txt").exists());
    let same_layers = a.container.lower_dirs == b.container.lower_dirs;
    let listing = format!(
        "{}/upper/hello.txt: {}\n{}/upper/hello.txt: {}\nimage layers/hello.txt: {}\n",
        a.container.name,
        if a_wrote { "present" } else { "absent" },
        b.container.name,
        if b_has { "present" } else { "absent" },
        if image_has { "present" } else { "absent" },
    );
    ctx.host_step(
        report,
        "ls <store>/containers/*/upper/hello.txt <store>/layers/*/hello.txt",
        &listing,
    );
    let instance = |d: &Detached, wrote: &'static str| Instance {
        name: d.container.name.clone(),
        image_id: d.container.image_id.chars().take(19).collect(),
        wrote,
        saw_file: d.output().contains("written by container A"),
        writable: container_footprint(&d.container).writable,
    };
    let m = Measurements {
        image_id: image.id.to_string(),
        image_short: image.id.short().to_string(),
        history_steps: rows.len(),
        layers,
        instances: [instance(&a, "/hello.txt"), instance(&b, "nothing")],
        lower_dirs: a.container.lower_dirs.len(),
        a_wrote,
        b_saw,
        image_has,
        same_layers,
    };
    a.remove()?;
    b.remove()?;
    Ok(m)
}

/// Act two: the image's layers, and the two containers side by side.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut layers = Table::new(
        format!("the image {BUSYBOX}"),
        &["layer", "unpacked size", "made by"],
    );
    for l in &m.layers {
        layers.row(vec![
            l.chain_id.clone().into(),
            format_bytes(l.unpacked).into(),
            l.made_by.chars().take(60).collect::<String>().into(),
        ]);
    }
    report.tables.push(layers);
    let mut t = Table::new(
        "two containers from one image",
        &[
            "container",
            "image id",
            "wrote",
            "sees /hello.txt",
            "writable layer",
        ],
    );
    for d in &m.instances {
        t.row(vec![
            d.name.clone().into(),
            d.image_id.clone().into(),
            d.wrote.into(),
            if d.saw_file { "yes" } else { "no" }.into(),
            format_bytes(d.writable).into(),
        ]);
    }
    report.tables.push(t);
}

/// Act three: one template, two independent instances; the facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    let (a_wrote, b_saw, image_has) = (m.a_wrote, m.b_saw, m.image_has);
    if !(a_wrote && !b_saw && !image_has) {
        report.failures.push(format!(
            "expected A's file only in A's writable layer: A wrote it {a_wrote}, B saw it {b_saw}, the image has it {image_has}"
        ));
    }
    report.findings.push(format!(
        "Both containers were made from image {} and stacked the same {} layer directory(ies){}. Container A wrote /hello.txt and the file went to A's own writable layer; container B, started from the same image afterwards, {}; the image's layers {} the file. One template, two independent instances.",
        m.image_short,
        m.lower_dirs,
        if m.same_layers { "" } else { " (unexpectedly, not the same ones)" },
        if b_saw { "unexpectedly saw it" } else { "did not see it" },
        if image_has { "unexpectedly contain" } else { "do not contain" }
    ));
    report.caveats.push("twinbox's busybox image is made from this host's busybox binary in one layer; images built from a Dockerfile or pulled from a registry usually have several.".into());
    report.fact(
        "image",
        json!({"id": m.image_id, "layers": m.layers.len(), "history_steps": m.history_steps}),
    );
    report.fact(
        "containers",
        json!({"a_wrote_to_own_layer": a_wrote, "b_saw_file": b_saw, "image_has_file": image_has, "same_layers": m.same_layers}),
    );
}
