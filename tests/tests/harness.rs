//! The harness itself: a failing test shows what is needed to debug it, and
//! no emulator outlives its test.

mod common;

use std::process::Command;
use std::time::Duration;

use matryoshka_tests::{Emulator, ImageBuilder, Machine, MachineConfig};

/// Live processes whose command line mentions `dir` (each machine's files,
/// and so its emulator's arguments, live in its own directory). Zombies
/// waiting to be reaped are not running and do not count.
fn processes_using(dir: &std::path::Path) -> String {
    let output = Command::new("pgrep").arg("-a").arg("-f").arg(dir).output().expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            let pid = line.split_whitespace().next().unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | None)
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn a_failed_expectation_reports_the_console_tail_and_the_resolved_backtrace() {
    let mut booted = common::boot(ImageBuilder::new().command_line("selftest=panic"), Emulator::Qemu);
    let report = booted.machine.expect("a line the shim never prints").expect_err("the line never comes");
    assert!(report.contains("before printing 'a line the shim never prints'"), "{report}");
    assert!(report.contains("--- last"), "{report}");
    assert!(report.contains("FATAL: shim panic"), "{report}");
    assert!(report.contains("--- shim backtrace, resolved ---"), "{report}");
    assert!(report.contains("boot::start"), "{report}");
}

#[test]
fn a_machine_past_its_deadline_is_killed_with_its_processes() {
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::new().command_line("exit=bochs").build(dir.path()).unwrap();
    // Bochs needs more than a second to reach the banner.
    let config = MachineConfig { timeout: Duration::from_millis(800), ..MachineConfig::new(Emulator::bochs()) };
    let mut machine = Machine::boot(&image, &config, dir.path()).unwrap();
    let report = machine.expect("Matryoshka L0 shim").expect_err("the deadline comes first");
    assert!(report.contains("timed out waiting for 'Matryoshka L0 shim'"), "{report}");
    assert_eq!(processes_using(dir.path()), "", "the emulator outlived its deadline");
}

#[test]
fn dropping_a_machine_tears_the_emulator_down() {
    let dir = tempfile::tempdir().unwrap();
    let image = ImageBuilder::new().command_line("exit=bochs").build(dir.path()).unwrap();
    let machine = Machine::boot(&image, &MachineConfig::new(Emulator::bochs()), dir.path()).unwrap();
    // Under load the emulator may take a moment to appear.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_using(dir.path()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(processes_using(dir.path()), "", "the emulator should be running");
    drop(machine);
    assert_eq!(processes_using(dir.path()), "", "the emulator outlived its Machine");
}
