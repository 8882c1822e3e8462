//! The contract between the host (twinbox's VMM or the QEMU runner) and the
//! guest init: I/O ports the init writes to, where it finds its configuration,
//! and the console marker lines for backends that have no such ports.

use serde::{Deserialize, Serialize};

/// The boot-timer port: the init writes one event byte (`EVENT_*`) with `outb`,
/// so the VMM can timestamp boot stages without parsing the console.
pub const BOOT_TIMER_PORT: u16 = 0x440;
/// The init's first instruction after the kernel handed over.
pub const EVENT_INIT_STARTED: u8 = 1;
/// Written right before the workload's `execve`.
pub const EVENT_WORKLOAD_STARTED: u8 = 2;
/// Written once the workload has been reaped.
pub const EVENT_WORKLOAD_EXITED: u8 = 3;

/// The init writes the workload's exit code byte here before powering off:
/// the code itself, or 128 + signal number when a signal ended it.
pub const EXIT_CODE_PORT: u16 = 0x441;

/// What the init reads from [`BOOT_TIMER_PORT`] when the host asks the
/// workload to stop (`twinbox vm stop`, Ctrl-C): it then sends the workload
/// SIGTERM, as `docker stop` does. Any other value means "keep running".
pub const STOP_REQUESTED: u8 = 1;
/// How often the init asks, in milliseconds, while the workload runs.
pub const STOP_POLL_MS: i64 = 100;

/// Where the per-run configuration sits in the initramfs.
pub const CONFIG_PATH: &str = "/twinbox/config.json";
/// The init binary in the initramfs; the kernel runs it with `rdinit=/twinbox/init`.
pub const INIT_PATH: &str = "/twinbox/init";

/// Exit code when the init itself fails (same as twinbox's own errors).
pub const EXIT_INIT_FAILED: u8 = 125;
/// The command exists but cannot be run (permissions, format).
pub const EXIT_NOT_RUNNABLE: u8 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// What the workload is and how to run it; written by the host as JSON at
/// [`CONFIG_PATH`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestConfig {
    /// The command line; `argv[0]` is looked up in the `PATH` of `env`.
    pub argv: Vec<String>,
    /// Exactly the workload's environment (`KEY=VALUE`).
    pub env: Vec<String>,
    /// Absolute directory the workload starts in (created when missing).
    pub workdir: String,
    /// `uid[:gid]`, or a user (and group) name from the rootfs /etc/passwd
    /// and /etc/group; empty means root.
    #[serde(default)]
    pub user: String,
    pub hostname: String,
    /// Kernel module files inside the initramfs, in load order.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Print [`Marker`] lines on the console around the workload.
    #[serde(default)]
    pub console_markers: bool,
    /// Boot the workload from the image's disk instead of the initramfs.
    #[serde(default)]
    pub root_disk: Option<RootDisk>,
    /// The network card's configuration; none: only loopback.
    #[serde(default)]
    pub network: Option<GuestNetwork>,
}

/// How the init configures `eth0` (the virtio-net card) and the files a
/// container runtime would write: `/etc/hosts` and `/etc/resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNetwork {
    /// IPv4 address and prefix length, e.g. `10.77.0.5/16`.
    pub address: String,
    /// The default route's gateway, if any.
    #[serde(default)]
    pub gateway: Option<String>,
    pub mtu: u16,
    /// The contents of `/etc/hosts` and `/etc/resolv.conf`.
    pub hosts: String,
    pub resolv_conf: String,
}

/// The image as a read-only disk, with a writable overlay on top: the init
/// mounts it and switches root before the workload starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootDisk {
    /// The image's disk, e.g. `/dev/vda`.
    pub device: String,
    /// Its file system (`ext4`, `erofs`).
    pub fstype: String,
    /// The VM's own ext4 disk for the overlay's upper layer; none: a tmpfs.
    #[serde(default)]
    pub upper_device: Option<String>,
}

/// Every marker line starts with this.
pub const MARKER_PREFIX: &str = "@@twinbox@@ ";
/// Longer than any real marker line: a "marker" this long is workload output.
const MAX_MARKER_LEN: usize = 64;

/// A console marker line the init prints when `console_markers` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The workload is about to start; the guest's `CLOCK_MONOTONIC` then
    /// (about the time since the guest kernel started).
    Started { monotonic_ns: u64 },
    /// The workload ended with this exit code.
    Exit { code: u8 },
}

