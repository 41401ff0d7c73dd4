//! EPT violations and INVEPT.

use l1_hypervisor::ept::{READ, WRITE};
use l1_hypervisor::layout::{FILL_PAGE, L2_EPT_HOLE, L2_READ_ONLY, L2_REMAPPED, REMAP_PAGE_A, REMAP_PAGE_B};
use l1_hypervisor::protocol::{self, command};
use vmx::exit::{EptViolation, ExitReason};
use vmx_instructions::{invept as invept_instruction, InveptKind};

use crate::arch::{l2, memory};
use crate::hypervisor::guest::Vm;
use crate::hypervisor::report::{Failed, Outcome, Report};
use crate::hypervisor::vmcs::Exit;

/// Bits 8:0 and 12 of the qualification are defined for every EPT
/// violation; bits 11:9 only with advanced information (EPT_VPID_CAP[22]).
const ALWAYS_DEFINED: u64 = 0x11ff;
const ADVANCED: u64 = 0x0e00;

fn invalidate(vm: &Vm, report: &mut Report, kind: InveptKind) -> Outcome {
    if let Err(error) = invept_instruction(kind, vm.eptp) {
        fail!(report, "INVEPT {kind:?} failed ({error:?})");
    }
    Ok(())
}

/// Checks an EPT-violation exit against what L2's access must produce.
fn expect_violation(
    vm: &Vm,
    report: &mut Report,
    exit: &Exit,
    expected: EptViolation,
    address: u64,
    rip: u64,
) -> Outcome {
    let advanced = vm.capabilities.ept_vpid.advanced_violation_info();
    let defined = if advanced { ALWAYS_DEFINED | ADVANCED } else { ALWAYS_DEFINED };
    note!(report, "access to {address:#x}: qualification {:#x}", exit.qualification);
    expect_eq!(report, "EPT-violation qualification", expected.encode() & defined, exit.qualification & defined);
    expect_eq!(report, "guest-physical address", address, exit.guest_physical);
    expect_eq!(report, "guest-linear address", address, exit.guest_linear);
    expect_eq!(report, "RIP of the access", rip, exit.rip);
    Ok(())
}

/// A supervisor-mode data access to a linear address L2's paging maps
/// writable and executable, reported with linear address.
fn access(read: bool, write: bool, readable: bool) -> EptViolation {
    EptViolation {
        read,
        write,
        readable,
        guest_linear_address_valid: true,
        translated_access: true,
        writable_address: true,
        ..EptViolation::default()
    }
}

/// `ept-violation`: L2's read of a page EPT does not map exits (reason 48)
/// with qualification "read, not present, linear address valid, access to
/// the translation", the exact guest-physical and guest-linear addresses,
/// and RIP at the read; L1 maps a page there and L2's read completes with
/// that page's data. L2's write to a read-only page exits with "write,
/// readable"; L1 allows writing and the write lands in the host page.
pub fn ept_violation(vm: &mut Vm, report: &mut Report) -> Outcome {
    ept_result(vm.ept.unmap(L2_EPT_HOLE), report)?;
    vm.map(report, L2_READ_ONLY, L2_READ_ONLY, READ)?;
    // Taking a mapping away (or a permission) needs an invalidation.
    invalidate(vm, report, InveptKind::SingleContext)?;
    vm.start(l2::ept_violation());

    let exit = vm.run_expecting(report, ExitReason::EptViolation)?;
    let hole = L2_EPT_HOLE + protocol::HOLE_OFFSET;
    expect_violation(vm, report, &exit, access(true, false, false), hole, l2::hole_read_site())?;
    // The violation itself invalidated what the processor cached for this
    // address (SDM 29.4.3.1): no INVEPT needed to map it in.
    vm.map(report, L2_EPT_HOLE, FILL_PAGE, READ | WRITE)?;

    let exit = vm.run_expecting(report, ExitReason::EptViolation)?;
    let read_only = L2_READ_ONLY + protocol::READ_ONLY_OFFSET;
    expect_violation(vm, report, &exit, access(false, true, true), read_only, l2::read_only_write_site())?;
    vm.map(report, L2_READ_ONLY, L2_READ_ONLY, READ | WRITE)?;

    vm.run_to_done(report)?;
    expect_eq!(report, "L2's write in the host page", protocol::WRITE_PATTERN, memory::read_u64(read_only));
    Ok(())
}

fn ept_result(result: Result<(), l1_hypervisor::ept::EptError>, report: &mut Report) -> Result<(), Failed> {
    if let Err(error) = result {
        fail!(report, "EPT: {error}");
    }
    Ok(())
}

/// `invept`: L2 reads the remapped page (page A), L1 moves it to page B and
/// invalidates with single-context INVEPT, L2 reads page B's data; L1 moves
/// it back and invalidates with all-context INVEPT (single-context where
/// the processor lacks it), and L2 reads page A's data again.
pub fn invept(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.map(report, L2_REMAPPED, REMAP_PAGE_A, READ)?;
    invalidate(vm, report, InveptKind::SingleContext)?;
    vm.start(l2::invept());

    vm.run_to_command(report, command::REMAP)?;
    vm.map(report, L2_REMAPPED, REMAP_PAGE_B, READ)?;
    invalidate(vm, report, InveptKind::SingleContext)?;

    vm.run_to_command(report, command::REMAP)?;
    vm.map(report, L2_REMAPPED, REMAP_PAGE_A, READ)?;
    if vm.capabilities.ept_vpid.invept_all_context() {
        invalidate(vm, report, InveptKind::AllContexts)?;
    } else {
        note!(report, "all-context INVEPT unsupported: single-context instead");
        invalidate(vm, report, InveptKind::SingleContext)?;
    }
    vm.run_to_done(report)?;
    Ok(())
}
