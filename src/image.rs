//! Image verbs: images, import, image bootstrap.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use twinbox_engine::image::{bootstrap, import, Image, Reference};
use twinbox_engine::store::Store;

use crate::format::{human_duration, human_size, print_table, since};

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only print image ids
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
}

pub fn images(root: &Path, args: ImagesArgs) -> Result<i32> {
    let store = Store::open(root)?;
    let list = Image::list(&store)?;
    if args.quiet {
        for (_, img) in &list {
            println!("{}", img.id.short());
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for (name, img) in &list {
        let r = Reference::parse(name)?;
        let size = img.unpacked_size(&store);
        if args.format == "json" {
            println!(
                "{}",
                json!({"Repository": r.familiar_repository(), "Tag": r.tag, "ID": img.id.short(),
                       "Digest": img.manifest_digest.to_string(), "CreatedAt": img.created(), "Size": size})
            );
            continue;
        }
        rows.push(vec![
            r.familiar_repository(),
            r.tag.clone().unwrap_or_else(|| "<none>".into()),
            img.id.short().to_string(),
            img.created()
                .map(|c| format!("{} ago", human_duration(since(c))))
                .unwrap_or_default(),
            human_size(size),
        ]);
    }
    match args.format.as_str() {
        "table" => print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows),
        "json" => {}
        other => bail!("unknown format {other:?}: use table or json"),
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Root filesystem tar (optionally gzip-compressed)
    file: PathBuf,
    /// Name for the image, NAME[:TAG]
    name: String,
    /// Dockerfile instruction to apply; only `CMD ...` for now
    #[arg(short = 'c', long = "change")]
    change: Vec<String>,
}

fn parse_cmd_change(change: &str) -> Result<Vec<String>> {
    let Some(rest) = change.trim().strip_prefix("CMD ") else {
        bail!("unsupported --change {change:?}: only CMD is supported for now");
    };
    let rest = rest.trim();
    if rest.starts_with('[') {
        return serde_json::from_str(rest).map_err(|e| {
            anyhow::anyhow!("--change {change:?}: the JSON form must be a list of strings: {e}")
        });
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
}

pub fn import(root: &Path, args: ImportArgs) -> Result<i32> {
    let store = Store::open(root)?;
    let mut cmd = None;
    for c in &args.change {
        cmd = Some(parse_cmd_change(c)?);
    }
    let img = import::import_rootfs(&store, &args.file, &args.name, cmd)?;
    println!("{}", img.id);
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Build a base image from this host, without any registry (busybox)
    Bootstrap {
        /// What to build: busybox
        kind: String,
        /// Name for the image (default: busybox:latest)
        #[arg(long)]
        name: Option<String>,
    },
    /// List images (same as `twinbox images`)
    Ls(ImagesArgs),
}

pub fn image(root: &Path, cmd: ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Bootstrap { kind, name } => {
            let store = Store::open(root)?;
            let img = match kind.as_str() {
                "busybox" => bootstrap::bootstrap_busybox(
                    &store,
                    name.as_deref().unwrap_or("busybox:latest"),
                )?,
                other => bail!("cannot bootstrap {other:?}: only busybox is available for now"),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_changes() {
        assert_eq!(
            parse_cmd_change("CMD [\"sh\",\"-c\",\"x\"]").unwrap(),
            vec!["sh", "-c", "x"]
        );
        assert_eq!(
            parse_cmd_change("CMD echo hi").unwrap(),
            vec!["/bin/sh", "-c", "echo hi"]
        );
        assert!(parse_cmd_change("ENV A=b").is_err());
    }
}
