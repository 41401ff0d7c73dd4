//! Ending the run through the debug-exit port.

pub use multiboot_kernel::devices::debug_exit::ExitCode;

use super::devices::{debug_exit, uart};
use crate::arch::cpu::halt_forever;

/// Flushes the console and writes `code` to the debug-exit port; on a
/// platform without one, stops the CPU.
pub fn exit(code: ExitCode) -> ! {
    uart::drain();
    debug_exit::write(code as u32);
    halt_forever()
}
