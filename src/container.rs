//! Container verbs: run, create, start, ps, logs, stop, kill, rm, wait, inspect, top.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;
use twinbox_engine::cgroups::{cpus_to_quota, parse_memory_size};
use twinbox_engine::container::devices::parse_device;
use twinbox_engine::container::exec::ExecOptions;
use twinbox_engine::container::logs::read_log;
use twinbox_engine::container::options::{
    parse_dns, parse_dns_option, parse_dns_search, parse_env_arg, parse_env_file, parse_expose,
    parse_extra_host, parse_label, parse_mac, parse_mount, parse_tmpfs, parse_volume, MountRequest,
};
use twinbox_engine::container::restart::RestartPolicy;
use twinbox_engine::container::supervisor::{
    supervise as supervise_attached, supervisor_main, Attach,
};
use twinbox_engine::container::terminal::DetachKeys;
use twinbox_engine::container::{
    self as engine, lifecycle, listing, Container, RunOptions, Status,
};
use twinbox_engine::network::ports::Publish;
use twinbox_engine::network::NetworkMode;
use twinbox_engine::template::Format;
use twinbox_engine::util::procfs;

use crate::format::print_table;
use crate::open_store;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    detach: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Network: bridge (default), NAME, none (lo only), host or container:NAME
    #[arg(long, default_value = "bridge")]
    network: String,
    /// Another name containers on the same user network reach this one by
    #[arg(long = "network-alias", alias = "net-alias")]
    network_alias: Vec<String>,
    /// A fixed IPv4 address on the user network
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// Add a line to /etc/hosts: NAME:IP (NAME:host-gateway for the host's address)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// A nameserver for /etc/resolv.conf (replaces the host's)
    #[arg(long)]
    dns: Vec<String>,
    /// A search domain for /etc/resolv.conf (. for none)
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// A resolver option for /etc/resolv.conf, e.g. ndots:2
    #[arg(long = "dns-option", alias = "dns-opt")]
    dns_option: Vec<String>,
    /// The MAC address of the container's interface, e.g. 02:42:ac:11:00:02
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Expose a port or range without publishing it: PORT[/tcp|udp] (-P publishes it)
    #[arg(long)]
    expose: Vec<String>,
    /// Publish a port: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp], ranges allowed
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish every EXPOSEd port on a free host port
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Memory limit, e.g. 64m or 1g
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// Number of CPUs, e.g. 0.5
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes (-1 for unlimited)
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Mount the root filesystem read-only
    #[arg(long = "read-only")]
    read_only: bool,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the container the terminal
    #[arg(short = 't', long)]
    tty: bool,
    /// Mount a volume: NAME:/path[:ro] (named volume), /host/path:/path[:ro] (bind), /path (anonymous)
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Mount: type=bind|volume|tmpfs,source=...,target=...[,readonly]
    #[arg(long = "mount")]
    mounts: Vec<String>,
    /// Mount a tmpfs: /path[:size=64m,mode=1777]
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the volumes of another container: NAME[:ro|rw]
    #[arg(long = "volumes-from")]
    volumes_from: Vec<String>,
    /// Size of /dev/shm, e.g. 128m (default 64m)
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Add a capability (e.g. NET_ADMIN, or ALL)
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL)
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// Add a supplementary group (name or GID) to the container's user
    #[arg(long = "group-add")]
    group_add: Vec<String>,
    /// Every capability and host device, no seccomp filter, no masked paths
    #[arg(long)]
    privileged: bool,
    /// User namespace: host (default), or auto (root inside is an unprivileged id range on the host)
    #[arg(long, default_value = "host")]
    userns: String,
    /// Add a host device: HOST[:CONTAINER][:rwm] (a directory adds the devices below it)
    #[arg(long = "device")]
    device: Vec<String>,
    /// Security options: seccomp=unconfined|FILE.json, no-new-privileges[=true|false]
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped
    #[arg(long, default_value = "no")]
    restart: String,
    /// Signal that stops the container (default: the image's StopSignal, else SIGTERM)
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Seconds `stop` waits before killing the container (default 10)
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<u64>,
    /// Resource limit: NAME=SOFT[:HARD], e.g. nofile=1024:2048
    #[arg(long = "ulimit")]
    ulimit: Vec<String>,
    /// Run a small init as PID 1 that forwards signals and reaps zombies
    #[arg(long)]
    init: bool,
    /// Set a label: KEY=VALUE
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Image to run
    image: String,
    /// Command and arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// How the workload runs, shared by `run`/`create` and `vm run` so that a
