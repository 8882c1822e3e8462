//! Docker's JSON seccomp profile format (`--security-opt seccomp=FILE.json`,
//! moby's `profiles/seccomp/default.json`) turned into an OCI `linux.seccomp`
//! for one container, as dockerd does: `archMap` picks this machine's
//! architecture and its sub-architectures, and each `syscalls[]` entry applies
//! only when its `includes` hold (every listed capability in the container's
//! bounding set, this architecture listed, the kernel at least `minKernel`) and
//! its `excludes` do not (none of the capabilities held, this architecture not
//! listed). `name` (the old single-name form) is accepted as dockerd does.

use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::super::SecurityError;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: Option<LinuxSeccompAction>,
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    architectures: Vec<Arch>,
    #[serde(default, deserialize_with = "null_as_default")]
    arch_map: Vec<ArchEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    flags: Vec<LinuxSeccompFilterFlag>,
    listener_path: Option<std::path::PathBuf>,
    listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    syscalls: Vec<Syscall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchEntry {
    architecture: Arch,
    #[serde(default, deserialize_with = "null_as_default")]
    sub_architectures: Vec<Arch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default, deserialize_with = "null_as_default")]
    names: Vec<String>,
    name: Option<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    args: Vec<Arg>,
    #[serde(default, deserialize_with = "null_as_default")]
    includes: Filter,
    #[serde(default, deserialize_with = "null_as_default")]
    excludes: Filter,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    #[serde(default, deserialize_with = "null_as_default")]
    value: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    value_two: u64,
    op: LinuxSeccompOperator,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "null_as_default")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

/// Go's encoding/json reads `null` as an empty list or struct; so do we.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// This machine's architecture as Docker's profiles name it in
/// `includes.arches` (Go's GOARCH) and in `archMap`.
const GO_ARCH: &str = "amd64";
const NATIVE_ARCH: Arch = Arch::ScmpArchX86_64;

