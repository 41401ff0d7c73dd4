//! The shim's own command line (the text after the kernel on GRUB's
//! `multiboot2` line), e.g. `log=debug exit=bochs config=lab.cfg`.

use core::fmt;

use log::LevelFilter;
use monitor_abi::boot_info::TestHook;

/// How the shim ends the machine once every guest has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitMethod {
    /// Real hardware: report, then halt every CPU.
    Halt,
    /// Bochs: a magic breakpoint that the harness answers with `quit`
    /// (exit status 0); a failure uses the 0x8900 shutdown port (status 1).
    Bochs,
    /// QEMU with `-device isa-debug-exit,iobase=0xf4`: exit status
    /// 1 on success, 3 on failure.
    Qemu,
}

/// What the shim does once no guest runs any more (or none could start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAction {
    /// Report and end the machine (see [`ExitMethod`]).
    PowerOff,
    /// Keep serving the control API until the machine is switched off.
    Serve,
}

/// Faults the shim provokes on purpose, so that tests can prove that its
/// exception and panic reports work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    PageFault,
    Panic,
    /// Unbounded recursion: proves the guard page under the stack and the
    /// separate interrupt stack that reports it.
    StackOverflow,
    /// Runs a minimal guest through VM entries and exits (after VMXON).
    VmxSmoke,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptions<'a> {
    /// Overrides the boot configuration's `log_level` when given.
    pub log_level: Option<LevelFilter>,
    pub exit: ExitMethod,
    pub idle: IdleAction,
    /// The boot module that holds the boot configuration. When absent, the
    /// first module whose name ends in `.cfg` is used.
    pub config_module: Option<&'a str>,
    pub self_test: Option<SelfTest>,
    /// Tests only: guests whose monitors fault on purpose, and how
    /// (`monitor-fault=GUEST:page-fault|hang|panic|map-foreign|forbidden-control`, up to
    /// [`MAX_MONITOR_FAULTS`] words).
    pub monitor_faults: [Option<(&'a str, TestHook)>; MAX_MONITOR_FAULTS],
}

pub const MAX_MONITOR_FAULTS: usize = 8;
const MONITOR_FAULT_KINDS: &str =
    "GUEST:page-fault, GUEST:hang, GUEST:panic, GUEST:map-foreign or GUEST:forbidden-control";

impl BootOptions<'_> {
    /// The test hook for the monitor of guest `name`.
    pub fn monitor_fault(&self, name: &str) -> TestHook {
        self.monitor_faults.iter().flatten().find(|(guest, _)| *guest == name).map_or(TestHook::None, |(_, hook)| *hook)
    }
}

impl Default for BootOptions<'_> {
    fn default() -> Self {
        Self {
            log_level: None,
            exit: ExitMethod::Halt,
            idle: IdleAction::PowerOff,
            config_module: None,
            self_test: None,
            monitor_faults: [None; MAX_MONITOR_FAULTS],
        }
    }
}

/// A word of the command line that was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionWarning<'a> {
    NotKeyValue(&'a str),
    UnknownKey(&'a str),
    BadValue { key: &'a str, value: &'a str, expected: &'static str },
}

impl fmt::Display for OptionWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(word) => write!(f, "command line: ignoring '{word}': expected key=value"),
            Self::UnknownKey(key) => write!(f, "command line: unknown option '{key}'"),
            Self::BadValue { key, value, expected } => write!(f, "command line: {key}={value}: expected {expected}"),
        }
    }
}

