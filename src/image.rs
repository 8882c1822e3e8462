//! Image verbs: images, tag, rmi, history, import, image bootstrap/inspect/prune,
//! system df.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use twinbox_engine::image::gc::{self, Candidates};
use twinbox_engine::image::{
    bootstrap, debian, import, inspect, iperf3, listing, load, postgres, remove, save, Image,
    Reference,
};
use twinbox_engine::system;
use twinbox_engine::system::usage::{self, Summary};
use twinbox_engine::system::InUse;
use twinbox_engine::template::Format;

use crate::open_store;

use crate::format::{human_duration, human_size, print_table, since};

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only print image ids
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show digests
    #[arg(long)]
    digests: bool,
    /// Do not truncate image ids
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Output: table, json, or a Go template (`{{.Repository}}:{{.Tag}}`)
    #[arg(long, default_value = "")]
    format: String,
    /// Only images of this repository, REPOSITORY[:TAG]
    repository: Option<String>,
}

pub fn images(root: &Path, args: ImagesArgs) -> Result<i32> {
    let store = open_store(root)?;
    let default = if args.digests {
        listing::TABLE_DIGESTS
    } else {
        listing::TABLE
    };
    let format = Format::parse(&args.format, default)?;
    let entries = listing::list(&store, args.repository.as_deref(), args.no_trunc)?;
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for e in &entries {
            let id = e.row["ID"].as_str().unwrap_or_default();
            if seen.insert(id.to_string()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = entries.into_iter().map(|e| e.row).collect();
    print!("{}", format.render(&rows, &listing::titles(), None)?);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Root filesystem tar (optionally gzip-compressed)
    file: PathBuf,
    /// Name for the image, NAME[:TAG]
    name: String,
    /// Dockerfile instruction for the image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
}

pub fn import(root: &Path, args: ImportArgs) -> Result<i32> {
    let store = open_store(root)?;
    let img = import::import_rootfs(&store, &args.file, &args.name, &args.change);
    store.release_lease();
    let img = img?;
    println!("{}", img.id);
    Ok(0)
}

/// Progress of a byte stream: a rewritten line on a terminal, a line every
/// 32 MB otherwise (logs, CI).
struct ByteProgress {
    label: &'static str,
    tty: bool,
    last: u64,
}

impl ByteProgress {
    fn new(label: &'static str) -> Self {
        use std::io::IsTerminal;
        ByteProgress {
            label,
            tty: std::io::stderr().is_terminal(),
            last: 0,
        }
    }

    fn update(&mut self, bytes: u64) {
        if self.tty && bytes - self.last >= 1 << 20 {
            eprint!("\r{} {:>10}", self.label, human_size(bytes));
            self.last = bytes;
        } else if !self.tty && bytes - self.last >= 32 << 20 {
            eprintln!("{} {}", self.label, human_size(bytes));
            self.last = bytes;
        }
    }

    fn finish(&self) {
        if self.tty && self.last > 0 {
            eprintln!();
        }
    }
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Existing image: name or id
    source: String,
    /// New name, NAME[:TAG]
    target: String,
}

pub fn tag(root: &Path, args: TagArgs) -> Result<i32> {
    let store = open_store(root)?;
    remove::tag(&store, &args.source, &args.target)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Remove even when a container uses the image or the id has several names
    #[arg(short = 'f', long)]
    force: bool,
    /// Images: names or ids
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn rmi(root: &Path, args: RmiArgs) -> Result<i32> {
    let store = open_store(root)?;
    let mut code = 0;
    for name in &args.images {
        match remove::remove(&store, name, args.force, &InUse) {
            Ok(report) => {
                for u in &report.untagged {
                    println!("Untagged: {u}");
                }
                if let Some(id) = &report.deleted {
                    println!("Deleted: {id}");
                }
            }
            Err(e) => {
                eprintln!("twinbox: {e}");
                code = 125;
            }
        }
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Image: name or id
    image: String,
    /// Do not shorten the CREATED BY column
    #[arg(long)]
    no_trunc: bool,
    /// Show sizes in bytes
    #[arg(short = 'H', long = "human", default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

pub fn history(root: &Path, args: HistoryArgs) -> Result<i32> {
    let store = open_store(root)?;
    let img = Image::resolve(&store, &args.image)?;
    let rows = inspect::history(&store, &img);
    let size = |b: u64| {
        if args.human {
            human_size(b)
        } else {
            b.to_string()
        }
    };
    match args.format.as_str() {
        "json" => {
            for (i, r) in rows.iter().enumerate() {
                println!(
                    "{}",
                    json!({"ID": if i == 0 { img.id.to_string() } else { "<missing>".into() },
                           "CreatedAt": r.created, "CreatedBy": r.created_by,
                           "Size": r.size, "Comment": r.comment})
                );
            }
        }
        "table" => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let by = if args.no_trunc || r.created_by.chars().count() <= 45 {
                        r.created_by.clone()
                    } else {
                        r.created_by.chars().take(44).collect::<String>() + "…"
                    };
                    vec![
                        if i == 0 {
                            img.id.short().to_string()
                        } else {
                            "<missing>".into()
                        },
                        r.created
                            .as_deref()
                            .map(|c| format!("{} ago", human_duration(since(c))))
                            .unwrap_or_default(),
                        by,
                        size(r.size),
                        r.comment.clone(),
                    ]
                })
                .collect();
            print_table(
                &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                &table,
            );
        }
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(0)
}

fn inspect_images(root: &Path, names: &[String], format: &str) -> Result<i32> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match Image::resolve(&store, n) {
            Ok(img) => out.push(inspect::inspect(&store, &img)),
            Err(e) => {
                eprintln!("twinbox: {e}");
                code = 125;
            }
        }
    }
    crate::format::print_objects(&out, format)?;
    Ok(code)
}

/// Docker's `image prune [-a]`: dangling (or with -a unused) images, then the
/// blobs and layers nothing names any more.
fn prune(root: &Path, all: bool) -> Result<i32> {
    let store = open_store(root)?;
    let (images, freed) = system::prune::prune_images(&store, all)?;
    if !images.is_empty() {
        println!("Deleted Images:\n{}\n", images.join("\n"));
    }
    let mut report = gc::collect(&store, &Candidates::All, &InUse)?;
    report.bytes_freed += freed;
    for b in &report.blobs {
        println!("deleted blob: {b}");
    }
    for l in &report.layers {
        println!("deleted layer: {l}");
    }
    if report.temp_entries > 0 {
        println!("deleted {} leftover temp entries", report.temp_entries);
    }
    println!("Total reclaimed space: {}", human_size(report.bytes_freed));
    Ok(0)
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Images: names or ids
    #[arg(required = true)]
    images: Vec<String>,
}

/// Refuses to pour a binary archive onto a terminal.
fn stdout_for_archive() -> Result<std::io::Stdout> {
    use std::io::IsTerminal;
    let out = std::io::stdout();
    if out.is_terminal() {
        bail!("refusing to write an archive to a terminal: give -o FILE or redirect the output");
    }
    Ok(out)
}

pub fn save(root: &Path, args: SaveArgs) -> Result<i32> {
    let store = open_store(root)?;
    let items = save::resolve_items(&store, &args.images)?;
    match &args.output {
        Some(path) => save::save_to_file(&store, &items, path)?,
        None => {
            let out = stdout_for_archive()?;
            save::write_archive(&store, &items, std::io::BufWriter::new(out.lock()))?;
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from this file instead of standard input
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    /// Print only the image names or ids
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub fn load(root: &Path, args: LoadArgs) -> Result<i32> {
    use std::io::IsTerminal;
    let store = open_store(root)?;
    let tty = std::io::stderr().is_terminal() && !args.quiet;
    let mut progress = |layer: &twinbox_engine::store::Digest, bytes: u64| {
        if tty {
            eprint!(
                "\rloading layer {}: {:>10}",
                layer.short(),
                human_size(bytes)
            );
        }
    };
    let loaded = match &args.input {
        Some(path) => load::load_file(&store, path, &mut progress, &InUse),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no archive on standard input: give -i FILE or pipe one in");
            }
            load::load_reader(&store, stdin.lock(), &mut progress, &InUse)
        }
    };
    store.release_lease();
    if tty {
        eprintln!();
    }
    for img in loaded? {
        if img.names.is_empty() {
            println!("Loaded image ID: {}", img.id);
        }
        for n in &img.names {
            println!("Loaded image: {n}");
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Container: name or id
    container: String,
    /// Write to this file instead of standard output
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

pub fn export(root: &Path, args: ExportArgs) -> Result<i32> {
    let store = open_store(root)?;
    match &args.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = dir.join(format!(
                ".{}.tmp-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let result = (|| -> Result<()> {
                let f = std::fs::File::create(&tmp)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                twinbox_engine::container::export::export(&store, &args.container, &mut w)?;
                let f = w
                    .into_inner()
                    .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        None => {
            let out = stdout_for_archive()?;
            twinbox_engine::container::export::export(
                &store,
                &args.container,
                std::io::BufWriter::new(out.lock()),
            )?;
        }
    }
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum SystemCommand {
    /// Show disk usage: images, layers, containers, volumes
    Df {
        /// Show every image, layer, container and volume
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Output format: table or json
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Remove stopped containers, unused networks, dangling images and build cache
    Prune {
        /// Remove every image without a container, not only dangling ones, and all build cache
        #[arg(short = 'a', long)]
        all: bool,
        /// Remove unused anonymous volumes too
        #[arg(long)]
        volumes: bool,
        /// Do not ask for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Verify the store: blobs, images, layers, containers, leftovers
    Check {
        /// Fix what can be fixed without losing an image or a volume
        #[arg(long)]
        repair: bool,
    },
}

pub fn system(root: &Path, cmd: SystemCommand) -> Result<i32> {
    match cmd {
        SystemCommand::Df { verbose, format } => system_df(root, verbose, &format),
        SystemCommand::Check { repair } => system_check(root, repair),
        SystemCommand::Prune {
            all,
            volumes,
            force,
        } => system_prune(root, system::prune::PruneOptions { all, volumes }, force),
    }
}

/// Docker's `system prune`: the warning, a y/N question unless -f, then each
/// kind that went and the space given back.
fn system_prune(root: &Path, opts: system::prune::PruneOptions, force: bool) -> Result<i32> {
    let store = open_store(root)?;
    if !force {
        print!(
            "{}\nAre you sure you want to continue? [y/N] ",
            system::prune::warning(&opts)
        );
        std::io::Write::flush(&mut std::io::stdout())?;
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer)? == 0 {
            println!();
            bail!("system prune needs a yes: answer y at the prompt, or give -f to skip it");
        }
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES") {
            return Ok(0);
        }
    }
    let r = system::prune::prune(&store, &opts)?;
    for (title, items) in [
        ("Deleted Containers:", &r.containers),
        ("Deleted Networks:", &r.networks),
        ("Deleted Volumes:", &r.volumes),
        ("Deleted Images:", &r.images),
        ("Deleted build cache objects:", &r.build_cache),
    ] {
        if !items.is_empty() {
            println!("{title}");
            for i in items {
                println!("{i}");
            }
            println!();
        }
    }
    println!("Total reclaimed space: {}", human_size(r.reclaimed_bytes));
    Ok(0)
}

/// One line per problem, fsck-like: exit 1 while anything is left unrepaired.
fn system_check(root: &Path, repair: bool) -> Result<i32> {
    // opened without the usual recovery, so the check reports what it would fix
    let store = twinbox_engine::store::Store::open(root)?;
    let report = system::check(&store, repair)?;
    for p in &report.problems {
        println!("{p}");
    }
    let left = report.unrepaired();
    eprintln!(
        "checked {} blobs, {} images, {} layers, {} containers: {}",
        report.blobs,
        report.images,
        report.layers,
        report.containers,
        match (report.problems.len(), left) {
            (0, _) => "no problems".to_string(),
            (n, 0) => format!("{n} problems, all repaired"),
            (n, l) if repair => format!("{n} problems, {l} left that need you (see above)"),
            (n, _) =>
                format!("{n} problems: `twinbox system check --repair` fixes what it safely can"),
        }
    );
    for lease in &report.dead_leases {
        println!("{lease}");
    }
    if !report.dead_leases.is_empty() {
        let released = report.dead_leases.iter().filter(|l| l.released).count();
        eprintln!(
            "{} dead address leases (this host's, any store's): {}",
            report.dead_leases.len(),
            if repair {
                format!("{released} released")
            } else {
                "`twinbox system check --repair` releases them".to_string()
            }
        );
    }
    if report.reclaimable > 0 {
        eprintln!(
            "{} unused blobs and layers: {}",
            report.reclaimable,
            if repair {
                format!("{} removed", report.reclaimed)
            } else {
                "reclaim them with `twinbox image prune`".to_string()
            }
        );
    }
    Ok(if left == 0 { 0 } else { 1 })
}

fn system_df(root: &Path, verbose: bool, format: &str) -> Result<i32> {
    let store = open_store(root)?;
    let du = usage::disk_usage(&store)?;
    let summary_row = |kind: &str, s: Summary| {
        let pct = (s.reclaimable * 100)
            .checked_div(s.bytes)
            .map(|p| format!(" ({p}%)"))
            .unwrap_or_default();
        vec![
            kind.to_string(),
            s.total.to_string(),
            s.active.to_string(),
            human_size(s.bytes),
            format!("{}{pct}", human_size(s.reclaimable)),
        ]
    };
    if format == "json" {
        let summary = |s: Summary| json!({"TotalCount": s.total, "Active": s.active, "Size": s.bytes, "Reclaimable": s.reclaimable});
        let v = json!({
            "Images": summary(du.images_summary()),
            "Layers": summary(du.layers_summary()),
            "Containers": summary(du.containers_summary()),
            "Volumes": summary(du.volumes_summary()),
            "VmCache": summary(du.vm_cache_summary()),
            "ImageList": du.images.iter().map(|i| json!({
                "ID": i.id.to_string(), "Names": i.names, "Size": i.size,
                "SharedSize": i.shared, "UniqueSize": i.unique, "BlobSize": i.blob_bytes,
                "Containers": i.containers})).collect::<Vec<_>>(),
            "LayerList": du.layers.iter().map(|l| json!({
                "ChainID": l.chain_id.to_string(), "DiffID": l.diff_id.to_string(),
                "Blob": l.blob.to_string(), "Size": l.bytes, "ShiftedSize": l.shifted_bytes,
                "BlobSize": l.blob_bytes,
                "Images": l.images, "Containers": l.containers})).collect::<Vec<_>>(),
            "ContainerList": du.containers.iter().map(|c| json!({
                "ID": c.id, "Name": c.name, "Image": c.image, "Running": c.running,
                "Size": c.writable_bytes, "OtherSize": c.other_bytes})).collect::<Vec<_>>(),
            "VolumeList": du.volumes.iter().map(|v| json!({"Name": v.name, "Size": v.bytes}))
                .collect::<Vec<_>>(),
            "VmCacheList": du.vm_cache.iter().map(|c| json!({"Name": c.name, "Size": c.bytes}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if format != "table" {
        bail!("unknown format {format:?}: use table or json");
    }
    print_table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[
            summary_row("Images", du.images_summary()),
            summary_row("Layers", du.layers_summary()),
            summary_row("Containers", du.containers_summary()),
            summary_row("Local Volumes", du.volumes_summary()),
            summary_row("VM Disks/Initramfs", du.vm_cache_summary()),
        ],
    );
    if !verbose {
        return Ok(0);
    }
    println!("\nImages space usage:\n");
    let mut rows = Vec::new();
    for i in &du.images {
        let names: Vec<Reference> = i
            .names
            .iter()
            .filter_map(|n| Reference::parse(n).ok())
            .collect();
        let (repo, tag) = names
            .first()
            .map(|r| {
                (
                    r.familiar_repository(),
                    r.tag.clone().unwrap_or_else(|| "<none>".into()),
                )
            })
            .unwrap_or_else(|| ("<none>".into(), "<none>".into()));
        rows.push(vec![
            repo,
            tag,
            i.id.short().to_string(),
            i.created
                .as_deref()
                .map(|c| format!("{} ago", human_duration(since(c))))
                .unwrap_or_default(),
            human_size(i.size),
            human_size(i.shared),
            human_size(i.unique),
            i.containers.to_string(),
        ]);
    }
    print_table(
        &[
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "SHARED SIZE",
            "UNIQUE SIZE",
            "CONTAINERS",
        ],
        &rows,
    );
    println!("\nLayers space usage:\n");
    let rows: Vec<Vec<String>> = du
        .layers
        .iter()
        .map(|l| {
            vec![
                l.chain_id.short().to_string(),
                l.diff_id.short().to_string(),
                human_size(l.bytes),
                human_size(l.shifted_bytes),
                human_size(l.blob_bytes),
                l.images.to_string(),
                l.containers.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "CHAIN ID",
            "DIFF ID",
            "SIZE",
            "USERNS COPIES",
            "BLOB SIZE",
            "IMAGES",
            "CONTAINERS",
        ],
        &rows,
    );
    println!("\nContainers space usage:\n");
    let rows: Vec<Vec<String>> = du
        .containers
        .iter()
        .map(|c| {
            vec![
                c.id[..12.min(c.id.len())].to_string(),
                c.image.clone(),
                human_size(c.writable_bytes),
                if c.running { "running" } else { "stopped" }.to_string(),
                c.name.clone(),
            ]
        })
        .collect();
    print_table(&["CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"], &rows);
    println!("\nLocal Volumes space usage:\n");
    let rows: Vec<Vec<String>> = du
        .volumes
        .iter()
        .map(|v| vec![v.name.clone(), human_size(v.bytes)])
        .collect();
    print_table(&["VOLUME NAME", "SIZE"], &rows);
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build a base image without any registry: busybox, postgres or iperf3 (from
    /// this host's files) or debian[:SUITE] (with mmdebstrap from the Debian mirror)
    Bootstrap {
        /// What to build: busybox, postgres, iperf3, debian or debian:SUITE (default suite bookworm)
        kind: String,
        /// Name for the image (default: busybox:latest, postgres-base:latest, iperf3:latest, debian:SUITE)
        #[arg(long)]
        name: Option<String>,
        /// Debian: extra packages, comma-separated
        #[arg(long, value_delimiter = ',')]
        packages: Vec<String>,
        /// Debian: mirror URL (default: the host's apt mirror, else deb.debian.org)
        #[arg(long)]
        mirror: Option<String>,
    },
    /// List images (same as `twinbox images`)
    Ls(ImagesArgs),
    /// Show an image's details as JSON
    Inspect {
        /// Format each image with a Go template (`{{.Config.Cmd}}`)
        #[arg(short = 'f', long, default_value = "")]
        format: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the steps that made an image (same as `twinbox history`)
    History(HistoryArgs),
    /// Give an image another name (same as `twinbox tag`)
    Tag(TagArgs),
    /// Remove images (same as `twinbox rmi`)
    Rm(RmiArgs),
    /// Write images to a tar archive (same as `twinbox save`)
    Save(SaveArgs),
    /// Load images from a tar archive (same as `twinbox load`)
    Load(LoadArgs),
    /// Remove blobs and layers no image or container uses
    Prune {
        /// Accepted for Docker habits; nothing is asked either way
        #[arg(short = 'f', long)]
        force: bool,
        /// Every image no container uses, not only unnamed (dangling) ones
        #[arg(short = 'a', long)]
        all: bool,
    },
}

pub fn image(root: &Path, cmd: ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Bootstrap {
            kind,
            name,
            packages,
            mirror,
        } => {
            let store = open_store(root)?;
            let (base, suite) = match kind.split_once(':') {
                Some((b, s)) => (b, Some(s)),
                None => (kind.as_str(), None),
            };
            let img = match base {
                "busybox" => {
                    let img = bootstrap::bootstrap_busybox(
                        &store,
                        name.as_deref().unwrap_or("busybox:latest"),
                    );
                    store.release_lease();
                    img?
                }
                "debian" => {
                    let opts = debian::DebianOptions {
                        suite: suite.unwrap_or(debian::DEFAULT_SUITE).to_string(),
                        packages: packages.into_iter().filter(|p| !p.is_empty()).collect(),
                        mirror,
                        name,
                    };
                    let mut progress = ByteProgress::new("unpacked");
                    let img = debian::bootstrap_debian(
                        &store,
                        &opts,
                        &mut |n| progress.update(n),
                        &InUse,
                    );
                    progress.finish();
                    store.release_lease();
                    img?
                }
                "postgres" => {
                    let img = postgres::bootstrap_postgres(
                        &store,
                        name.as_deref().unwrap_or(postgres::DEFAULT_NAME),
                    );
                    store.release_lease();
                    img?
                }
                "iperf3" => {
                    let img = iperf3::bootstrap_iperf3(
                        &store,
                        name.as_deref().unwrap_or(iperf3::DEFAULT_NAME),
                    );
                    store.release_lease();
                    img?
                }
                other => {
                    bail!("cannot bootstrap {other:?}: choose busybox, postgres, iperf3 or debian[:SUITE]")
                }
            };
            let name = img.names.first().cloned().unwrap_or_default();
            println!(
                "{} {}",
                Reference::parse(&name)
                    .map(|r| r.familiar())
                    .unwrap_or(name),
                img.id
            );
            Ok(0)
        }
        ImageCommand::Ls(args) => images(root, args),
        ImageCommand::Inspect { images, format } => inspect_images(root, &images, &format),
        ImageCommand::History(args) => history(root, args),
        ImageCommand::Tag(args) => tag(root, args),
        ImageCommand::Rm(args) => rmi(root, args),
        ImageCommand::Save(args) => save(root, args),
        ImageCommand::Load(args) => load(root, args),
        ImageCommand::Prune { all, .. } => prune(root, all),
    }
}
