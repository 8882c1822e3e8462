//! Classic BPF code generation for seccomp filters (x86_64).
//!
//! The program has three parts:
//!
//! 1. the architecture check: anything but `AUDIT_ARCH_X86_64` (i386 `int 0x80`)
//!    is killed, and so are x32 system call numbers (bit 30 set), whose numbers
//!    would otherwise alias x86_64 ones; `nr == -1` gets the default action;
//! 2. a binary search over the system call number: the number space is cut into
//!    intervals of equal outcome (runs of allowed calls, gaps with the default
//!    action, single calls with argument rules), so a lookup costs about
//!    log2(intervals) ≈ 7 comparisons, and calls whose outcome does not depend on
//!    their arguments never read them (which lets the kernel's seccomp action
//!    cache skip the filter for them entirely);
//! 3. per-call argument checks, 64-bit comparisons done as two 32-bit halves.
//!
//! The program is emitted backwards, from the last instruction to the first, so
//! that every jump target already exists when the jump is written. Classic BPF
//! jumps only forward, and conditional jumps at most 255 instructions: a target
//! further away is reached through an unconditional `ja` (32-bit offset) placed
//! right after the jump.

use std::collections::{BTreeMap, HashMap};

use libc::sock_filter;

use super::{Cond, Op, Rule, SyscallRules, RET_KILL_PROCESS};

// Instruction classes and fields (linux/bpf_common.h).
pub(super) const BPF_LD: u16 = 0x00;
pub(super) const BPF_ALU: u16 = 0x04;
pub(super) const BPF_JMP: u16 = 0x05;
pub(super) const BPF_RET: u16 = 0x06;
pub(super) const BPF_W: u16 = 0x00;
pub(super) const BPF_ABS: u16 = 0x20;
pub(super) const BPF_K: u16 = 0x00;
pub(super) const BPF_AND: u16 = 0x50;
pub(super) const BPF_JA: u16 = 0x00;
pub(super) const BPF_JEQ: u16 = 0x10;
pub(super) const BPF_JGT: u16 = 0x20;
pub(super) const BPF_JGE: u16 = 0x30;

/// `AUDIT_ARCH_X86_64` (EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE).
pub(super) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `__X32_SYSCALL_BIT`: x32 calls arrive with the x86_64 arch value and this bit.
pub(super) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Offsets in `struct seccomp_data`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const fn offset_arg_low(index: u8) -> u32 {
    16 + 8 * index as u32 // little-endian: the low half comes first
}

/// Generates the filter program. `syscalls` maps x86_64 call numbers (all below
/// `X32_SYSCALL_BIT`) to their rules; `default` is the return value for
/// everything else.
pub(super) fn generate(syscalls: &BTreeMap<u32, SyscallRules>, default: u32) -> Vec<sock_filter> {
    let mut em = Emitter::default();

    let intervals = intervals(syscalls, default);
    let search = em.search(&intervals, syscalls, default);

    // Numbers at or above the x32 bit: -1 (used to probe) gets the default action,
    // the rest (x32 calls, garbage) kill the process.
    let kill = em.ret(RET_KILL_PROCESS);
    let default_ret = em.ret(default);
    let high = em.jump(BPF_JEQ, u32::MAX, default_ret, kill);
    let range = em.jump(BPF_JGE, X32_SYSCALL_BIT, high, search);
    let load_nr = em.stmt(BPF_LD | BPF_W | BPF_ABS, OFFSET_NR, range);

    let kill = em.ret(RET_KILL_PROCESS);
    let arch = em.jump(BPF_JEQ, AUDIT_ARCH_X86_64, load_nr, kill);
    em.stmt(BPF_LD | BPF_W | BPF_ABS, OFFSET_ARCH, arch);

    em.finish()
}

/// Renders a program as text: `ld [0]`, `jeq #0x3b, 12, 13`, `ret #0x7fff0000`
/// (jump targets as absolute instruction numbers), with a note on the meaning of
/// loads and returns.
pub(super) fn disassemble(program: &[sock_filter]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (pc, ins) in program.iter().enumerate() {
        let next = pc + 1;
        let (text, note) = match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => (
                format!("ld [{}]", ins.k),
                match ins.k {
                    OFFSET_NR => "system call number".to_string(),
                    OFFSET_ARCH => "architecture".to_string(),
                    k @ 16..=63 => format!(
                        "argument {} ({} half)",
                        (k - 16) / 8,
                        if k.is_multiple_of(8) { "low" } else { "high" }
                    ),
                    _ => String::new(),
                },
            ),
            c if c == BPF_ALU | BPF_AND | BPF_K => (format!("and #{:#x}", ins.k), String::new()),
            c if c == BPF_JMP | BPF_JA => (format!("ja {}", next + ins.k as usize), String::new()),
            c if c & 0x07 == BPF_JMP => {
                let op = match c & 0xf0 {
                    BPF_JEQ => "jeq",
                    BPF_JGT => "jgt",
                    BPF_JGE => "jge",
                    _ => "j?",
                };
                let (t, f) = (next + ins.jt as usize, next + ins.jf as usize);
                (format!("{op} #{:#x}, {t}, {f}", ins.k), String::new())
            }
            c if c == BPF_RET | BPF_K => (format!("ret #{:#x}", ins.k), describe_return(ins.k)),
            c => (format!("code {c:#x} k {:#x}", ins.k), String::new()),
        };
        if note.is_empty() {
            let _ = writeln!(out, "{pc:4}: {text}");
        } else {
            let _ = writeln!(out, "{pc:4}: {text:<28}; {note}");
        }
    }
    out
}

