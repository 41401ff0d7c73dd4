//! The MC146818 RTC and CMOS RAM behind the index/data port pair.

use crate::arch::port::{inb, outb};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;

/// Time registers and status registers.
pub const SECONDS: u8 = 0x00;
pub const MINUTES: u8 = 0x02;
pub const HOURS: u8 = 0x04;
pub const DAY_OF_MONTH: u8 = 0x07;
pub const MONTH: u8 = 0x08;
pub const YEAR: u8 = 0x09;
pub const STATUS_A: u8 = 0x0a;
pub const STATUS_B: u8 = 0x0b;
pub const STATUS_C: u8 = 0x0c;
pub const STATUS_D: u8 = 0x0d;
pub const CENTURY: u8 = 0x32;

pub const A_UPDATE_IN_PROGRESS: u8 = 0x80; // UIP: the time registers are changing
pub const D_VALID_RAM_AND_TIME: u8 = 0x80; // VRT: the battery is good

/// Reads a CMOS register (bit 7 of the index, NMI disable, stays clear).
pub fn read(index: u8) -> u8 {
    // Safe because the RTC is a plain register file (see devices/mod.rs).
    unsafe {
        outb(INDEX, index & 0x7f);
        inb(DATA)
    }
}

pub fn write(index: u8, value: u8) {
    // Safe because the RTC is a plain register file (see devices/mod.rs).
    unsafe {
        outb(INDEX, index & 0x7f);
        outb(DATA, value);
    }
}
