//! create, start, stop, kill, wait, rm: what the CLI verbs do to a container.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::names::{new_id, unused_random_name, validate_name};
use super::network;
use super::options::RunOptions;
use super::record::{Container, State, Status};
use super::spec::{self, SpecInput};
use super::user;
use super::{ContainerError, Result};
use crate::cgroups::{Cgroup, DEFAULT_FS_ROOT};
use crate::image::Image;
use crate::network::NetworkMode;
use crate::store::Store;

/// Creates a container from an image: record, overlay dirs, /etc files and the
/// OCI spec. Nothing is left behind if any step fails.
pub fn create(store: &Store, image_name: &str, opts: &RunOptions) -> Result<Container> {
    let image = Image::resolve(store, image_name)?;
    let image_config = image.config.config().clone();
    let _lock = store.lock()?;
    // an `rmi` may have collected the image's layers between the resolve and
    // the lock; from here on the record written under this lock keeps them
    if let Some(missing) = image
        .layers
        .iter()
        .find(|l| !store.layer_dir(&l.chain_id).is_dir())
    {
        Image::resolve(store, image_name)?; // gone: "no such image"
        return Err(crate::image::ImageError::Layer {
            digest: missing.chain_id.to_string(),
            message: format!(
                "of image {image_name} is missing from the store: `twinbox system check --repair` unpacks it again"
            ),
        }
        .into());
    }
    let existing = Container::list(store)?;
    let name = match &opts.name {
        Some(n) => {
            let n = validate_name(n)?;
            if let Some(c) = existing.iter().find(|c| c.name == n) {
                return Err(ContainerError::NameInUse {
                    name: n,
                    id: c.id.clone(),
                });
            }
            n
        }
        None => unused_random_name(|n| existing.iter().any(|c| c.name == n)),
    };
    let id = new_id();
    let id_range = match opts.userns {
        super::userns::UsernsMode::Auto => {
            super::userns::check_reachable(store)?;
            Some(super::userns::allocate(&existing)?)
        }
        super::userns::UsernsMode::Host => None,
    };
    let hostname = match (&opts.network, &opts.hostname) {
        (NetworkMode::Container(_), Some(_)) => {
            return Err(ContainerError::BadOption(
                "conflicting options: --hostname and --network container:NAME (the container takes the other's hostname, /etc/hosts and /etc/resolv.conf)".into(),
            ))
        }
        // Docker's: one network namespace, one identity in it
        (NetworkMode::Container(other), None) => existing
            .iter()
            .find(|c| c.name == *other || c.id.starts_with(other.as_str()))
            .map(|c| c.hostname.clone())
            .unwrap_or_else(|| id[..12].to_string()),
        (_, Some(h)) => h.clone(),
        (_, None) => id[..12].to_string(),
    };
    let lower_dirs = image.lower_dirs(store);
    let shifted_lower_dirs = match &id_range {
        Some(range)
            if super::userns::layer_ownership(store)? == super::userns::LayerOwnership::Chowned =>
        {
            super::userns::shifted_layers(store, &lower_dirs, range)?
        }
        _ => Vec::new(),
    };
    let args = spec::command_line(image_config.as_ref(), opts);
    if args.is_empty() {
        return Err(ContainerError::BadOption(
            "no command specified: the image has no Entrypoint or Cmd, so give one after the image name".into(),
        ));
    }
    let user_spec = opts
        .user
        .clone()
        .or_else(|| image_config.as_ref().and_then(|c| c.user().clone()))
        .unwrap_or_default();
    let mut resolved = user::resolve(&user_spec, &lower_dirs)?;
    user::add_groups(&mut resolved, &opts.group_add, &lower_dirs)?;
    // network checks come before anything is written
    let mut opts = opts.clone();
    let mut labels: std::collections::BTreeMap<String, String> = image_config
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.append(&mut opts.labels);
    opts.labels = labels;
    if opts.stop_signal.is_none() {
        opts.stop_signal = image_config.as_ref().and_then(|c| c.stop_signal().clone());
    }
    if let Some(binary) = &opts.init {
        opts.init = Some(super::init::install(store, binary)?);
    }
    if opts.network == NetworkMode::Host {
        // as Docker: the host's own namespace needs no publishing, so the
        // ports are discarded (the CLI warns) and the container runs
        opts.ports.clear();
        opts.port_ranges.clear();
    }
    network::pick_from_ranges(&mut opts, &existing)?;
    // -P publishes only where the container has addresses of its own
    if opts.publish_all && opts.network.cni_network().is_some() {
        opts.ports
            .extend(network::exposed_ports(image_config.as_ref(), &opts.expose)?);
    }
    let netns = network::prepare(
        store.root(),
        &store.containers_dir().join(&id),
        &opts,
        &existing,
    )?;
    let extra_hosts = network::extra_hosts(store.root(), &opts)?;
    let opts = &opts;

    let image_volumes: Vec<String> = image_config
        .as_ref()
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default();
    let (mounts, new_volumes) = super::volumes::resolve(store, opts, &image_volumes, &lower_dirs)?;
    let opts = &RunOptions {
        volumes: mounts,
        ..opts.clone()
    };
    let container = Container {
        id: id.clone(),
        name,
        image: image_name.to_string(),
        image_id: image.id.to_string(),
        created: crate::util::time::now_rfc3339(),
        args: args.clone(),
        hostname: hostname.clone(),
        options: opts.clone(),
        lower_dirs,
        id_range,
        shifted_lower_dirs,
        dir: store.containers_dir().join(&id),
    };
    let rootfs = super::record::root_mount_point(store.root());
    let result = (|| -> Result<()> {
        for d in [container.upper(), container.work(), rootfs.clone()] {
            fs::create_dir_all(&d).map_err(|e| ContainerError::io(&d, e))?;
        }
        write_etc_files(&container, &extra_hosts)?;
        if container.shifted_lower_dirs.is_empty() {
            ensure_shared_init_layer(store)?;
        } else {
            // chowned into the container's range below, like its layers' copies
            write_init_layer(&container.init_layer())?;
        }
        if let Some(range) = &container.id_range {
            own_by_container_root(&container, range, &new_volumes)?;
        }
        let mut spec = spec::build(&SpecInput {
            id: &id,
            args,
            hostname: &hostname,
            image: image_config.as_ref(),
            opts,
            user: &resolved,
            rootfs: &rootfs,
            container_dir: &container.dir,
            cgroup_path: &container.cgroup_path(),
            netns: netns.as_deref(),
        })?;
        if let Some(range) = &container.id_range {
            super::userns::apply(&mut spec, range);
        }
        container.write_record(&container.spec_path(), &spec)?;
        container.write_state(&created_state(opts))?;
        crate::fault::point("create.before-record");
        // written last: a directory without it is not a container yet
        container.save()
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&container.dir);
        super::volumes::forget(store, &new_volumes);
        return Err(e);
    }
    Ok(container)
}

