//! `twinbox doctor`: what this host offers containers and microVMs, one check per
//! line, with a hint for anything missing. The probing lives in the libraries
//! (`twinbox_engine::host`, `twinbox_microvm::host`); this only renders.

use anyhow::Result;
use serde_json::json;
use twinbox_engine::host::{Check, Status};

/// Run every check, print the report, and return the exit code: 0 when nothing
/// failed, 1 otherwise (warnings do not fail).
pub fn run(json: bool) -> Result<i32> {
    let mut checks = twinbox_engine::host::checks();
    checks.extend(twinbox_microvm::host::checks());
    checks.extend(twinbox_engine::host::network::checks());
    if json {
        let list: Vec<_> = checks.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for check in &checks {
            println!("{}", line(check));
        }
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed { 1 } else { 0 })
}

fn line(check: &Check) -> String {
    let mut s = format!(
        "{:<5}{:<18} {}",
        check.status.as_str(),
        check.name,
        check.detail
    );
    if let Some(hint) = &check.hint {
        s.push_str(" -> ");
        s.push_str(hint);
    }
    s
}

fn to_json(check: &Check) -> serde_json::Value {
    json!({
        "check": check.name,
        "status": check.status.as_str(),
        "detail": check.detail,
        "hint": check.hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_status_name_detail_and_hint() {
        assert_eq!(
            line(&Check::ok("root", "running as root"))
                .split_whitespace()
                .next(),
            Some("ok")
        );
        let w = line(&Check::warn(
            "qemu",
            "not on PATH",
            "apt-get install qemu-system-x86",
        ));
        assert!(w.starts_with("warn qemu "), "{w}");
        assert!(
            w.ends_with("not on PATH -> apt-get install qemu-system-x86"),
            "{w}"
        );
        let j = to_json(&Check::fail("busybox", "missing", "install"));
        assert_eq!(j["check"], "busybox");
        assert_eq!(j["status"], "fail");
        assert_eq!(j["hint"], "install");
        assert!(to_json(&Check::ok("x", "y"))["hint"].is_null());
    }
}
