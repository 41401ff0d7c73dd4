//! A 16550A UART as Linux's 8250 driver and the test kernels' polled
//! console use it. Transmitted bytes leave at once (the transmitter is
//! always empty), so the only interrupt that matters is "THR empty"; there
//! is no input from the host, except the loopback the 8250 probe uses.

use std::collections::VecDeque;

/// Register offsets from the base port (DLAB = 0 unless noted).
const DATA: u16 = 0; // RBR (read) / THR (write); DLL with DLAB
const INTERRUPT_ENABLE: u16 = 1; // IER; DLM with DLAB
const INTERRUPT_ID: u16 = 2; // IIR (read) / FCR (write)
const LINE_CONTROL: u16 = 3; // LCR
const MODEM_CONTROL: u16 = 4; // MCR
const LINE_STATUS: u16 = 5; // LSR
const MODEM_STATUS: u16 = 6; // MSR
const SCRATCH: u16 = 7; // SCR

const IER_RECEIVED_DATA: u8 = 0x01; // ERBFI
const IER_THR_EMPTY: u8 = 0x02; // ETBEI
/// IER keeps only its four defined bits: the 8250 probe checks that.
const IER_MASK: u8 = 0x0f;

const IIR_NONE: u8 = 0x01; // no interrupt pending
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RECEIVED_DATA: u8 = 0x04;
const IIR_FIFOS_ENABLED: u8 = 0xc0; // what makes the probe say "16550A"

const FCR_ENABLE_FIFOS: u8 = 0x01;
const FCR_CLEAR_RECEIVER: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

const MCR_LOOPBACK: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TRANSMITTER_EMPTY: u8 = 0x40;

/// Outside loopback: carrier, data set ready and clear to send, as a
/// connected terminal would show them.
const MSR_CONNECTED: u8 = 0xb0;

/// The receive FIFO's depth; loopback bytes beyond it are dropped.
const RX_FIFO_BYTES: usize = 16;

/// Guest accesses that a real UART would ignore, counted instead of
/// dropped silently.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SerialMetrics {
    /// Writes to read-only registers (LSR, MSR).
    pub read_only_writes: u64,
    /// Loopback bytes that found the receive FIFO full.
    pub rx_overruns: u64,
}

#[derive(Debug)]
pub struct Serial {
    interrupt_enable: u8,
    fifo_control: u8,
    line_control: u8,
    modem_control: u8,
    scratch: u8,
    divisor: u16,
    /// Set when THR becomes empty, cleared when the guest reads IIR while
    /// it says so or writes THR: the 16550's THRE interrupt protocol.
    thr_empty_pending: bool,
    rx: VecDeque<u8>,
    /// Bytes the guest sent, for the caller to take.
    tx: Vec<u8>,
    pub metrics: SerialMetrics,
}

impl Default for Serial {
    fn default() -> Self {
        Self {
            interrupt_enable: 0,
            fifo_control: 0,
            line_control: 0,
            modem_control: 0,
            scratch: 0,
            divisor: 12, // 9600 baud, the power-on value
            thr_empty_pending: false,
            rx: VecDeque::new(),
            tx: Vec::new(),
            metrics: SerialMetrics::default(),
        }
    }
}

impl Serial {
    pub fn new() -> Self {
        Self::default()
    }

    fn dlab(&self) -> bool {
        self.line_control & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.modem_control & MCR_LOOPBACK != 0
    }

    /// A read of the register at `offset` from the base port.
    pub fn read(&mut self, offset: u16) -> u8 {
        match offset {
            DATA if self.dlab() => self.divisor as u8,
            DATA => self.rx.pop_front().unwrap_or(0),
            INTERRUPT_ENABLE if self.dlab() => (self.divisor >> 8) as u8,
            INTERRUPT_ENABLE => self.interrupt_enable,
            INTERRUPT_ID => {
                let id = self.interrupt_id();
                // Reading IIR while it reports THRE acknowledges it.
                if id == IIR_THR_EMPTY {
                    self.thr_empty_pending = false;
                }
                id | self.fifo_bits()
            }
            LINE_CONTROL => self.line_control,
            MODEM_CONTROL => self.modem_control,
            LINE_STATUS => {
                let ready = if self.rx.is_empty() { 0 } else { LSR_DATA_READY };
                LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY | ready
            }
            MODEM_STATUS if self.loopback() => loopback_modem_status(self.modem_control),
            MODEM_STATUS => MSR_CONNECTED,
            SCRATCH => self.scratch,
            _ => 0xff,
        }
    }

