//! Emulated devices: plain structs behind read/write calls.
//!
//! These are the legacy PC devices every x86 guest expects to find on the
//! ISA bus: the COM1 UART, the cascaded 8259A interrupt controllers, the
//! 8254 interval timer (with the port 0x61 "NMI status and control"
//! register), the MC146818 real-time clock with its CMOS memory, and
//! QEMU's debug-exit port that test kernels use to end themselves.
//!
//! Each device is one plain struct in its own file. The guest reaches it
//! only through [`PortDevice::read`] and [`PortDevice::write`]; what leaves
//! it does so through narrow accessors: an interrupt line level, the next
//! time it needs the scheduler to come back, the console bytes, an exit
//! status. No device reads a clock: the caller passes the guest's virtual
//! time in nanoseconds (`now_ns`, monotonic), so every test is
//! deterministic. [`LegacyPlatform`] owns one of each, dispatches port
//! accesses and wires their interrupt lines into the PIC.
//!
//! Guest accesses that are odd (a wrong size, a write to a read-only
//! register, a command the datasheet leaves undefined, a feature this
//! emulation does not model) are never silently dropped: each bumps a
//! counter in the device's [`DeviceMetrics`].

pub mod acpi_pm;
pub use console_ring as console;
pub mod debug_exit;
pub mod io_apic;
pub mod local_apic;
pub mod pic8259;
pub mod pit8254;
pub mod platform;
pub mod rtc_cmos;
pub mod system_reset;
pub mod uart16550;

#[cfg(test)]
mod proptests;

use core::ops::RangeInclusive;

pub use console::{ConsoleBuffer, ConsoleRead};
pub use debug_exit::DebugExit;
pub use pic8259::{Pic8259Pair, PicChipState};
pub use pit8254::Pit8254;
pub use platform::{LegacyPlatform, PlatformConfig};
pub use rtc_cmos::{DateTime, RtcCmos};
pub use uart16550::Uart16550;

/// A device on the I/O port bus.
pub trait PortDevice {
    /// A guest `in` of `size` bytes (1, 2 or 4) from the absolute `port`.
    /// Returns the value read, zero-extended.
    fn read(&mut self, port: u16, size: u8, now_ns: u64) -> u32;

    /// A guest `out` of the low `size` bytes (1, 2 or 4) of `value` to the
    /// absolute `port`.
    fn write(&mut self, port: u16, size: u8, value: u32, now_ns: u64);

    /// The ports the device decodes, for the I/O dispatcher.
    fn ports(&self) -> &[RangeInclusive<u16>];

    /// Counters of what the guest did to the device.
    fn metrics(&self) -> &DeviceMetrics;

    /// Whether the device decodes `port`.
    fn decodes(&self, port: u16) -> bool {
        self.ports().iter().any(|range| range.contains(&port))
    }
}

/// Counters of a device's accesses, for the control API and the logs.
///
/// Everything but `reads` and `writes` counts something odd; each of those
/// also records the port of the access in `last_odd_port`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMetrics {
    /// Guest reads, one per `in` instruction.
    pub reads: u64,
    /// Guest writes, one per `out` instruction.
    pub writes: u64,
    /// Accesses of a size the register does not have (e.g. a 16-bit `in`
    /// from an 8-bit register).
    pub bad_size: u64,
    /// Writes to read-only registers and reads of write-only ones.
    pub wrong_direction: u64,
    /// Commands, sequences or values the datasheet leaves undefined.
    pub invalid_commands: u64,
    /// Valid requests for a feature this emulation does not model.
    pub unsupported: u64,
    /// Bytes lost to a full queue: receiver overruns, console input the
    /// UART had no room for.
    pub overruns: u64,
    /// Timer periods that elapsed while the previous one's interrupt was
    /// still undelivered, merged into it.
    pub coalesced_ticks: u64,
    /// Interrupt acknowledges with nothing left to deliver.
    pub spurious_interrupts: u64,
    /// Reads of ports no device decodes (the platform's own counter).
    pub unclaimed_reads: u64,
    /// Writes to ports no device decodes (the platform's own counter).
    pub unclaimed_writes: u64,
    /// The port of the most recent odd access.
    pub last_odd_port: Option<u16>,
}

