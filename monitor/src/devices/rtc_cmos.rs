//! The MC146818 real-time clock and its CMOS memory (ports 0x70/0x71, IRQ8).
//!
//! The guest writes a register index to port 0x70 (bit 7 of the same byte
//! disables NMI on a PC, which is remembered) and then reads or writes the
//! register through port 0x71. Of the 128 bytes, 0x00-0x0d are the clock:
//! seconds, minutes and hours with an alarm byte after each, day of week
//! (Sunday is 1), day of month, month, year within the century, and status
//! registers A-D. Byte 0x32 holds the century by PC convention. The rest is
//! battery-backed RAM, where firmware leaves the memory size.
//!
//! The time is the wall-clock time given at construction plus the guest's
//! elapsed virtual time, presented as status register B asks: BCD or
//! binary, 24-hour or 12-hour (bit 7 of the hour is PM). The real chip keeps
//! the raw bytes when the guest changes the format; here the time registers
//! are shown in the new format at once (the alarm bytes, which are only
//! stored, keep theirs).
//!
//! Setting B.SET, or putting the divider in reset through A (Linux does
//! both), freezes the time registers so the guest can write them; clearing
//! it restarts the clock from what was written, at the start of a second.
//! Status A's UIP bit is set for the last 244 microseconds before each
//! second's update, so guests that wait for it to fall (or rise) progress.
//!
//! Three interrupt sources set flags in status C, and raise IRQ8 while a
//! flag is set whose enable bit in B is: the periodic interrupt at the rate
//! A's low nibble selects, the alarm (when the time matches the alarm
//! bytes, of which a value with both top bits set matches anything), and
//! the end of each second's update. Reading C returns and clears them all.
//! Daylight-saving mode (B bit 0) is not modelled and counted as
//! unsupported; the square-wave output has no pin here.

use core::ops::RangeInclusive;

use super::{from_bcd, to_bcd, ByteRegisters, DeviceMetrics};

/// The RTC's ISA interrupt line.
pub const RTC_IRQ: u8 = 8;

const INDEX_PORT: u16 = 0x70; // write-only: register index, NMI disable
const DATA_PORT: u16 = 0x71; // the indexed register
const INDEX_MASK: u8 = 0x7f;
const NMI_DISABLE: u8 = 0x80;

// Clock registers.
const SECONDS: u8 = 0x00;
const SECONDS_ALARM: u8 = 0x01;
const MINUTES: u8 = 0x02;
const MINUTES_ALARM: u8 = 0x03;
const HOURS: u8 = 0x04;
const HOURS_ALARM: u8 = 0x05;
const DAY_OF_WEEK: u8 = 0x06; // 1-7, Sunday is 1
const DAY_OF_MONTH: u8 = 0x07;
const MONTH: u8 = 0x08;
const YEAR: u8 = 0x09; // 0-99 within the century
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
const STATUS_C: u8 = 0x0c; // read-only, cleared on read
const STATUS_D: u8 = 0x0d; // read-only
const CENTURY: u8 = 0x32; // PC convention, named by the ACPI FADT

// Memory size, as PC firmware leaves it.
const BASE_MEMORY: u8 = 0x15; // 16 bits: conventional memory in KiB (640)
const EXTENDED_MEMORY: u8 = 0x17; // 16 bits: memory from 1 to 64 MiB in KiB
const CHECKSUM: u8 = 0x2e; // 16 bits, big-endian: sum of bytes 0x10-0x2d
const CHECKSUMMED: RangeInclusive<usize> = 0x10..=0x2d;
const EXTENDED_MEMORY_POST: u8 = 0x30; // 16 bits: the same, as POST found it
const MEMORY_ABOVE_16M: u8 = 0x34; // 16 bits: 16 MiB to 4 GiB in 64 KiB units
const MEMORY_ABOVE_4G: u8 = 0x5b; // 24 bits: above 4 GiB in 64 KiB units

// Status A.
const A_UPDATE_IN_PROGRESS: u8 = 0x80; // UIP, read-only
const A_DIVIDER: u8 = 0x70; // DV2-DV0: the time base
const A_DIVIDER_32KHZ: u8 = 0x20; // a 32.768 kHz crystal, running
const A_DIVIDER_RESET: u8 = 0x60; // 11x: the divider chain held in reset
const A_RATE: u8 = 0x0f; // RS3-RS0: the periodic interrupt rate, 0 off

// Status B.
const B_SET: u8 = 0x80; // updates stopped, time writable
const B_PERIODIC: u8 = 0x40; // PIE
const B_ALARM: u8 = 0x20; // AIE
const B_UPDATE_ENDED: u8 = 0x10; // UIE
const B_BINARY: u8 = 0x04; // DM: binary, else BCD
const B_24_HOUR: u8 = 0x02; // 24-hour, else 12-hour
const B_DAYLIGHT_SAVING: u8 = 0x01; // DSE: not modelled

// Status C (its flag bits line up with their enables in B).
const C_IRQ: u8 = 0x80; // IRQF: some enabled flag is set
const C_PERIODIC: u8 = 0x40; // PF
const C_ALARM: u8 = 0x20; // AF
const C_UPDATE_ENDED: u8 = 0x10; // UF
const C_FLAGS: u8 = 0x70;

const D_VALID_RAM: u8 = 0x80; // VRT: the battery is good

const HOUR_PM: u8 = 0x80; // 12-hour mode: afternoon
const ALARM_ANY: u8 = 0xc0; // an alarm byte with both top bits set matches anything

