//! Linux capabilities: Docker's default set, and applying an OCI
//! `process.capabilities` to the container's init before it execs.
//!
//! Root in a container is only as strong as its capabilities. Docker keeps 14 of
//! the 41 (`CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, `CAP_SYS_MODULE`, ... are gone), and
//! removes the rest from the *bounding* set, so that not even a set-user-ID binary
//! can get them back.

use std::io;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SecurityError;

/// Docker's default capabilities (moby `oci/caps/defaults.go`), in Docker's order.
pub const DOCKER_DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the OCI spec names, with its kernel name and bit number
/// (`include/uapi/linux/capability.h`), in bit order.
const TABLE: [(Capability, &str); 41] = [
    (Capability::Chown, "CAP_CHOWN"),
    (Capability::DacOverride, "CAP_DAC_OVERRIDE"),
    (Capability::DacReadSearch, "CAP_DAC_READ_SEARCH"),
    (Capability::Fowner, "CAP_FOWNER"),
    (Capability::Fsetid, "CAP_FSETID"),
    (Capability::Kill, "CAP_KILL"),
    (Capability::Setgid, "CAP_SETGID"),
    (Capability::Setuid, "CAP_SETUID"),
    (Capability::Setpcap, "CAP_SETPCAP"),
    (Capability::LinuxImmutable, "CAP_LINUX_IMMUTABLE"),
    (Capability::NetBindService, "CAP_NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "CAP_NET_BROADCAST"),
    (Capability::NetAdmin, "CAP_NET_ADMIN"),
    (Capability::NetRaw, "CAP_NET_RAW"),
    (Capability::IpcLock, "CAP_IPC_LOCK"),
    (Capability::IpcOwner, "CAP_IPC_OWNER"),
    (Capability::SysModule, "CAP_SYS_MODULE"),
    (Capability::SysRawio, "CAP_SYS_RAWIO"),
    (Capability::SysChroot, "CAP_SYS_CHROOT"),
    (Capability::SysPtrace, "CAP_SYS_PTRACE"),
    (Capability::SysPacct, "CAP_SYS_PACCT"),
    (Capability::SysAdmin, "CAP_SYS_ADMIN"),
    (Capability::SysBoot, "CAP_SYS_BOOT"),
    (Capability::SysNice, "CAP_SYS_NICE"),
    (Capability::SysResource, "CAP_SYS_RESOURCE"),
    (Capability::SysTime, "CAP_SYS_TIME"),
    (Capability::SysTtyConfig, "CAP_SYS_TTY_CONFIG"),
    (Capability::Mknod, "CAP_MKNOD"),
    (Capability::Lease, "CAP_LEASE"),
    (Capability::AuditWrite, "CAP_AUDIT_WRITE"),
    (Capability::AuditControl, "CAP_AUDIT_CONTROL"),
    (Capability::Setfcap, "CAP_SETFCAP"),
    (Capability::MacOverride, "CAP_MAC_OVERRIDE"),
    (Capability::MacAdmin, "CAP_MAC_ADMIN"),
    (Capability::Syslog, "CAP_SYSLOG"),
    (Capability::WakeAlarm, "CAP_WAKE_ALARM"),
    (Capability::BlockSuspend, "CAP_BLOCK_SUSPEND"),
    (Capability::AuditRead, "CAP_AUDIT_READ"),
    (Capability::Perfmon, "CAP_PERFMON"),
    (Capability::Bpf, "CAP_BPF"),
    (Capability::CheckpointRestore, "CAP_CHECKPOINT_RESTORE"),
];

/// The kernel's bit number of a capability.
pub fn capability_number(cap: Capability) -> u32 {
    // An exhaustive match: a capability added to oci-spec fails to compile here
    // until it gets its bit number.
    match cap {
        Capability::Chown => 0,
        Capability::DacOverride => 1,
        Capability::DacReadSearch => 2,
        Capability::Fowner => 3,
        Capability::Fsetid => 4,
        Capability::Kill => 5,
        Capability::Setgid => 6,
        Capability::Setuid => 7,
        Capability::Setpcap => 8,
        Capability::LinuxImmutable => 9,
        Capability::NetBindService => 10,
        Capability::NetBroadcast => 11,
        Capability::NetAdmin => 12,
        Capability::NetRaw => 13,
        Capability::IpcLock => 14,
        Capability::IpcOwner => 15,
        Capability::SysModule => 16,
        Capability::SysRawio => 17,
        Capability::SysChroot => 18,
        Capability::SysPtrace => 19,
        Capability::SysPacct => 20,
        Capability::SysAdmin => 21,
        Capability::SysBoot => 22,
        Capability::SysNice => 23,
        Capability::SysResource => 24,
        Capability::SysTime => 25,
        Capability::SysTtyConfig => 26,
        Capability::Mknod => 27,
        Capability::Lease => 28,
        Capability::AuditWrite => 29,
        Capability::AuditControl => 30,
        Capability::Setfcap => 31,
        Capability::MacOverride => 32,
        Capability::MacAdmin => 33,
        Capability::Syslog => 34,
        Capability::WakeAlarm => 35,
        Capability::BlockSuspend => 36,
        Capability::AuditRead => 37,
        Capability::Perfmon => 38,
        Capability::Bpf => 39,
        Capability::CheckpointRestore => 40,
    }
}

/// The kernel name of a capability, e.g. `"CAP_SYS_ADMIN"`.
pub fn capability_name(cap: Capability) -> &'static str {
    TABLE[capability_number(cap) as usize].1
}

