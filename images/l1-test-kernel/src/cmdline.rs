//! The kernel command line: words separated by spaces, each `key=value`.
//!
//! Multiboot loaders (QEMU's `-kernel`, GRUB) put the kernel's path in front
//! of the arguments, so a first word without `=` is skipped. Every other word
//! must be understood: a typo such as `test=cpuid` would otherwise run
//! nothing and "pass". Problems are handed to a callback (the kernel has no
//! allocator) and the kernel counts each one as a failure.

use core::fmt;

/// The checks `tests=` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Cpuid,
    Msr,
    Exceptions,
    Io,
    Pit,
    Rtc,
    Memory,
    /// Starts the other processors and sends IPIs both ways. Not part of
    /// `all`: it leaves the APs running.
    Smp,
}

impl Check {
    /// What `tests=all` runs, in its order.
    pub const ALL: [Check; 7] =
        [Check::Cpuid, Check::Msr, Check::Exceptions, Check::Io, Check::Pit, Check::Rtc, Check::Memory];
    /// Every check, for selection by name.
    const KNOWN: [Check; 8] =
        [Check::Cpuid, Check::Msr, Check::Exceptions, Check::Io, Check::Pit, Check::Rtc, Check::Memory, Check::Smp];

    pub fn name(self) -> &'static str {
        match self {
            Check::Cpuid => "cpuid",
            Check::Msr => "msr",
            Check::Exceptions => "exceptions",
            Check::Io => "io",
            Check::Pit => "pit",
            Check::Rtc => "rtc",
            Check::Memory => "memory",
            Check::Smp => "smp",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|check| check.name() == name)
    }
}

/// `crash=`: make the guest do something a monitor must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Load an empty IDT and raise an exception.
    TripleFault,
    /// Write to a guest-physical address far beyond RAM.
    WildMmio,
    /// RDMSR of an unknown MSR with no fault handler armed.
    UnknownMsr,
    /// UD2 with no fault handler armed: shows the unexpected-exception
    /// report (and exit code 2) on any platform.
    InvalidOpcode,
    /// The keyboard controller's reset command (0xfe to port 0x64).
    Reboot,
}

impl Crash {
    const ALL: [Crash; 5] =
        [Crash::TripleFault, Crash::WildMmio, Crash::UnknownMsr, Crash::InvalidOpcode, Crash::Reboot];

    pub fn name(self) -> &'static str {
        match self {
            Crash::TripleFault => "triple-fault",
            Crash::WildMmio => "wild-mmio",
            Crash::UnknownMsr => "unknown-msr",
            Crash::InvalidOpcode => "invalid-opcode",
            Crash::Reboot => "reboot",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|crash| crash.name() == name)
    }
}

/// `hostile=`: misbehave towards the platform, then carry on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// Garbage and odd widths to the emulated devices' ports, reads of unclaimed ports.
    Devices,
    /// Reads and writes of unknown MSRs, each of which must raise #GP.
    Msrs,
}

impl Hostile {
    const ALL: [Hostile; 2] = [Hostile::Devices, Hostile::Msrs];

    pub fn name(self) -> &'static str {
        match self {
            Hostile::Devices => "devices",
            Hostile::Msrs => "msrs",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|hostile| hostile.name() == name)
    }
}

/// What the platform does with an MSR it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownMsr {
    /// `gp`: RDMSR and WRMSR raise #GP(0), as on hardware (the default).
    GeneralProtection,
    /// `zero`: RDMSR returns 0 and WRMSR is dropped (QEMU's TCG does this).
    ReadsZero,
}

impl UnknownMsr {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "gp" => Some(UnknownMsr::GeneralProtection),
            "zero" => Some(UnknownMsr::ReadsZero),
            _ => None,
        }
    }
}

