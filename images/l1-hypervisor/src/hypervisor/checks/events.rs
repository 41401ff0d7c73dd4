//! Exceptions that exit through the exception bitmap, and events L1
//! injects into L2 on VM entry.

use l1_hypervisor::protocol::{self, command, mailbox};
use vmx::exit::{ExitReason, InterruptionInfo, InterruptionType};
use vmx::vmcs::{Control32, Guest32, GuestNatural, ReadOnly32};

use crate::arch::l2;
use crate::hypervisor::guest::{self, Vm};
use crate::hypervisor::report::{Outcome, Report};
use crate::hypervisor::vmcs;

const INVALID_OPCODE: u8 = 6;
const BREAKPOINT: u8 = 3;
const GENERAL_PROTECTION: u8 = 13;
/// UD2 is 0F 0B. Exits for hardware exceptions leave the instruction
/// length undefined (SDM 28.2.5), so L1 knows it.
const UD2_LENGTH: u64 = 2;
const RFLAGS_IF: u64 = 1 << 9;

/// `exceptions`: UD2 exits (reason 0) at the UD2 with interruption
/// information "valid, hardware exception, #UD, no error code" and no
/// IDT-vectoring information; L1 skips it and L2's IDT sees nothing. INT3
/// exits as "software exception #BP", 1 byte long; L1 reflects it by
/// injecting the same event with that length, and L2's #BP handler sees it
/// with the return address after the INT3.
pub fn exceptions(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::exceptions());
    let exit = vm.run_expecting(report, ExitReason::ExceptionOrNmi)?;
    let ud = InterruptionInfo::new(INVALID_OPCODE, InterruptionType::HardwareException, false);
    expect_eq!(report, "#UD interruption information", ud.0, exit.interruption.0);
    expect_eq!(report, "RIP of the #UD exit", l2::ud2_site(), exit.rip);
    let vectoring = InterruptionInfo(vmcs::read(ReadOnly32::IdtVectoringInfo));
    expect_eq!(report, "IDT-vectoring information valid bit", 0, vectoring.0 & InterruptionInfo::VALID);
    vmcs::write(GuestNatural::Rip, exit.rip + UD2_LENGTH);

    let exit = vm.run_expecting(report, ExitReason::ExceptionOrNmi)?;
    let bp = InterruptionInfo::new(BREAKPOINT, InterruptionType::SoftwareException, false);
    expect_eq!(report, "#BP interruption information", bp.0, exit.interruption.0);
    expect_eq!(report, "RIP of the #BP exit", l2::int3_site(), exit.rip);
    expect_eq!(report, "INT3 instruction length", 1u32, exit.instruction_length);
    // Reflect: the same event, delivered through L2's IDT; the processor
    // pushes RIP + the entry instruction length.
    vmcs::write(Control32::EntryInterruptionInfo, exit.interruption.0);
    vmcs::write(Control32::EntryInstructionLength, exit.instruction_length);
    vm.run_to_done(report)?;
    Ok(())
}

/// `injection`: after L2's first request L1 injects #GP with error code
/// `GP_ERROR_CODE` (a hardware exception delivering an error code), after
/// the second an external interrupt with vector `INTERRUPT_VECTOR`, which
/// L2 made possible with RFLAGS.IF = 1 and no STI or MOV-SS blocking
/// (SDM 27.3.1.4, 27.3.1.5); L2's handlers see each with its vector, error
/// code and the return address after the request. Every VM exit clears the valid bit of the entry
/// interruption information (SDM 28.2.1), so nothing is injected twice.
pub fn injection(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::injection());
    vm.run_to_command(report, command::INJECT_GP)?;
    let gp = InterruptionInfo::new(GENERAL_PROTECTION, InterruptionType::HardwareException, true);
    vmcs::write(Control32::EntryInterruptionInfo, gp.0);
    vmcs::write(Control32::EntryExceptionErrorCode, protocol::GP_ERROR_CODE);

    vm.run_to_command(report, command::INJECT_INTERRUPT)?;
    expect_eq!(report, "L2's RFLAGS.IF at the request", RFLAGS_IF, vmcs::read(GuestNatural::Rflags) & RFLAGS_IF);
    expect_eq!(report, "L2's interruptibility state", 0u32, vmcs::read(Guest32::InterruptibilityState));
    let left = InterruptionInfo(vmcs::read(Control32::EntryInterruptionInfo));
    expect_eq!(report, "entry interruption valid bit after the exit", 0, left.0 & InterruptionInfo::VALID);
    let interrupt = InterruptionInfo::new(protocol::INTERRUPT_VECTOR, InterruptionType::ExternalInterrupt, false);
    vmcs::write(Control32::EntryInterruptionInfo, interrupt.0);

    vm.run_to_done(report)?;
    expect_eq!(report, "events L2 took", 2u64, guest::mailbox(mailbox::EVENT_COUNT));
    Ok(())
}