/// container and a VM of the same image get the same environment, directory,
/// user and command.
#[derive(Args, Debug)]
pub struct WorkloadArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's value)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container or guest
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User to run as: NAME, UID or UID:GID
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Host name (default: the container's short id, the VM's name)
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
}

impl WorkloadArgs {
    /// The run options these flags set (env files first, then `-e`, in order).
    pub fn options(&self, cmd: &[String]) -> Result<RunOptions> {
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(parse_env_file(f)?);
        }
        for e in &self.env {
            env.extend(parse_env_arg(e)?);
        }
        Ok(RunOptions {
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            hostname: self.hostname.clone(),
            entrypoint: self.entrypoint.clone(),
            cmd: cmd.to_vec(),
            ..Default::default()
        })
    }
}

impl RunArgs {
    fn options(&self) -> Result<RunOptions> {
        let base = self.workload.options(&self.command)?;
        let memory_bytes = self.memory.as_deref().map(parse_memory_size).transpose()?;
        if let Some(c) = self.cpus {
            cpus_to_quota(c)?;
        }
        let restart: RestartPolicy = self.restart.parse()?;
        if self.rm && restart != RestartPolicy::No {
            bail!("conflicting options: --restart and --rm: a container removed at exit cannot restart");
        }
        let network: NetworkMode = self.network.parse().map_err(anyhow::Error::msg)?;
        let mut volumes = self
            .volumes
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tmpfs = self
            .tmpfs
            .iter()
            .map(|t| parse_tmpfs(t))
            .collect::<Result<Vec<_>, _>>()?;
        for m in &self.mounts {
            match parse_mount(m)? {
                MountRequest::Volume(v) => volumes.push(v),
                MountRequest::Tmpfs(t) => tmpfs.push(t),
            }
        }
        let security = engine::security_opt::parse(&self.security_opt)?;
        let shm_size = self
            .shm_size
            .as_deref()
            .map(parse_memory_size)
            .transpose()?;
        let (mut ports, mut port_ranges) = (vec![], vec![]);
        for p in &self.publish {
            match twinbox_engine::network::ports::parse_publish(p)? {
                Publish::Fixed(m) => ports.extend(m),
                Publish::FirstFreeIn(r) => port_ranges.push(r),
            }
        }
        let mut expose = vec![];
        for e in &self.expose {
            for p in parse_expose(e)? {
                if !expose.contains(&p) {
                    expose.push(p);
                }
            }
        }
        Ok(RunOptions {
            name: self.name.clone(),
            extra_hosts: self
                .add_host
                .iter()
                .map(|h| parse_extra_host(h))
                .collect::<Result<_, _>>()?,
            dns: self
                .dns
                .iter()
                .map(|d| parse_dns(d))
                .collect::<Result<_, _>>()?,
            dns_search: self
                .dns_search
                .iter()
                .map(|d| parse_dns_search(d))
                .collect::<Result<_, _>>()?,
            dns_options: self
                .dns_option
                .iter()
                .map(|d| parse_dns_option(d))
                .collect::<Result<_, _>>()?,
            expose,
            mac_address: self.mac_address.as_deref().map(parse_mac).transpose()?,
            network,
            ports,
            port_ranges,
            publish_all: self.publish_all,
            network_aliases: self.network_alias.clone(),
            ip: self.ip,
            memory_bytes,
            cpus: self.cpus,
            pids_limit: self.pids_limit.filter(|p| *p > 0),
            read_only: self.read_only,
            interactive: self.interactive,
            tty: self.tty,
            auto_remove: self.rm,
            restart,
            tmpfs,
            volumes_from: self.volumes_from.clone(),
            shm_size,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            group_add: self.group_add.clone(),
            privileged: self.privileged,
            userns: twinbox_engine::container::userns::parse_mode(&self.userns)?,
            seccomp_unconfined: security.seccomp_unconfined,
            seccomp_profile: security.seccomp_profile,
            no_new_privileges: security.no_new_privileges,
            stop_signal: match &self.stop_signal {
                Some(s) => {
                    parse_signal(s)?;
                    Some(s.clone())
                }
                None => None,
            },
            stop_timeout: self.stop_timeout,
            ulimits: self
                .ulimit
                .iter()
                .map(|u| engine::ulimit::parse(u))
                .collect::<Result<_, _>>()?,
            devices: self
                .device
                .iter()
                .map(|d| parse_device(d))
                .collect::<Result<_, _>>()?,
            init: match self.init {
                true => Some(twinbox_microvm::guest::init_binary()?),
                false => None,
            },
            volumes,
            labels: self
                .label
                .iter()
                .map(|l| parse_label(l))
                .collect::<Result<_, _>>()?,
            ..base
        })
    }
}