    /// A write of `value` to the register at `offset` from the base port.
    pub fn write(&mut self, offset: u16, value: u8) {
        match offset {
            DATA if self.dlab() => self.divisor = (self.divisor & 0xff00) | u16::from(value),
            DATA => {
                if self.loopback() {
                    if self.rx.len() < RX_FIFO_BYTES {
                        self.rx.push_back(value);
                    } else {
                        self.metrics.rx_overruns += 1;
                    }
                } else {
                    self.tx.push(value);
                }
                // The byte leaves at once, so THR is empty again right away.
                self.thr_empty_pending = true;
            }
            INTERRUPT_ENABLE if self.dlab() => self.divisor = (self.divisor & 0x00ff) | (u16::from(value) << 8),
            INTERRUPT_ENABLE => {
                let enabling_thre = value & IER_THR_EMPTY != 0 && self.interrupt_enable & IER_THR_EMPTY == 0;
                self.interrupt_enable = value & IER_MASK;
                // Enabling ETBEI with THR empty raises THRE at once; Linux's
                // 8250 driver checks exactly that before trusting the UART.
                if enabling_thre {
                    self.thr_empty_pending = true;
                }
            }
            INTERRUPT_ID => {
                self.fifo_control = value & FCR_ENABLE_FIFOS;
                if value & FCR_CLEAR_RECEIVER != 0 {
                    self.rx.clear();
                }
            }
            LINE_CONTROL => self.line_control = value,
            MODEM_CONTROL => self.modem_control = value & MCR_MASK,
            SCRATCH => self.scratch = value,
            _ => self.metrics.read_only_writes += 1,
        }
    }

    /// Whether the UART asserts its interrupt line.
    pub fn interrupt_line(&self) -> bool {
        self.interrupt_id() != IIR_NONE
    }

    /// The bytes sent since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.tx)
    }

    /// The highest-priority pending interrupt, as IIR's low bits say it.
    fn interrupt_id(&self) -> u8 {
        if self.interrupt_enable & IER_RECEIVED_DATA != 0 && !self.rx.is_empty() {
            IIR_RECEIVED_DATA
        } else if self.interrupt_enable & IER_THR_EMPTY != 0 && self.thr_empty_pending {
            IIR_THR_EMPTY
        } else {
            IIR_NONE
        }
    }

    fn fifo_bits(&self) -> u8 {
        if self.fifo_control & FCR_ENABLE_FIFOS != 0 {
            IIR_FIFOS_ENABLED
        } else {
            0
        }
    }
}

