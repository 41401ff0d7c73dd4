//! Exceptions in L1 itself. The hypervisor expects none (L2's exceptions
//! arrive as VM exits, and interrupts stay masked), so any one ends the run
//! with a report.

use bare_metal::exceptions::mnemonic;
use multiboot_kernel::arch::TrapFrame;

use super::exit::{exit, ExitCode};

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    say!(
        "FATAL: exception {} (vector {vector}) in L1, error code {:#x}, RIP {:#x}, RSP {:#x}",
        mnemonic(vector),
        frame.error_code,
        frame.rip,
        frame.rsp
    );
    exit(ExitCode::Crashed)
}