pub fn require_root(verb: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`twinbox {verb}` needs root (namespaces, mounts and cgroups): run it with sudo");
    }
    Ok(())
}

fn self_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the twinbox binary to start a supervisor")
}

/// Docker's warning where `-p` meets `--network host` (the ports are dropped).
fn warn_discarded_ports(opts: &RunOptions) {
    if opts.network == NetworkMode::Host && !(opts.ports.is_empty() && opts.port_ranges.is_empty())
    {
        eprintln!("WARNING: Published ports are discarded when using host network mode");
    }
}

/// Docker's CLI check before `run -it` or `exec -it` attaches: keys come from
/// a terminal, so without one (a pipe, a file, /dev/null) it refuses with
/// status 1 and nothing is made. Returns that status.
fn refuse_tty_without_terminal(interactive: bool, tty: bool, detach: bool) -> Option<i32> {
    if interactive && tty && !detach && !std::io::stdin().is_terminal() {
        eprintln!("twinbox: the input device is not a TTY");
        return Some(1);
    }
    None
}

pub fn run(root: &Path, args: RunArgs) -> Result<i32> {
    require_root("run")?;
    let opts = args.options()?;
    if let Some(code) = refuse_tty_without_terminal(opts.interactive, opts.tty, args.detach) {
        return Ok(code);
    }
    let store = open_store(root)?;
    let container = engine::create(&store, &args.image, &opts)?;
    warn_discarded_ports(&opts);
    if args.detach {
        match lifecycle::start_detached(&store, &container, &self_exe()?) {
            Ok(_) => {
                println!("{}", container.id);
                Ok(0)
            }
            Err(e) => {
                let _ = lifecycle::remove(&container, true);
                Err(e.into())
            }
        }
    } else {
        match supervise_attached(&container, Attach::Terminal) {
            Ok(code) => Ok(code),
            Err(e) => {
                let _ = lifecycle::remove(&container, true);
                Err(e.into())
            }
        }
    }
}

pub fn create(root: &Path, args: RunArgs) -> Result<i32> {
    require_root("create")?;
    let opts = args.options()?;
    let store = open_store(root)?;
    let container = engine::create_to_start_later(&store, &args.image, &opts)?;
    warn_discarded_ports(&opts);
    println!("{}", container.id);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it
    #[arg(short = 'a', long)]
    attach: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn start(root: &Path, args: StartArgs) -> Result<i32> {
    require_root("start")?;
    let store = open_store(root)?;
    let mut code = 0;
    for key in &args.containers {
        let c = Container::find(&store, key)?;
        if c.state()?.status == Status::Running {
            bail!("container {} is already running", c.name);
        }
        if args.attach {
            code = supervise_attached(&c, Attach::Terminal)?;
        } else {
            lifecycle::start_detached(&store, &c, &self_exe()?)?;
            println!("{key}");
        }
    }
    Ok(code)
}

#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only print container ids
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Show the N last created containers (all states)
    #[arg(short = 'n', long = "last")]
    last: Option<usize>,
    /// Show the latest created container (all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Filter: id, name, status, exited, ancestor, label, before, since, volume, network (KEY=VALUE)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Show the containers' sizes
    #[arg(short = 's', long)]
    size: bool,
    /// Do not truncate ids and commands
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Output: table, json, or a Go template (`{{.Names}}`, `table {{.ID}}\t{{.Status}}`)
    #[arg(long, default_value = "")]
    format: String,
}

