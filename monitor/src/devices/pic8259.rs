//! The PC's two cascaded Intel 8259A interrupt controllers and the ELCR.
//!
//! The master sits at 0x20/0x21 and takes ISA IRQ0-7; the slave sits at
//! 0xa0/0xa1, takes IRQ8-15 and drives the master's IR2. Each chip has an
//! interrupt request register (IRR: lines asking), an in-service register
//! (ISR: interrupts delivered and not yet ended) and a mask register (IMR).
//! The chipset's edge/level control registers (ELCR, 0x4d0/0x4d1) pick
//! the trigger mode per line.
//!
//! Programming, per chip:
//! - A write to the command port with bit 4 set is ICW1 and starts the
//!   initialization sequence: ICW2 (vector base), then ICW3 (cascade
//!   wiring) unless ICW1 said "single", then ICW4 if ICW1 asked for it,
//!   each written to the data port.
//! - Otherwise a data-port write is OCW1 (the mask), and a command-port
//!   write is OCW2 (end of interrupt, rotation; bit 3 clear) or OCW3 (what
//!   the next command-port read returns, poll, special mask; bit 3 set).
//!
//! An interrupt acknowledge cycle (INTA) resolves the highest-priority
//! request that is not masked and outranks everything in service, moves it
//! from IRR to ISR (unless in automatic-EOI mode) and returns its vector.
//! With nothing left to deliver, the chip answers with IR7's vector without
//! marking it in service: the "spurious IRQ7" that Linux checks for. (The
//! slave's spurious IRQ15 cannot arise here: the master's IR2 follows the
//! slave's INT, and an acknowledge is one atomic step.)
//!
//! The master's IR2 follows the slave's INT output as a level, whatever the
//! master's trigger mode: the slave keeps INT high while it has something
//! to deliver, so a second slave interrupt that arrives while the first is
//! in service is delivered once the master's IR2 is ended, rather than lost
//! for want of a new edge.
//!
//! Implemented besides: rotation (automatic and specific), special mask
//! mode, the poll command. Not modelled, and counted as unsupported: the
//! special fully nested mode and the MCS-80/85 mode (ICW4 bit 0 clear).

use core::ops::RangeInclusive;

use super::{ByteRegisters, DeviceMetrics};

const MASTER_COMMAND: u16 = 0x20; // ICW1, OCW2, OCW3; reads IRR, ISR or a poll result
const MASTER_DATA: u16 = 0x21; // ICW2-4, OCW1; reads IMR
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
const ELCR_MASTER: u16 = 0x4d0; // edge (0) or level (1) per line, IRQ0-7
const ELCR_SLAVE: u16 = 0x4d1; // IRQ8-15

// ICW1 bits.
const ICW1_SELECT: u8 = 0x10; // marks a command-port write as ICW1
const ICW1_ICW4_NEEDED: u8 = 0x01; // IC4: an ICW4 follows
const ICW1_SINGLE: u8 = 0x02; // SNGL: no cascade, so no ICW3
const ICW1_LEVEL: u8 = 0x08; // LTIM: all lines level-triggered

// ICW4 bits.
const ICW4_8086: u8 = 0x01; // uPM: 8086 mode (else MCS-80/85)
const ICW4_AUTO_EOI: u8 = 0x02; // AEOI: end each interrupt on acknowledge
const ICW4_SFNM: u8 = 0x10; // special fully nested mode

// OCW2 and OCW3 share the command port with ICW1.
const OCW3_SELECT: u8 = 0x08; // bit 3 set (and bit 4 clear): OCW3
const OCW2_LEVEL: u8 = 0x07; // the IR level of specific commands
const OCW2_COMMAND_SHIFT: u8 = 5; // R, SL, EOI in bits 7-5
const OCW3_RESERVED: u8 = 0x80; // must be 0
const OCW3_SET_SPECIAL_MASK: u8 = 0x40; // ESMM: bit 5 is meaningful
const OCW3_SPECIAL_MASK: u8 = 0x20; // SMM
const OCW3_POLL: u8 = 0x04; // P: the next read is a poll
const OCW3_READ_REGISTER: u8 = 0x02; // RR: bit 0 is meaningful
const OCW3_READ_ISR: u8 = 0x01; // RIS: read ISR rather than IRR

