//! VMX instructions that must fail, and VM entries that must fail, each
//! with the VM-instruction error or exit reason the SDM gives (31.4, 27.1-27.8).

use l1_hypervisor::layout::{VMCS_REGION, VMXON_REGION, WRONG_REVISION_REGION};
use vmx::exit::{ExitReason, VmInstructionError};
use vmx::vmcs::{Control32, GuestNatural, Host16, ReadOnly32};
use vmx_instructions::{vmclear, vmptrld, vmptrst, vmread, vmwrite, vmxon, VmxInstructionError};

use crate::arch::memory::{write_u32, zero_page};
use crate::arch::{invept_type, l2, vmcall_in_root};
use crate::hypervisor::guest::{Entry, Vm};
use crate::hypervisor::report::{Outcome, Report};
use crate::hypervisor::vmcs::{self, InstructionError};
use crate::hypervisor::vmx_root::reset_launch_state;

/// An encoding with reserved bit 12 set: no VMCS field has it.
const UNSUPPORTED_FIELD: u32 = 0x1000 | 0x0002;
/// INVEPT type 0 is not defined (1 is single-context, 2 all-context).
const UNDEFINED_INVEPT_TYPE: u64 = 0;

/// Requires VMfailValid with VM-instruction error `expected`.
fn expect_fail_valid<T>(
    report: &mut Report,
    what: &str,
    result: Result<T, VmxInstructionError>,
    expected: VmInstructionError,
) -> Outcome {
    match result {
        Err(VmxInstructionError::FailValid) => {
            let error = InstructionError::current();
            if error.0 != expected.number() {
                fail!(report, "{what}: expected {expected}, saw {error}");
            }
            Ok(())
        }
        Err(VmxInstructionError::FailInvalid) => fail!(report, "{what}: expected {expected}, saw VMfailInvalid"),
        Ok(_) => fail!(report, "{what}: expected {expected}, saw success"),
    }
}

/// `instruction-errors`: with a current VMCS, each of these fails with
/// VMfailValid and the error number table 31-1 gives: VMXON in VMX root
/// operation (15), VMPTRLD of the VMXON region (10), VMCLEAR of it (3),
/// VMPTRLD of a region with a wrong revision identifier (11), VMPTRLD and
/// VMCLEAR of an unaligned address (9, 2), VMREAD of an unsupported field
/// (12), INVEPT of an undefined type (28), VMRESUME of a clear VMCS (5),
/// and with `root-vmcall=1` VMCALL in VMX root operation (1). VMWRITE to a
/// read-only field fails with 13 unless IA32_VMX_MISC[29] allows VMWRITE
/// to any field. After all that, the VMCS is still the current one.
pub fn instruction_errors(vm: &mut Vm, report: &mut Report, root_vmcall: bool) -> Outcome {
    use VmInstructionError::*;
    // Safe because in VMX root operation VMXON can only fail.
    expect_fail_valid(report, "VMXON in VMX root operation", unsafe { vmxon(VMXON_REGION) }, VmxonInVmxRoot)?;
    // Safe because these VMPTRLDs and VMCLEARs name regions the processor
    // refuses (VMXON region, wrong revision, unaligned), so nothing is
    // loaded or cleared.
    expect_fail_valid(report, "VMPTRLD of the VMXON region", unsafe { vmptrld(VMXON_REGION) }, VmptrldVmxonPointer)?;
    expect_fail_valid(report, "VMCLEAR of the VMXON region", unsafe { vmclear(VMXON_REGION) }, VmclearVmxonPointer)?;
    zero_page(WRONG_REVISION_REGION);
    write_u32(WRONG_REVISION_REGION, vm.capabilities.basic.revision_id() ^ 0x5a5a);
    expect_fail_valid(
        report,
        "VMPTRLD of a wrong revision",
        // Safe as above.
        unsafe { vmptrld(WRONG_REVISION_REGION) },
        VmptrldWrongRevision,
    )?;
    // Safe as above.
    let unaligned_load = unsafe { vmptrld(VMCS_REGION + 8) };
    expect_fail_valid(report, "VMPTRLD of an unaligned address", unaligned_load, VmptrldInvalidAddress)?;
    // Safe as above.
    let unaligned_clear = unsafe { vmclear(VMCS_REGION + 8) };
    expect_fail_valid(report, "VMCLEAR of an unaligned address", unaligned_clear, VmclearInvalidAddress)?;
    expect_fail_valid(report, "VMREAD of an unsupported field", vmread(UNSUPPORTED_FIELD), UnsupportedVmcsComponent)?;

    let exit_reason = ReadOnly32::ExitReason.encoding();
    let before = vmcs::read(ReadOnly32::ExitReason);
    // Safe because the exit-reason field is information for L1 only; the
    // old value is written back.
    let written = unsafe { vmwrite(exit_reason, u64::from(before)) };
    if vm.capabilities.misc.vmwrite_any_field() {
        if let Err(error) = written {
            fail!(report, "VMWRITE to the exit reason failed ({error:?}) though IA32_VMX_MISC[29] allows it");
        }
        note!(report, "VMWRITE to a read-only field: allowed (IA32_VMX_MISC[29])");
    } else {
        expect_fail_valid(report, "VMWRITE to a read-only field", written, VmwriteReadOnlyComponent)?;
    }

    let invalid_invept = invept_type(UNDEFINED_INVEPT_TYPE, vm.eptp);
    expect_fail_valid(report, "INVEPT of type 0", invalid_invept, InvalidInveptInvvpidOperand)?;
    if root_vmcall {
        expect_fail_valid(report, "VMCALL in VMX root operation", vmcall_in_root(), VmcallInVmxRoot)?;
    }

    reset_launch_state(report)?;
    vm.set_launched(false);
    vm.start(l2::launch());
    let resume: Result<(), VmxInstructionError> = match vm.enter_with(false) {
        Entry::Failed(error, _) => Err(error),
        Entry::Exited(exit) => {
            fail!(report, "VMRESUME of a clear VMCS: expected {VmresumeNonLaunchedVmcs}, saw {exit}")
        }
    };
    expect_fail_valid(report, "VMRESUME of a clear VMCS", resume, VmresumeNonLaunchedVmcs)?;
    expect_eq!(report, "VMPTRST after the failures", VMCS_REGION, vmptrst());
    Ok(())
}

