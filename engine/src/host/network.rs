//! The container networking probes: kernel bridge and veth, the netfilter backend
//! the NAT and port rules go through, IPv4 forwarding, and the CNI reference plugins.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::probes::MODULES_DIR;
use super::Check;
use crate::network::{cni, config, socket_lb, PLUGINS};

/// The Debian package with the reference plugins.
const PLUGINS_PACKAGE: &str = "containernetworking-plugins";

/// Every network check, in the order doctor prints them.
pub fn checks() -> Vec<Check> {
    let release = super::kernel_release();
    vec![
        check_kernel_feature("bridge", "bridge", "CONFIG_BRIDGE", &release),
        check_kernel_feature("veth", "veth", "CONFIG_VETH", &release),
        check_netfilter(),
        check_ip_forward(),
        check_cni_plugins(),
        check_socket_lb(),
    ]
}

/// Whether the host's own connections to published ports are translated at
/// connect() (see `network::socket_lb`) or go through portmap's DNAT.
fn check_socket_lb() -> Check {
    const NAME: &str = "socket lb";
    match socket_lb::status() {
        socket_lb::Status::On {
            cgroup,
            programs,
            entries,
        } => Check::ok(
            NAME,
            format!(
                "on: connect4 program on {} ({programs} attached), {} published ports translated at connect()",
                cgroup.display(),
                entries.len()
            ),
        ),
        socket_lb::Status::Ready { cgroup } => Check::ok(
            NAME,
            format!(
                "on: attaches to {} with the first published port (host connections skip DNAT)",
                cgroup.display()
            ),
        ),
        socket_lb::Status::Off(why) => Check::warn(
            NAME,
            format!("off: {why}; -p from the host goes through DNAT (slower)"),
            "needs root (CAP_SYS_ADMIN), a mounted cgroup2 hierarchy and Linux 5.14 or later",
        ),
    }
}

/// A kernel feature is there when its module is loaded, built in, installed as a
/// module, or set in /proc/config.gz.
fn check_kernel_feature(name: &'static str, module: &str, config: &str, release: &str) -> Check {
    if Path::new("/sys/module").join(module).exists() {
        return Check::ok(name, format!("module {module} loaded"));
    }
    let modules = Path::new(MODULES_DIR).join(release);
    let builtin = fs::read_to_string(modules.join("modules.builtin")).unwrap_or_default();
    let dep = fs::read_to_string(modules.join("modules.dep")).unwrap_or_default();
    let file = format!("/{module}.ko");
    if builtin.lines().any(|l| l.contains(&file)) {
        return Check::ok(name, format!("{module} built into the kernel"));
    }
    if dep
        .lines()
        .any(|l| l.split(':').next().is_some_and(|m| m.contains(&file)))
    {
        return Check::ok(name, format!("module {module} (loads on first use)"));
    }
    if let Ok(out) = Command::new("zcat").arg("/proc/config.gz").output() {
        let text = String::from_utf8_lossy(&out.stdout);
        for value in ["y", "m"] {
            if text.lines().any(|l| l == format!("{config}={value}")) {
                return Check::ok(name, format!("{config}={value} in /proc/config.gz"));
            }
        }
    }
    Check::fail(
        name,
        format!("no {module} module and {config} not set"),
        format!("networks need {config}: use a kernel with it or modprobe {module}"),
    )
}

/// iptables' own version line names its backend ("nf_tables" or "legacy").
fn check_netfilter() -> Check {
    const NAME: &str = "netfilter";
    let version = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let iptables = version("iptables");
    let nft = version("nft");
    let nft_part = nft.unwrap_or_else(|| "no nft".to_string());
    match iptables {
        Some(v) => {
            let backend = if v.contains("nf_tables") {
                "iptables-nft"
            } else if v.contains("legacy") {
                "iptables-legacy"
            } else {
                "iptables"
            };
            Check::ok(NAME, format!("{backend} ({v}); {nft_part}"))
        }
        None => Check::fail(
            NAME,
            format!("iptables not found; {nft_part}"),
            "apt-get install iptables (the CNI bridge and portmap plugins write NAT rules with it)",
        ),
    }
}

fn check_ip_forward() -> Check {
    const NAME: &str = "ip_forward";
    match fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim().to_string()) {
        Ok(v) if v == "1" => Check::ok(NAME, "net.ipv4.ip_forward = 1"),
        Ok(v) => Check::warn(
            NAME,
            format!("net.ipv4.ip_forward = {v}"),
            "containers reach only the host until it is 1: sysctl -w net.ipv4.ip_forward=1 (the bridge plugin with ipMasq sets it)",
        ),
        Err(e) => Check::warn(NAME, format!("cannot read it: {e}"), "check /proc/sys"),
    }
}

/// The plugin directory, and the CNI versions its `bridge` plugin speaks (asked with
/// CNI_COMMAND=VERSION as a runtime would). Fails when a plugin twinbox's own
/// networks run is missing; a missing `network create -d` driver only warns.
fn check_cni_plugins() -> Check {
    const NAME: &str = "cni plugins";
    let Some(dir) = cni::plugin_dir() else {
        return Check::fail(
            NAME,
            format!("no bridge plugin in {}", cni::plugin_dirs().join(", ")),
            format!("apt-get install {PLUGINS_PACKAGE}"),
        );
    };
    let (missing, missing_drivers) = missing_plugins(|p| dir.join(p).is_file());
    let versions = Command::new(dir.join("bridge"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| {
            v["supportedVersions"].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        });
    let detail = format!(
        "{} ({}; CNI versions: {})",
        dir.display(),
        PLUGINS.join(" "),
        versions.as_deref().unwrap_or("unknown")
    );
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("{detail}; missing {}", missing.join(" ")),
            format!(
                "apt-get install {PLUGINS_PACKAGE} (networks run {})",
                missing.join(" ")
            ),
        );
    }
    if versions.is_none() {
        return Check::warn(
            NAME,
            detail,
            format!(
                "the bridge plugin did not answer CNI_COMMAND=VERSION: reinstall {PLUGINS_PACKAGE}"
            ),
        );
    }
    if !missing_drivers.is_empty() {
        return Check::warn(
            NAME,
            format!("{detail}; no {} driver", missing_drivers.join(" ")),
            format!(
                "network create -d {} needs its plugin: apt-get install {PLUGINS_PACKAGE}",
                missing_drivers[0]
            ),
        );
    }
    Check::ok(NAME, detail)
}

/// The plugins twinbox's networks run, then the `network create` drivers, that
/// `present` does not find.
fn missing_plugins(present: impl Fn(&str) -> bool) -> (Vec<&'static str>, Vec<&'static str>) {
    let needed = PLUGINS.into_iter().filter(|p| !present(p)).collect();
    let drivers = config::DRIVERS
        .into_iter()
        .filter(|d| !PLUGINS.contains(d) && !present(d))
        .collect();
    (needed, drivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_plugins_twinbox_runs_are_required() {
        let (needed, drivers) = missing_plugins(|_| false);
        assert_eq!(needed, ["bridge", "host-local", "portmap"]);
        assert_eq!(drivers, ["macvlan", "ipvlan"]);
        // firewall, tuning and loopback are nobody's business here any more
        let have = ["bridge", "host-local", "portmap", "macvlan", "ipvlan"];
        assert_eq!(missing_plugins(|p| have.contains(&p)), (vec![], vec![]));
    }
}
