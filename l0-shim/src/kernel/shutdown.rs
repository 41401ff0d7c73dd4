//! Ending the machine when the shim's work is done, or when it cannot go on.

use l0_shim::boot_options::ExitMethod;
use spin::Once;

use crate::arch::cpu::{bochs_magic_break, disable_interrupts, halt, outb, outw};
use crate::kernel::console;

static EXIT_METHOD: Once<ExitMethod> = Once::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// QEMU's isa-debug-exit device (`-device isa-debug-exit,iobase=0xf4`).
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs's shutdown port: writing "Shutdown" ends the emulator.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

pub fn set_exit_method(method: ExitMethod) {
    EXIT_METHOD.call_once(|| method);
}

pub fn power_off(outcome: Outcome) -> ! {
    disable_interrupts();
    let method = EXIT_METHOD.get().copied().unwrap_or(ExitMethod::Halt);
    console::print_emergency(format_args!(
        "shim: stopping ({})\n",
        match outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    ));
    console::drain();
    match method {
        ExitMethod::Qemu => {
            // Safe because this port is QEMU's exit device, chosen on the
            // command line by whoever started the machine.
            unsafe { outw(QEMU_DEBUG_EXIT_PORT, if outcome == Outcome::Success { 0 } else { 1 }) };
        }
        ExitMethod::Bochs => match outcome {
            Outcome::Success => bochs_magic_break(),
            Outcome::Failure => {
                for byte in b"Shutdown" {
                    // Safe because this port is Bochs's shutdown port,
                    // chosen on the command line.
                    unsafe { outb(BOCHS_SHUTDOWN_PORT, *byte) };
                }
            }
        },
        ExitMethod::Halt => {}
    }
    console::print_emergency(format_args!("shim: halted; reset the machine to restart\n"));
    console::drain();
    loop {
        disable_interrupts();
        halt();
    }
}
