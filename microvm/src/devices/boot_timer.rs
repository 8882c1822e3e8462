//! The boot timer: two I/O ports the guest init writes to, so the host learns
//! when the guest reached its init, when the workload started and ended, and
//! the workload's exit code, each stamped with the host's clock on arrival.
//! Reading the first port answers the init's question "should the workload
//! stop?", which is how `vm stop` reaches the workload gracefully.

use std::time::Instant;

use twinbox_init::protocol::{
    BOOT_TIMER_PORT, EVENT_INIT_STARTED, EVENT_WORKLOAD_EXITED, EVENT_WORKLOAD_STARTED,
    EXIT_CODE_PORT, STOP_REQUESTED,
};

use super::bus::PioDevice;

pub const BASE_PORT: u16 = BOOT_TIMER_PORT;
pub const PORT_COUNT: u16 = 2;
const _: () = assert!(EXIT_CODE_PORT == BOOT_TIMER_PORT + 1);

/// When each milestone reached the host.
#[derive(Debug, Default, Clone, Copy)]
pub struct BootEvents {
    pub init_started: Option<Instant>,
    pub workload_started: Option<Instant>,
    pub workload_exited: Option<Instant>,
    pub exit_code: Option<u8>,
}

#[derive(Debug, Default)]
pub struct BootTimer {
    pub events: BootEvents,
    /// Set by the VMM when the workload should stop; the init polls for it.
    pub stop_requested: bool,
}

impl PioDevice for BootTimer {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 && self.stop_requested {
            data[0] = STOP_REQUESTED;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        let now = Some(Instant::now());
        let events = &mut self.events;
        match (offset, value) {
            (0, EVENT_INIT_STARTED) => events.init_started = now,
            (0, EVENT_WORKLOAD_STARTED) => events.workload_started = now,
            (0, EVENT_WORKLOAD_EXITED) => events.workload_exited = now,
            (1, code) => events.exit_code = Some(code),
            (_, other) => tracing::debug!("boot timer: unknown event {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_stamped_in_order_and_the_exit_code_kept() {
        let mut timer = BootTimer::default();
        timer.write(0, &[EVENT_INIT_STARTED]);
        timer.write(0, &[EVENT_WORKLOAD_STARTED]);
        timer.write(1, &[7]);
        timer.write(0, &[EVENT_WORKLOAD_EXITED]);
        let e = timer.events;
        assert!(e.init_started.unwrap() <= e.workload_started.unwrap());
        assert!(e.workload_started.unwrap() <= e.workload_exited.unwrap());
        assert_eq!(e.exit_code, Some(7));
    }

    #[test]
    fn the_stop_request_is_read_back_on_the_event_port() {
        let mut timer = BootTimer::default();
        let mut value = [0xffu8];
        timer.read(0, &mut value);
        assert_eq!(value, [0]);
        timer.stop_requested = true;
        timer.read(0, &mut value);
        assert_eq!(value, [STOP_REQUESTED]);
        timer.read(1, &mut value);
        assert_eq!(value, [0], "only the event port answers");
    }

    #[test]
    fn unknown_events_change_nothing() {
        let mut timer = BootTimer::default();
        timer.write(0, &[0x7f]);
        assert!(timer.events.init_started.is_none());
        assert!(timer.events.exit_code.is_none());
    }
}
