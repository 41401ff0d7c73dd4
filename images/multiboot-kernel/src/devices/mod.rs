//! Drivers for the two PC devices every kernel here uses, one per file.
//!
//! Each wraps its ports in safe functions: neither device can reach memory
//! (no DMA), so no register value written to them can break the kernel's
//! memory safety, only its view of the device.

pub mod debug_exit;
pub mod uart;