/// What the platform is expected to look like; each is checked only when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectations<'a> {
    /// `expect-vmx=0|1`: CPUID.1:ECX.VMX.
    pub vmx: Option<bool>,
    /// `expect-hypervisor=0|1`: CPUID.1:ECX bit 31.
    pub hypervisor: Option<bool>,
    /// `expect-tsc-khz=N`: what CPUID 0x15/0x16 describe and the PIT measures.
    pub tsc_khz: Option<u64>,
    /// `tsc-tolerance=P`: how far (percent) the measured TSC may stray from `tsc_khz`.
    pub tsc_tolerance_percent: u64,
    /// `expect-vendor=GenuineIntel`: CPUID.0 vendor string.
    pub vendor: Option<&'a str>,
    /// `expect-hv-signature=...`: CPUID 0x40000000 signature (12 characters).
    pub hypervisor_signature: Option<&'a str>,
    /// `expect-apic-id=N`: the boot CPU's initial APIC id (default 0).
    pub apic_id: u32,
    /// `expect-cpus=N`: how many processors the MADT lists (the `smp`
    /// check; default 1).
    pub cpus: u32,
    /// `expect-unknown-msr=gp|zero`: what accesses to unknown MSRs do.
    pub unknown_msr: UnknownMsr,
    /// `expect-tsc-msr=0`: IA32_TIME_STAMP_COUNTER need not follow RDTSC
    /// (QEMU's TCG reads it as 0); by default it must.
    pub tsc_msr: bool,
}

impl Default for Expectations<'_> {
    fn default() -> Self {
        Self {
            vmx: None,
            hypervisor: None,
            tsc_khz: None,
            tsc_tolerance_percent: DEFAULT_TSC_TOLERANCE_PERCENT,
            vendor: None,
            hypervisor_signature: None,
            apic_id: 0,
            cpus: 1,
            unknown_msr: UnknownMsr::GeneralProtection,
            tsc_msr: true,
        }
    }
}

/// Loose on purpose: emulators pace their TSC and PIT differently, and the
/// measured value is always reported for a human to judge.
pub const DEFAULT_TSC_TOLERANCE_PERCENT: u64 = 50;

/// A port nothing answers on in a small PC (QEMU's `pc` machine or
/// Matryoshka's monitor), read by the `io` check and `hostile=devices`.
pub const DEFAULT_UNCLAIMED_PORT: u16 = 0x0230;

/// Everything the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options<'a> {
    /// The raw `tests=` list; [`Options::checks`] yields the known names.
    checks: &'a str,
    /// The raw `hostile=` list; [`Options::hostile`] yields the known names.
    hostile: &'a str,
    /// `crash=`: run last, after everything else.
    pub crash: Option<Crash>,
    /// `work=N`: numbered progress lines.
    pub work: u64,
    /// `bench=N`: time N round trips each of CPUID and of an I/O port read.
    pub bench: u64,
    pub expect: Expectations<'a>,
    /// `unclaimed-port=P`: a port that must read as all ones.
    pub unclaimed_port: u16,
    /// `memory-dense=1`: pattern every quadword instead of a sample per 256 bytes.
    pub dense_memory_test: bool,
    /// `rtc-wait=0`: skip waiting (up to two seconds) for the RTC seconds to advance.
    pub rtc_wait: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self {
            checks: "",
            hostile: "",
            crash: None,
            work: 0,
            bench: 0,
            expect: Expectations::default(),
            unclaimed_port: DEFAULT_UNCLAIMED_PORT,
            dense_memory_test: false,
            rtc_wait: true,
        }
    }
}

