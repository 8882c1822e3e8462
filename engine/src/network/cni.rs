//! The CNI runtime side: find a plugin, exec it with the CNI_* environment and the
//! network config on stdin, and run a config list's plugins in order (ADD, CHECK)
//! or in reverse (DEL), chaining each result into the next as `prevResult`.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{NetworkError, Result};

/// Where distributions put the reference plugins.
pub const PLUGIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni"];

/// Where plugins are looked for: the directories of `CNI_PATH` (colon
/// separated) when it is set, as libcni and nerdctl read it, else
/// [`PLUGIN_DIRS`]. Set, it is the whole list: a user (or a test) can point
/// twinbox at other plugins, or at none, without the distribution's showing
/// through.
pub fn plugin_dirs() -> Vec<String> {
    let given: Vec<String> = std::env::var("CNI_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    if given.is_empty() {
        PLUGIN_DIRS.iter().map(|d| d.to_string()).collect()
    } else {
        given
    }
}

/// A plugin that hangs must not hang twinbox.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `PLUGIN_TIMEOUT`, or `TWINBOX_CNI_TIMEOUT` (seconds or a duration) where a
/// machine is known to be slow (the nested test machine runs iptables in
/// software emulation).
pub fn plugin_timeout() -> Duration {
    crate::util::time::env_timeout("TWINBOX_CNI_TIMEOUT").unwrap_or(PLUGIN_TIMEOUT)
}

/// The first plugin directory that holds the `bridge` plugin.
pub fn plugin_dir() -> Option<PathBuf> {
    plugin_dirs()
        .into_iter()
        .map(PathBuf::from)
        .find(|d| d.join("bridge").is_file())
}

fn find_plugin(name: &str) -> Result<PathBuf> {
    let dirs = plugin_dirs();
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| NetworkError::MissingPlugin {
            plugin: name.to_string(),
            dirs: dirs.join(", "),
        })
}

/// Every plugin a config list runs (IPAM plugins included) can be found: checked
/// before a container is created, so a host without the plugins gets the one
/// line saying which package to install, and nothing is made.
pub fn check_plugins(conflist: &Value) -> Result<()> {
    for p in conflist["plugins"].as_array().into_iter().flatten() {
        for kind in [&p["type"], &p["ipam"]["type"]] {
            if let Some(kind) = kind.as_str() {
                find_plugin(kind)?;
            }
        }
    }
    Ok(())
}

/// One attachment: which namespace, which interface, under which id.
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `runtimeConfig` capabilities (portMappings...), passed to plugins that ask.
    pub runtime_config: &'a Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Del,
    Check,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        }
    }
}

/// Runs every plugin of `conflist` for `op`. `prev` is the cached ADD result (DEL,
/// CHECK). Returns the final result (ADD) or `prev` unchanged. A failed ADD
/// (an error or a timeout) is followed by DEL of the whole list, as the CNI
/// spec asks of runtimes: what the plugins before it added (an address lease,
/// a veth, portmap's NAT chains) does not stay.
pub fn run_list(conflist: &Value, op: Op, at: &Attachment, prev: Option<&Value>) -> Result<Value> {
    let name = conflist["name"].as_str().unwrap_or("");
    let version = conflist["cniVersion"].as_str().unwrap_or("1.0.0");
    let plugins = conflist["plugins"].as_array().cloned().unwrap_or_default();
    let mut result = prev.cloned().unwrap_or(Value::Null);
    let ordered: Vec<&Value> = if op == Op::Del {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    let mut first_err = None;
    for plugin in ordered {
        let mut conf = plugin.clone();
        conf["name"] = json!(name);
        conf["cniVersion"] = json!(version);
        if !result.is_null() {
            conf["prevResult"] = result.clone();
        }
        if let Some(caps) = plugin["capabilities"].as_object() {
            let mut rc = serde_json::Map::new();
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    if let Some(v) = at.runtime_config.get(cap) {
                        rc.insert(cap.clone(), v.clone());
                    }
                }
            }
            if !rc.is_empty() {
                conf["runtimeConfig"] = Value::Object(rc);
            }
        }
        let kind = plugin["type"].as_str().unwrap_or("").to_string();
        match exec(&kind, op, at, &conf) {
            Ok(out) if op == Op::Add => result = out,
            Ok(_) => {}
            // DEL goes on through every plugin: release as much as possible
            Err(e) if op == Op::Del => {
                first_err.get_or_insert(e);
            }
            Err(e) if op == Op::Add => {
                let added = (!result.is_null()).then_some(&result);
                if let Err(undo) = run_list(conflist, Op::Del, at, added) {
                    tracing::warn!("DEL after a failed ADD of network {name}: {undo}");
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

/// SIGKILL to the plugin's whole process group, then reaps the plugin.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pgid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on the group the plugin leads (process_group(0)
        // above); it has not been reaped yet, so the id is still its own.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn exec(kind: &str, op: Op, at: &Attachment, conf: &Value) -> Result<Value> {
    let path = find_plugin(kind)?;
    let cni_path = plugin_dirs().join(":");
    let mut child = Command::new(&path)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", op.as_str())
        .env("CNI_CONTAINERID", at.container_id)
        .env("CNI_NETNS", at.netns)
        .env("CNI_IFNAME", at.ifname)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // its own process group: a timeout kills the iptables runs it started
        // too, so none of them adds a rule after the DEL that follows
        .process_group(0)
        .spawn()
        .map_err(|e| NetworkError::Plugin {
            plugin: kind.to_string(),
            op: op.as_str(),
            message: e.to_string(),
        })?;
    let input = serde_json::to_vec(conf).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let start = Instant::now();
    let timeout = plugin_timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            // Quick plugins are seen at once; slow ones are not woken for
            // hundreds of times a second (a cost on an emulated CPU).
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(
                (start.elapsed() / 8).clamp(Duration::from_millis(1), Duration::from_millis(50)),
            ),
            _ => {
                kill_group(&mut child);
                return Err(NetworkError::Plugin {
                    plugin: kind.to_string(),
                    op: op.as_str(),
                    message: format!(
                        "no answer within {timeout:?} (TWINBOX_CNI_TIMEOUT sets the limit)"
                    ),
                });
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        // the spec's error object: {"code", "msg", "details"}
        let message = match serde_json::from_slice::<Value>(&out) {
            Ok(v) if v["msg"].is_string() => {
                let mut m = v["msg"].as_str().unwrap_or("").to_string();
                if let Some(d) = v["details"].as_str().filter(|d| !d.is_empty()) {
                    m = format!("{m}: {d}");
                }
                m
            }
            _ => format!("{} {}", String::from_utf8_lossy(&out).trim(), err.trim()),
        };
        return Err(NetworkError::Plugin {
            plugin: kind.to_string(),
            op: op.as_str(),
            message: message.replace('\n', " ").trim().to_string(),
        });
    }
    if op != Op::Add || out.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out).map_err(|e| NetworkError::Plugin {
        plugin: kind.to_string(),
        op: op.as_str(),
        message: format!("unreadable result: {e}"),
    })
}
