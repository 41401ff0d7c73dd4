//! Ending the run: the debug-exit port, then, where that port does not
//! exist (bare Bochs), Bochs's own ways to stop, if `exit=bochs` asked.

use core::sync::atomic::{AtomicBool, Ordering};

use multiboot_kernel::arch::cpu::halt_forever;
use multiboot_kernel::devices::{debug_exit, uart};

use crate::arch;

/// Passed, Failed or Crashed (never Survived: that is the test kernel's).
pub use multiboot_kernel::devices::debug_exit::ExitCode;

static BOCHS: AtomicBool = AtomicBool::new(false);

/// `exit=bochs`: stop Bochs after the debug-exit port.
pub fn stop_bochs_too() {
    BOCHS.store(true, Ordering::Relaxed);
}

pub fn exit(code: ExitCode) -> ! {
    say!("stopping ({}), exit code {}", if code == ExitCode::Passed { "success" } else { "failure" }, code as u32);
    uart::drain();
    debug_exit::write(code as u32);
    if BOCHS.load(Ordering::Relaxed) {
        match code {
            ExitCode::Passed => arch::bochs_magic_break(),
            _ => arch::bochs_shutdown(),
        }
    }
    halt_forever()
}
