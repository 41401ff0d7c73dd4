//! One monitor's conversation with the shim: each message in, its answer
//! out. The image's loop feeds it the message page and writes back what it
//! returns.
//!
//! The first event is `Start`: the monitor builds its guest's platform from
//! the boot information, loads the kernel into guest RAM and answers with
//! the vCPU's start state (registers and guest-state fields, which the shim
//! validates like any other action). Then every VM exit and timer event is
//! answered by [`GuestMonitor`].

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use matryoshka_config::GuestConfig;
use monitor::guest_memory::GuestMemory;
use monitor::guest_monitor::{GuestMonitor, GuestSetup, NestedSetup};
use monitor::loader::{CpuMode, LoadedKernel, Module};
use monitor::policy::cpuid::NativeSupport;
use monitor::policy::msr::UnknownMsrAction;
use monitor_abi::boot_info::{flags, BootInfo, ModuleInfo, TestHook};
use monitor_abi::{
    decode_event, encode_response, Action, Event, Response, StopReason, LOG_WARN, MAX_ACTIONS, RAX, RBP, RBX, RCX, RDI,
    RDX, RSI, RSP,
};
use vmx::capabilities::VmxCapabilities;
use vmx::vmcs::{Guest16, Guest32, GuestNatural};

use crate::log_queue::LogQueue;

/// Room kept in each response for queued log lines.
const LOG_ROOM: usize = 8;

/// Where the boot modules' bytes are.
pub trait Modules {
    fn bytes(&self, module: &ModuleInfo) -> &[u8];
}

/// What the image does with a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write these bytes to the message page and return to the shim.
    Respond(Vec<u8>),
    /// Fault on purpose (tests only: the boot information asked for it).
    TestHook(TestHook),
}

/// When the phases of one answer ended (TSC), for the shim's profile.
#[derive(Debug, Default, Clone, Copy)]
pub struct PhaseTimes {
    pub decoded: u64,
    pub handled: u64,
}

pub struct Session {
    boot: BootInfo,
    config: GuestConfig,
    monitor: Option<GuestMonitor>,
    exits: u64,
}

impl Session {
    /// Reads the guest's configuration from the boot information.
    pub fn new(boot: BootInfo) -> Result<Self, String> {
        let parsed = matryoshka_config::parse("guest configuration", &boot.config_text);
        if let Some(error) = parsed.errors.first() {
            return Err(format!("the shim's guest configuration does not parse: {error}"));
        }
        let config = parsed
            .config
            .guests
            .into_iter()
            .next()
            .ok_or_else(|| "the shim's guest configuration names no guest".to_string())?;
        Ok(Self { boot, config, monitor: None, exits: 0 })
    }

    pub fn guest_name(&self) -> &str {
        &self.config.name
    }

    /// Answers one message from the shim.
    pub fn handle(
        &mut self,
        message: &[u8],
        memory: &mut impl GuestMemory,
        modules: &impl Modules,
        host_cpuid: impl Fn(u32, u32) -> [u32; 4],
        logs: &LogQueue,
    ) -> Outcome {
        self.handle_timed(message, memory, modules, host_cpuid, logs, &mut PhaseTimes::default(), || 0)
    }

