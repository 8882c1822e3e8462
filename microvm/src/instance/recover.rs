//! Finishing what dead twinbox processes left of VMs, as the engine's
//! `system::recover` does for containers: a record whose VMM died is marked
//! exited (or removed when it was `--rm`), and a record still Created by a
//! process that is gone (killed before it started the VMM) is finished the same
//! way. Runs whenever the CLI opens the store; cheap when there is nothing to do.

use twinbox_engine::store::Store;
use twinbox_engine::util::procfs;

use super::{finish, list, remove_dir, VmEnd, VmRecord, VmState};

/// Names of the VMs finished here.
pub fn recover(store: &Store) -> Vec<String> {
    let Ok(vms) = list(store) else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for mut vm in vms.into_iter().filter(abandoned) {
        let Ok(_lock) = store.lock() else {
            break;
        };
        // re-read under the lock: another command may have finished it already
        match VmRecord::load(&super::vms_dir(store), &vm.id) {
            Ok(now) if abandoned(&now) => vm = now,
            _ => continue,
        }
        let finished = if vm.auto_remove {
            remove_dir(store, &vm.id)
        } else {
            let why = "its twinbox process died".to_string();
            finish(store, &mut vm, None, VmEnd::Failed(why), None)
        };
        if finished.is_ok() {
            done.push(vm.name.clone());
        }
    }
    done
}

/// True for a VM nobody will finish: its VMM or its creator is gone.
fn abandoned(vm: &VmRecord) -> bool {
    match &vm.state {
        VmState::Running { .. } => !vm.is_running(),
        VmState::Created => vm
            .owner
            .is_some_and(|pid| procfs::start_ticks(pid).is_none()),
        VmState::Exited { .. } => false,
    }
}
