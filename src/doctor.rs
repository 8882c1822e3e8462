//! `twinbox doctor`: what this host offers containers and microVMs, one check per
//! line, with a hint for anything missing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;
use twinbox_engine::cgroups::{self, CgroupMode};
use twinbox_engine::image::bootstrap;
use twinbox_microvm::host::{self, KvmKind};

/// Oldest kernel release the engine is written for (overlayfs, cgroup features).
const MIN_KERNEL: (u32, u32) = (5, 4);
/// Namespaces the container runtime creates.
const RUNTIME_NAMESPACES: [&str; 6] = ["mnt", "pid", "uts", "ipc", "net", "cgroup"];
/// cgroup controllers behind `--memory`, `--cpus` and `--pids-limit`.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the report: what was checked, what was found, what to do.
#[derive(Debug)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    hint: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    fn line(&self) -> String {
        let mut s = format!(
            "{:<5}{:<18} {}",
            self.status.as_str(),
            self.name,
            self.detail
        );
        if let Some(hint) = &self.hint {
            s.push_str(" -> ");
            s.push_str(hint);
        }
        s
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "check": self.name,
            "status": self.status.as_str(),
            "detail": self.detail,
            "hint": self.hint,
        })
    }
}

/// Run every check, print the report, and return the exit code: 0 when nothing
/// failed, 1 otherwise (warnings do not fail).
pub fn run(json: bool) -> Result<i32> {
    let checks = all_checks();
    if json {
        let list: Vec<_> = checks.iter().map(Check::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for check in &checks {
            println!("{}", check.line());
        }
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed { 1 } else { 0 })
}

fn all_checks() -> Vec<Check> {
    let release = kernel_release();
    let kvm = host::kvm_kind();
    let mut checks = vec![
        check_root(),
        check_kernel(&release),
        check_overlayfs(&release),
    ];
    let mode = cgroups::detect_mode(Path::new(cgroups::DEFAULT_FS_ROOT));
    checks.push(match &mode {
        Ok(mode) => Check::ok("cgroups", mode.to_string()),
        Err(e) => Check::fail(
            "cgroups",
            e.to_string(),
            "mount cgroup2 or the cgroup v1 hierarchies at /sys/fs/cgroup",
        ),
    });
    if let Ok(mode) = mode {
        checks.push(check_controllers(mode));
    }
    checks.extend([
        check_namespaces(),
        check_user_namespaces(),
        check_kvm(&kvm),
        check_guest_kernels(&kvm),
        check_qemu(),
        check_busybox(),
        check_runc(),
    ]);
    checks.extend(network_checks(&release));
    checks
}

/// Container networking: kernel bridge and veth, the netfilter backend the NAT and
/// port rules go through, IPv4 forwarding, and the CNI reference plugins.
fn network_checks(release: &str) -> Vec<Check> {
    vec![
        check_kernel_feature("bridge", "bridge", "CONFIG_BRIDGE", release),
        check_kernel_feature("veth", "veth", "CONFIG_VETH", release),
        check_netfilter(),
        check_ip_forward(),
        check_cni_plugins(),
    ]
}

/// A kernel feature is there when its module is loaded, built in, installed as a
/// module, or set in /proc/config.gz.
fn check_kernel_feature(name: &'static str, module: &str, config: &str, release: &str) -> Check {
    if Path::new("/sys/module").join(module).exists() {
        return Check::ok(name, format!("module {module} loaded"));
    }
    let modules = Path::new(host::MODULES_DIR).join(release);
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
    let out = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output();
    if let Ok(out) = out {
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
        std::process::Command::new(cmd)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let iptables = version("iptables");
    let nft = version("nft");
    let nft_part = nft.clone().unwrap_or_else(|| "no nft".to_string());
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
/// CNI_COMMAND=VERSION as a runtime would).
fn check_cni_plugins() -> Check {
    const NAME: &str = "cni plugins";
    const HINT: &str = "apt-get install containernetworking-plugins";
    let Some(dir) = twinbox_engine::network::cni::plugin_dir() else {
        return Check::fail(
            NAME,
            format!(
                "no bridge plugin in {}",
                twinbox_engine::network::cni::PLUGIN_DIRS.join(", ")
            ),
            HINT,
        );
    };
    let missing: Vec<&str> = [
        "bridge",
        "host-local",
        "portmap",
        "firewall",
        "tuning",
        "loopback",
    ]
    .into_iter()
    .filter(|p| !dir.join(p).exists())
    .collect();
    let versions = std::process::Command::new(dir.join("bridge"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null())
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
        "{} (CNI versions: {})",
        dir.display(),
        versions.as_deref().unwrap_or("unknown")
    );
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("{detail}; missing {}", missing.join(" ")),
            HINT,
        );
    }
    match versions {
        Some(_) => Check::ok(NAME, detail),
        None => Check::warn(NAME, detail, "the bridge plugin did not answer CNI_COMMAND=VERSION: reinstall containernetworking-plugins"),
    }
}

fn check_root() -> Check {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        Check::ok("root", "running as root")
    } else {
        Check::fail(
            "root",
            format!("running as uid {euid}"),
            "containers and VMs need root: run twinbox with sudo",
        )
    }
}

