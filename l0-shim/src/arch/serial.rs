//! The 16550 UART on COM1: the shim's console.

use super::cpu::{inb, outb};

const COM1: u16 = 0x3f8;
const DATA: u16 = 0; // transmit/receive buffer; divisor low byte when DLAB=1
const INTERRUPT_ENABLE: u16 = 1; // divisor high byte when DLAB=1
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;

const LINE_STATUS_TRANSMIT_HOLDING_EMPTY: u8 = 1 << 5;
const LINE_STATUS_TRANSMITTER_IDLE: u8 = 1 << 6;
const LINE_CONTROL_DLAB: u8 = 1 << 7;
const LINE_CONTROL_8N1: u8 = 0b11;
const DIVISOR_115200: u8 = 1;

pub struct SerialPort {
    base: u16,
}

impl SerialPort {
    /// COM1. Only the console lock holds one, so writes never interleave.
    pub const fn com1() -> Self {
        Self { base: COM1 }
    }

    pub fn init(&mut self) {
        // Safe because COM1 belongs to the shim: guests get emulated UARTs.
        unsafe {
            outb(self.base + INTERRUPT_ENABLE, 0);
            outb(self.base + LINE_CONTROL, LINE_CONTROL_DLAB);
            outb(self.base + DATA, DIVISOR_115200);
            outb(self.base + INTERRUPT_ENABLE, 0);
            outb(self.base + LINE_CONTROL, LINE_CONTROL_8N1);
            outb(self.base + FIFO_CONTROL, 0xc7); // enable and clear FIFOs
            outb(self.base + MODEM_CONTROL, 0x03); // DTR, RTS
        }
    }

    fn line_status(&self) -> u8 {
        // Safe because reading the line status register has no side effects.
        unsafe { inb(self.base + LINE_STATUS) }
    }

    /// Emulators drop characters written while the holding register is
    /// full, so every byte waits for it.
    pub fn write_byte(&mut self, byte: u8) {
        while self.line_status() & LINE_STATUS_TRANSMIT_HOLDING_EMPTY == 0 {
            core::hint::spin_loop();
        }
        // Safe because COM1 belongs to the shim.
        unsafe { outb(self.base + DATA, byte) };
    }

    /// Waits until every written byte has left the UART, so that nothing is
    /// lost when the machine is switched off right after.
    pub fn drain(&mut self) {
        while self.line_status() & LINE_STATUS_TRANSMITTER_IDLE == 0 {
            core::hint::spin_loop();
        }
    }
}

impl core::fmt::Write for SerialPort {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for byte in text.bytes() {
            if byte == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(byte);
        }
        Ok(())
    }
}
