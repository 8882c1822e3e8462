//! OCI lifecycle hooks: programs the runtime runs at fixed points of a
//! container's life, each given the container's state JSON on stdin.
//!
//! Where each kind runs: `prestart` and `createRuntime` in the runtime's
//! namespaces once the container's namespaces exist, `createContainer` in the
//! container's mount namespace before pivot_root, `startContainer` in the
//! container right before the workload's exec, `poststart` after `start`,
//! `poststop` at `delete`. A hook that runs longer than its `timeout` (or
//! [`DEFAULT_TIMEOUT`]) is killed and counts as failed: nothing waits forever.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// For hooks without a timeout of their own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook {path}: cannot run it: {source}")]
    Spawn {
        kind: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{kind} hook {path} failed: {status}")]
    Failed {
        kind: &'static str,
        path: String,
        status: String,
    },
    #[error("{kind} hook {path} timed out after {secs} s")]
    TimedOut {
        kind: &'static str,
        path: String,
        secs: u64,
    },
}

/// Runs `hooks` in order; the first failure stops the rest.
pub fn run_all(kind: &'static str, hooks: &[Hook], state_json: &str) -> Result<(), HookError> {
    hooks
        .iter()
        .try_for_each(|h| run_one(kind, h, state_json, &[]))
}

/// [`run_all`] for hooks that run inside the container (startContainer): a
/// hook without an `env` of its own gets the workload's `process_env`, as
/// with runc, whose init already carries that environment.
pub fn run_all_in_container(
    kind: &'static str,
    hooks: &[Hook],
    state_json: &str,
    process_env: &[String],
) -> Result<(), HookError> {
    hooks
        .iter()
        .try_for_each(|h| run_one(kind, h, state_json, process_env))
}

fn run_one(
    kind: &'static str,
    hook: &Hook,
    state_json: &str,
    default_env: &[String],
) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        std::os::unix::process::CommandExt::arg0(&mut cmd, arg0);
        cmd.args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or(default_env) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|source| HookError::Spawn {
        kind,
        path: path.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // a hook that does not read its stdin is fine: ignore EPIPE
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let limit = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(HookError::Failed {
                    kind,
                    path,
                    status: status.to_string(),
                })
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::TimedOut {
                    kind,
                    path,
                    secs: limit.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(source) => return Err(HookError::Spawn { kind, path, source }),
        }
    }
}
