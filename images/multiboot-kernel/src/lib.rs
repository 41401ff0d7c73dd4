//! What Matryoshka's small multiboot (v1) kernels share: the L1 test kernel
//! and the L1 test hypervisor boot, take traps and talk to COM1 the same way.
//!
//! - [`multiboot`] decodes the loader's boot information (host-tested).
//! - With the `machine` feature: [`arch`] (boot code to long mode, the
//!   GDT/TSS/IDT and trap stubs, port I/O, control registers), [`devices`]
//!   (COM1 and the debug-exit port), [`console`] (prefixed lines on COM1)
//!   and [`boot_info`] (a copy of the boot information taken at entry).
//!
//! A kernel that uses `machine` provides three symbols the assembly calls
//! or prints: `kernel_main(multiboot_info: u32, efer_nxe: bool) -> !`,
//! `trap_dispatch(&mut TrapFrame)`, and `BOOT_MESSAGE_PREFIX`, the
//! NUL-terminated text put before a boot failure message.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(feature = "machine"), forbid(unsafe_code))]

pub mod multiboot;

#[cfg(feature = "machine")]
pub mod arch;
#[cfg(feature = "machine")]
pub mod boot_info;
#[cfg(feature = "machine")]
pub mod console;
#[cfg(feature = "machine")]
pub mod devices;