impl Marker {
    /// The line as the init prints it, newline included.
    pub fn line(&self) -> String {
        match self {
            Marker::Started { monotonic_ns } => format!("{MARKER_PREFIX}started {monotonic_ns}\n"),
            Marker::Exit { code } => format!("{MARKER_PREFIX}exit {code}\n"),
        }
    }

    /// Parses one marker line (without its line ending; a trailing `\r` is
    /// accepted). `None` when the text is not a well-formed marker.
    pub fn parse(line: &str) -> Option<Marker> {
        let rest = line.trim_end_matches('\r').strip_prefix(MARKER_PREFIX)?;
        let (word, value) = rest.split_once(' ')?;
        match word {
            "started" => value
                .parse()
                .ok()
                .map(|ns| Marker::Started { monotonic_ns: ns }),
            "exit" => value.parse().ok().map(|code| Marker::Exit { code }),
            _ => None,
        }
    }
}

/// A piece of console output, in the order it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleItem {
    /// Bytes that are not markers (kernel messages, init errors, workload output).
    Output(Vec<u8>),
    Marker(Marker),
}

/// Splits a console byte stream into output and markers as it arrives.
///
/// Output is passed on at once, except for the few bytes that might be the
/// start of a marker. Markers are found anywhere in a line, so a workload whose
/// last line has no newline does not hide the exit marker.
#[derive(Debug, Default)]
pub struct ConsoleFilter {
    /// Bytes that may begin a marker, or the marker line collected so far.
    held: Vec<u8>,
    in_marker: bool,
}

impl ConsoleFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds console bytes; appends what they contain to `items`.
    pub fn push(&mut self, input: &[u8], items: &mut Vec<ConsoleItem>) {
        let prefix = MARKER_PREFIX.as_bytes();
        let mut output = Vec::new();
        for &b in input {
            if self.in_marker {
                if b == b'\n' {
                    self.end_marker_line(&mut output, items);
                } else if self.held.len() >= MAX_MARKER_LEN {
                    // Too long for a marker: it was ordinary output after all.
                    output.append(&mut self.held);
                    output.push(b);
                    self.in_marker = false;
                } else {
                    self.held.push(b);
                }
                continue;
            }
            self.held.push(b);
            if self.held == prefix {
                self.in_marker = true;
            } else if !prefix.starts_with(&self.held) {
                // Keep only the longest tail that could still start a marker.
                let keep = (1..self.held.len())
                    .rev()
                    .find(|&n| prefix.starts_with(&self.held[self.held.len() - n..]))
                    .unwrap_or(0);
                let emit = self.held.len() - keep;
                output.extend(self.held.drain(..emit));
            }
        }
        if !output.is_empty() {
            items.push(ConsoleItem::Output(output));
        }
    }

    fn end_marker_line(&mut self, output: &mut Vec<u8>, items: &mut Vec<ConsoleItem>) {
        self.in_marker = false;
        let line = std::mem::take(&mut self.held);
        match std::str::from_utf8(&line).ok().and_then(Marker::parse) {
            Some(marker) => {
                if !output.is_empty() {
                    items.push(ConsoleItem::Output(std::mem::take(output)));
                }
                items.push(ConsoleItem::Marker(marker));
            }
            None => {
                output.extend_from_slice(&line);
                output.push(b'\n');
            }
        }
    }

    /// The bytes still held back at the end of the stream, as output.
    pub fn finish(&mut self, items: &mut Vec<ConsoleItem>) {
        self.in_marker = false;
        if !self.held.is_empty() {
            items.push(ConsoleItem::Output(std::mem::take(&mut self.held)));
        }
    }
}

/// A whole console capture split into output (markers removed) and markers.
pub fn split_console(console: &[u8]) -> (Vec<u8>, Vec<Marker>) {
    let mut filter = ConsoleFilter::new();
    let mut items = Vec::new();
    filter.push(console, &mut items);
    filter.finish(&mut items);
    let mut output = Vec::new();
    let mut markers = Vec::new();
    for item in items {
        match item {
            ConsoleItem::Output(bytes) => output.extend(bytes),
            ConsoleItem::Marker(m) => markers.push(m),
        }
    }
    (output, markers)
}

