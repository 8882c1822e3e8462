//! `runtime features`: what this runtime supports, in the JSON shape of the
//! OCI runtime-spec features document (runc's `features`), so callers such as
//! containerd can ask instead of guessing.

use serde_json::{json, Value};

use super::security::capabilities;

/// The features document: only what the runtime really implements.
pub fn features() -> Value {
    let caps: Vec<&str> = capabilities::all_capabilities()
        .bounding()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(capabilities::capability_name)
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                         "bind", "rbind", "private", "rprivate", "shared", "rshared",
                         "slave", "rslave", "unbindable", "runbindable", "relatime",
                         "noatime", "strictatime", "nodiratime", "sync", "remount"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true, "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO",
                        "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                        "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG"]},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runtime-spec.features": "twinbox"}
    })
}