/// The name of capability bit `number` (for error messages).
fn name_of_number(number: u32) -> &'static str {
    TABLE
        .get(number as usize)
        .map_or("a capability newer than twinbox knows", |entry| entry.1)
}

/// Parses a capability name as Docker's `--cap-add` does: case-insensitive, with
/// or without the `CAP_` prefix (`"CAP_NET_ADMIN"`, `"net_admin"`).
pub fn capability_from_name(name: &str) -> Result<Capability, SecurityError> {
    let bare = match name.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("CAP_") => &name[4..],
        _ => name,
    };
    TABLE
        .iter()
        .find(|(_, known)| known[4..].eq_ignore_ascii_case(bare))
        .map(|(cap, _)| *cap)
        .ok_or_else(|| SecurityError::UnknownCapability(name.to_string()))
}

/// Every capability we hold ourselves (a capability missing from our own
/// bounding set, like CAP_SYS_RESOURCE on some hosts, cannot be given), in the
/// bounding, effective and permitted sets: `--privileged`.
pub fn all_capabilities() -> LinuxCapabilities {
    let all: Capabilities = TABLE
        .iter()
        .map(|(cap, _)| *cap)
        .filter(|cap| in_bounding_set(capability_number(*cap)))
        .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(all.clone()));
    caps.set_effective(Some(all.clone()));
    caps.set_permitted(Some(all));
    caps.set_inheritable(None);
    caps.set_ambient(None);
    caps
}

/// `--cap-add`/`--cap-drop` on a capability set, as Docker does: `ALL` in
/// drop empties the set first, names in drop go, names in add come (`ALL` in
/// add gives every capability). Bounding, effective and permitted change together.
pub fn adjust(
    caps: &mut LinuxCapabilities,
    add: &[String],
    drop: &[String],
) -> Result<(), SecurityError> {
    let is_all = |n: &String| n.eq_ignore_ascii_case("ALL");
    let mut set: Capabilities = caps.bounding().clone().unwrap_or_default();
    if drop.iter().any(is_all) {
        set.clear();
    }
    for name in drop.iter().filter(|n| !is_all(n)) {
        set.remove(&capability_from_name(name)?);
    }
    if add.iter().any(is_all) {
        set.extend(all_capabilities().bounding().clone().unwrap_or_default());
    }
    for name in add.iter().filter(|n| !is_all(n)) {
        set.insert(capability_from_name(name)?);
    }
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    Ok(())
}

/// Docker's default capability set as an OCI `process.capabilities`: bounding,
/// effective and permitted hold the 14 defaults; inheritable and ambient are empty
/// (as current Docker/containerd do, so that `execve` of a non-root program does
/// not hand capabilities on).
pub fn default_capabilities() -> LinuxCapabilities {
    let defaults: Capabilities = DOCKER_DEFAULT_CAPABILITIES
        .iter()
        .map(|name| capability_from_name(name).expect("the default capability names are valid"))
        .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(defaults.clone()));
    caps.set_effective(Some(defaults.clone()));
    caps.set_permitted(Some(defaults));
    caps.set_inheritable(Some(Capabilities::new()));
    caps.set_ambient(Some(Capabilities::new()));
    caps
}

