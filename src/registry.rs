//! Registry verbs: pull, push, login, logout.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

use crate::open_store;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use twinbox_engine::image::Reference;
use twinbox_engine::registry::pull::{pull as pull_image, PullOptions};
use twinbox_engine::registry::push::{push as push_image, PushOptions};
use twinbox_engine::registry::{AuthFile, Client, ConnectOptions, Credentials, Platform, Progress};

use crate::format::human_size;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Platform to pick from a multi-platform image, os/arch[/variant]
    #[arg(long)]
    platform: Option<String>,
    /// Allow plain HTTP or unverified HTTPS for this registry
    #[arg(long)]
    insecure: bool,
    /// Print only the image name at the end
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Image to pull: NAME[:TAG] or NAME@sha256:DIGEST
    reference: String,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Allow plain HTTP or unverified HTTPS for this registry
    #[arg(long)]
    insecure: bool,
    /// Print only the digest at the end
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Image to push: REGISTRY/NAME[:TAG]
    reference: String,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User name
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin)
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// Allow plain HTTP or unverified HTTPS for this registry
    #[arg(long)]
    insecure: bool,
    /// Registry host[:port] (default: docker.io)
    registry: Option<String>,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: docker.io)
    registry: Option<String>,
}

/// Progress as bars on a terminal, as plain lines otherwise.
enum Display {
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<String, ProgressBar>>,
    },
    Lines,
    Quiet,
}

impl Display {
    fn new(quiet: bool) -> Display {
        if quiet {
            Display::Quiet
        } else if std::io::stdout().is_terminal() {
            Display::Bars {
                multi: MultiProgress::new(),
                bars: Mutex::new(HashMap::new()),
            }
        } else {
            Display::Lines
        }
    }

    fn bar(&self, id: &str) -> Option<ProgressBar> {
        let Display::Bars { multi, bars } = self else {
            return None;
        };
        let mut bars = bars.lock().unwrap();
        let bar = bars.entry(id.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix}: {msg:16} [{bar:30}] {bytes:>9}/{total_bytes:9}",
                )
                .expect("progress template")
                .progress_chars("=> "),
            );
            bar.set_prefix(id.to_string());
            bar
        });
        Some(bar.clone())
    }
}

impl Progress for Display {
    fn start(&self, id: &str, action: &str, total: u64) {
        match self {
            Display::Bars { .. } => {
                let bar = self.bar(id).expect("bars");
                bar.set_length(total);
                bar.set_message(action.to_string());
            }
            Display::Lines => println!("{id}: {action} {}", human_size(total)),
            Display::Quiet => {}
        }
    }

    fn advance(&self, id: &str, bytes: u64) {
        if let Some(bar) = self.bar(id) {
            bar.inc(bytes);
        }
    }

    fn finish(&self, id: &str, status: &str) {
        match self {
            Display::Bars { .. } => {
                let bar = self.bar(id).expect("bars");
                bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("template"));
                bar.finish_with_message(status.to_string());
            }
            Display::Lines => println!("{id}: {status}"),
            Display::Quiet => {}
        }
    }

    fn message(&self, line: &str) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Display::Lines => println!("{line}"),
            Display::Quiet => {}
        }
    }
}

fn connect_options(root: &Path, registry: &str, insecure: bool) -> Result<ConnectOptions> {
    let credentials = AuthFile::for_store(root).get(registry)?;
    Ok(ConnectOptions {
        insecure,
        credentials,
        ..ConnectOptions::default()
    })
}

