//! Seccomp: which system calls the container may make at all.
//!
//! [`docker_default_profile`] is Docker's default policy as an OCI
//! `linux.seccomp`; [`compile`] turns any OCI seccomp profile into a classic BPF
//! program for x86_64 (see `bpf.rs`), and [`install`] loads it into the kernel.
//!
//! Why not a library: `seccompiler` gives every rule of a filter the same action,
//! so it cannot express OCI profiles (allow most calls, `ENOSYS` for `clone3`,
//! `EPERM` by default); `libseccomp` can, but costs about 1 ms per container for
//! Docker's profile (10 ms with the x86/x32 sub-architectures), and the Debian 12
//! version does not know system calls newer than Linux 6.7 (`mseal`, `listmount`,
//! `setxattrat`, ...), which it would then silently refuse. The generator here
//! takes about 40 µs (release build) and uses the kernel's own x86_64 table.
//!
//! OCI semantics follow runc with libseccomp:
//! - a syscall name x86_64 does not have is skipped;
//! - rules whose action equals the default action are skipped (they change nothing);
//! - `args` of one rule must all hold (AND), except that when one argument index
//!   appears more than once, each comparison becomes a rule of its own (OR);
//! - the first rule without `args` for a call decides it; otherwise the first
//!   rule whose `args` hold; otherwise the default action;
//! - comparisons are unsigned 64-bit; `SCMP_CMP_MASKED_EQ` tests
//!   `(arg & value) == valueTwo` (as with runc, a 32-bit argument such as
//!   `socket`'s family is compared with its upper register half too, which the
//!   kernel ignores);
//! - `errnoRet` defaults to `EPERM` for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`,
//!   and is an error on any other action; `SCMP_ACT_KILL` kills the thread.
//!
//! Architectures: the filter is for x86_64 only, whatever `architectures` says.
//! System calls from i386 code (`int 0x80`) and x32 kill the process, as
//! libseccomp does for architectures a filter was not built for.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::{
    Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};

use super::SecurityError;

mod bpf;
mod docker_json;
mod listener;
mod profile;
mod syscalls_x86_64;

pub use docker_json::profile_from_docker_json;
pub use listener::{process_state, send_to_agent};
pub use profile::running_kernel;

/// The kernel's limit on the length of a BPF program (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;

// Return values (`linux/seccomp.h`).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0x0000_0000;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

// seccomp(2) operations and flags.
const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
const SECCOMP_FILTER_FLAG_LOG: u64 = 2;
const SECCOMP_FILTER_FLAG_SPEC_ALLOW: u64 = 4;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 8;
const SECCOMP_FILTER_FLAG_TSYNC_ESRCH: u64 = 16;
const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: u64 = 32;

/// A seccomp filter ready for [`install`]: a BPF program plus `seccomp(2)` flags.
#[derive(Clone)]
pub struct CompiledFilter {
    program: Vec<libc::sock_filter>,
    flags: u64,
}

impl CompiledFilter {
    /// The number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Whether the program is empty (never true for a compiled profile).
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }

    /// The BPF program.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.program
    }

    /// The flags passed to `seccomp(SECCOMP_SET_MODE_FILTER, flags, ..)`.
    pub fn flags(&self) -> u64 {
        self.flags
    }

    /// The program in the notation of the kernel's `bpf_dbg`/`bpf_asm`, one
    /// instruction per line, for lessons and debugging.
    pub fn disassemble(&self) -> String {
        bpf::disassemble(&self.program)
    }
}

impl fmt::Debug for CompiledFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledFilter")
            .field("instructions", &self.program.len())
            .field("flags", &self.flags)
            .finish()
    }
}

/// Docker's default seccomp profile for x86_64, for a container with Docker's
/// default capabilities: `EPERM` for every system call not allowed; `socket`
/// without `AF_VSOCK`; `personality` with the harmless values only; `clone`
/// without namespace flags and `clone3` failing with `ENOSYS` (no `CAP_SYS_ADMIN`);
/// `ptrace` on kernels ≥ 4.8; `chroot` (`CAP_SYS_CHROOT` is a default capability);
/// no `mount`, `umount2`, `unshare`, `setns`, `reboot`, `kexec_load`,
/// `init_module`, `bpf`, `perf_event_open`, `keyctl`, `userfaultfd`, ...
pub fn docker_default_profile() -> LinuxSeccomp {
    profile::default_profile()
}

