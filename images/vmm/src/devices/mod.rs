//! The guest's port-I/O platform beyond what KVM emulates in the kernel
//! (8259 PICs, IOAPIC, local APIC, 8254 PIT and its port 0x61): COM1, the
//! RTC/CMOS, the debug-exit port, a statistics marker port and the reset
//! lines. Everything here is plain data; `vm` moves bytes in and out.

pub mod rtc;
pub mod serial;

use rtc::Rtc;
use serial::Serial;

pub const COM1: u16 = 0x3f8;
const COM1_PORTS: std::ops::RangeInclusive<u16> = COM1..=COM1 + 7;
pub const COM1_IRQ: u32 = 4;
/// QEMU's isa-debug-exit device, as the test kernels use it: writing V
/// ends the machine with status (V << 1) | 1.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Writing V prints KVM's exit counters with V as the marker's label, so
/// a benchmark can take the difference between two points of its run.
pub const STATS_MARKER_PORT: u16 = 0x501;
/// The 8042 keyboard controller's status (read) and command (write) port.
const I8042_COMMAND_PORT: u16 = 0x64;
/// "Pulse the reset line": Linux's keyboard-controller reboot.
const I8042_RESET: u8 = 0xfe;
/// Status: output buffer empty, input buffer empty, so Linux's kb_wait()
/// does not spin on it.
const I8042_IDLE_STATUS: u8 = 0x00;
/// The PCI reset control register; bit 2 resets the machine.
const RESET_CONTROL_PORT: u16 = 0xcf9;
const RESET_CONTROL_RESET: u8 = 0x04;

/// What a port write asks of the VMM beyond the device's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    /// The guest wrote this value to the debug-exit port.
    DebugExit(u32),
    /// The guest reset the machine (8042 or port 0xcf9).
    Reset,
    /// The guest wrote this value to the statistics marker port.
    StatsMarker(u32),
}

/// Accesses to ports nothing claims: they read as all ones (an empty ISA
/// bus) and writes are dropped, but counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PlatformMetrics {
    pub unclaimed_reads: u64,
    pub unclaimed_writes: u64,
}

pub struct Platform {
    pub serial: Serial,
    rtc: Rtc,
    /// The COM1 interrupt line as last given to KVM.
    serial_line: bool,
    pub metrics: PlatformMetrics,
}

impl Platform {
    pub fn new(rtc: Rtc) -> Self {
        Self { serial: Serial::new(), rtc, serial_line: false, metrics: PlatformMetrics::default() }
    }

    /// An IN of `data.len()` bytes from `port`.
    pub fn io_in(&mut self, port: u16, data: &mut [u8]) {
        let value = match port {
            _ if COM1_PORTS.contains(&port) => self.serial.read(port - COM1),
            rtc::INDEX_PORT | rtc::DATA_PORT => self.rtc.read(port),
            I8042_COMMAND_PORT => I8042_IDLE_STATUS,
            _ => {
                self.metrics.unclaimed_reads += 1;
                data.fill(0xff);
                return;
            }
        };
        // Byte registers: wider reads get the byte, the rest all ones.
        data.fill(0xff);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    /// An OUT of `data` to `port`.
    pub fn io_out(&mut self, port: u16, data: &[u8]) -> Event {
        let byte = data.first().copied().unwrap_or(0);
        match port {
            _ if COM1_PORTS.contains(&port) => self.serial.write(port - COM1, byte),
            rtc::INDEX_PORT | rtc::DATA_PORT => self.rtc.write(port, byte),
            DEBUG_EXIT_PORT => return Event::DebugExit(le_value(data)),
            STATS_MARKER_PORT => return Event::StatsMarker(le_value(data)),
            I8042_COMMAND_PORT if byte == I8042_RESET => return Event::Reset,
            I8042_COMMAND_PORT => {}
            RESET_CONTROL_PORT if data.len() == 1 && byte & RESET_CONTROL_RESET != 0 => return Event::Reset,
            _ => self.metrics.unclaimed_writes += 1,
        }
        Event::None
    }

    /// The new level of COM1's interrupt line when it changed since the
    /// last call. KVM's PIC and IOAPIC take ISA interrupts as edges, so
    /// every change must reach them.
    pub fn serial_line_change(&mut self) -> Option<bool> {
        let level = self.serial.interrupt_line();
        (level != self.serial_line).then(|| {
            self.serial_line = level;
            level
        })
    }
}

/// A port write's value: 1, 2 or 4 bytes, little-endian.
fn le_value(data: &[u8]) -> u32 {
    data.iter().take(4).rev().fold(0, |value, byte| (value << 8) | u32::from(*byte))
}

/// The VMM's exit status for a debug-exit value, as QEMU's isa-debug-exit
/// makes it: always odd, so it cannot be mistaken for the VMM's own codes.
pub fn debug_exit_status(value: u32) -> u8 {
    ((value << 1) | 1) as u8
}

#[cfg(test)]
mod tests {
    use super::rtc::CivilTime;
    use super::*;

