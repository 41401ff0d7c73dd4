//! Lines on COM1, each with the kernel's prefix (`l1-test: `,
//! `l1-hypervisor: `) so a harness can pick them out of whatever else
//! shares the serial port.

use core::fmt::{self, Write};

use crate::devices::uart;

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(uart::send);
        Ok(())
    }
}

/// Writes one line: `prefix`, `args`, a newline.
pub fn line(prefix: &str, args: fmt::Arguments) {
    let _ = Serial.write_fmt(format_args!("{prefix}{args}\n"));
}
