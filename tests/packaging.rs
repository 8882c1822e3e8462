//! The binary installs like a normal Rust tool: shell completions and a man page
//! come from the clap definitions, and the guest init is inside the binary.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

fn twinbox(args: &[&str]) -> std::process::Output {
    Command::new(common::bin()).args(args).output().unwrap()
}

#[test]
fn completion_scripts_are_valid_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = twinbox(&["completion", shell]);
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        // every verb a user types is completed
        for verb in ["run", "exec", "system", "vm", "lesson", "pull"] {
            assert!(text.contains(verb), "{shell} completion lacks {verb}");
        }
    }
    // bash itself accepts the script
    let script = twinbox(&["completion", "bash"]).stdout;
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin.take().unwrap().write_all(&script).unwrap();
    let checked = bash.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn man_page_renders_from_the_cli_definitions() {
    let out = twinbox(&["man"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(".TH twinbox 1"), "{text}");
    assert!(text.contains("completion"), "subcommands listed");
}

#[test]
fn unknown_shell_is_a_clear_error() {
    let out = twinbox(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}