/// The profile in `text` for a container whose bounding set is `bounding`,
/// on a kernel of version `kernel` (major, minor).
pub fn profile_from_docker_json(
    text: &str,
    bounding: &Capabilities,
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, SecurityError> {
    let bad = |what: String| SecurityError::SeccompProfile(what);
    let profile: Profile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let default_action = profile
        .default_action
        .ok_or_else(|| bad("defaultAction is missing".into()))?;
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(bad(
            "both architectures and archMap are given: use one of them".into(),
        ));
    }
    let mut arches = profile.architectures;
    for entry in profile.arch_map {
        if entry.architecture == NATIVE_ARCH {
            arches.push(entry.architecture);
            arches.extend(entry.sub_architectures);
        }
    }
    let holds = |name: &str| -> Result<bool, SecurityError> {
        let cap = super::super::capabilities::capability_from_name(name)?;
        Ok(bounding.contains(&cap))
    };
    let mut syscalls = Vec::new();
    for (i, call) in profile.syscalls.into_iter().enumerate() {
        let mut names = call.names;
        match (call.name, names.is_empty()) {
            (Some(_), false) => {
                return Err(bad(format!(
                    "syscalls[{i}] has both name and names: use names"
                )))
            }
            (Some(name), true) => names.push(name),
            (None, _) => {}
        }
        let inc = &call.includes;
        let exc = &call.excludes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == GO_ARCH) {
            continue;
        }
        if exc.arches.iter().any(|a| a == GO_ARCH) {
            continue;
        }
        if let Some(min) = &inc.min_kernel {
            if kernel
                < parse_min_kernel(min).ok_or_else(|| {
                    bad(format!(
                        "syscalls[{i}]: minKernel {min:?} is not a version like 4.8"
                    ))
                })?
            {
                continue;
            }
        }
        let mut included = true;
        for cap in &inc.caps {
            included &= holds(cap)?;
        }
        for cap in &exc.caps {
            included &= !holds(cap)?;
        }
        if !included || names.is_empty() {
            continue;
        }
        let mut out = LinuxSyscall::default();
        out.set_names(names);
        out.set_action(call.action);
        out.set_errno_ret(call.errno_ret);
        if !call.args.is_empty() {
            let args = call
                .args
                .iter()
                .map(|a| {
                    LinuxSeccompArgBuilder::default()
                        .index(a.index)
                        .value(a.value)
                        .value_two(a.value_two)
                        .op(a.op)
                        .build()
                        .map_err(|e| bad(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            out.set_args(Some(args));
        }
        syscalls.push(out);
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(default_action);
    seccomp.set_default_errno_ret(profile.default_errno_ret);
    seccomp.set_architectures((!arches.is_empty()).then_some(arches));
    seccomp.set_flags((!profile.flags.is_empty()).then_some(profile.flags));
    seccomp.set_listener_path(profile.listener_path);
    seccomp.set_listener_metadata(profile.listener_metadata);
    seccomp.set_syscalls(Some(syscalls));
    // fails here, at create, rather than in the container's init
    super::compile(&seccomp)?;
    Ok(seccomp)
}

/// `"4.8"` → (4, 8).
fn parse_min_kernel(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
    let minor = minor.split('.').next()?;
    Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    fn bounding(caps: &[Capability]) -> Capabilities {
        caps.iter().copied().collect()
    }

    fn names(p: &LinuxSeccomp) -> Vec<Vec<String>> {
        p.syscalls()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|s| s.names().clone())
            .collect()
    }

    /// The shape of Docker's default.json: archMap, includes/excludes by
    /// capability, architecture and kernel version, args, errnoRet.
    const DOCKER_SHAPE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
        ],
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["process_vm_readv"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["ppc64le"]}},
            {"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"name": "uname", "action": "SCMP_ACT_ALLOW", "comment": "old form"}
        ]
    }"#;

    #[test]
    fn security_docker_profile_follows_capabilities_arches_and_kernel() {
        let p = profile_from_docker_json(DOCKER_SHAPE, &bounding(&[Capability::Chown]), (6, 1))
            .unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().clone().unwrap(),
            [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        assert_eq!(
            names(&p),
            [
                vec!["read", "write", "exit_group"],
                vec!["process_vm_readv"],
                vec!["personality"],
                vec!["arch_prctl"],
                vec!["clone"],
                vec!["clone3"],
                vec!["uname"],
            ]
        );
        let clone3 = &p.syscalls().as_ref().unwrap()[5];
        assert_eq!(clone3.errno_ret(), Some(38));
        let clone = &p.syscalls().as_ref().unwrap()[4];
        assert_eq!(
            clone.args().as_ref().unwrap()[0].op(),
            LinuxSeccompOperator::ScmpCmpMaskedEq
        );

        // with CAP_SYS_ADMIN: mount allowed, the clone restrictions gone;
        // on an old kernel: no process_vm_readv
        let p = profile_from_docker_json(DOCKER_SHAPE, &bounding(&[Capability::SysAdmin]), (4, 4))
            .unwrap();
        let n = names(&p);
        assert!(n.contains(&vec!["mount".to_string()]));
        assert!(!n.contains(&vec!["clone".to_string()]));
        assert!(!n.contains(&vec!["clone3".to_string()]));
        assert!(!n.contains(&vec!["process_vm_readv".to_string()]));
    }

    #[test]
    fn security_docker_profile_errors_name_the_problem() {
        let err = |text: &str| {
            profile_from_docker_json(text, &bounding(&[]), (6, 1))
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"syscalls": []}"#).contains("defaultAction is missing"));
        assert!(err("{").contains("seccomp profile"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
        )
        .contains("both architectures and archMap"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#
        )
        .contains("both name and names"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]}"#
        )
        .contains("seccomp profile"));
        assert!(err(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_NOPE"]}}]}"#
        )
        .contains("unknown capability"));
    }

    #[test]
    fn security_minimal_blocking_profile() {
        let p = profile_from_docker_json(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                              "args": null, "includes": {"caps": null}, "excludes": null}]}"#,
            &bounding(&[]),
            (6, 1),
        )
        .unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(names(&p), [vec!["mkdir", "mkdirat"]]);
        assert!(p.architectures().is_none());
    }
}
