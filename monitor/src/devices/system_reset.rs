//! The ways a PC guest resets itself: the keyboard controller's "pulse
//! reset" command (0xfe to port 0x64), System Control Port A's fast reset
//! (bit 0 of port 0x92) and the chipset's Reset Control Register (bit 2 of
//! port 0xcf9). Linux's `reboot` tries them (after ACPI), and firmware-less
//! kernels use the first. Each records a reset request; the monitor stops
//! the guest with "reboot", and the shim restarts it if its `on_reboot`
//! says so.
//!
//! Only the reset function is modelled. The keyboard controller itself is
//! absent: reads of 0x64 return all ones, which Linux takes as "no i8042".

use core::ops::RangeInclusive;

use super::{all_ones, DeviceMetrics, PortDevice};

pub const KEYBOARD_CONTROLLER_PORT: u16 = 0x64;
pub const SYSTEM_CONTROL_PORT_A: u16 = 0x92;
pub const RESET_CONTROL_PORT: u16 = 0xcf9;

/// Keyboard controller command: pulse output line 0 (the CPU reset).
const PULSE_RESET: u8 = 0xfe;
/// Port 0x92: bit 0 resets, bit 1 is the A20 gate (always on here).
const FAST_RESET: u8 = 1 << 0;
const A20_ENABLED: u8 = 1 << 1;
/// Port 0xcf9: bit 2 starts the reset, bit 1 chooses a hard one.
const RESET_CPU: u8 = 1 << 2;
const RESET_CONTROL_BITS: u8 = 0b1110;

#[derive(Debug, Clone)]
pub struct SystemReset {
    ports: [RangeInclusive<u16>; 3],
    requested: Option<&'static str>,
    reset_control: u8,
    metrics: DeviceMetrics,
}

impl Default for SystemReset {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemReset {
    pub fn new() -> Self {
        Self {
            ports: [
                KEYBOARD_CONTROLLER_PORT..=KEYBOARD_CONTROLLER_PORT,
                SYSTEM_CONTROL_PORT_A..=SYSTEM_CONTROL_PORT_A,
                RESET_CONTROL_PORT..=RESET_CONTROL_PORT,
            ],
            requested: None,
            reset_control: 0,
            metrics: DeviceMetrics::default(),
        }
    }

    /// How the guest asked to be reset, once it has.
    pub fn reset_requested(&self) -> Option<&'static str> {
        self.requested
    }
}

impl PortDevice for SystemReset {
    fn read(&mut self, port: u16, size: u8, _now_ns: u64) -> u32 {
        self.metrics.reads += 1;
        if size != 1 {
            self.metrics.note_bad_size(port);
            return all_ones(size);
        }
        match port {
            SYSTEM_CONTROL_PORT_A => u32::from(A20_ENABLED),
            RESET_CONTROL_PORT => u32::from(self.reset_control),
            _ => all_ones(size),
        }
    }

    fn write(&mut self, port: u16, size: u8, value: u32, _now_ns: u64) {
        self.metrics.writes += 1;
        if size != 1 {
            self.metrics.note_bad_size(port);
            return;
        }
        let value = value as u8;
        let reset = match port {
            KEYBOARD_CONTROLLER_PORT if value == PULSE_RESET => Some("keyboard controller reset"),
            KEYBOARD_CONTROLLER_PORT => {
                // Other controller commands need the controller itself.
                self.metrics.note_unsupported(port);
                None
            }
            SYSTEM_CONTROL_PORT_A if value & FAST_RESET != 0 => Some("port 0x92 fast reset"),
            SYSTEM_CONTROL_PORT_A => None,
            _ => {
                // The reset starts on bit 2's rising edge (Intel ICH/PCH).
                let rising = value & RESET_CPU != 0 && self.reset_control & RESET_CPU == 0;
                self.reset_control = value & RESET_CONTROL_BITS;
                rising.then_some("port 0xcf9 reset")
            }
        };
        if self.requested.is_none() {
            self.requested = reset;
        }
    }

    fn ports(&self) -> &[RangeInclusive<u16>] {
        &self.ports
    }

    fn metrics(&self) -> &DeviceMetrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reset_path_is_recognised() {
        for (port, value, how) in [
            (0x64, 0xfe, "keyboard controller reset"),
            (0x92, 0x03, "port 0x92 fast reset"),
            (0xcf9, 0x06, "port 0xcf9 reset"),
        ] {
            let mut device = SystemReset::new();
            assert_eq!(device.reset_requested(), None);
            device.write(port, 1, value, 0);
            assert_eq!(device.reset_requested(), Some(how), "{port:#x}");
        }
    }

    #[test]
    fn writes_that_do_not_reset_are_harmless() {
        let mut device = SystemReset::new();
        device.write(0x64, 1, 0xad, 0); // disable keyboard: unsupported, counted
        device.write(0x92, 1, A20_ENABLED.into(), 0);
        device.write(0xcf9, 1, 0x02, 0); // choose a hard reset, do not start it
        device.write(0xcf9, 2, 0x06, 0); // wrong size: ignored
        assert_eq!(device.reset_requested(), None);
        assert_eq!(device.read(0xcf9, 1, 0), 0x02);
        assert_eq!(device.read(0x92, 1, 0), u32::from(A20_ENABLED));
        assert_eq!(device.read(0x64, 1, 0), 0xff);
        assert_eq!(device.metrics().unsupported, 1);
        assert_eq!(device.metrics().bad_size, 1);
        // The rising edge of bit 2 resets, even after the hard-reset choice.
        device.write(0xcf9, 1, 0x06, 0);
        assert_eq!(device.reset_requested(), Some("port 0xcf9 reset"));
    }

    #[test]
    fn a_held_bit_2_is_not_a_second_edge() {
        let mut device = SystemReset::new();
        device.reset_control = RESET_CPU;
        device.write(0xcf9, 1, 0x04, 0);
        assert_eq!(device.reset_requested(), None);
    }
}