/// Lets capabilities survive the switch from root to the spec's non-root user.
///
/// Call it *before* `setgroups`/`setgid`/`setuid`, and call [`apply`] *after* them:
///
/// 1. `prepare_user_switch()` sets `PR_SET_KEEPCAPS`, so that `setuid` from root
///    to a non-zero uid keeps the permitted set (without it, the kernel clears
///    the permitted and effective sets).
/// 2. `setuid` still clears the effective and the ambient sets: that is why
///    [`apply`] must run afterwards. `apply` first raises the effective set back to
///    the permitted one (to use `CAP_SETPCAP` for the bounding set), then installs
///    the spec's sets, ambient last.
/// 3. The keep-capabilities flag is reset by the kernel at `execve`, so nothing
///    needs to clear it.
///
/// A container that stays root does not need this call.
pub fn prepare_user_switch() -> Result<(), SecurityError> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(SecurityError::KeepCapabilities(io::Error::last_os_error()));
    }
    Ok(())
}

/// Applies an OCI `process.capabilities` to the calling thread:
///
/// 1. every capability the running kernel knows but `bounding` does not list is
///    dropped from the bounding set (needs `CAP_SETPCAP`, which a root init holds);
/// 2. the inheritable, permitted and effective sets are set in one `capset(2)`;
/// 3. the ambient set is cleared, then each listed ambient capability raised
///    (those not both permitted and inheritable are skipped, as runc does).
///
/// A missing set (`None`) means the empty set. Capabilities newer than the running
/// kernel are skipped silently (a spec written for a newer kernel still runs).
/// Nothing is allocated unless an error is returned.
pub fn apply(caps: &LinuxCapabilities) -> Result<(), SecurityError> {
    let last = kernel_last_cap();
    let bounding = set_mask(caps.bounding().as_ref(), last);
    let effective = set_mask(caps.effective().as_ref(), last);
    let permitted = set_mask(caps.permitted().as_ref(), last);
    let inheritable = set_mask(caps.inheritable().as_ref(), last);
    let ambient = set_mask(caps.ambient().as_ref(), last);

    // After a setuid with keep-capabilities the effective set is empty but the
    // permitted set is intact: make the permitted capabilities usable again,
    // CAP_SETPCAP in particular, before touching the bounding set.
    let current = capget()?;
    if current.effective != current.permitted {
        capset(CapSets {
            effective: current.permitted,
            ..current
        })?;
    }

    // 1. The bounding set: what no execve (set-user-ID, file capabilities) can regain.
    for number in 0..=last {
        if bounding & (1 << number) != 0 || !in_bounding_set(number) {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, number as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return Err(SecurityError::DropBoundingCapability {
                cap: name_of_number(number),
                source: io::Error::last_os_error(),
            });
        }
    }

    // 2. Inheritable, permitted, effective together: the kernel checks
    //    effective ⊆ permitted against the *new* sets, so one call avoids any
    //    ordering problem between them.
    let missing = permitted & !current.permitted;
    if missing != 0 {
        return Err(SecurityError::SetCapabilities(io::Error::new(
            io::ErrorKind::PermissionDenied,
            NotHeld(name_of_number(missing.trailing_zeros())),
        )));
    }
    capset(CapSets {
        effective,
        permitted,
        inheritable,
    })?;

    // 3. Ambient: kept across execve of non-set-user-ID programs, even for non-root users.
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        // Kernels before 4.3 have no ambient set: nothing to clear, fine if nothing to raise.
        if !(ambient == 0 && err.raw_os_error() == Some(libc::EINVAL)) {
            return Err(SecurityError::ClearAmbientCapabilities(err));
        }
    }
    // The kernel only raises an ambient capability that is both permitted and
    // inheritable. runc's own `runc spec` lists ambient capabilities with an empty
    // inheritable set, and runc skips those; so do we, instead of failing.
    let raisable = ambient & permitted & inheritable;
    for number in 0..=last {
        if raisable & (1 << number) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE,
                number as libc::c_ulong,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(SecurityError::RaiseAmbientCapability {
                cap: name_of_number(number),
                source: io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// An explanation attached to `SetCapabilities` when the spec asks for a
/// capability the process does not hold (no allocation on the error path beyond
/// the `io::Error` box).
#[derive(Debug)]
struct NotHeld(&'static str);

impl std::fmt::Display for NotHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not in the permitted set of the process", self.0)
    }
}

impl std::error::Error for NotHeld {}

/// The highest capability number the running kernel knows (40 on Linux ≥ 5.9).
///
/// Probed with `PR_CAPBSET_READ`, which fails with `EINVAL` past the last one; this
/// works without `/proc` (unlike reading `/proc/sys/kernel/cap_last_cap`).
pub fn kernel_last_cap() -> u32 {
    let mut last = 0;
    for number in 0..64u32 {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, number as libc::c_ulong, 0, 0, 0) };
        if rc < 0 {
            break;
        }
        last = number;
    }
    last
}

