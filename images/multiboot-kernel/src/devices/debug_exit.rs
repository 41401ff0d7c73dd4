//! QEMU's isa-debug-exit device at port 0xf4 (and Matryoshka's emulation of
//! it): writing V ends the emulator with exit status (V << 1) | 1.

use crate::arch::port::outl;

const PORT: u16 = 0xf4;

/// The codes the test kernels write; QEMU exits with `(code << 1) | 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Every check passed (QEMU status 1).
    Passed = 0,
    /// At least one check failed, or the command line had a problem (status 3).
    Failed = 1,
    /// An unexpected exception, a panic, or no way to boot (status 5).
    Crashed = 2,
    /// The L1 test kernel only: a `crash=` request did not stop the
    /// machine (status 7).
    Survived = 3,
}

/// Writes `value`; returns only on a platform without the device.
pub fn write(value: u32) {
    // Safe because this port is the debug-exit device, which stops the
    // machine on purpose, or nothing.
    unsafe { outl(PORT, value) };
}
