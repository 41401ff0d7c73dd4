//! The 8254 programmable interval timer, and port 0x61, which gates
//! channel 2 and shows its output.

use crate::arch::port::{inb, outb};
use l1_test_kernel::timing::pit_count_for_micros;

const CHANNEL_0: u16 = 0x40;
const CHANNEL_2: u16 = 0x42;
const COMMAND: u16 = 0x43;
const PORT_B: u16 = 0x61;

const PORT_B_GATE_2: u8 = 0x01; // channel 2 counts while set
const PORT_B_SPEAKER: u8 = 0x02; // channel 2 output drives the speaker
const PORT_B_OUT_2: u8 = 0x20; // channel 2 output (read only)

/// Command bytes: channel (bits 7:6), lobyte/hibyte access (5:4), mode (3:1), binary.
const CHANNEL_0_RATE_GENERATOR: u8 = 0x34; // mode 2: a pulse every `count` ticks
const CHANNEL_0_ONE_SHOT: u8 = 0x30; // mode 0: interrupt on terminal count
const CHANNEL_0_LATCH: u8 = 0x00; // counter latch command for channel 0
const CHANNEL_2_ONE_SHOT: u8 = 0xb0; // mode 0: OUT rises at terminal count

/// The longest wait one channel-2 run covers (a 16-bit count).
pub const MAX_ONE_SHOT_MICROS: u64 = 50_000;
/// Polls of port 0x61 before a one-shot counts as lost (several seconds
/// even on a fast emulator).
const EXPIRY_POLLS: u64 = 50_000_000;

/// Channel 2's output never rose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stuck;

fn write(port: u16, value: u8) {
    // Safe because these ports are the PIT and the system control port B,
    // whose writable bits are the speaker and the gate (see devices/mod.rs).
    unsafe { outb(port, value) }
}

fn read(port: u16) -> u8 {
    // Safe because these ports are the PIT and port B (see devices/mod.rs).
    unsafe { inb(port) }
}

/// Starts channel 2 counting down `count` ticks, speaker off, as Linux
/// calibrates the TSC: gate up first, then mode 0, then the count (mode 0
/// starts counting when the count is loaded with the gate up).
pub fn start_one_shot(count: u16) {
    write(PORT_B, (read(PORT_B) & !PORT_B_SPEAKER) | PORT_B_GATE_2);
    write(COMMAND, CHANNEL_2_ONE_SHOT);
    write(CHANNEL_2, count as u8);
    write(CHANNEL_2, (count >> 8) as u8);
}

/// Whether channel 2 has reached its terminal count.
pub fn one_shot_expired() -> bool {
    read(PORT_B) & PORT_B_OUT_2 != 0
}

/// Polls until channel 2 expires; returns the number of polls it took.
pub fn wait_one_shot() -> Result<u64, Stuck> {
    (1..=EXPIRY_POLLS).find(|_| one_shot_expired()).ok_or(Stuck)
}

/// Lowers channel 2's gate.
pub fn stop_one_shot() {
    write(PORT_B, read(PORT_B) & !(PORT_B_GATE_2 | PORT_B_SPEAKER));
}

/// Busy-waits `micros` microseconds of PIT time.
pub fn wait_micros(mut micros: u64) -> Result<(), Stuck> {
    while micros > 0 {
        let slice = micros.min(MAX_ONE_SHOT_MICROS);
        start_one_shot(pit_count_for_micros(slice) as u16);
        let waited = wait_one_shot();
        stop_one_shot();
        waited?;
        micros -= slice;
    }
    Ok(())
}

/// Channel 0 in mode 2: IRQ 0 every `count` ticks.
pub fn start_periodic(count: u16) {
    write(COMMAND, CHANNEL_0_RATE_GENERATOR);
    write(CHANNEL_0, count as u8);
    write(CHANNEL_0, (count >> 8) as u8);
}

/// Channel 0 in mode 0 with the longest count: one last IRQ 0 much later
/// (masked by then), none after.
pub fn stop_periodic() {
    write(COMMAND, CHANNEL_0_ONE_SHOT);
    write(CHANNEL_0, 0xff);
    write(CHANNEL_0, 0xff);
}

/// Channel 0's current count, through the latch command.
pub fn read_periodic_count() -> u16 {
    write(COMMAND, CHANNEL_0_LATCH);
    let low = read(CHANNEL_0);
    let high = read(CHANNEL_0);
    u16::from_le_bytes([low, high])
}

/// Back to a known state after anything may have been written: channel 0
/// stopped, channel 2's gate and the speaker off, and any status or count
/// latched by a stray read-back command read out, so the next read of a
/// channel returns its count.
pub fn reset() {
    stop_periodic();
    stop_one_shot();
    for channel in [CHANNEL_0, CHANNEL_0 + 1, CHANNEL_2] {
        // A latched status byte, then a latched two-byte count.
        for _ in 0..3 {
            read(channel);
        }
    }
}
