//! `twinbox build`: a Dockerfile and a context become an image in the store.
//!
//! - [`dockerfile`]: the front end (parse with `parse-dockerfile`, checks, line numbers),
//!   in [`crate::dockerfile`] since `commit --change` and `import --change` read it too
//! - [`expand`]: variable substitution with BuildKit's shell lexer rules
//! - [`ignore`]: the `.dockerignore` matcher
//! - [`copy`]: COPY/ADD sources, their cache identity, the staging tree
//! - [`run`]: RUN in a real container; [`mounts`]: `RUN --mount`
//! - [`tree`]: a directory tree (upper dir, staging dir) as a layer tar
//! - [`merged`]: reading an image's files without mounting it
//! - [`cache`]: step records keyed like BuildKit's
//! - [`builder`]: stages and steps; [`progress`]: BuildKit-plain-like output

pub mod builder;
pub mod cache;
pub mod chmod;
pub mod copy;
pub mod fetch;
pub mod git;
pub mod ignore;
pub mod mounts;
pub mod progress;
pub mod run;

use std::collections::HashMap;
use std::path::PathBuf;

pub use crate::dockerfile::{self, expand, Problem};
pub use progress::{Plain, Progress, Quiet};

use crate::image::{Image, ImageError};
use crate::network::NetworkMode;
use crate::store::{Digest, Store, StoreError};

/// The network RUN steps get when neither `--network` nor `RUN --network` says.
/// The default bridge, as in Docker: steps reach what the host reaches, via NAT.
pub fn default_network() -> NetworkMode {
    NetworkMode::Cni(crate::network::DEFAULT_NETWORK.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}", problems_text(.file, .problems))]
    Parse {
        file: String,
        problems: Vec<Problem>,
    },
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        message: String,
    },
    #[error("{}", run_failed_text(.file, *.line, .instruction, *.code, .tail))]
    RunFailed {
        file: String,
        line: usize,
        instruction: String,
        code: i32,
        tail: Vec<String>,
    },
    #[error("{file}:{line}: image {name} is not in the store: pull it (`twinbox pull {name}`), load it (`twinbox load -i FILE`) or make one (`twinbox image bootstrap busybox`)")]
    BaseImage {
        file: String,
        line: usize,
        name: String,
    },
    #[error("{0}")]
    BadOption(String),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("internal: {0}")]
    Internal(String),
}

impl BuildError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }
}

fn problems_text(file: &str, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{file}:{}: {}", p.line, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_failed_text(
    file: &str,
    line: usize,
    instruction: &str,
    code: i32,
    tail: &[String],
) -> String {
    let mut s = format!("{file}:{line}: {instruction}: the command exited with code {code}");
    if !tail.is_empty() {
        s.push_str("\nlast output:");
        for l in tail {
            s.push_str("\n  ");
            s.push_str(l);
        }
    }
    s
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// What `twinbox build` was asked.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory; None for `-` (a Dockerfile on stdin, no context).
    pub context: Option<PathBuf>,
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// Its path when it came from a file (for `<Dockerfile>.dockerignore`).
    pub dockerfile_path: Option<PathBuf>,
    /// How errors name it (`Dockerfile`, `app.Dockerfile`, `-`).
    pub dockerfile_name: String,
    pub tags: Vec<String>,
    pub build_args: HashMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// `--network`; None means [`default_network`].
    pub network: Option<NetworkMode>,
    pub labels: Vec<(String, String)>,
    /// `--secret id=ID,src=FILE` or `id=ID,env=VAR`.
    pub secrets: Vec<(String, SecretSource)>,
}

#[derive(Debug)]
pub struct BuildResult {
    pub id: Digest,
    pub image: Image,
    /// Layer steps run or reused, and how many of them came from the cache.
    pub steps: usize,
    pub cached: usize,
}

/// Builds the image. On any error nothing is tagged and no container, mount or
/// temp dir is left; layers of steps that did succeed stay as cache.
pub fn build(
    store: &Store,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<BuildResult> {
    if let Some(ctx) = &opts.context {
        if !ctx.is_dir() {
            return Err(BuildError::BadOption(format!(
                "build context {} is not a directory",
                ctx.display()
            )));
        }
    }
    let file = dockerfile::parse(&opts.dockerfile).map_err(|problems| BuildError::Parse {
        file: opts.dockerfile_name.clone(),
        problems,
    })?;
    let result = builder::run_build(store, opts, &file, progress);
    store.release_lease();
    result
}

/// `build --check`: every problem, errors and warnings, with line numbers.
pub fn check(text: &str) -> Vec<Problem> {
    dockerfile::parse_with_problems(text).1
}

/// `KEY=VALUE` or `KEY` (taken from the caller's environment, dropped when unset).
pub fn parse_build_arg(arg: &str) -> Option<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) => Some((k.to_string(), v.to_string())),
        None => std::env::var(arg).ok().map(|v| (arg.to_string(), v)),
    }
}

/// Where a `build --secret` comes from: a file, or a variable of the
/// builder's own environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// BuildKit's limit on one secret's size.
const MAX_SECRET: u64 = 500 * 1024;

impl SecretSource {
    /// The secret's bytes, read when a step needs them.
    pub fn read(&self) -> std::result::Result<Vec<u8>, String> {
        match self {
            SecretSource::File(p) => std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())),
            SecretSource::Env(name) => std::env::var_os(name)
                .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec())
                .ok_or_else(|| format!("environment variable {name} is not set")),
        }
    }
}

/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]` as buildx reads it;
/// `id=ID` alone takes the variable ID when it is set, else the file ID.
pub fn parse_secret(arg: &str) -> Result<(String, SecretSource)> {
    let bad = |why: &str| BuildError::BadOption(format!("--secret {arg:?}: {why}"));
    let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
    for field in arg.split(',').filter(|f| !f.is_empty()) {
        let Some((k, v)) = field.split_once('=') else {
            return Err(bad("use id=ID,src=FILE or id=ID,env=VAR"));
        };
        match k.to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => typ = Some(v.to_string()),
            "type" => return Err(bad("type is file or env")),
            other => {
                return Err(bad(&format!(
                    "unknown key {other:?} (use id, src, env, type)"
                )))
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("an id is required (id=ID)"))?;
    if typ.as_deref() == Some("env") && env.is_none() {
        env = src.take();
    }
    let source = match (src, env) {
        (Some(_), Some(_)) => return Err(bad("give src or env, not both")),
        (Some(f), None) => SecretSource::File(PathBuf::from(f)),
        (None, Some(e)) => SecretSource::Env(e),
        (None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None) => SecretSource::File(PathBuf::from(&id)),
    };
    match &source {
        SecretSource::File(p) => match std::fs::metadata(p) {
            Ok(md) if md.is_file() && md.len() <= MAX_SECRET => {}
            Ok(md) if md.is_file() => return Err(bad("a secret is at most 500 KiB")),
            _ => return Err(bad(&format!("{} is not a file", p.display()))),
        },
        SecretSource::Env(name) => {
            if std::env::var_os(name).is_none() {
                return Err(bad(&format!("environment variable {name} is not set")));
            }
        }
    }
    Ok((id, source))
}
