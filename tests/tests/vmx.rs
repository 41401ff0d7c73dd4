//! VMX bring-up on Bochs: the capability report and VMXON on a CPU that has
//! what Matryoshka needs, and a clear, clean stop on CPUs that lack it.

mod common;

use common::{boot, scratch_module};
use matryoshka_tests::{Emulator, Exit, ImageBuilder};

const TWO_GUESTS: &str = r#"
[shim]
log_level = "info"

[guest]
name = "l1-kvm"
memory = 512
vcpus = 2
kernel = "vmlinuz-l1"
ramdisk = "initrd-l1"
hap = 1
nestedhvm = 1
cpuid = ['0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']

[guest]
name = "plain"
memory = 64
kernel = "vmlinuz-l1"
"#;

#[test]
fn skylake_boots_reports_vmx_capabilities_enters_vmx_root_and_ends_cleanly() {
    let modules = tempfile::tempdir().unwrap();
    let image = ImageBuilder::new()
        .config("lab.cfg", TWO_GUESTS)
        .module("vmlinuz-l1", scratch_module(modules.path(), "vmlinuz-l1", 4096))
        .module("initrd-l1", scratch_module(modules.path(), "initrd-l1", 8192));
    let mut machine = boot(image, Emulator::bochs());
    let banner = machine.expect("Matryoshka L0 shim");
    let ticks_line = machine.expect("boot to banner:");
    let ticks: u64 = ticks_line
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no tick count in '{ticks_line}'"));
    // Reported, not asserted: speed belongs in `make bench`.
    println!("{banner}\nboot to banner: {ticks} Bochs ticks (BIOS + GRUB + shim entry)");

    machine.expect("memory:");
    machine.expect("boot configuration lab.cfg: 2 guest(s) valid, 0 rejected, 0 error(s)");
    machine.expect("VMCS revision");
    machine.expect("pin-based: external-interrupt-exiting nmi-exiting virtual-nmis preemption-timer");
    let secondary = machine.expect("secondary:");
    for feature in ["ept", "vpid", "unrestricted-guest", "vmcs-shadowing"] {
        assert!(secondary.split_whitespace().any(|word| word == feature), "no {feature} in: {secondary}");
    }
    machine.expect("ept: 4-level");
    machine.expect("requirements: met; optional vmcs-shadowing: available");
    machine.expect("in VMX root operation (VMXON region at 0x");
    machine.expect("guest l1-kvm: not-started (");
    machine.expect("guest plain: not-started (");
    machine.expect_exit(Exit::Success);
}

#[test]
fn cpu_without_vmx_gets_a_clear_message_and_a_clean_stop() {
    let mut machine = boot(ImageBuilder::new(), Emulator::bochs_with_cpu("athlon64_clawhammer"));
    machine.expect("Matryoshka L0 shim");
    machine.expect(
        "this CPU lacks VMX (CPUID.1:ECX.VMX[bit 5] = 0): Matryoshka needs Intel VT-x with EPT and unrestricted guest",
    );
    machine.expect_exit(Exit::Failure);
}

#[test]
fn cpu_without_ept_gets_a_clear_message_and_a_clean_stop() {
    let mut machine = boot(ImageBuilder::new(), Emulator::bochs_with_cpu("core2_penryn_t9600"));
    machine.expect("VMCS revision");
    machine.expect("ept: unavailable");
    machine.expect("this CPU lacks EPT: Matryoshka needs Intel VT-x with EPT and unrestricted guest");
    machine.expect_exit(Exit::Failure);
    assert!(!machine.machine.console().contains("VMX root operation"), "VMXON must not run without EPT");
}

#[test]
fn a_minimal_guest_runs_through_vm_entries_and_exits() {
    let mut machine = boot(ImageBuilder::new().command_line("selftest=vmx-smoke"), Emulator::bochs());
    machine.expect("in VMX root operation");
    // Each character is an I/O exit; the vendor letter comes from a CPUID exit.
    machine.expect("vmx-smoke guest: hello from VMX non-root; CPUID vendor starts with G");
    machine.expect("vmx-smoke: guest ended through the debug-exit port");
    // (0x2a << 1) | 1, as QEMU's isa-debug-exit reports it.
    machine.expect("vmx-smoke: passed, guest exit status 85");
    machine.expect_exit(Exit::Success);
}
