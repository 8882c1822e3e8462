//! From image config + run options to an OCI runtime spec, the way Docker
//! composes them: Entrypoint + Cmd, merged Env, WorkingDir, User, default mounts,
//! namespaces, capabilities, seccomp, masked paths, cgroup limits.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, SpecBuilder, UserBuilder,
};

use super::options::{merge_env, RunOptions};
use super::user::ResolvedUser;
use super::{ContainerError, Result};
use crate::cgroups::cpus_to_quota;
use crate::network::NetworkMode;
use crate::runtime::security::{self, capabilities, DOCKER_MASKED_PATHS, DOCKER_READONLY_PATHS};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's rule: --entrypoint replaces the image's Entrypoint and drops its Cmd;
/// arguments after the image replace Cmd.
pub fn command_line(image: Option<&ImageConfig>, opts: &RunOptions) -> Vec<String> {
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (
            image
                .and_then(|c| c.entrypoint().clone())
                .unwrap_or_default(),
            image.and_then(|c| c.cmd().clone()).unwrap_or_default(),
        ),
    };
    let cmd = if opts.cmd.is_empty() {
        image_cmd
    } else {
        opts.cmd.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The container's environment: image Env, then -e/--env-file, plus what
/// Docker always sets (PATH if missing, HOSTNAME, HOME).
pub fn environment(
    image: Option<&ImageConfig>,
    opts: &RunOptions,
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let base = image.and_then(|c| c.env().clone()).unwrap_or_default();
    let mut env = merge_env(&[DEFAULT_PATH.to_string()], &base);
    env = merge_env(&env, &[format!("HOSTNAME={hostname}")]);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    merge_env(&env, &opts.env)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("static mount")
}

/// The mounts every Docker container gets, plus /etc files and volumes.
/// `etc_dir` holds the hostname, hosts and resolv.conf files bound onto /etc:
/// the container's own directory, or with `--network container:NAME` the
/// other container's (as Docker shares them), so peers' names stay current.
pub fn default_mounts(etc_dir: &Path, opts: &RunOptions) -> Vec<Mount> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &[
                "nosuid",
                "noexec",
                "nodev",
                "mode=1777",
                &format!("size={}k", opts.shm_size.unwrap_or(64 << 20).div_ceil(1024)),
            ],
        ),
    ];
    for file in ["hostname", "hosts", "resolv.conf"] {
        let src = etc_dir.join(file);
        mounts.push(mount(
            &format!("/etc/{file}"),
            "bind",
            &src.display().to_string(),
            &["rbind", "rprivate"],
        ));
    }
    for v in &opts.volumes {
        let mut o = vec!["rbind", "rprivate"];
        if v.read_only {
            o.push("ro");
        }
        mounts.push(mount(
            &v.destination.display().to_string(),
            "bind",
            &v.source.display().to_string(),
            &o,
        ));
    }
    if let Some(init) = &opts.init {
        mounts.push(mount(
            super::init::CONTAINER_PATH,
            "bind",
            &init.display().to_string(),
            &["bind", "ro"],
        ));
    }
    for t in &opts.tmpfs {
        let o: Vec<&str> = t.options.iter().map(String::as_str).collect();
        mounts.push(mount(
            &t.destination.display().to_string(),
            "tmpfs",
            "tmpfs",
            &o,
        ));
    }
    mounts
}

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub args: Vec<String>,
    pub hostname: &'a str,
    pub image: Option<&'a ImageConfig>,
    pub opts: &'a RunOptions,
    pub user: &'a ResolvedUser,
    pub rootfs: &'a Path,
    pub container_dir: &'a Path,
    pub cgroup_path: &'a Path,
    /// The network namespace file to join (CNI networks, container:NAME).
    pub netns: Option<&'a Path>,
}

/// Where the /etc files come from (see `default_mounts`).
fn etc_dir_of(input: &SpecInput) -> std::path::PathBuf {
    match (&input.opts.network, input.netns.and_then(Path::parent)) {
        (NetworkMode::Container(_), Some(owner)) => owner.to_path_buf(),
        _ => input.container_dir.to_path_buf(),
    }
}