const RESET_STATUS_A: u8 = A_DIVIDER_32KHZ | 0x06; // 1024 Hz periodic rate
const RESET_STATUS_B: u8 = B_24_HOUR; // BCD, 24-hour, no interrupts

const NS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// UIP rises this long before each update.
const UIP_LEAD_NS: i128 = 244_000;
/// The divider chain's input, from which the periodic rates are tapped.
const TIME_BASE_HZ: u128 = 32_768;

/// 9999-12-31 23:59:59, the last second four year digits can show.
const LATEST_WALL_CLOCK: u64 = 253_402_300_799;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// A calendar date and time of day, as the clock registers hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 1-7, Sunday is 1.
    pub weekday: u8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Days past the end
/// of the month carry into the next.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    // Count years from March, so the leap day ends the year.
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
    let month = ((month_from_march + 2) % 12 + 1) as u8;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The weekday (Sunday is 1) of a day count: 1970-01-01 was a Thursday.
fn weekday_of(days: i64) -> u8 {
    ((days + 4).rem_euclid(7) + 1) as u8
}

impl DateTime {
    fn from_unix(seconds: i64, weekday_offset: u8) -> Self {
        let days = seconds.div_euclid(SECONDS_PER_DAY);
        let time_of_day = seconds.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (time_of_day / 3600) as u8,
            minute: (time_of_day / 60 % 60) as u8,
            second: (time_of_day % 60) as u8,
            weekday: (weekday_of(days) - 1 + weekday_offset) % 7 + 1,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * SECONDS_PER_DAY
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// How far the guest's weekday is ahead of the calendar's.
    fn weekday_offset(self) -> u8 {
        let days = self.to_unix().div_euclid(SECONDS_PER_DAY);
        (self.weekday + 7 - weekday_of(days)) % 7
    }
}

/// The running clock: RTC time (nanoseconds since the Unix epoch, in the
/// RTC's own time zone) as a function of guest time.
#[derive(Debug, Clone, Copy)]
struct ClockBase {
    guest_ns: u64,
    rtc_ns: i128,
}

/// The MC146818 RTC with 128 bytes of CMOS.
#[derive(Debug, Clone)]
pub struct RtcCmos {
    index: u8,
    nmi_disabled: bool,
    /// CMOS RAM; of the clock registers only the alarm bytes live here.
    cmos: [u8; 128],
    /// Status A without UIP.
    status_a: u8,
    status_b: u8,
    /// Status C's PF, AF and UF.
    flags: u8,
    clock: ClockBase,
    /// The guest's weekday, ahead of the calendar by this many days.
    weekday_offset: u8,
    /// The time registers while updates are stopped.
    frozen: Option<DateTime>,
    /// Guest time up to which the flags are current, and the RTC second
    /// whose update they have seen.
    flags_ns: u64,
    flags_second: i64,
    metrics: DeviceMetrics,
}

static PORTS: [RangeInclusive<u16>; 1] = [INDEX_PORT..=DATA_PORT];

/// 32.768 kHz ticks by guest time `ns`.
fn time_base_ticks(ns: u64) -> u64 {
    (u128::from(ns) * TIME_BASE_HZ / NS_PER_SECOND as u128) as u64
}

fn ns_of_time_base_tick(tick: u64) -> u64 {
    let ns = (u128::from(tick) * NS_PER_SECOND as u128).div_ceil(TIME_BASE_HZ);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The periodic interrupt's period in 32.768 kHz ticks for a nonzero rate
/// select: rates 1 and 2 tap the chain at 256 and 128 Hz, rates 3-15 give
/// 8192 Hz down to 2 Hz.
fn periodic_ticks(rate: u8) -> u64 {
    if rate < 3 {
        1 << (rate + 6)
    } else {
        1 << (rate - 1)
    }
}

impl RtcCmos {
    /// The RTC showing `wall_clock_unix_secs` (at most the year 9999) at
    /// guest time 0, with the
    /// memory-size bytes filled in for `ram_bytes` of guest RAM from
    /// address 0 (what lies above 4 GiB counts as high memory).
    pub fn new(wall_clock_unix_secs: u64, ram_bytes: u64) -> Self {
        let unix_secs = wall_clock_unix_secs.min(LATEST_WALL_CLOCK) as i64;
        let mut rtc = Self {
            index: 0,
            nmi_disabled: false,
            cmos: [0; 128],
            status_a: RESET_STATUS_A,
            status_b: RESET_STATUS_B,
            flags: 0,
            clock: ClockBase { guest_ns: 0, rtc_ns: i128::from(unix_secs) * NS_PER_SECOND },
            weekday_offset: 0,
            frozen: None,
            flags_ns: 0,
            flags_second: unix_secs,
            metrics: DeviceMetrics::default(),
        };
        rtc.fill_memory_size(ram_bytes);
        rtc
    }

    fn fill_memory_size(&mut self, ram_bytes: u64) {
        let base_kib = (ram_bytes / KIB).min(640);
        let extended_kib = ram_bytes.min(64 * MIB).saturating_sub(MIB) / KIB;
        let above_16m = ram_bytes.min(4 * GIB).saturating_sub(16 * MIB) / (64 * KIB);
        let above_4g = (ram_bytes.saturating_sub(4 * GIB) / (64 * KIB)).min(0xff_ffff);
        let mut put = |index: u8, value: u64, bytes: usize| {
            for (i, byte) in value.to_le_bytes()[..bytes].iter().enumerate() {
                self.cmos[usize::from(index) + i] = *byte;
            }
        };
        put(BASE_MEMORY, base_kib, 2);
        put(EXTENDED_MEMORY, extended_kib, 2);
        put(EXTENDED_MEMORY_POST, extended_kib, 2);
        put(MEMORY_ABOVE_16M, above_16m, 2);
        put(MEMORY_ABOVE_4G, above_4g, 3);
        let sum: u16 = self.cmos[CHECKSUMMED].iter().map(|&byte| u16::from(byte)).sum();
        self.cmos[usize::from(CHECKSUM)..][..2].copy_from_slice(&sum.to_be_bytes());
    }

    /// The level of the interrupt line (IRQ8): IRQF. Call
    /// [`advance`](Self::advance) first for it to be current.
    pub fn irq_level(&self) -> bool {
        self.flags & self.status_b & C_FLAGS != 0
    }

    /// Whether the guest disabled NMI through port 0x70's bit 7.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The date and time the clock registers show at `now_ns`.
    pub fn date_time(&self, now_ns: u64) -> DateTime {
        match self.frozen {
            Some(frozen) => frozen,
            None => DateTime::from_unix(self.second_at(now_ns), self.weekday_offset),
        }
    }

    /// Brings the interrupt flags up to `now_ns`.
    pub fn advance(&mut self, now_ns: u64) {
        if now_ns <= self.flags_ns {
            return;
        }
        let rate = self.status_a & A_RATE;
        if rate != 0 && self.divider_running() {
            let period = periodic_ticks(rate);
            let periods = time_base_ticks(now_ns) / period - time_base_ticks(self.flags_ns) / period;
            if periods > 0 {
                // Periods that found PF still set merge into it.
                let merged = periods - 1 + u64::from(self.flags & C_PERIODIC != 0);
                if self.status_b & B_PERIODIC != 0 {
                    self.metrics.coalesced_ticks += merged;
                }
                self.flags |= C_PERIODIC;
            }
        }
        if !self.stopped() {
            let second = self.second_at(now_ns);
            if second > self.flags_second {
                self.flags |= C_UPDATE_ENDED;
                if self.alarm_rings_between(self.flags_second, second) {
                    self.flags |= C_ALARM;
                }
                self.flags_second = second;
            }
        }
        self.flags_ns = now_ns;
    }

    /// When a flag whose interrupt is enabled next rises, for the scheduler.
    pub fn next_event_ns(&self, now_ns: u64) -> Option<u64> {
        let mut next: Option<u64> = None;
        let rate = self.status_a & A_RATE;
        if self.status_b & B_PERIODIC != 0 && self.flags & C_PERIODIC == 0 && rate != 0 && self.divider_running() {
            let period = periodic_ticks(rate);
            let tick = (time_base_ticks(self.flags_ns) / period + 1) * period;
            next = Some(ns_of_time_base_tick(tick));
        }
        let wants_update = self.status_b & B_UPDATE_ENDED != 0 && self.flags & C_UPDATE_ENDED == 0;
        let wants_alarm = self.status_b & B_ALARM != 0 && self.flags & C_ALARM == 0;
        if !self.stopped() && (wants_update || wants_alarm) {
            // Check each second's update (the alarm is matched there).
            let update_rtc_ns = i128::from(self.flags_second + 1) * NS_PER_SECOND;
            let update_ns = i128::from(self.clock.guest_ns) + update_rtc_ns - self.clock.rtc_ns;
            let update_ns = u64::try_from(update_ns.max(0)).unwrap_or(u64::MAX);
            next = Some(next.map_or(update_ns, |next| next.min(update_ns)));
        }
        next.map(|next| next.max(now_ns))
    }

    fn divider_running(&self) -> bool {
        self.status_a & A_DIVIDER_RESET != A_DIVIDER_RESET
    }

    /// Whether updates are stopped: SET, or the divider in reset.
    fn stopped(&self) -> bool {
        self.status_b & B_SET != 0 || !self.divider_running()
    }

    fn rtc_ns(&self, now_ns: u64) -> i128 {
        self.clock.rtc_ns + i128::from(now_ns) - i128::from(self.clock.guest_ns)
    }

    fn second_at(&self, now_ns: u64) -> i64 {
        self.rtc_ns(now_ns).div_euclid(NS_PER_SECOND) as i64
    }

    /// Restarts the clock at `now_ns` from `time`, `fraction_ns` into its
    /// second.
    fn set_clock(&mut self, time: DateTime, now_ns: u64, fraction_ns: i128) {
        let second = time.to_unix();
        self.clock = ClockBase { guest_ns: now_ns, rtc_ns: i128::from(second) * NS_PER_SECOND + fraction_ns };
        self.weekday_offset = time.weekday_offset();
        // Setting the time is no update: no UF, no alarm for the jump.
        self.flags_second = second;
    }

    fn update_in_progress(&self, now_ns: u64) -> bool {
        !self.stopped() && self.rtc_ns(now_ns).rem_euclid(NS_PER_SECOND) >= NS_PER_SECOND - UIP_LEAD_NS
    }

    fn binary(&self) -> bool {
        self.status_b & B_BINARY != 0
    }

    fn encode(&self, value: u8) -> u8 {
        if self.binary() {
            value
        } else {
            to_bcd(value % 100)
        }
    }

    fn decode(&self, byte: u8) -> Option<u8> {
        if self.binary() {
            Some(byte)
        } else {
            from_bcd(byte)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.status_b & B_24_HOUR != 0 {
            return self.encode(hour);
        }
        let twelve_hour = match hour % 12 {
            0 => 12,
            hour => hour,
        };
        self.encode(twelve_hour) | if hour >= 12 { HOUR_PM } else { 0 }
    }

    /// An hour byte in the current format, as 0-23.
    fn decode_hour(&self, byte: u8) -> Option<u8> {
        if self.status_b & B_24_HOUR != 0 {
            return self.decode(byte).filter(|&hour| hour < 24);
        }
        let hour = self.decode(byte & !HOUR_PM).filter(|hour| (1..=12).contains(hour))?;
        Some(hour % 12 + if byte & HOUR_PM != 0 { 12 } else { 0 })
    }

    /// Whether an update in the seconds `(from, to]` matched the alarm.
    fn alarm_rings_between(&self, from: i64, to: i64) -> bool {
        let alarm = |index: u8, hour: bool| {
            let byte = self.cmos[usize::from(index)];
            if byte & ALARM_ANY == ALARM_ANY {
                return None;
            }
            // A byte that is no valid time never matches.
            let value = if hour { self.decode_hour(byte) } else { self.decode(byte) };
            Some(value.unwrap_or(u8::MAX))
        };
        let (second, minute, hour) =
            (alarm(SECONDS_ALARM, false), alarm(MINUTES_ALARM, false), alarm(HOURS_ALARM, true));
        // Within any day's worth of updates, every time of day comes once.
        let from = from.max(to - SECONDS_PER_DAY);
        (from + 1..=to).any(|rtc_second| {
            let time_of_day = rtc_second.rem_euclid(SECONDS_PER_DAY);
            let matches = |alarm: Option<u8>, value: i64| alarm.is_none_or(|alarm| i64::from(alarm) == value);
            matches(second, time_of_day % 60)
                && matches(minute, time_of_day / 60 % 60)
                && matches(hour, time_of_day / 3600)
        })
    }

    fn read_register(&mut self, index: u8, now_ns: u64) -> u8 {
        let time = self.date_time(now_ns);
        match index {
            SECONDS => self.encode(time.second),
            MINUTES => self.encode(time.minute),
            HOURS => self.encode_hour(time.hour),
            DAY_OF_WEEK => self.encode(time.weekday),
            DAY_OF_MONTH => self.encode(time.day),
            MONTH => self.encode(time.month),
            YEAR => self.encode(time.year.rem_euclid(100) as u8),
            CENTURY => self.encode(time.year.div_euclid(100).rem_euclid(100) as u8),
            STATUS_A => {
                let uip = if self.update_in_progress(now_ns) { A_UPDATE_IN_PROGRESS } else { 0 };
                self.status_a | uip
            }
            STATUS_B => self.status_b,
            STATUS_C => {
                self.advance(now_ns);
                let irq = if self.irq_level() { C_IRQ } else { 0 };
                let value = self.flags | irq;
                self.flags = 0;
                value
            }
            STATUS_D => D_VALID_RAM,
            _ => self.cmos[usize::from(index & INDEX_MASK)],
        }
    }

    fn write_register(&mut self, index: u8, byte: u8, now_ns: u64) {
        match index {
            SECONDS | MINUTES | HOURS | DAY_OF_WEEK | DAY_OF_MONTH | MONTH | YEAR | CENTURY => {
                self.write_time(index, byte, now_ns)
            }
            STATUS_A => {
                self.advance(now_ns);
                let divider = byte & A_DIVIDER;
                if divider != A_DIVIDER_32KHZ && divider & A_DIVIDER_RESET != A_DIVIDER_RESET {
                    // A 4.194 MHz or 1.049 MHz crystal: keep the 32 kHz time base.
                    self.metrics.note_unsupported(DATA_PORT);
                }
                let was_stopped = self.stopped();
                self.status_a = byte & !A_UPDATE_IN_PROGRESS;
                self.start_or_stop(was_stopped, now_ns);
            }
            STATUS_B => {
                self.advance(now_ns);
                let mut byte = byte;
                if byte & B_SET != 0 {
                    // SET clears UIE: there are no updates to signal.
                    byte &= !B_UPDATE_ENDED;
                }
                if byte & B_DAYLIGHT_SAVING != 0 {
                    self.metrics.note_unsupported(DATA_PORT);
                }
                let was_stopped = self.stopped();
                self.status_b = byte;
                self.start_or_stop(was_stopped, now_ns);
            }
            STATUS_C | STATUS_D => self.metrics.note_wrong_direction(DATA_PORT),
            _ => self.cmos[usize::from(index & INDEX_MASK)] = byte,
        }
    }

    fn start_or_stop(&mut self, was_stopped: bool, now_ns: u64) {
        match (was_stopped, self.stopped()) {
            (false, true) => self.frozen = Some(DateTime::from_unix(self.second_at(now_ns), self.weekday_offset)),
            (true, false) => {
                if let Some(time) = self.frozen.take() {
                    self.set_clock(time, now_ns, 0);
                }
            }
            _ => {}
        }
    }

    fn write_time(&mut self, index: u8, byte: u8, now_ns: u64) {
        let (value, range) = match index {
            SECONDS | MINUTES => (self.decode(byte), 0..=59),
            HOURS => (self.decode_hour(byte), 0..=23),
            DAY_OF_WEEK => (self.decode(byte), 1..=7),
            DAY_OF_MONTH => (self.decode(byte), 1..=31),
            MONTH => (self.decode(byte), 1..=12),
            _ => (self.decode(byte), 0..=99),
        };
        let Some(value) = value.filter(|value| range.contains(value)) else {
            // Not a time in the current format: the real clock would count
            // from garbage; keep the time as it was.
            self.metrics.note_invalid_command(DATA_PORT);
            return;
        };
        self.advance(now_ns);
        let mut time = self.date_time(now_ns);
        match index {
            SECONDS => time.second = value,
            MINUTES => time.minute = value,
            HOURS => time.hour = value,
            DAY_OF_WEEK => time.weekday = value,
            DAY_OF_MONTH => time.day = value,
            MONTH => time.month = value,
            YEAR => time.year = time.year.div_euclid(100) * 100 + i64::from(value),
            _ => time.year = i64::from(value) * 100 + time.year.rem_euclid(100),
        }
        match self.frozen.as_mut() {
            Some(frozen) => *frozen = time,
            None => {
                // A write while the clock runs keeps the second's phase.
                let fraction = self.rtc_ns(now_ns).rem_euclid(NS_PER_SECOND);
                self.set_clock(time, now_ns, fraction);
            }
        }
    }
}

impl ByteRegisters for RtcCmos {
    fn register_ports(&self) -> &[RangeInclusive<u16>] {
        &PORTS
    }

    fn counters(&self) -> &DeviceMetrics {
        &self.metrics
    }

    fn metrics_mut(&mut self) -> &mut DeviceMetrics {
        &mut self.metrics
    }

    fn read_byte(&mut self, port: u16, now_ns: u64) -> u8 {
        match port {
            DATA_PORT => self.read_register(self.index, now_ns),
            INDEX_PORT => {
                self.metrics.note_wrong_direction(port);
                0xff
            }
            _ => {
                self.metrics.note_invalid_command(port);
                0xff
            }
        }
    }

    fn write_byte(&mut self, port: u16, byte: u8, now_ns: u64) {
        match port {
            INDEX_PORT => {
                self.index = byte & INDEX_MASK;
                self.nmi_disabled = byte & NMI_DISABLE != 0;
            }
            DATA_PORT => self.write_register(self.index, byte, now_ns),
            _ => self.metrics.note_invalid_command(port),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::devices::PortDevice;
    use proptest::prelude::*;

    use super::*;

    /// 2024-02-29 13:45:30 UTC, a Thursday.
    const LEAP_DAY: u64 = 1_709_214_330;
    const SECOND: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn read(rtc: &mut RtcCmos, index: u8, now_ns: u64) -> u8 {
        rtc.write(0x70, 1, u32::from(index), now_ns);
        let value = rtc.read(0x71, 1, now_ns);
        assert!(value <= 0xff);
        value as u8
    }

    fn write(rtc: &mut RtcCmos, index: u8, value: u8, now_ns: u64) {
        rtc.write(0x70, 1, u32::from(index), now_ns);
        rtc.write(0x71, 1, u32::from(value), now_ns);
    }

    /// Seconds, minutes, hours, weekday, day, month, year, century.
    fn clock(rtc: &mut RtcCmos, now_ns: u64) -> [u8; 8] {
        [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(|index| read(rtc, index, now_ns))
    }

    #[test]
    fn calendar_arithmetic() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2023, 2, 31), days_from_civil(2023, 3, 3), "days carry over");
        for days in [-800_000, -1, 0, 59, 60, 365, 10_957, 19_782, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        let time = DateTime::from_unix(LEAP_DAY as i64, 0);
        assert_eq!(time, DateTime { year: 2024, month: 2, day: 29, hour: 13, minute: 45, second: 30, weekday: 5 });
        assert_eq!(time.to_unix(), LEAP_DAY as i64);
    }

    #[test]
    fn reads_bcd_24_hour_by_default_and_time_advances() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 128 * MIB);
        assert_eq!(clock(&mut rtc, 0), [0x30, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
        assert_eq!(read(&mut rtc, 0x0a, 0), 0x26);
        assert_eq!(read(&mut rtc, 0x0b, 0), 0x02);
        assert_eq!(read(&mut rtc, 0x0d, 0), 0x80);
        assert_eq!(clock(&mut rtc, SECOND - 1), [0x30, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
        assert_eq!(clock(&mut rtc, SECOND), [0x31, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]);
        // Ten hours later it is the first of March, a Friday.
        assert_eq!(clock(&mut rtc, 37_000 * SECOND), [0x10, 0x02, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]);
        assert_eq!(rtc.metrics().odd_total(), 0);
    }

    #[test]
    fn the_wall_clock_is_capped_at_the_year_9999() {
        let mut rtc = RtcCmos::new(u64::MAX, 0);
        assert_eq!(clock(&mut rtc, 0), [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x99]);
    }

    #[test]
    fn the_century_rolls_over() {
        let mut rtc = RtcCmos::new(946_684_799, 0);
        assert_eq!(clock(&mut rtc, 0), [0x59, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99, 0x19]);
        assert_eq!(clock(&mut rtc, SECOND), [0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]);
    }

    #[test]
    fn binary_and_12_hour_formats() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        write(&mut rtc, 0x0b, 0x06, 0); // binary, 24-hour
        assert_eq!(clock(&mut rtc, 0), [30, 45, 13, 5, 29, 2, 24, 20]);
        write(&mut rtc, 0x0b, 0x04, 0); // binary, 12-hour
        assert_eq!(read(&mut rtc, 0x04, 0), 0x80 | 1, "1 PM");
        write(&mut rtc, 0x0b, 0x00, 0); // BCD, 12-hour
        assert_eq!(read(&mut rtc, 0x04, 0), 0x81);
        // Midnight is 12 AM, noon is 12 PM.
        let midnight = 1_709_251_200;
        let mut rtc = RtcCmos::new(midnight, 0);
        write(&mut rtc, 0x0b, 0x00, 0);
        assert_eq!(read(&mut rtc, 0x04, 0), 0x12);
        assert_eq!(read(&mut rtc, 0x04, 12 * 3600 * SECOND), 0x92);
        assert_eq!(read(&mut rtc, 0x04, 23 * 3600 * SECOND), 0x91);
        write(&mut rtc, 0x0b, 0x04, 0);
        assert_eq!(read(&mut rtc, 0x04, 0), 12);
        assert_eq!(read(&mut rtc, 0x04, 12 * 3600 * SECOND), 0x8c);
        // Writing a 12-hour time: 11 PM.
        write(&mut rtc, 0x04, 0x8b, 0);
        write(&mut rtc, 0x0b, 0x06, 0);
        assert_eq!(read(&mut rtc, 0x04, 0), 23);
        assert_eq!(rtc.metrics().odd_total(), 0);
    }

    /// UIP is set for the last 244 microseconds before each update; a
    /// guest that waits for it to clear (Linux) or to rise then clear
    /// (some firmware) gets through.
    #[test]
    fn the_update_in_progress_window() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        assert_eq!(read(&mut rtc, 0x0a, 0), 0x26);
        assert_eq!(read(&mut rtc, 0x0a, SECOND - 244_001), 0x26);
        assert_eq!(read(&mut rtc, 0x0a, SECOND - 244_000), 0xa6);
        assert_eq!(read(&mut rtc, 0x0a, SECOND - 1), 0xa6);
        assert_eq!(read(&mut rtc, 0x0a, SECOND), 0x26);
        // Wait for UIP to rise, then fall, 10 us per poll; the seconds
        // register has moved on once it has.
        let mut now = 300 * MS;
        while read(&mut rtc, 0x0a, now) & 0x80 == 0 {
            now += 10_000;
        }
        assert_eq!(now, SECOND - 240_000);
        while read(&mut rtc, 0x0a, now) & 0x80 != 0 {
            now += 10_000;
        }
        assert_eq!(now, SECOND);
        assert_eq!(read(&mut rtc, 0x00, now), 0x31);
        // Stopped clocks have no updates, so no UIP.
        write(&mut rtc, 0x0b, 0x82, now);
        assert_eq!(read(&mut rtc, 0x0a, 2 * SECOND - 1), 0x26);
    }

    /// Linux's `mc146818_set_time()`: SET in B, the divider in reset in A,
    /// the time in BCD, then A and B restored.
    #[test]
    fn linux_sets_the_time() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        let t0 = 500 * MS;
        let control = read(&mut rtc, 0x0b, t0);
        write(&mut rtc, 0x0b, control | 0x80, t0);
        let freq_select = read(&mut rtc, 0x0a, t0);
        write(&mut rtc, 0x0a, freq_select | 0x70, t0);
        // 2023-07-09 12:00:00, a Sunday.
        for (index, value) in [(0x09, 0x23), (0x08, 0x07), (0x07, 0x09), (0x04, 0x12), (0x02, 0x00), (0x00, 0x00)] {
            write(&mut rtc, index, value, t0);
        }
        write(&mut rtc, 0x06, 0x01, t0);
        // Frozen while SET: time does not move.
        assert_eq!(clock(&mut rtc, t0 + 5 * SECOND), [0x00, 0x00, 0x12, 0x01, 0x09, 0x07, 0x23, 0x20]);
        let t1 = t0 + 7 * SECOND;
        write(&mut rtc, 0x0b, control, t1);
        write(&mut rtc, 0x0a, freq_select, t1);
        assert_eq!(rtc.date_time(t1).to_unix(), 1_688_904_000);
        assert_eq!(clock(&mut rtc, t1 + SECOND - 1), [0x00, 0x00, 0x12, 0x01, 0x09, 0x07, 0x23, 0x20]);
        assert_eq!(clock(&mut rtc, t1 + SECOND), [0x01, 0x00, 0x12, 0x01, 0x09, 0x07, 0x23, 0x20]);
        assert_eq!(rtc.metrics().odd_total(), 0);
    }

    #[test]
    fn set_clears_uie_and_a_written_weekday_sticks() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        write(&mut rtc, 0x0b, 0x92, 0);
        assert_eq!(read(&mut rtc, 0x0b, 0), 0x82);
        write(&mut rtc, 0x06, 0x03, 0); // the guest insists it is Tuesday
        write(&mut rtc, 0x0b, 0x02, 0);
        assert_eq!(read(&mut rtc, 0x06, 0), 0x03);
        assert_eq!(read(&mut rtc, 0x06, 86_400 * SECOND), 0x04, "and the weekday keeps counting");
        // A write while running keeps the phase of the second.
        write(&mut rtc, 0x00, 0x10, 700 * MS);
        assert_eq!(read(&mut rtc, 0x00, SECOND - 1), 0x10);
        assert_eq!(read(&mut rtc, 0x00, SECOND), 0x11);
    }

    #[test]
    fn periodic_interrupt_flags() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        // 1024 Hz is the reset rate; enable PIE.
        write(&mut rtc, 0x0b, 0x42, 0);
        assert!(!rtc.irq_level());
        let period_ns = 976_563; // 32 ticks of 32768 Hz, rounded up
        assert_eq!(rtc.next_event_ns(0), Some(period_ns));
        rtc.advance(period_ns - 1);
        assert!(!rtc.irq_level());
        rtc.advance(period_ns);
        assert!(rtc.irq_level());
        assert_eq!(rtc.next_event_ns(period_ns), None, "PF is still set: no new edge until C is read");
        assert_eq!(read(&mut rtc, 0x0c, period_ns), 0xc0);
        assert!(!rtc.irq_level());
        assert_eq!(read(&mut rtc, 0x0c, period_ns), 0x00, "cleared on read");
        assert_eq!(rtc.next_event_ns(period_ns), Some(2 * period_ns - 1));
        // Ten periods with no read of C: one flag, nine coalesced.
        assert_eq!(read(&mut rtc, 0x0c, 11 * period_ns), 0xc0);
        assert_eq!(rtc.metrics().coalesced_ticks, 9);
        // Rate 15 is 2 Hz; PF is set even with PIE off, without IRQF.
        write(&mut rtc, 0x0a, 0x2f, SECOND);
        write(&mut rtc, 0x0b, 0x02, SECOND);
        assert_eq!(read(&mut rtc, 0x0c, SECOND), 0x50, "the 1024 Hz flag from before, and the update at 1 s");
        assert_eq!(read(&mut rtc, 0x0c, SECOND + 499 * MS), 0x00);
        assert_eq!(read(&mut rtc, 0x0c, SECOND + 500 * MS), 0x40);
        assert_eq!(rtc.next_event_ns(SECOND), None);
        // Rate 0 is off.
        write(&mut rtc, 0x0a, 0x20, 2 * SECOND);
        assert_eq!(read(&mut rtc, 0x0c, 2 * SECOND), 0x50);
        assert_eq!(read(&mut rtc, 0x0c, 10 * SECOND), 0x10, "only the updates");
        assert_eq!(periodic_ticks(1), 128);
        assert_eq!(periodic_ticks(2), 256);
        assert_eq!(periodic_ticks(3), 4);
    }

    #[test]
    fn update_ended_and_alarm_interrupts() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        write(&mut rtc, 0x0a, 0x20, 0); // no periodic interrupt
        write(&mut rtc, 0x0b, 0x12, 0); // UIE
        assert_eq!(rtc.next_event_ns(0), Some(SECOND));
        rtc.advance(SECOND - 1);
        assert!(!rtc.irq_level());
        rtc.advance(SECOND);
        assert!(rtc.irq_level());
        assert_eq!(read(&mut rtc, 0x0c, SECOND), 0x90);
        // Alarm at 13:45:35 (BCD), AIE only.
        write(&mut rtc, 0x01, 0x35, SECOND);
        write(&mut rtc, 0x03, 0x45, SECOND);
        write(&mut rtc, 0x05, 0x13, SECOND);
        write(&mut rtc, 0x0b, 0x22, SECOND);
        rtc.advance(5 * SECOND - 1);
        assert!(!rtc.irq_level(), "13:45:34");
        assert_eq!(read(&mut rtc, 0x0c, 5 * SECOND - 1), 0x10);
        rtc.advance(5 * SECOND);
        assert!(rtc.irq_level());
        assert_eq!(read(&mut rtc, 0x0c, 5 * SECOND), 0xb0);
        // Passing the alarm time without an exit still rings it.
        write(&mut rtc, 0x01, 0x00, 5 * SECOND);
        write(&mut rtc, 0x03, 0x50, 5 * SECOND); // 13:50:00
        assert_eq!(read(&mut rtc, 0x0c, 3600 * SECOND), 0xb0);
        // "Don't care" bytes: every second.
        write(&mut rtc, 0x01, 0xc0, 3600 * SECOND);
        write(&mut rtc, 0x03, 0xff, 3600 * SECOND);
        write(&mut rtc, 0x05, 0xc5, 3600 * SECOND);
        assert_eq!(read(&mut rtc, 0x0c, 3601 * SECOND), 0xb0);
        // An alarm byte that is no valid time never rings.
        write(&mut rtc, 0x01, 0x7a, 3601 * SECOND);
        assert_eq!(read(&mut rtc, 0x0c, 9000 * SECOND), 0x10);
    }

