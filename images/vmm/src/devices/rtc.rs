//! The MC146818 real-time clock and CMOS RAM behind ports 0x70 (index) and
//! 0x71 (data), showing the host's UTC time in BCD, 24-hour mode. An update
//! is never in progress: the time is read from the host on each access, so
//! a guest that waits for the seconds to change sees them change.

use std::time::{SystemTime, UNIX_EPOCH};

pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;

const SECONDS: u8 = 0x00;
const MINUTES: u8 = 0x02;
const HOURS: u8 = 0x04;
const DAY_OF_WEEK: u8 = 0x06;
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c;
const STATUS_D: u8 = 0x0d;
const CENTURY: u8 = 0x32;

/// 32.768 kHz time base, 1024 Hz rate; UIP (bit 7) always clear.
const STATUS_A_VALUE: u8 = 0x26;
/// 24-hour mode (bit 1), BCD (bit 2 clear), no interrupts.
const STATUS_B_VALUE: u8 = 0x02;
/// VRT: the battery is good and the time valid.
const STATUS_D_VALUE: u8 = 0x80;

/// The index port's bit 7 masks NMIs; it is not part of the index.
const INDEX_MASK: u8 = 0x7f;

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CivilTime {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 1 = Sunday, as the RTC counts.
    pub day_of_week: u32,
}

impl CivilTime {
    /// The UTC time `seconds` after the Unix epoch.
    pub fn from_unix(seconds: u64) -> Self {
        let days = seconds / 86_400;
        let rest = seconds % 86_400;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (rest / 3600) as u32,
            minute: (rest / 60 % 60) as u32,
            second: (rest % 60) as u32,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            day_of_week: ((days + 4) % 7) as u32 + 1,
        }
    }
}

/// Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

fn bcd(value: u32) -> u8 {
    (((value / 10 % 10) << 4) | (value % 10)) as u8
}

pub struct Rtc {
    index: u8,
    /// CMOS RAM; the clock registers are computed, not stored here.
    ram: [u8; 128],
    now: Box<dyn Fn() -> CivilTime + Send>,
}

impl Rtc {
    /// An RTC showing the host's clock.
    pub fn new() -> Self {
        Self::with_clock(|| {
            let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
            CivilTime::from_unix(seconds)
        })
    }

    pub fn with_clock(now: impl Fn() -> CivilTime + Send + 'static) -> Self {
        Self { index: 0, ram: [0; 128], now: Box::new(now) }
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            INDEX_PORT => self.index,
            _ => self.register(self.index),
        }
    }

    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            INDEX_PORT => self.index = value & INDEX_MASK,
            // The clock follows the host: time writes are dropped, status
            // registers stay as described; plain CMOS bytes are kept.
            _ if self.index > STATUS_D => self.ram[usize::from(self.index)] = value,
            _ => {}
        }
    }

    fn register(&self, index: u8) -> u8 {
        let time = || (self.now)();
        match index {
            SECONDS => bcd(time().second),
            MINUTES => bcd(time().minute),
            HOURS => bcd(time().hour),
            DAY_OF_WEEK => bcd(time().day_of_week),
            DAY_OF_MONTH => bcd(time().day),
            MONTH => bcd(time().month),
            YEAR => bcd(time().year % 100),
            CENTURY => bcd(time().year / 100),
            STATUS_A => STATUS_A_VALUE,
            STATUS_B => STATUS_B_VALUE,
            STATUS_C => 0,
            STATUS_D => STATUS_D_VALUE,
            // Alarm registers and CMOS RAM.
            _ => self.ram[usize::from(index)],
        }
    }
}

impl Default for Rtc {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(rtc: &mut Rtc, index: u8) -> u8 {
        rtc.write(INDEX_PORT, index);
        rtc.read(DATA_PORT)
    }

    #[test]
    fn unix_time_becomes_the_utc_calendar() {
        assert_eq!(
            CivilTime::from_unix(0),
            CivilTime { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0, day_of_week: 5 }
        );
        // 2024-02-29 23:59:58, a Thursday in a leap year.
        assert_eq!(
            CivilTime::from_unix(1_709_251_198),
            CivilTime { year: 2024, month: 2, day: 29, hour: 23, minute: 59, second: 58, day_of_week: 5 }
        );
        // 2100-03-01, after a February that has no 29th.
        let time = CivilTime::from_unix(4_107_542_400);
        assert_eq!((time.year, time.month, time.day), (2100, 3, 1));
    }

    #[test]
    fn the_time_registers_read_in_bcd() {
        let mut rtc = Rtc::with_clock(|| CivilTime::from_unix(1_709_251_198));
        assert_eq!(read(&mut rtc, SECONDS), 0x58);
        assert_eq!(read(&mut rtc, MINUTES), 0x59);
        assert_eq!(read(&mut rtc, HOURS), 0x23);
        assert_eq!(read(&mut rtc, DAY_OF_WEEK), 0x05);
        assert_eq!(read(&mut rtc, DAY_OF_MONTH), 0x29);
        assert_eq!(read(&mut rtc, MONTH), 0x02);
        assert_eq!(read(&mut rtc, YEAR), 0x24);
        assert_eq!(read(&mut rtc, CENTURY), 0x20);
    }

    #[test]
    fn status_registers_say_valid_bcd_24_hour_and_no_update_in_progress() {
        let mut rtc = Rtc::with_clock(|| CivilTime::from_unix(0));
        assert_eq!(read(&mut rtc, STATUS_A) & 0x80, 0, "UIP");
        assert_eq!(read(&mut rtc, STATUS_B), 0x02);
        assert_eq!(read(&mut rtc, STATUS_D), 0x80);
        // The NMI-mask bit of the index port is not part of the index.
        assert_eq!(read(&mut rtc, 0x80 | STATUS_D), 0x80);
    }

    #[test]
    fn cmos_ram_keeps_writes_but_the_clock_ignores_them() {
        let mut rtc = Rtc::with_clock(|| CivilTime::from_unix(0));
        rtc.write(INDEX_PORT, 0x40);
        rtc.write(DATA_PORT, 0x5a);
        assert_eq!(read(&mut rtc, 0x40), 0x5a);
        rtc.write(INDEX_PORT, SECONDS);
        rtc.write(DATA_PORT, 0x33);
        assert_eq!(read(&mut rtc, SECONDS), 0x00);
        rtc.write(INDEX_PORT, STATUS_B);
        rtc.write(DATA_PORT, 0x06);
        assert_eq!(read(&mut rtc, STATUS_B), 0x02, "the mode stays BCD, 24-hour");
    }
}
