//! The hypervisor's command line: words separated by spaces, each
//! `key=value`. A first word without `=` (the kernel path loaders put in
//! front) is skipped; any other word it does not understand is a problem,
//! counted as a failure, so a typo cannot run nothing and "pass".
//!
//! | word | effect |
//! |---|---|
//! | `checks=a,b,...` | the checks to run, in `Check::ALL` order; `all` (the default) runs every one |
//! | `exit=bochs` | after the debug-exit port (which Bochs lacks), stop Bochs: magic breakpoint on success, shutdown port on failure |
//! | `exit=qemu` | nothing more: QEMU's isa-debug-exit device ends the run (the default) |
//! | `root-vmcall=1` | `instruction-errors` also runs VMCALL in VMX root operation (error 1); off by default because Bochs 2.7 stops with "VMCALL: not implemented yet" |

use core::fmt;

/// The checks after VMX bring-up, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    InstructionErrors,
    EntryFailures,
    Launch,
    Registers,
    Cpuid,
    Io,
    Hlt,
    Exceptions,
    Injection,
    EptViolation,
    PreemptionTimer,
    Invept,
    CpuidLoop,
}

impl Check {
    pub const ALL: [Check; 13] = [
        Check::InstructionErrors,
        Check::EntryFailures,
        Check::Launch,
        Check::Registers,
        Check::Cpuid,
        Check::Io,
        Check::Hlt,
        Check::Exceptions,
        Check::Injection,
        Check::EptViolation,
        Check::PreemptionTimer,
        Check::Invept,
        Check::CpuidLoop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::InstructionErrors => "instruction-errors",
            Check::EntryFailures => "entry-failures",
            Check::Launch => "launch",
            Check::Registers => "registers",
            Check::Cpuid => "cpuid",
            Check::Io => "io",
            Check::Hlt => "hlt",
            Check::Exceptions => "exceptions",
            Check::Injection => "injection",
            Check::EptViolation => "ept-violation",
            Check::PreemptionTimer => "preemption-timer",
            Check::Invept => "invept",
            Check::CpuidLoop => "cpuid-loop",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|check| check.name() == name)
    }
}

/// How to stop the machine after the debug-exit port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExitMethod {
    /// Halt: QEMU, the shim's monitor and real debug-exit devices never
    /// get here.
    #[default]
    Halt,
    /// `exit=bochs`.
    Bochs,
}

/// Something on the command line that could not be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem<'a> {
    UnknownWord(&'a str),
    UnknownCheck(&'a str),
    UnknownExit(&'a str),
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownWord(word) => write!(f, "unknown word '{word}' (known: checks=, exit=, root-vmcall=)"),
            Self::UnknownCheck(name) => {
                write!(f, "unknown check '{name}' (known: all")?;
                Check::ALL.iter().try_for_each(|check| write!(f, ", {}", check.name()))?;
                write!(f, ")")
            }
            Self::UnknownExit(method) => write!(f, "unknown exit method '{method}' (known: bochs, qemu)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Bit n set: `Check::ALL[n]` runs.
    selected: u32,
    pub exit: ExitMethod,
    /// `root-vmcall=1`: check VMCALL in VMX root operation too.
    pub root_vmcall: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { selected: all_checks(), exit: ExitMethod::Halt, root_vmcall: false }
    }
}

fn all_checks() -> u32 {
    (1 << Check::ALL.len()) - 1
}

impl Options {
    /// Parses `line`, handing each problem to `problem`.
    pub fn parse<'a>(line: &'a str, mut problem: impl FnMut(Problem<'a>)) -> Self {
        let mut options = Self::default();
        for (position, word) in line.split_whitespace().enumerate() {
            match word.split_once('=') {
                None if position == 0 => {} // the kernel's path
                Some(("checks", list)) => options.selected = parse_checks(list, &mut problem),
                Some(("exit", "bochs")) => options.exit = ExitMethod::Bochs,
                Some(("exit", "qemu")) => options.exit = ExitMethod::Halt,
                Some(("exit", other)) => problem(Problem::UnknownExit(other)),
                Some(("root-vmcall", "0")) => options.root_vmcall = false,
                Some(("root-vmcall", "1")) => options.root_vmcall = true,
                _ => problem(Problem::UnknownWord(word)),
            }
        }
        options
    }

    /// The selected checks, in the order they run.
    pub fn checks(&self) -> impl Iterator<Item = Check> + '_ {
        Check::ALL.into_iter().enumerate().filter(|(bit, _)| self.selected & 1 << bit != 0).map(|(_, check)| check)
    }
}

fn parse_checks<'a>(list: &'a str, problem: &mut impl FnMut(Problem<'a>)) -> u32 {
    let mut selected = 0;
    for name in list.split(',').filter(|name| !name.is_empty()) {
        if name == "all" {
            selected = all_checks();
        } else if let Some(position) = Check::ALL.iter().position(|&check| Some(check) == Check::from_name(name)) {
            selected |= 1 << position;
        } else {
            problem(Problem::UnknownCheck(name));
        }
    }
    selected
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    fn parse(line: &str) -> (Options, Vec<String>) {
        let mut problems = Vec::new();
        let options = Options::parse(line, |problem| problems.push(problem.to_string()));
        (options, problems)
    }

    #[test]
    fn everything_runs_by_default_and_the_kernel_path_is_skipped() {
        let (options, problems) = parse("/boot/l1-hypervisor");
        assert!(problems.is_empty());
        assert_eq!(options.checks().collect::<Vec<_>>(), Check::ALL);
        assert_eq!(options.exit, ExitMethod::Halt);
        assert_eq!(parse("").0, Options::default());
    }

    #[test]
    fn checks_run_in_their_fixed_order_whatever_the_list_says() {
        let (options, problems) = parse("checks=invept,cpuid,cpuid exit=bochs root-vmcall=1");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(options.checks().collect::<Vec<_>>(), [Check::Cpuid, Check::Invept]);
        assert_eq!(options.exit, ExitMethod::Bochs);
        assert!(options.root_vmcall);
        assert_eq!(parse("checks=all").0.checks().count(), Check::ALL.len());
    }

    #[test]
    fn every_name_round_trips() {
        for check in Check::ALL {
            assert_eq!(Check::from_name(check.name()), Some(check));
        }
    }

    #[test]
    fn mistakes_are_named() {
        let (options, problems) = parse("kernel checks=cpuid,cpu-id tests=all exit=kvm");
        assert_eq!(options.checks().collect::<Vec<_>>(), [Check::Cpuid]);
        assert_eq!(problems.len(), 3);
        assert!(problems[0].starts_with("unknown check 'cpu-id' (known: all, instruction-errors, "));
        assert_eq!(problems[1], "unknown word 'tests=all' (known: checks=, exit=, root-vmcall=)");
        assert_eq!(problems[2], "unknown exit method 'kvm' (known: bochs, qemu)");
        // A word without '=' after the first is a mistake too.
        assert_eq!(parse("kernel verbose").1, ["unknown word 'verbose' (known: checks=, exit=, root-vmcall=)"]);
    }
}