    fn platform() -> Platform {
        Platform::new(Rtc::with_clock(|| CivilTime::from_unix(0)))
    }

    #[test]
    fn debug_exit_takes_the_written_value_of_any_width() {
        let mut platform = platform();
        assert_eq!(platform.io_out(DEBUG_EXIT_PORT, &[2]), Event::DebugExit(2));
        assert_eq!(platform.io_out(DEBUG_EXIT_PORT, &1u32.to_le_bytes()), Event::DebugExit(1));
        assert_eq!(platform.io_out(DEBUG_EXIT_PORT, &0x0102u16.to_le_bytes()), Event::DebugExit(0x0102));
        assert_eq!([0, 1, 2, 3].map(debug_exit_status), [1, 3, 5, 7]);
    }

    #[test]
    fn the_stats_marker_and_the_reset_lines_are_events() {
        let mut platform = platform();
        assert_eq!(platform.io_out(STATS_MARKER_PORT, &7u32.to_le_bytes()), Event::StatsMarker(7));
        assert_eq!(platform.io_out(I8042_COMMAND_PORT, &[I8042_RESET]), Event::Reset);
        assert_eq!(platform.io_out(I8042_COMMAND_PORT, &[0xad]), Event::None);
        assert_eq!(platform.io_out(RESET_CONTROL_PORT, &[0x06]), Event::Reset);
        assert_eq!(platform.io_out(RESET_CONTROL_PORT, &[0x02]), Event::None);
        // A 32-bit access to 0xcf8 that overlaps 0xcf9 is PCI configuration, not a reset.
        assert_eq!(platform.io_out(RESET_CONTROL_PORT, &[0x06, 0, 0, 0]), Event::None);
    }

    #[test]
    fn unclaimed_ports_read_all_ones_and_are_counted() {
        let mut platform = platform();
        let mut data = [0u8; 4];
        platform.io_in(0x230, &mut data);
        assert_eq!(data, [0xff; 4]);
        assert_eq!(platform.io_out(0x80, &[0x12]), Event::None);
        assert_eq!(platform.metrics, PlatformMetrics { unclaimed_reads: 1, unclaimed_writes: 1 });
        platform.io_in(I8042_COMMAND_PORT, &mut data[..1]);
        assert_eq!(data[0], I8042_IDLE_STATUS);
    }

    #[test]
    fn com1_and_the_rtc_are_reached_through_their_ports() {
        let mut platform = platform();
        platform.io_out(COM1, b"A");
        assert_eq!(platform.serial.take_output(), b"A");
        platform.io_out(rtc::INDEX_PORT, &[0x09]);
        let mut year = [0u8; 1];
        platform.io_in(rtc::DATA_PORT, &mut year);
        assert_eq!(year[0], 0x70);
        let mut wide = [0u8; 2];
        platform.io_in(COM1 + 5, &mut wide);
        assert_eq!(wide, [0x60, 0xff], "LSR in the low byte");
    }

    #[test]
    fn the_serial_line_is_reported_on_each_change_only() {
        let mut platform = platform();
        assert_eq!(platform.serial_line_change(), None);
        platform.io_out(COM1 + 1, &[0x02]); // IER: THRE interrupt
        assert_eq!(platform.serial_line_change(), Some(true));
        assert_eq!(platform.serial_line_change(), None);
        let mut iir = [0u8];
        platform.io_in(COM1 + 2, &mut iir);
        assert_eq!(platform.serial_line_change(), Some(false));
    }
}
