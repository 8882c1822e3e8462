//! The cgroup v2 device filter: cgroup v2 has no devices.allow/deny files, so a
//! container's device rules become a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! attached to its cgroup directory. The kernel runs it on every open and
//! mknod of a device node inside the cgroup; it returns 1 to allow, 0 to deny
//! (EPERM).
//!
//! The rules are the ones v1 writes to devices.allow/deny, in order:
//! (allow, "TYPE MAJOR:MINOR ACCESS"). The program checks them last to first
//! and the first rule that matches decides, so the last matching rule wins, as
//! on v1; nothing matching means deny. A "a *:* rwm" rule matches everything,
//! so the rules before it are never reached and are left out.
//!
//! Access bits follow v1: an allow rule matches a request whose bits it all
//! grants (an "r" rule does not allow opening read-write), a deny rule matches
//! a request asking for any bit it names.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::util::bpf;
pub(crate) use crate::util::bpf::Insn;

#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("invalid device rule {rule:?}: {why}: use \"TYPE MAJOR:MINOR ACCESS\" with type a, b or c, numbers or *, and access of r, w, m")]
    InvalidRule { rule: String, why: String },
    #[error("cannot load the device filter program: {source}: the kernel needs CONFIG_CGROUP_BPF and the caller CAP_SYS_ADMIN")]
    Load { source: io::Error },
    #[error(
        "cannot open cgroup directory {path}: {source}: is it a cgroup2 directory that exists?"
    )]
    OpenCgroup { path: PathBuf, source: io::Error },
    #[error(
        "cannot list the device filters attached to {path}: {source}: is it a cgroup2 directory?"
    )]
    Query { path: PathBuf, source: io::Error },
    #[error(
        "cannot attach the device filter to {path}: {source}: is it a cgroup2 directory and are you root?"
    )]
    Attach { path: PathBuf, source: io::Error },
    #[error("cannot detach the previous device filter (program id {id}) from {path}: {source}")]
    Detach {
        path: PathBuf,
        id: u32,
        source: io::Error,
    },
}

/// bpf_cgroup_dev_ctx.access_type's low half.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// bpf_cgroup_dev_ctx.access_type's high half.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One device rule, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    pub allow: bool,
    /// DEV_BLOCK or DEV_CHAR; `None` for "a" (any type).
    pub kind: Option<i32>,
    /// `None` for "*".
    pub major: Option<i32>,
    pub minor: Option<i32>,
    /// ACC_* bits.
    pub access: i32,
}

impl DeviceRule {
    /// Parses "TYPE MAJOR:MINOR ACCESS" as v1's devices.allow takes it.
    pub(crate) fn parse(allow: bool, rule: &str) -> Result<Self, DeviceFilterError> {
        let bad = |why: &str| DeviceFilterError::InvalidRule {
            rule: rule.to_string(),
            why: why.to_string(),
        };
        let fields: Vec<&str> = rule.split_whitespace().collect();
        let (typ, numbers, access) = match fields.as_slice() {
            [t, n, a] => (*t, *n, *a),
            // "a" alone is v1's shorthand for "a *:* rwm"
            ["a"] => ("a", "*:*", "rwm"),
            // an empty access string grants nothing
            [t, n] => (*t, *n, ""),
            _ => return Err(bad("expected three fields")),
        };
        let kind = match typ {
            "a" => None,
            "b" => Some(DEV_BLOCK),
            "c" => Some(DEV_CHAR),
            _ => return Err(bad(&format!("unknown device type {typ:?}"))),
        };
        let (major, minor) = numbers
            .split_once(':')
            .ok_or_else(|| bad("expected MAJOR:MINOR"))?;
        let number = |n: &str| -> Result<Option<i32>, DeviceFilterError> {
            if n == "*" {
                return Ok(None);
            }
            n.parse::<i32>()
                .ok()
                .filter(|v| *v >= 0)
                .map(Some)
                .ok_or_else(|| bad(&format!("bad device number {n:?}")))
        };
        let mut bits = 0;
        for c in access.chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(bad(&format!("unknown access {c:?}"))),
            };
        }
        Ok(Self {
            allow,
            kind,
            major: number(major)?,
            minor: number(minor)?,
            access: bits,
        })
    }

    /// "a *:* rwm": matches every request.
    fn matches_all(&self) -> bool {
        self.kind.is_none()
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == ACC_ALL
    }
}