    #[test]
    fn memory_size_registers_like_pc_firmware() {
        let mut rtc = RtcCmos::new(0, 128 * MIB);
        let bytes = |rtc: &mut RtcCmos, indices: &[u8]| {
            indices.iter().map(|&i| read(rtc, i, 0)).collect::<alloc::vec::Vec<_>>()
        };
        assert_eq!(bytes(&mut rtc, &[0x15, 0x16]), [0x80, 0x02], "640 KiB");
        assert_eq!(bytes(&mut rtc, &[0x17, 0x18, 0x30, 0x31]), [0x00, 0xfc, 0x00, 0xfc], "63 MiB");
        assert_eq!(bytes(&mut rtc, &[0x34, 0x35]), [0x00, 0x07], "112 MiB in 64 KiB units");
        assert_eq!(bytes(&mut rtc, &[0x5b, 0x5c, 0x5d]), [0, 0, 0]);
        assert_eq!(bytes(&mut rtc, &[0x2e, 0x2f]), [0x01, 0x7e], "0x80 + 0x02 + 0xfc");

        let mut rtc = RtcCmos::new(0, 6 * GIB);
        assert_eq!(bytes(&mut rtc, &[0x34, 0x35]), [0x00, 0xff], "4 GiB - 16 MiB");
        assert_eq!(bytes(&mut rtc, &[0x5b, 0x5c, 0x5d]), [0x00, 0x80, 0x00], "2 GiB");

        let mut rtc = RtcCmos::new(0, 8 * MIB);
        assert_eq!(bytes(&mut rtc, &[0x17, 0x18]), [0x00, 0x1c], "7 MiB");
        assert_eq!(bytes(&mut rtc, &[0x34, 0x35]), [0, 0]);
        // The rest of CMOS is plain RAM.
        write(&mut rtc, 0x40, 0xa5, 0);
        assert_eq!(read(&mut rtc, 0x40, 0), 0xa5);
        write(&mut rtc, 0x7f, 0x5a, 0);
        assert_eq!(read(&mut rtc, 0x7f, 0), 0x5a);
    }

