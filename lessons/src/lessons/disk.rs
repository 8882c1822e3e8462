//! disk: an image's layers are stored once, however many containers run from
//! it; each VM gets its own copy of its root file system.

use serde_json::json;
use twinbox_engine::container::RunOptions;

use super::{three_acts, Lesson};
use crate::charts;
use crate::container::Detached;
use crate::context::{cmd_opts, sh, Context, BUSYBOX, VM_MEMORY_MIB};
use crate::measure::disk::{
    container_footprint, file_bytes, image_footprint, ContainerFootprint, ImageFootprint,
};
use crate::report::{format_bytes, Cell, LessonReport, Measured, Table};
use crate::LessonError;

pub struct Disk;

/// How many containers (and how many VMs the arithmetic is done for).
const COPIES: usize = 5;

impl Lesson for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn title(&self) -> &'static str {
        "image layers are stored once; every VM needs its own root file system"
    }

    fn summary(&self) -> &'static str {
        "store bytes for 5 containers from one image against what 5 VMs need"
    }

    fn explanation(&self) -> &'static [&'static str] {
        &[
            "An image is a stack of read-only layers. twinbox unpacks each layer once into \
             its store, and every container made from the image stacks the same layer \
             directories under a small writable directory of its own (overlayfs). Whatever a \
             container writes lands in its own writable layer; the image's files are shared, \
             on disk and in the page cache.",
            "A VM cannot look into the host's directories: it needs a disk (or, for twinbox's \
             microVMs, an initramfs) holding a whole root file system, and each running VM \
             has its own copy, because its kernel owns its file system. twinbox caches the \
             initramfs per image on disk, but every VM unpacks its own copy into its own RAM.",
            "This lesson makes 5 containers from one image, each writing a small file, and \
             counts what the store needs; then it boots one VM that does the same and \
             measures, inside the guest, the root file system that VM carries.",
        ]
    }

    fn uses_vm(&self) -> bool {
        true
    }

    fn run(&self, ctx: &Context, report: &mut LessonReport) -> Result<(), LessonError> {
        three_acts(ctx, report, measure, present, explain)
    }
}

/// What the store holds for COPIES containers, and what one VM carries.
struct Measurements {
    footprint: ImageFootprint,
    /// Every container stacked the image's own layer directories.
    shares: bool,
    prints: Vec<ContainerFootprint>,
    writable: u64,
    records: u64,
    image_total: u64,
    store_total: u64,
    naive_total: u64,
    cache_bytes: Measured<u64>,
    initramfs: Measured<u64>,
    rootfs: Measured<u64>,
    per_vm: Measured<u64>,
    n_vms: Measured<u64>,
}

