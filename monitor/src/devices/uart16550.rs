//! A 16550A UART, as COM1 on a PC (ports 0x3f8-0x3ff, IRQ4).
//!
//! Eight byte registers; offsets 0 and 1 are the divisor latch instead of
//! the data and interrupt-enable registers while LCR.DLAB is set. Offset 2
//! reads as the interrupt identification register and writes as the FIFO
//! control register.
//!
//! Transmission is instant: a byte written to THR goes straight to the
//! console ring, so LSR always shows THR and the transmitter empty.
//! Reception is flow-controlled from the host side: [`Uart16550::push_input`]
//! queues bytes in a bounded input queue, from which they move into the
//! receiver (a 16-byte FIFO, or the single holding register with FIFOs off)
//! as the guest makes room. The guest can therefore only overrun its
//! receiver in loopback mode, where it feeds it itself.
//!
//! The interrupt line is the UART's INTR gated by MCR.OUT2, as on a PC,
//! where OUT2 enables the IRQ buffer; in loopback OUT2 is forced inactive
//! at the pin, so the line is off (interrupts still show in IIR).
//! In FIFO mode, a receiver holding fewer bytes than the trigger level
//! reports the character-timeout interrupt straight away: no further byte
//! is on the wire, so the four character times of silence have passed.

use alloc::collections::VecDeque;
use core::ops::RangeInclusive;

use super::{ByteRegisters, ConsoleBuffer, DeviceMetrics};

/// COM1's I/O base.
pub const COM1_BASE: u16 = 0x3f8;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u8 = 4;

// Register offsets from the base.
const RBR_THR: u16 = 0; // receive buffer (read), transmit holding (write); DLL when DLAB
const IER: u16 = 1; // interrupt enable; DLM when DLAB
const IIR_FCR: u16 = 2; // interrupt identification (read), FIFO control (write)
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status (read-only)
const MSR: u16 = 6; // modem status (read-only)
const SCR: u16 = 7; // scratch

// IER bits.
const IER_RX_DATA: u8 = 0x01; // received data available
const IER_THR_EMPTY: u8 = 0x02; // transmit holding register empty
const IER_LINE_STATUS: u8 = 0x04; // receiver line status
const IER_MODEM_STATUS: u8 = 0x08; // modem status
const IER_WRITABLE: u8 = 0x0f; // bits 4-7 are reserved and read as 0

// IIR values: bit 0 clear means an interrupt is pending; bits 1-3 name it.
const IIR_NONE: u8 = 0x01; // no interrupt pending
const IIR_LINE_STATUS: u8 = 0x06; // highest priority: an error in LSR
const IIR_RX_DATA: u8 = 0x04; // receiver at its trigger level
const IIR_RX_TIMEOUT: u8 = 0x0c; // FIFO mode: data below the trigger level
const IIR_THR_EMPTY: u8 = 0x02; // transmit holding register empty
const IIR_MODEM_STATUS: u8 = 0x00; // lowest priority: a change in MSR
const IIR_FIFOS_ENABLED: u8 = 0xc0; // both bits set while FCR.0 is

// FCR bits.
const FCR_ENABLE: u8 = 0x01; // enable both FIFOs
const FCR_CLEAR_RX: u8 = 0x02; // empty the receive FIFO (self-clearing)
                               // Bit 2 empties the transmit FIFO: ours is always empty already.
const FCR_TRIGGER_SHIFT: u8 = 6; // bits 6-7: receive trigger level
const RX_TRIGGER_LEVELS: [usize; 4] = [1, 4, 8, 14];

const LCR_DLAB: u8 = 0x80; // divisor latch access

// MCR bits.
const MCR_DTR: u8 = 0x01; // data terminal ready
const MCR_RTS: u8 = 0x02; // request to send
const MCR_OUT1: u8 = 0x04; // user output 1
const MCR_OUT2: u8 = 0x08; // user output 2: the PC's IRQ enable
const MCR_LOOP: u8 = 0x10; // loopback
const MCR_WRITABLE: u8 = 0x1f; // bits 5-7 read as 0 on a 16550A

