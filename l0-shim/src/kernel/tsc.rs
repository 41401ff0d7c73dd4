//! The TSC's real frequency, measured against the PIT at boot.
//!
//! Guests are told this frequency (CPUID 0x15/0x16, the hypervisor timing
//! leaf), so it must be how fast the TSC really runs, not what the CPU
//! model claims: Bochs's Skylake-X model reports 3.5 GHz while its TSC
//! counts one tick per emulated instruction, and a guest that believed the
//! model would mis-time every busy-wait by a factor of 70.

use spin::Once;

use crate::arch::cpu::{inb, outb, rdtsc};

const PIT_HZ: u64 = 1_193_182;
const PIT_CHANNEL2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const PORT_B: u16 = 0x61; // bit 0: channel 2 gate; bit 1: speaker; bit 5: channel 2 output
const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
const PORT_B_OUT2: u8 = 1 << 5;
/// Channel 2, low then high byte, mode 0 (interrupt on terminal count),
/// binary: OUT2 goes high when the count reaches zero.
const CHANNEL2_MODE0: u8 = 0b1011_0000;
/// 10 ms of PIT input clock.
const CALIBRATION_COUNT: u16 = (PIT_HZ / 100) as u16;

static TSC_KHZ: Once<u64> = Once::new();

/// The TSC frequency in kHz (calibrated once, on first use).
pub fn khz() -> u64 {
    *TSC_KHZ.call_once(calibrate)
}

fn calibrate() -> u64 {
    // Safe because the PIT and port B belong to the shim; guests get an
    // emulated PIT.
    let ticks = unsafe {
        let port_b = inb(PORT_B);
        outb(PORT_B, (port_b & !PORT_B_SPEAKER) & !PORT_B_GATE2);
        outb(PIT_COMMAND, CHANNEL2_MODE0);
        outb(PIT_CHANNEL2_DATA, CALIBRATION_COUNT as u8);
        outb(PIT_CHANNEL2_DATA, (CALIBRATION_COUNT >> 8) as u8);
        // Raising the gate starts the count.
        outb(PORT_B, (port_b & !PORT_B_SPEAKER) | PORT_B_GATE2);
        let start = rdtsc();
        while inb(PORT_B) & PORT_B_OUT2 == 0 {
            core::hint::spin_loop();
        }
        let ticks = rdtsc() - start;
        outb(PORT_B, port_b);
        ticks
    };
    ticks * PIT_HZ / u64::from(CALIBRATION_COUNT) / 1000
}

/// Milliseconds since the TSC was reset (power-on): a monotonic clock on the one CPU the
/// shim runs on. Under Bochs with `clock: sync=none` it is emulated time.
pub fn now_ms() -> u64 {
    (u128::from(rdtsc()) / u128::from(khz().max(1))) as u64
}

/// Busy-waits at least `us` microseconds.
pub fn wait_us(us: u32) {
    let end = rdtsc().saturating_add(u64::from(us) * khz() / 1000 + 1);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
