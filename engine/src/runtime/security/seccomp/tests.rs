//! Tests of the seccomp profile and compiler.
//!
//! The compiler is checked three ways: a small classic-BPF interpreter runs the
//! generated program against a direct reading of the OCI profile (the reference
//! semantics in the module documentation) on many inputs; the kernel accepts the
//! program; and a forked child with the filter installed sees the expected errors.

use std::time::Instant;

use oci_spec::runtime::{
    Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

use super::super::testutil::{errno, in_child, is_root};
use super::bpf::*;
use super::*;

// ---------------------------------------------------------------------------
// A classic BPF interpreter, restricted to what seccomp accepts.

#[derive(Clone, Copy, Debug)]
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn x86_64(nr: u32, args: [u64; 6]) -> Self {
        Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args,
        }
    }

    /// The 32-bit word at `offset` of `struct seccomp_data` (little-endian).
    fn word(&self, offset: u32) -> u32 {
        match offset {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0x1234_5678, // instruction pointer: never read by our filters
            16..=60 => {
                let arg = self.args[((offset - 16) / 8) as usize];
                if offset.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load outside seccomp_data at {offset}"),
        }
    }
}

/// Checks the program the way the kernel does before running it: known
/// instructions only, aligned loads inside `seccomp_data`, jumps in bounds, a
/// `ret` at the end.
fn validate(program: &[libc::sock_filter]) {
    assert!(!program.is_empty() && program.len() <= MAX_INSTRUCTIONS);
    let last = program.last().unwrap();
    assert_eq!(last.code, BPF_RET | BPF_K, "the program must end with ret");
    for (pc, ins) in program.iter().enumerate() {
        let next = pc + 1;
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => assert!(ins.k % 4 == 0 && ins.k < 64, "pc {pc}"),
            c if c == BPF_ALU | BPF_AND | BPF_K => {}
            c if c == BPF_RET | BPF_K => {}
            c if c == BPF_JMP | BPF_JA => {
                assert!(next + (ins.k as usize) < program.len(), "pc {pc}")
            }
            c if c == BPF_JMP | BPF_JEQ | BPF_K
                || c == BPF_JMP | BPF_JGT | BPF_K
                || c == BPF_JMP | BPF_JGE | BPF_K =>
            {
                assert!(next + (ins.jt as usize) < program.len(), "pc {pc}");
                assert!(next + (ins.jf as usize) < program.len(), "pc {pc}");
            }
            other => panic!("unexpected instruction {other:#x} at {pc}"),
        }
    }
}

