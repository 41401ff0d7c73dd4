//! One check's output: notes, failures with what was expected and what was
//! seen, and the verdict line `<check>: ok` or `<check>: FAILED`.

use core::fmt;

/// A failure that has been reported; the check stops there.
#[derive(Debug)]
pub struct Failed;

pub type Outcome = Result<(), Failed>;

pub struct Report {
    name: &'static str,
    failures: u32,
}

impl Report {
    pub fn new(name: &'static str) -> Self {
        Self { name, failures: 0 }
    }

    /// `l1-hypervisor: <check>: <text>`: something seen, not a verdict.
    pub fn note(&self, args: fmt::Arguments) {
        say!("{}: {args}", self.name);
    }

    /// `l1-hypervisor: <check>: FAIL <text>`.
    pub fn fail(&mut self, args: fmt::Arguments) -> Failed {
        self.failures += 1;
        say!("{}: FAIL {args}", self.name);
        Failed
    }

    /// Prints the verdict; whether the check passed.
    pub fn finish(self, outcome: Outcome) -> bool {
        let passed = outcome.is_ok() && self.failures == 0;
        if passed {
            say!("{}: ok", self.name);
        } else {
            say!("{}: FAILED", self.name);
        }
        passed
    }
}

/// `note!(report, "...")`.
macro_rules! note {
    ($report:expr, $($arg:tt)*) => { $report.note(format_args!($($arg)*)) };
}

/// `fail!(report, "...")`: reports and returns `Err(Failed)` from the check.
macro_rules! fail {
    ($report:expr, $($arg:tt)*) => { return Err($report.fail(format_args!($($arg)*))) };
}

/// `expect_eq!(report, "what", expected, actual)`: fails the check with
/// both values (in hex) unless they are equal.
macro_rules! expect_eq {
    ($report:expr, $what:expr, $expected:expr, $actual:expr) => {{
        let (expected, actual) = ($expected, $actual);
        if expected != actual {
            fail!($report, "{}: expected {:#x}, saw {:#x}", $what, expected, actual);
        }
    }};
}