impl DeviceMetrics {
    /// All odd events, whatever their kind.
    pub fn odd_total(&self) -> u64 {
        self.bad_size
            + self.wrong_direction
            + self.invalid_commands
            + self.unsupported
            + self.overruns
            + self.coalesced_ticks
            + self.spurious_interrupts
            + self.unclaimed_reads
            + self.unclaimed_writes
    }

    pub(crate) fn note_bad_size(&mut self, port: u16) {
        self.bad_size += 1;
        self.last_odd_port = Some(port);
    }

    pub(crate) fn note_wrong_direction(&mut self, port: u16) {
        self.wrong_direction += 1;
        self.last_odd_port = Some(port);
    }

    pub(crate) fn note_invalid_command(&mut self, port: u16) {
        self.invalid_commands += 1;
        self.last_odd_port = Some(port);
    }

    pub(crate) fn note_unsupported(&mut self, port: u16) {
        self.unsupported += 1;
        self.last_odd_port = Some(port);
    }
}

/// What a read returns when nothing drives the bus: all ones, as wide as
/// the access (an access of an undefined size reads as 32 bits).
pub fn all_ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// An 8-bit ISA device, seen one byte register at a time.
///
/// A 16- or 32-bit access to such a device is what the ISA bridge turns it
/// into: one byte cycle per port, lowest port first. That is odd for these
/// devices (no guest driver does it), so it is counted; bytes that fall
/// outside the device read as ones and are dropped on writes. An access of
/// a size that does not exist (0, 3, more than 4) is counted and refused.
///
/// Implementing it makes a type a [`PortDevice`].
pub trait ByteRegisters {
    /// The ports it decodes (its `PortDevice::ports`).
    fn register_ports(&self) -> &[RangeInclusive<u16>];
    /// Its `PortDevice::metrics`.
    fn counters(&self) -> &DeviceMetrics;
    fn metrics_mut(&mut self) -> &mut DeviceMetrics;
    fn read_byte(&mut self, port: u16, now_ns: u64) -> u8;
    fn write_byte(&mut self, port: u16, byte: u8, now_ns: u64);
}

impl<D: ByteRegisters> PortDevice for D {
    fn read(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        read_bytewise(self, port, size, now_ns)
    }

    fn write(&mut self, port: u16, size: u8, value: u32, now_ns: u64) {
        write_bytewise(self, port, size, value, now_ns);
    }

    fn ports(&self) -> &[RangeInclusive<u16>] {
        self.register_ports()
    }

    fn metrics(&self) -> &DeviceMetrics {
        self.counters()
    }
}

fn read_bytewise<D: ByteRegisters>(device: &mut D, port: u16, size: u8, now_ns: u64) -> u32 {
    device.metrics_mut().reads += 1;
    if size == 1 {
        return u32::from(device.read_byte(port, now_ns));
    }
    device.metrics_mut().note_bad_size(port);
    if size != 2 && size != 4 {
        return all_ones(size);
    }
    let mut value = 0;
    for i in 0..size {
        let byte_port = port.wrapping_add(u16::from(i));
        let byte = if device.decodes(byte_port) { device.read_byte(byte_port, now_ns) } else { 0xff };
        value |= u32::from(byte) << (8 * u32::from(i));
    }
    value
}

fn write_bytewise<D: ByteRegisters>(device: &mut D, port: u16, size: u8, value: u32, now_ns: u64) {
    device.metrics_mut().writes += 1;
    if size == 1 {
        device.write_byte(port, value as u8, now_ns);
        return;
    }
    device.metrics_mut().note_bad_size(port);
    if size != 2 && size != 4 {
        return;
    }
    for i in 0..size {
        let byte_port = port.wrapping_add(u16::from(i));
        if device.decodes(byte_port) {
            device.write_byte(byte_port, (value >> (8 * u32::from(i))) as u8, now_ns);
        }
    }
}

/// Binary-coded decimal, as the RTC and the PIT's BCD mode keep numbers.
pub(crate) fn to_bcd(value: u8) -> u8 {
    ((value / 10) << 4) | (value % 10)
}

/// Decodes a BCD byte; `None` if either digit is above 9.
pub(crate) fn from_bcd(byte: u8) -> Option<u8> {
    let (high, low) = (byte >> 4, byte & 0xf);
    (high <= 9 && low <= 9).then_some(high * 10 + low)
}