/// With a user namespace: the container's root owns its writable layer, its
/// /etc files and the volumes made for it (their files shifted into its
/// range); bind mounts keep their host owners, as Podman's without `:U`.
fn own_by_container_root(
    c: &Container,
    range: &super::userns::IdRange,
    new_volumes: &[String],
) -> Result<()> {
    for p in [
        c.upper(),
        c.dir.join("hostname"),
        c.dir.join("hosts"),
        c.dir.join("resolv.conf"),
    ] {
        super::userns::own(&p, range)?;
    }
    // the init layer is a lower dir like the image's: idmapped with them, or
    // chowned as their copies are
    if !c.shifted_lower_dirs.is_empty() {
        super::userns::shift_tree(&c.init_layer(), range)?;
    }
    for v in c
        .options
        .volumes
        .iter()
        .filter(|v| v.name.as_ref().is_some_and(|n| new_volumes.contains(n)))
    {
        super::userns::shift_tree(&v.source, range)?;
    }
    Ok(())
}

/// `create` as the verb: the container waits for a later `start` with no
/// owner, as Docker's, so that a `--rm` one is not taken for a run that died
/// (its `--rm` applies once it has run).
pub fn create_to_start_later(
    store: &Store,
    image_name: &str,
    opts: &RunOptions,
) -> Result<Container> {
    let c = create(store, image_name, opts)?;
    if opts.auto_remove {
        c.write_state(&State::created())?;
    }
    Ok(c)
}

/// The first state of a container. A `--rm` container is owned by the process
/// creating it until a supervisor takes over: if that process dies first, the
/// next command's recovery removes the container as `--rm` promised.
fn created_state(opts: &RunOptions) -> State {
    let mut state = State::created();
    if opts.auto_remove {
        let me = std::process::id() as i32;
        state.supervisor_pid = Some(me);
        state.supervisor_start_ticks = crate::util::procfs::start_ticks(me);
    }
    state
}