/// `0x00050001` → `"errno 1"`.
fn describe_return(value: u32) -> String {
    let data = value & 0xffff;
    match value & 0xffff_0000 {
        0x8000_0000 => "kill process".into(),
        0x0000_0000 => "kill thread".into(),
        0x0003_0000 => "trap (SIGSYS)".into(),
        0x0005_0000 => format!("errno {data}"),
        0x7fc0_0000 => "notify".into(),
        0x7ff0_0000 => format!("trace {data}"),
        0x7ffc_0000 => "log and allow".into(),
        0x7fff_0000 => "allow".into(),
        _ => String::new(),
    }
}

/// What a range of system call numbers leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Return this value without looking at the arguments.
    Return(u32),
    /// Check the argument rules of this call.
    Rules(u32),
}

/// Cuts `[0, X32_SYSCALL_BIT)` into intervals `(first number, outcome)`, merging
/// neighbours with the same fixed return value.
fn intervals(syscalls: &BTreeMap<u32, SyscallRules>, default: u32) -> Vec<(u32, Outcome)> {
    let mut out: Vec<(u32, Outcome)> = Vec::new();
    let mut push = |start: u32, outcome: Outcome| {
        if out.last().map(|(_, last)| *last) != Some(outcome)
            || matches!(outcome, Outcome::Rules(_))
        {
            out.push((start, outcome));
        }
    };
    let mut next = 0;
    for (&nr, rules) in syscalls {
        debug_assert!(nr < X32_SYSCALL_BIT);
        if nr > next {
            push(next, Outcome::Return(default));
        }
        let outcome = match rules.unconditional {
            Some(value) => Outcome::Return(value),
            None if rules.conditional.is_empty() => Outcome::Return(default),
            None => Outcome::Rules(nr),
        };
        push(nr, outcome);
        next = nr + 1;
    }
    if next < X32_SYSCALL_BIT {
        push(next, Outcome::Return(default));
    }
    out
}

/// A position in the program being built, counted from its *end*
/// (0 = last instruction).
type Label = usize;

/// The longest conditional jump classic BPF can encode.
const MAX_JUMP: usize = u8::MAX as usize;

/// Builds a program backwards (see the module documentation).
#[derive(Default)]
struct Emitter {
    /// The instructions, last one first.
    reversed: Vec<sock_filter>,
    /// The most recent `ret` for each return value, to share it while in reach.
    rets: HashMap<u32, Label>,
}

impl Emitter {
    fn finish(mut self) -> Vec<sock_filter> {
        self.reversed.reverse();
        self.reversed
    }

    /// The jump offset from a new instruction (placed after `extra` further ones)
    /// to `target`.
    fn offset(&self, target: Label, extra: usize) -> usize {
        self.reversed.len() + extra - target - 1
    }

    fn push(&mut self, code: u16, jt: u8, jf: u8, k: u32) -> Label {
        self.reversed.push(sock_filter { code, jt, jf, k });
        self.reversed.len() - 1
    }

    /// `ret value`, shared with an earlier identical one when that is close.
    fn ret(&mut self, value: u32) -> Label {
        if let Some(&label) = self.rets.get(&value) {
            // Leave room for the few instructions a caller emits before jumping here.
            if self.offset(label, 0) < MAX_JUMP / 2 {
                return label;
            }
        }
        let label = self.push(BPF_RET | BPF_K, 0, 0, value);
        self.rets.insert(value, label);
        label
    }

    /// `ja target` (32-bit offset: any distance).
    fn ja(&mut self, target: Label) -> Label {
        let offset = self.offset(target, 0) as u32;
        self.push(BPF_JMP | BPF_JA, 0, 0, offset)
    }

    /// A non-jump instruction (load, ALU) that must fall through to `next`.
    fn stmt(&mut self, code: u16, k: u32, next: Label) -> Label {
        if self.reversed.len().checked_sub(1) != Some(next) {
            self.ja(next);
        }
        self.push(code, 0, 0, k)
    }