// OCW2 commands (bits 7-5: R, SL, EOI).
const OCW2_ROTATE_AEOI_CLEAR: u8 = 0b000;
const OCW2_NON_SPECIFIC_EOI: u8 = 0b001;
const OCW2_SPECIFIC_EOI: u8 = 0b011;
const OCW2_ROTATE_AEOI_SET: u8 = 0b100;
const OCW2_ROTATE_NON_SPECIFIC_EOI: u8 = 0b101;
const OCW2_SET_PRIORITY: u8 = 0b110;
const OCW2_ROTATE_SPECIFIC_EOI: u8 = 0b111;

/// The poll word's "an interrupt was pending" bit.
const POLL_PENDING: u8 = 0x80;
/// The master's input the slave's INT drives.
const CASCADE_LINE: u8 = 2;
/// ELCR bits that exist: IRQ0-2 on the master, IRQ8 and IRQ13 on the
/// slave are always edge-triggered.
const ELCR_MASTER_WRITABLE: u8 = 0xf8;
const ELCR_SLAVE_WRITABLE: u8 = 0xde;

/// Where an initialization sequence stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitStep {
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    /// The input lines' current levels, for edge detection.
    levels: u8,
    elcr: u8,
    elcr_writable: u8,
    icw1: u8,
    vector_base: u8,
    icw3: u8,
    icw4: u8,
    init: InitStep,
    /// The lowest-priority level; the next one round is the highest.
    lowest_priority: u8,
    rotate_on_auto_eoi: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
}

/// A snapshot of one chip's registers, for logs and the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PicChipState {
    pub irr: u8,
    pub isr: u8,
    pub imr: u8,
    /// The lines that are level-triggered (ELCR, or all with ICW1.LTIM).
    pub level_triggered: u8,
    pub vector_base: u8,
    pub auto_eoi: bool,
}

impl Chip {
    /// A chip as a PC BIOS leaves it: initialized in 8086 mode with the
    /// given vector base and cascade word, all lines masked.
    fn new(vector_base: u8, icw3: u8, elcr_writable: u8) -> Self {
        Self {
            irr: 0,
            isr: 0,
            imr: 0xff,
            levels: 0,
            elcr: 0,
            elcr_writable,
            icw1: ICW1_SELECT | ICW1_ICW4_NEEDED,
            vector_base,
            icw3,
            icw4: ICW4_8086,
            init: InitStep::Ready,
            lowest_priority: 7,
            rotate_on_auto_eoi: false,
            special_mask: false,
            read_isr: false,
            poll: false,
        }
    }

    fn level_triggered(&self) -> u8 {
        if self.icw1 & ICW1_LEVEL != 0 {
            0xff
        } else {
            self.elcr
        }
    }

    fn auto_eoi(&self) -> bool {
        self.icw4 & ICW4_AUTO_EOI != 0
    }

    fn single(&self) -> bool {
        self.icw1 & ICW1_SINGLE != 0
    }

    /// Drives input `line` (0-7) to `level`.
    fn set_line(&mut self, line: u8, level: bool) {
        let bit = 1 << line;
        let was_high = self.levels & bit != 0;
        if level {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
        if self.level_triggered() & bit != 0 {
            // Level-triggered: the request lasts as long as the line is high.
            self.irr = (self.irr & !bit) | (self.levels & bit);
        } else if level && !was_high {
            self.irr |= bit;
        }
    }

    /// After a trigger-mode change: level-triggered requests follow their
    /// lines at once; edge-triggered ones keep what they latched.
    fn retrigger_levels(&mut self) {
        let level = self.level_triggered();
        self.irr = (self.irr & !level) | (self.levels & level);
    }

    /// Position of `line` in the current priority order (0 is highest).
    fn rank(&self, line: u8) -> u8 {
        line.wrapping_sub(self.lowest_priority).wrapping_sub(1) & 7
    }

    /// The highest-priority line among `bits`.
    fn highest(&self, bits: u8) -> Option<u8> {
        (0..8).map(|rank| (self.lowest_priority + 1 + rank) & 7).find(|&line| bits & (1 << line) != 0)
    }

    /// The in-service levels that block lower-priority requests: in special
    /// mask mode, a masked level does not.
    fn blocking_isr(&self) -> u8 {
        if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        }
    }

    /// The line an INTA would deliver, given the request bits `irr`.
    fn best_request(&self, irr: u8) -> Option<u8> {
        let request = self.highest(irr & !self.imr)?;
        match self.highest(self.blocking_isr()) {
            Some(in_service) if self.rank(in_service) <= self.rank(request) => None,
            _ => Some(request),
        }
    }