/// `uname -r`.
fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it with NUL-terminated strings.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// "6.1.0-18-amd64" → (6, 1).
fn parse_major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_kernel(release: &str) -> Check {
    match parse_major_minor(release) {
        Some(v) if v >= MIN_KERNEL => Check::ok("kernel", release),
        Some(_) => Check::warn(
            "kernel",
            format!("{release} is older than {}.{}", MIN_KERNEL.0, MIN_KERNEL.1),
            "some overlayfs and cgroup features may be missing: use kernel 5.4 or newer",
        ),
        None => Check::warn(
            "kernel",
            format!("cannot read the kernel release ({release:?})"),
            "check `uname -r`",
        ),
    }
}

fn check_overlayfs(release: &str) -> Check {
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        return Check::ok("overlayfs", "overlay in /proc/filesystems");
    }
    if let Some(module) = overlay_module(release) {
        return Check::ok(
            "overlayfs",
            format!("module {} (loads on first mount)", module.display()),
        );
    }
    Check::fail(
        "overlayfs",
        "not in /proc/filesystems and no overlay.ko module",
        "container root filesystems need overlayfs: use a kernel with CONFIG_OVERLAY_FS",
    )
}

/// `/lib/modules/<release>/kernel/fs/overlayfs/overlay.ko*` (any compression).
fn overlay_module(release: &str) -> Option<PathBuf> {
    let dir = Path::new(host::MODULES_DIR)
        .join(release)
        .join("kernel/fs/overlayfs");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("overlay.ko"))
        })
}

fn check_controllers(mode: CgroupMode) -> Check {
    const NAME: &str = "cgroup controllers";
    let available = match mode {
        CgroupMode::V1 { .. } => v1_controllers(),
        CgroupMode::V2 => v2_controllers(),
    };
    let (present, missing): (Vec<&str>, Vec<&str>) = CONTROLLERS
        .iter()
        .partition(|c| available.iter().any(|a| a == *c));
    let detail = if missing.is_empty() {
        format!("{} present", present.join(" "))
    } else {
        format!(
            "present: {}; missing: {}",
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(" ")
            },
            missing.join(" ")
        )
    };
    if missing.is_empty() {
        return Check::ok(NAME, detail);
    }
    let flags: Vec<&str> = missing
        .iter()
        .map(|c| match *c {
            "memory" => "--memory",
            "cpu" => "--cpus",
            _ => "--pids-limit",
        })
        .collect();
    Check::warn(
        NAME,
        detail,
        format!(
            "{} will not work: enable the controllers in the kernel or mount them",
            flags.join("/")
        ),
    )
}