    /// As `handle`, noting when decoding and handling ended by `clock`.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_timed(
        &mut self,
        message: &[u8],
        memory: &mut impl GuestMemory,
        modules: &impl Modules,
        host_cpuid: impl Fn(u32, u32) -> [u32; 4],
        logs: &LogQueue,
        times: &mut PhaseTimes,
        clock: impl Fn() -> u64,
    ) -> Outcome {
        let decoded = decode_event(message);
        times.decoded = clock();
        let answered = decoded.map(|(sequence, event)| (sequence, self.answer(event, memory, modules, host_cpuid)));
        times.handled = clock();
        let (sequence, response) = match answered {
            Ok((sequence, answer)) => match answer {
                Ok(response) => (sequence, response),
                Err(hook) => return Outcome::TestHook(hook),
            },
            // The shim wrote something this monitor cannot read: the two
            // disagree on the ABI, and the guest cannot go on.
            Err(error) => (0, stop(StopReason::MonitorError, &format!("unreadable event from the shim: {error}"))),
        };
        Outcome::Respond(encode(sequence, response, logs))
    }

    fn answer(
        &mut self,
        event: Event,
        memory: &mut impl GuestMemory,
        modules: &impl Modules,
        host_cpuid: impl Fn(u32, u32) -> [u32; 4],
    ) -> Result<Response, TestHook> {
        Ok(match (event, self.monitor.as_mut()) {
            (Event::Start { .. }, None) => self.start(memory, modules, host_cpuid),
            (Event::Start { .. }, Some(_)) => stop(StopReason::MonitorError, "a second start event"),
            (Event::Exit(exit), Some(monitor)) => {
                self.exits += 1;
                if self.exits == 1 {
                    if let Some(response) = hostile_response(self.boot.test_hook, self.boot.ram_bytes) {
                        return Ok(response);
                    }
                    if self.boot.test_hook != TestHook::None {
                        return Err(self.boot.test_hook);
                    }
                }
                // Guest memory: MMIO exits decode the instruction that caused them.
                monitor.handle_exit_with_memory(&exit, memory)
            }
            (Event::Timer { vcpu, now_ns }, Some(monitor)) => monitor.handle_timer(vcpu, now_ns),
            (Event::PowerButton { vcpu, now_ns }, Some(monitor)) => monitor.handle_power_button(vcpu, now_ns),
            (_, None) => stop(StopReason::MonitorError, "an event before the start event"),
        })
    }

    fn start(
        &mut self,
        memory: &mut impl GuestMemory,
        modules: &impl Modules,
        host_cpuid: impl Fn(u32, u32) -> [u32; 4],
    ) -> Response {
        let boot = &self.boot;
        let setup = GuestSetup {
            config: &self.config,
            ram_bytes: boot.ram_bytes,
            tsc_khz: boot.tsc_khz,
            native: NativeSupport {
                ept_1gb_pages: boot.flags & flags::EPT_1GB_PAGES != 0,
                rdtscp: boot.flags & flags::RDTSCP != 0,
                invpcid: boot.flags & flags::INVPCID != 0,
            },
            wall_clock_unix_secs: boot.wall_clock_unix_secs,
            unknown_msr: if boot.flags & flags::IGNORE_UNKNOWN_MSRS != 0 {
                UnknownMsrAction::IgnoreAndLog
            } else {
                UnknownMsrAction::InjectGp
            },
            nested: (!boot.vmx_msrs.is_empty()).then(|| NestedSetup {
                host: VmxCapabilities::read(|msr| {
                    boot.vmx_msrs.iter().find(|(number, _)| *number == msr).map_or(0, |(_, value)| *value)
                }),
                physical_address_width: boot.physical_address_width,
            }),
        };
        let mut monitor = GuestMonitor::new(&setup, host_cpuid);
        let config = &self.config;
        let module_bytes = |name: &str| {
            boot.module(name)
                .map(|module| modules.bytes(module))
                .ok_or_else(|| format!("no boot module named '{name}'"))
        };
        let loaded = module_bytes(&config.kernel).and_then(|kernel| {
            let ramdisk = config.ramdisk.as_deref().map(module_bytes).transpose()?;
            let names = config.ramdisk.iter();
            let guest_modules: Vec<Module> =
                ramdisk.into_iter().zip(names).map(|(bytes, name)| Module { bytes, cmdline: name }).collect();
            monitor
                .load(memory, kernel, &config.kernel, &config.cmdline, &guest_modules)
                .map_err(|error| format!("loading kernel '{}': {error}", config.kernel))
        });
        match loaded {
            Ok(loaded) => {
                self.monitor = Some(monitor);
                Response { actions: start_actions(&loaded) }
            }
            Err(problem) => stop(StopReason::GuestError, &problem),
        }
    }
}

