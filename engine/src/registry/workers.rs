//! A few threads working through a list of jobs (layer downloads, uploads).
//! The first error stops the rest: jobs not yet started are dropped and running
//! ones see the stop flag through [`Abortable`].

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::Result;

/// Runs `work` on every job with at most `workers` threads; returns the first error.
pub fn run_all<T: Send>(
    jobs: Vec<T>,
    workers: usize,
    work: impl Fn(T, &AtomicBool) -> Result<()> + Sync,
) -> Result<()> {
    let queue = Mutex::new(VecDeque::from(jobs));
    let stop = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    let threads = workers.max(1).min(queue.lock().unwrap().len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some(job) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                if let Err(e) = work(job, &stop) {
                    stop.store(true, Ordering::Relaxed);
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A reader that fails once another job has failed, so a long download stops.
pub struct Abortable<'a, R> {
    pub inner: R,
    pub stop: &'a AtomicBool,
}

impl<R: Read> Read for Abortable<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("stopped: another transfer failed"));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryError;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runs_everything_or_stops_at_first_error() {
        let done = AtomicUsize::new(0);
        run_all((0..10).collect(), 3, |_, _| {
            done.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(done.load(Ordering::Relaxed), 10);

        let done = AtomicUsize::new(0);
        let err = run_all((0..100).collect(), 1, |i: i32, _| {
            done.fetch_add(1, Ordering::Relaxed);
            if i == 2 {
                return Err(RegistryError::Platform(crate::oci::PlatformError::Bad(
                    "x".into(),
                )));
            }
            Ok(())
        });
        assert!(err.is_err());
        assert_eq!(done.load(Ordering::Relaxed), 3);
        run_all(Vec::<i32>::new(), 3, |_, _| Ok(())).unwrap();
    }
}
