//! How a VM's run ended, told the way a user reads it: the workload's exit
//! code, a stop, or why the guest never got there (with the console's last
//! lines and, on PVM hosts, why a stock kernel cannot boot).

use std::time::Duration;

use super::run::Finished;
use crate::host::{self, KvmKind};
use crate::vmm::VmEnd;
use twinbox_engine::util::text::last_lines;

/// The end of a VM's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The workload ended with this code.
    Exited(u8),
    /// Stopped on request (`vm stop`, a signal) before the workload reported.
    Stopped,
    /// The run timeout stopped it before the workload reported.
    TimedOut(Duration),
    /// The guest did not reach its init within the boot timeout.
    BootTimeout(Duration),
    /// The guest kernel crashed (triple fault).
    Crashed,
    /// KVM or the VMM failed.
    Failed(String),
    /// The guest reset without reporting an exit code.
    Reset,
}

impl Ending {
    pub(crate) fn of(run: &Finished) -> Ending {
        if let Some(code) = run.exit_code {
            return Ending::Exited(code);
        }
        match &run.outcome.end {
            VmEnd::Stopped => match run.timed_out_after {
                Some(limit) => Ending::TimedOut(limit),
                None => Ending::Stopped,
            },
            VmEnd::BootTimeout => Ending::BootTimeout(run.boot_timeout),
            VmEnd::TripleFault => Ending::Crashed,
            VmEnd::Failed(why) => Ending::Failed(why.clone()),
            VmEnd::Reset => Ending::Reset,
        }
    }

    /// What went wrong, in one clause; `None` when the workload ended or was
    /// stopped on request.
    pub fn failure(&self) -> Option<String> {
        Some(match self {
            Ending::Exited(_) | Ending::Stopped => return None,
            Ending::TimedOut(limit) => {
                format!("stopped after {} s without an exit code", limit.as_secs())
            }
            Ending::BootTimeout(limit) => {
                format!("did not reach its init within {} s", limit.as_secs())
            }
            Ending::Crashed => "kernel crashed (triple fault) before the workload ended".into(),
            Ending::Failed(why) => format!("failed: {why}"),
            Ending::Reset => {
                "reset without reporting an exit code (the guest init did not run?)".into()
            }
        })
    }
}

impl Finished {
    /// How the VM ended, in the terms a user reads.
    pub fn ending(&self) -> Ending {
        Ending::of(self)
    }

    /// Why VM `name` failed, with a hint on PVM hosts and the console's last
    /// `lines` lines; `None` when it did not fail.
    pub fn explain(&self, lines: usize) -> Option<String> {
        let failure = self.ending().failure()?;
        let hint = if host::kvm_kind() == KvmKind::Pvm {
            "; this host's KVM is PVM: only a PVM-enabled guest kernel boots here (stock kernels need a host with VT-x/AMD-V)"
        } else {
            ""
        };
        let flag = match self.ending() {
            Ending::BootTimeout(_) => " (--boot-timeout)",
            _ => "",
        };
        let tail = last_lines(&self.boot_tail, lines);
        let tail = if tail.trim().is_empty() {
            "(nothing)".to_string()
        } else {
            tail
        };
        Some(format!(
            "VM {} {failure}{flag}{hint}; last console output:\n{tail}",
            self.record.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_what_happened() {
        assert_eq!(Ending::Exited(3).failure(), None);
        assert_eq!(Ending::Stopped.failure(), None);
        assert!(Ending::BootTimeout(Duration::from_secs(2))
            .failure()
            .unwrap()
            .contains("did not reach its init within 2 s"));
        assert!(Ending::TimedOut(Duration::from_secs(9))
            .failure()
            .unwrap()
            .contains("after 9 s"));
    }
}