/// Act one: COPIES containers that each write a file, what `system df`
/// says about them, then one VM measuring its own root file system.
fn measure(ctx: &Context, report: &mut LessonReport) -> Result<Measurements, LessonError> {
    let image = ctx.image(BUSYBOX)?;
    let footprint = image_footprint(&ctx.store, &image);
    let image_dirs = image.lower_dirs(&ctx.store);

    // Several containers exist at once, each having written a file.
    let mut kept: Vec<Detached> = Vec::new();
    let mut prints: Vec<ContainerFootprint> = Vec::new();
    let mut shares = true;
    for i in 1..=COPIES {
        let opts = RunOptions {
            name: Some(format!("disk-lesson-{}-{i}", std::process::id())),
            ..cmd_opts(sh(&format!(
                "echo 'note from container {i}' > /note.txt; cat /note.txt"
            )))
        };
        let d = ctx.container_kept(report, BUSYBOX, &opts)?;
        shares &= d.container.lower_dirs == image_dirs;
        prints.push(container_footprint(&d.container));
        kept.push(d);
    }
    // what `twinbox system df -v` reports for this image and these containers
    let usage = twinbox_engine::system::usage::disk_usage(&ctx.store)?;
    let ours: Vec<&str> = kept.iter().map(|d| d.container.id.as_str()).collect();
    let mut listing = String::from("LAYER          SIZE        CONTAINERS USING IT\n");
    for l in usage
        .layers
        .iter()
        .filter(|l| image.layers.iter().any(|il| il.chain_id == l.chain_id))
    {
        listing.push_str(&format!(
            "{:<14} {:<11} {}\n",
            l.chain_id.short(),
            format_bytes(l.bytes),
            l.containers
        ));
    }
    listing.push_str("\nCONTAINER                  WRITABLE LAYER\n");
    for c in usage
        .containers
        .iter()
        .filter(|c| ours.contains(&c.id.as_str()))
    {
        listing.push_str(&format!(
            "{:<26} {}\n",
            c.name,
            format_bytes(c.writable_bytes)
        ));
    }
    ctx.host_step(report, "twinbox system df -v", &listing);
    for d in kept {
        d.remove()?;
    }

    let writable: u64 = prints.iter().map(|p| p.writable).sum();
    let records: u64 = prints.iter().map(|p| p.other).sum();
    let image_total = footprint.total();
    let store_total = image_total + writable + records;
    let naive_total = COPIES as u64 * image_total + writable + records;

    // The VM side: what the initramfs is, and what one VM carries inside.
    let probe = "echo 'note from the VM' > /note.txt; du -sxk / | tail -n 1";
    let opts = cmd_opts(sh(probe));
    let req = ctx.vm_request(BUSYBOX, &image, &opts, VM_MEMORY_MIB);
    let prepared = ctx.prepare_vm(&req);
    let cache_bytes: Measured<u64> = match &prepared {
        Ok(p) => match &p.initramfs_cache {
            Some(path) if path.exists() => Measured::Value(file_bytes(path)),
            _ => Measured::failed("the initramfs cache file was not found"),
        },
        Err(why) => Measured::failed(why.clone()),
    };
    let initramfs: Measured<u64> = match &prepared {
        Ok(p) => Measured::Value(p.initramfs_bytes),
        Err(why) => Measured::failed(why.clone()),
    };
    let rootfs: Measured<u64> = match prepared
        .as_ref()
        .map_err(String::clone)
        .and_then(|_| ctx.vm_run(report, &req))
    {
        Ok(run) => match (&run.failure, run.exit_code) {
            (Some(why), _) => Measured::failed(why.clone()),
            (None, Some(0)) => parse_du(&run.output),
            (None, code) => Measured::failed(format!("du in the guest exited with {code:?}")),
        },
        Err(why) => Measured::failed(why),
    };
    report.check("initramfs", &initramfs);
    report.check("VM root file system", &rootfs);
    // the kernel frees the initramfs once unpacked: what stays is the root fs
    let per_vm = rootfs.clone();
    let n_vms = per_vm.as_ref().map(|p| *p * COPIES as u64);

    Ok(Measurements {
        footprint,
        shares,
        prints,
        writable,
        records,
        image_total,
        store_total,
        naive_total,
        cache_bytes,
        initramfs,
        rootfs,
        per_vm,
        n_vms,
    })
}

/// Act two: the image's layers, what COPIES of each need, one chart.
fn present(m: &Measurements, report: &mut LessonReport) {
    let mut layers = Table::new(
        "the image in the store",
        &["layer (chain id)", "unpacked", "compressed blob"],
    );
    for l in &m.footprint.layers {
        layers.row(vec![
            l.chain_id.clone().into(),
            format_bytes(l.unpacked).into(),
            format_bytes(l.blob).into(),
        ]);
    }
    layers.row(vec![
        "config + manifest".into(),
        format_bytes(m.footprint.metadata).into(),
        "".into(),
    ]);
    report.tables.push(layers);

    let mut t = Table::new(
        format!("what {COPIES} copies need"),
        &[
            "",
            &format!("{COPIES} containers"),
            &format!("{COPIES} microVMs"),
        ],
    );
    t.row(vec![
        "image files".into(),
        format!(
            "{} once (layers + blobs), shared by all {COPIES}",
            format_bytes(m.image_total)
        )
        .into(),
        m.cache_bytes
            .as_ref()
            .map(|c| format!("{} cached initramfs on disk, once", format_bytes(*c)))
            .into(),
    ]);
    t.row(vec![
        "per copy".into(),
        format!(
            "{} written + {} record and log, on average",
            format_bytes(m.writable / COPIES as u64),
            format_bytes(m.records / COPIES as u64)
        )
        .into(),
        match (m.initramfs.value(), m.rootfs.value()) {
            (Some(i), Some(r)) => format!(
                "{} root file system in its RAM (unpacked from the {} initramfs at boot)",
                format_bytes(*r),
                format_bytes(*i)
            )
            .into(),
            _ => Cell::Failed {
                failed: m.per_vm.failure().unwrap_or("not measured").to_string(),
            },
        },
    ]);
    t.row(vec![
        "total".into(),
        format!(
            "{} (if each had its own copy of the image: {})",
            format_bytes(m.store_total),
            format_bytes(m.naive_total)
        )
        .into(),
        m.n_vms
            .as_ref()
            .map(|v| format!("{} of guest RAM, plus the cache", format_bytes(*v)))
            .into(),
    ]);
    report.tables.push(t);
    report.charts.push(charts::copies(
        COPIES,
        m.store_total,
        m.naive_total,
        &m.n_vms,
    ));
}

