//! QEMU's isa-debug-exit device at port 0xf4 (and Matryoshka's emulation of
//! it): writing V ends the emulator with exit status (V << 1) | 1.

use crate::arch::port::outl;

const PORT: u16 = 0xf4;

/// Writes `value`; returns only on a platform without the device.
pub fn write(value: u32) {
    // Safe because this port is the debug-exit device, which stops the
    // machine on purpose, or nothing.
    unsafe { outl(PORT, value) };
}
