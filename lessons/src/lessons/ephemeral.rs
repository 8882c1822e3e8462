//! ephemeral: what a container writes to its own file system goes when the
//! container goes; a volume (a host directory mounted in) stays.

use std::path::{Path, PathBuf};

use serde_json::json;
use twinbox_engine::container::options::Volume;
use twinbox_engine::container::RunOptions;

use super::{three_acts, Lesson};
use crate::context::{cmd_opts, sh, Context, BUSYBOX};
use crate::report::{LessonReport, Measured, Table};
use crate::LessonError;

pub struct Ephemeral;

impl Lesson for Ephemeral {
    fn name(&self) -> &'static str {
        "ephemeral"
    }

    fn title(&self) -> &'static str {
        "containers are ephemeral; volumes persist"
    }

    fn summary(&self) -> &'static str {
        "a file written in a removed container is gone; the one in a volume is kept"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "Everything a container writes to its own file system lands in its writable \
             layer, which belongs to that container. Remove the container (`--rm` does it \
             as soon as it exits) and the layer is deleted with it: a new container from the \
             same image starts from the image again.",
            "Data that must outlive a container goes into a volume: a directory of the host \
             mounted into the container (`-v /host/dir:/data`). The container writes through \
             to the host's directory, which is still there when the container is gone.",
            "This lesson has no VM half. (twinbox's microVMs keep their root file system in \
             RAM, so they forget everything at power-off too; VMs with a disk image keep \
             what they write until the disk is deleted.)",
        ]
    }

    fn uses_vm(&self) -> bool {
        false
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        ctx.image(BUSYBOX)?;
        let dir = std::env::temp_dir().join(format!(
            "twinbox-lesson-volume-{}",
            twinbox_engine::util::id::random_hex(4)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| LessonError::io(format!("creating {}", dir.display()), e))?;
        let result = three_acts(
            ctx,
            report,
            |ctx, r| measure(ctx, r, &dir),
            present,
            explain,
        );
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

/// What the next container and the host found after the first one went.
struct Measurements {
    /// The host directory mounted as the volume (removed by now).
    dir: PathBuf,
    root_survived: bool,
    volume_survived: bool,
    host_has: bool,
}

/// Act one: a container writes a file in its own file system and one in a
/// volume, and is removed; a new container and the host look for both.
fn measure(
    ctx: &Context,
    report: &mut LessonReport,
    dir: &Path,
) -> Result<Measurements, LessonError> {
    let volume = Volume {
        source: dir.to_path_buf(),
        destination: "/data".into(),
        read_only: false,
        name: None,
    };
    ctx.host_step(report, &format!("mkdir {}", dir.display()), "");
    let first = RunOptions {
        volumes: vec![volume.clone()],
        ..cmd_opts(sh(
            "echo 'kept in the container' > /note.txt; echo 'kept in the volume' > /data/note.txt; ls -l /note.txt /data/note.txt",
        ))
    };
    let one = ctx.container(report, BUSYBOX, &first)?;
    let second = RunOptions {
        volumes: vec![volume],
        ..cmd_opts(sh(
            "cat /note.txt 2>&1 || echo '(no /note.txt in this new container)'; cat /data/note.txt",
        ))
    };
    let two = ctx.container(report, BUSYBOX, &second)?;
    let on_host = std::fs::read_to_string(dir.join("note.txt"));
    ctx.host_step(
        report,
        &format!("cat {}/note.txt", dir.display()),
        on_host.as_deref().unwrap_or("(missing)\n"),
    );

    let first_ok = one.exit_code == Some(0);
    let root_survived = two.output.contains("kept in the container");
    let volume_survived = two.output.contains("kept in the volume");
    let host_has = on_host
        .as_deref()
        .is_ok_and(|t| t.contains("kept in the volume"));
    let wrote: Measured<bool> = if first_ok {
        Measured::Value(true)
    } else {
        Measured::failed(format!(
            "the first container exited with {:?}",
            one.exit_code
        ))
    };
    report.check("first container", &wrote);
    Ok(Measurements {
        dir: dir.to_path_buf(),
        root_survived,
        volume_survived,
        host_has,
    })
}

/// Act two: where each file was after the first container went.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut t = Table::new(
        "after the first container was removed",
        &["file", "seen by the next container", "on the host"],
    );
    t.row(vec![
        "/note.txt (container's own file system)".into(),
        if m.root_survived {
            "yes"
        } else {
            "no: gone with the container"
        }
        .into(),
        "no (it was in the removed writable layer)".into(),
    ]);
    t.row(vec![
        "/data/note.txt (volume)".into(),
        if m.volume_survived { "yes" } else { "no" }.into(),
        if m.host_has {
            format!("yes: {}/note.txt", m.dir.display())
        } else {
            "no".into()
        }
        .into(),
    ]);
    report.tables.push(t);
}

/// Act three: the layer went with the container, the volume stayed.
fn explain(m: &Measurements, report: &mut LessonReport) {
    if !m.root_survived && m.volume_survived {
        report.findings.push(format!(
            "The first container wrote two files and was removed. The next container, from the same image, found no /note.txt (that file lived in the first container's writable layer, deleted with it) but did find /data/note.txt, because /data was the host directory {} mounted in: the data outlived the container.",
            m.dir.display()
        ));
    } else {
        report.findings.push(format!(
            "Unexpected on this run: the container's own file {} and the volume's file {}.",
            if m.root_survived {
                "survived"
            } else {
                "was gone"
            },
            if m.volume_survived {
                "survived"
            } else {
                "was gone"
            }
        ));
    }
    report.caveats.push("twinbox's volumes are bind mounts of host directories (named volumes managed by twinbox are not there yet); the host directory here is a temporary one, removed at the end of the lesson.".into());
    report.fact(
        "files",
        json!({"container_file_survived": m.root_survived, "volume_file_survived": m.volume_survived, "host_file_present": m.host_has}),
    );
}
