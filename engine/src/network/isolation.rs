//! Isolation between bridge networks, as Docker's DOCKER-ISOLATION chains do it.
//!
//! The host routes between its bridges, and the firewall plugin's CNI-FORWARD
//! accepts anything to or from a container address, so without these rules a
//! container on one network reaches every other network. Two chains in the
//! filter table, jumped to first from FORWARD:
//! - `TWINBOX-ISOLATION-1`: per bridge, `-i BR ! -o BR -j TWINBOX-ISOLATION-2`
//!   (traffic leaving its own bridge); for an `--internal` network, traffic
//!   into or out of its bridge from anywhere else is dropped outright.
//! - `TWINBOX-ISOLATION-2`: drops what goes out to any twinbox bridge, so what
//!   leaves a bridge may go to the host's uplink (NAT) but not to another bridge.
//!
//! Per-network rules are (re)ensured after every CNI ADD (rules do not survive a
//! reboot, config lists do) and removed when the network is removed.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::process::Command;

use super::{NetworkError, Result};

pub const CHAIN_1: &str = "TWINBOX-ISOLATION-1";
pub const CHAIN_2: &str = "TWINBOX-ISOLATION-2";

/// Bridge devices twinbox makes: the default `twinbox0` and `tb-<id>` for user
/// networks (iptables' `+` wildcard matches the prefix).
const BRIDGE_PATTERNS: &[&str] = &["twinbox+", "tb-+"];

/// Serialises our checks and edits across twinbox processes (iptables' own
/// lock only covers one command, and keeping our jump first takes several).
const LOCK_PATH: &str = "/run/twinbox/isolation.lock";

struct Lock(#[allow(dead_code)] File);

fn lock() -> Result<Lock> {
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

fn exists(chain: &str, rule: &[&str]) -> Result<bool> {
    let mut args = vec!["-t", "filter", "-C", chain];
    args.extend_from_slice(rule);
    Ok(iptables(&args)?.status.success())
}

fn ensure_rule(chain: &str, rule: &[&str], insert: bool) -> Result<()> {
    if exists(chain, rule)? {
        return Ok(());
    }
    let mut args = vec!["-t", "filter", if insert { "-I" } else { "-A" }, chain];
    if insert {
        args.push("1");
    }
    args.extend_from_slice(rule);
    run(&args)
}

fn ensure_chain(chain: &str) -> Result<()> {
    let listed = iptables(&["-t", "filter", "-S", chain])?;
    if listed.status.success() {
        return Ok(());
    }
    run(&["-t", "filter", "-N", chain])
}

/// The rules of one bridge: what `ensure` adds and `remove` deletes.
fn bridge_rules(device: &str, internal: bool) -> Vec<Vec<String>> {
    let mut rules = vec![];
    if internal {
        rules.push(vec!["-i", device, "!", "-o", device, "-j", "DROP"]);
        rules.push(vec!["!", "-i", device, "-o", device, "-j", "DROP"]);
    }
    rules.push(vec!["-i", device, "!", "-o", device, "-j", CHAIN_2]);
    rules
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect()
}

/// Makes sure the chains exist, FORWARD jumps to ours first, and the rules of
/// bridge `device` are in place. Idempotent.
pub fn ensure(device: &str, internal: bool) -> Result<()> {
    let _lock = lock()?;
    if in_place(device, internal)? {
        return Ok(());
    }
    ensure_chain(CHAIN_2)?;
    ensure_chain(CHAIN_1)?;
    for pattern in BRIDGE_PATTERNS {
        ensure_rule(CHAIN_2, &["-o", pattern, "-j", "DROP"], false)?;
    }
    for rule in bridge_rules(device, internal) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        // drops go before the jump (they are inserted, the jump is appended)
        ensure_rule(CHAIN_1, &rule, rule.last() == Some(&"DROP"))?;
    }
    // first in FORWARD: the firewall plugin inserts its CNI-FORWARD jump at the
    // top when it is missing, which would accept cross-network traffic first
    let listed = iptables(&["-t", "filter", "-S", "FORWARD"])?;
    let text = String::from_utf8_lossy(&listed.stdout);
    let first = text.lines().find(|l| l.starts_with("-A FORWARD"));
    let ours = format!("-A FORWARD -j {CHAIN_1}");
    if first != Some(ours.as_str()) {
        while exists("FORWARD", &["-j", CHAIN_1])? {
            run(&["-t", "filter", "-D", "FORWARD", "-j", CHAIN_1])?;
        }
        run(&["-t", "filter", "-I", "FORWARD", "1", "-j", CHAIN_1])?;
    }
    Ok(())
}

/// One `iptables-save` instead of a command per rule: the common case (every
/// rule there already, our jump first) costs a single exec per attachment.
fn in_place(device: &str, internal: bool) -> Result<bool> {
    let out = Command::new("iptables-save")
        .args(["-t", "filter"])
        .output()
        .map_err(|e| {
            NetworkError::Firewall(format!(
                "cannot run iptables-save ({e}): install the iptables package"
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let mut wanted: Vec<String> = BRIDGE_PATTERNS
        .iter()
        .map(|p| format!("-A {CHAIN_2} -o {p} -j DROP"))
        .collect();
    wanted.extend(
        bridge_rules(device, internal)
            .iter()
            .map(|r| format!("-A {CHAIN_1} {}", r.join(" "))),
    );
    let first_forward = lines.iter().find(|l| l.starts_with("-A FORWARD"));
    Ok(out.status.success()
        && first_forward == Some(&format!("-A FORWARD -j {CHAIN_1}").as_str())
        && wanted.iter().all(|w| lines.contains(&w.as_str())))
}

/// Deletes bridge `device`'s rules (the shared chains stay, as CNI's do).
pub fn remove(device: &str) -> Result<()> {
    let _lock = lock()?;
    for internal in [true, false] {
        for rule in bridge_rules(device, internal) {
            let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
            while exists(CHAIN_1, &rule).unwrap_or(false) {
                let mut args = vec!["-t", "filter", "-D", CHAIN_1];
                args.extend_from_slice(&rule);
                run(&args)?;
            }
        }
    }
    Ok(())
}