/// Docker's default profile for a container whose bounding capability set is
/// `bounding`, as Docker adapts it to `--cap-add`/`--cap-drop`.
pub fn docker_profile_for_capabilities(bounding: &Capabilities) -> LinuxSeccomp {
    profile::profile_for_capabilities(bounding)
}

/// Every x86_64 system call this filter compiler knows, by name (the
/// kernel's table): what a profile's allow-list is measured against.
pub fn x86_64_syscall_names() -> impl Iterator<Item = &'static str> {
    syscalls_x86_64::SYSCALLS.iter().map(|(name, _)| *name)
}

/// A comparison operator on one system call argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// `args[index] <op> value`; for `MaskedEq`: `args[index] & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    index: u8,
    op: Op,
    value: u64,
    mask: u64,
}

/// One rule for one call: `action` if all `conds` hold.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    action: u32,
    conds: Vec<Cond>,
}

/// All rules for one call number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SyscallRules {
    /// The first rule without conditions: decides on its own.
    unconditional: Option<u32>,
    /// Rules with conditions, in profile order (ignored if `unconditional` is set).
    conditional: Vec<Rule>,
}

/// Compiles an OCI seccomp profile into a BPF program for x86_64.
///
/// Unknown system call names are skipped (they may belong to another
/// architecture or a newer kernel); an errno on an action without one, an
/// argument index above 5 or an unsupported flag is an error. `SCMP_ACT_NOTIFY`
/// needs `listenerPath` (the agent that answers the notifications) and cannot be
/// the default action (the runtime's own calls before exec would wait on it).
/// Call it before forking the container's init: it allocates, [`install`] does not.
pub fn compile(profile: &LinuxSeccomp) -> Result<CompiledFilter, SecurityError> {
    if profile.default_action() == LinuxSeccompAction::ScmpActNotify {
        return Err(SecurityError::UnsupportedSeccompAction(
            "SCMP_ACT_NOTIFY as the default action".into(),
        ));
    }
    let default = return_value(
        profile.default_action(),
        profile.default_errno_ret(),
        &|| "(default action)".to_string(),
    )?;
    let mut flags = filter_flags(profile.flags().as_deref().unwrap_or_default())?;
    let syscalls = profile.syscalls().as_deref().unwrap_or_default();
    if syscalls
        .iter()
        .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify)
    {
        if profile.listener_path().is_none() {
            return Err(SecurityError::SeccompNotifyWithoutListener);
        }
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // the kernel's way to combine TSYNC with a listener fd as the result
            flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    let rules = resolve(syscalls, default)?;
    let program = bpf::generate(&rules, default);
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SecurityError::SeccompFilterTooLarge(program.len()));
    }
    Ok(CompiledFilter { program, flags })
}

/// Installs `filter` on the calling thread (and, with the `TSYNC` flag, all its
/// threads). The filter stays for the life of the process and its children,
/// across `execve`.
///
/// Requires `no_new_privs` ([`set_no_new_privs`](super::set_no_new_privs)) unless
/// the caller has `CAP_SYS_ADMIN` (then [`SecurityError::SeccompNeedsNoNewPrivs`]).
/// With `no_new_privs`, install it last, after the user switch and
/// [`capabilities::apply`](super::capabilities::apply), so that the filter only
/// has to allow what the program needs (`execve` onwards); without it, install it
/// before `capabilities::apply` drops `CAP_SYS_ADMIN`. Performs no allocation.
///
/// A filter with `SCMP_ACT_NOTIFY` rules returns its listener descriptor
/// (close-on-exec): whoever holds it answers the notified calls; once every
/// copy is closed, those calls fail with `ENOSYS`.
pub fn install(filter: &CompiledFilter) -> Result<Option<OwnedFd>, SecurityError> {
    let program = libc::sock_fprog {
        len: filter.program.len() as libc::c_ushort,
        filter: filter.program.as_ptr().cast_mut(),
    };
    // SAFETY: `program` points to a valid BPF program that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            filter.flags,
            &program as *const libc::sock_fprog,
        )
    };
    if filter.flags & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 && rc >= 0 {
        // SAFETY: with NEW_LISTENER a non-negative result is a new descriptor we own.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(rc as RawFd) }));
    }
    if rc == 0 {
        return Ok(None);
    }
    if rc > 0 {
        return Err(SecurityError::SeccompThreadSync(rc));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EACCES) => Err(SecurityError::SeccompNeedsNoNewPrivs),
        // Kernels before 3.17 have no seccomp(2); prctl does the same without flags.
        Some(libc::ENOSYS) if filter.flags == 0 => {
            // SAFETY: as above.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    SECCOMP_MODE_FILTER,
                    &program as *const libc::sock_fprog,
                    0,
                    0,
                )
            };
            match rc {
                0 => Ok(None),
                _ => Err(SecurityError::SeccompInstall(io::Error::last_os_error())),
            }
        }
        _ => Err(SecurityError::SeccompInstall(err)),
    }
}

