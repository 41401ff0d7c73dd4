//! The VMX-preemption timer.

use l1_hypervisor::protocol::{self, mailbox};
use vmx::controls::{ExitControls, PinBasedControls};
use vmx::exit::ExitReason;
use vmx::vmcs::{Control32, Guest32};

use crate::arch::l2;
use crate::hypervisor::guest::{self, Vm};
use crate::hypervisor::report::{Outcome, Report};
use crate::hypervisor::vmcs;

/// `preemption-timer`: with the timer at 0, VM entry exits at once (reason
/// 52) before L2 runs an instruction (SDM 26.7.4). With `TIMER_VALUE`, L2
/// spins until the timer exits with RIP inside its loop, having counted
/// some rounds; where the processor can save the timer value on exit, it
/// saves 0. With the timer off again L2 leaves its loop and finishes.
pub fn preemption_timer(vm: &mut Vm, report: &mut Report) -> Outcome {
    if !vm.capabilities.pin_based.supports(PinBasedControls::PREEMPTION_TIMER.bits()) {
        fail!(report, "the pin-based controls cannot activate the VMX-preemption timer");
    }
    vm.start(l2::timer());
    let save = vm.capabilities.exit.supports(ExitControls::SAVE_PREEMPTION_TIMER.bits());
    vmcs::write(Control32::PinBasedControls, vm.controls.pin | PinBasedControls::PREEMPTION_TIMER.bits());
    if save {
        vmcs::write(Control32::ExitControls, vm.controls.exit | ExitControls::SAVE_PREEMPTION_TIMER.bits());
    }
    vmcs::write(Guest32::PreemptionTimerValue, 0);
    let exit = vm.run_expecting(report, ExitReason::PreemptionTimerExpired)?;
    expect_eq!(report, "RIP after a zero timer", l2::timer(), exit.rip);

    vmcs::write(Guest32::PreemptionTimerValue, protocol::TIMER_VALUE);
    let exit = vm.run_expecting(report, ExitReason::PreemptionTimerExpired)?;
    if !(l2::timer_spin()..l2::timer_spin_end()).contains(&exit.rip) {
        fail!(report, "the timer exit's RIP {:#x} is outside L2's loop", exit.rip);
    }
    let rounds = vm.registers.rsi;
    if rounds == 0 {
        fail!(report, "L2 ran no round of its loop before the timer expired");
    }
    let rate = vm.capabilities.misc.preemption_timer_rate();
    note!(report, "{rounds} rounds before expiry (timer {} x 2^{rate} TSC ticks)", protocol::TIMER_VALUE);
    if save {
        expect_eq!(report, "saved timer value", 0u32, vmcs::read(Guest32::PreemptionTimerValue));
    }

    // Saving the timer without the timer is an invalid control setting
    // (SDM 27.2.1.2): both go back.
    vmcs::write(Control32::PinBasedControls, vm.controls.pin);
    vmcs::write(Control32::ExitControls, vm.controls.exit);
    guest::set_mailbox(mailbox::STOP_SPINNING, 1);
    vm.run_to_done(report)?;
    Ok(())
}