/// The answers of a compromised monitor, for the test hooks that ask for
/// one: requests the shim must refuse.
fn hostile_response(hook: TestHook, ram_bytes: u64) -> Option<Response> {
    let enter = Action::EnterL2 { ept02: true };
    let actions = match hook {
        TestHook::MapForeignOnExit => {
            vec![enter, Action::MapL2 { l2_gpa: 0, l1_gpa: ram_bytes, size_log2: 12, permissions: 7 }]
        }
        TestHook::ForbiddenControlOnExit => {
            let posted_interrupts = 1 << 7;
            let encoding = vmx::vmcs::Control32::PinBasedControls.encoding();
            vec![enter, Action::WriteField { encoding, value: 0x16 | 1 | posted_interrupts }]
        }
        _ => return None,
    };
    Some(Response { actions })
}

/// The vCPU's start state as actions. The shim creates the vCPU in flat
/// 32-bit protected mode; the loader chose the selectors, GDT, registers
/// and entry point within it.
pub fn start_actions(loaded: &LoadedKernel) -> Vec<Action> {
    let cpu = &loaded.cpu;
    let registers = &cpu.registers;
    let mut actions: Vec<Action> = [
        (RAX, registers.rax),
        (RBX, registers.rbx),
        (RCX, registers.rcx),
        (RDX, registers.rdx),
        (RSI, registers.rsi),
        (RDI, registers.rdi),
        (RBP, registers.rbp),
        (RSP, registers.rsp),
    ]
    .into_iter()
    .map(|(index, value)| Action::SetGpr { index, value })
    .collect();
    let write = |encoding: u32, value: u64| Action::WriteField { encoding, value };
    actions.push(write(GuestNatural::Rip.encoding(), cpu.rip));
    actions.push(write(GuestNatural::Rflags.encoding(), cpu.rflags));
    let CpuMode::ProtectedFlat32 { code_selector, data_selector } = cpu.mode;
    actions.push(write(Guest16::CsSelector.encoding(), code_selector.into()));
    for selector in
        [Guest16::DsSelector, Guest16::EsSelector, Guest16::FsSelector, Guest16::GsSelector, Guest16::SsSelector]
    {
        actions.push(write(selector.encoding(), data_selector.into()));
    }
    if let Some(gdt) = cpu.gdt {
        actions.push(write(GuestNatural::GdtrBase.encoding(), gdt.base));
        actions.push(write(Guest32::GdtrLimit.encoding(), gdt.limit.into()));
    }
    for notice in &loaded.notices {
        actions.push(Action::Log { level: LOG_WARN, text: format!("{notice}") });
    }
    actions
}

fn stop(reason: StopReason, detail: &str) -> Response {
    let mut detail = detail.to_string();
    monitor_abi::fit_text(&mut detail);
    Response { actions: vec![Action::Stop { reason, detail }] }
}