/// The init layer as Docker's: /etc/mtab is a link to /proc/mounts, and the
/// files the runtime bind-mounts over exist (empty), so that making the mount
/// points changes nothing above the image (`diff` and `commit` stay clean).
fn write_init_layer(dir: &Path) -> Result<()> {
    let etc = dir.join("etc");
    fs::create_dir_all(&etc).map_err(|e| ContainerError::io(&etc, e))?;
    for file in ["hostname", "hosts", "resolv.conf"] {
        let p = etc.join(file);
        fs::write(&p, b"").map_err(|e| ContainerError::io(&p, e))?;
    }
    let mtab = etc.join("mtab");
    std::os::unix::fs::symlink("/proc/mounts", &mtab).map_err(|e| ContainerError::io(&mtab, e))
}

/// Makes the store's shared init layer once (under the store lock, which
/// `create` holds): written in tmp/, synced, then renamed into place, so it
/// is whole or absent. Its last entry, the mtab link, tells it is whole;
/// one a power cut left torn is made again.
fn ensure_shared_init_layer(store: &Store) -> Result<()> {
    let dest = super::record::shared_init_layer(store.root());
    let mtab = dest.join("etc/mtab");
    if fs::symlink_metadata(&mtab).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    if fs::symlink_metadata(&dest).is_ok() {
        let grave = crate::store::grave_path(store.root());
        fs::rename(&dest, &grave).map_err(|e| ContainerError::io(&dest, e))?;
        let _ = fs::remove_dir_all(&grave);
    }
    let tmp = store.temp_dir("init-layer")?;
    let made = write_init_layer(&tmp).and_then(|_| {
        let sync =
            |p: &Path| crate::store::atomic::sync_dir(p).map_err(|e| ContainerError::io(p, e));
        for file in ["hostname", "hosts", "resolv.conf"] {
            let p = tmp.join("etc").join(file);
            fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(|e| ContainerError::io(&p, e))?;
        }
        sync(&tmp.join("etc"))?;
        sync(&tmp)?;
        let parent = dest.parent().unwrap_or(store.root());
        fs::create_dir_all(parent).map_err(|e| ContainerError::io(parent, e))?;
        fs::rename(&tmp, &dest).map_err(|e| ContainerError::io(&dest, e))?;
        sync(parent)
    });
    if made.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    made
}

/// The container's /etc/hostname, /etc/hosts (with `--add-host`'s lines,
/// `extra_hosts`, kept beside it for every later regeneration) and
/// /etc/resolv.conf (with `--dns`, `--dns-search`, `--dns-option` over the
/// mode's own).
fn write_etc_files(c: &Container, extra_hosts: &str) -> Result<()> {
    let put = |name: &str, text: String| -> Result<()> {
        let p = c.dir.join(name);
        fs::write(&p, text).map_err(|e| ContainerError::io(&p, e))
    };
    put("hostname", format!("{}\n", c.hostname))?;
    if !extra_hosts.is_empty() {
        put(crate::network::names::EXTRA_HOSTS, extra_hosts.to_string())?;
    }
    put(
        "hosts",
        format!(
            "{}{extra_hosts}127.0.1.1\t{}\n",
            crate::network::names::LOCALHOST,
            c.hostname
        ),
    )?;
    let o = &c.options;
    let resolv = match o.network {
        NetworkMode::Host => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        NetworkMode::None => String::new(),
        _ => crate::network::resolv_conf(),
    };
    put(
        "resolv.conf",
        crate::network::with_dns(&resolv, &o.dns, &o.dns_search, &o.dns_options),
    )
}

/// Starts a created container under a detached supervisor (`supervisor_exe
/// __supervise --root ROOT ID`) and returns the container's host pid once it runs.
pub fn start_detached(store: &Store, container: &Container, supervisor_exe: &Path) -> Result<i32> {
    let state = container.state()?;
    if state.status == Status::Running {
        return Err(ContainerError::AlreadyRunning(container.name.clone()));
    }
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::Supervisor(format!("pipe: {e}")))?;
    let report_fd = report_w.as_raw_fd();
    let mut cmd = Command::new(supervisor_exe);
    cmd.arg("--root")
        .arg(store.root())
        .arg("__supervise")
        .arg(&container.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (setsid, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            // dup2 clears CLOEXEC on the copy, so the supervisor inherits fd 3
            if libc::dup2(report_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        ContainerError::Supervisor(format!("cannot start {}: {e}", supervisor_exe.display()))
    })?;
    drop(report_w);
    let mut report = String::new();
    let _ = fs::File::from(report_r).read_to_string(&mut report);
    // the supervisor forks once more and its first half exits at once
    let _ = child.wait();
    let report = report.trim();
    if let Some(pid) = report.strip_prefix("ok ") {
        return pid
            .parse()
            .map_err(|_| ContainerError::Supervisor(format!("bad report {report:?}")));
    }
    if let Some(rest) = report.strip_prefix("err ") {
        let (code, message) = rest.split_once(' ').unwrap_or(("125", rest));
        return Err(ContainerError::Runtime(
            crate::runtime::RuntimeError::Init {
                exit_code: code.parse().unwrap_or(125),
                message: message.to_string(),
            },
        ));
    }
    Err(ContainerError::Supervisor(format!(
        "the supervisor of {} exited without reporting: see `twinbox inspect {}`",
        container.name, container.name
    )))
}

