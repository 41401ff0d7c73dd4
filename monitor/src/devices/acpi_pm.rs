//! The ACPI PM1a fixed-hardware registers (ACPI 6.5 section 4.8.3), at the
//! ports the FADT names: the event block at 0x600 (PM1_STS, then PM1_EN,
//! 16 bits each) and the control block at 0x604 (PM1_CNT, 16 bits).
//!
//! Two things matter to a guest:
//! - The power-off: writing SLP_EN with the sleep type the DSDT's `\_S5`
//!   gives enters S5, which ends the guest ([`AcpiPm::powered_off`]).
//! - The power button, a fixed feature (the FADT's PWR_BUTTON flag is
//!   clear): the host presses it ([`AcpiPm::press_power_button`]) to ask
//!   the guest to shut down. That sets PWRBTN_STS; while the guest has
//!   PWRBTN_EN set, the SCI is asserted ([`AcpiPm::sci_level`], a level
//!   interrupt) until the guest clears the status by writing it back with
//!   a 1. An OS that never enabled the button sees the status bit and
//!   nothing else: the press is a request, not a power-off.
//!
//! No other fixed event is ever raised (no PM timer, no sleep button, no
//! RTC alarm). SCI_EN reads as set: the machine is always in ACPI mode (the
//! FADT has no SMI command port).

use core::ops::RangeInclusive;

use super::{ByteRegisters, DeviceMetrics};
use crate::loader::acpi::{PM1A_CONTROL_PORT, PM1A_EVENT_PORT, S5_SLEEP_TYPE};

const SCI_EN: u16 = 1 << 0; // PM1_CNT: ACPI mode
const SLP_TYP_SHIFT: u16 = 10; // PM1_CNT bits 12:10
const SLP_EN: u16 = 1 << 13; // PM1_CNT: write-only, enter the sleep state
/// PM1_EN bits that name events this hardware has (timer, global lock,
/// power and sleep buttons, RTC): the rest read as zero.
const PM1_EN_DEFINED: u16 = 0x0721;
const PM1_CNT_WRITABLE: u16 = 0x1c06; // SLP_TYP, GBL_RLS, BM_RLD
/// PM1_STS and PM1_EN bit 8: the power button.
pub const PWRBTN: u16 = 1 << 8;

#[derive(Debug, Clone)]
pub struct AcpiPm {
    ports: [RangeInclusive<u16>; 1],
    /// PM1_STS: the fixed events that happened (write 1 to clear).
    status: u16,
    enable: u16,
    control: u16,
    powered_off: bool,
    metrics: DeviceMetrics,
}

impl Default for AcpiPm {
    fn default() -> Self {
        Self::new()
    }
}

impl AcpiPm {
    pub fn new() -> Self {
        Self {
            ports: [PM1A_EVENT_PORT..=PM1A_CONTROL_PORT + 1],
            status: 0,
            enable: 0,
            control: SCI_EN,
            powered_off: false,
            metrics: DeviceMetrics::default(),
        }
    }

    /// Whether the guest entered S5.
    pub fn powered_off(&self) -> bool {
        self.powered_off
    }

    /// Someone pressed the power button: PWRBTN_STS is set until the guest
    /// clears it, and raises the SCI while PWRBTN_EN is set.
    pub fn press_power_button(&mut self) {
        self.status |= PWRBTN;
    }

    /// The SCI's level: an enabled fixed event is pending.
    pub fn sci_level(&self) -> bool {
        self.status & self.enable != 0
    }

    /// Whether a power-button press still waits for the guest to take it.
    pub fn power_button_pending(&self) -> bool {
        self.status & PWRBTN != 0
    }

    /// The 16-bit register a port belongs to, and which byte of it.
    fn register(port: u16) -> (u16, u32) {
        (port & !1, u32::from(port & 1) * 8)
    }
}

impl ByteRegisters for AcpiPm {
    fn register_ports(&self) -> &[RangeInclusive<u16>] {
        &self.ports
    }

    fn counters(&self) -> &DeviceMetrics {
        &self.metrics
    }

    fn metrics_mut(&mut self) -> &mut DeviceMetrics {
        &mut self.metrics
    }

