//! The I/O APIC (Intel 82093AA datasheet), at 0xFEC00000.
//!
//! Two registers are visible in its MMIO window: IOREGSEL (offset 0x00)
//! selects an internal register, IOWIN (offset 0x10) reads or writes it.
//! Internally: the ID (0x00), the version with the highest redirection
//! entry (0x01), the arbitration ID (0x02), and two 32-bit halves per
//! redirection-table entry from 0x10 on.
//!
//! Each of the 24 input pins has a redirection entry: vector, delivery
//! mode, destination (physical APIC ID or logical set), polarity, trigger
//! mode and mask. An edge-triggered pin sends a message on each asserting
//! edge. A level-triggered pin sends one while it is asserted and sets the
//! entry's Remote IRR; nothing more is sent until the local APIC's EOI for
//! that vector comes back ([`IoApic::end_of_interrupt`], the EOI
//! broadcast), and then, if the line is still asserted, again.
//!
//! Messages leave as [`InterruptMessage`]s for the platform to route to
//! the local APICs. On a PC, ISA IRQ n is pin n, except the timer's IRQ0,
//! which is wired to pin 2 (the MADT's interrupt source override says so;
//! pin 0 carries the 8259's INTR for ExtINT setups).

use alloc::vec::Vec;

use super::local_apic::{DeliveryMode, Destination, InterruptMessage};
use super::DeviceMetrics;

pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The window the guest may touch; the registers repeat nowhere in it.
pub const IOAPIC_WINDOW_SIZE: u64 = 0x1000;
/// Pins, and redirection entries.
pub const IOAPIC_PINS: usize = 24;
/// The GSI the ISA timer (IRQ0) arrives at, as the MADT's override says.
pub const TIMER_GSI: u8 = 2;

const IOREGSEL: u64 = 0x00; // register select
const IOWIN: u64 = 0x10; // the selected register

// Internal registers.
const REG_ID: u8 = 0x00; // bits 27:24
const REG_VERSION: u8 = 0x01; // read-only
const REG_ARBITRATION: u8 = 0x02; // read-only
const REG_REDIRECTION: u8 = 0x10; // entry n at 0x10 + 2n (low), 0x11 + 2n (high)

/// Version 0x11 (the 82093AA: no EOI register, so Linux uses the local
/// APIC's EOI broadcast) and 23 as the highest entry.
const VERSION_VALUE: u32 = 0x11 | ((IOAPIC_PINS as u32 - 1) << 16);
const ID_MASK: u32 = 0x0f00_0000;

// Redirection entry fields (low half; the destination is bits 63:56).
const RTE_VECTOR: u64 = 0xff;
const RTE_DELIVERY_SHIFT: u32 = 8;
const RTE_LOGICAL: u64 = 1 << 11;
const RTE_DELIVERY_STATUS: u64 = 1 << 12; // read-only
const RTE_ACTIVE_LOW: u64 = 1 << 13;
const RTE_REMOTE_IRR: u64 = 1 << 14; // read-only
const RTE_LEVEL: u64 = 1 << 15;
const RTE_MASKED: u64 = 1 << 16;
const RTE_DESTINATION_SHIFT: u32 = 56;
const RTE_READ_ONLY: u64 = RTE_DELIVERY_STATUS | RTE_REMOTE_IRR;
/// Bits 55:17 are reserved: they read as written on real parts but mean
/// nothing; keeping them zero is what Linux expects to read back.
const RTE_WRITABLE: u64 = 0xff00_0000_0001_ffff & !RTE_READ_ONLY;

#[derive(Debug, Clone)]
pub struct IoApic {
    id: u32,
    select: u8,
    entries: [u64; IOAPIC_PINS],
    /// The pins' electrical levels, before polarity.
    levels: u32,
    metrics: DeviceMetrics,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new()
    }
}

impl IoApic {
    /// At reset every entry is masked (82093AA section 3.2.4).
    pub fn new() -> Self {
        Self { id: 0, select: 0, entries: [RTE_MASKED; IOAPIC_PINS], levels: 0, metrics: DeviceMetrics::default() }
    }

    /// The IOAPIC ID the MADT announces, as the BIOS programs it.
    pub fn with_id(id: u8) -> Self {
        Self { id: u32::from(id & 0xf) << 24, ..Self::new() }
    }

    pub fn id(&self) -> u8 {
        (self.id >> 24) as u8
    }