/// Parses the (allow, rule) list of [`super::Resources::device_rules`].
pub(crate) fn parse_rules(rules: &[(bool, String)]) -> Result<Vec<DeviceRule>, DeviceFilterError> {
    rules
        .iter()
        .map(|(allow, rule)| DeviceRule::parse(*allow, rule))
        .collect()
}

// Opcodes used here (class | op | source).
pub(crate) const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
pub(crate) const AND32_K: u8 = 0x54; // dst = (u32)(dst & imm)
pub(crate) const RSH32_K: u8 = 0x74; // dst = (u32)dst >> imm
pub(crate) const MOV32_X: u8 = 0xbc; // dst = (u32)src
pub(crate) const MOV64_K: u8 = 0xb7; // dst = imm
pub(crate) const JEQ_K: u8 = 0x15; // if dst == imm goto +off
pub(crate) const JNE_K: u8 = 0x55; // if dst != imm goto +off
pub(crate) const JNE_X: u8 = 0x5d; // if dst != src goto +off
pub(crate) const EXIT: u8 = 0x95;

// Registers: R1 holds the context on entry, R0 the result on exit; the
// prologue loads the request into R2..R5 and R1 is free afterwards.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The program for `rules` (in v1 order): the prologue, one block per rule
/// from the last to the first, then deny.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
    let mut out = vec![
        insn(LDX_W, TYPE, R1, 0, 0),
        insn(AND32_K, TYPE, 0, 0, 0xffff),
        insn(LDX_W, ACCESS, R1, 0, 0),
        insn(RSH32_K, ACCESS, 0, 0, 16),
        insn(LDX_W, MAJOR, R1, 4, 0),
        insn(LDX_W, MINOR, R1, 8, 0),
    ];
    for rule in rules.iter().rev() {
        if rule.matches_all() {
            out.extend(verdict(rule.allow));
            return out;
        }
        if rule.access == 0 {
            // grants or denies nothing
            continue;
        }
        out.extend(block(rule));
    }
    out.extend(verdict(false));
    out
}