// LSR bits.
const LSR_DATA_READY: u8 = 0x01; // receiver holds data
const LSR_OVERRUN: u8 = 0x02; // a byte arrived with the receiver full
const LSR_THR_EMPTY: u8 = 0x20; // transmit holding register empty
const LSR_TX_EMPTY: u8 = 0x40; // transmitter completely idle

// MSR bits: deltas in the low nibble (cleared on read), inputs in the high.
const MSR_DELTA_CTS: u8 = 0x01; // CTS changed
const MSR_DELTA_DSR: u8 = 0x02; // DSR changed
const MSR_TRAILING_RI: u8 = 0x04; // RI went from on to off
const MSR_DELTA_DCD: u8 = 0x08; // DCD changed
const MSR_CTS: u8 = 0x10; // clear to send
const MSR_DSR: u8 = 0x20; // data set ready
const MSR_RI: u8 = 0x40; // ring indicator
const MSR_DCD: u8 = 0x80; // data carrier detect
/// What the other end of the (virtual) cable shows: connected and ready.
const MSR_PEER_READY: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

const FIFO_DEPTH: usize = 16;
/// The divisor a PC BIOS programs: 115200 / 12 = 9600 baud.
const RESET_DIVISOR: u16 = 12;

/// A 16550A UART with a console sink and a host input queue.
#[derive(Debug, Clone)]
pub struct Uart16550 {
    ports: [RangeInclusive<u16>; 1],
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    divisor: u16,
    fifos_enabled: bool,
    rx_trigger: usize,
    /// LSR error bits waiting to be read.
    line_errors: u8,
    /// MSR delta bits waiting to be read.
    modem_deltas: u8,
    /// The THR-empty interrupt is pending: raised when THR empties (or when
    /// ETBEI is enabled while it is empty), cleared by reading IIR while it
    /// is the reason shown, or by writing THR.
    thr_empty_pending: bool,
    /// The receiver: 16 bytes deep with FIFOs on, one without.
    rx: VecDeque<u8>,
    /// Host input not yet in the receiver.
    input: VecDeque<u8>,
    input_capacity: usize,
    console: ConsoleBuffer,
    metrics: DeviceMetrics,
}

impl Uart16550 {
    /// A UART at `base` in its reset state, whose output goes to a console
    /// ring of `console_capacity` bytes and whose host input queue holds up
    /// to `input_capacity` bytes.
    pub fn new(base: u16, console_capacity: usize, input_capacity: usize) -> Self {
        Self {
            ports: [base..=base.saturating_add(7)],
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            divisor: RESET_DIVISOR,
            fifos_enabled: false,
            rx_trigger: 1,
            line_errors: 0,
            modem_deltas: 0,
            thr_empty_pending: false,
            rx: VecDeque::with_capacity(FIFO_DEPTH),
            input: VecDeque::new(),
            input_capacity,
            console: ConsoleBuffer::new(console_capacity),
            metrics: DeviceMetrics::default(),
        }
    }

    /// Everything the guest transmitted (outside loopback).
    pub fn console(&self) -> &ConsoleBuffer {
        &self.console
    }