    /// INTA (or a poll) on this chip for `line`: IRR to ISR.
    fn accept(&mut self, line: u8) {
        let bit = 1 << line;
        self.irr &= !bit;
        // A level-triggered line that is still high keeps requesting.
        self.irr |= self.levels & self.level_triggered() & bit;
        if self.auto_eoi() {
            if self.rotate_on_auto_eoi {
                self.lowest_priority = line;
            }
        } else {
            self.isr |= bit;
        }
    }

    fn state(&self, irr: u8) -> PicChipState {
        PicChipState {
            irr,
            isr: self.isr,
            imr: self.imr,
            level_triggered: self.level_triggered(),
            vector_base: self.vector_base,
            auto_eoi: self.auto_eoi(),
        }
    }
}

/// The PC's master/slave 8259A pair with its ELCR.
#[derive(Debug, Clone)]
pub struct Pic8259Pair {
    master: Chip,
    slave: Chip,
    metrics: DeviceMetrics,
}

impl Default for Pic8259Pair {
    fn default() -> Self {
        Self::new()
    }
}

static PORTS: [RangeInclusive<u16>; 3] =
    [MASTER_COMMAND..=MASTER_DATA, SLAVE_COMMAND..=SLAVE_DATA, ELCR_MASTER..=ELCR_SLAVE];

impl Pic8259Pair {
    /// The pair as a PC BIOS leaves it: vectors 0x08 and 0x70, cascaded on
    /// IR2, every line masked and edge-triggered.
    pub fn new() -> Self {
        Self {
            master: Chip::new(0x08, 1 << CASCADE_LINE, ELCR_MASTER_WRITABLE),
            slave: Chip::new(0x70, CASCADE_LINE, ELCR_SLAVE_WRITABLE),
            metrics: DeviceMetrics::default(),
        }
    }

    /// Drives ISA interrupt line `line` (0-15, not the cascade line 2) to
    /// `level`. Edge-triggered lines latch a request on a rising edge;
    /// level-triggered ones request while high.
    pub fn set_irq(&mut self, line: u8, level: bool) {
        match line {
            0..=7 if line != CASCADE_LINE => self.master.set_line(line, level),
            8..=15 => self.slave.set_line(line - 8, level),
            _ => self.metrics.invalid_commands += 1,
        }
    }

    /// What an INTA cycle would return now, if the master asserts INT.
    pub fn pending_vector(&self) -> Option<u8> {
        let line = self.master.best_request(self.master_irr())?;
        if line == CASCADE_LINE && self.cascaded() {
            let slave_line = self.slave.best_request(self.slave.irr).unwrap_or(7);
            Some(self.slave.vector_base | slave_line)
        } else {
            Some(self.master.vector_base | line)
        }
    }

    /// An INTA cycle: returns the vector of the highest-priority request
    /// and marks it in service (unless in automatic-EOI mode). With nothing
    /// to deliver, the spurious IRQ7 (or IRQ15) vector.
    pub fn acknowledge(&mut self) -> u8 {
        let Some(line) = self.master.best_request(self.master_irr()) else {
            self.metrics.spurious_interrupts += 1;
            return self.master.vector_base | 7;
        };
        self.master.accept(line);
        if line != CASCADE_LINE || !self.cascaded() {
            return self.master.vector_base | line;
        }
        match self.slave.best_request(self.slave.irr) {
            Some(slave_line) => {
                self.slave.accept(slave_line);
                self.slave.vector_base | slave_line
            }
            None => {
                self.metrics.spurious_interrupts += 1;
                self.slave.vector_base | 7
            }
        }
    }

    pub fn master(&self) -> PicChipState {
        self.master.state(self.master_irr())
    }

    pub fn slave(&self) -> PicChipState {
        self.slave.state(self.slave.irr)
    }

    /// Whether the master routes IR2 acknowledges to the slave.
    fn cascaded(&self) -> bool {
        !self.master.single() && self.master.icw3 & (1 << CASCADE_LINE) != 0
    }

    /// The master's IRR, with IR2 following the slave's INT output.
    fn master_irr(&self) -> u8 {
        let slave_int = self.slave.best_request(self.slave.irr).is_some();
        let cascade = 1 << CASCADE_LINE;
        (self.master.irr & !cascade) | if slave_int { cascade } else { 0 }
    }

    fn is_slave(port: u16) -> bool {
        port & 0x80 != 0
    }

    fn read_command(&mut self, port: u16) -> u8 {
        let slave = Self::is_slave(port);
        let irr = if slave { self.slave.irr } else { self.master_irr() };
        let chip = if slave { &self.slave } else { &self.master };
        if chip.poll {
            return self.poll(slave);
        }
        if chip.read_isr {
            chip.isr
        } else {
            irr
        }
    }

