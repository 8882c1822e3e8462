//! `twinbox build`: Dockerfile + context → image, like `docker build` (BuildKit).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use twinbox_engine::build::{self, BuildOptions, Plain, Progress, Quiet};
use twinbox_engine::network::NetworkMode;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Plain,
    Quiet,
}

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally tag the image (NAME[:TAG]); may be repeated
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default CONTEXT/Dockerfile); `-` reads it from stdin
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Build-time variable KEY=VALUE (KEY alone takes it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one
    #[arg(long)]
    target: Option<String>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    no_cache: bool,
    /// Pull base images from their registry even when they are in the store
    #[arg(long)]
    pull: bool,
    /// Network of RUN steps: bridge (the default), a network name, host or none
    #[arg(long)]
    network: Option<String>,
    /// Output: plain steps (auto, plain) or nothing (quiet)
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Print only the image id
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Set a label on the image KEY=VALUE; may be repeated
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Write the image id to this file
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Check the Dockerfile and report problems with line numbers, without building
    #[arg(long)]
    check: bool,
    /// A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// The build context directory, or `-` for a Dockerfile on stdin and no context
    context: String,
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the Dockerfile from stdin")?;
    Ok(s)
}

/// The Dockerfile's text, its path (when a file) and the name errors use.
fn dockerfile(
    args: &BuildArgs,
    context: Option<&Path>,
) -> Result<(String, Option<PathBuf>, String)> {
    match (args.file.as_deref(), context) {
        (Some("-"), _) | (None, None) => Ok((read_stdin()?, None, "Dockerfile".into())),
        (Some(f), _) => {
            let path = PathBuf::from(f);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the Dockerfile {f}"))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| f.to_string());
            Ok((text, Some(path), name))
        }
        (None, Some(ctx)) => {
            let path = ["Dockerfile", "dockerfile"]
                .iter()
                .map(|n| ctx.join(n))
                .find(|p| p.is_file())
                .with_context(|| {
                    format!(
                        "no Dockerfile in {}: add one or name it with -f",
                        ctx.display()
                    )
                })?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Ok((text, Some(path), "Dockerfile".into()))
        }
    }
}

pub fn build(root: &Path, args: BuildArgs) -> Result<i32> {
    let context = if args.context == "-" {
        None
    } else {
        let p = PathBuf::from(&args.context);
        if !p.is_dir() {
            bail!(
                "build context {} is not a directory: give a directory, or - for a Dockerfile on stdin",
                args.context
            );
        }
        Some(p)
    };
    if context.is_none() && args.file.as_deref() == Some("-") {
        bail!("the Dockerfile and the context cannot both come from stdin");
    }
    let (text, path, name) = dockerfile(&args, context.as_deref())?;
    if args.check {
        let problems = build::check(&text);
        for p in &problems {
            eprintln!(
                "{name}:{}: {}",
                p.line,
                match p.rule {
                    Some(rule) => format!("warning {rule}: {}", p.message),
                    None => format!("error: {}", p.message),
                }
            );
        }
        if problems.is_empty() {
            println!("Check complete, no warnings found.");
            return Ok(0);
        }
        eprintln!("Check complete, {} problem(s) found.", problems.len());
        return Ok(1);
    }
    let mut build_args = HashMap::new();
    for a in &args.build_args {
        if let Some((k, v)) = build::parse_build_arg(a) {
            build_args.insert(k, v);
        }
    }
    let mut labels = Vec::new();
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("--label {l:?}: use KEY=VALUE");
        }
        labels.push((k.to_string(), v.to_string()));
    }
    let network = match &args.network {
        Some(n) if n == "default" => None,
        Some(n) => Some(n.parse::<NetworkMode>().map_err(anyhow::Error::msg)?),
        None => None,
    };
    let secrets = args
        .secrets
        .iter()
        .map(|s| build::parse_secret(s))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = BuildOptions {
        context,
        dockerfile: text,
        dockerfile_path: path,
        dockerfile_name: name,
        tags: args.tags.clone(),
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        pull: args.pull,
        network,
        labels,
        secrets,
    };
    let store = crate::open_store(root)?;
    let quiet = args.quiet || args.progress == ProgressMode::Quiet;
    let mut plain = Plain::new(std::io::stderr());
    let progress: &mut dyn Progress = if quiet { &mut Quiet } else { &mut plain };
    let result = match build::build(&store, &opts, progress) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("twinbox: {e}");
            return Ok(1);
        }
    };
    if let Some(f) = &args.iidfile {
        std::fs::write(f, result.id.as_str())
            .with_context(|| format!("cannot write the image id to {}", f.display()))?;
    }
    if quiet {
        println!("{}", result.id);
    }
    Ok(0)
}
