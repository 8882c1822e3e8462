//! Standard output for a command line that is often piped: `twinbox ps | head -1`
//! closes the pipe early, and that must end the program quietly with status 0,
//! not with a panic (std's `println!` panics on EPIPE because Rust ignores
//! SIGPIPE). SIGPIPE stays ignored on purpose: an attached `run` supervises its
//! container and must live on to record the exit even when its reader is gone.

use std::io::{ErrorKind, Write};

/// Writes to stdout; a closed reader ends the program with status 0.
pub fn print(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        quit_on_write_error(&e);
    }
}

/// Ends the program for a failed write to stdout: quietly with 0 when the reader
/// went away, with a one-line message and 1 otherwise (e.g. a full disk).
pub fn quit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("twinbox: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// True when the error (or one of its causes) is a closed output pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe)
    })
}

/// Output written by library crates through std's macros still panics on a
/// closed pipe; that panic is not a bug of ours to report, so it ends quietly.
pub fn quiet_broken_pipe_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
