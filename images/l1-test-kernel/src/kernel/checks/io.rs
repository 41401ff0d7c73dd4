//! `io`: port I/O to the UART and to nothing.
//!
//! Asserts: the COM1 scratch register keeps what is written to it; the
//! divisor latch reads back 115200 baud and LCR 8N1; IIR shows enabled
//! FIFOs (a 16550A); after draining, LSR has THRE and TEMT set; 8-, 16- and
//! 32-bit reads of an unclaimed port (`unclaimed-port`, default 0x230)
//! return all ones.

use super::{note, require, Context, Report};
use crate::arch::port::{inb, inl, inw};
use crate::kernel::devices::uart::{self, *};

const SCRATCH_PATTERNS: [u8; 5] = [0x00, 0x55, 0xaa, 0xff, 0x5a];

pub fn run(context: &Context, report: &mut Report) {
    for pattern in SCRATCH_PATTERNS {
        uart::write(SCRATCH, pattern);
        let seen = uart::read(SCRATCH);
        require!(report, seen == pattern, "COM1 scratch register: wrote {pattern:#04x}, read {seen:#04x}");
    }

    uart::drain();
    uart::write(LINE_CONTROL, LCR_8N1 | LCR_DLAB);
    let divisor = u16::from_le_bytes([uart::read(DATA), uart::read(INTERRUPT_ENABLE)]);
    uart::write(LINE_CONTROL, LCR_8N1);
    require!(report, divisor == DIVISOR_115200, "COM1 divisor latch: expected {DIVISOR_115200}, read {divisor}");
    let lcr = uart::read(LINE_CONTROL);
    require!(report, lcr == LCR_8N1, "COM1 LCR: expected {LCR_8N1:#04x} (8N1), read {lcr:#04x}");
    let iir = uart::read(FIFO_CONTROL);
    require!(
        report,
        iir & IIR_FIFO_ENABLED == IIR_FIFO_ENABLED,
        "COM1 IIR: expected FIFOs enabled ({IIR_FIFO_ENABLED:#04x}), read {iir:#04x}"
    );

    let drained = uart::drain();
    let lsr = uart::read(LINE_STATUS);
    let idle = LSR_THR_EMPTY | LSR_TRANSMITTER_IDLE;
    require!(
        report,
        drained && lsr & idle == idle,
        "COM1 LSR after draining: expected THRE and TEMT ({idle:#04x}), read {lsr:#04x}"
    );

    let port = context.options.unclaimed_port;
    // Safe because reading a port nothing claims has no effect; the
    // command line chose it to be such a port.
    let (byte, word, dword) = unsafe { (inb(port), inw(port), inl(port)) };
    note!(report, "unclaimed port {port:#x} reads {byte:#04x} / {word:#06x} / {dword:#010x}");
    require!(
        report,
        byte == 0xff && word == 0xffff && dword == 0xffff_ffff,
        "unclaimed port {port:#x}: expected all ones at every width, read {byte:#04x} / {word:#06x} / {dword:#010x}"
    );
}
