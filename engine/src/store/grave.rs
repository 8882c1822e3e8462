//! Deleting a directory already renamed out of sight (see [`super::grave_path`]).
//!
//! On a file system mounted with `discard` and no journal (this project's
//! machines: ext4 on virtio), every freed block is discarded synchronously
//! when the inode goes: each file with data and each directory costs one
//! round trip to the disk, about 0.2 ms on a quiet machine and several ms
//! under I/O load. A container's directory holds a dozen of them, and
//! `run --rm` waits for its removal. The round trips are independent, so
//! they are made at once from a few threads. An rmdir frees its directory
//! while holding the parent's lock, so rmdirs in one directory would still
//! queue: every entry is first opened (O_PATH), so unlink and rmdir only
//! drop names, and the blocks are freed when the descriptors are closed,
//! from several threads, outside any directory lock.
//!
//! Better still, nobody waits for them: once the names are gone the
//! directory is removed as far as anyone can see, and what remains is the
//! file system giving its blocks back, which a journalled ext4 does later,
//! at its commit, anyway. The descriptors are handed to a short-lived
//! child process that closes them and exits; the caller returns at once.
//! If that process cannot start, the threads do it.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// At most this many threads free blocks at once.
const MAX_THREADS: usize = 4;
/// Larger trees (a container that wrote many files) are removed the plain
/// way: holding a descriptor per entry would run into the file limit.
const MAX_ENTRIES: usize = 256;

/// Removes `grave` and everything under it, without following symlinks. A
/// crash part way leaves a smaller grave, which recovery removes like the
/// whole one.
pub fn remove_grave(grave: &Path) -> io::Result<()> {
    match remove_holding(grave) {
        Ok(true) => Ok(()),
        // too big, or something went wrong (a racing change, no descriptors
        // left): the plain serial walk finishes it and reports what is left
        Ok(false) | Err(_) => fs::remove_dir_all(grave),
    }
}

/// Ok(false): too many entries, nothing done.
fn remove_holding(grave: &Path) -> io::Result<bool> {
    let mut files = Vec::new();
    // the grave and every directory below it, each after its parent
    let mut dirs: Vec<PathBuf> = vec![grave.to_path_buf()];
    let mut next = 0;
    while next < dirs.len() {
        let dir = dirs[next].clone();
        next += 1;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(entry.path());
            }
            if files.len() + dirs.len() > MAX_ENTRIES {
                return Ok(false);
            }
        }
    }
    let mut held = Vec::with_capacity(files.len() + dirs.len());
    for p in files.iter().chain(&dirs) {
        held.push(open_path(p)?);
    }
    for f in &files {
        fs::remove_file(f)?;
    }
    for d in dirs.iter().rev() {
        fs::remove_dir(d)?;
    }
    if let Err(held) = close_in_background(held) {
        close_in_parallel(held);
    }
    Ok(true)
}

/// Closes the descriptors in a child process nobody waits for. The caller
/// goes on at once; a command exits soon after (init reaps the child), and a
/// process that lives on reaps its finished closers at its next removal, so
/// at most the closers still running are left. Gives the descriptors back if
/// no process could be made.
fn close_in_background(held: Vec<OwnedFd>) -> Result<(), Vec<OwnedFd>> {
    if held.is_empty() {
        return Ok(());
    }
    let mut closers = CLOSERS.lock().unwrap_or_else(|e| e.into_inner());
    closers.retain(|&pid| {
        // SAFETY: polls a child of ours without blocking.
        let done = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        done == 0
    });
    let mut fds: Vec<RawFd> = held.iter().map(AsRawFd::as_raw_fd).collect();
    fds.sort_unstable();
    // SAFETY: the child only makes async-signal-safe calls (close_range,
    // close, _exit) on memory prepared before the fork, so a multi-threaded
    // caller is fine.
    let child = unsafe { libc::fork() };
    match child {
        -1 => return Err(held),
        // SAFETY: as above.
        0 => unsafe {
            close_all_but(&fds);
            for &fd in &fds {
                libc::close(fd);
            }
            libc::_exit(0)
        },
        pid => closers.push(pid),
    }
    // our copies: the child holds the last references
    drop(held);
    Ok(())
}

/// The closer processes this process started and has not reaped yet.
static CLOSERS: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// Closes every descriptor except `keep` (sorted): the closer must not
/// hold the caller's pipes open (a reader of its output would wait for it).
fn close_all_but(keep: &[RawFd]) {
    let mut first: libc::c_uint = 0;
    for &fd in keep {
        let fd = fd as libc::c_uint;
        if fd > first {
            // SAFETY: close_range only closes descriptors of this process.
            unsafe { libc::syscall(libc::SYS_close_range, first, fd - 1, 0) };
        }
        first = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) };
}

/// The entry itself (a symlink is not followed), as a reference that keeps
/// its inode until closed.
fn open_path(p: &Path) -> io::Result<OwnedFd> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(p)
        .map(OwnedFd::from)
}

/// Closes the descriptors, spread over up to [`MAX_THREADS`] threads; those
/// of a thread that cannot start are closed here.
fn close_in_parallel(mut held: Vec<OwnedFd>) {
    let threads = held.len().min(MAX_THREADS);
    if threads <= 1 {
        return;
    }
    let chunk = held.len().div_ceil(threads);
    std::thread::scope(|scope| {
        while !held.is_empty() {
            let part: Vec<OwnedFd> = held.drain(..chunk.min(held.len())).collect();
            // on failure the closure, and the descriptors in it, are dropped here
            let _ = std::thread::Builder::new().spawn_scoped(scope, move || drop(part));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_nested_tree_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let grave = tmp.path().join("grave");
        fs::create_dir_all(grave.join("a/b/c/d")).unwrap();
        fs::create_dir_all(grave.join("e")).unwrap();
        for (i, f) in ["f", "a/g", "a/b/h", "a/b/c/d/i", "e/j"].iter().enumerate() {
            fs::write(grave.join(f), vec![b'x'; i * 5000]).unwrap();
        }
        std::os::unix::fs::symlink(&outside, grave.join("a/link")).unwrap();
        std::os::unix::fs::symlink(&outside, grave.join("a/b/c/link2")).unwrap();
        remove_grave(&grave).unwrap();
        assert!(!grave.exists());
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"x");
    }

    #[test]
    fn a_missing_grave_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let e = remove_grave(&tmp.path().join("nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