/// Runs the program on `data`; also returns how many instructions ran.
fn run(program: &[libc::sock_filter], data: &Data) -> (u32, usize) {
    let (mut a, mut pc, mut steps) = (0u32, 0usize, 0usize);
    loop {
        let ins = program[pc];
        pc += 1;
        steps += 1;
        let jump = |taken: bool| {
            if taken {
                ins.jt as usize
            } else {
                ins.jf as usize
            }
        };
        match ins.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => a = data.word(ins.k),
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= ins.k,
            c if c == BPF_JMP | BPF_JA => pc += ins.k as usize,
            c if c == BPF_JMP | BPF_JEQ | BPF_K => pc += jump(a == ins.k),
            c if c == BPF_JMP | BPF_JGT | BPF_K => pc += jump(a > ins.k),
            c if c == BPF_JMP | BPF_JGE | BPF_K => pc += jump(a >= ins.k),
            c if c == BPF_RET | BPF_K => return (ins.k, steps),
            other => panic!("unexpected instruction {other:#x}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The reference: the OCI profile read directly, rule by rule.

fn reference_action(action: LinuxSeccompAction, errno: Option<u32>) -> u32 {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    match action {
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActErrno => RET_ERRNO | errno,
        LinuxSeccompAction::ScmpActTrace => RET_TRACE | errno,
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActNotify => RET_USER_NOTIF,
    }
}

fn reference_holds(arg: &LinuxSeccompArg, args: &[u64; 6]) -> bool {
    let x = args[arg.index()];
    let v = arg.value();
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => x != v,
        LinuxSeccompOperator::ScmpCmpLt => x < v,
        LinuxSeccompOperator::ScmpCmpLe => x <= v,
        LinuxSeccompOperator::ScmpCmpEq => x == v,
        LinuxSeccompOperator::ScmpCmpGe => x >= v,
        LinuxSeccompOperator::ScmpCmpGt => x > v,
        LinuxSeccompOperator::ScmpCmpMaskedEq => x & v == arg.value_two().unwrap_or(0),
    }
}

/// The profile's entries by call number, in profile order: `(action, args)`.
struct Reference {
    default: u32,
    entries: std::collections::HashMap<u32, Vec<(u32, Vec<LinuxSeccompArg>)>>,
}

impl Reference {
    fn new(profile: &LinuxSeccomp) -> Self {
        let default = reference_action(profile.default_action(), profile.default_errno_ret());
        let mut entries: std::collections::HashMap<u32, Vec<_>> = Default::default();
        for entry in profile.syscalls().as_deref().unwrap_or_default() {
            let action = reference_action(entry.action(), entry.errno_ret());
            for name in entry.names() {
                if let Some(nr) = syscalls_x86_64::number(name) {
                    let args = entry.args().clone().unwrap_or_default();
                    entries.entry(nr).or_default().push((action, args));
                }
            }
        }
        Reference { default, entries }
    }

    fn decide(&self, data: &Data) -> u32 {
        if data.arch != AUDIT_ARCH_X86_64 {
            return RET_KILL_PROCESS;
        }
        if data.nr == u32::MAX {
            return self.default;
        }
        if data.nr >= X32_SYSCALL_BIT {
            return RET_KILL_PROCESS;
        }
        let mut unconditional = None;
        let mut conditional: Vec<(u32, Vec<LinuxSeccompArg>)> = Vec::new();
        for (action, args) in self.entries.get(&data.nr).into_iter().flatten() {
            if *action == self.default {
                continue;
            }
            let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
            indexes.sort_unstable();
            let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
            if args.is_empty() {
                unconditional.get_or_insert(*action);
            } else if repeated {
                conditional.extend(args.iter().map(|a| (*action, vec![*a])));
            } else {
                conditional.push((*action, args.clone()));
            }
        }
        if let Some(action) = unconditional {
            return action;
        }
        conditional
            .iter()
            .find(|(_, args)| args.iter().all(|a| reference_holds(a, &data.args)))
            .map_or(self.default, |(action, _)| *action)
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Values around every constant the rules for call `nr` compare with, plus random ones.
fn interesting_values(profile: &LinuxSeccomp, nr: u32, rng: &mut Rng) -> Vec<u64> {
    let mut values = vec![0, 1, u64::MAX, u32::MAX as u64, 1 << 32, 1 << 63];
    for entry in profile.syscalls().as_deref().unwrap_or_default() {
        if !entry
            .names()
            .iter()
            .any(|n| syscalls_x86_64::number(n) == Some(nr))
        {
            continue;
        }
        for arg in entry.args().as_deref().unwrap_or_default() {
            for v in [arg.value(), arg.value_two().unwrap_or(0)] {
                for delta in [0u64, 1, u64::MAX, 1 << 32, (1 << 32) - 1] {
                    values.push(v.wrapping_add(delta));
                    values.push(v ^ delta);
                }
                values.push(v | (1 << 40));
                values.push(!v);
            }
        }
    }
    for _ in 0..4 {
        values.push(rng.next());
    }
    values.sort_unstable();
    values.dedup();
    values
}

/// Compares compiled program and reference on every call number of the table,
/// numbers around it, other architectures, and argument values near the
/// constants each call's rules compare with. Returns the most instructions any
/// input ran.
fn check_equivalent(profile: &LinuxSeccomp) -> usize {
    let filter = compile(profile).expect("compile");
    validate(filter.instructions());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut numbers: Vec<u32> = (0..600).collect();
    numbers.extend([
        X32_SYSCALL_BIT - 1,
        X32_SYSCALL_BIT,
        X32_SYSCALL_BIT + 39,
        u32::MAX - 1,
        u32::MAX,
    ]);
    let reference = Reference::new(profile);
    let mut worst = 0;
    let mut check = |data: Data| {
        let (got, steps) = run(filter.instructions(), &data);
        let want = reference.decide(&data);
        assert_eq!(
            got,
            want,
            "{data:x?} ({:?})",
            syscalls_x86_64::name(data.nr)
        );
        worst = worst.max(steps);
    };
    for &nr in &numbers {
        check(Data::x86_64(nr, [0; 6]));
        check(Data::x86_64(nr, [rng.next(); 6]));
    }
    for arch in [
        0x4000_0003, /* i386 */
        0xc000_00b7, /* aarch64 */
        0,
    ] {
        check(Data {
            nr: 0,
            arch,
            args: [0; 6],
        });
    }
    // Every call with argument rules, with arguments drawn from the interesting values.
    let mut conditional: Vec<u32> = profile
        .syscalls()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|entry| entry.args().as_ref().is_some_and(|a| !a.is_empty()))
        .flat_map(|entry| {
            entry
                .names()
                .iter()
                .filter_map(|n| syscalls_x86_64::number(n))
        })
        .collect();
    conditional.sort_unstable();
    conditional.dedup();
    for &nr in &conditional {
        let values = interesting_values(profile, nr, &mut rng);
        let mut indexes: Vec<usize> = profile
            .syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|entry| {
                entry
                    .names()
                    .iter()
                    .any(|n| syscalls_x86_64::number(n) == Some(nr))
            })
            .flat_map(|entry| entry.args().clone().unwrap_or_default())
            .map(|arg| arg.index())
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        for &v in &values {
            for &index in &indexes {
                let mut args = [rng.next(); 6];
                args[index] = v;
                check(Data::x86_64(nr, args));
                let mut args = [v; 6];
                args[index] = values[(rng.next() as usize) % values.len()];
                check(Data::x86_64(nr, args));
            }
        }
    }
    worst
}

// ---------------------------------------------------------------------------
// Building profiles in tests.

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    args: &[(usize, LinuxSeccompOperator, u64, u64)],
) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|n| n.to_string()).collect());
    syscall.set_action(action);
    if !args.is_empty() {
        syscall.set_args(Some(
            args.iter()
                .map(|&(index, op, value, value_two)| {
                    LinuxSeccompArgBuilder::default()
                        .index(index)
                        .op(op)
                        .value(value)
                        .value_two(value_two)
                        .build()
                        .unwrap()
                })
                .collect(),
        ));
    }
    syscall
}

