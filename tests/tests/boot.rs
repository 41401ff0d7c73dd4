//! Boot tests on the emulators: the banner, the fault reports and a clean
//! end of the machine.

mod common;

use common::boot;
use matryoshka_tests::machine::resolve_backtraces;
use matryoshka_tests::{Emulator, Exit, ImageBuilder};

#[test]
fn page_fault_in_the_shim_is_reported_with_registers_and_a_resolvable_backtrace() {
    let mut machine = boot(ImageBuilder::new().command_line("selftest=page-fault"), Emulator::Qemu);
    machine.expect("Matryoshka L0 shim");
    let report = machine.expect("FATAL: shim exception #PF (page fault), vector 14");
    assert!(report.contains("read from an unmapped page"), "{report}");
    machine.expect("RIP 0xffffffff8");
    // The self test reads address 0x10.
    machine.expect("CR2 0x0000000000000010");
    machine.expect("RAX 0x");
    machine.expect("backtrace");
    machine.expect("#1 ");
    machine.expect_exit(Exit::Failure);
    let resolved = resolve_backtraces(&machine.machine.console(), &machine.image.shim_elf);
    assert!(resolved.contains("run_self_test"), "backtrace does not reach the faulting function:\n{resolved}");
    assert!(resolved.contains("boot::start"), "backtrace does not reach its caller:\n{resolved}");
}

#[test]
fn panic_in_the_shim_is_reported_with_message_location_and_backtrace() {
    let mut machine = boot(ImageBuilder::new().command_line("selftest=panic"), Emulator::Qemu);
    machine.expect("FATAL: shim panic: panicked at l0-shim/src/kernel/boot.rs");
    machine.expect("self test: deliberate panic");
    machine.expect("backtrace");
    machine.expect_exit(Exit::Failure);
    let resolved = resolve_backtraces(&machine.machine.console(), &machine.image.shim_elf);
    assert!(resolved.contains("boot::start"), "{resolved}");
}

#[test]
fn stack_overflow_hits_the_guard_page_and_is_reported_from_the_interrupt_stack() {
    let mut machine = boot(ImageBuilder::new().command_line("selftest=stack-overflow"), Emulator::Qemu);
    machine.expect("FATAL: shim exception #PF (page fault), vector 14, error code 0x2 (write to an unmapped page)");
    machine.expect("CR2 is in the guard page below a stack: stack overflow");
    machine.expect("backtrace");
    machine.expect_exit(Exit::Failure);
    let resolved = resolve_backtraces(&machine.machine.console(), &machine.image.shim_elf);
    assert!(resolved.contains("recurse_forever"), "{resolved}");
}

#[test]
fn bad_command_line_words_are_named_and_boot_goes_on() {
    let mut machine = boot(ImageBuilder::new().command_line("log=loud frobnicate=1"), Emulator::Qemu);
    machine.expect("log=loud: expected off, error, warn, info, debug or trace");
    machine.expect("unknown option 'frobnicate'");
    machine.expect("memory:");
}