    /// `if A <op> k goto jt else goto jf`.
    fn jump(&mut self, op: u16, k: u32, jt: Label, jf: Label) -> Label {
        if jt == jf {
            return jt; // both ways lead to the same place: no test needed
        }
        // Up to two trampolines may be placed between the jump and its targets.
        let jt = if self.offset(jt, 2) > MAX_JUMP {
            self.ja(jt)
        } else {
            jt
        };
        let jf = if self.offset(jf, 2) > MAX_JUMP {
            self.ja(jf)
        } else {
            jf
        };
        let (off_t, off_f) = (self.offset(jt, 0), self.offset(jf, 0));
        assert!(
            off_t <= MAX_JUMP && off_f <= MAX_JUMP,
            "BPF jump out of reach"
        );
        self.push(BPF_JMP | op | BPF_K, off_t as u8, off_f as u8, k)
    }

    /// Binary search over `intervals`, with `A` holding the call number.
    fn search(
        &mut self,
        intervals: &[(u32, Outcome)],
        syscalls: &BTreeMap<u32, SyscallRules>,
        default: u32,
    ) -> Label {
        if let [(_, outcome)] = intervals {
            return match *outcome {
                Outcome::Return(value) => self.ret(value),
                Outcome::Rules(nr) => self.rules(&syscalls[&nr].conditional, default),
            };
        }
        let mid = intervals.len() / 2;
        let upper = self.search(&intervals[mid..], syscalls, default);
        let lower = self.search(&intervals[..mid], syscalls, default);
        self.jump(BPF_JGE, intervals[mid].0, upper, lower)
    }

    /// The argument rules of one call: the first rule whose conditions all hold
    /// decides; if none does, the default action.
    fn rules(&mut self, rules: &[Rule], default: u32) -> Label {
        let mut otherwise = self.ret(default);
        for rule in rules.iter().rev() {
            let mut next = self.ret(rule.action);
            for cond in rule.conds.iter().rev() {
                next = self.cond(cond, next, otherwise);
            }
            otherwise = next;
        }
        otherwise
    }

    /// `if cond goto yes else goto no`, comparing the 64-bit argument unsigned,
    /// high half first.
    fn cond(&mut self, cond: &Cond, yes: Label, no: Label) -> Label {
        let low = offset_arg_low(cond.index);
        let high = low + 4;
        let (v_hi, v_lo) = ((cond.value >> 32) as u32, cond.value as u32);
        let ld = BPF_LD | BPF_W | BPF_ABS;
        match cond.op {
            Op::Eq | Op::Ne => {
                let (eq, ne) = if cond.op == Op::Eq {
                    (yes, no)
                } else {
                    (no, yes)
                };
                let lo = self.jump(BPF_JEQ, v_lo, eq, ne);
                let lo = self.stmt(ld, low, lo);
                let hi = self.jump(BPF_JEQ, v_hi, lo, ne);
                self.stmt(ld, high, hi)
            }
            Op::Gt | Op::Ge | Op::Lt | Op::Le => {
                // a > v  ⇔  hi > v_hi  ∨  (hi = v_hi ∧ lo > v_lo)   (≥ likewise on the low half);
                // < and ≤ are the negations of ≥ and >.
                let (low_op, yes, no) = match cond.op {
                    Op::Gt => (BPF_JGT, yes, no),
                    Op::Ge => (BPF_JGE, yes, no),
                    Op::Lt => (BPF_JGE, no, yes),
                    _ => (BPF_JGT, no, yes),
                };
                let lo = self.jump(low_op, v_lo, yes, no);
                let lo = self.stmt(ld, low, lo);
                let equal = self.jump(BPF_JEQ, v_hi, lo, no);
                let hi = self.jump(BPF_JGT, v_hi, yes, equal);
                self.stmt(ld, high, hi)
            }
            Op::MaskedEq => {
                let (m_hi, m_lo) = ((cond.mask >> 32) as u32, cond.mask as u32);
                let lo = self.masked_half(low, m_lo, v_lo, yes, no);
                self.masked_half(high, m_hi, v_hi, lo, no)
            }
        }
    }

    /// `if (half & mask) == value goto yes else goto no` for one 32-bit half.
    fn masked_half(&mut self, offset: u32, mask: u32, value: u32, yes: Label, no: Label) -> Label {
        if mask == 0 {
            return if value == 0 { yes } else { no };
        }
        if value & !mask != 0 {
            return no; // bits outside the mask can never match
        }
        let test = self.jump(BPF_JEQ, value, yes, no);
        if test == yes {
            return yes;
        }
        let masked = if mask == u32::MAX {
            test
        } else {
            self.stmt(BPF_ALU | BPF_AND | BPF_K, mask, test)
        };
        self.stmt(BPF_LD | BPF_W | BPF_ABS, offset, masked)
    }
}
