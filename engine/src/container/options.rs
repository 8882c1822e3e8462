//! What the user asked for on `run`/`create`, parsed and checked before anything
//! is written to the store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ContainerError, Result};
use crate::network::{NetworkMode, PortMapping};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunOptions {
    pub name: Option<String>,
    /// KEY=VALUE, in order (later wins); env files already expanded.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// UID[:GID] or a user name from the image's /etc/passwd.
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub entrypoint: Option<String>,
    pub network: NetworkMode,
    /// `-p` mappings, parsed (host ports already chosen).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// `-p 8000-8010:80` as asked: the port picked from each range is in
    /// `ports` (from create on); the range stays for inspect's PortBindings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_ranges: Vec<crate::network::ports::HostRange>,
    /// `-P`: publish every EXPOSEd port on a free host port.
    #[serde(default)]
    pub publish_all: bool,
    /// `--add-host NAME:IP`, as Docker keeps them (`NAME:IP`, or
    /// `NAME:host-gateway` for the host's address on the container's network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// `--dns`: the nameservers of the container's /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<std::net::IpAddr>,
    /// `--dns-search`: its search domains (`.` for none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// `--dns-option`: its options line (ndots:2, timeout:1...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// `--mac-address`: the MAC of its interface on its first network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// `--expose`: more ports the container exposes (`80/tcp`), published by `-P`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// `--network-alias`: more names peers on the (user) network resolve.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--ip`: a fixed address on the network instead of the next free one.
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Networks joined with `network connect`, attached after the first one.
    #[serde(default)]
    pub connected: Vec<Connection>,
    /// The first network was left with `network disconnect`: the container
    /// keeps its own namespace (with `lo`) and joins only `connected`.
    #[serde(default)]
    pub left_first_network: bool,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub interactive: bool,
    pub tty: bool,
    pub auto_remove: bool,
    /// host-path:container-path[:ro]
    pub volumes: Vec<Volume>,
    /// Replaces the image's Cmd when not empty.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--tmpfs` and `--mount type=tmpfs`.
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// Size of /dev/shm in bytes (Docker's default: 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// `--cap-add`, `--cap-drop`: capability names (or ALL).
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// `--group-add`: supplementary groups (names or GIDs).
    #[serde(default)]
    pub group_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--privileged`: every capability, no seccomp filter, no masked paths.
    #[serde(default)]
    pub privileged: bool,
    /// `--security-opt seccomp=unconfined`.
    #[serde(default)]
    pub seccomp_unconfined: bool,
    /// `--security-opt seccomp=FILE.json`: the profile's text (Docker's JSON
    /// format), kept so that restarts do not need the file.
    #[serde(default)]
    pub seccomp_profile: Option<String>,
    /// `--security-opt no-new-privileges`: setuid bits and file capabilities
    /// stop working (off by default, as Docker).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// `--stop-signal` (else the image's StopSignal, resolved at create).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// `--stop-timeout` in seconds (Docker's default: 10).
    #[serde(default)]
    pub stop_timeout: Option<u64>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    #[serde(default)]
    pub ulimits: Vec<super::ulimit::Ulimit>,
    /// `--device HOST[:CONTAINER][:rwm]`.
    #[serde(default)]
    pub devices: Vec<super::devices::Device>,
    /// `--init`: the static reaper binary to run as PID 1 (after create, the
    /// store's copy).
    #[serde(default)]
    pub init: Option<PathBuf>,
    /// `--label KEY=VALUE`; at create the image's labels are merged under them.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--userns`: the host's user namespace, or one of the container's own.
    #[serde(default)]
    pub userns: super::userns::UsernsMode,
}

/// `--label KEY[=VALUE]` (Docker keeps a bare KEY with an empty value).
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.is_empty() {
        return Err(ContainerError::BadOption(format!(
            "invalid label {s:?}: use KEY=VALUE"
        )));
    }
    Ok((k.to_string(), v.to_string()))
}

/// `--add-host NAME:IP` (or `NAME=IP`, an address in brackets, or
/// `NAME:host-gateway`) as Docker's CLI checks it: kept as `NAME:IP`.
pub fn parse_extra_host(s: &str) -> Result<String> {
    let bad = || {
        ContainerError::BadOption(format!(
            "--add-host {s:?}: use NAME:IP (e.g. db:10.0.0.5) or NAME:host-gateway"
        ))
    };
    let (name, addr) = s
        .split_once('=')
        .or_else(|| s.split_once(':'))
        .ok_or_else(bad)?;
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    if addr == HOST_GATEWAY {
        return Ok(format!("{name}:{addr}"));
    }
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
    Ok(format!("{name}:{ip}"))
}

