//! The netfilter rules twinbox keeps per bridge network, once per network
//! rather than once per container (Docker's way; the bridge plugin's `ipMasq`
//! and the firewall plugin add and delete rules for every container, a dozen
//! iptables runs each, which made a hundred starts at once crawl).
//!
//! In the filter table, jumped to first from FORWARD, in this order:
//! - `TWINBOX-ISOLATION-1`: per bridge, `-i BR ! -o BR -j TWINBOX-ISOLATION-2`
//!   (traffic leaving its own bridge); for an `--internal` network, traffic
//!   into or out of its bridge from anywhere else is dropped outright.
//! - `TWINBOX-ISOLATION-2`: drops what goes out to any twinbox bridge, so what
//!   leaves a bridge may go to the host's uplink (NAT) but not to another bridge
//!   (without it the host routes between its bridges).
//! - `TWINBOX-FORWARD`: accepts what containers send and the replies to it, as
//!   the firewall plugin does per address (matters where FORWARD drops by policy).
//!
//! In the nat table, `TWINBOX-POSTROUTING` (from POSTROUTING) masquerades what
//! leaves a non-internal network's subnet for another interface.
//!
//! Networks written by older versions still carry the per-container plugins;
//! they get only the isolation rules. Rules are (re)ensured after every CNI ADD
//! (rules do not survive a reboot, config lists do) with one `iptables-save`
//! when all is in place, and removed when the network is removed.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::process::Command;

use super::subnet::Subnet;
use super::{NetworkError, Result};

pub const CHAIN_1: &str = "TWINBOX-ISOLATION-1";
pub const CHAIN_2: &str = "TWINBOX-ISOLATION-2";
pub const FORWARD_CHAIN: &str = "TWINBOX-FORWARD";
pub const NAT_CHAIN: &str = "TWINBOX-POSTROUTING";

/// Bridge devices twinbox makes: the default `twinbox0` and `tb-<id>` for user
/// networks (iptables' `+` wildcard matches the prefix).
const BRIDGE_PATTERNS: &[&str] = &["twinbox+", "tb-+"];

/// Serialises our edits across twinbox processes (iptables' own lock only
/// covers one command, and keeping our jumps first takes several).
const LOCK_PATH: &str = "/run/twinbox/isolation.lock";

/// One bridge network, as its rules need it.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub device: String,
    pub subnet: Option<Subnet>,
    pub internal: bool,
    /// Forwarding and NAT are ours too (networks twinbox wrote without the
    /// firewall plugin and `ipMasq`).
    pub network_wide: bool,
}