/// A word the kernel did not understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem<'a> {
    /// A word without `=` after the first one.
    BareWord(&'a str),
    UnknownKey(&'a str),
    BadValue {
        key: &'a str,
        value: &'a str,
        wanted: &'static str,
    },
    UnknownCheck(&'a str),
    UnknownHostile(&'a str),
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::BareWord(word) => write!(f, "word '{word}' is not key=value"),
            Problem::UnknownKey(key) => write!(f, "unknown option '{key}'"),
            Problem::BadValue { key, value, wanted } => write!(f, "{key}={value}: expected {wanted}"),
            Problem::UnknownCheck(name) => write!(f, "unknown test '{name}' in tests="),
            Problem::UnknownHostile(name) => write!(f, "unknown mode '{name}' in hostile="),
        }
    }
}

impl<'a> Options<'a> {
    /// Parses `cmdline`, reporting each word it cannot use to `problem`.
    pub fn parse(cmdline: &'a str, mut problem: impl FnMut(Problem<'a>)) -> Self {
        let mut options = Self::default();
        for (index, word) in cmdline.split_ascii_whitespace().enumerate() {
            let Some((key, value)) = word.split_once('=') else {
                if index > 0 {
                    problem(Problem::BareWord(word));
                }
                continue;
            };
            let bad = |wanted| Problem::BadValue { key, value, wanted };
            let result = match key {
                "tests" => {
                    options.checks = value;
                    list_items(value)
                        .filter(|name| *name != "all" && Check::from_name(name).is_none())
                        .for_each(|name| problem(Problem::UnknownCheck(name)));
                    Ok(())
                }
                "hostile" => {
                    options.hostile = value;
                    list_items(value)
                        .filter(|name| Hostile::from_name(name).is_none())
                        .for_each(|name| problem(Problem::UnknownHostile(name)));
                    Ok(())
                }
                "crash" => Crash::from_name(value)
                    .map(|crash| options.crash = Some(crash))
                    .ok_or(bad("triple-fault, wild-mmio, unknown-msr, invalid-opcode or reboot")),
                "work" => parse_number(value).map(|n| options.work = n).ok_or(bad("a number")),
                "bench" => parse_number(value).map(|n| options.bench = n).ok_or(bad("a number")),
                "expect-vmx" => parse_flag(value).map(|v| options.expect.vmx = Some(v)).ok_or(bad("0 or 1")),
                "expect-hypervisor" => {
                    parse_flag(value).map(|v| options.expect.hypervisor = Some(v)).ok_or(bad("0 or 1"))
                }
                "expect-tsc-khz" => parse_number(value)
                    .filter(|&khz| khz > 0)
                    .map(|khz| options.expect.tsc_khz = Some(khz))
                    .ok_or(bad("a frequency in kHz")),
                "tsc-tolerance" => parse_number(value)
                    .map(|percent| options.expect.tsc_tolerance_percent = percent)
                    .ok_or(bad("a percentage")),
                "expect-vendor" => text(value, 12).map(|v| options.expect.vendor = Some(v)).ok_or(bad("12 characters")),
                "expect-hv-signature" => {
                    text(value, 12).map(|v| options.expect.hypervisor_signature = Some(v)).ok_or(bad("12 characters"))
                }
                "expect-apic-id" => parse_number(value)
                    .and_then(|id| u32::try_from(id).ok())
                    .map(|id| options.expect.apic_id = id)
                    .ok_or(bad("an APIC id")),
                "expect-cpus" => parse_number(value)
                    .and_then(|cpus| u32::try_from(cpus).ok())
                    .filter(|&cpus| cpus > 0)
                    .map(|cpus| options.expect.cpus = cpus)
                    .ok_or(bad("a number of processors")),
                "expect-unknown-msr" => UnknownMsr::from_name(value)
                    .map(|policy| options.expect.unknown_msr = policy)
                    .ok_or(bad("gp or zero")),
                "expect-tsc-msr" => parse_flag(value).map(|v| options.expect.tsc_msr = v).ok_or(bad("0 or 1")),
                "unclaimed-port" => parse_number(value)
                    .and_then(|port| u16::try_from(port).ok())
                    .map(|port| options.unclaimed_port = port)
                    .ok_or(bad("a port number")),
                "memory-dense" => parse_flag(value).map(|v| options.dense_memory_test = v).ok_or(bad("0 or 1")),
                "rtc-wait" => parse_flag(value).map(|v| options.rtc_wait = v).ok_or(bad("0 or 1")),
                _ => Err(Problem::UnknownKey(key)),
            };
            if let Err(error) = result {
                problem(error);
            }
        }
        options
    }

    /// The checks `tests=` named, in its order (`all` expands in place);
    /// unknown names were reported by [`Options::parse`] and are skipped.
    pub fn checks(&self) -> impl Iterator<Item = Check> + 'a {
        list_items(self.checks).flat_map(|name| {
            let all = name == "all";
            let single = Check::from_name(name);
            let expanded = Check::ALL.into_iter().filter(move |_| all);
            expanded.chain(single)
        })
    }

    /// The `hostile=` modes, in their order.
    pub fn hostile(&self) -> impl Iterator<Item = Hostile> + 'a {
        list_items(self.hostile).filter_map(Hostile::from_name)
    }
}

fn list_items(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').filter(|item| !item.is_empty())
}

