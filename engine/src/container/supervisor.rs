//! The supervisor owns one running container: it creates the process, copies
//! its output into the log (and to the terminal when attached), waits for the
//! exit, and records it. Detached containers get it as a small re-executed
//! process; `run` without `-d` is its own supervisor.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::Spec;

use super::logs::LogWriter;
use super::record::{Container, State, Status};
use super::restart::{self, RestartPolicy};
use super::terminal::{self, RawMode};
use super::{signals, ContainerError, Result};
use crate::runtime::{self, Launch, RootfsSource, Stdio};
use crate::store::atomic::read_json;
use crate::util::poll;
use crate::util::procfs;
use crate::util::time::now_rfc3339;

/// How the supervisor talks to whoever started it.
pub enum Attach {
    /// Copy output to our own stdout/stderr too; stdin is ours when -i.
    Terminal,
    /// Detached: report "started" or the error on this pipe, then go quiet.
    Detached(File),
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ContainerError::Supervisor(format!("pipe: {e}")))
}

/// Runs the container to completion, restarting it as its restart policy says.
/// Returns the last exit code (128+N for signal N).
pub fn supervise(container: &Container, attach: Attach) -> Result<i32> {
    let spec: Spec = read_json(&container.spec_path())?;
    let attached = matches!(attach, Attach::Terminal);
    let mut report = match attach {
        Attach::Detached(f) => Some(f),
        Attach::Terminal => None,
    };
    restart::clear_stopped_by_user(container);
    let policy = container.options.restart;
    let mut restarts = 0;
    let me = std::process::id() as i32;
    let code = loop {
        let (code, stopped) = run_once(container, &spec, attached, &mut report, restarts)?;
        if stopped || !policy.wants_restart(code, restarts) {
            break code;
        }
        std::thread::sleep(RestartPolicy::delay(restarts));
        // stopped, removed or started by someone else meanwhile: not ours to restart
        let still_ours = container
            .state()
            .is_ok_and(|s| s.status == Status::Exited && s.supervisor_pid == Some(me));
        if !still_ours || restart::stopped_by_user(container) {
            break code;
        }
        restarts += 1;
    };
    if container.options.auto_remove {
        let _ = container.discard();
        super::volumes::remove_anonymous(container);
    }
    Ok(code)
}

/// One run of the container: create the process, relay its output, wait for
/// it, record the exit. `report` (detached) hears "ok PID" or the error once.
/// Returns the exit code and whether the user stopped it (read before the exit
/// is recorded, so a `start` that follows the `stop` cannot be mistaken).
fn run_once(
    container: &Container,
    spec: &Spec,
    attached: bool,
    report: &mut Option<File>,
    restarts: u32,
) -> Result<(i32, bool)> {
    let devnull = File::open("/dev/null").map_err(|e| ContainerError::io("/dev/null", e))?;

    // Output: pipes we read, or with -t a pseudo-terminal the init opens in
    // the container's own devpts and whose master it sends us.
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // detached with -i: a stdin pipe that stays open for `attach` clients
    let stdin_pipe = match (
        attached,
        container.options.interactive,
        container.options.tty,
    ) {
        (false, true, false) => Some(pipe()?),
        _ => None,
    };
    let stdin_fd: RawFd = match (attached, container.options.interactive, &stdin_pipe) {
        (true, true, _) => 0,
        (_, _, Some((r, _))) => r.as_raw_fd(),
        _ => devnull.as_raw_fd(),
    };
    let stdio = Stdio {
        stdin: stdin_fd,
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
    };
    let launch = Launch::new(spec.clone(), stdio)
        .rootfs(RootfsSource::Overlay {
            lower: container.overlay_lowers(),
            upper: container.upper(),
            work: container.work(),
        })
        .die_with_parent(true)
        .layers_shifted(!container.shifted_lower_dirs.is_empty())
        .console(container.options.tty)
        // removed after this one run: its writable layer need not survive a
        // crash, so the overlay's unmount at exit skips syncing the disk
        .volatile_upper(container.options.auto_remove);
    if container.options.auto_remove {
        // a start that failed after its mount left the kernel's mark
        let _ = runtime::clear_volatile_mark(&container.work());
    }

    // this supervisor owns the container from here: until the record says
    // running, its cgroup fills while it is still `created`, and a check or a
    // recovery must know someone alive is starting it (or that it died doing so)
    let me = std::process::id() as i32;
    let mut starting = State::created();
    starting.supervisor_pid = Some(me);
    starting.supervisor_start_ticks = procfs::start_ticks(me);
    starting.restart_count = restarts;
    // `run --rm` is its own supervisor, and its create already recorded
    // exactly this: rewriting it would only free the old file's block
    if !already_recorded(container, &starting) {
        container.write_state(&starting)?;
    }
    let spawned = match super::network::setup(container)
        .map_err(|e| match e {
            super::ContainerError::Runtime(r) => r,
            other => runtime::RuntimeError::Init {
                exit_code: 125,
                message: other.to_string(),
            },
        })
        .and_then(|_| runtime::spawn(&launch))
    {
        Ok(s) => s,
        Err(e) => {
            let _ = super::network::release(container);
            let mut state = State::created();
            state.error = Some(e.to_string());
            state.restart_count = restarts;
            let _ = container.write_state(&state);
            if let Some(mut f) = report.take() {
                let _ = writeln!(f, "err {} {}", e.exit_code(), e);
            }
            return Err(e.into());
        }
    };
    drop(out_w);
    drop(err_w);
    drop(devnull);
    drop(launch);
    let stdin_w = stdin_pipe.map(|(_, w)| w);
    let pid = spawned.pid.as_raw();
    signals::forward_to(pid);
    // detached: clients come and go through `attach`. The socket exists before
    // the record says running and `run -d` returns, so an attach right after
    // finds it (it used to be made after, and a quick attach found nothing).
    let listener = (!attached).then(|| super::attach::listen(container));

    let mut state = State::created();
    state.status = Status::Running;
    state.pid = Some(pid);
    state.supervisor_pid = Some(me);
    state.supervisor_start_ticks = procfs::start_ticks(me);
    state.started_at = Some(now_rfc3339());
    state.restart_count = restarts;
    container.write_state(&state)?;
    crate::fault::point("run.started");
    if let Some(mut f) = report.take() {
        let _ = writeln!(f, "ok {pid}");
        drop(f);
        release_startup_code();
    }

    let mut log = LogWriter::open(&container.log_path())
        .map_err(|e| ContainerError::io(container.log_path(), e))?;
    match &spawned.console {
        Some(master) => {
            drop((out_r, err_r));
            match listener {
                Some(Ok(listener)) => {
                    super::attach::serve(master, &listener, &mut log);
                    super::attach::unlisten(container);
                }
                _ => {
                    let input = attached && container.options.interactive;
                    let raw = input.then(RawMode::enter);
                    terminal::relay(master, input, attached, None, Some(&mut log));
                    drop(raw);
                }
            }
        }
        None => match listener {
            Some(Ok(listener)) => {
                super::streams::serve(out_r, err_r, stdin_w, &listener, &mut log, false);
                super::attach::unlisten(container);
            }
            _ => relay(out_r, err_r, &mut log, attached),
        },
    }
    let _ = log.flush_all();

    let code = runtime::wait_exit(spawned.pid);
    signals::stop_forwarding();
    let stopped = restart::stopped_by_user(container);
    if let Some(cg) = &spawned.cgroup {
        // read for the exited record, which a `--rm` container does not get
        if !container.options.auto_remove {
            if let Ok(usage) = cg.usage() {
                state.oom_killed = usage.oom_kills.unwrap_or(0) > 0;
                state.memory_peak_bytes = usage.memory_peak_bytes;
            }
        }
        let _ = cg.kill_all(libc::SIGKILL);
        if let Err(e) = cg.destroy() {
            tracing::warn!(container = %container.name, error = %e, "cgroup left for rm or recovery");
        }
    }
    let _ = super::network::release(container);
    state.status = Status::Exited;
    state.pid = None;
    state.exit_code = Some(code);
    state.finished_at = Some(now_rfc3339());
    // a `--rm` container's record goes next (supervise discards it; if we
    // die first, recovery does, its owner being dead): an exited record
    // nobody would read is not written
    if !container.options.auto_remove {
        container.write_state(&state)?;
    }
    Ok((code, stopped))
}