/// Act three: what sharing saved, what each VM copies; caveats and facts.
fn explain(m: &Measurements, report: &mut LessonReport) {
    if m.shares {
        report.findings.push(format!(
            "All {COPIES} containers stacked the very same layer directories: the store holds the image's {} once, and the containers added only {} between them (their writable layers) plus {} of records and logs. Copying the image for each would have needed {}.",
            format_bytes(m.image_total),
            format_bytes(m.writable),
            format_bytes(m.records),
            format_bytes(m.naive_total)
        ));
    } else {
        report.findings.push("Unexpected: not every container stacked the image's layer directories; see the listing above.".into());
    }
    if let (Some(r), Some(n)) = (m.rootfs.value(), m.n_vms.value()) {
        report.findings.push(format!(
            "The microVM measured its own root file system at {} with du: a private copy it unpacked from the initramfs into its own RAM. {COPIES} VMs carry {COPIES} such copies ({} in all), and what one writes, the others cannot see.",
            format_bytes(*r),
            format_bytes(*n)
        ));
    }
    report.caveats.push("du inside the guest counts whole 4 KiB pages, while the store's sizes are apparent bytes, so small files weigh a little more in the VM column.".into());
    report.caveats.push("twinbox's microVMs boot from an initramfs; VMs with a disk image need a disk (or a copy-on-write overlay of one) per VM instead, which costs disk rather than RAM.".into());
    report.fact(
        "containers",
        json!({
            "count": COPIES,
            "share_image_layers": m.shares,
            "image_bytes": m.image_total,
            "image_unpacked_bytes": m.footprint.unpacked(),
            "layer_bytes_counted": m.footprint.unpacked(),
            "layers": m.footprint.layers,
            "writable_bytes": m.prints.iter().map(|p| p.writable).collect::<Vec<_>>(),
            "record_bytes": m.records,
            "store_total_bytes": m.store_total,
            "if_each_copied_bytes": m.naive_total,
        }),
    );
    report.fact(
        "vms",
        json!({
            "count": COPIES,
            "initramfs_bytes": m.initramfs,
            "initramfs_cache_bytes": m.cache_bytes,
            "rootfs_bytes_in_guest": m.rootfs,
            "per_vm_bytes": m.per_vm,
            "total_bytes": m.n_vms,
        }),
    );
}

/// The last line of `du -sxk /`: kibibytes, then the path.
fn parse_du(output: &str) -> Measured<u64> {
    output
        .lines()
        .rev()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let kib = w.next()?.parse::<u64>().ok()?;
            (w.next() == Some("/")).then_some(kib * 1024)
        })
        .map(Measured::Value)
        .unwrap_or_else(|| {
            Measured::failed(format!(
                "no `du` total in the guest's output: {:?}",
                output.trim()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn du_totals() {
        assert_eq!(parse_du("note\n2048\t/\n"), Measured::Value(2048 * 1024));
        assert!(parse_du("du: oops").failure().is_some());
    }
}
