//! A user namespace of the container's own: root inside is an ordinary user
//! outside. clone(2) makes the namespace with the others (which it then owns);
//! the parent writes the child's `uid_map` and `gid_map` from
//! `linux.uidMappings`/`gidMappings` (a process may map only its own id
//! itself), and the child then becomes root of its namespace.

use std::io::Write;

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::failure::{InitError, Step};
use super::namespaces::NamespacePlan;
use super::{Result, RuntimeError};

fn mappings(spec: &Spec) -> (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>) {
    let linux = spec.linux().as_ref();
    (
        linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default(),
        linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default(),
    )
}

/// Mappings go with a new user namespace, and a new one needs both.
pub fn validate(spec: &Spec, plan: &NamespacePlan) -> Result<()> {
    let (uids, gids) = mappings(spec);
    let new_user = plan.has_new(LinuxNamespaceType::User);
    if !new_user && (!uids.is_empty() || !gids.is_empty()) {
        return Err(RuntimeError::Spec(
            "linux.uidMappings/gidMappings need a user namespace: add {\"type\": \"user\"} to linux.namespaces".into(),
        ));
    }
    if new_user && (uids.is_empty() || gids.is_empty()) {
        return Err(RuntimeError::Spec(
            "a new user namespace needs linux.uidMappings and linux.gidMappings: map at least container id 0".into(),
        ));
    }
    for m in uids.iter().chain(&gids) {
        if m.size() == 0 {
            return Err(RuntimeError::Spec(format!(
                "id mapping {} -> {} has size 0: give it a size of at least 1",
                m.container_id(),
                m.host_id()
            )));
        }
    }
    Ok(())
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Parent: writes the child's uid_map and gid_map (each in one write, as
/// the kernel requires).
pub fn write_maps(pid: i32, spec: &Spec) -> std::result::Result<(), String> {
    let (uids, gids) = mappings(spec);
    write_map_lists(pid, &uids, &gids)
}

/// [`write_maps`] from the mappings themselves.
pub fn write_map_lists(
    pid: i32,
    uids: &[LinuxIdMapping],
    gids: &[LinuxIdMapping],
) -> std::result::Result<(), String> {
    for (file, text) in [("uid_map", map_text(uids)), ("gid_map", map_text(gids))] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("write {path} ({}): {e}", text.trim().replace('\n', ", ")))?;
    }
    Ok(())
}

/// Child, once mapped: become root of the namespace (with every capability
/// in it), with no supplementary groups of the host's.
pub fn become_root() -> Step {
    nix::unistd::setgroups(&[])
        .map_err(|e| InitError::setup("setgroups in the user namespace", e))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| InitError::setup("setgid 0 in the user namespace (is gid 0 mapped?)", e))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| InitError::setup("setuid 0 in the user namespace (is uid 0 mapped?)", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxIdMappingBuilder, LinuxNamespaceBuilder, SpecBuilder,
    };

    fn spec(user_ns: bool, maps: bool) -> Spec {
        let mut ns = vec![LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()
            .unwrap()];
        if user_ns {
            ns.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::User)
                    .build()
                    .unwrap(),
            );
        }
        let m = vec![LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(100000u32)
            .size(65536u32)
            .build()
            .unwrap()];
        let mut linux = LinuxBuilder::default().namespaces(ns);
        if maps {
            linux = linux.uid_mappings(m.clone()).gid_mappings(m);
        }
        SpecBuilder::default()
            .linux(linux.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn mappings_and_user_namespace_go_together() {
        for (user_ns, maps, ok) in [
            (true, true, true),
            (false, false, true),
            (true, false, false),
            (false, true, false),
        ] {
            let s = spec(user_ns, maps);
            let plan = NamespacePlan::from_spec(&s).unwrap();
            assert_eq!(
                validate(&s, &plan).is_ok(),
                ok,
                "user_ns {user_ns} maps {maps}"
            );
        }
    }

    #[test]
    fn map_lines_are_container_host_size() {
        let (uids, _) = mappings(&spec(true, true));
        assert_eq!(map_text(&uids), "0 100000 65536\n");
    }
}
