//! `rtc`: the MC146818 real-time clock as a guest's boot code reads it.
//!
//! Asserts: status D has VRT set; status B announces BCD; the time
//! registers, read with the update-in-progress protocol until two reads
//! agree, are valid BCD and in range; and (unless `rtc-wait=0`) the
//! seconds advance by one within 2.2 seconds of PIT time.

use l1_test_kernel::rtc_time::{next_second, RawTime, B_24_HOUR, B_BINARY};

use super::{fail, note, require, Context, Report};
use crate::kernel::devices::cmos::{self, *};
use crate::kernel::devices::pit;

/// UIP is set for at most 2 ms per update; this is far longer.
const UIP_POLLS: u32 = 1_000_000;
const CONSISTENT_READ_ATTEMPTS: usize = 10;
const ADVANCE_POLL_MICROS: u64 = 100_000;
const ADVANCE_POLLS: u64 = 22;

pub fn run(context: &Context, report: &mut Report) {
    let status_a = cmos::read(STATUS_A);
    let status_b = cmos::read(STATUS_B);
    let status_d = cmos::read(STATUS_D);
    note!(report, "status A {status_a:#04x}, B {status_b:#04x}, D {status_d:#04x}");
    require!(report, status_d & D_VALID_RAM_AND_TIME != 0, "status D: expected VRT (bit 7) set, read {status_d:#04x}");
    require!(report, status_b & B_BINARY == 0, "status B: expected BCD mode (bit 2 clear), read {status_b:#04x}");

    let Some(raw) = read_time(report) else { return };
    match raw.decode(status_b) {
        Ok(time) => note!(
            report,
            "time {time} (century register {:#04x}, {}, {}-hour)",
            cmos::read(CENTURY),
            if status_b & B_BINARY != 0 { "binary" } else { "BCD" },
            if status_b & B_24_HOUR != 0 { 24 } else { 12 }
        ),
        Err(bad) => fail!(report, "time registers: expected valid values, but the {bad}"),
    }

    if context.options.rtc_wait {
        wait_for_next_second(report, raw.second);
    }
}

/// Waits out an update in progress; false if it never ends.
fn wait_while_updating() -> bool {
    (0..UIP_POLLS).any(|_| cmos::read(STATUS_A) & A_UPDATE_IN_PROGRESS == 0)
}

/// Reads the time registers until two reads in a row agree: an update can
/// start between the UIP check and the last register read.
fn read_time(report: &mut Report) -> Option<RawTime> {
    let mut previous = None;
    for _ in 0..CONSISTENT_READ_ATTEMPTS {
        if !wait_while_updating() {
            fail!(report, "status A: expected UIP to clear within 2 ms, it stayed set");
            return None;
        }
        let time = RawTime {
            second: cmos::read(SECONDS),
            minute: cmos::read(MINUTES),
            hour: cmos::read(HOURS),
            day: cmos::read(DAY_OF_MONTH),
            month: cmos::read(MONTH),
            year: cmos::read(YEAR),
        };
        if previous == Some(time) {
            return Some(time);
        }
        previous = Some(time);
    }
    fail!(report, "time registers: expected two reads in a row to agree, they kept changing");
    None
}

fn wait_for_next_second(report: &mut Report, first: u8) {
    for poll in 1..=ADVANCE_POLLS {
        if pit::wait_micros(ADVANCE_POLL_MICROS).is_err() {
            fail!(report, "waiting on PIT channel 2: expected OUT2 to rise, it never did");
            return;
        }
        let Some(now) = read_time(report) else { return };
        if now.second != first {
            let expected = next_second(first, false);
            require!(
                report,
                now.second == expected,
                "seconds: expected {first:#04x} to become {expected:#04x}, saw {:#04x}",
                now.second
            );
            note!(report, "seconds advanced after about {} ms", poll * ADVANCE_POLL_MICROS / 1000);
            return;
        }
    }
    fail!(
        report,
        "seconds: expected them to advance within {} ms, they stayed at {first:#04x}",
        ADVANCE_POLLS * ADVANCE_POLL_MICROS / 1000
    );
}
