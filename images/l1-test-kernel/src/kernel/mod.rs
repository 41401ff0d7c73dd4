//! The kernel proper: console, boot information, traps, the checks and the
//! modes the command line selects, and the order they run in.

#[macro_use]
pub mod console;
pub mod checks;
pub mod devices;
pub mod exit;
pub mod modes;
pub mod start;
pub mod traps;

pub use multiboot_kernel::boot_info;
