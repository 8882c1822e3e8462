//! Threads of the VMM process (vCPUs, virtio I/O, the watchdog, helpers that
//! enter a network namespace) get stacks smaller than a huge page.
//!
//! Rust's default thread stack is 2 MiB. Where transparent huge pages are
//! `always` and the kernel does not exempt thread stacks from them (Linux
//! before 6.7, as Debian 12's 6.1 in the nested environment), a stack that
//! lands 2 MiB-aligned (glibc places one right below each 64 MiB-aligned
//! malloc arena) is backed by one huge page on its first touch: 2 MiB
//! resident for a thread that uses a few KiB. Measured in the nested machine,
//! that was the whole growth of the VMM's memory beyond guest RAM from 4.4 to
//! 6.4 MiB (/proc/PID/smaps: one 2 MiB anonymous mapping, fully resident,
//! right below an arena). A mapping smaller than 2 MiB never holds a huge
//! page, so every thread the VMM starts goes through here. The size is also
//! below a quarter of the default: glibc hands a new thread a cached stack
//! of an exited one up to four times the size asked for, and a 1 MiB ask
//! got a cached 2 MiB stack (this module's test caught it).

use std::io;
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle};

/// Stack size of every VMM thread: several times what the deepest of them
/// uses (debug builds included), and a quarter of a huge page at most.
pub const STACK_BYTES: usize = 256 << 10;

fn builder(name: &str) -> Builder {
    Builder::new()
        .name(name.to_string())
        .stack_size(STACK_BYTES)
}

/// Starts a named thread with a [`STACK_BYTES`] stack.
pub fn spawn<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    builder(name).spawn(f)
}

/// [`spawn`] for a thread of `scope`.
pub fn spawn_scoped<'scope, 'env, F, T>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    f: F,
) -> io::Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    builder(name).spawn_scoped(scope, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack glibc gave the thread is below a huge page (read from the
    /// thread's own attributes) even after threads with default 2 MiB stacks
    /// ended (their stacks are cached), and the name is the thread's.
    #[test]
    fn threads_get_small_named_stacks() {
        for _ in 0..4 {
            std::thread::spawn(|| std::hint::black_box([0u8; 4096]).len())
                .join()
                .unwrap();
        }
        let (name, size) = spawn("tbx-small", || {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
            let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
            // SAFETY: attributes of the calling thread, read into locals and
            // destroyed after use.
            unsafe {
                assert_eq!(
                    libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()),
                    0
                );
                assert_eq!(
                    libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size),
                    0
                );
                libc::pthread_attr_destroy(attr.as_mut_ptr());
            }
            (std::thread::current().name().map(str::to_string), size)
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(name.as_deref(), Some("tbx-small"));
        assert!((STACK_BYTES..2 << 20).contains(&size), "{size}");
        let scoped = std::thread::scope(|s| {
            spawn_scoped(s, "tbx-scoped", || {
                std::thread::current().name().map(str::to_string)
            })
            .unwrap()
            .join()
            .unwrap()
        });
        assert_eq!(scoped.as_deref(), Some("tbx-scoped"));
    }
}
