//! `exec`: one more process in a running container, confined exactly like the
//! container's own (same namespaces, cgroup, capabilities, seccomp filter,
//! no_new_privs and masked paths), with exec's own command, environment
//! additions, working directory and user.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use oci_spec::runtime::{Capabilities, Process, Spec};

use super::record::{Container, Status};
use super::{lifecycle, signals, user, ContainerError, Result};
use crate::runtime::enter::{enter, Enter};
use crate::runtime::security::capabilities::all_capabilities;
use crate::runtime::{wait_exit, Stdio};
use crate::store::atomic::read_json;

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    /// KEY=VALUE added to (or replacing in) the container's environment.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// NAME, UID, NAME:GROUP or UID:GID, looked up in the container's files.
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    pub detach: bool,
    pub privileged: bool,
}

/// Runs the command in the container; returns its exit code (0 at once with
/// `detach`).
pub fn exec(container: &Container, opts: &ExecOptions) -> Result<i32> {
    let state = container.state()?;
    let pid = match state.pid.filter(|_| state.status == Status::Running) {
        Some(pid) => pid,
        None => return Err(ContainerError::NotRunning(container.name.clone())),
    };
    if super::pause::is_paused(container) {
        return Err(ContainerError::Paused(container.name.clone()));
    }
    if opts.cmd.is_empty() {
        return Err(ContainerError::BadOption(
            "exec needs a command: twinbox exec CONTAINER CMD [ARG...]".into(),
        ));
    }
    let spec: Spec = read_json(&container.spec_path())?;
    // HOME follows the exec's user unless someone set it (runc's rule)
    let home_set = container.options.env.iter().any(|e| e.starts_with("HOME="));
    let process = process_for(&spec, pid, opts, &container.options.group_add, home_set)?;
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .filter(|_| !opts.privileged);
    let cgroup = lifecycle::cgroup_of(container);

    if opts.tty && !opts.detach {
        return super::terminal::exec_with_terminal(
            pid,
            &process,
            seccomp,
            cgroup.as_ref(),
            opts.interactive,
        );
    }
    let devnull = File::open("/dev/null").map_err(|e| ContainerError::io("/dev/null", e))?;
    let null = devnull.as_raw_fd();
    let stdio = if opts.detach {
        Stdio {
            stdin: null,
            stdout: null,
            stderr: null,
        }
    } else {
        Stdio {
            stdin: if opts.interactive { 0 } else { null },
            stdout: 1,
            stderr: 2,
        }
    };
    let child = enter(&Enter {
        target: nix::unistd::Pid::from_raw(pid),
        process: &process,
        seccomp,
        cgroup: cgroup.as_ref(),
        stdio,
        die_with_parent: !opts.detach,
        preserve_fds: 0,
        personality: None,
    })?;
    if opts.detach {
        return Ok(0);
    }
    signals::forward_to(child.as_raw());
    let code = wait_exit(child);
    signals::stop_forwarding();
    Ok(code)
}

/// The container's process description with exec's changes applied.
fn process_for(
    spec: &Spec,
    pid: i32,
    opts: &ExecOptions,
    group_add: &[String],
    home_set: bool,
) -> Result<Process> {
    let base = spec
        .process()
        .clone()
        .ok_or_else(|| ContainerError::Supervisor("the container's spec has no process".into()))?;
    let mut process = base.clone();
    process.set_args(Some(opts.cmd.clone()));
    process.set_terminal(Some(opts.tty));

    let mut env = base.env().clone().unwrap_or_default();
    for kv in &opts.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process.set_env(Some(env));

    if let Some(w) = &opts.workdir {
        if !w.starts_with('/') {
            return Err(ContainerError::BadOption(format!(
                "working directory {w:?} must be an absolute path"
            )));
        }
        process.set_cwd(PathBuf::from(w));
    }

    let mut caps = base.capabilities().clone().unwrap_or_default();
    if let Some(u) = &opts.user {
        // the container's files as they are now, not the image's
        let root = [PathBuf::from(format!("/proc/{pid}/root"))];
        let mut resolved = user::resolve(u, &root)?;
        user::add_groups(&mut resolved, group_add, &root)?;
        if !home_set && !opts.env.iter().any(|e| e.starts_with("HOME=")) {
            let mut env = process.env().clone().unwrap_or_default();
            env.retain(|e| !e.starts_with("HOME="));
            env.push(format!("HOME={}", resolved.home));
            process.set_env(Some(env));
        }
        let mut usr = process.user().clone();
        usr.set_uid(resolved.uid);
        usr.set_gid(resolved.gid);
        usr.set_additional_gids((!resolved.groups.is_empty()).then_some(resolved.groups));
        process.set_user(usr);
        let held = if resolved.uid == 0 {
            caps.bounding().clone()
        } else {
            // Docker: a non-root user keeps the bounding set but holds no capabilities
            Some(Capabilities::default())
        };
        caps.set_effective(held.clone());
        caps.set_permitted(held.clone());
        caps.set_inheritable(held);
    }
    if opts.privileged {
        caps = all_capabilities();
    }
    caps.set_ambient(None);
    process.set_capabilities(Some(caps));
    Ok(process)
}
