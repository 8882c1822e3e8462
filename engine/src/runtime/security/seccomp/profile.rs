//! Docker's default seccomp profile for x86_64, as Rust data.
//!
//! The policy is Docker's (moby `profiles/seccomp`, including the 2024-2025
//! additions for Linux 6.5-6.13): every system call is refused with `EPERM`
//! unless listed here. The lists are grouped by purpose so a student can see
//! *what* a container may do; the groups themselves carry no meaning for the
//! kernel. Names x86_64 does not have (the `*32`/`*64`/`*_time64` variants of
//! 32-bit architectures) are kept, as in Docker's profile, and skipped by
//! [`compile`](super::compile).

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Always allowed, grouped by purpose.
#[rustfmt::skip]
const ALWAYS_ALLOWED: &[(&str, &[&str])] = &[
    (
        "files and directories",
        &[
            "access", "cachestat", "chdir", "chmod", "chown", "chown32", "close", "close_range",
            "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
            "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat",
            "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync",
            "flock", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync",
            "ftruncate", "ftruncate64", "futimesat", "getcwd", "getdents", "getdents64",
            "ioctl", "lchown", "lchown32", "link", "linkat", "_llseek", "lseek", "lstat",
            "lstat64", "mkdir", "mkdirat", "mknod", "mknodat", "name_to_handle_at",
            "newfstatat", "open", "openat", "openat2", "pread64", "preadv", "preadv2",
            "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat",
            "readv", "rename", "renameat", "renameat2", "rmdir", "sendfile", "sendfile64",
            "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat",
            "sync", "sync_file_range", "syncfs", "tee", "truncate", "truncate64", "umask",
            "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes",
            "vmsplice", "write", "writev",
        ],
    ),
    (
        "extended attributes",
        &[
            "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat",
            "lgetxattr", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr",
            "removexattr", "removexattrat", "setxattr", "setxattrat",
        ],
    ),
    (
        "waiting for events: poll, epoll, pipes, eventfd, inotify, timerfd, signalfd",
        &[
            "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
            "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
            "fanotify_mark", "inotify_add_watch", "inotify_init", "inotify_init1",
            "inotify_rm_watch", "_newselect", "pause", "pipe", "pipe2", "poll", "ppoll",
            "ppoll_time64", "pselect6", "pselect6_time64", "select", "signalfd", "signalfd4",
            "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
            "timerfd_settime64",
        ],
    ),
    (
        "asynchronous I/O",
        &[
            "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
            "io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
        ],
    ),
    (
        "memory",
        &[
            "brk", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret",
            "mincore", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap",
            "mseal", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
            "pkey_mprotect", "remap_file_pages",
        ],
    ),
    (
        "processes and threads",
        &[
            "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "futex",
            "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
            "get_robust_list", "get_thread_area", "getpgid", "getpgrp", "getpid", "getppid",
            "getpriority", "getrlimit", "getrusage", "getsid", "gettid", "ioprio_get",
            "ioprio_set", "landlock_add_rule", "landlock_create_ruleset",
            "landlock_restrict_self", "pidfd_open", "pidfd_send_signal", "prctl", "prlimit64",
            "process_mrelease", "restart_syscall", "rseq", "seccomp", "set_robust_list",
            "set_thread_area", "set_tid_address", "setpgid", "setpriority", "setrlimit",
            "setsid", "ugetrlimit", "uretprobe", "vfork", "wait4", "waitid", "waitpid",
        ],
    ),
    (
        "scheduling",
        &[
            "getcpu", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
            "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval",
            "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
            "sched_setparam", "sched_setscheduler", "sched_yield",
        ],
    ),
    (
        "user and group ids (the kernel still checks CAP_SETUID/CAP_SETGID)",
        &[
            "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups",
            "getgroups32", "getresgid", "getresgid32", "getresuid", "getresuid32", "getuid",
            "getuid32", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid",
            "setgid32", "setgroups", "setgroups32", "setregid", "setregid32", "setresgid",
            "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setuid",
            "setuid32",
        ],
    ),
    (
        "signals",
        &[
            "kill", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
            "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
            "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask", "sigreturn", "tgkill", "tkill",
        ],
    ),
    (
        "clocks and timers (setting the clock needs CAP_SYS_TIME)",
        &[
            "adjtimex", "alarm", "clock_adjtime", "clock_adjtime64", "clock_getres",
            "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
            "clock_nanosleep_time64", "getitimer", "gettimeofday", "nanosleep", "setitimer",
            "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
            "timer_gettime64", "timer_settime", "timer_settime64", "times",
        ],
    ),
    (
        "System V and POSIX IPC (namespaced by the IPC namespace)",
        &[
            "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
            "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
            "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
            "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget",
        ],
    ),
    (
        "sockets (socket itself is conditional, below)",
        &[
            "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
            "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
            "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall",
            "socketpair",
        ],
    ),
    (
        "system information",
        &["getrandom", "listmount", "statmount", "sysinfo", "uname"],
    ),
    ("x86 only: thread-local storage and LDT", &["arch_prctl", "modify_ldt"]),
];

