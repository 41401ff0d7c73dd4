//! The checks `tests=` selects. Each is small and self-contained, reads
//! the platform, and says what it expected and what it saw.

mod cpuid;
mod exceptions;
mod io;
mod memory;
pub mod msr;
mod pit;
mod rtc;
pub mod smp;

use core::fmt;

use l1_test_kernel::cmdline::{Check, Options};

use super::boot_info::BootInfo;

/// What a check may look at besides the hardware.
pub struct Context<'a> {
    pub options: &'a Options<'a>,
    pub boot: &'a BootInfo,
    /// Whether boot.s set EFER.NXE (the CPU has NX).
    pub efer_nxe: bool,
}

/// One check's output: notes, failures, and the verdict line.
pub struct Report {
    name: &'static str,
    failures: u32,
}

impl Report {
    pub fn new(name: &'static str) -> Self {
        Self { name, failures: 0 }
    }

    /// `l1-test: <name>: <text>`: something seen, not a verdict.
    pub fn note(&self, args: fmt::Arguments) {
        say!("{}: {args}", self.name);
    }

    /// `l1-test: <name>: FAIL <text>`.
    pub fn fail(&mut self, args: fmt::Arguments) {
        self.failures += 1;
        say!("{}: FAIL {args}", self.name);
    }

    /// Fails with `args` unless `ok`.
    pub fn require(&mut self, ok: bool, args: fmt::Arguments) {
        if !ok {
            self.fail(args);
        }
    }

    /// `l1-test: <name>: PASS` if nothing failed; whether it passed.
    pub fn finish(self) -> bool {
        if self.failures == 0 {
            say!("{}: PASS", self.name);
        }
        self.failures == 0
    }
}

/// `note!(report, "...")`, `fail!(report, "...")`, `require!(report, ok, "...")`.
macro_rules! note {
    ($report:expr, $($arg:tt)*) => { $report.note(format_args!($($arg)*)) };
}
macro_rules! fail {
    ($report:expr, $($arg:tt)*) => { $report.fail(format_args!($($arg)*)) };
}
macro_rules! require {
    ($report:expr, $ok:expr, $($arg:tt)*) => { $report.require($ok, format_args!($($arg)*)) };
}
pub(crate) use {fail, note, require};

/// Runs one check; whether it passed.
pub fn run(check: Check, context: &Context) -> bool {
    let mut report = Report::new(check.name());
    match check {
        Check::Cpuid => cpuid::run(context, &mut report),
        Check::Msr => msr::run(context, &mut report),
        Check::Exceptions => exceptions::run(&mut report),
        Check::Io => io::run(context, &mut report),
        Check::Pit => pit::run(context, &mut report),
        Check::Rtc => rtc::run(context, &mut report),
        Check::Memory => memory::run(context, &mut report),
        Check::Smp => smp::run(context, &mut report),
    }
    report.finish()
}
