//! `pause`/`unpause`: the cgroup freezer stops every process of the container
//! where it stands (no signal the processes could see) and lets them go on.

use super::lifecycle::cgroup_of;
use super::record::{Container, Status};
use super::{ContainerError, Result};

fn running_cgroup(c: &Container) -> Result<crate::cgroups::Cgroup> {
    let s = c.state()?;
    if s.status != Status::Running {
        return Err(ContainerError::NotRunning(c.name.clone()));
    }
    cgroup_of(c)
        .ok_or_else(|| ContainerError::Supervisor(format!("container {} has no cgroup", c.name)))
}

pub fn pause(c: &Container) -> Result<()> {
    let cg = running_cgroup(c)?;
    if cg.is_frozen() {
        return Err(ContainerError::Paused(c.name.clone()));
    }
    Ok(cg.set_frozen(true)?)
}

pub fn unpause(c: &Container) -> Result<()> {
    let cg = running_cgroup(c)?;
    if !cg.is_frozen() {
        return Err(ContainerError::NotPaused(c.name.clone()));
    }
    Ok(cg.set_frozen(false)?)
}

/// Whether the container is running and frozen.
pub fn is_paused(c: &Container) -> bool {
    c.state().is_ok_and(|s| s.status == Status::Running)
        && cgroup_of(c).is_some_and(|cg| cg.is_frozen())
}
