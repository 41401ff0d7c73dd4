//! The debug-exit port (0xf4), as QEMU's `isa-debug-exit` device offers it.
//!
//! Test kernels (kvm-unit-tests among them) end themselves with one `out`
//! to this port: a write of `value` stops the guest with the exit status
//! `(value << 1) | 1`, so that a status of 0 can never be mistaken for
//! "the test passed without reaching the port". Any access size is fine;
//! kvm-unit-tests writes 32 bits. The port is write-only: reads return all
//! ones.

use core::ops::RangeInclusive;

use super::{all_ones, DeviceMetrics, PortDevice};

/// The port the device sits at.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// The debug-exit device.
#[derive(Debug, Clone)]
pub struct DebugExit {
    ports: [RangeInclusive<u16>; 1],
    /// The value of the first write, zero-extended from its access size.
    value: Option<u32>,
    metrics: DeviceMetrics,
}

impl Default for DebugExit {
    fn default() -> Self {
        Self::new()
    }
}

impl DebugExit {
    pub fn new() -> Self {
        Self { ports: [DEBUG_EXIT_PORT..=DEBUG_EXIT_PORT], value: None, metrics: DeviceMetrics::default() }
    }

    /// The raw value the guest wrote, once it has.
    pub fn exit_value(&self) -> Option<u32> {
        self.value
    }

    /// The guest's exit status, `(value << 1) | 1`, once it has written.
    pub fn exit_status(&self) -> Option<u32> {
        self.value.map(|value| (value << 1) | 1)
    }
}

impl PortDevice for DebugExit {
    fn read(&mut self, port: u16, size: u8, _now_ns: u64) -> u32 {
        self.metrics.reads += 1;
        self.metrics.note_wrong_direction(port);
        all_ones(size)
    }

    fn write(&mut self, port: u16, size: u8, value: u32, _now_ns: u64) {
        self.metrics.writes += 1;
        let value = match size {
            1 => value & 0xff,
            2 => value & 0xffff,
            4 => value,
            _ => {
                self.metrics.note_bad_size(port);
                return;
            }
        };
        if port != DEBUG_EXIT_PORT {
            self.metrics.note_invalid_command(port);
            return;
        }
        // The guest has ended; a second write (before the monitor stops it)
        // cannot change the status it already reported.
        if self.value.is_some() {
            self.metrics.note_invalid_command(port);
            return;
        }
        self.value = Some(value);
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
    fn kvm_unit_tests_exit_with_a_32_bit_write() {
        let mut device = DebugExit::new();
        assert_eq!(device.exit_status(), None);
        // kvm-unit-tests' exit(0): `outl(0, 0xf4)`.
        device.write(0xf4, 4, 0, 0);
        assert_eq!(device.exit_value(), Some(0));
        assert_eq!(device.exit_status(), Some(1));
        assert_eq!(device.metrics().odd_total(), 0);
    }

    #[test]
    fn the_value_is_cut_to_the_access_size() {
        let mut device = DebugExit::new();
        device.write(0xf4, 1, 0x1234_5603, 0);
        assert_eq!(device.exit_value(), Some(3));
        assert_eq!(device.exit_status(), Some(7));

        let mut device = DebugExit::new();
        device.write(0xf4, 2, 0x1234_5603, 0);
        assert_eq!(device.exit_status(), Some(0xac07));

        let mut device = DebugExit::new();
        device.write(0xf4, 4, 0x8000_0001, 0);
        assert_eq!(device.exit_value(), Some(0x8000_0001));
        assert_eq!(device.exit_status(), Some(3), "the top bit is shifted out, as in a C int");
    }

    #[test]
    fn reads_later_writes_and_bad_sizes_are_counted() {
        let mut device = DebugExit::new();
        assert_eq!(device.read(0xf4, 1, 0), 0xff);
        assert_eq!(device.read(0xf4, 2, 0), 0xffff);
        assert_eq!(device.read(0xf4, 4, 0), 0xffff_ffff);
        assert_eq!(device.metrics().wrong_direction, 3);

        device.write(0xf4, 3, 5, 0);
        assert_eq!(device.exit_status(), None);
        assert_eq!(device.metrics().bad_size, 1);

        device.write(0xf4, 1, 5, 0);
        device.write(0xf4, 1, 6, 0);
        assert_eq!(device.exit_status(), Some(11), "the first write wins");
        assert_eq!(device.metrics().invalid_commands, 1);
        assert_eq!(device.metrics().reads, 3);
        assert_eq!(device.metrics().writes, 3);
        assert_eq!(device.metrics().last_odd_port, Some(0xf4));
        assert_eq!(device.ports(), &[0xf4..=0xf4]);
    }
}