    /// Queues host input for the guest to receive. Returns how many bytes
    /// were taken; the rest did not fit and are counted as overruns.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.input_capacity.saturating_sub(self.input.len());
        let taken = room.min(bytes.len());
        self.input.extend(&bytes[..taken]);
        self.metrics.overruns += (bytes.len() - taken) as u64;
        self.refill_receiver();
        taken
    }

    /// Host input still waiting, in the queue and in the receiver.
    pub fn pending_input(&self) -> usize {
        self.input.len() + self.rx.len()
    }

    /// The level of the interrupt line towards the PIC.
    pub fn irq_level(&self) -> bool {
        self.mcr & (MCR_OUT2 | MCR_LOOP) == MCR_OUT2 && self.interrupt_id() != IIR_NONE
    }

    /// The programmed divisor of the 115200 Hz baud clock.
    pub fn divisor(&self) -> u16 {
        self.divisor
    }

    fn base(&self) -> u16 {
        *self.ports[0].start()
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn receiver_depth(&self) -> usize {
        if self.fifos_enabled {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// Moves host input into the receiver while it has room. In loopback
    /// the receiver is cut off from the serial input, so input waits.
    fn refill_receiver(&mut self) {
        if self.loopback() {
            return;
        }
        while self.rx.len() < self.receiver_depth() {
            match self.input.pop_front() {
                Some(byte) => self.rx.push_back(byte),
                None => break,
            }
        }
    }

    /// The modem-status inputs: in loopback they are wired to the modem
    /// control outputs (RTS to CTS, DTR to DSR, OUT1 to RI, OUT2 to DCD),
    /// which is how Linux probes for a real UART.
    fn modem_inputs(&self) -> u8 {
        if !self.loopback() {
            return MSR_PEER_READY;
        }
        let mut inputs = 0;
        for (output, input) in [(MCR_RTS, MSR_CTS), (MCR_DTR, MSR_DSR), (MCR_OUT1, MSR_RI), (MCR_OUT2, MSR_DCD)] {
            if self.mcr & output != 0 {
                inputs |= input;
            }
        }
        inputs
    }

    /// The highest-priority pending interrupt, in IIR's encoding (without
    /// the FIFO bits).
    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_LINE_STATUS != 0 && self.line_errors != 0 {
            IIR_LINE_STATUS
        } else if self.ier & IER_RX_DATA != 0 && !self.rx.is_empty() {
            if self.fifos_enabled && self.rx.len() < self.rx_trigger {
                IIR_RX_TIMEOUT
            } else {
                IIR_RX_DATA
            }
        } else if self.ier & IER_THR_EMPTY != 0 && self.thr_empty_pending {
            IIR_THR_EMPTY
        } else if self.ier & IER_MODEM_STATUS != 0 && self.modem_deltas != 0 {
            IIR_MODEM_STATUS
        } else {
            IIR_NONE
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.loopback() {
            if self.rx.len() < self.receiver_depth() {
                self.rx.push_back(byte);
            } else {
                self.line_errors |= LSR_OVERRUN;
                self.metrics.overruns += 1;
            }
        } else {
            self.console.push(byte);
        }
        // Writing THR clears its interrupt; the byte leaves at once, so THR
        // is empty again and the interrupt comes back if still enabled.
        self.thr_empty_pending = self.ier & IER_THR_EMPTY != 0;
    }

    fn write_ier(&mut self, value: u8) {
        if value & !IER_WRITABLE != 0 {
            self.metrics.note_invalid_command(self.base().wrapping_add(IER));
        }
        let value = value & IER_WRITABLE;
        let newly_enabled = value & !self.ier;
        self.ier = value;
        if value & IER_THR_EMPTY == 0 {
            self.thr_empty_pending = false;
        } else if newly_enabled & IER_THR_EMPTY != 0 {
            // THR is always empty, so enabling its interrupt raises it.
            self.thr_empty_pending = true;
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_ENABLE != 0;
        if enable != self.fifos_enabled {
            // Switching the FIFOs on or off empties them.
            self.rx.clear();
            self.fifos_enabled = enable;
        }
        if enable {
            if value & FCR_CLEAR_RX != 0 {
                self.rx.clear();
            }
            self.rx_trigger = RX_TRIGGER_LEVELS[usize::from(value >> FCR_TRIGGER_SHIFT)];
        } else {
            self.rx_trigger = 1;
        }
        self.refill_receiver();
    }

    fn write_mcr(&mut self, value: u8) {
        if value & !MCR_WRITABLE != 0 {
            self.metrics.note_invalid_command(self.base().wrapping_add(MCR));
        }
        let before = self.modem_inputs();
        self.mcr = value & MCR_WRITABLE;
        let after = self.modem_inputs();
        let changed = before ^ after;
        if changed & MSR_CTS != 0 {
            self.modem_deltas |= MSR_DELTA_CTS;
        }
        if changed & MSR_DSR != 0 {
            self.modem_deltas |= MSR_DELTA_DSR;
        }
        if before & !after & MSR_RI != 0 {
            self.modem_deltas |= MSR_TRAILING_RI;
        }
        if changed & MSR_DCD != 0 {
            self.modem_deltas |= MSR_DELTA_DCD;
        }
        // Leaving loopback reconnects the serial input.
        self.refill_receiver();
    }
}

impl ByteRegisters for Uart16550 {
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
        let dlab = self.lcr & LCR_DLAB != 0;
        match port.wrapping_sub(self.base()) {
            RBR_THR if dlab => self.divisor as u8,
            RBR_THR => {
                // An empty receiver reads as 0, as Linux's startup expects
                // when it drains RBR.
                let byte = self.rx.pop_front().unwrap_or(0);
                self.refill_receiver();
                byte
            }
            IER if dlab => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR_FCR => {
                let id = self.interrupt_id();
                if id == IIR_THR_EMPTY {
                    self.thr_empty_pending = false;
                }
                let fifo_bits = if self.fifos_enabled { IIR_FIFOS_ENABLED } else { 0 };
                fifo_bits | id
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let data_ready = if self.rx.is_empty() { 0 } else { LSR_DATA_READY };
                let value = data_ready | self.line_errors | LSR_THR_EMPTY | LSR_TX_EMPTY;
                self.line_errors = 0;
                value
            }
            MSR => {
                let value = self.modem_inputs() | self.modem_deltas;
                self.modem_deltas = 0;
                value
            }
            SCR => self.scr,
            _ => {
                self.metrics.note_invalid_command(port);
                0xff
            }
        }
    }

    fn write_byte(&mut self, port: u16, byte: u8, _now_ns: u64) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match port.wrapping_sub(self.base()) {
            RBR_THR if dlab => self.divisor = (self.divisor & 0xff00) | u16::from(byte),
            RBR_THR => self.transmit(byte),
            IER if dlab => self.divisor = (self.divisor & 0x00ff) | (u16::from(byte) << 8),
            IER => self.write_ier(byte),
            IIR_FCR => self.write_fcr(byte),
            LCR => self.lcr = byte,
            MCR => self.write_mcr(byte),
            // LSR and MSR writes are the chip's factory test; ignore them.
            LSR | MSR => self.metrics.note_wrong_direction(port),
            SCR => self.scr = byte,
            _ => self.metrics.note_invalid_command(port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::PortDevice;

    const THR: u16 = 0x3f8;
    const RBR: u16 = 0x3f8;
    const DLL: u16 = 0x3f8;
    const DLM: u16 = 0x3f9;
    const IER_PORT: u16 = 0x3f9;
    const IIR: u16 = 0x3fa;
    const FCR: u16 = 0x3fa;
    const LCR_PORT: u16 = 0x3fb;
    const MCR_PORT: u16 = 0x3fc;
    const LSR_PORT: u16 = 0x3fd;
    const MSR_PORT: u16 = 0x3fe;
    const SCR_PORT: u16 = 0x3ff;

    fn com1() -> Uart16550 {
        Uart16550::new(COM1_BASE, 64, 32)
    }

    fn inb(uart: &mut Uart16550, port: u16) -> u8 {
        let value = uart.read(port, 1, 0);
        assert!(value <= 0xff);
        value as u8
    }

    fn outb(uart: &mut Uart16550, port: u16, value: u8) {
        uart.write(port, 1, u32::from(value), 0);
    }

    #[test]
    fn reset_state() {
        let mut uart = com1();
        assert_eq!(inb(&mut uart, IER_PORT), 0);
        assert_eq!(inb(&mut uart, IIR), 0x01);
        assert_eq!(inb(&mut uart, LCR_PORT), 0);
        assert_eq!(inb(&mut uart, MCR_PORT), 0);
        assert_eq!(inb(&mut uart, LSR_PORT), 0x60);
        assert_eq!(inb(&mut uart, MSR_PORT), 0xb0);
        assert_eq!(inb(&mut uart, SCR_PORT), 0);
        assert_eq!(uart.divisor(), 12);
        assert!(!uart.irq_level());
        assert_eq!(uart.ports(), &[0x3f8..=0x3ff]);
        assert_eq!(uart.metrics().odd_total(), 0);
    }

    /// The sequence of Linux's 8250 `autoconfig()`, register by register,
    /// with the answers a 16550A gives.
    #[test]
    fn linux_autoconfig_finds_a_16550a() {
        let mut uart = com1();
        // IER test: write 0, read 0; write 0x0f, read 0x0f.
        let saved_ier = inb(&mut uart, IER_PORT);
        outb(&mut uart, IER_PORT, 0);
        assert_eq!(inb(&mut uart, IER_PORT) & 0x0f, 0);
        outb(&mut uart, IER_PORT, 0x0f);
        assert_eq!(inb(&mut uart, IER_PORT) & 0x0f, 0x0f);
        outb(&mut uart, IER_PORT, saved_ier);

        // Loopback test: MCR = LOOP | OUT2 | RTS shows DCD | CTS in MSR.
        let saved_mcr = inb(&mut uart, MCR_PORT);
        outb(&mut uart, MCR_PORT, 0x1a);
        assert_eq!(inb(&mut uart, MSR_PORT) & 0xf0, 0x90);
        outb(&mut uart, MCR_PORT, saved_mcr);

        // EFR probe (LCR = 0xbf makes offset 2 the EFR on a 16650; on a
        // 16550A it is FCR), then FIFO enable and IIR bits 6-7.
        outb(&mut uart, LCR_PORT, 0xbf);
        outb(&mut uart, FCR, 0);
        outb(&mut uart, LCR_PORT, 0);
        outb(&mut uart, FCR, 0x01);
        assert_eq!(inb(&mut uart, IIR) >> 6, 3, "FIFOs work: a 16550A");

        // autoconfig_16550a: no EFR with DLAB set or with LCR = 0xbf.
        outb(&mut uart, LCR_PORT, 0x80);
        assert_ne!(inb(&mut uart, IIR), 0);
        outb(&mut uart, LCR_PORT, 0xbf);
        assert_ne!(inb(&mut uart, IIR), 0);
        // No National Semiconductor bank switching: MCR.LOOP does not show
        // through offset 2 with LCR = 0xe0.
        outb(&mut uart, LCR_PORT, 0);
        let status1 = inb(&mut uart, MCR_PORT);
        outb(&mut uart, LCR_PORT, 0xe0);
        let status2 = inb(&mut uart, IIR);
        assert_eq!((status1 ^ status2) & 0x10, 0);
        outb(&mut uart, LCR_PORT, 0);
        outb(&mut uart, MCR_PORT, status1 ^ 0x10);
        outb(&mut uart, LCR_PORT, 0xe0);
        let status2 = inb(&mut uart, IIR);
        outb(&mut uart, LCR_PORT, 0);
        outb(&mut uart, MCR_PORT, status1);
        assert_eq!((status1 ^ status2) & 0x10, 0, "not a National Semiconductor SuperIO");

        // Not a TI16750: IIR bit 5 stays clear with and without DLAB.
        outb(&mut uart, FCR, 0x21);
        assert_eq!(inb(&mut uart, IIR) >> 5, 6);
        outb(&mut uart, FCR, 0x01);
        outb(&mut uart, LCR_PORT, 0x80);
        outb(&mut uart, FCR, 0x21);
        assert_eq!(inb(&mut uart, IIR) >> 5, 6);
        outb(&mut uart, FCR, 0x01);
        outb(&mut uart, LCR_PORT, 0);

        // Not an XScale UART: IER bit 6 does not stick.
        let saved_ier = inb(&mut uart, IER_PORT);
        outb(&mut uart, IER_PORT, saved_ier & !0x40);
        assert_eq!(inb(&mut uart, IER_PORT) & 0x40, 0);
        outb(&mut uart, IER_PORT, saved_ier | 0x40);
        assert_eq!(inb(&mut uart, IER_PORT) & 0x40, 0);
        outb(&mut uart, IER_PORT, saved_ier);

        // Reset: restore MCR, clear the FIFOs, drain RBR, IER = 0.
        outb(&mut uart, MCR_PORT, saved_mcr);
        outb(&mut uart, FCR, 0x01);
        outb(&mut uart, FCR, 0x07);
        outb(&mut uart, FCR, 0);
        assert_eq!(inb(&mut uart, RBR), 0);
        outb(&mut uart, IER_PORT, 0);
        assert_eq!(inb(&mut uart, IIR), 0x01);
        // The probe's loopback changed the modem inputs and back.
        assert_eq!(inb(&mut uart, MSR_PORT), 0xb0 | 0x0b);
        assert_eq!(inb(&mut uart, MSR_PORT), 0xb0);
        // Only the XScale probe's reserved IER bit was odd.
        assert_eq!(uart.metrics().invalid_commands, 1);
        assert_eq!(uart.metrics().last_odd_port, Some(0x3f9));
    }

    /// `serial8250_do_startup()`'s THRE test: a working UART raises THRE
    /// each time ETBEI is enabled, and reading IIR clears it.
    #[test]
    fn thre_is_reasserted_when_etbei_is_enabled_again() {
        let mut uart = com1();
        outb(&mut uart, MCR_PORT, MCR_DTR | MCR_RTS | MCR_OUT2);
        outb(&mut uart, IER_PORT, IER_THR_EMPTY);
        assert!(uart.irq_level());
        assert_eq!(inb(&mut uart, IIR), 0x02);
        assert!(!uart.irq_level(), "reading IIR cleared THRE");
        assert_eq!(inb(&mut uart, IIR), 0x01);
        outb(&mut uart, IER_PORT, 0);
        outb(&mut uart, IER_PORT, IER_THR_EMPTY);
        assert_eq!(inb(&mut uart, IIR), 0x02);
        outb(&mut uart, IER_PORT, 0);
        assert_eq!(inb(&mut uart, IIR), 0x01);
        // Writing ETBEI again while it is already on raises nothing new.
        outb(&mut uart, IER_PORT, IER_THR_EMPTY);
        assert_eq!(inb(&mut uart, IIR), 0x02);
        outb(&mut uart, IER_PORT, IER_THR_EMPTY);
        assert_eq!(inb(&mut uart, IIR), 0x01);
    }

    /// Linux's interrupt-driven transmit: start_tx enables ETBEI, the
    /// handler writes bytes to THR, each THR empties at once and THRE comes
    /// back, until stop_tx disables ETBEI.
    #[test]
    fn interrupt_driven_transmit() {
        let mut uart = com1();
        outb(&mut uart, LCR_PORT, 0x80);
        outb(&mut uart, DLL, 0x01);
        outb(&mut uart, DLM, 0x00);
        outb(&mut uart, LCR_PORT, 0x03);
        assert_eq!(uart.divisor(), 1);
        outb(&mut uart, FCR, 0xc7);
        outb(&mut uart, MCR_PORT, 0x0b);
        outb(&mut uart, IER_PORT, IER_RX_DATA | IER_THR_EMPTY);
        assert!(uart.irq_level());
        assert_eq!(inb(&mut uart, IIR), 0xc2);
        assert!(!uart.irq_level());
        assert_eq!(inb(&mut uart, LSR_PORT), 0x60);
        for &byte in b"hi\n" {
            outb(&mut uart, THR, byte);
        }
        assert!(uart.irq_level(), "THR emptied again");
        assert_eq!(inb(&mut uart, IIR), 0xc2);
        outb(&mut uart, IER_PORT, IER_RX_DATA);
        assert!(!uart.irq_level());
        assert_eq!(uart.console().to_vec_from(0).1, b"hi\n");
        assert_eq!(uart.metrics().odd_total(), 0);
    }

    #[test]
    fn receive_without_fifos_one_byte_at_a_time() {
        let mut uart = com1();
        outb(&mut uart, MCR_PORT, MCR_OUT2);
        outb(&mut uart, IER_PORT, IER_RX_DATA);
        assert_eq!(uart.push_input(b"ab"), 2);
        assert!(uart.irq_level());
        assert_eq!(inb(&mut uart, IIR), 0x04);
        assert_eq!(inb(&mut uart, LSR_PORT), 0x61);
        assert_eq!(inb(&mut uart, RBR), b'a');
        assert_eq!(inb(&mut uart, LSR_PORT), 0x61, "the next byte moved into RBR");
        assert_eq!(inb(&mut uart, RBR), b'b');
        assert_eq!(inb(&mut uart, LSR_PORT), 0x60);
        assert_eq!(inb(&mut uart, IIR), 0x01);
        assert!(!uart.irq_level());
        assert_eq!(uart.pending_input(), 0);
    }

    #[test]
    fn receive_with_fifos_trigger_level_and_timeout() {
        let mut uart = com1();
        outb(&mut uart, FCR, 0x81); // FIFOs on, trigger at 8 bytes
        outb(&mut uart, MCR_PORT, MCR_OUT2);
        outb(&mut uart, IER_PORT, IER_RX_DATA);
        uart.push_input(b"0123");
        assert_eq!(inb(&mut uart, IIR), 0xcc, "below the trigger level: character timeout");
        uart.push_input(b"456789abcdefghij");
        assert_eq!(uart.pending_input(), 20);
        assert_eq!(inb(&mut uart, IIR), 0xc4, "the receiver reached its trigger level");
        let mut received = alloc::vec::Vec::new();
        while inb(&mut uart, LSR_PORT) & LSR_DATA_READY != 0 {
            received.push(inb(&mut uart, RBR));
        }
        assert_eq!(received, b"0123456789abcdefghij");
        assert_eq!(inb(&mut uart, IIR), 0xc1);
        assert!(!uart.irq_level());
    }

    #[test]
    fn the_input_queue_is_bounded() {
        let mut uart = com1();
        let long = [b'x'; 40];
        // 32 bytes of queue, of which one moves into RBR at once.
        assert_eq!(uart.push_input(&long), 32);
        assert_eq!(uart.metrics().overruns, 8);
        assert_eq!(uart.push_input(b"y"), 1, "RBR took a byte, so the queue has room for one");
        assert_eq!(uart.push_input(b"z"), 0);
        assert_eq!(uart.metrics().overruns, 9);
        assert_eq!(uart.pending_input(), 33);
    }

    #[test]
    fn clearing_the_receive_fifo_drops_its_bytes() {
        let mut uart = com1();
        outb(&mut uart, FCR, 0x01);
        uart.push_input(b"abcdefghijklmnopqrs");
        outb(&mut uart, FCR, 0x03);
        // The 16 bytes that were in the FIFO are gone; the rest moved in.
        assert_eq!(inb(&mut uart, RBR), b'q');
        assert_eq!(inb(&mut uart, RBR), b'r');
        assert_eq!(inb(&mut uart, RBR), b's');
        assert_eq!(inb(&mut uart, LSR_PORT), 0x60);
    }

    #[test]
    fn loopback_routes_tx_to_rx_and_overruns_the_receiver() {
        let mut uart = com1();
        uart.push_input(b"host");
        outb(&mut uart, RBR, 0); // a THR write of 0 to the console
        assert_eq!(inb(&mut uart, RBR), b'h');
        outb(&mut uart, MCR_PORT, MCR_LOOP | MCR_OUT2);
        assert_eq!(inb(&mut uart, RBR), b'o', "RBR held the next byte before loopback");
        assert_eq!(inb(&mut uart, LSR_PORT), 0x60, "host input waits while in loopback");
        outb(&mut uart, IER_PORT, IER_RX_DATA | IER_LINE_STATUS);
        outb(&mut uart, THR, 0x55);
        assert_eq!(inb(&mut uart, IIR), 0x04);
        assert!(!uart.irq_level(), "OUT2 is forced off at the pin in loopback");
        outb(&mut uart, THR, 0x66);
        assert_eq!(uart.metrics().overruns, 1);
        assert_eq!(inb(&mut uart, IIR), 0x06, "the overrun outranks the data");
        assert_eq!(inb(&mut uart, LSR_PORT), 0x63);
        assert_eq!(inb(&mut uart, LSR_PORT), 0x61, "reading LSR cleared the overrun");
        assert_eq!(inb(&mut uart, RBR), 0x55);
        outb(&mut uart, MCR_PORT, MCR_OUT2);
        assert_eq!(inb(&mut uart, RBR), b's', "host input flows again");
        assert_eq!(uart.console().to_vec_from(0).1, [0]);
    }

    #[test]
    fn loopback_modem_status_and_its_interrupt() {
        let mut uart = com1();
        outb(&mut uart, MCR_PORT, MCR_LOOP);
        // All four inputs dropped when loopback cut off the peer.
        assert_eq!(inb(&mut uart, MSR_PORT), 0x0b);
        outb(&mut uart, IER_PORT, IER_MODEM_STATUS);
        outb(&mut uart, MCR_PORT, MCR_LOOP | MCR_DTR | MCR_OUT1);
        assert_eq!(inb(&mut uart, IIR), 0x00, "modem status interrupt");
        assert_eq!(inb(&mut uart, MSR_PORT), MSR_DSR | MSR_RI | MSR_DELTA_DSR);
        assert_eq!(inb(&mut uart, IIR), 0x01);
        outb(&mut uart, MCR_PORT, MCR_LOOP | MCR_DTR);
        assert_eq!(inb(&mut uart, MSR_PORT), MSR_DSR | MSR_TRAILING_RI);
        outb(&mut uart, MCR_PORT, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2);
        assert_eq!(inb(&mut uart, MSR_PORT), 0xb0 | MSR_DELTA_CTS | MSR_DELTA_DCD);
    }

    #[test]
    fn dlab_switches_offsets_0_and_1_to_the_divisor() {
        let mut uart = com1();
        outb(&mut uart, IER_PORT, 0x05);
        outb(&mut uart, LCR_PORT, 0x83);
        assert_eq!(inb(&mut uart, DLL), 12);
        assert_eq!(inb(&mut uart, DLM), 0);
        outb(&mut uart, DLL, 0x80);
        outb(&mut uart, DLM, 0x01);
        assert_eq!(uart.divisor(), 0x180);
        assert_eq!(uart.console().end_offset(), 0, "a DLL write is no transmission");
        outb(&mut uart, LCR_PORT, 0x03);
        assert_eq!(inb(&mut uart, IER_PORT), 0x05);
        assert_eq!(inb(&mut uart, LCR_PORT), 0x03);
    }

    #[test]
    fn odd_accesses_are_counted() {
        let mut uart = com1();
        outb(&mut uart, LSR_PORT, 0);
        outb(&mut uart, MSR_PORT, 0);
        assert_eq!(uart.metrics().wrong_direction, 2);
        outb(&mut uart, MCR_PORT, 0xff);
        assert_eq!(inb(&mut uart, MCR_PORT), 0x1f);
        assert_eq!(uart.metrics().invalid_commands, 1);
        outb(&mut uart, MCR_PORT, 0);
        outb(&mut uart, SCR_PORT, 0x5a);
        // A 16-bit read of LSR and MSR is two byte cycles (RI fell when
        // loopback ended).
        assert_eq!(uart.read(LSR_PORT, 2, 0), 0xb460);
        // A 16-bit read at the last port: the second byte is off the device.
        assert_eq!(uart.read(SCR_PORT, 2, 0), 0xff5a);
        // A 16-bit write of the divisor latch.
        outb(&mut uart, LCR_PORT, 0x80);
        uart.write(DLL, 2, 0x0203, 0);
        assert_eq!(uart.divisor(), 0x0203);
        assert_eq!(uart.read(DLL, 3, 0), 0xffff_ffff);
        uart.write(DLL, 0, 0, 0);
        assert_eq!(uart.divisor(), 0x0203);
        assert_eq!(uart.metrics().bad_size, 5);
        // Called directly with a port it does not decode.
        assert_eq!(uart.read(0x400, 1, 0), 0xff);
        uart.write(0x3f0, 1, 0, 0);
        assert_eq!(uart.metrics().invalid_commands, 3);
        assert_eq!(uart.metrics().last_odd_port, Some(0x3f0));
    }
}
