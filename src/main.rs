//! twinbox: the same workload as a container and as a microVM, measured.
//!
//! This binary is a thin command line: every verb calls one library function in
//! twinbox-engine, twinbox-microvm or twinbox-lessons.

// `println!`/`print!` in this crate go through `output`: a closed stdout ends
// the program quietly instead of panicking. Defined before the modules so they
// all see these instead of std's.
macro_rules! println {
    () => { $crate::output::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::print(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::output::print(format_args!($($arg)*)) };
}

mod build;
mod commit;
mod container;
mod doctor;
mod format;
mod image;
mod lesson;
mod network;
mod output;
mod registry;
mod runtime;
mod vm;
mod volume;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "twinbox",
    version,
    about = "Containers and microVMs side by side: run, compare, learn"
)]
struct Cli {
    /// Store directory (images, layers, containers)
    #[arg(long, global = true, env = "TWINBOX_ROOT", default_value = twinbox_engine::store::DEFAULT_ROOT)]
    root: PathBuf,
    /// Log debug details to stderr
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create and start a container, like `docker run`
    #[command(disable_help_flag = true)]
    Run(container::RunArgs),
    /// Create a container without starting it
    #[command(disable_help_flag = true)]
    Create(container::RunArgs),
    /// Start created or stopped containers
    Start(container::StartArgs),
    /// List containers
    Ps(container::PsArgs),
    /// List a container's published ports
    Port(container::PortArgs),
    /// Show a container's output
    Logs(container::LogsArgs),
    /// Stop running containers (SIGTERM, then SIGKILL after a grace period)
    Stop(container::StopArgs),
    /// Restart containers (stop, then start)
    Restart(container::StopArgs),
    /// Join your terminal to a running -t container (detach with ctrl-p ctrl-q)
    Attach(container::AttachArgs),
    /// Give a container a new name
    Rename(container::RenameArgs),
    /// Show what a container changed in its filesystem (A added, C changed, D deleted)
    Diff(commit::DiffArgs),
    /// Make a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Freeze every process of containers (cgroup freezer)
    Pause(container::NamesArgs),
    /// Thaw paused containers
    Unpause(container::NamesArgs),
    /// Manage containers: prune; `container ls|run|exec|rm|...` are the top-level verbs
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Send a signal to running containers
    Kill(container::KillArgs),
    /// Remove containers
    Rm(container::RmArgs),
    /// Wait for containers to exit and print their exit codes
    Wait(container::NamesArgs),
    /// Show low-level details of containers as JSON
    Inspect(container::InspectArgs),
    /// Copy files between a container and the host
    Cp(container::CpArgs),
    /// Run a command in a running container
    Exec(container::ExecArgs),
    /// Show the processes running in a container
    Top(container::TopArgs),
    /// Show resource usage of running containers (memory, CPU time, processes)
    Stats(container::StatsArgs),
    /// Build an image from a Dockerfile, like `docker build`
    Build(build::BuildArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Import a root filesystem tar as an image, like `docker import`
    Import(image::ImportArgs),
    /// Give an image another name
    Tag(image::TagArgs),
    /// Remove images
    Rmi(image::RmiArgs),
    /// Show the steps that made an image
    History(image::HistoryArgs),
    /// Write images to a tar archive (OCI layout + Docker manifest.json)
    Save(image::SaveArgs),
    /// Load images from a tar archive (OCI layout or `docker save`)
    Load(image::LoadArgs),
    /// Write a container's filesystem to a tar archive
    Export(image::ExportArgs),
    /// Disk usage and other store-wide views
    #[command(subcommand)]
    System(image::SystemCommand),
    /// Download an image from a registry
    Pull(registry::PullArgs),
    /// Upload an image to a registry
    Push(registry::PushArgs),
    /// Log in to a registry (credentials kept in <root>/auth.json, mode 0600)
    Login(registry::LoginArgs),
    /// Forget a registry's credentials
    Logout(registry::LogoutArgs),
    /// Manage volumes: create, ls, inspect, rm, prune
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks: create, ls, inspect, rm, prune, connect, disconnect
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Guided lessons: `lesson list`, `lesson NAME`, `lesson tour`
    Lesson(lesson::LessonArgs),
    /// Run one workload as a container and as a microVM, side by side
    Compare(lesson::CompareArgs),
    /// Check what this host can do: namespaces, cgroups, overlayfs, KVM
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// The OCI runtime, driven like runc on a bundle (`twinbox runtime --help`)
    Runtime {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run workloads in microVMs (twinbox's own KVM VMM)
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Print a shell completion script: `source <(twinbox completion bash)`
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `twinbox man | man -l -`
    Man,
    #[command(name = "__vmm", hide = true)]
    Vmm {
        id: String,
        memory_mib: u64,
        vcpus: u8,
        boot_timeout: u64,
    },
    #[command(name = "__supervise", hide = true)]
    Supervise { id: String },
}

/// Docker's management form `container VERB` (`container ls`, `container run`,
/// `container exec`...) is the top-level verb, as in Docker; `container prune`
/// stays the group's own. Options before the verb (`--root DIR`) are kept.
fn container_verbs(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const VERBS: &[&str] = &[
        "attach", "commit", "cp", "create", "diff", "exec", "export", "inspect", "kill", "logs",
        "pause", "port", "rename", "restart", "rm", "run", "start", "stats", "stop", "top",
        "unpause", "wait",
    ];
    let mut i = 0;
    while i < args.len() && args[i].to_string_lossy().starts_with("--") {
        i += if args[i] == "--root" { 2 } else { 1 };
    }
    if args.get(i).is_some_and(|a| a == "container") {
        let verb = match args.get(i + 1).and_then(|v| v.to_str()) {
            Some("ls" | "list" | "ps") => Some("ps"),
            Some("remove") => Some("rm"),
            Some(v) if VERBS.contains(&v) => Some(v),
            _ => None,
        };
        if let Some(verb) = verb {
            args.splice(i..i + 2, [std::ffi::OsString::from(verb)]);
        }
    }
    args
}

fn main() -> ExitCode {
    output::quiet_broken_pipe_panics();
    // runc's command line: as `twinbox-runc` (a link containerd can call) or
    // `twinbox runtime`, where --root is the runtime's state directory
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let name = std::path::Path::new(&argv0)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if runtime::RUNC_NAMES.contains(&name.as_str()) {
        return ExitCode::from(runtime::main_with(args).clamp(0, 255) as u8);
    }
    let rest: Vec<_> = args.collect();
    if rest.first().is_some_and(|a| a == "runtime") {
        return ExitCode::from(runtime::main_with(rest.into_iter().skip(1)).clamp(0, 255) as u8);
    }
    // Docker's convention: a command line twinbox cannot parse exits 125.
    let cli = match Cli::try_parse_from(std::iter::once(argv0).chain(container_verbs(rest))) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let filter = if cli.debug { "debug" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TWINBOX_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twinbox: {}", format::error_chain(&e));
            ExitCode::from(format::exit_code_of(&e))
        }
    }
}

/// The store at `root`, with the path in the error when it cannot be opened.
pub(crate) fn open_store(root: &std::path::Path) -> anyhow::Result<twinbox_engine::store::Store> {
    use anyhow::Context;
    let store = twinbox_engine::system::open_store(root)
        .with_context(|| format!("cannot open the store at {}", root.display()))?;
    // the VM half of recovery (the engine's knows containers, not VMs)
    let vms = twinbox_microvm::instance::recover::recover(&store);
    if !vms.is_empty() {
        tracing::info!(?vms, "recovered VMs whose twinbox process died");
    }
    Ok(store)
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let root = cli.root;
    match cli.command {
        Command::Run(args) => container::run(&root, args),
        Command::Create(args) => container::create(&root, args),
        Command::Start(args) => container::start(&root, args),
        Command::Ps(args) => container::ps(&root, args),
        Command::Port(args) => container::port(&root, args),
        Command::Logs(args) => container::logs(&root, args),
        Command::Stop(args) => container::stop(&root, args),
        Command::Restart(args) => container::restart(&root, args),
        Command::Attach(args) => container::attach(&root, args),
        Command::Rename(args) => container::rename(&root, args),
        Command::Diff(args) => commit::diff(&root, args),
        Command::Commit(args) => commit::commit(&root, args),
        Command::Pause(args) => container::pause(&root, args, true),
        Command::Unpause(args) => container::pause(&root, args, false),
        Command::Container(cmd) => container::container_command(&root, cmd),
        Command::Kill(args) => container::kill(&root, args),
        Command::Rm(args) => container::rm(&root, args),
        Command::Wait(args) => container::wait(&root, args),
        Command::Inspect(args) => container::inspect(&root, args),
        Command::Cp(args) => container::cp(&root, args),
        Command::Exec(args) => container::exec(&root, args),
        Command::Top(args) => container::top(&root, args),
        Command::Stats(args) => container::stats(&root, args),
        Command::Build(args) => build::build(&root, args),
        Command::Images(args) => image::images(&root, args),
        Command::Import(args) => image::import(&root, args),
        Command::Tag(args) => image::tag(&root, args),
        Command::Rmi(args) => image::rmi(&root, args),
        Command::History(args) => image::history(&root, args),
        Command::Save(args) => image::save(&root, args),
        Command::Load(args) => image::load(&root, args),
        Command::Export(args) => image::export(&root, args),
        Command::System(cmd) => image::system(&root, cmd),
        Command::Pull(args) => registry::pull(&root, args),
        Command::Push(args) => registry::push(&root, args),
        Command::Login(args) => registry::login(&root, args),
        Command::Logout(args) => registry::logout(&root, args),
        Command::Volume(cmd) => volume::dispatch(&root, cmd),
        Command::Network(cmd) => network::dispatch(&root, cmd),
        Command::Image(cmd) => image::image(&root, cmd),
        Command::Lesson(args) => lesson::lesson(&root, args),
        Command::Compare(args) => lesson::compare(&root, args),
        Command::Doctor { json } => doctor::run(json),
        // reached only when `runtime` follows global flags: same command line
        Command::Runtime { args } => Ok(runtime::main_with(args)),
        Command::Vm(command) => vm::dispatch(&root, command),
        Command::Vmm {
            id,
            memory_mib,
            vcpus,
            boot_timeout,
        } => vm::vmm_main(&root, &id, memory_mib, vcpus, boot_timeout),
        Command::Supervise { id } => container::supervise(&root, &id),
        Command::Completion { shell } => {
            // into a buffer first: the generator panics on a closed pipe
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "twinbox", &mut text);
            print!("{}", String::from_utf8_lossy(&text));
            Ok(0)
        }
        Command::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut text)?;
            print!("{}", String::from_utf8_lossy(&text));
            Ok(0)
        }
    }
}