    #[test]
    fn the_nmi_bit_and_odd_accesses() {
        let mut rtc = RtcCmos::new(LEAP_DAY, 0);
        assert!(!rtc.nmi_disabled());
        rtc.write(0x70, 1, 0x8d, 0);
        assert!(rtc.nmi_disabled());
        assert_eq!(rtc.read(0x71, 1, 0), 0x80, "register D, index without the NMI bit");
        rtc.write(0x70, 1, 0x0d, 0);
        assert!(!rtc.nmi_disabled());

        assert_eq!(rtc.read(0x70, 1, 0), 0xff);
        assert_eq!(rtc.metrics().wrong_direction, 1);
        write(&mut rtc, 0x0c, 0xff, 0);
        write(&mut rtc, 0x0d, 0x00, 0);
        assert_eq!(rtc.metrics().wrong_direction, 3);
        assert_eq!(read(&mut rtc, 0x0d, 0), 0x80);
        // Not BCD, out of range, a 12-hour hour of 13.
        write(&mut rtc, 0x00, 0x5a, 0);
        write(&mut rtc, 0x08, 0x13, 0);
        write(&mut rtc, 0x0b, 0x00, 0);
        write(&mut rtc, 0x04, 0x13, 0);
        assert_eq!(rtc.metrics().invalid_commands, 3);
        assert_eq!(clock(&mut rtc, 0)[..3], [0x30, 0x45, 0x81], "unchanged");
        // Daylight saving and other crystals are not modelled.
        write(&mut rtc, 0x0b, 0x03, 0);
        write(&mut rtc, 0x0a, 0x06, 0);
        assert_eq!(rtc.metrics().unsupported, 2);
        // A 16-bit write of index and data in one go.
        rtc.write(0x70, 2, 0x4240, 0);
        assert_eq!(read(&mut rtc, 0x40, 0), 0x42);
        assert_eq!(rtc.read(0x70, 2, 0), 0x42ff);
        assert_eq!(rtc.metrics().bad_size, 2);
        assert_eq!(rtc.metrics().last_odd_port, Some(0x70));
    }