/// Whether capability `number` is still in the calling thread's bounding set.
fn in_bounding_set(number: u32) -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_CAPBSET_READ, number as libc::c_ulong, 0, 0, 0) == 1 }
}

/// The bit mask of a capability set, leaving out capabilities past `last`.
fn set_mask(set: Option<&Capabilities>, last: u32) -> u64 {
    set.into_iter()
        .flatten()
        .map(|cap| capability_number(*cap))
        .filter(|number| *number <= last)
        .fold(0, |mask, number| mask | (1 << number))
}

/// The three per-thread sets `capget`/`capset` exchange, as 64-bit masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CapSets {
    effective: u64,
    permitted: u64,
    inheritable: u64,
}

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn capget() -> Result<CapSets, SecurityError> {
    let mut header = CapUserHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: header and data are valid for the kernel's version-3 layout.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(SecurityError::ReadCapabilities(io::Error::last_os_error()));
    }
    let join = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn capset(sets: CapSets) -> Result<(), SecurityError> {
    let mut header = CapUserHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |mask: u64, index: u32| (mask >> (32 * index)) as u32;
    let data = [0, 1].map(|index| CapUserData {
        effective: word(sets.effective, index),
        permitted: word(sets.permitted, index),
        inheritable: word(sets.inheritable, index),
    });
    // SAFETY: header and data are valid for the kernel's version-3 layout.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(SecurityError::SetCapabilities(io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::super::testutil::{errno, in_child, is_root};
    use super::*;

    fn mask_of(names: &[&str]) -> u64 {
        names.iter().fold(0, |mask, name| {
            mask | 1 << capability_number(capability_from_name(name).unwrap())
        })
    }

    #[test]
    fn security_docker_default_capabilities_are_the_14() {
        let mut names = DOCKER_DEFAULT_CAPABILITIES.to_vec();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "CAP_AUDIT_WRITE",
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_MKNOD",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SETFCAP",
                "CAP_SETGID",
                "CAP_SETPCAP",
                "CAP_SETUID",
                "CAP_SYS_CHROOT",
            ]
        );
        let caps = default_capabilities();
        for set in [caps.bounding(), caps.effective(), caps.permitted()] {
            let set = set.as_ref().unwrap();
            assert_eq!(set.len(), 14);
            assert!(set.contains(&Capability::NetBindService));
            assert!(!set.contains(&Capability::SysAdmin));
            assert!(!set.contains(&Capability::NetAdmin));
        }
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        // What the spec generator writes into config.json.
        let json = serde_json::to_value(&caps).unwrap();
        assert_eq!(json["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(json["ambient"], serde_json::json!([]));
    }

    #[test]
    fn security_capability_names_parse_like_docker() {
        assert_eq!(
            capability_from_name("CAP_CHOWN").unwrap(),
            Capability::Chown
        );
        assert_eq!(
            capability_from_name("net_admin").unwrap(),
            Capability::NetAdmin
        );
        assert_eq!(
            capability_from_name("Cap_Sys_Admin").unwrap(),
            Capability::SysAdmin
        );
        let err = capability_from_name("CAP_FLY").unwrap_err();
        assert!(matches!(&err, SecurityError::UnknownCapability(name) if name == "CAP_FLY"));
        assert!(err.to_string().contains("CAP_FLY"));
        assert!(capability_from_name("").is_err());
        assert!(capability_from_name("CAP_").is_err());
    }

    #[test]
    fn security_capability_numbers_match_the_kernel_headers() {
        for (number, (cap, name)) in TABLE.iter().enumerate() {
            assert_eq!(capability_number(*cap) as usize, number, "{name}");
            assert_eq!(capability_name(*cap), *name);
            // Cross-check with the `caps` crate's own table.
            let theirs = caps::Capability::from_str(name).unwrap();
            assert_eq!(theirs.index() as usize, number, "{name}");
            // And with oci-spec's spelling (without the prefix).
            assert_eq!(cap.to_string(), name[4..]);
        }
        assert!(
            kernel_last_cap() >= 36,
            "kernel_last_cap = {}",
            kernel_last_cap()
        );
    }

    #[test]
    fn security_capabilities_newer_than_the_kernel_are_skipped() {
        let caps: Capabilities = [
            Capability::Chown,
            Capability::Bpf,
            Capability::CheckpointRestore,
        ]
        .into_iter()
        .collect();
        assert_eq!(set_mask(Some(&caps), 40), 1 | 1 << 39 | 1 << 40);
        // A kernel whose last capability is CAP_AUDIT_READ (37) knows neither BPF nor CHECKPOINT_RESTORE.
        assert_eq!(set_mask(Some(&caps), 37), 1);
        assert_eq!(set_mask(None, 40), 0);
    }

    /// Drops CAP_SYS_ADMIN for real in a forked child and checks the kernel's view.
    #[test]
    fn security_apply_default_capabilities_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let caps = default_capabilities();
        let expected = mask_of(DOCKER_DEFAULT_CAPABILITIES);
        let code = in_child(|| {
            // A private UTS namespace first, so that a failed drop cannot rename the host.
            // SAFETY: plain system calls in the forked child.
            if unsafe { libc::unshare(libc::CLONE_NEWUTS) } != 0 {
                return 10;
            }
            if apply(&caps).is_err() {
                return 11;
            }
            let Ok(now) = capget() else { return 12 };
            if now.effective != expected || now.permitted != expected || now.inheritable != 0 {
                return 13;
            }
            if in_bounding_set(21) || !in_bounding_set(10) {
                return 14; // CAP_SYS_ADMIN must be gone, CAP_NET_BIND_SERVICE kept
            }
            let name = b"twinbox-test";
            // SAFETY: plain system call with a valid buffer.
            if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } == 0 {
                return 15;
            }
            if errno() != libc::EPERM {
                return 16;
            }
            // And there is no way back: raising CAP_SYS_ADMIN again must fail.
            let mut more = caps.clone();
            let mut permitted = more.permitted().clone().unwrap();
            permitted.insert(Capability::SysAdmin);
            more.set_permitted(Some(permitted));
            if apply(&more).is_ok() {
                return 17;
            }
            0
        });
        assert_eq!(code, 0, "child failed at step {code}");
    }

    /// The documented order for a non-root user: keepcaps, setuid, apply.
    #[test]
    fn security_capabilities_survive_user_switch_in_child() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let bind: Capabilities = [Capability::NetBindService].into_iter().collect();
        let mut caps = default_capabilities();
        caps.set_effective(Some(bind.clone()));
        caps.set_permitted(Some(bind.clone()));
        caps.set_inheritable(Some(bind.clone()));
        caps.set_ambient(Some(bind));
        let code = in_child(|| {
            if prepare_user_switch().is_err() {
                return 10;
            }
            // SAFETY: plain system calls in the forked child.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(65534, 65534, 65534) != 0
                    || libc::setresuid(65534, 65534, 65534) != 0
                {
                    return 11;
                }
            }
            let Ok(after_setuid) = capget() else {
                return 12;
            };
            if after_setuid.effective != 0 || after_setuid.permitted == 0 {
                return 13; // keepcaps kept permitted, setuid cleared effective
            }
            if apply(&caps).is_err() {
                return 14;
            }
            let Ok(now) = capget() else { return 15 };
            if now.effective != 1 << 10 || now.permitted != 1 << 10 || now.inheritable != 1 << 10 {
                return 16;
            }
            // SAFETY: prctl with integer arguments only.
            let in_ambient =
                unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_IS_SET, 10, 0, 0) };
            if in_ambient != 1 || in_bounding_set(21) {
                return 17;
            }
            0
        });
        assert_eq!(code, 0, "child failed at step {code}");
    }
}