/// Debugging other processes: before Linux 4.8, `ptrace` could bypass seccomp.
const PTRACE_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// Allowed only when the container holds the capability (the kernel would check
/// it anyway; the filter shrinks the kernel code a container can reach).
#[rustfmt::skip]
const CAPABILITY_GATED: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
            "mount", "mount_setattr", "move_mount", "open_tree", "open_tree_attr",
            "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname",
            "setns", "syslog", "umount", "umount2", "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "finit_module", "init_module"]),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// `personality(2)` values a program may set: Linux, 32-bit Linux (`PER_LINUX32`),
/// the 2.6-style `uname` (`UNAME26`) of both, and `0xffffffff` (query only).
/// Everything else (e.g. `READ_IMPLIES_EXEC`, `ADDR_NO_RANDOMIZE`) is refused.
const PERSONALITIES: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: sockets to the hypervisor are refused, whatever the capabilities.
const AF_VSOCK: u64 = 40;

/// The namespace flags of `clone(2)`. Without `CAP_SYS_ADMIN`, `clone` is allowed
/// only when none of them is set, and `clone3` (whose flags live in memory, out of
/// a filter's reach) fails with `ENOSYS`, so that glibc falls back to `clone`.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Docker's default profile for a container with Docker's default capabilities.
pub(super) fn default_profile() -> LinuxSeccomp {
    profile_for_capabilities(
        super::super::capabilities::default_capabilities()
            .bounding()
            .as_ref()
            .expect("the default capabilities have a bounding set"),
    )
}

/// Docker's default profile adjusted to a container's bounding capability set,
/// as Docker does for `--cap-add`: the capability-gated groups are added only for
/// capabilities the container holds, and the `clone`/`clone3` restrictions apply
/// only without `CAP_SYS_ADMIN`.
pub(super) fn profile_for_capabilities(bounding: &Capabilities) -> LinuxSeccomp {
    let mut syscalls: Vec<LinuxSyscall> = ALWAYS_ALLOWED
        .iter()
        .map(|(_, names)| allow(names, Vec::new()))
        .collect();

    if kernel_at_least(4, 8) {
        syscalls.push(allow(PTRACE_SINCE_4_8, Vec::new()));
    }
    syscalls.push(allow(
        &["socket"],
        vec![arg(0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK, 0)],
    ));
    for value in PERSONALITIES {
        syscalls.push(allow(
            &["personality"],
            vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, *value, 0)],
        ));
    }
    for (cap, names) in CAPABILITY_GATED {
        if bounding.contains(cap) {
            syscalls.push(allow(names, Vec::new()));
        }
    }
    if !bounding.contains(&Capability::SysAdmin) {
        syscalls.push(allow(
            &["clone"],
            vec![arg(
                0,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
                CLONE_NAMESPACE_FLAGS,
                0,
            )],
        ));
        let mut clone3 = allow(&["clone3"], Vec::new());
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(libc::EPERM as u32));
    // Only the native architecture: twinbox compiles x86_64 filters, and a
    // profile that listed x86/x32 would promise what the filter does not do
    // (32-bit and x32 system calls are refused; see `compile`).
    profile.set_architectures(Some(vec![Arch::ScmpArchX86_64]));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn allow(names: &[&str], args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|name| name.to_string()).collect());
    syscall.set_action(LinuxSeccompAction::ScmpActAllow);
    if !args.is_empty() {
        syscall.set_args(Some(args));
    }
    syscall
}

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(value_two)
        .build()
        .expect("every field is set")
}

/// Whether the running kernel is at least `major.minor` (true if unknown).
fn kernel_at_least(major: u32, minor: u32) -> bool {
    running_kernel() >= (major, minor)
}

/// The running kernel's (major, minor); (u32::MAX, 0) if unknown, so that
/// version checks pass as they would on a new kernel.
pub fn running_kernel() -> (u32, u32) {
    // SAFETY: uname fills a zeroed, properly sized struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is a valid utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (u32::MAX, 0);
    }
    // SAFETY: the kernel NUL-terminates release.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    parse_release(&release.to_string_lossy()).unwrap_or((u32::MAX, 0))
}

/// `"6.18.44-fc-v657"` → `(6, 18)`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_release_parsing() {
        assert_eq!(parse_release("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_release("4.8.0"), Some((4, 8)));
        assert_eq!(parse_release("5.10"), Some((5, 10)));
        assert_eq!(parse_release("garbage"), None);
        assert!(kernel_at_least(3, 10));
    }

    #[test]
    fn security_groups_do_not_repeat_names() {
        let mut seen = std::collections::HashSet::new();
        for (purpose, names) in ALWAYS_ALLOWED {
            for name in *names {
                assert!(
                    seen.insert(*name),
                    "{name} listed twice (again in {purpose})"
                );
            }
        }
        for (_, names) in CAPABILITY_GATED {
            for name in *names {
                let twice_ok = ["ptrace", "process_vm_readv", "process_vm_writev"];
                assert!(
                    !seen.contains(name) || twice_ok.contains(name),
                    "{name} is both always allowed and capability-gated"
                );
            }
        }
        assert!(
            !seen.contains("socket") && !seen.contains("personality") && !seen.contains("clone")
        );
    }
}