/// `--add-host NAME:host-gateway`: the host's address, as Docker's keyword.
pub const HOST_GATEWAY: &str = "host-gateway";

/// `--dns IP`.
pub fn parse_dns(s: &str) -> Result<std::net::IpAddr> {
    s.trim().parse().map_err(|_| {
        ContainerError::BadOption(format!(
            "--dns {s:?}: not an IP address; use e.g. --dns 1.1.1.1"
        ))
    })
}

/// `--dns-search DOMAIN` (`.` for no search domains), checked as Docker's CLI
/// does: labels of letters, digits and inner dashes, starting with a letter.
pub fn parse_dns_search(s: &str) -> Result<String> {
    let d = s.trim_matches(' ');
    if d == "." {
        return Ok(d.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = d.len() < 255
        && d.starts_with(|c: char| c.is_ascii_alphabetic())
        && d.split('.').all(label_ok);
    if ok {
        Ok(d.to_string())
    } else {
        Err(ContainerError::BadOption(format!(
            "--dns-search {s:?}: not a domain; use e.g. --dns-search example.com (or . for none)"
        )))
    }
}

/// `--dns-option OPTION` (resolv.conf's `options` words: ndots:2, rotate...).
pub fn parse_dns_option(s: &str) -> Result<String> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(ContainerError::BadOption(format!(
            "--dns-option {s:?}: use one resolv.conf option, e.g. ndots:2"
        )));
    }
    Ok(s.to_string())
}

/// `--mac-address`: six hex octets (`:` or `-` between), unicast; kept in
/// lower case with colons, as the kernel prints it.
pub fn parse_mac(s: &str) -> Result<String> {
    let bad = |why: &str| {
        ContainerError::BadOption(format!(
            "--mac-address {s:?}: {why}; use six hex octets like 02:42:ac:11:00:02"
        ))
    };
    let octets: Vec<&str> = s.split([':', '-']).collect();
    if octets.len() != 6 || octets.iter().any(|o| o.len() != 2) {
        return Err(bad("not a MAC address"));
    }
    let bytes = octets
        .iter()
        .map(|o| u8::from_str_radix(o, 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| bad("not a MAC address"))?;
    if bytes[0] & 1 == 1 {
        return Err(bad("a multicast address cannot be an interface's"));
    }
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// `--expose PORT[/tcp|udp]` or a range (`7000-7010/udp`): Docker's
/// ExposedPorts keys, one per port.
pub fn parse_expose(s: &str) -> Result<Vec<String>> {
    let bad = || {
        ContainerError::BadOption(format!(
            "--expose {s:?}: use PORT[/tcp|udp] or a range like 8000-8010"
        ))
    };
    let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    if !["tcp", "udp"].contains(&proto) {
        return Err(bad());
    }
    let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

/// A network a container joined with `network connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    pub network: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ip: Option<std::net::Ipv4Addr>,
}

/// A tmpfs mounted in the container (`--tmpfs /run:size=64m`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tmpfs {
    pub destination: PathBuf,
    /// Mount options, Docker's defaults (noexec, nosuid, nodev) first.
    pub options: Vec<String>,
}

/// `--tmpfs PATH[:OPTIONS]`, options as mount(8) takes them (size=64m,mode=1777).
pub fn parse_tmpfs(s: &str) -> Result<Tmpfs> {
    let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
    if !dst.starts_with('/') {
        return Err(ContainerError::BadOption(format!(
            "tmpfs {s:?}: the container path must be absolute"
        )));
    }
    let mut options: Vec<String> = ["noexec", "nosuid", "nodev"].map(String::from).to_vec();
    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok(Tmpfs {
        destination: PathBuf::from(dst),
        options,
    })
}

/// What one `--mount` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum MountRequest {
    Volume(Volume),
    Tmpfs(Tmpfs),
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly]
/// [,tmpfs-size=BYTES][,tmpfs-mode=OCTAL]`, Docker's keys and aliases.
pub fn parse_mount(s: &str) -> Result<MountRequest> {
    let bad = |why: String| ContainerError::BadOption(format!("mount {s:?}: {why}"));
    let (mut typ, mut source, mut target) = ("volume".to_string(), None, None);
    let mut read_only = false;
    let mut tmpfs_opts = Vec::new();
    for field in s.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = v.to_string(),
            "source" | "src" => source = Some(v.to_string()),
            "target" | "destination" | "dst" => target = Some(v.to_string()),
            "readonly" | "ro" => read_only = !matches!(v, "false" | "0"),
            "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
            _ => return Err(bad(format!("unknown key {k:?}"))),
        }
    }
    let target = target.ok_or_else(|| bad("target=/path is required".into()))?;
    if !target.starts_with('/') {
        return Err(bad("the target must be an absolute path".into()));
    }
    match typ.as_str() {
        "tmpfs" => {
            if source.is_some() {
                return Err(bad("a tmpfs takes no source".into()));
            }
            let mut t = parse_tmpfs(&target)?;
            if read_only {
                t.options.push("ro".into());
            }
            t.options.extend(tmpfs_opts);
            Ok(MountRequest::Tmpfs(t))
        }
        "bind" | "volume" => {
            let mode = if read_only { ":ro" } else { "" };
            let spec = match (typ.as_str(), source) {
                ("bind", Some(src)) if src.starts_with('/') => format!("{src}:{target}{mode}"),
                ("bind", _) => {
                    return Err(bad("a bind mount needs source=/absolute/host/path".into()))
                }
                (_, Some(src)) if !src.starts_with('/') => format!("{src}:{target}{mode}"),
                (_, Some(_)) => {
                    return Err(bad("a volume source is a volume name, not a path".into()))
                }
                (_, None) => format!("{target}{mode}"),
            };
            let v = if mode.is_empty() || !spec.starts_with('/') || typ == "bind" {
                parse_volume(&spec)?
            } else {
                // anonymous and read-only: parse_volume reads "/t:ro" as a bind
                let mut v = parse_volume(&target)?;
                v.read_only = true;
                v
            };
            Ok(MountRequest::Volume(v))
        }
        other => Err(bad(format!(
            "unknown type {other:?}: use bind, volume or tmpfs"
        ))),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// The host directory; empty until a named or anonymous volume is resolved.
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
    /// The volume's name (None for a bind mount of a host path, and for an
    /// anonymous volume not made yet).
    #[serde(default)]
    pub name: Option<String>,
}

