//! Matryoshka's L1 test hypervisor.
//!
//! A multiboot (v1) kernel that enables VMX, builds a VMCS with EPT and
//! VPID for a 64-bit L2 guest whose code is part of this image
//! (arch/l2_payload.s), and runs checks that each provoke a kind of VM exit
//! (CPUID, I/O, HLT, exceptions, EPT violations, the preemption timer,
//! VMCALL), verify what the processor reports, and verify in L2 what L1
//! did in answer (injected events, remapped pages after INVEPT). It ends
//! through the debug-exit port with 0 when all passed. See
//! `hypervisor::start` for the order of a run and README.md for the checks.
#![no_std]
#![no_main]

// The C runtime symbols the precompiled core library needs.
extern crate bare_metal;

mod arch;
#[macro_use]
mod hypervisor;

use core::panic::PanicInfo;

use hypervisor::exit::{exit, ExitCode};

/// Called by boot.s (multiboot-kernel) in 64-bit mode with the multiboot
/// information's physical address.
#[no_mangle]
extern "C" fn kernel_main(multiboot_info: u32, _efer_nxe: bool) -> ! {
    hypervisor::start::start(multiboot_info)
}

/// Printed by boot.s before a message that it cannot boot.
#[no_mangle]
static BOOT_MESSAGE_PREFIX: [u8; 16] = *b"l1-hypervisor: \0";

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    say!("FATAL: panic: {info}");
    exit(ExitCode::Crashed)
}
