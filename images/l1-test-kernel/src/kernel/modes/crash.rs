//! `crash=`: do something a monitor must stop the guest for. On a platform
//! that lets the guest go on, say so and return; the run then ends with
//! `ExitCode::Survived`.

use l1_test_kernel::cmdline::Crash;
use l1_test_kernel::cpu_info::UNKNOWN_MSR;

use crate::arch::{descriptors, probe};
use crate::kernel::devices::uart;

/// Far beyond the RAM of any guest this kernel runs in.
const WILD_ADDRESS: u64 = 0xdead_0000;
const WILD_VALUE: u32 = 0x0bad_f00d;

pub fn run(crash: Crash) {
    let name = crash.name();
    match crash {
        Crash::TripleFault => {
            say!("crash: {name}: loading an empty IDT, then UD2");
            uart::drain();
            descriptors::load_empty_idt();
            probe::ud2_unguarded();
            say!("crash: {name}: survived: UD2 did not fault");
        }
        Crash::WildMmio => {
            say!("crash: {name}: writing {WILD_VALUE:#x} to physical {WILD_ADDRESS:#x}, beyond RAM");
            uart::drain();
            // Safe in the sense that matters: the address is identity-mapped
            // and far beyond RAM, so it can hold no kernel data; the write
            // exists to be caught.
            let read_back = unsafe {
                (WILD_ADDRESS as *mut u32).write_volatile(WILD_VALUE);
                (WILD_ADDRESS as *const u32).read_volatile()
            };
            say!("crash: {name}: survived: read back {read_back:#x}");
        }
        Crash::UnknownMsr => {
            say!("crash: {name}: RDMSR {UNKNOWN_MSR:#x} with no fault expected");
            uart::drain();
            let value = probe::rdmsr_unguarded(UNKNOWN_MSR);
            say!("crash: {name}: survived: read {value:#x}");
        }
        Crash::Reboot => {
            say!("crash: {name}: keyboard controller reset (0xfe to port 0x64)");
            uart::drain();
            // Safe because port 0x64 is the keyboard controller's command
            // port; the command resets the machine, which is the point.
            unsafe { crate::arch::port::outb(0x64, 0xfe) };
            say!("crash: {name}: survived: the reset did not happen");
        }
        Crash::InvalidOpcode => {
            say!("crash: {name}: UD2 with no fault expected");
            probe::ud2_unguarded();
            say!("crash: {name}: survived: UD2 did not fault");
        }
    }
    say!("crash: {name}: the platform did not stop the guest");
}