/// Parses the command line. Bad words never stop the boot: each is passed
/// to `warn` and the defaults apply. Allocation-free, because it runs before
/// the heap exists (the exit method must be known if memory setup fails).
pub fn parse<'a>(command_line: &'a str, mut warn: impl FnMut(OptionWarning<'a>)) -> BootOptions<'a> {
    let mut options = BootOptions::default();
    for word in command_line.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            // GRUB may pass the kernel's own path first.
            if !word.starts_with('/') {
                warn(OptionWarning::NotKeyValue(word));
            }
            continue;
        };
        let mut bad_value = |expected| warn(OptionWarning::BadValue { key, value, expected });
        match key {
            "log" => match parse_level(value) {
                Some(level) => options.log_level = Some(level),
                None => bad_value("off, error, warn, info, debug or trace"),
            },
            "exit" => match value {
                "halt" => options.exit = ExitMethod::Halt,
                "bochs" => options.exit = ExitMethod::Bochs,
                "qemu" => options.exit = ExitMethod::Qemu,
                _ => bad_value("halt, bochs or qemu"),
            },
            "idle" => match value {
                "power-off" => options.idle = IdleAction::PowerOff,
                "serve" => options.idle = IdleAction::Serve,
                _ => bad_value("power-off or serve"),
            },
            "config" if value.is_empty() => bad_value("the name of a boot module"),
            "config" => options.config_module = Some(value),
            "selftest" => match value {
                "page-fault" => options.self_test = Some(SelfTest::PageFault),
                "panic" => options.self_test = Some(SelfTest::Panic),
                "stack-overflow" => options.self_test = Some(SelfTest::StackOverflow),
                "vmx-smoke" => options.self_test = Some(SelfTest::VmxSmoke),
                _ => bad_value("page-fault, panic, stack-overflow or vmx-smoke"),
            },
            "monitor-fault" => match value.split_once(':') {
                Some((guest, kind)) if !guest.is_empty() => {
                    match (TestHook::from_name(kind), options.monitor_faults.iter_mut().find(|slot| slot.is_none())) {
                        (Some(hook), Some(slot)) => *slot = Some((guest, hook)),
                        (Some(_), None) => bad_value("at most 8 monitor-fault words"),
                        (None, _) => bad_value(MONITOR_FAULT_KINDS),
                    }
                }
                _ => bad_value(MONITOR_FAULT_KINDS),
            },
            _ => warn(OptionWarning::UnknownKey(key)),
        }
    }
    options
}

pub fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;

    fn parse_collecting(command_line: &str) -> (BootOptions<'_>, Vec<String>) {
        let mut warnings = Vec::new();
        let options = parse(command_line, |warning| warnings.push(warning.to_string()));
        (options, warnings)
    }

    #[test]
    fn empty_command_line_gives_defaults() {
        let (options, warnings) = parse_collecting("");
        assert_eq!(options, BootOptions::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn every_option_is_understood() {
        let (options, warnings) =
            parse_collecting("/boot/l0-shim log=debug exit=bochs config=lab.cfg selftest=page-fault idle=serve");
        assert_eq!(parse_collecting("selftest=stack-overflow").0.self_test, Some(SelfTest::StackOverflow));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(options.log_level, Some(LevelFilter::Debug));
        assert_eq!(options.exit, ExitMethod::Bochs);
        assert_eq!(options.idle, IdleAction::Serve);
        assert_eq!(options.config_module, Some("lab.cfg"));
        assert_eq!(options.self_test, Some(SelfTest::PageFault));
        let (options, warnings) = parse_collecting("monitor-fault=web:hang monitor-fault=db:page-fault");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(options.monitor_fault("web"), TestHook::HangOnExit);
        assert_eq!(options.monitor_fault("db"), TestHook::PageFaultOnExit);
        assert_eq!(options.monitor_fault("other"), TestHook::None);
        let nine: Vec<String> = (0..9).map(|n| format!("monitor-fault=g{n}:map-foreign")).collect();
        let line = nine.join(" ");
        let (options, warnings) = parse_collecting(&line);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("at most 8"), "{warnings:?}");
        assert_eq!(options.monitor_fault("g7"), TestHook::MapForeignOnExit);
        let (options, _) = parse_collecting("monitor-fault=x:forbidden-control");
        assert_eq!(options.monitor_fault("x"), TestHook::ForbiddenControlOnExit);
    }

    #[test]
    fn bad_words_are_named_and_defaults_kept() {
        let (options, warnings) = parse_collecting(
            "log=loud exit=reboot speed=11 stray selftest=boom config= monitor-fault=web monitor-fault=:panic idle=nap",
        );
        assert_eq!(options, BootOptions::default());
        let text = warnings.join("\n");
        for needle in [
            "log=loud: expected off, error",
            "exit=reboot: expected halt, bochs or qemu",
            "unknown option 'speed'",
            "ignoring 'stray'",
            "selftest=boom: expected page-fault, panic, stack-overflow or vmx-smoke",
            "config=: expected the name of a boot module",
            "monitor-fault=web: expected GUEST:page-fault",
            "monitor-fault=:panic: expected GUEST:page-fault",
            "idle=nap: expected power-off or serve",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert_eq!(warnings.len(), 9);
    }

    #[test]
    fn later_words_win() {
        let (options, _) = parse_collecting("exit=qemu exit=halt");
        assert_eq!(options.exit, ExitMethod::Halt);
    }
}