    /// The poll command: this read is the chip's INTA, answered as a byte
    /// (bit 7: something was pending, bits 0-2: its level).
    fn poll(&mut self, slave: bool) -> u8 {
        let irr = if slave { self.slave.irr } else { self.master_irr() };
        let chip = if slave { &mut self.slave } else { &mut self.master };
        chip.poll = false;
        match chip.best_request(irr) {
            Some(line) => {
                chip.accept(line);
                POLL_PENDING | line
            }
            None => 0,
        }
    }

    fn write_command(&mut self, port: u16, value: u8) {
        let chip = if Self::is_slave(port) { &mut self.slave } else { &mut self.master };
        if value & ICW1_SELECT != 0 {
            // ICW1 resets the chip: mask, requests and service cleared, IR7
            // lowest priority, special mask off, reads return IRR; a line
            // that is already high must fall and rise again to request.
            chip.icw1 = value;
            chip.imr = 0;
            chip.isr = 0;
            chip.irr = 0;
            chip.lowest_priority = 7;
            chip.rotate_on_auto_eoi = false;
            chip.special_mask = false;
            chip.read_isr = false;
            chip.poll = false;
            if value & ICW1_ICW4_NEEDED == 0 {
                // Without ICW4 its bits are zero: MCS-80/85 mode.
                chip.icw4 = 0;
                self.metrics.note_unsupported(port);
            }
            chip.retrigger_levels();
            chip.init = InitStep::Icw2;
        } else if value & OCW3_SELECT != 0 {
            if value & OCW3_RESERVED != 0 {
                self.metrics.note_invalid_command(port);
            }
            if value & OCW3_SET_SPECIAL_MASK != 0 {
                chip.special_mask = value & OCW3_SPECIAL_MASK != 0;
            }
            if value & OCW3_READ_REGISTER != 0 {
                chip.read_isr = value & OCW3_READ_ISR != 0;
            }
            chip.poll = value & OCW3_POLL != 0;
        } else {
            self.write_ocw2(port, value);
        }
    }

    fn write_ocw2(&mut self, port: u16, value: u8) {
        let chip = if Self::is_slave(port) { &mut self.slave } else { &mut self.master };
        let level = value & OCW2_LEVEL;
        let end = |chip: &mut Chip, line: Option<u8>, metrics: &mut DeviceMetrics| match line {
            Some(line) if chip.isr & (1 << line) != 0 => {
                chip.isr &= !(1 << line);
                Some(line)
            }
            // An EOI with nothing (or not that level) in service.
            _ => {
                metrics.note_invalid_command(port);
                None
            }
        };
        match value >> OCW2_COMMAND_SHIFT {
            OCW2_NON_SPECIFIC_EOI => {
                let line = chip.highest(chip.blocking_isr());
                end(chip, line, &mut self.metrics);
            }
            OCW2_SPECIFIC_EOI => {
                end(chip, Some(level), &mut self.metrics);
            }
            OCW2_ROTATE_NON_SPECIFIC_EOI => {
                let line = chip.highest(chip.blocking_isr());
                if let Some(line) = end(chip, line, &mut self.metrics) {
                    chip.lowest_priority = line;
                }
            }
            OCW2_ROTATE_SPECIFIC_EOI => {
                if let Some(line) = end(chip, Some(level), &mut self.metrics) {
                    chip.lowest_priority = line;
                }
            }
            OCW2_SET_PRIORITY => chip.lowest_priority = level,
            OCW2_ROTATE_AEOI_SET => chip.rotate_on_auto_eoi = true,
            OCW2_ROTATE_AEOI_CLEAR => chip.rotate_on_auto_eoi = false,
            // 0b010, no operation: the only three-bit value left.
            _ => {}
        }
    }