/// Decimal, or hexadecimal with `0x`.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse_flag(text: &str) -> Option<bool> {
    match text {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn text(value: &str, length: usize) -> Option<&str> {
    (value.len() == length).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cmdline: &str) -> (Options<'_>, Vec<Problem<'_>>) {
        let mut problems = Vec::new();
        let options = Options::parse(cmdline, |p| problems.push(p));
        (options, problems)
    }

    #[test]
    fn empty_command_line_asks_for_nothing() {
        let (options, problems) = parse("");
        assert_eq!(options, Options::default());
        assert!(problems.is_empty());
        assert_eq!(options.checks().count(), 0);
    }

    #[test]
    fn loader_puts_the_kernel_path_first() {
        let (options, problems) = parse("build/guests/l1-test tests=cpuid,msr work=3 bench=100");
        assert_eq!(options.bench, 100);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(options.checks().collect::<Vec<_>>(), [Check::Cpuid, Check::Msr]);
        assert_eq!(options.work, 3);
    }

    #[test]
    fn a_later_bare_word_is_a_problem() {
        let (_, problems) = parse("kernel tests cpuid");
        assert_eq!(problems, [Problem::BareWord("tests"), Problem::BareWord("cpuid")]);
    }

    #[test]
    fn checks_keep_their_order_and_all_expands_in_place() {
        let (options, problems) = parse("tests=memory,cpuid");
        assert!(problems.is_empty());
        assert_eq!(options.checks().collect::<Vec<_>>(), [Check::Memory, Check::Cpuid]);
        let (options, _) = parse("tests=smp,cpuid");
        assert_eq!(options.checks().collect::<Vec<_>>(), [Check::Smp, Check::Cpuid]);
        let (options, _) = parse("tests=all");
        assert!(!options.checks().any(|check| check == Check::Smp), "all leaves the APs alone");
        let (options, _) = parse("tests=rtc,all");
        let checks: Vec<_> = options.checks().collect();
        assert_eq!(checks[0], Check::Rtc);
        assert_eq!(&checks[1..], Check::ALL);
    }

    #[test]
    fn unknown_checks_are_reported_and_skipped() {
        let (options, problems) = parse("tests=cpuid,bogus,,io");
        assert_eq!(problems, [Problem::UnknownCheck("bogus")]);
        assert_eq!(options.checks().collect::<Vec<_>>(), [Check::Cpuid, Check::Io]);
    }

    #[test]
    fn expectations() {
        let (options, problems) = parse(
            "expect-vmx=1 expect-hypervisor=0 expect-tsc-khz=2000000 tsc-tolerance=5 \
             expect-vendor=GenuineIntel expect-hv-signature=MatryoshkaVM expect-apic-id=0x2 \
             expect-unknown-msr=zero expect-tsc-msr=0 expect-cpus=2",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            options.expect,
            Expectations {
                vmx: Some(true),
                hypervisor: Some(false),
                tsc_khz: Some(2_000_000),
                tsc_tolerance_percent: 5,
                vendor: Some("GenuineIntel"),
                hypervisor_signature: Some("MatryoshkaVM"),
                apic_id: 2,
                cpus: 2,
                unknown_msr: UnknownMsr::ReadsZero,
                tsc_msr: false,
            }
        );
    }

    #[test]
    fn bad_values_are_reported_and_leave_the_default() {
        let (options, problems) = parse(
            "expect-vmx=yes work=-1 expect-tsc-khz=0 unclaimed-port=0x10000 expect-vendor=Intel expect-unknown-msr=ud",
        );
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(matches!(problems[0], Problem::BadValue { key: "expect-vmx", value: "yes", .. }));
        assert_eq!(options, Options::default());
    }

    #[test]
    fn unknown_keys_are_reported() {
        let (_, problems) = parse("test=cpuid");
        assert_eq!(problems, [Problem::UnknownKey("test")]);
    }

    #[test]
    fn crash_and_hostile_modes() {
        let (options, problems) = parse("crash=wild-mmio hostile=msrs,devices");
        assert!(problems.is_empty());
        assert_eq!(options.crash, Some(Crash::WildMmio));
        assert_eq!(options.hostile().collect::<Vec<_>>(), [Hostile::Msrs, Hostile::Devices]);
        let (options, problems) = parse("crash=explode hostile=msrs,cpu");
        assert_eq!(options.crash, None);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[1], Problem::UnknownHostile("cpu"));
        assert_eq!(options.hostile().collect::<Vec<_>>(), [Hostile::Msrs]);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("42"), Some(42));
        assert_eq!(parse_number("0x2a"), Some(42));
        assert_eq!(parse_number("0X2A"), Some(42));
        assert_eq!(parse_number(""), None);
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("4k"), None);
    }

    #[test]
    fn problems_read_well() {
        assert_eq!(
            Problem::BadValue { key: "work", value: "x", wanted: "a number" }.to_string(),
            "work=x: expected a number"
        );
    }
}
