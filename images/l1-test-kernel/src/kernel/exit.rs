//! Ending the run through the debug-exit port.

use super::devices::{debug_exit, uart};
use crate::arch::cpu::halt_forever;

/// The value written to port 0xf4; QEMU exits with `(code << 1) | 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Every check passed (QEMU status 1).
    Passed = 0,
    /// At least one check failed, or the command line had a problem (status 3).
    Failed = 1,
    /// An unexpected exception, a panic, or no way to boot (status 5).
    Crashed = 2,
    /// A `crash=` request did not stop the machine (status 7).
    Survived = 3,
}

/// Flushes the console and writes `code` to the debug-exit port; on a
/// platform without one, stops the CPU.
pub fn exit(code: ExitCode) -> ! {
    uart::drain();
    debug_exit::write(code as u32);
    halt_forever()
}
