//! What went wrong in the init, printed as one console line.

use std::fmt;
use std::io;

/// A failed step: what it tried, and the reason (the errno text for syscalls).
#[derive(Debug)]
pub struct Failure {
    pub what: String,
    pub why: String,
}

impl Failure {
    pub fn msg(what: impl Into<String>, why: impl Into<String>) -> Self {
        Failure {
            what: what.into(),
            why: why.into(),
        }
    }

    pub fn io(what: impl Into<String>, err: &io::Error) -> Self {
        Self::msg(what, errno_text(err))
    }

    /// The failure of the libc call that just returned -1.
    pub fn last_os(what: impl Into<String>) -> Self {
        Self::io(what, &io::Error::last_os_error())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.why)
    }
}

/// The system's text for an OS error ("No such file or directory"), without
/// Rust's " (os error 2)" suffix.
pub fn errno_text(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_drops_the_rust_suffix() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(errno_text(&e), "No such file or directory");
        let f = Failure::io("mount /proc", &e);
        assert_eq!(f.to_string(), "mount /proc: No such file or directory");
        let custom = io::Error::other("bad thing");
        assert_eq!(errno_text(&custom), "bad thing");
    }
}