    proptest! {
        #[test]
        fn calendar_round_trips(seconds in -20_000_000_000i64..300_000_000_000) {
            let time = DateTime::from_unix(seconds, 0);
            prop_assert!((1..=12).contains(&time.month) && (1..=31).contains(&time.day));
            prop_assert!(time.hour < 24 && time.minute < 60 && time.second < 60);
            prop_assert_eq!(time.to_unix(), seconds);
            prop_assert_eq!(time.weekday_offset(), 0);
            // The day after is the next weekday.
            let tomorrow = DateTime::from_unix(seconds + SECONDS_PER_DAY, 0);
            prop_assert_eq!(tomorrow.weekday, time.weekday % 7 + 1);
        }

        /// Every register reads back in the format B selects, and decodes
        /// to the clock's time.
        #[test]
        fn registers_show_the_time_in_every_format(
            unix in 0u64..5_000_000_000,
            elapsed in 0u64..1_000_000_000_000_000,
            format in 0u8..4,
        ) {
            let mut rtc = RtcCmos::new(unix, 0);
            let binary = format & 1 != 0;
            let hours_24 = format & 2 != 0;
            write(&mut rtc, 0x0b, (if binary { 0x04 } else { 0 }) | (if hours_24 { 0x02 } else { 0 }), 0);
            let expected = DateTime::from_unix((unix + elapsed / SECOND) as i64, 0);
            let decode = |byte: u8| if binary { byte } else { from_bcd(byte).expect("valid BCD") };
            let [second, minute, hour, weekday, day, month, year, century] = clock(&mut rtc, elapsed);
            let hour = if hours_24 {
                decode(hour)
            } else {
                let twelve = decode(hour & 0x7f);
                prop_assert!((1..=12).contains(&twelve));
                twelve % 12 + if hour & 0x80 != 0 { 12 } else { 0 }
            };
            prop_assert_eq!(
                (decode(second), decode(minute), hour, decode(weekday), decode(day), decode(month)),
                (expected.second, expected.minute, expected.hour, expected.weekday, expected.day, expected.month)
            );
            prop_assert_eq!(i64::from(decode(century)) * 100 + i64::from(decode(year)), expected.year);
        }
    }
}
