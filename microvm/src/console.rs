//! The guest console as users see it: everything the serial port sends is kept
//! in a log file (kernel messages included, for diagnosing a failed boot),
//! while only the workload's own output, between the init's "started" and
//! "exit" markers, is passed on live, like a container's output.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use twinbox_init::protocol::{ConsoleFilter, ConsoleItem, Marker};

/// What the console saw, shared with whoever started the VM.
#[derive(Debug, Default)]
pub struct ConsoleState {
    pub workload_started: bool,
    pub exit_code: Option<u8>,
    /// The last bytes before the workload started (kernel and init messages),
    /// quoted when a boot fails.
    pub boot_tail: Vec<u8>,
}

const BOOT_TAIL_BYTES: usize = 4096;

pub struct WorkloadConsole {
    log: Option<File>,
    live: Box<dyn Write + Send>,
    filter: ConsoleFilter,
    state: Arc<Mutex<ConsoleState>>,
}

impl WorkloadConsole {
    /// `log` receives every console byte; `live` the workload's output only.
    pub fn new(log: Option<File>, live: Box<dyn Write + Send>) -> (Self, Arc<Mutex<ConsoleState>>) {
        let state = Arc::new(Mutex::new(ConsoleState::default()));
        let console = WorkloadConsole {
            log,
            live,
            filter: ConsoleFilter::new(),
            state: state.clone(),
        };
        (console, state)
    }

    fn handle(&mut self, items: Vec<ConsoleItem>) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for item in items {
            match item {
                ConsoleItem::Marker(Marker::Started { .. }) => state.workload_started = true,
                ConsoleItem::Marker(Marker::Exit { code }) => {
                    state.exit_code = Some(code);
                    state.workload_started = false;
                }
                ConsoleItem::Output(bytes) if state.workload_started => {
                    self.live.write_all(&bytes)?;
                    self.live.flush()?;
                }
                ConsoleItem::Output(bytes) if state.exit_code.is_none() => {
                    state.boot_tail.extend_from_slice(&bytes);
                    let excess = state.boot_tail.len().saturating_sub(BOOT_TAIL_BYTES);
                    state.boot_tail.drain(..excess);
                }
                ConsoleItem::Output(_) => {}
            }
        }
        Ok(())
    }
}

impl Write for WorkloadConsole {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(log) = &mut self.log {
            log.write_all(buf)?;
        }
        let mut items = Vec::new();
        self.filter.push(buf, &mut items);
        self.handle(items)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.live.flush()
    }
}

impl Drop for WorkloadConsole {
    fn drop(&mut self) {
        let mut items = Vec::new();
        self.filter.finish(&mut items);
        let _ = self.handle(items);
    }
}

/// The workload's output in a saved console log: the bytes between the init's
/// "started" and "exit" markers.
pub fn workload_output(raw: &[u8]) -> Vec<u8> {
    let mut filter = ConsoleFilter::new();
    let mut items = Vec::new();
    filter.push(raw, &mut items);
    filter.finish(&mut items);
    let mut inside = false;
    let mut out = Vec::new();
    for item in items {
        match item {
            ConsoleItem::Marker(Marker::Started { .. }) => inside = true,
            ConsoleItem::Marker(Marker::Exit { .. }) => inside = false,
            ConsoleItem::Output(bytes) if inside => out.extend(bytes),
            ConsoleItem::Output(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_the_workload_output_goes_live_and_everything_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("console.log");
        let live = Shared::default();
        let (mut console, state) = WorkloadConsole::new(
            Some(File::create(&log_path).unwrap()),
            Box::new(live.clone()),
        );
        let raw = b"[    0.1] Linux version 6.1\n@@twinbox@@ started 123\nhello\nwor\
ld\n@@twinbox@@ exit 3\n[    2.0] reboot: Restarting system\n";
        // Byte by byte, as the UART delivers it.
        for b in raw.iter() {
            console.write_all(&[*b]).unwrap();
        }
        drop(console);
        assert_eq!(&*live.0.lock().unwrap(), b"hello\nworld\n");
        assert_eq!(std::fs::read(&log_path).unwrap(), raw);
        let state = state.lock().unwrap();
        assert_eq!(state.exit_code, Some(3));
        assert!(String::from_utf8_lossy(&state.boot_tail).contains("Linux version"));
        assert_eq!(workload_output(raw), b"hello\nworld\n");
    }
}
