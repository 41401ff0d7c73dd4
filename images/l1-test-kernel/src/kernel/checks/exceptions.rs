//! `exceptions`: the platform delivers the exceptions a guest raises, with
//! the right vector, error code and CR2, and the guest resumes after them.
//!
//! Asserts: UD2 raises #UD, INT3 #BP, DIV by zero #DE, a read of a
//! non-canonical address #GP(0), and a read of an address this kernel's page
//! tables do not map #PF with error code 0 (not present, read, supervisor)
//! and CR2 = that address.

use super::{fail, note, require, Report};
use crate::arch::probe::{self, Fault, Trigger};

const DIVIDE_ERROR: u8 = 0;
const BREAKPOINT: u8 = 3;
const INVALID_OPCODE: u8 = 6;
const GENERAL_PROTECTION: u8 = 13;
const PAGE_FAULT: u8 = 14;

/// Bit 47 set without the bits above it: not canonical with 48-bit addresses
/// (nor with 57).
const NON_CANONICAL: u64 = 0x0080_0000_0000_0000;
/// Above the 4 GiB the boot page tables map.
const UNMAPPED: u64 = 0x2_0000_0000;

pub fn run(report: &mut Report) {
    let cases = [
        ("UD2", Trigger::InvalidOpcode, INVALID_OPCODE),
        ("INT3", Trigger::Breakpoint, BREAKPOINT),
        ("DIV by zero", Trigger::DivideByZero, DIVIDE_ERROR),
        ("read of a non-canonical address", Trigger::Read(NON_CANONICAL), GENERAL_PROTECTION),
        ("read of an unmapped address", Trigger::Read(UNMAPPED), PAGE_FAULT),
    ];
    for (what, trigger, vector) in cases {
        // Safe because the only read is of addresses that are either not
        // canonical or not mapped: it cannot reach a device.
        match unsafe { probe::run(trigger) } {
            Ok(()) => fail!(report, "{what}: expected vector {vector}, saw no fault"),
            Err(fault) => check_fault(report, what, vector, trigger, fault),
        }
    }
}

fn check_fault(report: &mut Report, what: &str, vector: u8, trigger: Trigger, fault: Fault) {
    note!(report, "{what}: {fault}, resumed");
    if fault.vector != vector {
        fail!(report, "{what}: expected vector {vector}, saw {fault}");
        return;
    }
    match vector {
        GENERAL_PROTECTION | PAGE_FAULT => {
            require!(report, fault.error_code == 0, "{what}: expected error code 0, saw {fault}");
        }
        _ => {}
    }
    if let (PAGE_FAULT, Trigger::Read(address)) = (vector, trigger) {
        require!(report, fault.cr2 == address, "{what}: expected CR2 {address:#x}, saw {:#x}", fault.cr2);
    }
}
