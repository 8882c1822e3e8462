//! A CMOS real-time clock at 0x70/0x71 (index and data ports) that reads the
//! host's UTC time. Linux's rtc_cmos driver probes it at boot; with nothing
//! there the ports float to 0xff, which reads as "update in progress" forever
//! and costs seconds of timeouts before the driver gives up.

use super::bus::PioDevice;

pub const RTC_PORT: u16 = 0x70;
pub const PORT_COUNT: u16 = 2;

const REG_SECONDS: u8 = 0x00;
const REG_MINUTES: u8 = 0x02;
const REG_HOURS: u8 = 0x04;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_STATUS_A: u8 = 0x0a;
const REG_STATUS_B: u8 = 0x0b;
const REG_STATUS_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

/// Status A: 32.768 kHz time base, 1024 Hz rate, no update in progress.
const STATUS_A: u8 = 0x26;
/// Status B: 24-hour mode, BCD values, no interrupts.
const STATUS_B: u8 = 0x02;
/// Status D: the battery is fine, so the time is valid.
const STATUS_D_VALID: u8 = 0x80;

#[derive(Debug, Default)]
pub struct Rtc {
    index: u8,
}

impl Rtc {
    fn register(&self, now: &libc::tm) -> u8 {
        let bcd = |v: i32| -> u8 {
            let v = v.clamp(0, 99) as u8;
            ((v / 10) << 4) | (v % 10)
        };
        match self.index {
            REG_SECONDS => bcd(now.tm_sec.min(59)),
            REG_MINUTES => bcd(now.tm_min),
            REG_HOURS => bcd(now.tm_hour),
            REG_WEEKDAY => bcd(now.tm_wday + 1),
            REG_DAY => bcd(now.tm_mday),
            REG_MONTH => bcd(now.tm_mon + 1),
            REG_YEAR => bcd((now.tm_year + 1900) % 100),
            REG_CENTURY => bcd((now.tm_year + 1900) / 100),
            REG_STATUS_A => STATUS_A,
            REG_STATUS_B => STATUS_B,
            REG_STATUS_D => STATUS_D_VALID,
            _ => 0,
        }
    }
}

/// The host's time, broken down in UTC.
fn utc_now() -> libc::tm {
    // SAFETY: time(NULL) and gmtime_r write only to the tm we own.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&t, &mut tm);
        tm
    }
}

impl PioDevice for Rtc {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if offset == 1 {
            if let Some(first) = data.first_mut() {
                *first = self.register(&utc_now());
            }
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        // Bit 7 of the index port masks NMIs on real hardware: not ours to keep.
        if let (0, Some(&value)) = (offset, data.first()) {
            self.index = value & 0x7f;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rtc: &mut Rtc, index: u8) -> u8 {
        rtc.write(0, &[index]);
        let mut value = [0u8];
        rtc.read(1, &mut value);
        value[0]
    }

    fn from_bcd(v: u8) -> i32 {
        ((v >> 4) * 10 + (v & 0xf)) as i32
    }

    #[test]
    fn the_clock_is_never_updating_and_always_valid() {
        let mut rtc = Rtc::default();
        assert_eq!(
            read(&mut rtc, REG_STATUS_A) & 0x80,
            0,
            "no update in progress"
        );
        assert_eq!(read(&mut rtc, REG_STATUS_B), STATUS_B);
        assert_eq!(
            read(&mut rtc, REG_STATUS_D | 0x80),
            STATUS_D_VALID,
            "NMI bit ignored"
        );
    }

    #[test]
    fn date_and_time_are_the_hosts_in_bcd() {
        let mut rtc = Rtc::default();
        let now = utc_now();
        let year = from_bcd(read(&mut rtc, REG_CENTURY)) * 100 + from_bcd(read(&mut rtc, REG_YEAR));
        assert_eq!(year, now.tm_year + 1900);
        assert_eq!(from_bcd(read(&mut rtc, REG_MONTH)), now.tm_mon + 1);
        let hours = from_bcd(read(&mut rtc, REG_HOURS));
        assert!((0..24).contains(&hours));
        let minutes = from_bcd(read(&mut rtc, REG_MINUTES));
        assert!((0..60).contains(&minutes));
    }
}