/// Held while twinbox changes host-wide network state (these rules, and
/// `socket_lb`'s program and map).
pub(crate) struct Lock(#[allow(dead_code)] File);

pub(crate) fn lock() -> Result<Lock> {
    let _ = std::fs::create_dir_all("/run/twinbox");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(|e| super::io_err(std::path::Path::new(LOCK_PATH), e))?;
    // SAFETY: flock on a descriptor we own; released when the file closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(super::io_err(
            std::path::Path::new(LOCK_PATH),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(Lock(file))
}

fn iptables(args: &[&str]) -> Result<std::process::Output> {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .map_err(|e| {
            NetworkError::Firewall(format!(
                "cannot run iptables ({e}): install the iptables package"
            ))
        })
}

fn run(args: &[&str]) -> Result<()> {
    let out = iptables(args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Firewall(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn exists(table: &str, chain: &str, rule: &[String]) -> Result<bool> {
    let mut args = vec!["-t", table, "-C", chain];
    args.extend(rule.iter().map(String::as_str));
    Ok(iptables(&args)?.status.success())
}

fn ensure_rule(table: &str, chain: &str, rule: &[String], insert: bool) -> Result<()> {
    if exists(table, chain, rule)? {
        return Ok(());
    }
    let mut args = vec!["-t", table, if insert { "-I" } else { "-A" }, chain];
    if insert {
        args.push("1");
    }
    args.extend(rule.iter().map(String::as_str));
    run(&args)
}

fn delete_rule(table: &str, chain: &str, rule: &[String]) -> Result<()> {
    while exists(table, chain, rule).unwrap_or(false) {
        let mut args = vec!["-t", table, "-D", chain];
        args.extend(rule.iter().map(String::as_str));
        run(&args)?;
    }
    Ok(())
}

fn ensure_chain(table: &str, chain: &str) -> Result<()> {
    if iptables(&["-t", table, "-S", chain])?.status.success() {
        return Ok(());
    }
    run(&["-t", table, "-N", chain])
}

fn words(rule: &[&str]) -> Vec<String> {
    rule.iter().map(|w| w.to_string()).collect()
}

/// One rule: its table, chain, words (as `iptables-save` prints them) and
/// whether it goes first in its chain.
struct Rule {
    table: &'static str,
    chain: &'static str,
    words: Vec<String>,
    insert: bool,
}

impl Rule {
    fn saved(&self) -> String {
        format!("-A {} {}", self.chain, self.words.join(" "))
    }
}

/// The rules of one bridge: what `ensure` adds and `remove` deletes.
fn bridge_rules(b: &Bridge) -> Vec<Rule> {
    let dev = b.device.as_str();
    let filter = |chain, words, insert| Rule {
        table: "filter",
        chain,
        words,
        insert,
    };
    let mut rules = vec![];
    if b.internal {
        // drops go before the jump (they are inserted, the jump is appended)
        rules.push(filter(
            CHAIN_1,
            words(&["-i", dev, "!", "-o", dev, "-j", "DROP"]),
            true,
        ));
        rules.push(filter(
            CHAIN_1,
            words(&["!", "-i", dev, "-o", dev, "-j", "DROP"]),
            true,
        ));
    }
    rules.push(filter(
        CHAIN_1,
        words(&["-i", dev, "!", "-o", dev, "-j", CHAIN_2]),
        false,
    ));
    if b.network_wide {
        rules.push(filter(
            FORWARD_CHAIN,
            words(&[
                "-o",
                dev,
                "-m",
                "conntrack",
                "--ctstate",
                "RELATED,ESTABLISHED",
                "-j",
                "ACCEPT",
            ]),
            false,
        ));
        rules.push(filter(
            FORWARD_CHAIN,
            words(&["-i", dev, "-j", "ACCEPT"]),
            false,
        ));
        if let (false, Some(subnet)) = (b.internal, b.subnet) {
            rules.push(Rule {
                table: "nat",
                chain: NAT_CHAIN,
                words: words(&[
                    "-s",
                    &subnet.to_string(),
                    "!",
                    "-o",
                    dev,
                    "-j",
                    "MASQUERADE",
                ]),
                insert: false,
            });
        }
    }
    rules
}

/// Rules every bridge shares.
fn shared_rules() -> Vec<Rule> {
    BRIDGE_PATTERNS
        .iter()
        .map(|p| Rule {
            table: "filter",
            chain: CHAIN_2,
            words: words(&["-o", p, "-j", "DROP"]),
            insert: false,
        })
        .collect()
}

/// Makes sure the chains exist, FORWARD jumps to ours first, and the rules of
/// bridge `b` are in place. Idempotent; one `iptables-save` when nothing is
/// missing, and no lock then, so concurrent starts do not queue here.
pub fn ensure(b: &Bridge) -> Result<()> {
    if in_place(b)? {
        return Ok(());
    }
    let _lock = lock()?;
    if in_place(b)? {
        return Ok(());
    }
    ensure_chain("filter", CHAIN_2)?;
    ensure_chain("filter", CHAIN_1)?;
    ensure_chain("filter", FORWARD_CHAIN)?;
    ensure_chain("nat", NAT_CHAIN)?;
    for r in shared_rules().iter().chain(bridge_rules(b).iter()) {
        ensure_rule(r.table, r.chain, &r.words, r.insert)?;
    }
    // first in FORWARD: the firewall plugin inserts its CNI-FORWARD jump at the
    // top when it is missing, which would accept cross-network traffic first
    let listed = iptables(&["-t", "filter", "-S", "FORWARD"])?;
    let text = String::from_utf8_lossy(&listed.stdout);
    if !jumps_first(&text) {
        for chain in [CHAIN_1, FORWARD_CHAIN] {
            delete_rule("filter", "FORWARD", &words(&["-j", chain]))?;
        }
        run(&["-t", "filter", "-I", "FORWARD", "1", "-j", CHAIN_1])?;
        run(&["-t", "filter", "-I", "FORWARD", "2", "-j", FORWARD_CHAIN])?;
    }
    ensure_rule("nat", "POSTROUTING", &words(&["-j", NAT_CHAIN]), false)
}

/// FORWARD's first two rules are our jumps, isolation first.
fn jumps_first(forward: &str) -> bool {
    let mut rules = forward.lines().filter(|l| l.starts_with("-A FORWARD"));
    rules.next() == Some(&format!("-A FORWARD -j {CHAIN_1}"))
        && rules.next() == Some(&format!("-A FORWARD -j {FORWARD_CHAIN}"))
}

/// Whether every rule of `b` is there, from one `iptables-save`.
fn in_place(b: &Bridge) -> Result<bool> {
    let out = Command::new("iptables-save").output().map_err(|e| {
        NetworkError::Firewall(format!(
            "cannot run iptables-save ({e}): install the iptables package"
        ))
    })?;
    if !out.status.success() {
        return Ok(false);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let table = |name: &str| -> Vec<&str> {
        text.lines()
            .skip_while(|l| *l != format!("*{name}"))
            .take_while(|l| *l != "COMMIT")
            .collect()
    };
    let (filter, nat) = (table("filter"), table("nat"));
    let present = |r: &Rule| {
        let lines = if r.table == "nat" { &nat } else { &filter };
        lines.contains(&r.saved().as_str())
    };
    Ok(jumps_first(&filter.join("\n"))
        && nat.contains(&format!("-A POSTROUTING -j {NAT_CHAIN}").as_str())
        && shared_rules()
            .iter()
            .chain(bridge_rules(b).iter())
            .all(present))
}

/// Deletes bridge `b`'s rules, internal or not (the shared chains stay, as
/// CNI's do).
pub fn remove(b: &Bridge) -> Result<()> {
    let _lock = lock()?;
    for internal in [true, false] {
        let variant = Bridge {
            internal,
            network_wide: true,
            ..b.clone()
        };
        for r in bridge_rules(&variant) {
            delete_rule(r.table, r.chain, &r.words)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(internal: bool, network_wide: bool) -> Bridge {
        Bridge {
            device: "tb-0123456789ab".into(),
            subnet: Some("10.100.3.0/24".parse().unwrap()),
            internal,
            network_wide,
        }
    }

    #[test]
    fn rules_follow_what_the_network_asks_for() {
        let saved =
            |b: &Bridge| -> Vec<String> { bridge_rules(b).iter().map(Rule::saved).collect() };
        let old = saved(&bridge(false, false));
        assert_eq!(
            old,
            ["-A TWINBOX-ISOLATION-1 -i tb-0123456789ab ! -o tb-0123456789ab -j TWINBOX-ISOLATION-2"]
        );
        let open = saved(&bridge(false, true));
        assert!(open.contains(
            &"-A TWINBOX-POSTROUTING -s 10.100.3.0/24 ! -o tb-0123456789ab -j MASQUERADE"
                .to_string()
        ));
        assert!(open.contains(&"-A TWINBOX-FORWARD -i tb-0123456789ab -j ACCEPT".to_string()));
        let internal = saved(&bridge(true, true));
        assert!(
            internal.iter().all(|r| !r.contains("MASQUERADE")),
            "{internal:?}"
        );
        assert_eq!(
            internal.iter().filter(|r| r.ends_with("-j DROP")).count(),
            2
        );
    }

    #[test]
    fn our_jumps_must_lead_forward() {
        let ours = "-P FORWARD ACCEPT\n-A FORWARD -j TWINBOX-ISOLATION-1\n-A FORWARD -j TWINBOX-FORWARD\n-A FORWARD -j CNI-FORWARD";
        assert!(jumps_first(ours));
        let behind = "-A FORWARD -j CNI-FORWARD\n-A FORWARD -j TWINBOX-ISOLATION-1\n-A FORWARD -j TWINBOX-FORWARD";
        assert!(!jumps_first(behind));
    }
}
