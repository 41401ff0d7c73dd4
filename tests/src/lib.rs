//! The emulator harness.
//!
//! It builds the shim's boot image (a GRUB ISO holding the shim, a boot
//! configuration and the modules it names), boots it headless under Bochs
//! (the only VMX-capable CPU here) or QEMU TCG (faster, no VMX), streams the
//! serial console, and always tears the emulator down. On failure it shows
//! what a person debugging needs: the last console lines, the Bochs log's
//! VM-entry failure reasons, and the shim's backtraces resolved to functions.
//!
//! Every machine works in its own directory and opens no ports (except the
//! one forwarded to a machine given a NIC, on 127.0.0.1, picked free), so
//! tests run in parallel without colliding.

pub mod image;
pub mod machine;
pub mod workspace;

pub use image::{BootImage, EndsBy, ImageBuilder, StoppingLines};
pub use machine::{Emulator, Exit, HostForward, Machine, MachineConfig, NicModel};
