//! Drivers for the PC devices the platform emulates, one per file.
//!
//! Each wraps its ports in safe functions: none of these devices can
//! reach memory (no DMA), so no register value written to them can break
//! the kernel's memory safety, only its view of the device.

pub mod cmos;
pub mod pic;
pub mod pit;

pub use multiboot_kernel::devices::{debug_exit, uart};
