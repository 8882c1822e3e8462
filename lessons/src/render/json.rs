//! `--json`: the lesson records as they are, and a way to keep standard output
//! for the JSON alone while the lesson still narrates (to standard error).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::report::LessonReport;

/// One lesson as a JSON object; several (a tour) as an array.
pub fn to_json(reports: &[LessonReport]) -> serde_json::Value {
    match reports {
        [one] => serde_json::to_value(one).unwrap_or_default(),
        many => serde_json::to_value(many).unwrap_or_default(),
    }
}

/// While alive, everything written to standard output (the lesson's
/// narration, a container's echoed output) goes to standard error instead;
/// [`StdoutForJson::finish`] writes the JSON to the real standard output.
pub struct StdoutForJson {
    saved: Option<OwnedFd>,
}

impl StdoutForJson {
    pub fn redirect() -> io::Result<StdoutForJson> {
        io::stdout().flush()?;
        // SAFETY: dup of our own fd 1; the new fd is owned by `saved` alone.
        let copy = unsafe { libc::dup(1) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `copy` is a fresh fd nobody else owns.
        let saved = unsafe { OwnedFd::from_raw_fd(copy) };
        // SAFETY: dup2 onto fd 1 replaces standard output for the whole process,
        // which is the point; fd 2 stays open.
        if unsafe { libc::dup2(2, 1) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(StdoutForJson { saved: Some(saved) })
    }

    /// Puts standard output back and writes `value` to it.
    pub fn finish(mut self, value: &serde_json::Value) -> io::Result<()> {
        self.restore()?;
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value).map_err(io::Error::other)?;
        writeln!(out)?;
        out.flush()
    }

    fn restore(&mut self) -> io::Result<()> {
        if let Some(saved) = self.saved.take() {
            io::stdout().flush()?;
            // SAFETY: puts the saved copy of the original fd 1 back in place.
            if unsafe { libc::dup2(saved.as_raw_fd(), 1) } < 0 {
                return Err(io::Error::last_os_error());
            }
            drop(File::from(saved));
        }
        Ok(())
    }
}

impl Drop for StdoutForJson {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}
