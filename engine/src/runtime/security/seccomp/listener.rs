//! The seccomp agent handshake (OCI runtime spec, `linux.seccomp.listenerPath`):
//! the runtime connects to the agent's UNIX socket and sends, in one message,
//! the container's process state as JSON with the filter's listener descriptor
//! attached (SCM_RIGHTS). The agent then answers the notified system calls.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::super::SecurityError;

/// The `ContainerProcessState` document the agent receives: `state` is the
/// container's OCI state (status `creating`), `fds` names the attached descriptor.
pub fn process_state(state: serde_json::Value, pid: i32, metadata: Option<&str>) -> String {
    let mut doc = serde_json::json!({
        "ociVersion": "1.0.2",
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata {
        doc["metadata"] = serde_json::Value::String(m.to_string());
    }
    doc.to_string()
}

/// Connects to the agent at `listener` and hands it `fd` with `process_state`.
pub fn send_to_agent(
    listener: &Path,
    process_state: &str,
    fd: BorrowedFd<'_>,
) -> Result<(), SecurityError> {
    let fail = |source: std::io::Error| SecurityError::SeccompAgent {
        path: listener.to_path_buf(),
        source,
    };
    let sock = UnixStream::connect(listener).map_err(fail)?;
    let fds = [fd.as_raw_fd()];
    let iov = [IoSlice::new(process_state.as_bytes())];
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| fail(e.into()))?;
    if sent != process_state.len() {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short write of the process state",
        )));
    }
    Ok(())
}