    fn write_data(&mut self, port: u16, value: u8) {
        let slave = Self::is_slave(port);
        let chip = if slave { &mut self.slave } else { &mut self.master };
        match chip.init {
            InitStep::Ready => chip.imr = value,
            InitStep::Icw2 => {
                // In 8086 mode the chip supplies bits 0-2 itself.
                chip.vector_base = value & 0xf8;
                chip.init = if !chip.single() {
                    InitStep::Icw3
                } else if chip.icw1 & ICW1_ICW4_NEEDED != 0 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                chip.icw3 = value;
                // The wiring is fixed: the slave hangs off IR2 and answers to
                // cascade address 2. Other values are the guest's mistake.
                let expected = if slave { value & 0x07 == CASCADE_LINE } else { value == 1 << CASCADE_LINE };
                chip.init = if chip.icw1 & ICW1_ICW4_NEEDED != 0 { InitStep::Icw4 } else { InitStep::Ready };
                if !expected {
                    self.metrics.note_invalid_command(port);
                }
            }
            InitStep::Icw4 => {
                chip.icw4 = value;
                chip.init = InitStep::Ready;
                if value & ICW4_8086 == 0 || value & ICW4_SFNM != 0 {
                    self.metrics.note_unsupported(port);
                }
            }
        }
    }

    fn write_elcr(&mut self, port: u16, value: u8) {
        let chip = if port == ELCR_SLAVE { &mut self.slave } else { &mut self.master };
        if value & !chip.elcr_writable != 0 {
            self.metrics.note_invalid_command(port);
        }
        chip.elcr = value & chip.elcr_writable;
        chip.retrigger_levels();
    }
}

impl ByteRegisters for Pic8259Pair {
    fn register_ports(&self) -> &[RangeInclusive<u16>] {
        &PORTS
    }

    fn counters(&self) -> &DeviceMetrics {
        &self.metrics
    }

    fn metrics_mut(&mut self) -> &mut DeviceMetrics {
        &mut self.metrics
    }

    fn read_byte(&mut self, port: u16, _now_ns: u64) -> u8 {
        match port {
            MASTER_COMMAND | SLAVE_COMMAND => self.read_command(port),
            MASTER_DATA | SLAVE_DATA => {
                // A pending poll takes whichever port is read next.
                let slave = Self::is_slave(port);
                let chip = if slave { &self.slave } else { &self.master };
                if chip.poll {
                    self.poll(slave)
                } else {
                    chip.imr
                }
            }
            ELCR_MASTER => self.master.elcr,
            ELCR_SLAVE => self.slave.elcr,
            _ => {
                self.metrics.note_invalid_command(port);
                0xff
            }
        }
    }