    fn read_byte(&mut self, port: u16, _now_ns: u64) -> u8 {
        let (register, shift) = Self::register(port);
        let value = match register {
            PM1A_EVENT_PORT => self.status,
            r if r == PM1A_EVENT_PORT + 2 => self.enable,
            _ => self.control,
        };
        (value >> shift) as u8
    }

    /// The guest writes these registers with 16-bit `out`s, which arrive
    /// here a byte at a time, low byte first: SLP_EN is in the high byte,
    /// so by the time it comes SLP_TYP is already in place.
    fn write_byte(&mut self, port: u16, byte: u8, _now_ns: u64) {
        let (register, shift) = Self::register(port);
        let merge = |old: u16| (old & !(0xff << shift)) | (u16::from(byte) << shift);
        match register {
            // PM1_STS is write-1-to-clear.
            PM1A_EVENT_PORT => self.status &= !(u16::from(byte) << shift),
            r if r == PM1A_EVENT_PORT + 2 => self.enable = merge(self.enable) & PM1_EN_DEFINED,
            _ => {
                let written = merge(self.control);
                self.control = (written & PM1_CNT_WRITABLE) | SCI_EN;
                if written & SLP_EN != 0 {
                    if (written >> SLP_TYP_SHIFT) & 7 == S5_SLEEP_TYPE {
                        self.powered_off = true;
                    } else {
                        // S1-S4 are not offered (the DSDT has only \_S5).
                        self.metrics.note_unsupported(port);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortDevice;

    #[test]
    fn s5_through_pm1a_control_powers_off() {
        let mut pm = AcpiPm::new();
        assert_eq!(pm.read(0x604, 2, 0), 1, "SCI_EN: already in ACPI mode");
        assert_eq!(pm.read(0x600, 2, 0), 0, "no events");
        // Linux's acpi_hw_legacy_sleep: SLP_TYP first, then SLP_TYP|SLP_EN.
        pm.write(0x604, 2, 5 << 10, 0);
        assert!(!pm.powered_off());
        assert_eq!(pm.read(0x604, 2, 0), (5 << 10) | 1);
        pm.write(0x604, 2, (5 << 10) | (1 << 13), 0);
        assert!(pm.powered_off());
        assert_eq!(pm.read(0x604, 2, 0) & (1 << 13), 0, "SLP_EN reads as zero");
    }

    #[test]
    fn other_sleep_states_and_enable_bits() {
        let mut pm = AcpiPm::new();
        pm.write(0x604, 2, (3 << 10) | (1 << 13), 0);
        assert!(!pm.powered_off(), "S3 is not offered");
        assert_eq!(pm.metrics().unsupported, 1);
        pm.write(0x602, 2, 0xffff, 0);
        assert_eq!(pm.read(0x602, 2, 0), 0x0721, "only defined enable bits");
        pm.write(0x600, 2, 0xffff, 0);
        assert_eq!(pm.read(0x600, 2, 0), 0);
    }

    #[test]
    fn the_power_button_raises_the_sci_only_while_enabled_and_uncleared() {
        let mut pm = AcpiPm::new();
        pm.press_power_button();
        assert_eq!(pm.read(0x600, 2, 0), 0x100, "PWRBTN_STS");
        assert!(!pm.sci_level(), "not enabled: no SCI");
        // Linux enables the button once its handler is installed; the
        // pending press then raises the SCI.
        pm.write(0x602, 2, 0x100, 0);
        assert!(pm.sci_level());
        // Writing 0 to the status changes nothing; the 1 clears it.
        pm.write(0x600, 2, 0, 0);
        assert!(pm.sci_level());
        pm.write(0x601, 1, 0x01, 0);
        assert_eq!(pm.read(0x600, 2, 0), 0);
        assert!(!pm.sci_level() && !pm.power_button_pending());
        // A second press while enabled raises it at once.
        pm.press_power_button();
        assert!(pm.sci_level());
        pm.write(0x602, 2, 0, 0);
        assert!(!pm.sci_level(), "disabling the button lowers the SCI");
        assert!(pm.power_button_pending());
        assert!(!pm.powered_off(), "a press alone never powers off");
    }
}