/// Whether the container's record already says exactly `state`.
fn already_recorded(container: &Container, state: &State) -> bool {
    let on_disk = read_json::<serde_json::Value>(&container.state_path());
    on_disk.is_ok_and(|v| serde_json::to_value(state).is_ok_and(|s| s == v))
}

/// A detached supervisor lives as long as its container, but most of the code it
/// ran to get here (argument parsing, spec building, cgroup setup) never runs
/// again. Executable mappings are clean copies of files, so dropping their pages
/// is safe: the few the relay loop needs fault back in from the page cache. This
/// keeps the supervisor's RSS near what it really uses (the memory lesson counts it).
fn release_startup_code() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let file_backed = fields.nth(3).is_some_and(|path| path.starts_with('/'));
        // only private, read-only executable file mappings: never data, never anon
        if perms != "r-xp" || !file_backed {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of our own, private and not
        // writable; MADV_DONTNEED only drops its pages, which refault unchanged.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// Copies both pipes into the log until the container closes them.
fn relay(out: OwnedFd, err: OwnedFd, log: &mut LogWriter, echo: bool) {
    let mut files = [Some(File::from(out)), Some(File::from(err))];
    let mut buf = vec![0u8; 32 * 1024];
    while files.iter().any(Option::is_some) {
        let fds = files
            .each_ref()
            .map(|f| f.as_ref().map_or(-1, |f| f.as_raw_fd()));
        let Ok(ready) = poll::wait_readable(&fds, None) else {
            break;
        };
        for i in (0..fds.len()).filter(|&i| ready[i]) {
            let Some(f) = files[i].as_mut() else { continue };
            match f.read(&mut buf) {
                Ok(0) | Err(_) => files[i] = None,
                Ok(k) => {
                    let _ = log.feed(i, &buf[..k]);
                    if echo {
                        let _ = if i == 0 {
                            std::io::stdout()
                                .write_all(&buf[..k])
                                .and_then(|_| std::io::stdout().flush())
                        } else {
                            std::io::stderr().write_all(&buf[..k])
                        };
                    }
                }
            }
        }
    }
}

/// Entry point of the re-executed supervisor: `twinbox __supervise ID` with the
/// report pipe on fd 3.
pub fn supervisor_main(container: &Container) -> i32 {
    // Fork once more so the starter can reap us at once and the supervisor is
    // nobody's zombie-to-be but init's.
    // SAFETY: the process is single-threaded here; the child continues normally.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(_) => return 125,
    }
    // SAFETY: fd 3 was set up by start_detached for this process alone.
    let report = unsafe { File::from_raw_fd(3) };
    match supervise(container, Attach::Detached(report)) {
        Ok(code) => code,
        Err(e) => e.exit_code(),
    }
}
