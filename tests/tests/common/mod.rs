//! Shared set-up for the emulator tests.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use matryoshka_tests::{BootImage, Emulator, ImageBuilder, Machine, MachineConfig};
use tempfile::TempDir;

/// A booted machine with its private directory (kept alive with it).
pub struct Booted {
    pub machine: Machine,
    pub image: BootImage,
    /// Holds the machine's files until the test ends.
    pub dir: TempDir,
}

/// Builds `builder` with the exit option for `emulator` and boots it.
pub fn boot(builder: ImageBuilder, emulator: Emulator) -> Booted {
    boot_with(builder, MachineConfig { timeout: Duration::from_secs(120), ..MachineConfig::new(emulator) })
}

/// As [`boot`], on a machine configured by `config`.
pub fn boot_with(builder: ImageBuilder, config: MachineConfig) -> Booted {
    let dir = tempfile::Builder::new().prefix("matryoshka-test-").tempdir().expect("temporary directory");
    let image =
        builder.command_line(config.emulator.shim_exit_option()).build(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let machine = Machine::boot(&image, &config, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    Booted { machine, image, dir }
}

impl Booted {
    /// Waits for a console line containing `needle`; fails the test with
    /// the machine's diagnostics otherwise.
    pub fn expect(&mut self, needle: &str) -> String {
        self.machine.expect(needle).unwrap_or_else(|report| panic!("{report}"))
    }

    pub fn expect_exit(&mut self, exit: matryoshka_tests::Exit) {
        self.machine.expect_exit(exit).unwrap_or_else(|report| panic!("{report}"))
    }
}

/// A file to load as a boot module where only its presence matters.
pub fn scratch_module(dir: &std::path::Path, name: &str, size: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![0x90u8; size]).expect("writing a scratch module");
    path
}