pub fn build(input: &SpecInput) -> Result<Spec> {
    let opts = input.opts;
    let image = input.image;
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(ContainerError::BadOption(format!(
            "working directory {cwd:?} must be an absolute path"
        )));
    }
    let mut caps = if opts.privileged {
        capabilities::all_capabilities()
    } else {
        capabilities::default_capabilities()
    };
    capabilities::adjust(&mut caps, &opts.cap_add, &opts.cap_drop)
        .map_err(|e| ContainerError::BadOption(e.to_string()))?;
    let bounding = caps.bounding().clone().unwrap_or_default();
    if input.user.uid != 0 {
        // Docker: a non-root user keeps the bounding set but holds no capabilities.
        caps.set_effective(Some(Default::default()));
        caps.set_permitted(Some(Default::default()));
        caps.set_inheritable(Some(Default::default()));
    }
    let process = ProcessBuilder::default()
        .terminal(opts.tty)
        .user(
            UserBuilder::default()
                .uid(input.user.uid)
                .gid(input.user.gid)
                .additional_gids(input.user.groups.clone())
                .build()
                .expect("user"),
        )
        .args(match &opts.init {
            Some(_) => super::init::wrap(input.args.clone()),
            None => input.args.clone(),
        })
        .env(environment(image, opts, input.hostname, &input.user.home))
        .cwd(cwd)
        .capabilities(caps)
        .rlimits(
            opts.ulimits
                .iter()
                .filter_map(super::ulimit::to_rlimit)
                .collect::<Vec<_>>(),
        )
        .no_new_privileges(opts.no_new_privileges)
        .build()
        .map_err(|e| ContainerError::BadOption(e.to_string()))?;

    let mut namespaces = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Cgroup,
    ];
    if opts.network == NetworkMode::None {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let mut namespaces: Vec<_> = namespaces
        .into_iter()
        .map(|t| {
            LinuxNamespaceBuilder::default()
                .typ(t)
                .build()
                .expect("namespace")
        })
        .collect();
    // CNI networks and container:NAME join a namespace pinned on a file
    if let Some(path) = input.netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.to_path_buf())
                .build()
                .expect("namespace"),
        );
    }

    let mut resources = LinuxResourcesBuilder::default();
    if let Some(m) = opts.memory_bytes {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(m as i64)
                .swap(m as i64)
                .build()
                .expect("memory"),
        );
    }
    if let Some(cpus) = opts.cpus {
        let (quota, period) = cpus_to_quota(cpus)?;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(period)
                .build()
                .expect("cpu"),
        );
    }
    if let Some(p) = opts.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(p).build().expect("pids"));
    }
    let mut devices = if opts.privileged {
        super::devices::host_devices()
    } else {
        Vec::new()
    };
    let mut added = Vec::new();
    for d in &opts.devices {
        for node in super::devices::resolve(d)? {
            added.push((node.clone(), d.permissions.clone()));
            devices.push(node);
        }
    }
    resources = resources.devices(super::devices::cgroup_rules(opts.privileged, &added));
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(devices)
        .cgroups_path(Path::new("/").join(input.cgroup_path))
        .resources(resources.build().expect("resources"))
        .masked_paths(
            DOCKER_MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            DOCKER_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .seccomp(security::seccomp::docker_profile_for_capabilities(
            &bounding,
        ))
        .build()
        .expect("linux");
    if let Some(text) = &opts.seccomp_profile {
        let kernel = security::seccomp::running_kernel();
        let profile = security::seccomp::profile_from_docker_json(text, &bounding, kernel)
            .map_err(|e| ContainerError::BadOption(format!("--security-opt seccomp: {e}")))?;
        linux.set_seccomp(Some(profile));
    }
    if opts.privileged || opts.seccomp_unconfined {
        linux.set_seccomp(None);
    }
    if opts.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }

    let mut annotations = HashMap::new();
    annotations.insert("org.twinbox.container.id".to_string(), input.id.to_string());
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(input.rootfs)
                .readonly(opts.read_only)
                .build()
                .expect("root"),
        )
        .hostname(input.hostname)
        .process(process)
        .mounts(default_mounts(&etc_dir_of(input), opts))
        .linux(linux)
        .annotations(annotations)
        .build()
        .map_err(|e| ContainerError::BadOption(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn namespaces_of(spec: &Spec) -> Vec<LinuxNamespaceType> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    fn image() -> ImageConfig {
        ConfigBuilder::default()
            .entrypoint(vec!["/entry".to_string()])
            .cmd(vec!["serve".to_string()])
            .env(vec!["PATH=/opt/bin".to_string(), "A=image".to_string()])
            .working_dir("/app".to_string())
            .build()
            .unwrap()
    }

    #[test]
    fn entrypoint_and_cmd_compose_like_docker() {
        let img = image();
        let mut o = RunOptions::default();
        assert_eq!(command_line(Some(&img), &o), vec!["/entry", "serve"]);
        o.cmd = vec!["debug".into()];
        assert_eq!(command_line(Some(&img), &o), vec!["/entry", "debug"]);
        o.entrypoint = Some("sh".into());
        o.cmd = vec![];
        assert_eq!(command_line(Some(&img), &o), vec!["sh"]);
        o.entrypoint = Some(String::new());
        o.cmd = vec!["ls".into()];
        assert_eq!(command_line(Some(&img), &o), vec!["ls"]);
    }

    #[test]
    fn env_merges_image_then_options() {
        let img = image();
        let o = RunOptions {
            env: vec!["A=cli".into(), "B=2".into()],
            ..Default::default()
        };
        let env = environment(Some(&img), &o, "box", "/root");
        assert!(env.contains(&"PATH=/opt/bin".to_string()));
        assert!(env.contains(&"A=cli".to_string()));
        assert!(env.contains(&"HOSTNAME=box".to_string()));
        assert!(env.contains(&"HOME=/root".to_string()));
        assert!(!env.contains(&"A=image".to_string()));
    }

    #[test]
    fn spec_has_isolation_and_limits() {
        let img = image();
        let o = RunOptions {
            memory_bytes: Some(64 << 20),
            pids_limit: Some(20),
            cpus: Some(0.5),
            read_only: true,
            ..Default::default()
        };
        let user = ResolvedUser {
            uid: 1000,
            gid: 1000,
            home: "/".into(),
            groups: vec![],
        };
        let spec = build(&SpecInput {
            id: "abc",
            args: command_line(Some(&img), &o),
            hostname: "abc",
            image: Some(&img),
            opts: &o,
            user: &user,
            rootfs: Path::new("/r"),
            container_dir: Path::new("/c"),
            cgroup_path: Path::new("twinbox/abc"),
            netns: None,
        })
        .unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let ns = namespaces_of(&spec);
        for t in [
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Uts,
        ] {
            assert!(ns.contains(&t), "{t:?}");
        }
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 20);
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert!(spec.root().as_ref().unwrap().readonly().unwrap());
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.cwd(), Path::new("/app"));
        assert!(p
            .capabilities()
            .as_ref()
            .unwrap()
            .effective()
            .as_ref()
            .unwrap()
            .is_empty());
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux.seccomp().is_some());
        let host = RunOptions {
            network: NetworkMode::Host,
            ..Default::default()
        };
        let spec = build(&SpecInput {
            id: "abc",
            args: vec!["sh".into()],
            hostname: "h",
            image: None,
            opts: &host,
            user: &user,
            rootfs: Path::new("/r"),
            container_dir: Path::new("/c"),
            cgroup_path: Path::new("t/a"),
            netns: None,
        })
        .unwrap();
        assert!(!namespaces_of(&spec).contains(&LinuxNamespaceType::Network));
    }
}
