//! Container logs in Docker's json-file format: one JSON object per line with the
//! text, the stream and an RFC 3339 timestamp.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Splits a byte stream into lines and appends them to the log file.
pub struct LogWriter {
    path: PathBuf,
    /// Opened (made) at the first record: a container that prints nothing
    /// costs no file, whose inode a `run --rm` would make and free again
    /// (readers take a missing log for an empty one).
    file: Option<File>,
    pending: [Vec<u8>; 2],
}

/// Very long lines are cut into records of this size, as Docker does at 16 KiB.
const MAX_RECORD: usize = 16 * 1024;

impl LogWriter {
    /// A writer appending to `path`, which is made when the first record comes.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        // an existing log (a restart's, a `start` again) is appended to as before
        let file = match std::fs::OpenOptions::new().append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            pending: [Vec::new(), Vec::new()],
        })
    }

    fn file(&mut self) -> std::io::Result<&mut File> {
        let f = match self.file.take() {
            Some(f) => f,
            None => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        };
        Ok(self.file.insert(f))
    }

    /// Feeds bytes read from stdout (stream 0) or stderr (stream 1).
    pub fn feed(&mut self, stream: usize, data: &[u8]) -> std::io::Result<()> {
        self.pending[stream].extend_from_slice(data);
        while let Some(pos) = self.pending[stream].iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending[stream].drain(..=pos).collect();
            self.write_record(stream, &line)?;
        }
        if self.pending[stream].len() >= MAX_RECORD {
            let chunk = std::mem::take(&mut self.pending[stream]);
            self.write_record(stream, &chunk)?;
        }
        Ok(())
    }

    /// Writes out partial lines (at exit).
    pub fn flush_all(&mut self) -> std::io::Result<()> {
        for s in 0..2 {
            if !self.pending[s].is_empty() {
                let chunk = std::mem::take(&mut self.pending[s]);
                self.write_record(s, &chunk)?;
            }
        }
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    fn write_record(&mut self, stream: usize, bytes: &[u8]) -> std::io::Result<()> {
        let rec = LogLine {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: crate::util::time::now_rfc3339(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file()?.write_all(&line)
    }
}

/// Reads the log records, skipping a torn last line.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_keeps_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::open(&p).unwrap();
        w.feed(0, b"hel").unwrap();
        w.feed(0, b"lo\nwor").unwrap();
        w.feed(1, b"oops\n").unwrap();
        w.flush_all().unwrap();
        let lines = read_log(&p);
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.stream.as_str(), l.log.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("stdout", "hello\n"),
                ("stderr", "oops\n"),
                ("stdout", "wor")
            ]
        );
        assert!(lines[0].time.ends_with('Z'));
    }

    #[test]
    fn the_file_comes_with_the_first_record_and_is_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let mut w = LogWriter::open(&p).unwrap();
        w.flush_all().unwrap();
        drop(w);
        assert!(
            !p.exists(),
            "a container that printed nothing has no log file"
        );
        assert!(read_log(&p).is_empty());
        let mut w = LogWriter::open(&p).unwrap();
        w.feed(0, b"one\n").unwrap();
        drop(w);
        let mut w = LogWriter::open(&p).unwrap();
        w.feed(1, b"two\n").unwrap();
        drop(w);
        let got: Vec<String> = read_log(&p).into_iter().map(|l| l.log).collect();
        assert_eq!(got, vec!["one\n", "two\n"]);
    }
}
