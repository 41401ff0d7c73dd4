//! The checks `checks=` selects. Each drives L2 through one kind of exit,
//! verifies what the processor reports (exit reason, qualification,
//! instruction length, registers, addresses) against the SDM, and lets L2
//! verify what L1 did in answer. The comment at the top of each function
//! says what it asserts.

mod ept;
mod events;
mod exits;
mod instructions;
mod timer;

use l1_hypervisor::cmdline::{Check, Options};

use super::guest::Vm;
use super::report::{Outcome, Report};

/// Runs one check; whether it passed.
pub fn run(check: Check, vm: &mut Vm, options: &Options) -> bool {
    let mut report = Report::new(check.name());
    let outcome: Outcome = match check {
        Check::InstructionErrors => instructions::instruction_errors(vm, &mut report, options.root_vmcall),
        Check::EntryFailures => instructions::entry_failures(vm, &mut report),
        Check::Launch => instructions::launch(vm, &mut report),
        Check::Registers => exits::registers(vm, &mut report),
        Check::Cpuid => exits::cpuid(vm, &mut report),
        Check::Io => exits::io(vm, &mut report),
        Check::Hlt => exits::hlt(vm, &mut report),
        Check::Exceptions => events::exceptions(vm, &mut report),
        Check::Injection => events::injection(vm, &mut report),
        Check::EptViolation => ept::ept_violation(vm, &mut report),
        Check::PreemptionTimer => timer::preemption_timer(vm, &mut report),
        Check::Invept => ept::invept(vm, &mut report),
        Check::CpuidLoop => exits::cpuid_loop(vm, &mut report),
    };
    report.finish(outcome)
}