    fn write_byte(&mut self, port: u16, byte: u8, _now_ns: u64) {
        match port {
            MASTER_COMMAND | SLAVE_COMMAND => self.write_command(port, byte),
            MASTER_DATA | SLAVE_DATA => self.write_data(port, byte),
            ELCR_MASTER | ELCR_SLAVE => self.write_elcr(port, byte),
            _ => self.metrics.note_invalid_command(port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortDevice;

    fn outb(pic: &mut Pic8259Pair, port: u16, value: u8) {
        pic.write(port, 1, u32::from(value), 0);
    }

    fn inb(pic: &mut Pic8259Pair, port: u16) -> u8 {
        let value = pic.read(port, 1, 0);
        assert!(value <= 0xff);
        value as u8
    }

    /// Linux's `init_8259A()`: mask everything, then ICW1-4 to both chips
    /// (vectors 0x30 and 0x38, cascade on IR2, 8086 mode, normal EOI),
    /// then restore the masks.
    fn linux_init(pic: &mut Pic8259Pair) {
        outb(pic, 0x21, 0xff);
        outb(pic, 0xa1, 0xff);
        outb(pic, 0x20, 0x11);
        outb(pic, 0x21, 0x30);
        outb(pic, 0x21, 0x04);
        outb(pic, 0x21, 0x01);
        outb(pic, 0xa0, 0x11);
        outb(pic, 0xa1, 0x38);
        outb(pic, 0xa1, 0x02);
        outb(pic, 0xa1, 0x01);
        outb(pic, 0x21, 0xfb); // everything masked but the cascade
        outb(pic, 0xa1, 0xff);
    }

    #[test]
    fn power_on_state_is_what_a_bios_leaves() {
        let mut pic = Pic8259Pair::new();
        assert_eq!(inb(&mut pic, 0x21), 0xff);
        assert_eq!(inb(&mut pic, 0xa1), 0xff);
        assert_eq!(pic.master().vector_base, 0x08);
        assert_eq!(pic.slave().vector_base, 0x70);
        pic.set_irq(0, true);
        assert_eq!(pic.pending_vector(), None, "masked");
        assert_eq!(pic.master().irr, 0x01);
        outb(&mut pic, 0x21, 0xfe);
        assert_eq!(pic.pending_vector(), Some(0x08));
    }

    #[test]
    fn linux_init_then_timer_interrupts_with_eoi() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        assert_eq!(pic.metrics().odd_total(), 0);
        assert_eq!(inb(&mut pic, 0x21), 0xfb);
        assert_eq!(pic.master().vector_base, 0x30);
        assert_eq!(pic.slave().vector_base, 0x38);
        outb(&mut pic, 0x21, 0xfa); // unmask IRQ0

        pic.set_irq(0, true);
        assert_eq!(pic.pending_vector(), Some(0x30));
        assert_eq!(inb(&mut pic, 0x20), 0x01, "reads return IRR after init");
        assert_eq!(pic.acknowledge(), 0x30);
        assert_eq!(pic.master().irr, 0);
        assert_eq!(pic.master().isr, 0x01);
        assert_eq!(pic.pending_vector(), None);

        // A new edge while IRQ0 is in service is latched but held back.
        pic.set_irq(0, false);
        pic.set_irq(0, true);
        assert_eq!(pic.master().irr, 0x01);
        assert_eq!(pic.pending_vector(), None);
        // OCW3: read ISR.
        outb(&mut pic, 0x20, 0x0b);
        assert_eq!(inb(&mut pic, 0x20), 0x01);
        outb(&mut pic, 0x20, 0x0a);
        assert_eq!(inb(&mut pic, 0x20), 0x01, "IRR again");
        // Linux's mask_and_ack_8259A for IRQ0: mask, specific EOI.
        outb(&mut pic, 0x21, 0xfb);
        outb(&mut pic, 0x20, 0x60);
        assert_eq!(pic.master().isr, 0);
        assert_eq!(pic.pending_vector(), None, "masked");
        outb(&mut pic, 0x21, 0xfa);
        assert_eq!(pic.acknowledge(), 0x30);
        outb(&mut pic, 0x20, 0x20); // non-specific EOI
        assert_eq!(pic.master().isr, 0);
        assert_eq!(pic.metrics().odd_total(), 0);
    }

    #[test]
    fn cascaded_interrupts_from_the_slave() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        outb(&mut pic, 0xa1, 0xfe); // unmask IRQ8 (the RTC)
        pic.set_irq(8, true);
        assert_eq!(pic.master().irr, 0x04, "the slave drives the master's IR2");
        assert_eq!(pic.pending_vector(), Some(0x38));
        assert_eq!(pic.acknowledge(), 0x38);
        assert_eq!(pic.master().isr, 0x04);
        assert_eq!(pic.slave().isr, 0x01);
        assert_eq!(pic.master().irr, 0);

        // IRQ9 arrives while IRQ8 is in service: the slave holds it back,
        // then IRQ8 is re-raised too.
        outb(&mut pic, 0xa1, 0xfc);
        pic.set_irq(9, true);
        assert_eq!(pic.pending_vector(), None);
        pic.set_irq(8, false);
        pic.set_irq(8, true);
        // Specific EOI to the slave, then the master's cascade line.
        outb(&mut pic, 0xa0, 0x60);
        assert_eq!(pic.pending_vector(), None, "IR2 is still in service on the master");
        outb(&mut pic, 0x20, 0x62);
        assert_eq!(pic.pending_vector(), Some(0x38), "IRQ8 outranks IRQ9");
        assert_eq!(pic.acknowledge(), 0x38);
        outb(&mut pic, 0xa0, 0x60);
        outb(&mut pic, 0x20, 0x62);
        assert_eq!(pic.acknowledge(), 0x39);
        assert_eq!(pic.slave().isr, 0x02);
        // A master interrupt of higher priority than IR2 preempts the slave.
        outb(&mut pic, 0x21, 0xf8);
        pic.set_irq(1, true);
        assert_eq!(pic.pending_vector(), Some(0x31));
        assert_eq!(pic.acknowledge(), 0x31);
        assert_eq!(pic.master().isr, 0x06);
        // Non-specific EOIs end the highest-priority level in service.
        outb(&mut pic, 0x20, 0x20);
        assert_eq!(pic.master().isr, 0x04);
        outb(&mut pic, 0xa0, 0x20);
        outb(&mut pic, 0x20, 0x20);
        assert_eq!((pic.master().isr, pic.slave().isr), (0, 0));
        assert_eq!(pic.pending_vector(), None);
        assert_eq!(pic.metrics().odd_total(), 0);
    }

    #[test]
    fn an_acknowledge_with_nothing_pending_is_a_spurious_irq7() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        assert_eq!(pic.acknowledge(), 0x37);
        assert_eq!(pic.master().isr, 0, "the spurious IRQ7 is not in service");
        assert_eq!(pic.metrics().spurious_interrupts, 1);

        // A level-triggered slave line drops before the acknowledge.
        outb(&mut pic, 0x4d1, 0x08); // IRQ11 level-triggered
        outb(&mut pic, 0xa1, 0xf7);
        pic.set_irq(11, true);
        assert_eq!(pic.pending_vector(), Some(0x3b));
        pic.set_irq(11, false);
        assert_eq!(pic.pending_vector(), None);
        assert_eq!(pic.acknowledge(), 0x37);
        assert_eq!(pic.metrics().spurious_interrupts, 2);
    }