    pub fn metrics(&self) -> &DeviceMetrics {
        &self.metrics
    }

    /// Redirection entry `pin`, all 64 bits.
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.entries.get(pin).copied()
    }

    /// A guest read at `offset` in the window. IOREGSEL is 8 bits wide,
    /// IOWIN 32; other offsets read as zero (counted).
    pub fn mmio_read(&mut self, offset: u64, size: u8) -> u32 {
        self.metrics.reads += 1;
        match offset {
            IOREGSEL => u32::from(self.select),
            IOWIN if size == 4 => self.read_register(),
            IOWIN => {
                self.metrics.note_bad_size(offset as u16);
                self.read_register()
            }
            _ => {
                self.metrics.note_wrong_direction(offset as u16);
                0
            }
        }
    }

    /// A guest write at `offset`. A write to a redirection entry may send
    /// a message at once (e.g. unmasking an asserted level pin): those are
    /// pushed to `messages`.
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u32, messages: &mut Vec<InterruptMessage>) {
        self.metrics.writes += 1;
        match offset {
            IOREGSEL => self.select = value as u8,
            IOWIN if size == 4 => self.write_register(value, messages),
            IOWIN => self.metrics.note_bad_size(offset as u16),
            _ => self.metrics.note_wrong_direction(offset as u16),
        }
    }

    fn read_register(&mut self) -> u32 {
        match self.select {
            REG_ID => self.id,
            REG_VERSION => VERSION_VALUE,
            REG_ARBITRATION => self.id,
            register => match self.entry_of(register) {
                Some((pin, high)) => {
                    let entry = self.entries[pin];
                    if high {
                        (entry >> 32) as u32
                    } else {
                        entry as u32
                    }
                }
                None => {
                    self.metrics.note_invalid_command(u16::from(register));
                    0
                }
            },
        }
    }

    fn write_register(&mut self, value: u32, messages: &mut Vec<InterruptMessage>) {
        match self.select {
            REG_ID => self.id = value & ID_MASK,
            REG_VERSION | REG_ARBITRATION => self.metrics.note_wrong_direction(u16::from(self.select)),
            register => match self.entry_of(register) {
                Some((pin, high)) => {
                    let old = self.entries[pin];
                    let written = if high {
                        (old & 0xffff_ffff) | (u64::from(value) << 32)
                    } else {
                        (old & !0xffff_ffff) | u64::from(value)
                    };
                    let mut entry = (written & RTE_WRITABLE) | (old & RTE_READ_ONLY);
                    if entry & RTE_LEVEL == 0 {
                        // Remote IRR is only defined for level-triggered entries.
                        entry &= !RTE_REMOTE_IRR;
                    }
                    self.entries[pin] = entry;
                    // Unmasking (or turning to level) an asserted level pin
                    // sends now.
                    self.service_level(pin, messages);
                }
                None => self.metrics.note_invalid_command(u16::from(register)),
            },
        }
    }

    fn entry_of(&self, register: u8) -> Option<(usize, bool)> {
        let index = usize::from(register.checked_sub(REG_REDIRECTION)?);
        let pin = index / 2;
        (pin < IOAPIC_PINS).then_some((pin, index % 2 == 1))
    }

    /// Drives input `pin` to `level` (true: high). Out-of-range pins are
    /// ignored.
    pub fn set_irq(&mut self, pin: usize, level: bool, messages: &mut Vec<InterruptMessage>) {
        if pin >= IOAPIC_PINS {
            return;
        }
        let was_asserted = self.asserted(pin);
        if level {
            self.levels |= 1 << pin;
        } else {
            self.levels &= !(1 << pin);
        }
        let entry = self.entries[pin];
        if entry & RTE_LEVEL != 0 {
            self.service_level(pin, messages);
        } else if self.asserted(pin) && !was_asserted && entry & RTE_MASKED == 0 {
            messages.push(self.message(pin));
        }
    }

    /// An edge on `pin` (a pulse: both transitions at once), as the PIT's
    /// batched IRQ0 edges arrive.
    pub fn pulse_irq(&mut self, pin: usize, messages: &mut Vec<InterruptMessage>) {
        self.set_irq(pin, false, messages);
        self.set_irq(pin, true, messages);
        self.set_irq(pin, false, messages);
    }

    /// The local APICs' EOI broadcast for a level-triggered `vector`: the
    /// entries with that vector drop Remote IRR, and those whose line is
    /// still asserted send again.
    pub fn end_of_interrupt(&mut self, vector: u8, messages: &mut Vec<InterruptMessage>) {
        for pin in 0..IOAPIC_PINS {
            let entry = self.entries[pin];
            if entry & RTE_REMOTE_IRR != 0 && entry & RTE_VECTOR == u64::from(vector) {
                self.entries[pin] &= !RTE_REMOTE_IRR;
                self.service_level(pin, messages);
            }
        }
    }

    /// Whether `pin` is active, taking its polarity into account.
    fn asserted(&self, pin: usize) -> bool {
        let high = self.levels & (1 << pin) != 0;
        high != (self.entries[pin] & RTE_ACTIVE_LOW != 0)
    }

    /// Sends for a level-triggered pin if it is asserted, unmasked and not
    /// waiting for its EOI.
    fn service_level(&mut self, pin: usize, messages: &mut Vec<InterruptMessage>) {
        let entry = self.entries[pin];
        if entry & RTE_LEVEL != 0 && entry & (RTE_MASKED | RTE_REMOTE_IRR) == 0 && self.asserted(pin) {
            self.entries[pin] |= RTE_REMOTE_IRR;
            messages.push(self.message(pin));
        }
    }

    fn message(&mut self, pin: usize) -> InterruptMessage {
        let entry = self.entries[pin];
        let delivery = DeliveryMode::from_bits((entry >> RTE_DELIVERY_SHIFT) as u32).unwrap_or_else(|| {
            // Reserved modes (3): treated as fixed, and counted.
            self.metrics.note_invalid_command(pin as u16);
            DeliveryMode::Fixed
        });
        let destination_id = (entry >> RTE_DESTINATION_SHIFT) as u32;
        InterruptMessage {
            vector: (entry & RTE_VECTOR) as u8,
            delivery,
            destination: if entry & RTE_LOGICAL != 0 {
                Destination::Logical(destination_id)
            } else {
                Destination::Physical(destination_id)
            },
            level_triggered: entry & RTE_LEVEL != 0,
            source: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn write(ioapic: &mut IoApic, register: u8, value: u32) -> Vec<InterruptMessage> {
        let mut messages = Vec::new();
        ioapic.mmio_write(0x00, 4, u32::from(register), &mut messages);
        ioapic.mmio_write(0x10, 4, value, &mut messages);
        messages
    }

    fn read(ioapic: &mut IoApic, register: u8) -> u32 {
        let mut messages = Vec::new();
        ioapic.mmio_write(0x00, 4, u32::from(register), &mut messages);
        ioapic.mmio_read(0x10, 4)
    }

    fn fixed(vector: u8, apic: u32, level_triggered: bool) -> InterruptMessage {
        InterruptMessage {
            vector,
            delivery: DeliveryMode::Fixed,
            destination: Destination::Physical(apic),
            level_triggered,
            source: None,
        }
    }

    #[test]
    fn identification_registers() {
        let mut ioapic = IoApic::with_id(1);
        assert_eq!(read(&mut ioapic, 0x00), 0x0100_0000);
        // 82093AA: version 0x11, maximum redirection entry 23 (0x17).
        assert_eq!(read(&mut ioapic, 0x01), 0x0017_0011);
        write(&mut ioapic, 0x00, 0xffff_ffff);
        assert_eq!(read(&mut ioapic, 0x00), 0x0f00_0000, "ID is bits 27:24");
        write(&mut ioapic, 0x01, 0);
        assert_eq!(read(&mut ioapic, 0x01), 0x0017_0011);
        assert_eq!(ioapic.metrics().wrong_direction, 1);
        let mut messages = Vec::new();
        ioapic.mmio_write(0x00, 4, 0x3f, &mut messages);
        assert_eq!(ioapic.mmio_read(0x00, 4), 0x3f, "IOREGSEL reads back");
    }

    #[test]
    fn redirection_entries_reset_masked_and_keep_their_fields() {
        let mut ioapic = IoApic::new();
        for pin in 0..24u8 {
            assert_eq!(read(&mut ioapic, 0x10 + 2 * pin), 0x1_0000, "pin {pin}");
            assert_eq!(read(&mut ioapic, 0x11 + 2 * pin), 0);
        }
        assert_eq!(read(&mut ioapic, 0x40), 0, "no entry 24");
        assert_eq!(ioapic.metrics().invalid_commands, 1);
        write(&mut ioapic, 0x12, 0xffff_ffff);
        write(&mut ioapic, 0x13, 0xffff_ffff);
        // Delivery status and Remote IRR are read-only; 55:17 reserved.
        assert_eq!(read(&mut ioapic, 0x12), 0x0001_afff);
        assert_eq!(read(&mut ioapic, 0x13), 0xff00_0000);
        assert_eq!(ioapic.entry(1), Some(0xff00_0000_0001_afff));
    }

    #[test]
    fn edge_triggered_pins_send_on_each_rising_edge() {
        let mut ioapic = IoApic::new();
        // Pin 2 (IRQ0 via the override): vector 0x30 to APIC 0, edge, high.
        write(&mut ioapic, 0x14, 0x30);
        let mut messages = Vec::new();
        ioapic.set_irq(2, true, &mut messages);
        ioapic.set_irq(2, true, &mut messages);
        assert_eq!(messages, vec![fixed(0x30, 0, false)], "one edge, one message");
        ioapic.set_irq(2, false, &mut messages);
        ioapic.pulse_irq(2, &mut messages);
        assert_eq!(messages.len(), 2);
        // Masked: edges are lost.
        write(&mut ioapic, 0x14, 0x1_0030);
        messages.clear();
        ioapic.pulse_irq(2, &mut messages);
        assert!(messages.is_empty());
        assert_eq!(ioapic.entry(2).unwrap() & (1 << 14), 0, "no Remote IRR for edge entries");
    }

    #[test]
    fn level_triggered_pins_wait_for_the_eoi_broadcast() {
        let mut ioapic = IoApic::new();
        // Pin 9 (ACPI SCI): level, active low, vector 0x39, logical 0x01.
        write(&mut ioapic, 0x23, 0x0100_0000);
        write(&mut ioapic, 0x22, 0x0001_a939);
        let mut messages = Vec::new();
        ioapic.set_irq(9, true, &mut messages);
        assert!(messages.is_empty(), "high is inactive for an active-low pin");
        assert!(write(&mut ioapic, 0x22, 0x0000_a939).is_empty(), "unmasked, still inactive");
        ioapic.set_irq(9, false, &mut messages);
        let sent = InterruptMessage {
            vector: 0x39,
            delivery: DeliveryMode::LowestPriority,
            destination: Destination::Logical(1),
            level_triggered: true,
            source: None,
        };
        assert_eq!(messages, vec![sent]);
        assert_ne!(read(&mut ioapic, 0x22) & (1 << 14), 0, "Remote IRR set");
        // Still asserted, but Remote IRR holds it back.
        ioapic.set_irq(9, false, &mut messages);
        assert_eq!(messages.len(), 1);
        // An EOI for another vector changes nothing.
        ioapic.end_of_interrupt(0x40, &mut messages);
        assert_eq!(messages.len(), 1);
        // The EOI with the line still asserted: sent again.
        ioapic.end_of_interrupt(0x39, &mut messages);
        assert_eq!(messages, vec![sent, sent]);
        // The device lets go, then the EOI: Remote IRR clear, nothing sent.
        ioapic.set_irq(9, true, &mut messages);
        ioapic.end_of_interrupt(0x39, &mut messages);
        assert_eq!(messages.len(), 2);
        assert_eq!(read(&mut ioapic, 0x22) & (1 << 14), 0);
    }

    #[test]
    fn unmasking_an_asserted_level_pin_sends_at_once() {
        let mut ioapic = IoApic::new();
        let mut messages = Vec::new();
        ioapic.set_irq(4, true, &mut messages);
        assert!(write(&mut ioapic, 0x18, 0x1_8034).is_empty());
        assert_eq!(write(&mut ioapic, 0x18, 0x0_8034), vec![fixed(0x34, 0, true)]);
    }

    #[test]
    fn out_of_window_and_odd_sized_accesses_are_counted() {
        let mut ioapic = IoApic::new();
        assert_eq!(ioapic.mmio_read(0x20, 4), 0);
        let mut messages = Vec::new();
        ioapic.mmio_write(0x10, 2, 0, &mut messages);
        assert_eq!(ioapic.metrics().wrong_direction, 1);
        assert_eq!(ioapic.metrics().bad_size, 1);
        ioapic.set_irq(99, true, &mut messages);
        assert!(messages.is_empty());
    }
}
