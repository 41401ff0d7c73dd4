//! The Matryoshka L0 shim kernel.
//!
//! Boot order: console, trap tables, memory (heap, frame allocator, the
//! shim's own page tables), per-CPU data, boot configuration, VMX. Each step
//! reports what it found, and a failure stops the machine with a message
//! that says what is missing instead of hanging.
#![no_std]
#![no_main]

extern crate alloc;
// The C runtime symbols the precompiled core library needs.
extern crate bare_metal;

mod arch;
mod kernel;

use core::panic::PanicInfo;

use kernel::shutdown::{power_off, Outcome};

#[no_mangle]
extern "C" fn kernel_entry(boot_magic: u64, boot_info_phys: u64) -> ! {
    kernel::boot::start(boot_magic, boot_info_phys)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    use core::fmt::Write;
    let mut report = kernel::traps::ReportWriter;
    let _ = writeln!(report, "\nFATAL: shim panic: {info}");
    kernel::backtrace::write_here(&mut report);
    power_off(Outcome::Failure)
}
