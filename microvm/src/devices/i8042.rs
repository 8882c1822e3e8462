//! The i8042 keyboard controller at 0x60 (data) and 0x64 (status/command).
//!
//! Linux probes the controller at boot: it runs the self-test and reads and
//! writes the configuration byte, polling the status register for each reply.
//! A controller that never answers costs a 500 ms timeout per command, so this
//! one answers those commands. Linux booted with `reboot=k` resets the machine
//! by writing 0xfe to the command port: for a microVM that is the end of the
//! guest, so the reset line is an eventfd the VMM waits on. There is no
//! keyboard behind it (the guest runs with `i8042.dumbkbd`, so nothing asks).

use std::collections::VecDeque;

use vm_superio::Trigger;

use super::bus::PioDevice;
use super::EventFdTrigger;

pub const I8042_PORT: u16 = 0x60;
pub const PORT_COUNT: u16 = 5;

const DATA_OFFSET: u16 = 0;
const COMMAND_OFFSET: u16 = 4;

/// Status register bits.
const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM_FLAG: u8 = 0x04;
const STATUS_LAST_WAS_COMMAND: u8 = 0x08;
/// Set when the keyboard is not locked (Linux warns "Keylock active" otherwise).
const STATUS_NOT_LOCKED: u8 = 0x10;

/// Controller commands (written to 0x64).
const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_RESET_CPU: u8 = 0xfe;

const SELF_TEST_PASSED: u8 = 0x55;
const INTERFACE_TEST_PASSED: u8 = 0x00;
/// What a keyboard answers to any command byte.
const KBD_ACK: u8 = 0xfa;

/// Configuration byte bits that disable the keyboard and aux clocks.
const CONFIG_KBD_DISABLED: u8 = 0x10;
const CONFIG_AUX_DISABLED: u8 = 0x20;

pub struct I8042 {
    reset: EventFdTrigger,
    config: u8,
    output_port: u8,
    status: u8,
    replies: VecDeque<u8>,
    /// A command that takes its argument from the next data-port write.
    awaiting_data: Option<u8>,
}

impl I8042 {
    pub fn new(reset: EventFdTrigger) -> Self {
        Self {
            reset,
            // Keyboard interrupt on, translation on, aux off: what firmware leaves.
            config: 0x41 | CONFIG_AUX_DISABLED,
            output_port: 0x01,
            status: STATUS_SYSTEM_FLAG | STATUS_NOT_LOCKED,
            replies: VecDeque::new(),
            awaiting_data: None,
        }
    }

    fn reply(&mut self, byte: u8) {
        self.replies.push_back(byte);
    }

    fn command(&mut self, cmd: u8) {
        self.status |= STATUS_LAST_WAS_COMMAND;
        match cmd {
            CMD_READ_CONFIG => self.reply(self.config),
            CMD_WRITE_CONFIG | CMD_WRITE_OUTPUT_PORT => self.awaiting_data = Some(cmd),
            CMD_DISABLE_AUX => self.config |= CONFIG_AUX_DISABLED,
            CMD_ENABLE_AUX => self.config &= !CONFIG_AUX_DISABLED,
            CMD_DISABLE_KBD => self.config |= CONFIG_KBD_DISABLED,
            CMD_ENABLE_KBD => self.config &= !CONFIG_KBD_DISABLED,
            CMD_SELF_TEST => {
                self.status |= STATUS_SYSTEM_FLAG;
                self.reply(SELF_TEST_PASSED)
            }
            CMD_TEST_KBD | CMD_TEST_AUX => self.reply(INTERFACE_TEST_PASSED),
            CMD_READ_OUTPUT_PORT => self.reply(self.output_port),
            CMD_RESET_CPU => {
                if let Err(e) = self.reset.trigger() {
                    tracing::warn!("i8042 reset line: {e}");
                }
            }
            other => tracing::debug!("i8042: ignoring command {other:#x}"),
        }
    }

    fn data(&mut self, value: u8) {
        self.status &= !STATUS_LAST_WAS_COMMAND;
        match self.awaiting_data.take() {
            Some(CMD_WRITE_CONFIG) => self.config = value,
            Some(CMD_WRITE_OUTPUT_PORT) => self.output_port = value,
            // A byte for the keyboard: acknowledge it as a keyboard would.
            _ => self.reply(KBD_ACK),
        }
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let value = match offset {
            DATA_OFFSET => self.replies.pop_front().unwrap_or(0),
            COMMAND_OFFSET => {
                let full = if self.replies.is_empty() {
                    0
                } else {
                    STATUS_OUTPUT_FULL
                };
                self.status | full
            }
            _ => 0,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            DATA_OFFSET => self.data(value),
            COMMAND_OFFSET => self.command(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> (I8042, EventFdTrigger) {
        let reset = EventFdTrigger::new().unwrap();
        let probe = reset.try_clone().unwrap();
        (I8042::new(reset), probe)
    }

    fn status(c: &mut I8042) -> u8 {
        let mut s = [0u8];
        c.read(COMMAND_OFFSET, &mut s);
        s[0]
    }

    fn data(c: &mut I8042) -> u8 {
        let mut d = [0u8];
        c.read(DATA_OFFSET, &mut d);
        d[0]
    }

    #[test]
    fn cpu_reset_command_fires_the_reset_line() {
        let (mut c, probe) = controller();
        c.write(DATA_OFFSET, &[CMD_RESET_CPU]);
        assert!(probe.0.read().is_err(), "a data-port write is no reset");
        c.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(probe.0.read().unwrap(), 1);
    }

    #[test]
    fn self_test_answers_like_linux_expects() {
        let (mut c, _) = controller();
        assert_eq!(
            status(&mut c) & STATUS_OUTPUT_FULL,
            0,
            "nothing to read yet"
        );
        c.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
        assert_ne!(status(&mut c) & STATUS_OUTPUT_FULL, 0);
        assert_eq!(data(&mut c), SELF_TEST_PASSED);
        assert_eq!(
            status(&mut c) & STATUS_OUTPUT_FULL,
            0,
            "the reply was consumed"
        );
        assert_ne!(status(&mut c) & STATUS_SYSTEM_FLAG, 0);
    }

    #[test]
    fn the_configuration_byte_round_trips() {
        let (mut c, _) = controller();
        c.write(COMMAND_OFFSET, &[CMD_WRITE_CONFIG]);
        c.write(DATA_OFFSET, &[0x65]);
        c.write(COMMAND_OFFSET, &[CMD_READ_CONFIG]);
        assert_eq!(data(&mut c), 0x65);
        c.write(COMMAND_OFFSET, &[CMD_DISABLE_KBD]);
        c.write(COMMAND_OFFSET, &[CMD_READ_CONFIG]);
        assert_eq!(data(&mut c), 0x65 | CONFIG_KBD_DISABLED);
    }

    #[test]
    fn keyboard_bytes_are_acknowledged() {
        let (mut c, _) = controller();
        c.write(DATA_OFFSET, &[0xf2]);
        assert_eq!(data(&mut c), KBD_ACK);
    }
}