pub fn pull(root: &Path, args: PullArgs) -> Result<i32> {
    let store = open_store(root)?;
    let reference = Reference::parse(&args.reference)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let options = PullOptions {
        platform,
        connect: connect_options(root, &reference.registry, args.insecure)?,
    };
    let display = Display::new(args.quiet);
    if !args.quiet {
        let tag = reference
            .tag
            .as_deref()
            .or(reference.digest.as_deref())
            .unwrap_or("latest");
        println!("{tag}: pulling from {}", reference.familiar_repository());
    }
    let pulled = pull_image(&store, &args.reference, &options, &display)?;
    if !args.quiet {
        println!("Digest: {}", pulled.manifest_digest);
        let status = if pulled.downloaded == 0 {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        println!("Status: {status} {}", pulled.reference.familiar());
    }
    println!("{}", pulled.reference.full());
    Ok(0)
}

pub fn push(root: &Path, args: PushArgs) -> Result<i32> {
    let store = open_store(root)?;
    let reference = Reference::parse(&args.reference)?;
    let options = PushOptions {
        connect: connect_options(root, &reference.registry, args.insecure)?,
    };
    let display = Display::new(args.quiet);
    if !args.quiet {
        println!(
            "The push refers to repository [{}/{}]",
            reference.registry, reference.repository
        );
    }
    let pushed = push_image(&store, &args.reference, &options, &display)?;
    if args.quiet {
        println!("{}", pushed.manifest_digest);
    } else {
        let tag = pushed.reference.tag.as_deref().unwrap_or("");
        println!(
            "{tag}: digest: {} size: {} (blobs: {} pushed, {} mounted, {} already there)",
            pushed.manifest_digest,
            pushed.manifest_size,
            pushed.uploaded,
            pushed.mounted,
            pushed.already_present
        );
    }
    Ok(0)
}

/// `https://host:port/v2/` and the like → `host:port`, as credentials are keyed.
fn registry_name(arg: Option<&str>) -> Result<String> {
    let raw = arg.unwrap_or("docker.io");
    let name = raw
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("invalid registry {raw:?}: give host[:port], e.g. 127.0.0.1:5000 or docker.io");
    }
    Ok(name.to_string())
}

/// Reads a line from the terminal; without echo for passwords.
fn prompt(label: &str, echo: bool) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "no {} given: use -u USER and --password-stdin (or -p)",
            label.to_lowercase()
        );
    }
    print!("{label}: ");
    std::io::stdout().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is a terminal (checked above) and `saved` is a valid termios.
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if !echo && have_termios {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets attributes read from the same terminal, echo off.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if !echo && have_termios {
        // SAFETY: restores the attributes saved above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
        println!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn login(root: &Path, args: LoginArgs) -> Result<i32> {
    let registry = registry_name(args.registry.as_deref())?;
    if args.password_stdin && args.password.is_some() {
        bail!("--password and --password-stdin are mutually exclusive: give one");
    }
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username", true)?,
    };
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        eprintln!("warning: a password on the command line is visible to other users: prefer --password-stdin");
        p
    } else {
        prompt("Password", false)?
    };
    if username.is_empty() || password.is_empty() {
        bail!("login to {registry}: user name and password must not be empty");
    }
    let credentials = Credentials { username, password };
    let options = ConnectOptions {
        insecure: args.insecure,
        credentials: Some(credentials.clone()),
        ..ConnectOptions::default()
    };
    // connecting with the credentials checks them (basic) or trades them for a token
    Client::connect(&registry, Vec::new(), &options)
        .with_context(|| format!("login to {registry}"))?;
    let file = AuthFile::for_store(root);
    file.set(&registry, &credentials)?;
    println!(
        "Login Succeeded (credentials kept in {})",
        file.path().display()
    );
    Ok(0)
}

pub fn logout(root: &Path, args: LogoutArgs) -> Result<i32> {
    let registry = registry_name(args.registry.as_deref())?;
    if AuthFile::for_store(root).remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        assert_eq!(registry_name(None).unwrap(), "docker.io");
        assert_eq!(
            registry_name(Some("127.0.0.1:5000")).unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(
            registry_name(Some("https://ghcr.io/v2/")).unwrap(),
            "ghcr.io"
        );
        assert!(registry_name(Some("")).is_err());
        assert!(registry_name(Some("https://")).is_err());
    }
}
