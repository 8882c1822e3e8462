//! Progress of a pull or push, reported per blob. The engine only reports; the
//! command line draws bars on a terminal or prints plain lines otherwise.

/// Receives progress from several download/upload threads at once.
pub trait Progress: Send + Sync {
    /// A blob starts moving; `id` is its short digest, `total` its size.
    fn start(&self, id: &str, action: &str, total: u64);
    /// `bytes` more bytes of blob `id` moved.
    fn advance(&self, id: &str, bytes: u64);
    /// Blob `id` is done (`status`: "pull complete", "already exists", "mounted from x").
    fn finish(&self, id: &str, status: &str);
    /// A line about the whole operation.
    fn message(&self, line: &str);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &str) {}
    fn message(&self, _: &str) {}
}

/// Counts bytes read through it into a [`Progress`], in steps that keep the
/// callback cheap.
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
    id: &'a str,
    unreported: u64,
}

impl<'a, R> ProgressReader<'a, R> {
    pub fn new(inner: R, progress: &'a dyn Progress, id: &'a str) -> Self {
        ProgressReader {
            inner,
            progress,
            id,
            unreported: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.unreported += n as u64;
        if n == 0 || self.unreported >= 256 * 1024 {
            self.progress.advance(self.id, self.unreported);
            self.unreported = 0;
        }
        Ok(n)
    }
}
