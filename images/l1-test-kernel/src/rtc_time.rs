//! The MC146818 RTC's time registers: BCD or binary, 12- or 24-hour, as
//! status register B says.

use core::fmt;

/// Status register B bits.
pub const B_24_HOUR: u8 = 1 << 1;
pub const B_BINARY: u8 = 1 << 2;
/// In 12-hour mode, the hours register's PM flag.
pub const HOUR_PM: u8 = 0x80;

/// The raw time registers, in CMOS index order of their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawTime {
    pub second: u8, // index 0x00
    pub minute: u8, // index 0x02
    pub hour: u8,   // index 0x04
    pub day: u8,    // index 0x07
    pub month: u8,  // index 0x08
    pub year: u8,   // index 0x09
}

/// A decoded, range-checked time (24-hour clock, two-digit year).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub second: u8,
    pub minute: u8,
    pub hour: u8,
    pub day: u8,
    pub month: u8,
    pub year: u8,
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// A register that is not a valid value in the mode register B announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadField {
    pub field: &'static str,
    pub raw: u8,
}

impl fmt::Display for BadField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} register holds {:#04x}", self.field, self.raw)
    }
}

/// Decodes one packed-BCD byte.
pub fn from_bcd(raw: u8) -> Option<u8> {
    let (tens, ones) = (raw >> 4, raw & 0x0f);
    (tens < 10 && ones < 10).then_some(tens * 10 + ones)
}

/// The seconds register's value one second after `second`, in BCD or binary.
pub fn next_second(second: u8, binary: bool) -> u8 {
    match (binary, second) {
        (true, 59) | (false, 0x59) => 0,
        (true, s) => s + 1,
        (false, s) if s & 0x0f == 9 => (s & 0xf0) + 0x10,
        (false, s) => s + 1,
    }
}

impl RawTime {
    /// Decodes the registers as status register B describes them.
    pub fn decode(&self, status_b: u8) -> Result<Time, BadField> {
        let binary = status_b & B_BINARY != 0;
        let value = |field: &'static str, raw: u8, range: core::ops::RangeInclusive<u8>| {
            let decoded = if binary { Some(raw) } else { from_bcd(raw) };
            decoded.filter(|v| range.contains(v)).ok_or(BadField { field, raw })
        };
        let hour = if status_b & B_24_HOUR != 0 {
            value("hours", self.hour, 0..=23)?
        } else {
            let pm = self.hour & HOUR_PM != 0;
            let twelve = value("hours", self.hour & !HOUR_PM, 1..=12)
                .map_err(|_| BadField { field: "hours", raw: self.hour })?;
            (twelve % 12) + if pm { 12 } else { 0 }
        };
        Ok(Time {
            second: value("seconds", self.second, 0..=59)?,
            minute: value("minutes", self.minute, 0..=59)?,
            hour,
            day: value("day", self.day, 1..=31)?,
            month: value("month", self.month, 1..=12)?,
            year: value("year", self.year, 0..=99)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCD_24: u8 = B_24_HOUR;

    #[test]
    fn bcd() {
        assert_eq!(from_bcd(0x59), Some(59));
        assert_eq!(from_bcd(0x00), Some(0));
        assert_eq!(from_bcd(0x5a), None);
        assert_eq!(from_bcd(0xa0), None);
    }

    #[test]
    fn seconds_advance() {
        assert_eq!(next_second(0x08, false), 0x09);
        assert_eq!(next_second(0x09, false), 0x10);
        assert_eq!(next_second(0x59, false), 0x00);
        assert_eq!(next_second(9, true), 10);
        assert_eq!(next_second(59, true), 0);
    }

    #[test]
    fn bcd_24_hour() {
        let raw = RawTime { second: 0x05, minute: 0x59, hour: 0x23, day: 0x31, month: 0x12, year: 0x25 };
        let time = raw.decode(BCD_24).unwrap();
        assert_eq!(time, Time { second: 5, minute: 59, hour: 23, day: 31, month: 12, year: 25 });
        assert_eq!(time.to_string(), "25-12-31 23:59:05");
    }

    #[test]
    fn twelve_hour_with_pm_flag() {
        let raw = RawTime { second: 0, minute: 0, hour: 0x80 | 0x12, day: 1, month: 1, year: 0 };
        assert_eq!(raw.decode(0).unwrap().hour, 12, "12 PM is noon");
        let raw = RawTime { hour: 0x12, ..raw };
        assert_eq!(raw.decode(0).unwrap().hour, 0, "12 AM is midnight");
        let raw = RawTime { hour: 0x80 | 0x01, ..raw };
        assert_eq!(raw.decode(0).unwrap().hour, 13);
    }

    #[test]
    fn binary_mode() {
        let raw = RawTime { second: 59, minute: 30, hour: 22, day: 28, month: 2, year: 99 };
        assert_eq!(raw.decode(B_BINARY | B_24_HOUR).unwrap().second, 59);
        assert_eq!(raw.decode(BCD_24), Err(BadField { field: "seconds", raw: 59 }));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let good = RawTime { second: 0, minute: 0, hour: 0, day: 1, month: 1, year: 0 };
        assert_eq!(RawTime { month: 0x13, ..good }.decode(BCD_24), Err(BadField { field: "month", raw: 0x13 }));
        assert_eq!(RawTime { day: 0, ..good }.decode(BCD_24), Err(BadField { field: "day", raw: 0 }));
        assert_eq!(RawTime { hour: 0x24, ..good }.decode(BCD_24), Err(BadField { field: "hours", raw: 0x24 }));
        assert_eq!(RawTime { hour: 0x13, ..good }.decode(0), Err(BadField { field: "hours", raw: 0x13 }));
    }
}