/// In loopback the modem outputs feed the modem inputs: DTR to DSR, RTS to
/// CTS, OUT1 to RI, OUT2 to DCD.
fn loopback_modem_status(modem_control: u8) -> u8 {
    let dtr = modem_control & 0x01;
    let rts = (modem_control >> 1) & 0x01;
    let out1 = (modem_control >> 2) & 0x01;
    let out2 = (modem_control >> 3) & 0x01;
    (rts << 4) | (dtr << 5) | (out1 << 6) | (out2 << 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_to_thr_are_output_in_order() {
        let mut serial = Serial::new();
        for byte in b"hi\n" {
            assert_eq!(serial.read(LINE_STATUS) & LSR_THR_EMPTY, LSR_THR_EMPTY);
            serial.write(DATA, *byte);
        }
        assert_eq!(serial.take_output(), b"hi\n");
        assert!(serial.take_output().is_empty(), "output is handed out once");
    }

    #[test]
    fn the_divisor_latch_is_separate_from_the_data_registers() {
        let mut serial = Serial::new();
        serial.write(LINE_CONTROL, LCR_DLAB | 0x03);
        serial.write(DATA, 0x01);
        serial.write(INTERRUPT_ENABLE, 0x00);
        assert_eq!((serial.read(DATA), serial.read(INTERRUPT_ENABLE)), (0x01, 0x00));
        serial.write(LINE_CONTROL, 0x03);
        assert!(serial.take_output().is_empty(), "a divisor write is not a byte sent");
        assert_eq!(serial.read(INTERRUPT_ENABLE), 0);
        assert_eq!(serial.divisor, 1);
    }

    #[test]
    fn ier_keeps_its_four_bits_and_the_scratch_register_holds_a_byte() {
        // Linux's autoconfig writes 0x0f to IER and expects it back.
        let mut serial = Serial::new();
        serial.write(INTERRUPT_ENABLE, 0xff);
        assert_eq!(serial.read(INTERRUPT_ENABLE), 0x0f);
        serial.write(SCRATCH, 0xa5);
        assert_eq!(serial.read(SCRATCH), 0xa5);
    }

    #[test]
    fn enabled_fifos_show_in_iir_as_a_16550a() {
        let mut serial = Serial::new();
        assert_eq!(serial.read(INTERRUPT_ID), IIR_NONE);
        serial.write(INTERRUPT_ID, 0xc7);
        assert_eq!(serial.read(INTERRUPT_ID), IIR_FIFOS_ENABLED | IIR_NONE);
    }

    #[test]
    fn enabling_the_thre_interrupt_raises_it_and_reading_iir_acknowledges_it() {
        let mut serial = Serial::new();
        assert!(!serial.interrupt_line());
        serial.write(INTERRUPT_ENABLE, IER_THR_EMPTY);
        assert!(serial.interrupt_line());
        assert_eq!(serial.read(INTERRUPT_ID), IIR_THR_EMPTY);
        assert!(!serial.interrupt_line(), "the IIR read acknowledged THRE");
        assert_eq!(serial.read(INTERRUPT_ID), IIR_NONE);
        // Every byte sent empties THR again: a new THRE interrupt.
        serial.write(DATA, b'x');
        assert!(serial.interrupt_line());
        // Masking hides it, and re-enabling raises it again (the 8250
        // driver's THRE test toggles IER and expects a second interrupt).
        serial.write(INTERRUPT_ENABLE, 0);
        assert!(!serial.interrupt_line());
        serial.write(INTERRUPT_ENABLE, IER_THR_EMPTY);
        assert_eq!(serial.read(INTERRUPT_ID), IIR_THR_EMPTY);
    }

    #[test]
    fn loopback_feeds_modem_outputs_to_inputs_and_thr_to_rbr() {
        let mut serial = Serial::new();
        assert_eq!(serial.read(MODEM_STATUS), MSR_CONNECTED);
        // The 8250 probe: MCR = LOOP | OUT2 | RTS must read back MSR 0x9_.
        serial.write(MODEM_CONTROL, MCR_LOOPBACK | 0x0a);
        assert_eq!(serial.read(MODEM_STATUS) & 0xf0, 0x90);
        serial.write(DATA, 0x42);
        assert!(serial.take_output().is_empty(), "loopback bytes do not leave the UART");
        assert_eq!(serial.read(LINE_STATUS) & LSR_DATA_READY, LSR_DATA_READY);
        serial.write(INTERRUPT_ENABLE, IER_RECEIVED_DATA);
        assert_eq!(serial.read(INTERRUPT_ID), IIR_RECEIVED_DATA, "received data outranks THRE");
        assert_eq!(serial.read(DATA), 0x42);
        assert_eq!(serial.read(LINE_STATUS) & LSR_DATA_READY, 0);
        assert_eq!(serial.read(DATA), 0, "an empty receiver reads 0");
    }

    #[test]
    fn a_full_receive_fifo_counts_overruns_and_fcr_clears_it() {
        let mut serial = Serial::new();
        serial.write(MODEM_CONTROL, MCR_LOOPBACK);
        for byte in 0..20 {
            serial.write(DATA, byte);
        }
        assert_eq!(serial.metrics.rx_overruns, 4);
        serial.write(INTERRUPT_ID, FCR_ENABLE_FIFOS | FCR_CLEAR_RECEIVER);
        assert_eq!(serial.read(LINE_STATUS) & LSR_DATA_READY, 0);
    }

    #[test]
    fn writes_to_read_only_registers_are_counted() {
        let mut serial = Serial::new();
        serial.write(LINE_STATUS, 0);
        serial.write(MODEM_STATUS, 0);
        assert_eq!(serial.metrics.read_only_writes, 2);
        assert_eq!(serial.read(LINE_STATUS), LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY);
    }
}
