//! Lines on COM1, each prefixed `l1-test: ` so a harness can pick them out
//! of whatever else shares the serial port.

use core::fmt::{self, Write};

use super::devices::uart;

pub const PREFIX: &str = "l1-test: ";

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        text.bytes().for_each(uart::send);
        Ok(())
    }
}

/// Writes one line: the prefix, `args`, a newline.
pub fn line(args: fmt::Arguments) {
    let _ = Serial.write_fmt(format_args!("{PREFIX}{args}\n"));
}

/// `say!("...", args)`: one console line.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::kernel::console::line(format_args!($($arg)*))
    };
}