/// Controllers of the v1 hierarchies mounted on this host (from mountinfo).
fn v1_controllers() -> Vec<String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|line| {
            // "... - <fstype> <source> <super options>"
            let (_, after) = line.split_once(" - ")?;
            let mut fields = after.split_whitespace();
            (fields.next()? == "cgroup").then_some(())?;
            let options = fields.nth(1)?;
            Some(options.split(',').map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// Controllers the v2 root offers (`cgroup.controllers`).
fn v2_controllers() -> Vec<String> {
    let path = Path::new(cgroups::DEFAULT_FS_ROOT).join("cgroup.controllers");
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn check_namespaces() -> Check {
    const NAME: &str = "namespaces";
    let exists = |ns: &&str| Path::new("/proc/self/ns").join(ns).exists();
    let missing: Vec<&str> = RUNTIME_NAMESPACES
        .iter()
        .filter(|ns| !exists(ns))
        .copied()
        .collect();
    let user = exists(&"user");
    if !missing.is_empty() {
        return Check::fail(
            NAME,
            format!("missing: {}", missing.join(" ")),
            "the container runtime needs mnt, pid, uts, ipc, net and cgroup namespaces: use a kernel built with them",
        );
    }
    let found = RUNTIME_NAMESPACES.join(" ");
    if user {
        Check::ok(NAME, format!("{found} user"))
    } else {
        Check::warn(
            NAME,
            format!("{found} (no user)"),
            "user namespaces are missing: twinbox does not need them yet, rootless peers do",
        )
    }
}

fn check_user_namespaces() -> Check {
    const NAME: &str = "user namespaces";
    match fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        Ok(s) => {
            let max = s.trim();
            let note = if max == "0" { " (disabled)" } else { "" };
            Check::ok(
                NAME,
                format!("max_user_namespaces = {max}{note}, not used by twinbox yet"),
            )
        }
        Err(e) => Check::ok(NAME, format!("cannot read max_user_namespaces: {e}")),
    }
}

fn check_kvm(kind: &KvmKind) -> Check {
    const NAME: &str = "kvm";
    match kind {
        KvmKind::VtX | KvmKind::AmdV => Check::ok(NAME, format!("/dev/kvm ({kind})")),
        KvmKind::Unknown => Check::ok(
            NAME,
            "/dev/kvm (kind unknown: no kvm_intel, kvm_amd or kvm_pvm module)",
        ),
        KvmKind::Pvm => Check::warn(
            NAME,
            "/dev/kvm is PVM (kvm_pvm, no VT-x/AMD-V)",
            host::PVM_HINT,
        ),
        KvmKind::Absent { reason } => Check::warn(
            NAME,
            reason.clone(),
            "VM lessons fall back to QEMU (software emulation)",
        ),
    }
}

fn check_guest_kernels(kind: &KvmKind) -> Check {
    const NAME: &str = "guest kernel";
    let kernels = host::find_kernels();
    if kernels.is_empty() {
        let mut hint = "install linux-image-amd64 or pass --kernel".to_string();
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            hint.push_str(" (as non-root, /boot/vmlinuz-* may be unreadable)");
        }
        return Check::warn(NAME, format!("none in {}", host::BOOT_DIR), hint);
    }
    let found: Vec<String> = kernels
        .iter()
        .map(|k| {
            let modules = if k.modules_dir.is_some() {
                ", modules"
            } else {
                ", no modules"
            };
            format!("{} ({}{modules})", k.path.display(), k.format)
        })
        .collect();
    let detail = found.join(", ");
    if let Err(why) = host::can_boot_stock_kernel(kind) {
        return Check::warn(
            NAME,
            format!("{detail}; stock kernels will not boot here"),
            why,
        );
    }
    if kernels.iter().all(|k| k.modules_dir.is_none()) {
        return Check::warn(
            NAME,
            detail,
            format!(
                "no {}/<version> for these kernels: stock kernels load their virtio drivers as modules; install the matching linux-image package",
                host::MODULES_DIR
            ),
        );
    }
    Check::ok(NAME, detail)
}

fn check_qemu() -> Check {
    match find_in_path("qemu-system-x86_64") {
        Some(p) => Check::ok("qemu", p.display().to_string()),
        None => Check::warn(
            "qemu",
            "qemu-system-x86_64 not on PATH",
            "apt-get install qemu-system-x86 (the VM fallback and the peer VMM)",
        ),
    }
}

fn check_busybox() -> Check {
    const NAME: &str = "busybox";
    match bootstrap::find_busybox() {
        Some(p) if bootstrap::is_static_elf(&p) => {
            Check::ok(NAME, format!("{} (static)", p.display()))
        }
        Some(p) => Check::fail(
            NAME,
            format!("{} is not statically linked", p.display()),
            "apt-get install busybox-static (the base image and the VM initramfs need it)",
        ),
        None => Check::fail(
            NAME,
            "no busybox found",
            "apt-get install busybox-static (the base image and the VM initramfs need it)",
        ),
    }
}

fn check_runc() -> Check {
    match find_in_path("runc") {
        Some(p) => Check::ok("runc", format!("{} (peer for benchmarks)", p.display())),
        None => Check::warn(
            "runc",
            "runc not on PATH",
            "apt-get install runc (only the benchmarks compare against it)",
        ),
    }
}

/// The first executable file called `name` in `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_major_minor("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_major_minor("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_major_minor("4.19.0"), Some((4, 19)));
        assert_eq!(parse_major_minor(""), None);
        assert!(parse_major_minor("4.19.0").unwrap() < MIN_KERNEL);
        assert!(parse_major_minor("5.10.0").unwrap() >= MIN_KERNEL);
    }

    #[test]
    fn lines_carry_status_name_detail_and_hint() {
        assert_eq!(
            Check::ok("root", "running as root")
                .line()
                .split_whitespace()
                .next(),
            Some("ok")
        );
        let w = Check::warn("qemu", "not on PATH", "apt-get install qemu-system-x86").line();
        assert!(w.starts_with("warn qemu "), "{w}");
        assert!(
            w.ends_with("not on PATH -> apt-get install qemu-system-x86"),
            "{w}"
        );
        let j = Check::fail("busybox", "missing", "install").to_json();
        assert_eq!(j["check"], "busybox");
        assert_eq!(j["status"], "fail");
        assert_eq!(j["hint"], "install");
        assert!(Check::ok("x", "y").to_json()["hint"].is_null());
    }
}
