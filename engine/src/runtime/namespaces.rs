//! Which namespaces the container gets: new ones come from clone(2) flags, existing
//! ones (a `path` in the spec) are joined with setns(2) before that.

use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::{Result, RuntimeError};

#[derive(Debug, Clone, Default)]
pub struct NamespacePlan {
    /// New namespaces to create with clone(2) (all but cgroup).
    pub new: Vec<LinuxNamespaceType>,
    /// The cgroup namespace is unshared after joining the cgroup, so that the
    /// container sees its own cgroup as "/".
    pub new_cgroup: bool,
    /// Existing namespaces to enter.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
    /// A new time namespace: clone(2) cannot make one, so the runtime
    /// unshares it for its children, writes the offsets, then clones.
    pub new_time: bool,
    /// `linux.timeOffsets` as /proc/PID/timens_offsets lines (clock, secs, nanosecs).
    pub time_offsets: Vec<(String, i64, u32)>,
}

fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

impl NamespacePlan {
    pub fn from_spec(spec: &Spec) -> Result<Self> {
        let mut plan = NamespacePlan::default();
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in list {
            let t = ns.typ();
            match (t, ns.path()) {
                (LinuxNamespaceType::Time, None) => plan.new_time = true,
                (LinuxNamespaceType::User, Some(_)) => {
                    return Err(RuntimeError::Spec(
                        "joining an existing user namespace is not supported: give the user namespace no path (a new one with linux.uidMappings)".into(),
                    ))
                }
                (LinuxNamespaceType::Pid, Some(_)) => {
                    return Err(RuntimeError::Spec(
                        "joining an existing pid namespace is not supported".into(),
                    ))
                }
                (_, Some(p)) => plan.join.push((t, p.clone())),
                (LinuxNamespaceType::Cgroup, None) => plan.new_cgroup = true,
                (_, None) => plan.new.push(t),
            }
        }
        let offsets = spec.linux().as_ref().and_then(|l| l.time_offsets().clone());
        for (clock, off) in offsets.unwrap_or_default() {
            if clock != "monotonic" && clock != "boottime" {
                return Err(RuntimeError::Spec(format!(
                    "linux.timeOffsets: unknown clock {clock:?}: use monotonic or boottime"
                )));
            }
            if !plan.new_time {
                return Err(RuntimeError::Spec(
                    "linux.timeOffsets needs a new time namespace: add {\"type\": \"time\"} to linux.namespaces".into(),
                ));
            }
            let nanos = off.nanosecs().unwrap_or(0);
            if nanos >= 1_000_000_000 {
                return Err(RuntimeError::Spec(format!(
                    "linux.timeOffsets.{clock}.nanosecs {nanos} must be below 1000000000"
                )));
            }
            plan.time_offsets
                .push((clock, off.secs().unwrap_or(0), nanos));
        }
        plan.time_offsets.sort();
        Ok(plan)
    }

    pub fn clone_flags(&self) -> CloneFlags {
        self.new
            .iter()
            .fold(CloneFlags::empty(), |acc, t| acc | flag(*t))
    }

    pub fn has_new(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    /// With a new user namespace, the namespaces joined by path that the
    /// host's user namespace owns (a CNI network's) are entered by the
    /// runtime around clone(2): from inside the new one, setns(2) to them
    /// needs capabilities the container's root does not have there.
    pub fn joined_by_parent(&self, t: LinuxNamespaceType) -> bool {
        self.has_new(LinuxNamespaceType::User)
            && matches!(
                t,
                LinuxNamespaceType::Network | LinuxNamespaceType::Ipc | LinuxNamespaceType::Uts
            )
    }

    /// True when the container keeps the host's network namespace.
    pub fn shares_host_network(&self) -> bool {
        !self.has_new(LinuxNamespaceType::Network)
            && !self
                .join
                .iter()
                .any(|(t, _)| *t == LinuxNamespaceType::Network)
    }
}
