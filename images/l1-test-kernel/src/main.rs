//! Matryoshka's L1 test kernel.
//!
//! A multiboot (v1) kernel that a hypervisor's tests boot as a guest: it
//! reports on COM1, runs the checks its command line selects, and ends
//! through the debug-exit port with 0 when all passed. See `kernel::start`
//! for the order of a run, `kernel::checks` for what each check asserts, and
//! `l1_test_kernel::cmdline` for the command-line words.
#![no_std]
#![no_main]

// The C runtime symbols the precompiled core library needs.
extern crate bare_metal;

mod arch;
#[macro_use]
mod kernel;

use core::panic::PanicInfo;

use kernel::exit::{exit, ExitCode};

/// Called by boot.s in 64-bit mode with the multiboot information's
/// physical address and whether EFER.NXE is set.
#[no_mangle]
extern "C" fn kernel_main(multiboot_info: u32, efer_nxe: bool) -> ! {
    kernel::start::start(multiboot_info, efer_nxe)
}

/// Printed by boot.s before a message that it cannot boot.
#[no_mangle]
static BOOT_MESSAGE_PREFIX: [u8; 10] = *b"l1-test: \0";

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    say!("FATAL: panic: {info}");
    exit(ExitCode::Crashed)
}