fn poll_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn is_running(c: &Container) -> bool {
    c.state()
        .map(|s| s.status == Status::Running)
        .unwrap_or(false)
}

pub fn cgroup_of(c: &Container) -> Option<Cgroup> {
    Cgroup::new(Path::new(DEFAULT_FS_ROOT), &c.cgroup_path()).ok()
}

/// How long `stop` waits: the given seconds, else the container's
/// `--stop-timeout`, else Docker's 10 s.
pub fn stop_timeout(container: &Container, given: Option<u64>) -> Duration {
    Duration::from_secs(given.or(container.options.stop_timeout).unwrap_or(10))
}

/// The container's stop signal (`--stop-signal`, the image's StopSignal) or
/// SIGTERM, then SIGKILL after `timeout`, like `docker stop`.
pub fn stop(container: &Container, timeout: Duration) -> Result<()> {
    // first, so a restart policy waiting to restart sees it too
    super::restart::mark_stopped_by_user(container)?;
    let state = container.state()?;
    let Some(pid) = state.pid.filter(|_| state.status == Status::Running) else {
        return Ok(());
    };
    let signal = container
        .options
        .stop_signal
        .as_deref()
        .and_then(super::signals::parse)
        .unwrap_or(libc::SIGTERM);
    // SAFETY: signalling a pid we recorded; a stale pid is caught by the state check.
    unsafe { libc::kill(pid, signal) };
    if poll_until(timeout, || !is_running(container)) {
        return Ok(());
    }
    if let Some(cg) = cgroup_of(container) {
        let _ = cg.kill_all(libc::SIGKILL);
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    if poll_until(Duration::from_secs(10), || !is_running(container)) {
        Ok(())
    } else {
        Err(ContainerError::Timeout {
            id: container.name.clone(),
            what: "stop".into(),
            secs: timeout.as_secs() + 10,
        })
    }
}

/// Sends a signal to the container's init, like `docker kill -s`.
pub fn kill(container: &Container, signal: i32) -> Result<()> {
    let state = container.state()?;
    match state.pid.filter(|_| state.status == Status::Running) {
        Some(pid) => {
            // the signals `stop` sends end restart policies; others (HUP, USR1) do not
            if signal == libc::SIGKILL || signal == libc::SIGTERM {
                super::restart::mark_stopped_by_user(container)?;
            }
            // SAFETY: plain kill(2) on the recorded pid of a running container.
            if unsafe { libc::kill(pid, signal) } != 0 {
                return Err(ContainerError::io(
                    format!("/proc/{pid}"),
                    std::io::Error::last_os_error(),
                ));
            }
            Ok(())
        }
        None => Err(ContainerError::NotRunning(container.name.clone())),
    }
}

/// Blocks until the container is no longer running; returns its exit code.
pub fn wait(container: &Container) -> Result<Option<i32>> {
    loop {
        let s = container.state()?;
        if s.status == Status::Exited {
            return Ok(s.exit_code);
        }
        if !container.dir.exists() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a container's record and files; `force` kills it first.
pub fn remove(container: &Container, force: bool) -> Result<()> {
    if is_running(container) {
        if !force {
            return Err(ContainerError::Running(container.name.clone()));
        }
        stop(container, Duration::ZERO)?;
    }
    network::release(container)?;
    if let Some(cg) = cgroup_of(container) {
        // a cgroup still busy after destroy's wait is reclaimed by a later
        // command's recovery once empty: removal goes on
        if let Err(e) = cg.destroy() {
            tracing::warn!(container = %container.name, error = %e, "cgroup left for recovery");
        }
    }
    crate::fault::point("rm.cgroup-released");
    container.discard()
}
