//! Lines on COM1 prefixed `l1-hypervisor: `, so that under the shim the
//! harness can tell them from the monitor's.

pub const PREFIX: &str = "l1-hypervisor: ";

/// `say!("...", args)`: one console line.
macro_rules! say {
    ($($arg:tt)*) => {
        multiboot_kernel::console::line($crate::hypervisor::console::PREFIX, format_args!($($arg)*))
    };
}