fn verdict(allow: bool) -> [Insn; 2] {
    [
        insn(MOV64_K, R0, 0, 0, i32::from(allow)),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// The checks of one rule, each jumping past the block on a mismatch, then
/// the rule's verdict.
fn block(rule: &DeviceRule) -> Vec<Insn> {
    // Jumps are written with off = -1 and pointed at the block's end below.
    let mut out = Vec::new();
    if let Some(kind) = rule.kind {
        out.push(insn(JNE_K, TYPE, 0, -1, kind));
    }
    if rule.access != ACC_ALL {
        out.push(insn(MOV32_X, R1, ACCESS, 0, 0));
        out.push(insn(AND32_K, R1, 0, 0, rule.access));
        if rule.allow {
            // allow only what the rule grants entirely: (req & rule) != req
            out.push(insn(JNE_X, R1, ACCESS, -1, 0));
        } else {
            // deny when any requested bit is named: (req & rule) == 0
            out.push(insn(JEQ_K, R1, 0, -1, 0));
        }
    }
    if let Some(major) = rule.major {
        out.push(insn(JNE_K, MAJOR, 0, -1, major));
    }
    if let Some(minor) = rule.minor {
        out.push(insn(JNE_K, MINOR, 0, -1, minor));
    }
    out.extend(verdict(rule.allow));
    let end = out.len();
    for (i, ins) in out.iter_mut().enumerate() {
        if ins.off == -1 {
            // relative to the next instruction; blocks are far below i16::MAX
            ins.off = (end - i - 1) as i16;
        }
    }
    out
}

// Program type and attach type (linux/bpf.h).
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// Loads the program; on a refusal the verifier's last lines are in the error.
pub(crate) fn load(insns: &[Insn]) -> Result<OwnedFd, DeviceFilterError> {
    bpf::prog_load(
        BPF_PROG_TYPE_CGROUP_DEVICE,
        0,
        insns,
        "Apache-2.0",
        "twinbox_device",
    )
    .map_err(|source| DeviceFilterError::Load { source })
}

/// A cgroup2 directory as a descriptor (for bpf attachments and clone3).
pub(crate) fn open_cgroup(dir: &Path) -> Result<OwnedFd, DeviceFilterError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(|source| DeviceFilterError::OpenCgroup {
            path: dir.to_path_buf(),
            source,
        })
}

/// The ids of the device programs attached to the cgroup `dir` itself.
#[cfg(test)]
pub(crate) fn attached(dir: &Path) -> Result<Vec<u32>, DeviceFilterError> {
    query(&open_cgroup(dir)?, dir)
}

fn query(cgroup: &OwnedFd, dir: &Path) -> Result<Vec<u32>, DeviceFilterError> {
    bpf::prog_query(cgroup, BPF_CGROUP_DEVICE).map_err(|source| DeviceFilterError::Query {
        path: dir.to_path_buf(),
        source,
    })
}

/// Enforces `rules` on the cgroup2 directory `dir`: loads their program,
/// attaches it, then detaches the programs attached before (a second call
/// replaces the filter). While both are attached the kernel needs both to
/// allow, so nothing is let through in between.
pub(crate) fn apply(dir: &Path, rules: &[(bool, String)]) -> Result<(), DeviceFilterError> {
    let insns = program(&parse_rules(rules)?);
    let prog = load(&insns)?;
    let cgroup = open_cgroup(dir)?;
    let previous = query(&cgroup, dir)?;
    bpf::prog_attach(&cgroup, &prog, BPF_CGROUP_DEVICE, bpf::F_ALLOW_MULTI).map_err(|source| {
        DeviceFilterError::Attach {
            path: dir.to_path_buf(),
            source,
        }
    })?;
    for id in previous {
        bpf::prog_fd_by_id(id)
            .and_then(|old| bpf::prog_detach(&cgroup, &old, BPF_CGROUP_DEVICE))
            .map_err(|source| DeviceFilterError::Detach {
                path: dir.to_path_buf(),
                id,
                source,
            })?;
    }
    tracing::debug!(path = %dir.display(), insns = insns.len(), "device filter attached");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd};

    /// Runs `insns` the way the kernel would on one request, for the
    /// instructions `program` emits; checks every jump stays inside.
    fn run(insns: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..insns.len() {
            let i = insns[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            let imm = i.imm as i64 as u64;
            let mut next = pc + 1;
            let jump = |taken: bool| {
                if taken {
                    let to = pc as isize + 1 + i.off as isize;
                    assert!(
                        to > pc as isize && (to as usize) < insns.len(),
                        "jump out at {pc}"
                    );
                    to as usize
                } else {
                    pc + 1
                }
            };
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1, "only the context is read");
                    reg[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                AND32_K => reg[dst] = (reg[dst] as u32 & i.imm as u32) as u64,
                RSH32_K => reg[dst] = (reg[dst] as u32 >> i.imm) as u64,
                MOV32_X => reg[dst] = reg[src] as u32 as u64,
                MOV64_K => reg[dst] = imm,
                JEQ_K => next = jump(reg[dst] == imm),
                JNE_K => next = jump(reg[dst] != imm),
                JNE_X => next = jump(reg[dst] != reg[src]),
                EXIT => return reg[0],
                other => panic!("unexpected opcode {other:#x} at {pc}"),
            }
            pc = next;
        }
        panic!("the program did not exit")
    }

    fn rules(list: &[(bool, &str)]) -> Vec<DeviceRule> {
        list.iter()
            .map(|(a, r)| DeviceRule::parse(*a, r).unwrap())
            .collect()
    }

    const R: i32 = ACC_READ;
    const W: i32 = ACC_WRITE;
    const M: i32 = ACC_MKNOD;

    /// Docker's default list as container::devices::cgroup_rules builds it.
    fn docker_default() -> Vec<(bool, &'static str)> {
        vec![
            (false, "a *:* rwm"),
            (true, "c *:* m"),
            (true, "b *:* m"),
            (true, "c 1:3 rwm"),
            (true, "c 1:8 rwm"),
            (true, "c 1:7 rwm"),
            (true, "c 5:0 rwm"),
            (true, "c 1:5 rwm"),
            (true, "c 1:9 rwm"),
            (true, "c 5:1 rwm"),
            (true, "c 136:* rwm"),
            (true, "c 5:2 rwm"),
            (true, "c 10:200 rwm"),
        ]
    }

    #[test]
    fn filter_docker_default_list() {
        let p = program(&rules(&docker_default()));
        // null, zero, urandom read-write; ptys by wildcard minor
        for (maj, min) in [(1, 3), (1, 5), (1, 9), (136, 0), (136, 77), (10, 200)] {
            assert_eq!(run(&p, DEV_CHAR, R | W, maj, min), 1, "c {maj}:{min}");
        }
        // mknod of anything, but not opening it
        assert_eq!(run(&p, DEV_CHAR, M, 10, 232), 1);
        assert_eq!(run(&p, DEV_BLOCK, M, 8, 0), 1);
        assert_eq!(run(&p, DEV_CHAR, R, 10, 232), 0);
        assert_eq!(run(&p, DEV_BLOCK, R | W, 8, 0), 0);
        // the type matters: b 1:3 is not /dev/null
        assert_eq!(run(&p, DEV_BLOCK, R, 1, 3), 0);
        // a "a *:* rwm" first rule ends the program: nothing before it is kept
        let with_junk = program(&rules(&[(true, "c 4:4 r"), (false, "a")]));
        assert_eq!(with_junk.len(), 6 + 2);
        assert_eq!(run(&with_junk, DEV_CHAR, R, 4, 4), 0);
    }

    #[test]
    fn filter_last_matching_rule_wins() {
        let p = program(&rules(&[
            (false, "a *:* rwm"),
            (true, "c 1:* rwm"),
            (false, "c 1:5 rwm"),
        ]));
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, R, 1, 5), 0);
        // reversed: the later wildcard allow overrides the earlier deny
        let p = program(&rules(&[
            (false, "a *:* rwm"),
            (false, "c 1:5 rwm"),
            (true, "c 1:* rwm"),
        ]));
        assert_eq!(run(&p, DEV_CHAR, R, 1, 5), 1);
        // --privileged: allow all, one verdict after the prologue
        let p = program(&rules(&[(true, "a *:* rwm")]));
        assert_eq!(p.len(), 8);
        assert_eq!(run(&p, DEV_BLOCK, R | W | M, 8, 1), 1);
        // no rules at all: deny
        let p = program(&[]);
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 0);
        // allow all, then deny one device
        let p = program(&rules(&[(true, "a"), (false, "b 8:* w")]));
        assert_eq!(run(&p, DEV_BLOCK, R, 8, 1), 1);
        assert_eq!(run(&p, DEV_BLOCK, R | W, 8, 1), 0);
        assert_eq!(run(&p, DEV_CHAR, W, 8, 1), 1);
    }

    #[test]
    fn filter_wildcards_in_type_major_minor() {
        let p = program(&rules(&[(true, "a 7:* r")]));
        assert_eq!(run(&p, DEV_CHAR, R, 7, 0), 1);
        assert_eq!(run(&p, DEV_BLOCK, R, 7, 123), 1);
        assert_eq!(run(&p, DEV_BLOCK, R, 8, 0), 0);
        let p = program(&rules(&[(true, "c *:4 rw")]));
        assert_eq!(run(&p, DEV_CHAR, R | W, 99, 4), 1);
        assert_eq!(run(&p, DEV_CHAR, R, 99, 5), 0);
        assert_eq!(run(&p, DEV_BLOCK, R, 99, 4), 0);
        // a device number above 2^31 never matches a small immediate
        assert_eq!(run(&p, DEV_CHAR, R, u32::MAX, 4), 1);
        assert_eq!(run(&p, DEV_CHAR, R, 1, u32::MAX), 0);
    }

    #[test]
    fn filter_access_bits() {
        // an allow rule must grant every requested bit
        let p = program(&rules(&[(false, "a"), (true, "c 10:232 r")]));
        assert_eq!(run(&p, DEV_CHAR, R, 10, 232), 1);
        assert_eq!(run(&p, DEV_CHAR, R | W, 10, 232), 0);
        assert_eq!(run(&p, DEV_CHAR, W, 10, 232), 0);
        assert_eq!(run(&p, DEV_CHAR, M, 10, 232), 0);
        let p = program(&rules(&[(false, "a"), (true, "c 10:232 wm")]));
        assert_eq!(run(&p, DEV_CHAR, W, 10, 232), 1);
        assert_eq!(run(&p, DEV_CHAR, M, 10, 232), 1);
        assert_eq!(run(&p, DEV_CHAR, R | W, 10, 232), 0);
        // a deny rule takes away any bit it names
        let p = program(&rules(&[
            (false, "a"),
            (true, "c 1:3 rwm"),
            (false, "c 1:3 w"),
        ]));
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, W, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, R | W, 1, 3), 0);
        // an empty access list grants nothing and emits nothing
        let p = program(&rules(&[(true, "c 1:3")]));
        assert_eq!(p.len(), 6 + 2);
        assert_eq!(run(&p, DEV_CHAR, R, 1, 3), 0);
    }

    #[test]
    fn filter_block_layout() {
        // every mismatch jumps to the next block (here the final deny)
        let p = program(&rules(&[(true, "c 1:3 r")]));
        assert_eq!(
            p[6..],
            [
                insn(JNE_K, TYPE, 0, 7, DEV_CHAR),
                insn(MOV32_X, R1, ACCESS, 0, 0),
                insn(AND32_K, R1, 0, 0, ACC_READ),
                insn(JNE_X, R1, ACCESS, 4, 0),
                insn(JNE_K, MAJOR, 0, 3, 1),
                insn(JNE_K, MINOR, 0, 2, 3),
                insn(MOV64_K, R0, 0, 0, 1),
                insn(EXIT, 0, 0, 0, 0),
                insn(MOV64_K, R0, 0, 0, 0),
                insn(EXIT, 0, 0, 0, 0),
            ]
        );
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn filter_rejects_bad_rules() {
        for bad in [
            "x 1:3 r",
            "c 1-3 r",
            "c a:3 r",
            "c 1:3 rx",
            "c -1:3 r",
            "",
            "c 1:3 r extra",
        ] {
            let err = DeviceRule::parse(true, bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid device rule {bad:?}: ")),
                "{err}"
            );
        }
        assert_eq!(
            DeviceRule::parse(false, "b *:7 m").unwrap(),
            DeviceRule {
                allow: false,
                kind: Some(DEV_BLOCK),
                major: None,
                minor: Some(7),
                access: ACC_MKNOD,
            }
        );
    }

    /// The first cgroup2 mount (a v2 host's root, or a hybrid host's unified/).
    /// Forks a child that waits for a byte on a pipe, then opens /dev/null and
    /// /dev/zero for reading; its exit status is (errno of null) * 16 +
    /// errno of zero, each 0 when the open worked and 15 for 15 or more.
    struct Prober {
        pid: libc::pid_t,
        go: OwnedFd,
    }

    impl Prober {
        fn fork() -> Self {
            let mut fds = [0; 2];
            // SAFETY: fds is a valid array of two ints for pipe2 to fill.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both were just created by pipe2 and are owned only here.
            let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let paths = [c"/dev/null".as_ptr(), c"/dev/zero".as_ptr()];
            // SAFETY: the child only calls async-signal-safe functions (read,
            // open, close, _exit) on memory set up before the fork.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                let mut status = 0;
                // SAFETY: see the fork above: raw syscalls on live buffers.
                unsafe {
                    let mut byte = 0u8;
                    if libc::read(rx.as_raw_fd(), &mut byte as *mut u8 as *mut libc::c_void, 1) != 1
                    {
                        libc::_exit(255);
                    }
                    for path in paths {
                        let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
                        let errno = if fd < 0 {
                            *libc::__errno_location() & 0x7f
                        } else {
                            libc::close(fd);
                            0
                        };
                        status = status * 16 + errno.min(15);
                    }
                    libc::_exit(status);
                }
            }
            drop(rx);
            Self { pid, go: tx }
        }

        /// Lets the child open the files; (null errno, zero errno), 15 for
        /// an errno of 15 or more.
        fn probe(self) -> (i32, i32) {
            let byte = 1u8;
            // SAFETY: writes one byte from a live buffer to our pipe end.
            let n = unsafe {
                libc::write(
                    self.go.as_raw_fd(),
                    &byte as *const u8 as *const libc::c_void,
                    1,
                )
            };
            assert_eq!(n, 1);
            let status = self.wait();
            assert!(libc::WIFEXITED(status), "child status {status:#x}");
            let code = libc::WEXITSTATUS(status);
            assert_ne!(code, 255, "the child did not get the go byte");
            (code / 16, code % 16)
        }

        fn wait(&self) -> i32 {
            let mut status = 0;
            loop {
                // SAFETY: waits for our own child, status is a live int.
                let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
                if rc == self.pid || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
                {
                    return status;
                }
            }
        }
    }

    /// Removes the test cgroup even when an assertion fails (the kernel
    /// detaches its programs with it).
    struct RemoveDir(PathBuf);

    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }

    #[test]
    fn filter_enforced_by_the_kernel_on_a_real_cgroup2_directory() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the real device filter test: not running as root");
            return;
        }
        let Ok(Some(mount)) = crate::cgroups::v2_mount() else {
            eprintln!(
                "skipping the real device filter test: no cgroup2 mount in /proc/self/mounts"
            );
            return;
        };
        let relative = PathBuf::from(format!("twinbox-test-devfilter-{}", std::process::id()));
        let dir = mount.join(&relative);
        std::fs::create_dir(&dir).unwrap();
        let _cleanup = RemoveDir(dir.clone());
        let cg = super::super::Cgroup::with_mode(&mount, &relative, super::super::CgroupMode::V2);

        // Through the v2 backend: deny all, allow /dev/null only.
        cg.create(&super::super::Resources {
            device_rules: vec![(false, "a *:* rwm".into()), (true, "c 1:3 rwm".into())],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(attached(&dir).unwrap().len(), 1);
        let child = Prober::fork();
        cg.join(child.pid).unwrap();
        assert_eq!(
            child.probe(),
            (0, libc::EPERM),
            "/dev/null opens, /dev/zero is refused"
        );

        // A second create replaces the filter rather than adding one.
        cg.create(&super::super::Resources {
            device_rules: vec![(true, "a".into()), (false, "c 1:3 r".into())],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(attached(&dir).unwrap().len(), 1);
        let child = Prober::fork();
        cg.join(child.pid).unwrap();
        assert_eq!(child.probe(), (libc::EPERM, 0), "now the other way round");

        // Limits without device rules (update) leave the filter alone.
        cg.create(&super::super::Resources::default()).unwrap();
        assert_eq!(attached(&dir).unwrap().len(), 1);

        // Outside the cgroup nothing is filtered.
        let outside = Prober::fork();
        assert_eq!(outside.probe(), (0, 0));
        cg.destroy().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn filter_load_error_carries_the_verifier_log() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping the verifier log test: not running as root");
            return;
        }
        // Reads R0 before anything wrote it: the verifier refuses.
        let err = load(&[insn(EXIT, 0, 0, 0, 0)]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot load the device filter program: "),
            "{text}"
        );
        assert!(text.contains("verifier: ") && text.contains("R0"), "{text}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
