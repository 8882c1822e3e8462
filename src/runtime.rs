//! `twinbox runtime ...` (or the binary called as `twinbox-runc`): the OCI
//! runtime command line on bundles, with runc's verbs, flags and failure
//! output, so containerd's shim and conformance suites can call it as runc.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use twinbox_engine::runtime::oci::{
    CreateOptions, ExecOptions, OciRuntime, UpdateOptions, DEFAULT_STATE_ROOT,
};

use crate::container::{parse_signal, require_root};

/// The names that make the binary behave as `twinbox runtime`.
pub const RUNC_NAMES: [&str; 2] = ["twinbox-runc", "runc"];

#[derive(Parser, Debug)]
#[command(
    name = "twinbox runtime",
    version,
    about = "The OCI runtime, driven like runc on a bundle"
)]
pub struct RuncCli {
    /// Directory for the containers' state (runc's --root)
    #[arg(long, global = true, default_value = DEFAULT_STATE_ROOT)]
    root: PathBuf,
    /// Also write errors to this file
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of --log: text or json
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Manage cgroups through systemd (not supported: there is no systemd here)
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Log debug details to stderr
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility (checkpointing is not supported)
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Accepted for runc compatibility
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    command: RuntimeCommand,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct CreateFlags {
    /// Bundle directory (holds config.json)
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid here
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master side
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Enter the root with MS_MOVE + chroot instead of pivot_root
    #[arg(long)]
    no_pivot: bool,
    /// Accepted (twinbox never creates a session keyring)
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many descriptors after stderr to the process
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
}

impl CreateFlags {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum RuntimeCommand {
    /// Create a container from a bundle; it waits for `start`
    Create {
        #[command(flatten)]
        flags: CreateFlags,
        id: String,
    },
    /// Run the created container's process
    Start { id: String },
    /// Print the OCI state JSON
    State { id: String },
    /// Send a signal (default TERM)
    Kill {
        /// Signal every process of the container
        #[arg(short = 'a', long)]
        all: bool,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Remove a stopped or created container (a running one with --force)
    Delete {
        #[arg(short = 'f', long)]
        force: bool,
        id: String,
    },
    /// Create, start and wait: exit with the process's status
    Run {
        #[command(flatten)]
        flags: CreateFlags,
        /// Accepted: run always waits in the foreground
        #[arg(short = 'd', long)]
        detach: bool,
        id: String,
    },
    /// Run another process in the container
    Exec {
        /// process.json giving args, env, cwd, user, terminal
        #[arg(short = 'p', long)]
        process: Option<PathBuf>,
        /// Set an environment variable (K=V)
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// Working directory inside the container
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Give the process a terminal (needs --console-socket)
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Do not wait for the process
        #[arg(short = 'd', long)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Add a capability (e.g. CAP_KILL) to the process
        #[arg(short = 'c', long = "cap")]
        caps: Vec<String>,
        /// Run as UID[:GID]
        #[arg(short = 'u', long)]
        user: Option<String>,
        /// Set no_new_privs for the process
        #[arg(long)]
        no_new_privs: bool,
        /// Exec into a paused container too
        #[arg(long)]
        ignore_paused: bool,
        /// Accepted for runc compatibility: the process joins the container's cgroup
        #[arg(long, hide = true)]
        cgroup: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Freeze every process of the container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// List the container's processes
    Ps {
        #[arg(short = 'f', long, default_value = "table")]
        format: String,
        id: String,
    },
    /// Change the container's cgroup limits
    Update {
        /// OCI linux.resources JSON from this file, or - for stdin
        #[arg(short = 'r', long)]
        resources: Option<PathBuf>,
        /// Memory limit (bytes, or with a unit: 64m, 1g)
        #[arg(short = 'm', long)]
        memory: Option<String>,
        /// CFS quota per period in microseconds (-1: none)
        #[arg(long, allow_hyphen_values = true)]
        cpu_quota: Option<i64>,
        /// CFS period in microseconds
        #[arg(long)]
        cpu_period: Option<u64>,
        /// Relative CPU weight
        #[arg(long = "cpu-share")]
        cpu_share: Option<u64>,
        /// Most processes at once (0 or less: no limit)
        #[arg(long, allow_hyphen_values = true)]
        pids_limit: Option<i64>,
        id: String,
    },
    /// Print the container's resource usage as runc's stats events (JSON lines)
    Events {
        /// One event, then exit
        #[arg(long)]
        stats: bool,
        /// Time between events (e.g. 5s, 500ms)
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// What this runtime supports, as runc's `features` JSON
    Features,
}

/// A Go-style duration as runc takes it: `5s`, `500ms`, `1m`, `1.5s`.
fn parse_interval(s: &str) -> Result<std::time::Duration> {
    let bad = || anyhow::anyhow!("invalid --interval {s:?}: use a duration such as 5s or 500ms");
    let split = s.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Runs the runtime command line `args` (without the program name); returns
/// the exit code. Failures are printed as runc prints them, so callers that
/// look for `level=error` (or read `--log` as JSON) recognise them.
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let cli = match RuncCli::try_parse_from(
        std::iter::once(std::ffi::OsString::from("twinbox runtime")).chain(args),
    ) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    if cli.debug {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }
    match dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = crate::format::error_chain(&e);
            report_error(&cli, &msg);
            1
        }
    }
}

fn report_error(cli: &RuncCli, msg: &str) {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    eprintln!("time=\"{time}\" level=error msg={msg:?}");
    if let Some(path) = &cli.log {
        let line = match cli.log_format {
            LogFormat::Json => {
                serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level=error msg={msg:?}"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// `UID[:GID]`, numbers only as runc takes them.
fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let num = |v: &str| {
        v.parse::<u32>()
            .with_context(|| format!("invalid --user {s:?}: use UID[:GID] with numbers"))
    };
    Ok((num(uid)?, gid.map(num).transpose()?))
}

fn dispatch(cli: &RuncCli) -> Result<i32> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: this host has no systemd; use cgroupfs paths");
    }
    if !matches!(cli.command, RuntimeCommand::Features) {
        require_root("runtime")?;
    }
    let rt = OciRuntime::new(&cli.root);
    match &cli.command {
        RuntimeCommand::Create { flags, id } => {
            rt.create(id, &flags.bundle, &flags.options())?;
            Ok(0)
        }
        RuntimeCommand::Start { id } => {
            rt.start(id)?;
            Ok(0)
        }
        RuntimeCommand::State { id } => {
            let state = rt.state(id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        RuntimeCommand::Kill { all, id, signal } => {
            rt.kill(id, parse_signal(signal)?, *all)?;
            Ok(0)
        }
        RuntimeCommand::Delete { force, id } => {
            rt.delete(id, *force)?;
            Ok(0)
        }
        RuntimeCommand::Run { flags, id, .. } => Ok(rt.run(id, &flags.bundle, &flags.options())?),
        RuntimeCommand::Exec {
            process,
            env,
            cwd,
            tty,
            console_socket,
            detach,
            pid_file,
            preserve_fds,
            caps,
            user,
            no_new_privs,
            ignore_paused,
            cgroup: _,
            id,
            command,
        } => Ok(rt.exec(
            id,
            &ExecOptions {
                process: process.clone(),
                args: command.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                tty: *tty,
                console_socket: console_socket.clone(),
                detach: *detach,
                pid_file: pid_file.clone(),
                preserve_fds: *preserve_fds,
                caps: caps.clone(),
                user: user.as_deref().map(parse_user).transpose()?,
                no_new_privs: *no_new_privs,
                ignore_paused: *ignore_paused,
            },
        )?),
        RuntimeCommand::Pause { id } => {
            rt.pause(id, true)?;
            Ok(0)
        }
        RuntimeCommand::Resume { id } => {
            rt.pause(id, false)?;
            Ok(0)
        }
        RuntimeCommand::Ps { format, id } => {
            let pids = rt.pids(id)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string(&pids)?),
                "table" => {
                    println!("PID");
                    for p in pids {
                        println!("{p}");
                    }
                }
                other => bail!("unknown ps format {other:?}: use table or json"),
            }
            Ok(0)
        }
        RuntimeCommand::Update {
            resources,
            memory,
            cpu_quota,
            cpu_period,
            cpu_share,
            pids_limit,
            id,
        } => {
            rt.update(
                id,
                &UpdateOptions {
                    resources: resources.clone(),
                    memory: memory.clone(),
                    cpu_quota: *cpu_quota,
                    cpu_period: *cpu_period,
                    cpu_shares: *cpu_share,
                    pids_limit: *pids_limit,
                },
            )?;
            Ok(0)
        }
        RuntimeCommand::Events {
            stats,
            interval,
            id,
        } => {
            let every = parse_interval(interval)?;
            let mut out = std::io::stdout().lock();
            loop {
                let event = rt.stats(id);
                match event {
                    Ok(ev) => {
                        if writeln!(out, "{ev}").and_then(|_| out.flush()).is_err() {
                            return Ok(0); // the reader went away
                        }
                    }
                    // streaming ends when the container does
                    Err(_) if !*stats && rt.state(id).is_ok_and(|s| s.status == "stopped") => {
                        return Ok(0)
                    }
                    Err(e) => return Err(e.into()),
                }
                if *stats {
                    return Ok(0);
                }
                std::thread::sleep(every);
            }
        }
        RuntimeCommand::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&twinbox_engine::runtime::features::features())
                    .context("features")?
            );
            Ok(0)
        }
    }
}