    #[test]
    fn level_triggered_lines_follow_the_line() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        outb(&mut pic, 0x4d1, 0x0e); // IRQ9-11 level
        assert_eq!(inb(&mut pic, 0x4d1), 0x0e);
        outb(&mut pic, 0xa1, 0xfd);
        pic.set_irq(9, true);
        assert_eq!(pic.acknowledge(), 0x39);
        assert_eq!(pic.slave().irr, 0x02, "still asserted, still requesting");
        outb(&mut pic, 0xa0, 0x20);
        outb(&mut pic, 0x20, 0x20);
        assert_eq!(pic.pending_vector(), Some(0x39), "redelivered after EOI");
        pic.set_irq(9, false);
        assert_eq!(pic.slave().irr, 0);
        assert_eq!(pic.pending_vector(), None);
        // An edge-triggered line keeps its latched request after it falls.
        outb(&mut pic, 0xa1, 0xef);
        pic.set_irq(12, true);
        pic.set_irq(12, false);
        assert_eq!(pic.pending_vector(), Some(0x3c));
        // ICW1.LTIM makes every line level-triggered.
        outb(&mut pic, 0x20, 0x19);
        outb(&mut pic, 0x21, 0x30);
        outb(&mut pic, 0x21, 0x04);
        outb(&mut pic, 0x21, 0x01);
        assert_eq!(pic.master().level_triggered, 0xff);
    }

    #[test]
    fn elcr_reserved_bits_stay_clear() {
        let mut pic = Pic8259Pair::new();
        outb(&mut pic, 0x4d0, 0xff);
        outb(&mut pic, 0x4d1, 0xff);
        assert_eq!(inb(&mut pic, 0x4d0), 0xf8);
        assert_eq!(inb(&mut pic, 0x4d1), 0xde);
        assert_eq!(pic.metrics().invalid_commands, 2);
        assert_eq!(pic.metrics().last_odd_port, Some(0x4d1));
        // A 16-bit access covers both registers.
        pic.write(0x4d0, 2, 0x0820, 0);
        assert_eq!(pic.read(0x4d0, 2, 0), 0x0820);
        assert_eq!(pic.metrics().bad_size, 2);
    }

    #[test]
    fn priority_order_with_auto_eoi_and_rotation() {
        let mut pic = Pic8259Pair::new();
        // Master only, automatic EOI with rotation.
        outb(&mut pic, 0x20, 0x13); // single, ICW4 needed
        outb(&mut pic, 0x21, 0x40);
        outb(&mut pic, 0x21, 0x03); // 8086, AEOI
        outb(&mut pic, 0x21, 0x00);
        assert_eq!(pic.metrics().odd_total(), 0);
        outb(&mut pic, 0x20, 0x80); // rotate in AEOI mode: set
        for line in [1, 3, 6] {
            pic.set_irq(line, true);
        }
        assert_eq!(pic.acknowledge(), 0x41);
        assert_eq!(pic.master().isr, 0, "automatic EOI");
        assert_eq!(pic.acknowledge(), 0x43);
        // IR3 is now lowest: IR4-7, then 0-3, so IR6 goes before IR0.
        pic.set_irq(0, true);
        assert_eq!(pic.acknowledge(), 0x46);
        assert_eq!(pic.acknowledge(), 0x40);
        assert_eq!(pic.acknowledge(), 0x47, "spurious");
        // Set priority: IR5 lowest, so IR6 is highest.
        outb(&mut pic, 0x20, 0xc5);
        outb(&mut pic, 0x20, 0x00); // rotate in AEOI mode: clear
        for line in [4, 6] {
            pic.set_irq(line, false);
            pic.set_irq(line, true);
        }
        assert_eq!(pic.acknowledge(), 0x46);
        assert_eq!(pic.acknowledge(), 0x44);
        // In single mode IR2 is a line of its own: the slave is not asked.
        assert_eq!(pic.master().vector_base, 0x40);
    }

    #[test]
    fn rotating_eois_and_special_mask_mode() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        outb(&mut pic, 0x21, 0x00);
        pic.set_irq(3, true);
        pic.set_irq(5, true);
        assert_eq!(pic.acknowledge(), 0x33);
        outb(&mut pic, 0x20, 0xa0); // rotate on non-specific EOI: IR3 lowest
        pic.set_irq(3, false);
        pic.set_irq(3, true);
        assert_eq!(pic.acknowledge(), 0x35, "IR5 now outranks IR3");
        outb(&mut pic, 0x20, 0xe5); // rotate on specific EOI 5
        assert_eq!(pic.master().isr, 0);
        assert_eq!(pic.acknowledge(), 0x33);

        // Special mask mode: masking the in-service IR3 lets the lower
        // priority IR4 through.
        outb(&mut pic, 0x20, 0xc7); // back to IR0 highest
        pic.set_irq(4, true);
        assert_eq!(pic.pending_vector(), None, "IR3 in service holds IR4 back");
        outb(&mut pic, 0x20, 0x68); // OCW3: set special mask mode
        outb(&mut pic, 0x21, 0x08);
        assert_eq!(pic.pending_vector(), Some(0x34));
        assert_eq!(pic.acknowledge(), 0x34);
        outb(&mut pic, 0x20, 0x64); // specific EOI 4
        outb(&mut pic, 0x20, 0x48); // OCW3: reset special mask mode
        outb(&mut pic, 0x21, 0x00);
        outb(&mut pic, 0x20, 0x63); // specific EOI 3
        assert_eq!(pic.master().isr, 0);
        assert_eq!(pic.metrics().odd_total(), 0);
    }

    #[test]
    fn poll_mode() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        outb(&mut pic, 0x21, 0x00);
        outb(&mut pic, 0x20, 0x0c); // OCW3: poll
        assert_eq!(inb(&mut pic, 0x20), 0x00, "nothing pending");
        pic.set_irq(6, true);
        outb(&mut pic, 0x20, 0x0c);
        assert_eq!(inb(&mut pic, 0x20), 0x86);
        assert_eq!(pic.master().isr, 0x40);
        assert_eq!(inb(&mut pic, 0x20), 0x00, "a poll is one read; this is IRR");
        outb(&mut pic, 0x20, 0x20);
        pic.set_irq(1, true);
        outb(&mut pic, 0x20, 0x0c);
        assert_eq!(inb(&mut pic, 0x21), 0x81, "the next read of either port");
        assert_eq!(inb(&mut pic, 0x21), 0x00, "IMR again");
    }

    #[test]
    fn odd_commands_are_counted() {
        let mut pic = Pic8259Pair::new();
        linux_init(&mut pic);
        outb(&mut pic, 0x20, 0x20); // EOI with nothing in service
        outb(&mut pic, 0x20, 0x63); // specific EOI of a level not in service
        outb(&mut pic, 0x20, 0x88); // OCW3 with its reserved bit set
        assert_eq!(pic.metrics().invalid_commands, 3);
        outb(&mut pic, 0x20, 0x40); // OCW2 no-op
        assert_eq!(pic.metrics().invalid_commands, 3);
        // SFNM, MCS-80 mode, a wrong cascade word, no ICW4.
        outb(&mut pic, 0x20, 0x11);
        outb(&mut pic, 0x21, 0x30);
        outb(&mut pic, 0x21, 0x08);
        outb(&mut pic, 0x21, 0x10);
        assert_eq!(pic.metrics().invalid_commands, 4);
        assert_eq!(pic.metrics().unsupported, 1);
        outb(&mut pic, 0xa0, 0x10);
        outb(&mut pic, 0xa1, 0x38);
        outb(&mut pic, 0xa1, 0x02);
        assert_eq!(pic.metrics().unsupported, 2);
        assert_eq!(inb(&mut pic, 0xa1), 0x00, "ICW1 cleared the mask; the sequence ended after ICW3");
        outb(&mut pic, 0xa1, 0xff);
        assert_eq!(inb(&mut pic, 0xa1), 0xff);
        pic.set_irq(2, true);
        pic.set_irq(16, true);
        assert_eq!(pic.metrics().invalid_commands, 6);
        assert_eq!(pic.master().irr, 0);
        assert_eq!(pic.read(0x20, 4, 0), 0xffff_0000, "IRR, IMR, then two ports off the device");
        assert_eq!(pic.metrics().bad_size, 1);
    }
}
