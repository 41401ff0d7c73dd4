//! Lines on COM1, each prefixed `l1-test: ` so a harness can pick them out
//! of whatever else shares the serial port.

use core::fmt;

pub const PREFIX: &str = "l1-test: ";

/// Writes one line: the prefix, `args`, a newline.
pub fn line(args: fmt::Arguments) {
    multiboot_kernel::console::line(PREFIX, args);
}

/// `say!("...", args)`: one console line.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::kernel::console::line(format_args!($($arg)*))
    };
}