impl Volume {
    /// A bind mount of a host path (not a volume in the store).
    pub fn is_bind(&self) -> bool {
        self.name.is_none() && !self.source.as_os_str().is_empty()
    }
}

/// `-v /host/dir:/in/container[:ro|rw]`, `-v NAME:/in/container[:ro|rw]` (a
/// named volume, created on first use) or `-v /in/container` (anonymous).
pub fn parse_volume(s: &str) -> Result<Volume> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = |why: &str| ContainerError::BadOption(format!("volume {s:?}: {why}"));
    let (src, dst, mode) = match parts.as_slice() {
        [dst] => ("", *dst, "rw"),
        [src, dst] => (*src, *dst, "rw"),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => {
            return Err(bad(
                "use NAME:/container/path[:ro] or /host/path:/container/path[:ro]",
            ))
        }
    };
    if !dst.starts_with('/') {
        return Err(bad("the container path must be absolute"));
    }
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        other => return Err(bad(&format!("unknown mode {other:?}: use ro or rw"))),
    };
    let destination = PathBuf::from(dst);
    if src.is_empty() {
        return Ok(Volume {
            source: PathBuf::new(),
            destination,
            read_only,
            name: None,
        });
    }
    if !src.starts_with('/') {
        crate::volume::validate_name(src).map_err(|_| {
            bad("a volume name uses letters, digits, '_', '.' and '-'; a host path starts with /")
        })?;
        return Ok(Volume {
            source: PathBuf::new(),
            destination,
            read_only,
            name: Some(src.to_string()),
        });
    }
    if !Path::new(src).exists() {
        return Err(bad("the host path does not exist"));
    }
    Ok(Volume {
        source: PathBuf::from(src),
        destination,
        read_only,
        name: None,
    })
}