fn with_errno(mut syscall: LinuxSyscall, errno: u32) -> LinuxSyscall {
    syscall.set_errno_ret(Some(errno));
    syscall
}

fn profile(default: LinuxSeccompAction, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(default);
    profile.set_syscalls(Some(syscalls));
    profile
}

/// What the compiled default profile answers for `name(args)`.
fn decide(filter: &CompiledFilter, name: &str, args: [u64; 6]) -> u32 {
    let nr = syscalls_x86_64::number(name).unwrap_or_else(|| panic!("no syscall {name}"));
    run(filter.instructions(), &Data::x86_64(nr, args)).0
}

const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;

use LinuxSeccompAction::*;
use LinuxSeccompOperator::*;

// ---------------------------------------------------------------------------
// The default profile.

#[test]
fn security_default_profile_matches_docker() {
    let profile = docker_default_profile();
    assert_eq!(profile.default_action(), ScmpActErrno);
    assert_eq!(profile.default_errno_ret(), Some(libc::EPERM as u32));
    let filter = compile(&profile).unwrap();
    let allowed = |name: &str| decide(&filter, name, [0; 6]) == RET_ALLOW;

    for name in [
        "read",
        "write",
        "openat",
        "close",
        "mmap",
        "execve",
        "exit_group",
        "futex",
        "epoll_wait",
        "accept4",
        "getpid",
        "rt_sigreturn",
        "io_uring_setup",
        "chroot",
        "arch_prctl",
        "fchmodat2",
        "statx",
        "ptrace",
        "process_vm_readv",
        "setuid",
        "capset",
        "seccomp",
    ] {
        assert!(allowed(name), "{name} should be allowed");
    }
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "reboot",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "pivot_root",
        "swapon",
        "acct",
        "settimeofday",
        "clock_settime",
        "iopl",
        "ioperm",
        "open_by_handle_at",
        "sethostname",
        "syslog",
        "fsopen",
        "move_mount",
        "open_tree",
        "kcmp",
        "pidfd_getfd",
        "vhangup",
        "mbind",
        "lookup_dcookie",
        "quotactl",
        "nfsservctl",
        "uselib",
        "_sysctl",
    ] {
        assert_eq!(
            decide(&filter, name, [0; 6]),
            EPERM,
            "{name} should be refused"
        );
    }

    // clone: plain fork/thread flags yes, any namespace flag no.
    let fork_flags = (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
    let thread_flags = (libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID) as u64;
    assert_eq!(
        decide(&filter, "clone", [fork_flags, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        decide(&filter, "clone", [thread_flags, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    for ns in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
    ] {
        let flags = fork_flags | ns as u64;
        assert_eq!(
            decide(&filter, "clone", [flags, 0, 0, 0, 0, 0]),
            EPERM,
            "{ns:#x}"
        );
    }
    // clone3: ENOSYS, so that glibc falls back to clone.
    assert_eq!(
        decide(&filter, "clone3", [0; 6]),
        RET_ERRNO | libc::ENOSYS as u32
    );

    // socket: everything but AF_VSOCK.
    assert_eq!(
        decide(&filter, "socket", [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        decide(&filter, "socket", [libc::AF_UNIX as u64, 1, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        decide(&filter, "socket", [libc::AF_VSOCK as u64, 1, 0, 0, 0, 0]),
        EPERM
    );

    // personality: the five harmless values.
    for value in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(
            decide(&filter, "personality", [value, 0, 0, 0, 0, 0]),
            RET_ALLOW,
            "{value:#x}"
        );
    }
    for value in [
        0x0040_0000u64, /* READ_IMPLIES_EXEC */
        0x0004_0000,    /* ADDR_NO_RANDOMIZE */
        1 << 32,
    ] {
        assert_eq!(
            decide(&filter, "personality", [value, 0, 0, 0, 0, 0]),
            EPERM,
            "{value:#x}"
        );
    }
}

#[test]
fn security_profile_follows_capabilities() {
    let mut caps = super::super::capabilities::default_capabilities()
        .bounding()
        .clone()
        .unwrap();
    caps.insert(Capability::SysAdmin);
    caps.insert(Capability::SysPtrace);
    caps.remove(&Capability::SysChroot);
    let filter = compile(&docker_profile_for_capabilities(&caps)).unwrap();
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "sethostname",
        "bpf",
        "clone3",
        "kcmp",
    ] {
        assert_eq!(decide(&filter, name, [0; 6]), RET_ALLOW, "{name}");
    }
    let newns = (libc::CLONE_NEWNS | libc::SIGCHLD) as u64;
    assert_eq!(decide(&filter, "clone", [newns, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(decide(&filter, "chroot", [0; 6]), EPERM);
    assert_eq!(decide(&filter, "reboot", [0; 6]), EPERM);
}

#[test]
fn security_default_profile_round_trips_through_json() {
    let profile = docker_default_profile();
    let json = serde_json::to_string_pretty(&profile).unwrap();
    assert!(json.contains("\"defaultAction\": \"SCMP_ACT_ERRNO\""));
    assert!(json.contains("\"defaultErrnoRet\": 1"));
    assert!(json.contains("SCMP_CMP_MASKED_EQ"));
    let back: LinuxSeccomp = serde_json::from_str(&json).unwrap();
    assert_eq!(back, profile);
    let a = compile(&profile).unwrap();
    let b = compile(&back).unwrap();
    assert_eq!(a.instructions().len(), b.instructions().len());
    // An unknown action never reaches compile: the spec does not parse.
    let bad = json.replacen("SCMP_ACT_ERRNO", "SCMP_ACT_EXPLODE", 1);
    assert!(serde_json::from_str::<LinuxSeccomp>(&bad).is_err());
}

#[test]
fn security_default_profile_compiles_small_and_fast() {
    let profile = docker_default_profile();
    let filter = compile(&profile).unwrap();
    validate(filter.instructions());
    let worst = check_equivalent(&profile);

    const ROUNDS: u32 = 300;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(docker_default_profile());
    }
    let build = start.elapsed() / ROUNDS;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(compile(std::hint::black_box(&profile)).unwrap());
    }
    let compile_time = start.elapsed() / ROUNDS;
    println!(
        "seccomp default profile: {} BPF instructions, at most {} run per system call; \
         build profile {:?}, compile {:?} (mean of {ROUNDS})",
        filter.len(),
        worst,
        build,
        compile_time
    );
    assert!(filter.len() < 400, "{} instructions", filter.len());
    assert!(worst < 40, "{worst} instructions for one system call");
}

#[test]
fn security_disassembly_reads_like_bpf_asm() {
    let filter = compile(&docker_default_profile()).unwrap();
    let text = filter.disassemble();
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), filter.len());
    assert!(
        lines[0].contains("ld [4]") && lines[0].contains("architecture"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("jeq #0xc000003e"), "{}", lines[1]);
    assert!(text.contains("; allow") && text.contains("; errno 1") && text.contains("; errno 38"));
    assert!(text.contains("and #0x7e020000"), "the clone namespace mask");
}

// ---------------------------------------------------------------------------
// The compiler on other profiles.

#[test]
fn security_compile_every_operator_and_action() {
    let p = profile(
        ScmpActAllow,
        vec![
            rule(&["read"], ScmpActErrno, &[(0, ScmpCmpEq, 0x1_0000_0005, 0)]),
            rule(&["write"], ScmpActKillProcess, &[(1, ScmpCmpNe, 7, 0)]),
            rule(
                &["openat"],
                ScmpActTrap,
                &[(2, ScmpCmpLt, 0x2_0000_0000, 0)],
            ),
            rule(&["close"], ScmpActLog, &[(3, ScmpCmpLe, 0xffff_ffff, 0)]),
            with_errno(
                rule(
                    &["mmap"],
                    ScmpActTrace,
                    &[(4, ScmpCmpGe, 0x8000_0000_0000_0001, 0)],
                ),
                42,
            ),
            rule(&["munmap"], ScmpActKill, &[(5, ScmpCmpGt, 3, 0)]),
            rule(
                &["brk"],
                ScmpActKillThread,
                &[(0, ScmpCmpMaskedEq, 0xff00_0000_00ff, 0x1200_0000_0034)],
            ),
            // Several arguments: all must hold.
            with_errno(
                rule(
                    &["ioctl"],
                    ScmpActErrno,
                    &[
                        (0, ScmpCmpEq, 1, 0),
                        (1, ScmpCmpGt, 100, 0),
                        (2, ScmpCmpMaskedEq, 6, 4),
                    ],
                ),
                13,
            ),
            // The same argument twice: either may hold.
            with_errno(
                rule(
                    &["dup"],
                    ScmpActErrno,
                    &[(0, ScmpCmpEq, 3, 0), (0, ScmpCmpEq, 9, 0)],
                ),
                9,
            ),
            // Several rules for one call: the first that holds decides.
            with_errno(rule(&["lseek"], ScmpActErrno, &[(2, ScmpCmpEq, 1, 0)]), 21),
            with_errno(rule(&["lseek"], ScmpActErrno, &[(2, ScmpCmpGe, 1, 0)]), 22),
            // A rule without arguments wins over rules with them, before or after.
            with_errno(
                rule(&["getpid", "gettid"], ScmpActErrno, &[(0, ScmpCmpEq, 0, 0)]),
                5,
            ),
            with_errno(rule(&["getpid"], ScmpActErrno, &[]), 6),
            with_errno(rule(&["getpid"], ScmpActErrno, &[]), 7),
            // Repeating the default action changes nothing.
            rule(&["gettid"], ScmpActAllow, &[]),
            // Masks that can never match, and a mask that always does.
            rule(
                &["pipe"],
                ScmpActKillProcess,
                &[(0, ScmpCmpMaskedEq, 0xf0, 0x0f)],
            ),
            rule(
                &["pipe2"],
                ScmpActKillProcess,
                &[(0, ScmpCmpMaskedEq, 0, 0)],
            ),
            // Names x86_64 does not have are skipped.
            rule(
                &["chown32", "cacheflush", "no_such_call"],
                ScmpActKillProcess,
                &[],
            ),
        ],
    );
    check_equivalent(&p);

    let filter = compile(&p).unwrap();
    assert_eq!(decide(&filter, "getpid", [0; 6]), RET_ERRNO | 6);
    assert_eq!(decide(&filter, "gettid", [0; 6]), RET_ERRNO | 5);
    assert_eq!(decide(&filter, "gettid", [1, 0, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(decide(&filter, "dup", [9, 0, 0, 0, 0, 0]), RET_ERRNO | 9);
    assert_eq!(decide(&filter, "lseek", [0, 0, 1, 0, 0, 0]), RET_ERRNO | 21);
    assert_eq!(decide(&filter, "lseek", [0, 0, 5, 0, 0, 0]), RET_ERRNO | 22);
    assert_eq!(
        decide(&filter, "mmap", [0, 0, 0, 0, u64::MAX, 0]),
        RET_TRACE | 42
    );
    assert_eq!(
        decide(&filter, "pipe2", [123, 0, 0, 0, 0, 0]),
        RET_KILL_PROCESS
    );
    assert_eq!(decide(&filter, "pipe", [0x0f, 0, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn security_compile_long_programs_with_far_jumps() {
    // Every other call with three argument rules: ~2000 instructions, so the
    // binary search and the shared returns are far apart (trampolines).
    let mut syscalls = Vec::new();
    for (i, (name, _)) in syscalls_x86_64::SYSCALLS.iter().enumerate().step_by(2) {
        let v = i as u64;
        syscalls.push(with_errno(
            rule(&[name], ScmpActErrno, &[(0, ScmpCmpEq, v, 0)]),
            (i % 200) as u32 + 1,
        ));
        syscalls.push(rule(
            &[name],
            ScmpActKillThread,
            &[(1, ScmpCmpGt, v << 33, 0)],
        ));
        syscalls.push(rule(
            &[name],
            ScmpActLog,
            &[(2, ScmpCmpMaskedEq, 0xff, v & 0xff)],
        ));
    }
    let p = profile(ScmpActAllow, syscalls);
    let filter = compile(&p).unwrap();
    assert!(filter.len() > 1000, "{} instructions", filter.len());
    let trampolines = filter
        .instructions()
        .iter()
        .filter(|i| i.code == BPF_JMP | BPF_JA)
        .count();
    assert!(
        trampolines > 0,
        "no long jump was needed: the test lost its point"
    );
    check_equivalent(&p);
}

#[test]
fn security_compile_errors_name_the_problem() {
    // notify needs an agent to answer, and cannot be the default
    let mut p = profile(ScmpActErrno, vec![rule(&["read"], ScmpActNotify, &[])]);
    let err = compile(&p).unwrap_err();
    assert!(
        matches!(err, SecurityError::SeccompNotifyWithoutListener),
        "{err}"
    );
    p.set_listener_path(Some("/run/agent.sock".into()));
    p.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagTsync]));
    // a listener fd comes back; with TSYNC the kernel wants TSYNC_ESRCH too
    assert_eq!(compile(&p).unwrap().flags(), 1 | 8 | 16);
    let err = compile(&profile(ScmpActNotify, vec![])).unwrap_err();
    assert!(
        matches!(err, SecurityError::UnsupportedSeccompAction(_)),
        "{err}"
    );

    let err = compile(&profile(
        ScmpActErrno,
        vec![with_errno(rule(&["read"], ScmpActAllow, &[]), 1)],
    ))
    .unwrap_err();
    assert!(err.to_string().contains("read"), "{err}");

    let err = compile(&profile(
        ScmpActErrno,
        vec![rule(&["read"], ScmpActAllow, &[(6, ScmpCmpEq, 0, 0)])],
    ))
    .unwrap_err();
    assert!(
        matches!(err, SecurityError::SeccompArgumentIndex { index: 6, .. }),
        "{err}"
    );

    let err = compile(&profile(
        ScmpActErrno,
        vec![with_errno(rule(&["read"], ScmpActErrno, &[]), 70000)],
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            SecurityError::SeccompErrnoOutOfRange { errno: 70000, .. }
        ),
        "{err}"
    );

    let mut p = profile(ScmpActKillProcess, vec![]);
    p.set_default_errno_ret(Some(1));
    assert!(matches!(
        compile(&p),
        Err(SecurityError::SeccompErrnoNotAllowed { .. })
    ));

    let mut p = profile(ScmpActErrno, vec![]);
    p.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]));
    assert_eq!(compile(&p).unwrap().flags(), 32);
    p.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    ]));
    assert_eq!(compile(&p).unwrap().flags(), 2 | 4);

    // Too many rules for the kernel.
    let many = (0..3000u64)
        .map(|v| rule(&["read"], ScmpActKillProcess, &[(0, ScmpCmpEq, v, 0)]))
        .collect();
    assert!(matches!(
        compile(&profile(ScmpActAllow, many)),
        Err(SecurityError::SeccompFilterTooLarge(_))
    ));

    // An empty profile is a single decision.
    let filter = compile(&profile(ScmpActAllow, vec![])).unwrap();
    check_equivalent(&profile(ScmpActAllow, vec![]));
    assert_eq!(decide(&filter, "mount", [0; 6]), RET_ALLOW);
}

// ---------------------------------------------------------------------------
// The kernel.

/// In a child: no_new_privs, then the default filter, then probes.
#[test]
fn security_default_filter_in_child() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let filter = compile(&docker_default_profile()).unwrap();
    let code = in_child(|| {
        if super::super::set_no_new_privs().is_err() {
            return 10;
        }
        if install(&filter).is_err() {
            return 11;
        }
        // SAFETY: plain system calls in the forked child; anything that would
        // succeed wrongly only affects this child's private copies.
        unsafe {
            if libc::getpid() <= 0 {
                return 12;
            }
            if libc::unshare(libc::CLONE_NEWNS) == 0 || errno() != libc::EPERM {
                return 13;
            }
            let rc = libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            if rc == 0 || errno() != libc::EPERM {
                return 14;
            }
            if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) != -1
                || errno() != libc::ENOSYS
            {
                return 15;
            }
            if libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) != -1 || errno() != libc::EPERM {
                return 16;
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                return 17;
            }
            libc::close(fd);
            if libc::personality(0xffff_ffff) < 0 {
                return 18;
            }
            if libc::personality(0x0040_0000) != -1 || errno() != libc::EPERM {
                return 19;
            }
            // A namespace-creating clone is refused ...
            let rc = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUTS | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
            if rc == 0 {
                libc::_exit(99); // the filter let it through: we are the new child
            }
            if rc != -1 || errno() != libc::EPERM {
                return 20;
            }
            // ... a plain fork is not.
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(7);
            }
            let mut status = 0;
            if pid < 0
                || libc::waitpid(pid, &mut status, 0) != pid
                || !libc::WIFEXITED(status)
                || libc::WEXITSTATUS(status) != 7
            {
                return 21;
            }
            if libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, 0usize, 0usize) != -1
                || errno() != libc::EPERM
            {
                return 22;
            }
        }
        0
    });
    assert_eq!(code, 0, "child failed at step {code}");
}