/// The `seccomp(2)` return value of an action; `what` names the rule in errors.
fn return_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    what: &dyn Fn() -> String,
) -> Result<u32, SecurityError> {
    let with_errno = |base: u32| {
        let errno = errno.unwrap_or(libc::EPERM as u32);
        if errno > 0xffff {
            return Err(SecurityError::SeccompErrnoOutOfRange {
                errno,
                syscall: what(),
            });
        }
        Ok(base | errno)
    };
    let plain = |value: u32| match errno {
        None => Ok(value),
        Some(_) => Err(SecurityError::SeccompErrnoNotAllowed {
            action: action.to_string(),
            syscall: what(),
        }),
    };
    match action {
        LinuxSeccompAction::ScmpActErrno => with_errno(RET_ERRNO),
        LinuxSeccompAction::ScmpActTrace => with_errno(RET_TRACE),
        LinuxSeccompAction::ScmpActAllow => plain(RET_ALLOW),
        LinuxSeccompAction::ScmpActLog => plain(RET_LOG),
        LinuxSeccompAction::ScmpActTrap => plain(RET_TRAP),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            plain(RET_KILL_THREAD)
        }
        LinuxSeccompAction::ScmpActKillProcess => plain(RET_KILL_PROCESS),
        LinuxSeccompAction::ScmpActNotify => plain(RET_USER_NOTIF),
    }
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> Result<u64, SecurityError> {
    flags.iter().try_fold(0, |all, flag| {
        Ok(all
            | match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => SECCOMP_FILTER_FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => SECCOMP_FILTER_FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                    SECCOMP_FILTER_FLAG_SPEC_ALLOW
                }
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
                }
            })
    })
}

/// Resolves names to x86_64 numbers and collects each number's rules.
fn resolve(
    syscalls: &[LinuxSyscall],
    default: u32,
) -> Result<BTreeMap<u32, SyscallRules>, SecurityError> {
    let mut table: BTreeMap<u32, SyscallRules> = BTreeMap::new();
    for entry in syscalls {
        let what = || entry.names().join(",");
        let action = return_value(entry.action(), entry.errno_ret(), &what)?;
        let args = entry.args().as_deref().unwrap_or_default();
        let mut conds = Vec::with_capacity(args.len());
        for arg in args {
            if arg.index() > 5 {
                return Err(SecurityError::SeccompArgumentIndex {
                    syscall: what(),
                    index: arg.index(),
                });
            }
            let (op, value, mask) = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value(), u64::MAX),
                LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value(), u64::MAX),
                LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value(), u64::MAX),
                LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value(), u64::MAX),
                LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value(), u64::MAX),
                LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value(), u64::MAX),
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    (Op::MaskedEq, arg.value_two().unwrap_or(0), arg.value())
                }
            };
            conds.push(Cond {
                index: arg.index() as u8,
                op,
                value,
                mask,
            });
        }
        if action == default {
            continue; // as runc: a rule that repeats the default changes nothing
        }

        // One comparison per argument: all must hold. An argument compared
        // twice: any comparison may hold (runc's rule, needed for e.g.
        // "personality is 0 or 8" written as one entry).
        let repeated = (0..6).any(|i| conds.iter().filter(|c| c.index == i).count() > 1);
        let alternatives: Vec<Vec<Cond>> = if repeated {
            conds.iter().map(|cond| vec![*cond]).collect()
        } else {
            vec![conds]
        };

        for name in entry.names() {
            let Some(nr) = syscalls_x86_64::number(name) else {
                tracing::trace!(syscall = %name, "seccomp: no such system call on x86_64, skipped");
                continue;
            };
            let rules = table.entry(nr).or_default();
            for conds in &alternatives {
                if conds.is_empty() {
                    rules.unconditional.get_or_insert(action);
                } else if rules.unconditional.is_none() {
                    rules.conditional.push(Rule {
                        action,
                        conds: conds.clone(),
                    });
                }
            }
        }
    }
    for rules in table.values_mut() {
        if rules.unconditional.is_some() {
            rules.conditional.clear();
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests;