/// `-e KEY=VALUE`, or `-e KEY` to pass the caller's value (dropped when unset).
pub fn parse_env_arg(arg: &str) -> Result<Option<String>> {
    if arg.is_empty() || arg.starts_with('=') {
        return Err(ContainerError::BadOption(format!(
            "environment variable {arg:?}: use KEY=VALUE"
        )));
    }
    if arg.contains('=') {
        return Ok(Some(arg.to_string()));
    }
    Ok(std::env::var(arg).ok().map(|v| format!("{arg}={v}")))
}

/// An env file as Docker reads it: KEY=VALUE lines, `#` comments, blank lines,
/// bare KEY taken from the caller's environment. No quote processing.
pub fn parse_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| ContainerError::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_env_arg(line) {
            Ok(Some(kv)) => out.push(kv),
            Ok(None) => {}
            Err(_) => {
                return Err(ContainerError::BadOption(format!(
                    "env file {} line {}: {line:?} is not KEY=VALUE",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    Ok(out)
}

/// Merges KEY=VALUE lists: later entries replace earlier ones with the same key.
pub fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in base.iter().chain(overrides) {
        let key = kv.split('=').next().unwrap_or("");
        if let Some(slot) = out.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            *slot = kv.clone();
        } else {
            out.push(kv.clone());
        }
    }
    out
}

/// `--restart no|on-failure[:N]|always|unless-stopped`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart after a non-zero exit, at most `max` times (0: no limit).
    OnFailure {
        max: u32,
    },
    Always,
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = ContainerError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            ContainerError::BadOption(format!(
                "restart policy {s:?}: use no, on-failure[:N], always or unless-stopped"
            ))
        };
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match name {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure {
                max: match count {
                    Some(c) => c.parse().map_err(|_| bad())?,
                    None => 0,
                },
            },
            _ => return Err(bad()),
        };
        if count.is_some() && !matches!(policy, RestartPolicy::OnFailure { .. }) {
            return Err(ContainerError::BadOption(format!(
                "restart policy {s:?}: only on-failure takes a maximum count"
            )));
        }
        Ok(policy)
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::OnFailure { max: 0 } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max } => write!(f, "on-failure:{max}"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl RestartPolicy {
    /// Whether a container that exited with `code`, after `restarts` restarts
    /// so far, starts again.
    pub fn wants_restart(&self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (*max == 0 || restarts < *max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }

    /// Docker's back-off: 100 ms, doubling with each restart, at most a minute.
    pub fn delay(restarts: u32) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1 << restarts.min(10)))
            .min(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_decide() {
        let p: RestartPolicy = "on-failure:3".parse().unwrap();
        assert_eq!(p, RestartPolicy::OnFailure { max: 3 });
        assert!(p.wants_restart(1, 2));
        assert!(!p.wants_restart(1, 3));
        assert!(!p.wants_restart(0, 0));
        assert!("always"
            .parse::<RestartPolicy>()
            .unwrap()
            .wants_restart(0, 99));
        assert!(!"no".parse::<RestartPolicy>().unwrap().wants_restart(1, 0));
        assert!("always:2".parse::<RestartPolicy>().is_err());
        assert!("sometimes".parse::<RestartPolicy>().is_err());
        assert_eq!(
            RestartPolicy::OnFailure { max: 0 }.to_string(),
            "on-failure"
        );
        assert_eq!(RestartPolicy::delay(0), Duration::from_millis(100));
        assert_eq!(RestartPolicy::delay(20), Duration::from_secs(60));
    }

    #[test]
    fn env_file_parsing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("env");
        std::fs::write(&f, "# comment\nA=1\n\n  B=two words\nC=x=y\n").unwrap();
        assert_eq!(
            parse_env_file(&f).unwrap(),
            vec!["A=1", "B=two words", "C=x=y"]
        );
        std::fs::write(&f, "=bad\n").unwrap();
        let err = parse_env_file(&f).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn env_merge_later_wins() {
        let merged = merge_env(
            &["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
        );
        assert_eq!(merged, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn mounts_and_tmpfs() {
        let t = parse_tmpfs("/run:size=64m,mode=1777").unwrap();
        assert_eq!(
            t.options,
            vec!["noexec", "nosuid", "nodev", "size=64m", "mode=1777"]
        );
        assert!(parse_tmpfs("run").is_err());
        match parse_mount("type=volume,source=data,target=/data,readonly").unwrap() {
            MountRequest::Volume(v) => {
                assert_eq!(v.name.as_deref(), Some("data"));
                assert!(v.read_only);
            }
            m => panic!("{m:?}"),
        }
        match parse_mount("type=bind,src=/tmp,dst=/x").unwrap() {
            MountRequest::Volume(v) => assert!(v.is_bind() && !v.read_only),
            m => panic!("{m:?}"),
        }
        match parse_mount("type=volume,target=/anon,ro").unwrap() {
            MountRequest::Volume(v) => assert!(v.name.is_none() && !v.is_bind() && v.read_only),
            m => panic!("{m:?}"),
        }
        match parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap() {
            MountRequest::Tmpfs(t) => assert!(t.options.contains(&"size=1m".to_string())),
            m => panic!("{m:?}"),
        }
        assert!(parse_mount("type=bind,source=rel,target=/x").is_err());
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("type=volume,source=x").is_err());
        assert!(parse_mount("type=volume,source=x,target=/x,color=red").is_err());
    }

    #[test]
    fn network_flags_parse_as_dockers() {
        assert_eq!(parse_extra_host("db:10.0.0.5").unwrap(), "db:10.0.0.5");
        assert_eq!(parse_extra_host("db=10.0.0.5").unwrap(), "db:10.0.0.5");
        assert_eq!(parse_extra_host("v6:[::1]").unwrap(), "v6:::1");
        assert_eq!(
            parse_extra_host("v6:2001:db8::1").unwrap(),
            "v6:2001:db8::1"
        );
        assert_eq!(
            parse_extra_host("gw:host-gateway").unwrap(),
            "gw:host-gateway"
        );
        for bad in ["foo", ":1.2.3.4", "foo:bar", "foo:", "a b:1.2.3.4"] {
            let e = parse_extra_host(bad).unwrap_err().to_string();
            assert!(
                e.contains("--add-host") && e.contains("NAME:IP"),
                "{bad}: {e}"
            );
        }
        assert_eq!(parse_dns("1.1.1.1").unwrap().to_string(), "1.1.1.1");
        assert!(parse_dns("::1").is_ok());
        let e = parse_dns("notanip").unwrap_err().to_string();
        assert!(
            e.contains("--dns") && e.contains("not an IP address"),
            "{e}"
        );
        assert_eq!(parse_dns_search("example.com").unwrap(), "example.com");
        assert_eq!(parse_dns_search(".").unwrap(), ".");
        for bad in ["-x.com", "1abc.com", "a..b", "a_b.com", "", "x-.com"] {
            assert!(parse_dns_search(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_dns_option("ndots:2").unwrap(), "ndots:2");
        assert!(parse_dns_option("a b").is_err());
        assert_eq!(parse_mac("02:42:AC:11:00:02").unwrap(), "02:42:ac:11:00:02");
        assert_eq!(parse_mac("02-42-ac-11-00-03").unwrap(), "02:42:ac:11:00:03");
        for bad in [
            "02:42:ac:11:00",
            "zz:42:ac:11:00:02",
            "01:00:5e:00:00:01",
            "0242ac110002",
        ] {
            let e = parse_mac(bad).unwrap_err().to_string();
            assert!(e.contains("--mac-address"), "{bad}: {e}");
        }
        assert_eq!(parse_expose("80").unwrap(), ["80/tcp"]);
        assert_eq!(
            parse_expose("7000-7002/udp").unwrap(),
            ["7000/udp", "7001/udp", "7002/udp"]
        );
        for bad in ["http", "80/sctp", "0", "9-8", "80/"] {
            let e = parse_expose(bad).unwrap_err().to_string();
            assert!(e.contains("--expose"), "{bad}: {e}");
        }
    }

    #[test]
    fn volumes() {
        let v = parse_volume("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.destination, PathBuf::from("/data"));
        let named = parse_volume("named:/data").unwrap();
        assert_eq!(named.name.as_deref(), Some("named"));
        assert!(!named.is_bind());
        assert!(parse_volume("/data").unwrap().name.is_none());
        assert!(parse_volume("bad name:/data").is_err());
        assert!(parse_volume("/tmp:rel").is_err());
        assert!(parse_volume("/tmp:/x:rx").is_err());
        assert!(parse_volume("/does/not/exist:/x").is_err());
    }
}