/// Requires a VM entry (VMLAUNCH) that fails with VMfailValid `expected`.
fn expect_entry_fails(vm: &mut Vm, report: &mut Report, what: &str, expected: VmInstructionError) -> Outcome {
    let result: Result<(), VmxInstructionError> = match vm.enter_with(true) {
        Entry::Failed(error, _) => Err(error),
        Entry::Exited(exit) => fail!(report, "{what}: expected {expected}, saw {exit}"),
    };
    expect_fail_valid(report, what, result, expected)
}

/// `entry-failures`: on a clear VMCS, VMLAUNCH with a must-be-one
/// pin-based control cleared fails with error 7 (invalid control fields),
/// with host TR selector 0 with error 8 (invalid host state); with guest
/// RFLAGS bit 1 clear it exits with reason 33 and the entry-failure bit
/// (invalid guest state), qualification 0. None of these launches the
/// VMCS: the next VMLAUNCH, with everything restored, runs L2.
pub fn entry_failures(vm: &mut Vm, report: &mut Report) -> Outcome {
    reset_launch_state(report)?;
    vm.set_launched(false);
    vm.start(l2::launch());

    // A must-be-one bit cleared, or else a must-be-zero bit set.
    let allowed = vm.capabilities.pin_based;
    let must_be_zero = !allowed.allowed1;
    let broken_pin = if allowed.allowed0 != 0 {
        Some(vm.controls.pin & !allowed.allowed0)
    } else if must_be_zero != 0 {
        Some(vm.controls.pin | 1 << must_be_zero.trailing_zeros())
    } else {
        None
    };
    match broken_pin {
        Some(broken) => {
            vmcs::write(Control32::PinBasedControls, broken);
            let what = "VMLAUNCH with invalid pin-based controls";
            expect_entry_fails(vm, report, what, VmInstructionError::EntryInvalidControlFields)?;
            vmcs::write(Control32::PinBasedControls, vm.controls.pin);
        }
        None => note!(report, "every pin-based setting is valid here: no invalid one to try"),
    }

    vmcs::write(Host16::TrSelector, 0);
    expect_entry_fails(
        vm,
        report,
        "VMLAUNCH with host TR selector 0",
        VmInstructionError::EntryInvalidHostStateFields,
    )?;
    vmcs::write(Host16::TrSelector, multiboot_kernel::arch::descriptors::TSS_SELECTOR);

    vmcs::write(GuestNatural::Rflags, 0);
    match vm.enter_with(true) {
        Entry::Exited(exit) => {
            expect_eq!(report, "exit reason after RFLAGS bit 1 = 0", 0x8000_0021u32, exit.reason.0);
            expect_eq!(report, "exit qualification of the failed entry", 0u64, exit.qualification);
        }
        Entry::Failed(error, number) => match number {
            Some(number) => fail!(report, "VMLAUNCH with invalid guest RFLAGS: expected exit reason 33, saw {number}"),
            None => fail!(report, "VMLAUNCH with invalid guest RFLAGS: expected exit reason 33, saw {error:?}"),
        },
    }

    vm.start(l2::launch());
    match vm.enter_with(true) {
        Entry::Exited(exit) if exit.is(ExitReason::Vmcall) => Ok(()),
        Entry::Exited(exit) => fail!(report, "VMLAUNCH after the failed entries: expected L2's VMCALL, saw {exit}"),
        Entry::Failed(_, Some(number)) => fail!(report, "VMLAUNCH after the failed entries: {number}"),
        Entry::Failed(error, None) => fail!(report, "VMLAUNCH after the failed entries: {error:?}"),
    }
}

/// `launch`: the first VMLAUNCH of a clear VMCS runs L2 (which sees CR4.VMXE
/// hidden by the read shadow and paging on) to its VMCALL, a 3-byte exit;
/// VMLAUNCH of the now launched VMCS fails with error 4; VMRESUME runs L2
/// again.
pub fn launch(vm: &mut Vm, report: &mut Report) -> Outcome {
    reset_launch_state(report)?;
    vm.set_launched(false);
    vm.start(l2::launch());
    let exit = vm.run_to_done(report)?;
    expect_eq!(report, "VMCALL instruction length", 3u32, exit.instruction_length);
    expect_entry_fails(vm, report, "VMLAUNCH of a launched VMCS", VmInstructionError::VmlaunchNonClearVmcs)?;
    vm.start(l2::launch());
    vm.run_to_done(report)?;
    Ok(())
}