/// The response with the queued log lines in front (they happened before
/// it), encoded; a response that does not fit the page stops the guest
/// with a reason instead of being cut.
pub fn encode(sequence: u32, mut response: Response, logs: &LogQueue) -> Vec<u8> {
    let room = MAX_ACTIONS.saturating_sub(response.actions.len()).min(LOG_ROOM);
    let mut actions = logs.take(room);
    actions.append(&mut response.actions);
    match encode_response(sequence, &Response { actions }) {
        Ok(bytes) => bytes,
        Err(error) => {
            let fallback = stop(StopReason::MonitorError, &format!("the monitor's response does not fit: {error}"));
            encode_response(sequence, &fallback).expect("a single stop action fits the page")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monitor::guest_memory::VecMemory;
    use monitor_abi::address_space::MODULES_BASE;
    use monitor_abi::{decode_response, encode_event, ExitEvent, GuestSnapshot};

    const ENTRY: u32 = 0x10_0040;

    /// A multiboot kernel with the a.out kludge: header at 1 MiB, entry 64
    /// bytes in, code `hlt`.
    fn kernel() -> Vec<u8> {
        let flags: u32 = 1 << 16;
        let magic: u32 = 0x1bad_b002;
        let fields = [magic, flags, 0u32.wrapping_sub(magic).wrapping_sub(flags), 0x10_0000, 0x10_0000, 0, 0, ENTRY];
        let mut image: Vec<u8> = fields.iter().flat_map(|field| field.to_le_bytes()).collect();
        image.resize(0x40, 0);
        image.push(0xf4);
        image.resize(0x100, 0);
        image
    }

    struct TestModules(Vec<u8>);

    impl Modules for TestModules {
        fn bytes(&self, _module: &ModuleInfo) -> &[u8] {
            &self.0
        }
    }

    fn boot(config: &str, hook: TestHook) -> BootInfo {
        BootInfo {
            ram_bytes: 16 << 20,
            heap_bytes: 1 << 20,
            wall_clock_unix_secs: 0,
            tsc_khz: 1_000_000,
            flags: 0,
            test_hook: hook,
            config_text: config.into(),
            modules: vec![ModuleInfo { name: "k".into(), address: MODULES_BASE, length: 0x100 }],
            vmx_msrs: Vec::new(),
            physical_address_width: 39,
        }
    }

    const CONFIG: &str = "[guest]\nname = \"g\"\nmemory = 16\nkernel = \"k\"\ncmdline = \"hello\"\n";

    fn cpuid(_: u32, _: u32) -> [u32; 4] {
        [0; 4]
    }

    fn exchange(session: &mut Session, memory: &mut VecMemory, event: &Event, sequence: u32) -> Outcome {
        let message = encode_event(sequence, event).unwrap();
        session.handle(&message, memory, &TestModules(kernel()), cpuid, &LogQueue::new())
    }

    fn respond(outcome: Outcome) -> (u32, Response) {
        let Outcome::Respond(bytes) = outcome else { panic!("expected a response, got {outcome:?}") };
        decode_response(&bytes).unwrap()
    }

    fn exit_event() -> Event {
        Event::Exit(ExitEvent {
            vcpu: 0,
            exit_reason: 12, // HLT
            qualification: 0,
            guest_linear_address: 0,
            guest_physical_address: 0,
            instruction_length: 1,
            instruction_info: 0,
            interruption_info: 0,
            interruption_error_code: 0,
            idt_vectoring_info: 0,
            idt_vectoring_error_code: 0,
            // Interrupts on: HLT waits rather than powering off.
            guest: GuestSnapshot { rflags: 0x202, ..GuestSnapshot::default() },
            full: None,
        })
    }

    #[test]
    fn start_loads_the_kernel_and_answers_with_its_entry_state() {
        let mut session = Session::new(boot(CONFIG, TestHook::None)).unwrap();
        assert_eq!(session.guest_name(), "g");
        let mut memory = VecMemory::new(16 << 20);
        let start = Event::Start { vcpu: 0, ram_bytes: 16 << 20, now_ns: 0 };
        let (sequence, response) = respond(exchange(&mut session, &mut memory, &start, 7));
        assert_eq!(sequence, 7);
        let rip = Action::WriteField { encoding: GuestNatural::Rip.encoding(), value: u64::from(ENTRY) };
        assert!(response.actions.contains(&rip), "{response:?}");
        // Multiboot: EAX holds the loader magic, EBX the information's address.
        assert!(response.actions.contains(&Action::SetGpr { index: RAX, value: 0x2bad_b002 }));
        assert!(response
            .actions
            .iter()
            .any(|action| matches!(action, Action::SetGpr { index: RBX, value } if *value != 0)));
        let cs = Action::WriteField { encoding: Guest16::CsSelector.encoding(), value: 0x10 };
        assert!(response.actions.contains(&cs));
        let mut code = [0u8; 1];
        memory.read(u64::from(ENTRY), &mut code).unwrap();
        assert_eq!(code, [0xf4], "the kernel is in guest RAM");

        // Exits then go to the guest's monitor: HLT halts the vCPU.
        let (_, response) = respond(exchange(&mut session, &mut memory, &exit_event(), 8));
        assert!(response.actions.iter().any(|action| matches!(action, Action::Halt { .. })), "{response:?}");
    }

    #[test]
    fn a_missing_kernel_stops_the_guest_with_its_name() {
        let config = CONFIG.replace("\"k\"", "\"absent\"");
        let mut session = Session::new(boot(&config, TestHook::None)).unwrap();
        let mut memory = VecMemory::new(16 << 20);
        let start = Event::Start { vcpu: 0, ram_bytes: 16 << 20, now_ns: 0 };
        let (_, response) = respond(exchange(&mut session, &mut memory, &start, 1));
        assert_eq!(
            response.actions,
            vec![Action::Stop { reason: StopReason::GuestError, detail: "no boot module named 'absent'".into() }]
        );
    }

    #[test]
    fn events_out_of_order_and_garbage_stop_the_guest() {
        let mut session = Session::new(boot(CONFIG, TestHook::None)).unwrap();
        let mut memory = VecMemory::new(16 << 20);
        let (_, response) = respond(exchange(&mut session, &mut memory, &exit_event(), 1));
        assert!(
            matches!(&response.actions[..], [Action::Stop { reason: StopReason::MonitorError, detail }] if detail.contains("before the start"))
        );
        let outcome = session.handle(b"garbage", &mut memory, &TestModules(kernel()), cpuid, &LogQueue::new());
        let (_, response) = respond(outcome);
        assert!(
            matches!(&response.actions[..], [Action::Stop { reason: StopReason::MonitorError, detail }] if detail.contains("unreadable event"))
        );
        let start = Event::Start { vcpu: 0, ram_bytes: 16 << 20, now_ns: 0 };
        respond(exchange(&mut session, &mut memory, &start, 2));
        let (_, response) = respond(exchange(&mut session, &mut memory, &start, 3));
        assert!(matches!(&response.actions[..], [Action::Stop { detail, .. }] if detail.contains("second start")));
    }

    #[test]
    fn the_power_button_reaches_the_guest_monitor_after_the_start() {
        let mut session = Session::new(boot(CONFIG, TestHook::None)).unwrap();
        let mut memory = VecMemory::new(16 << 20);
        let press = Event::PowerButton { vcpu: 0, now_ns: 5 };
        let (_, early) = respond(exchange(&mut session, &mut memory, &press, 1));
        assert!(matches!(&early.actions[..], [Action::Stop { reason: StopReason::MonitorError, .. }]), "{early:?}");
        let mut session = Session::new(boot(CONFIG, TestHook::None)).unwrap();
        let start = Event::Start { vcpu: 0, ram_bytes: 16 << 20, now_ns: 0 };
        respond(exchange(&mut session, &mut memory, &start, 1));
        let (_, response) = respond(exchange(&mut session, &mut memory, &press, 2));
        // The kernel never enabled the button: logged, and nothing else happens to it.
        assert!(
            response
                .actions
                .iter()
                .any(|action| matches!(action, Action::Log { text, .. } if text.contains("power button pressed"))),
            "{response:?}"
        );
        assert!(!response.actions.iter().any(|action| matches!(action, Action::Stop { .. })), "{response:?}");
    }

    #[test]
    fn a_test_hook_fires_on_the_first_exit_only() {
        let mut session = Session::new(boot(CONFIG, TestHook::PageFaultOnExit)).unwrap();
        let mut memory = VecMemory::new(16 << 20);
        let start = Event::Start { vcpu: 0, ram_bytes: 16 << 20, now_ns: 0 };
        respond(exchange(&mut session, &mut memory, &start, 1));
        assert_eq!(exchange(&mut session, &mut memory, &exit_event(), 2), Outcome::TestHook(TestHook::PageFaultOnExit));
        respond(exchange(&mut session, &mut memory, &exit_event(), 3));
    }

    #[test]
    fn a_configuration_that_does_not_parse_is_refused() {
        let error = Session::new(boot("[guest]\nname = \"g\"\n", TestHook::None)).err().unwrap();
        assert!(error.contains("does not parse"), "{error}");
    }

    #[test]
    fn log_lines_ride_in_front_of_the_response() {
        let logs = LogQueue::new();
        logs.push(LOG_WARN, "first".into());
        let bytes = encode(5, Response { actions: vec![Action::SkipInstruction] }, &logs);
        let (sequence, response) = decode_response(&bytes).unwrap();
        assert_eq!(sequence, 5);
        assert_eq!(
            response.actions,
            vec![Action::Log { level: LOG_WARN, text: "first".into() }, Action::SkipInstruction]
        );
    }
}
