//! matryoshka-vmm: a small VMM on rust-vmm crates that runs one guest under
//! KVM, inside a Linux guest with /dev/kvm. With Linux KVM as L0 on Bochs it
//! is the reference against which Matryoshka's nested VMX is measured.

mod args;
mod devices;
mod kvm_stats;
mod layout;
mod linux_boot;
mod mptable;
mod multiboot;
mod vm;

use std::process::ExitCode;

use clap::Parser;

use devices::debug_exit_status;
use vm::{Ending, Vm};

/// The VMM itself failed: arguments, the kernel file, KVM.
const EXIT_VMM_ERROR: u8 = 2;
/// The guest crashed: triple fault, failed VM entry, KVM internal error.
const EXIT_GUEST_CRASHED: u8 = 4;
/// The guest reset the machine (Linux's reboot, or its panic=-1).
const EXIT_GUEST_RESET: u8 = 0;

fn main() -> ExitCode {
    let args = args::Args::parse();
    let ending = Vm::new(&args).and_then(|mut vm| vm.run());
    let status = match ending {
        Ok(Ending::DebugExit(value)) => {
            let status = debug_exit_status(value);
            eprintln!("matryoshka-vmm: the guest wrote {value:#x} to port 0xf4: exit status {status}");
            status
        }
        Ok(Ending::Reset) => {
            eprintln!("matryoshka-vmm: the guest reset the machine: exit status {EXIT_GUEST_RESET}");
            EXIT_GUEST_RESET
        }
        Ok(Ending::Crashed(what)) => {
            eprintln!("matryoshka-vmm: the guest crashed: {what}: exit status {EXIT_GUEST_CRASHED}");
            EXIT_GUEST_CRASHED
        }
        Err(error) => {
            eprintln!("matryoshka-vmm: error: {error}");
            EXIT_VMM_ERROR
        }
    };
    ExitCode::from(status)
}
