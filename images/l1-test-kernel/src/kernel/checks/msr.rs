//! `msr`: the MSRs a guest kernel reads first, and the #GP for the rest.
//!
//! Asserts: IA32_APIC_BASE marks the boot CPU and has base 0xfee00000;
//! IA32_PAT takes a new value, reads it back, and takes the old one back;
//! EFER has LME and LMA set, NXE exactly as boot.s set it, SCE clear; the
//! TSC MSR does not run behind RDTSC (unless `expect-tsc-msr=0`); RDMSR
//! and WRMSR of an unknown MSR raise #GP(0) (or, with
//! `expect-unknown-msr=zero`, read 0 and are ignored).

use l1_test_kernel::cmdline::UnknownMsr;
use l1_test_kernel::cpu_info::UNKNOWN_MSR;

use super::{fail, note, require, Context, Report};
use crate::arch::cpu::rdtsc;
use crate::arch::probe::{self, is_gp0, Fault, Outcome};

const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
const IA32_APIC_BASE: u32 = 0x1b;
const IA32_PAT: u32 = 0x277;
const IA32_EFER: u32 = 0xc000_0080;

const APIC_BASE_BSP: u64 = 1 << 8;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDRESS: u64 = 0x000f_ffff_ffff_f000;
const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;

const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;

/// A PAT other than the power-on one, with only valid memory types
/// (entries: WB, WT, UC-, UC, WB, WT, WP, WC). Entry 0, which this kernel's
/// page tables use, stays write-back.
const TEST_PAT: u64 = 0x0105_0406_0007_0406;

fn read(report: &mut Report, name: &str, msr: u32) -> Option<u64> {
    match probe::rdmsr(msr) {
        Ok(value) => Some(value),
        Err(fault) => {
            fail!(report, "RDMSR {name} ({msr:#x}): expected a value, saw {fault}");
            None
        }
    }
}

pub fn run(context: &Context, report: &mut Report) {
    if let Some(apic_base) = read(report, "IA32_APIC_BASE", IA32_APIC_BASE) {
        note!(
            report,
            "IA32_APIC_BASE {apic_base:#x} (enabled {}, x2APIC {})",
            (apic_base & APIC_BASE_ENABLE != 0) as u8,
            (apic_base & APIC_BASE_X2APIC != 0) as u8
        );
        require!(report, apic_base & APIC_BASE_BSP != 0, "IA32_APIC_BASE: expected the BSP bit, it is clear");
        let base = apic_base & APIC_BASE_ADDRESS;
        require!(
            report,
            base == APIC_DEFAULT_BASE,
            "IA32_APIC_BASE: expected base {APIC_DEFAULT_BASE:#x}, saw {base:#x}"
        );
    }

    check_pat(report);

    if let Some(efer) = read(report, "EFER", IA32_EFER) {
        note!(report, "EFER {efer:#x}");
        require!(report, efer & EFER_LME != 0, "EFER: expected LME (set at boot), it is clear");
        require!(report, efer & EFER_LMA != 0, "EFER: expected LMA (long mode is active), it is clear");
        let nxe = efer & EFER_NXE != 0;
        require!(
            report,
            nxe == context.efer_nxe,
            "EFER.NXE: expected {} as boot set it, saw {}",
            context.efer_nxe as u8,
            nxe as u8
        );
        require!(report, efer & EFER_SCE == 0, "EFER: expected SCE clear (never set), it is set");
    }

    let before = rdtsc();
    if let Some(tsc) = read(report, "IA32_TIME_STAMP_COUNTER", IA32_TIME_STAMP_COUNTER) {
        if context.options.expect.tsc_msr {
            require!(
                report,
                tsc >= before,
                "TSC MSR: expected at least RDTSC's {before:#x} from just before, saw {tsc:#x}"
            );
        } else {
            note!(report, "TSC MSR {tsc:#x}, RDTSC just before {before:#x} (not compared: expect-tsc-msr=0)");
        }
    }

    let policy = context.options.expect.unknown_msr;
    let result = probe::rdmsr(UNKNOWN_MSR);
    if !read_follows(policy, &result) {
        fail!(
            report,
            "RDMSR of unknown MSR {UNKNOWN_MSR:#x}: expected {}, saw {}",
            read_expectation(policy),
            Outcome(&result)
        );
    }
    // Safe because the MSR does not exist on any processor; if the
    // platform accepts the write anyway, nothing in this kernel uses it.
    let result = unsafe { probe::wrmsr(UNKNOWN_MSR, 0) };
    if !write_follows(policy, &result) {
        fail!(
            report,
            "WRMSR of unknown MSR {UNKNOWN_MSR:#x}: expected {}, saw {}",
            write_expectation(policy),
            Outcome(&result)
        );
    }
}

/// Whether a RDMSR of an unknown MSR did what `policy` says.
pub fn read_follows(policy: UnknownMsr, result: &Result<u64, Fault>) -> bool {
    match policy {
        UnknownMsr::GeneralProtection => is_gp0(result),
        UnknownMsr::ReadsZero => *result == Ok(0),
    }
}

/// Whether a WRMSR of an unknown MSR did what `policy` says.
pub fn write_follows(policy: UnknownMsr, result: &Result<(), Fault>) -> bool {
    match policy {
        UnknownMsr::GeneralProtection => is_gp0(result),
        UnknownMsr::ReadsZero => result.is_ok(),
    }
}

pub fn read_expectation(policy: UnknownMsr) -> &'static str {
    match policy {
        UnknownMsr::GeneralProtection => "#GP(0)",
        UnknownMsr::ReadsZero => "0 without a fault (expect-unknown-msr=zero)",
    }
}

pub fn write_expectation(policy: UnknownMsr) -> &'static str {
    match policy {
        UnknownMsr::GeneralProtection => "#GP(0)",
        UnknownMsr::ReadsZero => "no fault (expect-unknown-msr=zero)",
    }
}

fn check_pat(report: &mut Report) {
    let Some(original) = read(report, "IA32_PAT", IA32_PAT) else { return };
    note!(report, "IA32_PAT {original:#018x}");
    let test = if original == TEST_PAT { TEST_PAT.rotate_left(32) } else { TEST_PAT };
    // Safe because the new PAT keeps entry 0 (the only one this kernel's
    // page tables select) write-back, and the old value is restored.
    let written = unsafe { probe::wrmsr(IA32_PAT, test) };
    if let Err(fault) = written {
        fail!(report, "WRMSR IA32_PAT {test:#x}: expected it to be taken, saw {fault}");
        return;
    }
    if let Some(read_back) = read(report, "IA32_PAT", IA32_PAT) {
        require!(report, read_back == test, "IA32_PAT: wrote {test:#x}, read back {read_back:#x}");
    }
    // Safe because this is the value the platform gave.
    if let Err(fault) = unsafe { probe::wrmsr(IA32_PAT, original) } {
        fail!(report, "WRMSR IA32_PAT back to {original:#x}: saw {fault}");
    }
    if let Some(restored) = read(report, "IA32_PAT", IA32_PAT) {
        require!(report, restored == original, "IA32_PAT: restored {original:#x}, read back {restored:#x}");
    }
}
