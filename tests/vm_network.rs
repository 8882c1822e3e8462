//! `vm run --network` and `-p` on this host: a VM joins the containers' bridge
//! through the same CNI plugins (address from the same IPAM, `-p` through
//! portmap), its VMM's tap sits on a bridge in the VM's namespace, and
//! nothing is left after its end, even when its VMM is killed with -9. The
//! guest itself need not boot here (on a PVM host it crawls); the guest's
//! side (address, httpd, ping from a container) is in the nested tests.

mod common;

use std::path::Path;

use common::net::free_port;
use common::{lab, Lab};

/// Skips (None) where VMs or the bridge network cannot run.
fn vm_lab() -> Option<(Lab, String)> {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("skipping: no /dev/kvm");
        return None;
    }
    if twinbox_engine::network::cni::plugin_dir().is_none() {
        eprintln!("skipping: no CNI plugins");
        return None;
    }
    let lab = lab()?;
    Some((lab, common::newest_kernel()?))
}

fn nat_rules() -> String {
    common::host("iptables", &["-t", "nat", "-S"])
}

fn filter_rules() -> String {
    common::host("iptables", &["-S"])
}

fn lease_exists(address: &str) -> bool {
    Path::new("/run/twinbox/ipam/bridge").join(address).exists()
}

#[test]
fn a_vm_joins_the_bridge_and_kill_9_of_its_vmm_leaves_nothing() {
    let Some((lab, kernel)) = vm_lab() else {
        return;
    };
    let port = free_port().to_string();
    let publish = format!("{port}:80");
    let r = lab.tb(&[
        "vm",
        "run",
        "-d",
        "--name",
        "vmnet-web",
        "-p",
        &publish,
        "--kernel",
        &kernel,
        "--boot-timeout",
        "300",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    let inspect = lab.tb(&["vm", "inspect", "vmnet-web"]);
    let v: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
    let address = v[0]["network"]["address"].as_str().unwrap().to_string();
    let pid = v[0]["state"]["pid"].as_i64().unwrap();
    assert_eq!(v[0]["network"]["network"], "bridge");
    let ps = lab.tb(&["vm", "ps"]);
    assert!(
        ps.stdout.contains(&address) && ps.stdout.contains(&format!("0.0.0.0:{port}->80/tcp")),
        "{}",
        ps.stdout
    );
    // Same IPAM and portmap as containers.
    assert!(lease_exists(&address), "no host-local lease for {address}");
    let nat = nat_rules();
    assert!(
        nat.contains(&format!("{address}:80")) && nat.contains(&port),
        "{nat}"
    );
    // The VMM's tap is a port of the bridge in the VM's namespace, with eth0.
    let netns = lab.root().join("vms").join(&id).join("netns");
    let ns = |args: &[&str]| {
        let mut all = vec![format!("--net={}", netns.display())];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        common::host("nsenter", &all)
    };
    let mut links = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        links = ns(&["ip", "-o", "link"]);
        if links.contains("tap0") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for port in ["tap0", "eth0"] {
        assert!(
            links
                .lines()
                .any(|l| l.contains(&format!(" {port}")) && l.contains("master br0")),
            "{links}"
        );
    }
    // The guest gets the MAC the bridge plugin gave eth0; eth0 has another now.
    let guest_mac = v[0]["network"]["mac"].as_array().unwrap().len();
    assert_eq!(guest_mac, 6);

    // The VMM this test started, by its pid.
    common::host("kill", &["-9", &pid.to_string()]);
    // until it is gone (a big process takes a while to die under load; a fixed
    // pause made the next command see it alive), 20 s at most
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while proc_dir.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The next command recovers: DEL, the namespace goes.
    let ps = lab.tb(&["vm", "ps", "-a"]);
    assert!(ps.stdout.contains("Failed"), "{}", ps.stdout);
    assert!(!netns.exists(), "the VM's namespace is gone");
    assert!(!lease_exists(&address), "the address is released");
    let nat = nat_rules();
    assert!(!nat.contains(&port) && !nat.contains(&address), "{nat}");
    assert!(
        !filter_rules().contains(&address),
        "firewall rules are gone"
    );
    assert_eq!(lab.tb(&["vm", "rm", "vmnet-web"]).code, 0);
}

/// A VM that ends by itself releases its network at once.
#[test]
fn a_vm_that_ends_releases_its_address_and_ports() {
    let Some((lab, kernel)) = vm_lab() else {
        return;
    };
    let port = free_port();
    let publish = format!("{port}:80");
    let r = lab.tb(&[
        "vm",
        "run",
        "--rm",
        "--network",
        "bridge",
        "-p",
        &publish,
        "--kernel",
        &kernel,
        "--boot-timeout",
        "2",
        "busybox",
        "true",
    ]);
    // PVM: the boot timeout ends it; elsewhere the guest runs `true`.
    assert!(r.code == 0 || r.code == 125, "{}", r.stderr);
    assert!(!nat_rules().contains(&format!("dport {port}")));
    let vms = lab.root().join("vms");
    let left = std::fs::read_dir(&vms).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "--rm leaves no VM directory");
}

#[test]
fn vm_networks_that_cannot_be_are_refused_cleanly() {
    let Some((lab, kernel)) = vm_lab() else {
        return;
    };
    for (args, expected) in [
        (vec!["--network", "host"], "own kernel and network stack"),
        (
            vec!["--network", "container:x"],
            "own kernel and network stack",
        ),
        (
            vec!["--network", "none", "-p", "18473:80"],
            "-p needs a network",
        ),
        (vec!["--network", "vmnet-nosuch"], "not found"),
        (vec!["-p", "80:80:80:80"], "port"),
    ] {
        let mut all = vec!["vm", "run", "--kernel", &kernel];
        all.extend(args.iter());
        all.extend(["busybox", "true"]);
        let r = lab.tb(&all);
        assert_eq!(r.code, 125, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(expected), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    }
    let ps = lab.tb(&["vm", "ps", "-a", "-q"]);
    assert_eq!(ps.stdout.trim(), "", "refused runs leave no VM");
}
