//! The boot configuration on a real boot (QEMU: no VMX needed to read it):
//! errors name the file, line and key, bad guests are rejected, good ones
//! kept, and the shim carries on to an orderly end.

mod common;

use common::{boot, scratch_module};
use matryoshka_tests::{Emulator, Exit, ImageBuilder};

const FLAWED: &str = r#"[shim]
log_level = "chatty"

[guest]
name = "good"
memory = 128
kernel = "vmlinuz"

[guest]
name = "bad"
memory = "lots"
kernel = "vmlinuz"
cpuid = ['0x1:ecx=0xxxx']

[guest]
name = "orphan"
memory = 64
kernel = "not-loaded"
"#;

#[test]
fn config_errors_name_file_line_and_key_and_only_bad_guests_are_rejected() {
    let modules = tempfile::tempdir().unwrap();
    let image =
        ImageBuilder::new().config("lab.cfg", FLAWED).module("vmlinuz", scratch_module(modules.path(), "vmlinuz", 512));
    let mut machine = boot(image, Emulator::Qemu);
    machine.expect("lab.cfg:2: key 'log_level'");
    machine.expect("lab.cfg:11: key 'memory'");
    machine.expect("lab.cfg:13: key 'cpuid'");
    machine.expect("lab.cfg:18: key 'kernel': guest 'orphan': no boot module named 'not-loaded' (modules a guest may use: vmlinuz)");
    machine.expect("boot configuration lab.cfg: 1 guest(s) valid, 2 rejected");
    // QEMU's TCG CPU has no VMX: reported, and the guests are not started.
    machine.expect("this CPU lacks VMX");
    machine.expect("guest good: not-started (no VMX:");
    machine.expect("guest bad: rejected (configuration errors in lab.cfg from line 9)");
    machine.expect("guest orphan: rejected (configuration errors in lab.cfg from line 15)");
    machine.expect_exit(Exit::Failure);
}

#[test]
fn a_config_module_that_is_not_text_is_reported() {
    let modules = tempfile::tempdir().unwrap();
    let binary = modules.path().join("lab.cfg");
    std::fs::write(&binary, [b'n', b'a', 0xff, 0xfe, b'\n']).unwrap();
    let mut machine = boot(ImageBuilder::new().module("lab.cfg", binary), Emulator::Qemu);
    machine.expect("lab.cfg: not UTF-8 text (bad byte at offset 2)");
    machine.expect_exit(Exit::Failure);
}

#[test]
fn a_missing_config_module_is_reported() {
    let mut machine = boot(ImageBuilder::new().command_line("config=nowhere.cfg"), Emulator::Qemu);
    machine.expect("config=nowhere.cfg: no boot module of that name");
    machine.expect_exit(Exit::Failure);
}
