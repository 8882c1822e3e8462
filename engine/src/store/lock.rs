//! The store lock: an exclusive flock on `<root>/lock`, held for a mutation.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{Result, StoreError};

#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        // SAFETY: flock on a file descriptor we own; the kernel drops the lock on close.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(StoreError::io(path, std::io::Error::last_os_error()));
        }
        Ok(StoreLock { _file: file })
    }
}