/// The exit code a shell would report for a `waitpid` status: the code, or
/// 128 + the signal that ended the process.
pub fn exit_code_from_wait_status(status: i32) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        (128 + libc::WTERMSIG(status)) as u8
    } else {
        EXIT_INIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        for m in [
            Marker::Started {
                monotonic_ns: 1_234_567_890,
            },
            Marker::Exit { code: 0 },
            Marker::Exit { code: 255 },
        ] {
            let line = m.line();
            assert!(line.ends_with('\n'));
            assert_eq!(Marker::parse(line.trim_end_matches('\n')), Some(m));
        }
        assert_eq!(
            Marker::parse("@@twinbox@@ exit 7\r"),
            Some(Marker::Exit { code: 7 })
        );
        assert_eq!(Marker::parse("@@twinbox@@ exit 256"), None);
        assert_eq!(Marker::parse("@@twinbox@@ exit"), None);
        assert_eq!(Marker::parse("@@twinbox@@ bogus 1"), None);
        assert_eq!(Marker::parse("twinbox exit 1"), None);
    }

    #[test]
    fn splits_output_and_markers() {
        let console = b"[    0.5] kernel says hi\r\n@@twinbox@@ started 99\nhello\nworld\n@@twinbox@@ exit 3\r\nreboot: Restarting system\r\n";
        let (out, markers) = split_console(console);
        assert_eq!(
            markers,
            [
                Marker::Started { monotonic_ns: 99 },
                Marker::Exit { code: 3 }
            ]
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[    0.5] kernel says hi\r\nhello\nworld\nreboot: Restarting system\r\n"
        );
    }

    #[test]
    fn marker_after_output_without_newline() {
        let (out, markers) = split_console(b"no newline@@twinbox@@ exit 0\n");
        assert_eq!(out, b"no newline");
        assert_eq!(markers, [Marker::Exit { code: 0 }]);
    }

    #[test]
    fn lookalikes_stay_output() {
        let text = b"@@ at @@twin and @@twinbox@@ nonsense here\n@@@twinbox@@ exit 9\n@@twinbox";
        let (out, markers) = split_console(text);
        // "@@@twinbox@@ exit 9" holds a real marker after one extra '@'.
        assert_eq!(markers, [Marker::Exit { code: 9 }]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "@@ at @@twin and @@twinbox@@ nonsense here\n@@@twinbox"
        );
        let long = format!("{MARKER_PREFIX}{}\n", "x".repeat(200));
        let (out, markers) = split_console(long.as_bytes());
        assert!(markers.is_empty());
        assert_eq!(out, long.as_bytes());
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let console = b"a@b@@twinbox@@ started 5\nline\n@@twinbox@@ exit 1\ntail";
        let mut filter = ConsoleFilter::new();
        let mut items = Vec::new();
        for b in console {
            filter.push(std::slice::from_ref(b), &mut items);
        }
        filter.finish(&mut items);
        let mut out = Vec::new();
        let mut markers = Vec::new();
        for item in items {
            match item {
                ConsoleItem::Output(b) => out.extend(b),
                ConsoleItem::Marker(m) => markers.push(m),
            }
        }
        assert_eq!((out, markers), split_console(console));
    }

    #[test]
    fn output_is_not_held_back_needlessly() {
        let mut filter = ConsoleFilter::new();
        let mut items = Vec::new();
        filter.push(b"progress...", &mut items);
        assert_eq!(items, [ConsoleItem::Output(b"progress...".to_vec())]);
        items.clear();
        filter.push(b"x@@twin", &mut items);
        assert_eq!(items, [ConsoleItem::Output(b"x".to_vec())]);
    }

    #[test]
    fn config_json_defaults() {
        let c: GuestConfig =
            serde_json::from_str(r#"{"argv":["sh"],"env":[],"workdir":"/","hostname":"h"}"#)
                .unwrap();
        assert_eq!(c.argv, ["sh"]);
        assert!(c.modules.is_empty());
        assert!(!c.console_markers);
        assert_eq!(c.user, "");
    }

    #[test]
    fn wait_status_to_exit_code() {
        assert_eq!(exit_code_from_wait_status(7 << 8), 7);
        assert_eq!(exit_code_from_wait_status(libc::SIGKILL), 137);
        assert_eq!(exit_code_from_wait_status(0), 0);
    }
}
