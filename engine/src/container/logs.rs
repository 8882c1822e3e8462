//! Container logs in Docker's json-file format: one JSON object per line with the
//! text, the stream and an RFC 3339 timestamp.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Splits a byte stream into lines and appends them to the log file.
pub struct LogWriter {
    file: File,
    pending: [Vec<u8>; 2],
}

/// Very long lines are cut into records of this size, as Docker does at 16 KiB.
const MAX_RECORD: usize = 16 * 1024;

impl LogWriter {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogWriter {
            file,
            pending: [Vec::new(), Vec::new()],
        })
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
        self.file.flush()
    }

    fn write_record(&mut self, stream: usize, bytes: &[u8]) -> std::io::Result<()> {
        let rec = LogLine {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: crate::util::time::now_rfc3339(),
        };
        let mut line = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
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
}
