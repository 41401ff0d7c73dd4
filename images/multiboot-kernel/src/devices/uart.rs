//! The 16550 UART on COM1, polled: the kernel's console.

use crate::arch::port::{inb, outb};

pub const COM1: u16 = 0x3f8;

/// Register offsets from the base port.
pub const DATA: u16 = 0; // THR (write), RBR (read); DLL with DLAB
pub const INTERRUPT_ENABLE: u16 = 1; // IER; DLM with DLAB
pub const FIFO_CONTROL: u16 = 2; // FCR (write), IIR (read)
pub const LINE_CONTROL: u16 = 3; // LCR
pub const MODEM_CONTROL: u16 = 4; // MCR
pub const LINE_STATUS: u16 = 5; // LSR
pub const SCRATCH: u16 = 7; // SCR

pub const LCR_8N1: u8 = 0x03; // 8 data bits, no parity, 1 stop bit
pub const LCR_DLAB: u8 = 0x80; // divisor latch access
pub const FCR_ENABLE_AND_CLEAR: u8 = 0xc7; // enable, clear both FIFOs, 14-byte trigger
pub const MCR_DTR_RTS: u8 = 0x03;
pub const LSR_THR_EMPTY: u8 = 0x20; // THRE: room for a byte
pub const LSR_TRANSMITTER_IDLE: u8 = 0x40; // TEMT: everything sent
pub const IIR_FIFO_ENABLED: u8 = 0xc0; // 16550A with working FIFOs
/// 115200 baud from the 1.8432 MHz clock.
pub const DIVISOR_115200: u16 = 1;

/// Polls before giving up on a UART that never gets ready (or is absent).
const READY_POLLS: u32 = 1_000_000;

pub fn read(offset: u16) -> u8 {
    // Safe because COM1 is a UART (see devices/mod.rs).
    unsafe { inb(COM1 + offset) }
}

pub fn write(offset: u16, value: u8) {
    // Safe because COM1 is a UART (see devices/mod.rs).
    unsafe { outb(COM1 + offset, value) }
}

/// Programs 115200 8N1 with FIFOs, no interrupts, as a real driver would.
pub fn init() {
    write(INTERRUPT_ENABLE, 0);
    write(LINE_CONTROL, LCR_DLAB);
    write(DATA, DIVISOR_115200 as u8);
    write(INTERRUPT_ENABLE, (DIVISOR_115200 >> 8) as u8);
    write(LINE_CONTROL, LCR_8N1);
    write(FIFO_CONTROL, FCR_ENABLE_AND_CLEAR);
    write(MODEM_CONTROL, MCR_DTR_RTS);
}

fn wait_for(status: u8) -> bool {
    (0..READY_POLLS).any(|_| read(LINE_STATUS) & status == status)
}

pub fn send(byte: u8) {
    wait_for(LSR_THR_EMPTY);
    write(DATA, byte);
}

/// Waits until every byte has left the transmitter; false if it never did.
pub fn drain() -> bool {
    wait_for(LSR_THR_EMPTY | LSR_TRANSMITTER_IDLE)
}