pub fn ps(root: &Path, args: PsArgs) -> Result<i32> {
    let store = open_store(root)?;
    let query = listing::PsQuery {
        all: args.all,
        last: if args.latest {
            Some(1)
        } else {
            args.last.filter(|n| *n > 0)
        },
        filters: args.filter,
        size: args.size,
        no_trunc: args.no_trunc,
    };
    let default = if args.size {
        listing::PS_TABLE_SIZE
    } else {
        listing::PS_TABLE
    };
    // a format string is checked even when -q makes it unused
    let format = Format::parse(&args.format, default)?;
    let entries = listing::ps(&store, &query)?;
    if args.quiet {
        for e in &entries {
            println!("{}", e.row["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    let rows: Vec<serde_json::Value> = entries.into_iter().map(|e| e.row).collect();
    print!(
        "{}",
        format.render(&rows, &listing::titles(), Some(&listing::RowMethods))?
    );
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PortArgs {
    /// Container name or id
    container: String,
    /// Only this container port: PORT or PORT/PROTO (tcp if not given)
    private_port: Option<String>,
}

/// `twinbox port CONTAINER`: `80/tcp -> 0.0.0.0:8080` per mapping; with a
/// port, only its host addresses (`0.0.0.0:8080`), as Docker prints them.
pub fn port(root: &Path, args: PortArgs) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    if let Some(wanted) = &args.private_port {
        let (num, proto) = wanted.split_once('/').unwrap_or((wanted, "tcp"));
        let mut found = false;
        for p in c
            .options
            .ports
            .iter()
            .filter(|p| p.container_port.to_string() == num && p.protocol == proto)
        {
            let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
            println!("{}", std::net::SocketAddr::new(ip.parse()?, p.host_port));
            found = true;
        }
        if !found {
            bail!(
                "no public port '{num}/{proto}' published for {}",
                args.container
            );
        }
        return Ok(0);
    }
    for p in &c.options.ports {
        let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
        println!(
            "{}/{} -> {ip}:{}",
            p.container_port, p.protocol, p.host_port
        );
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow the output until the container stops
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines
    #[arg(long = "tail", short = 'n')]
    tail: Option<usize>,
    /// Prefix each line with its timestamp
    #[arg(short = 't', long)]
    timestamps: bool,
    container: String,
}

pub fn logs(root: &Path, args: LogsArgs) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    let print = |lines: &[twinbox_engine::container::logs::LogLine]| {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for l in lines {
            let prefix = if args.timestamps {
                format!("{} ", l.time)
            } else {
                String::new()
            };
            if l.stream == "stderr" {
                let _ = write!(err, "{prefix}{}", l.log);
            } else if let Err(e) = write!(out, "{prefix}{}", l.log) {
                crate::output::quit_on_write_error(&e);
            }
        }
        if let Err(e) = out.flush() {
            crate::output::quit_on_write_error(&e);
        }
    };
    let lines = read_log(&c.log_path());
    let skip = args.tail.map_or(0, |n| lines.len().saturating_sub(n));
    print(&lines[skip..]);
    if args.follow {
        let mut seen = lines.len();
        loop {
            let running = c
                .state()
                .map(|s| s.status == Status::Running)
                .unwrap_or(false);
            let lines = read_log(&c.log_path());
            if lines.len() > seen {
                print(&lines[seen..]);
                seen = lines.len();
            }
            if !running {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (default: its --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(root: &Path, args: StopArgs) -> Result<i32> {
    let store = open_store(root)?;
    for key in &args.containers {
        let c = Container::find(&store, key)?;
        lifecycle::stop(&c, lifecycle::stop_timeout(&c, args.time))?;
        println!("{key}");
    }
    Ok(0)
}

/// `docker restart`: stop (if running), then start again.
pub fn restart(root: &Path, args: StopArgs) -> Result<i32> {
    require_root("restart")?;
    let store = open_store(root)?;
    for key in &args.containers {
        let c = Container::find(&store, key)?;
        lifecycle::stop(&c, lifecycle::stop_timeout(&c, args.time))?;
        lifecycle::start_detached(&store, &c, &self_exe()?)?;
        println!("{key}");
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Key sequence that detaches (Docker's syntax, default ctrl-p,ctrl-q)
    #[arg(long, value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Do not forward your input
    #[arg(long)]
    no_stdin: bool,
    /// Send the signals twinbox gets to the container's process (without -t)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    container: String,
}

pub fn attach(root: &Path, args: AttachArgs) -> Result<i32> {
    require_root("attach")?;
    let keys = match &args.detach_keys {
        Some(text) => DetachKeys::parse(text)?,
        None => DetachKeys::default(),
    };
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    Ok(engine::attach::attach(
        &c,
        keys,
        args.no_stdin,
        args.sig_proxy,
    )?)
}

#[derive(Args, Debug)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

pub fn rename(root: &Path, args: RenameArgs) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    engine::names::rename(&store, &c, &args.new_name)?;
    Ok(0)
}

/// `pause` (freeze) or `unpause` (thaw) containers.
pub fn pause(root: &Path, args: NamesArgs, freeze: bool) -> Result<i32> {
    require_root(if freeze { "pause" } else { "unpause" })?;
    let store = open_store(root)?;
    for key in &args.containers {
        let c = Container::find(&store, key)?;
        if freeze {
            engine::pause::pause(&c)?;
        } else {
            engine::pause::unpause(&c)?;
        }
        println!("{key}");
    }
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum ContainerCommand {
    /// Remove every container that is not running
    Prune {
        /// Do not ask for confirmation (accepted for Docker compatibility)
        #[arg(short = 'f', long)]
        force: bool,
    },
}

pub fn container_command(root: &Path, cmd: ContainerCommand) -> Result<i32> {
    match cmd {
        ContainerCommand::Prune { force: _ } => {
            let store = open_store(root)?;
            let removed = engine::prune::prune(&store)?;
            if !removed.is_empty() {
                println!("Deleted Containers:");
                for id in &removed {
                    println!("{id}");
                }
                println!();
            }
            println!("Total removed containers: {}", removed.len());
            Ok(0)
        }
    }
}

#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send: a name (KILL, SIGTERM) or number
    #[arg(short = 's', long = "signal", default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn parse_signal(s: &str) -> Result<i32> {
    engine::signals::parse(s).ok_or_else(|| {
        anyhow::anyhow!("invalid signal {s:?}: use a name such as TERM or KILL, or a number")
    })
}

pub fn kill(root: &Path, args: KillArgs) -> Result<i32> {
    let store = open_store(root)?;
    let sig = parse_signal(&args.signal)?;
    for key in &args.containers {
        lifecycle::kill(&Container::find(&store, key)?, sig)?;
        println!("{key}");
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Kill a running container before removing it
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(root: &Path, args: RmArgs) -> Result<i32> {
    let store = open_store(root)?;
    for key in &args.containers {
        let c = Container::find(&store, key)?;
        lifecycle::remove(&c, args.force)?;
        if args.volumes {
            engine::volumes::remove_anonymous(&c);
        }
        println!("{key}");
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(root: &Path, args: NamesArgs) -> Result<i32> {
    let store = open_store(root)?;
    for key in &args.containers {
        let code = lifecycle::wait(&Container::find(&store, key)?)?;
        println!("{}", code.map_or("unknown".to_string(), |c| c.to_string()));
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format each object with a Go template (`{{.State.Status}}`, `{{json .Config}}`)
    #[arg(short = 'f', long, default_value = "")]
    format: String,
    /// Only look for this kind of object: container, image or volume
    #[arg(long = "type")]
    kind: Option<String>,
    /// Containers, images or volumes
    #[arg(required = true)]
    names: Vec<String>,
}

/// `inspect`: containers, then images, then volumes by that name, as Docker looks.
pub fn inspect(root: &Path, args: InspectArgs) -> Result<i32> {
    let store = open_store(root)?;
    let kind = args.kind.as_deref();
    if let Some(k) = kind.filter(|k| !["container", "image", "volume"].contains(k)) {
        bail!("invalid --type {k:?}: use container, image or volume");
    }
    let wants = |k: &str| kind.is_none_or(|w| w == k);
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for key in &args.names {
        if wants("container") {
            if let Ok(c) = Container::find(&store, key) {
                out.push(container_json(&store, &c)?);
                continue;
            }
        }
        if wants("image") {
            if let Ok(img) = twinbox_engine::image::Image::resolve(&store, key) {
                out.push(twinbox_engine::image::inspect::inspect(&store, &img));
                continue;
            }
        }
        if wants("volume") {
            if let Ok(v) = twinbox_engine::volume::find(&store, key) {
                out.push(twinbox_engine::container::volumes::describe(&store, &v));
                continue;
            }
        }
        missing.push(key.clone());
    }
    crate::format::print_objects(&out, &args.format)?;
    for m in &missing {
        eprintln!("twinbox: no such object: {m}");
    }
    Ok(if missing.is_empty() { 0 } else { 1 })
}

/// Go's zero time, Docker's "not yet" for StartedAt and FinishedAt.
const NEVER: &str = "0001-01-01T00:00:00Z";

/// A container as `docker inspect` shows it, plus twinbox's own measurements.
fn container_json(
    store: &twinbox_engine::store::Store,
    c: &Container,
) -> Result<serde_json::Value> {
    let c = c.clone();
    // Docker's Config is the image's config with the run options over it
    let image = twinbox_engine::image::Image::resolve(store, &c.image_id).ok();
    let image = image.as_ref().and_then(|i| i.config.config().as_ref());
    let o = &c.options;
    let env = image.and_then(|i| i.env().clone()).unwrap_or_default();
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(e) => (
            (!e.is_empty()).then(|| vec![e.clone()]),
            (!o.cmd.is_empty()).then(|| o.cmd.clone()),
        ),
        None => (
            image.and_then(|i| i.entrypoint().clone()),
            if o.cmd.is_empty() {
                image.and_then(|i| i.cmd().clone())
            } else {
                Some(o.cmd.clone())
            },
        ),
    };
    let mut exposed: std::collections::BTreeMap<String, serde_json::Value> = image
        .and_then(|i| i.exposed_ports().clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                },
                json!({}),
            )
        })
        .collect();
    for p in &o.expose {
        exposed.insert(p.clone(), json!({}));
    }
    let mut bindings = serde_json::Map::new();
    for p in &o.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        exposed.insert(key.clone(), json!({}));
        let ip = p.host_ip.map(|i| i.to_string()).unwrap_or_default();
        // as Docker: the binding asked for (a range), the pick in NetworkSettings
        let host_port = match o.port_ranges.iter().find(|r| r.holds(p)) {
            Some(r) => format!("{}-{}", r.first, r.last),
            None => p.host_port.to_string(),
        };
        let entry = bindings.entry(key).or_insert_with(|| json!([]));
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({"HostIp": ip, "HostPort": host_port}));
        }
    }
    let mut labels = image.and_then(|i| i.labels().clone()).unwrap_or_default();
    labels.extend(o.labels.clone());
    let labels: std::collections::BTreeMap<_, _> = labels.into_iter().collect();
    let s = c.state()?;
    let supervisor = s.supervisor_pid.filter(|_| s.status == Status::Running);
    let usage = lifecycle::cgroup_of(&c)
        .filter(|_| s.status == Status::Running)
        .and_then(|cg| cg.usage().ok());
    Ok(json!({
        "Id": c.id,
        "Name": format!("/{}", c.name),
        "Created": c.created,
        "Path": c.args.first(),
        "Args": c.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": if c.restarting(&s) { "restarting".to_string() } else { s.status.to_string() },
            "Running": s.status == Status::Running,
            "Paused": engine::pause::is_paused(&c),
            "Restarting": c.restarting(&s),
            "OOMKilled": s.oom_killed,
            "Dead": false,
            "Pid": s.pid.unwrap_or(0),
            // null only when the process ended and its code is unknown
            "ExitCode": if s.status == Status::Exited { json!(s.exit_code) } else { json!(0) },
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": s.started_at.as_deref().unwrap_or(NEVER),
            "FinishedAt": s.finished_at.as_deref().unwrap_or(NEVER),
        },
        "Image": c.image_id,
        "Config": {
            "Hostname": c.hostname,
            "User": o.user.clone().or_else(|| image.and_then(|i| i.user().clone())).unwrap_or_default(),
            // Docker's order: the options' variables, then the image's others
            "Env": o.env.iter().chain(env.iter().filter(|e| {
                let key = e.split('=').next();
                !o.env.iter().any(|u| u.split('=').next() == key)
            })).collect::<Vec<_>>(),
            "Cmd": cmd,
            "Entrypoint": entrypoint,
            "WorkingDir": o.workdir.clone().or_else(|| image.and_then(|i| i.working_dir().clone())).unwrap_or_default(),
            "ExposedPorts": (!exposed.is_empty()).then_some(&exposed),
            "Image": c.image,
            "Labels": labels,
            "Tty": o.tty,
            "StopSignal": o.stop_signal,
            "StopTimeout": o.stop_timeout,
            "OpenStdin": o.interactive,
            "MacAddress": o.mac_address.as_deref().unwrap_or_default(),
        },
        "HostConfig": {
            "Memory": o.memory_bytes.unwrap_or(0),
            "NanoCpus": o.cpus.map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": o.pids_limit,
            "NetworkMode": o.network.to_string(),
            "PortBindings": bindings,
            "ExtraHosts": (!o.extra_hosts.is_empty()).then_some(&o.extra_hosts),
            "Dns": o.dns,
            "DnsSearch": o.dns_search,
            "DnsOptions": o.dns_options,
            "ReadonlyRootfs": o.read_only,
            "AutoRemove": o.auto_remove,
            "Init": o.init.is_some(),
            "Ulimits": o.ulimits,
            "GroupAdd": (!o.group_add.is_empty()).then_some(&o.group_add),
            "UsernsMode": if c.id_range.is_some() { "auto" } else { "" },
            "IDMappings": c.id_range.map(|r| json!({
                "UidMap": [format!("0:{}:{}", r.uid, r.size)],
                "GidMap": [format!("0:{}:{}", r.gid, r.size)],
            })),
            "RestartPolicy": {
                "Name": o.restart.to_string().split(':').next().unwrap_or("no"),
                "MaximumRetryCount": match o.restart { RestartPolicy::OnFailure { max } => max, _ => 0 },
            },
            "Binds": o.volumes.iter().map(|v| format!("{}:{}{}", v.name.clone().unwrap_or_else(|| v.source.display().to_string()), v.destination.display(), if v.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
        },
        "Mounts": o.volumes.iter().map(|v| json!({
            "Type": if v.is_bind() { "bind" } else { "volume" },
            "Name": v.name,
            "Source": v.source,
            "Destination": v.destination,
            "RW": !v.read_only,
        })).collect::<Vec<_>>(),
        "NetworkSettings": network_settings(&c, s.status == Status::Running, &exposed),
        "RestartCount": s.restart_count,
        "LogPath": c.log_path(),
        "Twinbox": {
            "SupervisorPid": supervisor,
            "SupervisorRssBytes": supervisor.and_then(procfs::rss_bytes),
            "SupervisorPssBytes": supervisor.and_then(procfs::pss_bytes),
            "SupervisorPrivateBytes": supervisor.and_then(procfs::private_bytes),
            "MemoryPeakBytes": s.memory_peak_bytes,
            "Cgroup": usage,
            "LowerDirs": c.lower_dirs,
            "UsernsLayers": c.id_range.map(|_| if c.shifted_lower_dirs.is_empty() { "idmapped" } else { "chowned" }),
            "ShiftedLowerDirs": (!c.shifted_lower_dirs.is_empty()).then_some(&c.shifted_lower_dirs),
        },
    }))
}

/// Docker's `NetworkSettings`: the first address, then one entry per network.
/// `Ports` as Docker's map, filled while the container runs: each exposed port,
/// null where nothing publishes it.
fn network_settings(
    c: &Container,
    running: bool,
    exposed: &std::collections::BTreeMap<String, serde_json::Value>,
) -> serde_json::Value {
    let mut ports = serde_json::Map::new();
    for key in exposed.keys().filter(|_| running) {
        ports.insert(key.clone(), serde_json::Value::Null);
    }
    for p in c.options.ports.iter().filter(|_| running) {
        let ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
        let entry = ports
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert(serde_json::Value::Null);
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            list.push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
        }
    }
    let attached = twinbox_engine::network::attached(&c.dir);
    let mut networks = serde_json::Map::new();
    for a in attached.iter().filter(|a| !a.result.is_null()) {
        networks.insert(
            a.network.clone(),
            json!({
                "IPAddress": a.ipv4().map(|ip| ip.to_string()).unwrap_or_default(),
                "MacAddress": a.mac().unwrap_or(""),
                "Aliases": a.names,
                "Interface": a.ifname,
            }),
        );
    }
    json!({
        "IPAddress": attached.iter().find_map(|a| a.ipv4()).map(|ip| ip.to_string()).unwrap_or_default(),
        "Ports": ports,
        "Networks": networks,
    })
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    tty: bool,
    /// Run in the background
    #[arg(short = 'd', long)]
    detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's value)
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// User to run as: NAME, UID or UID:GID
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Give the command every capability and no seccomp filter
    #[arg(long)]
    privileged: bool,
    container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `docker exec`: one more process inside a running container.
pub fn exec(root: &Path, args: ExecArgs) -> Result<i32> {
    require_root("exec")?;
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(parse_env_file(f)?);
    }
    for e in &args.env {
        env.extend(parse_env_arg(e)?);
    }
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    if let Some(code) = refuse_tty_without_terminal(args.interactive, args.tty, args.detach) {
        return Ok(code);
    }
    let opts = ExecOptions {
        cmd: args.command,
        env,
        workdir: args.workdir,
        user: args.user,
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
        privileged: args.privileged,
    };
    Ok(engine::exec::exec(&c, &opts)?)
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Keep owners (uid/gid) as they are in the source
    #[arg(short = 'a', long)]
    archive: bool,
    /// Copy what a link in the container points at (resolved in its root), not the link
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// CONTAINER:PATH, a host path, or - (a tar archive read from standard input)
    src: String,
    /// CONTAINER:PATH, a host path, or - (a tar archive written to standard output)
    dst: String,
}

/// `docker cp`: files between a container (running or not) and the host.
pub fn cp(root: &Path, args: CpArgs) -> Result<i32> {
    require_root("cp")?;
    let store = open_store(root)?;
    let src = engine::copy::Location::parse(&args.src);
    let dst = engine::copy::Location::parse(&args.dst);
    engine::copy::copy(&store, &src, &dst, args.archive, args.follow_link)?;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct TopArgs {
    container: String,
}

pub fn top(root: &Path, args: TopArgs) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::find(&store, &args.container)?;
    if c.state()?.status != Status::Running {
        bail!("container {} is not running", c.name);
    }
    let cg = lifecycle::cgroup_of(&c).context("the container's cgroup is gone")?;
    let mut rows = Vec::new();
    for pid in cg.pids()? {
        let (uid, ppid) = procfs::owner_and_parent(pid).unwrap_or((0, 0));
        rows.push(vec![
            uid.to_string(),
            pid.to_string(),
            ppid.to_string(),
            procfs::cmdline(pid),
        ]);
    }
    print_table(&["UID", "PID", "PPID", "CMD"], &rows);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Output format: table or json
    #[arg(long, default_value = "table")]
    format: String,
    /// Accepted for Docker habits: stats always prints one snapshot
    #[arg(long = "no-stream")]
    _no_stream: bool,
    /// Containers (default: all running)
    containers: Vec<String>,
}

/// One snapshot of cgroup usage, like `docker stats --no-stream`.
pub fn stats(root: &Path, args: StatsArgs) -> Result<i32> {
    let store = open_store(root)?;
    let containers = if args.containers.is_empty() {
        Container::list(&store)?
            .into_iter()
            .filter(|c| {
                c.state()
                    .map(|s| s.status == Status::Running)
                    .unwrap_or(false)
            })
            .collect()
    } else {
        args.containers
            .iter()
            .map(|k| Container::find(&store, k))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut rows = Vec::new();
    for c in &containers {
        let usage = lifecycle::cgroup_of(c)
            .and_then(|cg| cg.usage().ok())
            .unwrap_or_default();
        if args.format == "json" {
            println!(
                "{}",
                json!({"ID": c.short_id(), "Name": c.name, "Usage": usage})
            );
            continue;
        }
        let mib = |b: Option<u64>| {
            b.map_or("-".to_string(), |b| {
                format!("{:.1}MiB", b as f64 / 1048576.0)
            })
        };
        rows.push(vec![
            c.short_id().to_string(),
            c.name.clone(),
            format!(
                "{} / {}",
                mib(usage.memory_bytes),
                usage
                    .memory_limit_bytes
                    .map_or("unlimited".into(), |l| mib(Some(l)))
            ),
            mib(usage.memory_peak_bytes),
            usage
                .cpu_usage_ns
                .map_or("-".into(), |n| format!("{:.2}s", n as f64 / 1e9)),
            usage.pids_current.map_or("-".into(), |p| p.to_string()),
        ]);
    }
    if args.format != "json" {
        print_table(
            &[
                "CONTAINER ID",
                "NAME",
                "MEM USAGE / LIMIT",
                "MEM PEAK",
                "CPU TIME",
                "PIDS",
            ],
            &rows,
        );
    }
    Ok(0)
}

/// The hidden `__supervise ID` verb: a detached container's supervisor.
pub fn supervise(root: &Path, id: &str) -> Result<i32> {
    let store = open_store(root)?;
    let c = Container::load(&store, id)?;
    Ok(supervisor_main(&c))
}
