//! images: an image is a stack of read-only layers; a container is one
//! running instance of it with a writable layer of its own (class and object).

use serde_json::json;
use twinbox_engine::container::RunOptions;
use twinbox_engine::image::inspect::history;

use super::Lesson;
use crate::container::Detached;
use crate::context::{cmd_opts, sh, Context, BUSYBOX};
use crate::measure::disk::container_footprint;
use crate::report::{format_bytes, LessonReport, Measured, Table};
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
        let image = ctx.image(BUSYBOX)?;
        let rows = history(&ctx.store, &image);
        let mut text = format!("{:<62} SIZE\n", "CREATED BY");
        for r in &rows {
            let by = if r.created_by.is_empty() {
                r.comment.clone()
            } else {
                r.created_by.clone()
            };
            let by: String = by.chars().take(60).collect();
            text.push_str(&format!("{by:<62} {}\n", format_bytes(r.size)));
        }
        ctx.host_step(report, &format!("twinbox history {BUSYBOX}"), &text);
        let mut layers = Table::new(
            format!("the image {BUSYBOX}"),
            &["layer", "unpacked size", "made by"],
        );
        for (i, l) in image.layers.iter().enumerate() {
            let made_by = rows
                .iter()
                .rev()
                .filter(|r| !r.empty_layer)
                .nth(i)
                .map(|r| {
                    if r.created_by.is_empty() {
                        r.comment.clone()
                    } else {
                        r.created_by.clone()
                    }
                })
                .unwrap_or_default();
            layers.row(vec![
                l.chain_id.short().to_string().into(),
                format_bytes(twinbox_engine::system::usage::tree_bytes(
                    &ctx.store.layer_dir(&l.chain_id),
                ))
                .into(),
                made_by.chars().take(60).collect::<String>().into(),
            ]);
        }
        report.tables.push(layers);

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
        for (d, wrote) in [(&a, "/hello.txt"), (&b, "nothing")] {
            t.row(vec![
                d.container.name.clone().into(),
                d.container
                    .image_id
                    .chars()
                    .take(19)
                    .collect::<String>()
                    .into(),
                wrote.into(),
                if d.output().contains("written by container A") {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                format_bytes(container_footprint(&d.container).writable).into(),
            ]);
        }
        report.tables.push(t);
        let check: Measured<bool> = Measured::Value(a_wrote && !b_saw && !image_has);
        if check.value() != Some(&true) {
            report.failures.push(format!(
                "expected A's file only in A's writable layer: A wrote it {a_wrote}, B saw it {b_saw}, the image has it {image_has}"
            ));
        }
        report.findings.push(format!(
            "Both containers were made from image {} and stacked the same {} layer directory(ies){}. Container A wrote /hello.txt and the file went to A's own writable layer; container B, started from the same image afterwards, {}; the image's layers {} the file. One template, two independent instances.",
            image.id.short(),
            a.container.lower_dirs.len(),
            if same_layers { "" } else { " (unexpectedly, not the same ones)" },
            if b_saw { "unexpectedly saw it" } else { "did not see it" },
            if image_has { "unexpectedly contain" } else { "do not contain" }
        ));
        report.caveats.push("twinbox's busybox image is made from this host's busybox binary in one layer; images built from a Dockerfile or pulled from a registry usually have several.".into());
        report.fact(
            "image",
            json!({"id": image.id.to_string(), "layers": image.layers.len(), "history_steps": rows.len()}),
        );
        report.fact(
            "containers",
            json!({"a_wrote_to_own_layer": a_wrote, "b_saw_file": b_saw, "image_has_file": image_has, "same_layers": same_layers}),
        );
        a.remove()?;
        b.remove()?;
        Ok(())
    }
}