/// Without no_new_privs (and with CAP_SYS_ADMIN, as root has) the kernel still
/// takes a filter; without both it refuses, with a clear error.
#[test]
fn security_install_needs_no_new_privs_in_child() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let filter = compile(&profile(ScmpActAllow, vec![])).unwrap();
    let code = in_child(|| {
        // Lose CAP_SYS_ADMIN but keep root's uid: only no_new_privs is missing.
        let mut caps = super::super::capabilities::default_capabilities();
        caps.set_bounding(None);
        if super::super::capabilities::apply(&caps).is_err() {
            return 10;
        }
        if super::super::no_new_privs() {
            return 0; // inherited; nothing to check here
        }
        match install(&filter) {
            Err(SecurityError::SeccompNeedsNoNewPrivs) => {}
            _ => return 11,
        }
        if super::super::set_no_new_privs().is_err() || install(&filter).is_err() {
            return 12;
        }
        0
    });
    assert_eq!(code, 0, "child failed at step {code}");
}

/// x32 numbers kill the process (they would alias x86_64 calls otherwise).
#[test]
fn security_x32_syscalls_are_killed_in_child() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let filter = compile(&docker_default_profile()).unwrap();
    let code = in_child(|| {
        if super::super::set_no_new_privs().is_err() || install(&filter).is_err() {
            return 10;
        }
        // SAFETY: a raw system call; the filter kills the process before it runs.
        unsafe { libc::syscall(X32_SYSCALL_BIT as libc::c_long | libc::SYS_getpid) };
        11
    });
    assert_eq!(code, 128 + libc::SIGSYS, "child exit {code}");
}
