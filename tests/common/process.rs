//! Child processes of the integration tests: feeding one its standard input,
//! and stopping a daemon a test started.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` with `input` on its standard input and its stdout and stderr
/// captured. The input is written from a thread, so a child that writes much
/// before it reads cannot stall the test, and a child that exits without
/// reading it all (a refusal) is not an error here: the caller's assertions on
/// the output are what judge it.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Stops a daemon this test started: SIGTERM, up to `grace` for it to exit,
/// then SIGKILL; always reaped.
pub fn stop(child: &mut Child, grace: Duration) {
    // SAFETY: SIGTERM to a child this test started and has not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
