//! One guest's monitor: the answer to each of its VM exits.
//!
//! The shim reports an exit as an [`ExitEvent`]; [`GuestMonitor::handle_exit`]
//! decides what the guest sees (CPUID and MSR policy, the emulated devices,
//! event injection) and answers with a [`Response`] of actions, which the
//! shim validates and applies. Everything here is plain data over guest
//! memory, so it is tested on the host with fake exits.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use matryoshka_config::GuestConfig;
use monitor_abi::{
    Action, ExitEvent, GuestSnapshot, InjectionKind, Response, StopReason, LOG_INFO, LOG_WARN, MAX_TEXT, RAX, RBX, RCX,
    RDX,
};
use vmx::exit::{CrAccess, ExitReason, ExitReasonField, IoDirection, IoInstruction};
use vmx::vmcs::{Control64, ControlNatural, Guest64, GuestNatural};

use crate::ap_startup;
use crate::devices::local_apic::{ApicMode, LocalApic, IA32_TSC_DEADLINE, X2APIC_MSR_FIRST, X2APIC_MSR_LAST};
use crate::devices::platform::{LegacyPlatform, PlatformConfig};
use crate::guest_memory::GuestMemory;
use crate::guest_paging::{self, PagingState};
use crate::loader::{self, LoadError, LoadedKernel, Module};
use crate::mmio_instruction::{self, CpuMode, MmioInstruction, MmioOperation, MAX_INSTRUCTION_LENGTH};
use crate::policy::cpuid::{CpuidConfig, DynamicState, Feature, GuestCpuid, NativeSupport};
use crate::policy::msr::{GuestMsrField, MsrContext, MsrOutcome, MsrPolicy, MsrState, UnknownMsrAction};

mod nested;
pub use nested::NestedSetup;

const RFLAGS_IF: u64 = 1 << 9;
/// Interruptibility: blocking by STI or MOV SS delays interrupts by one
/// instruction.
const BLOCKED_BY_STI_OR_MOV_SS: u32 = 0b11;
/// Interruptibility: an NMI handler runs until its IRET.
const BLOCKED_BY_NMI: u32 = 1 << 3;
const NMI: u8 = 2;
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_EN: u64 = 1 << 11;
const APIC_BASE_EXTD: u64 = 1 << 10;
const CR0_PE: u64 = 1 << 0;
/// CS access rights: the L (64-bit code) and D/B (32-bit default) bits.
const CS_LONG: u32 = 1 << 13;
const CS_DEFAULT_32: u32 = 1 << 14;
/// EPT-violation qualification bit 1: the access was a write.
const EPT_WRITE: u64 = 1 << 1;
const VECTORING_VALID: u32 = 1 << 31;
const VECTORING_ERROR_CODE_VALID: u32 = 1 << 11;
const GP: u8 = 13;
const UD: u8 = 6;
const CR0_PG: u64 = 1 << 31;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// CR0.NE must stay 1 in VMX operation and CR4.VMXE likewise: the shim owns
/// them (see its guest/host masks), the guest sees its own values through
/// the read shadows the monitor keeps.
const CR0_FORCED: u64 = 1 << 5;
const CR4_FORCED: u64 = 1 << 13;
const CR4_OSXSAVE: u64 = 1 << 18;
/// How many MSR faults of a guest are logged one by one.
const LOGGED_MSR_FAULTS: u64 = 8;

/// What a guest's monitor needs to know about it.
pub struct GuestSetup<'a> {
    pub config: &'a GuestConfig,
    pub ram_bytes: u64,
    /// The rate the guest's TSC runs at (the shim measured it).
    pub tsc_khz: u32,
    /// What the CPU's VMX offers that affects the guest's CPUID.
    pub native: NativeSupport,
    /// The RTC's time when the guest starts.
    pub wall_clock_unix_secs: u64,
    pub unknown_msr: UnknownMsrAction,
    /// The host's VMX, for a guest with `nestedhvm=1` (none: VMX hidden).
    pub nested: Option<NestedSetup>,
}

/// Exits by basic reason, for statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitCounters {
    by_reason: [u64; 80],
}

impl ExitCounters {
    pub fn count(&self, reason: ExitReason) -> u64 {
        self.by_reason.get(reason as usize).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_reason.iter().sum()
    }

    /// (reason, count) for every reason seen at least once.
    pub fn nonzero(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.by_reason
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(reason, count)| (reason as u16, *count))
    }
}

/// What a vCPU is doing, as far as waking it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Running,
    /// It executed HLT with interrupts enabled: any interrupt wakes it.
    Halted,
    /// It executed HLT with interrupts disabled: only an NMI or INIT
    /// wakes it.
    HaltedInterruptsOff,
    /// An AP after power-up or INIT, waiting for a start-up IPI.
    WaitingForSipi,
}

/// Per-vCPU state the monitor keeps between exits.
struct VcpuState {
    msrs: MsrState,
    tsc_offset: u64,
    xcr0: u64,
    activity: Activity,
    /// A `Kick` for this vCPU is on its way; until its next event, news
    /// for it needs no other.
    kicked: bool,
    /// Interrupt-window exiting is on: the vCPU exits by itself as soon as
    /// it can take the interrupt it has, so news needs no kick.
    window_armed: bool,
    /// Its emulated VMX, with `nestedhvm=1`.
    nested: Option<alloc::boxed::Box<nested::NestedVcpu>>,
}

pub struct GuestMonitor {
    cpuid: GuestCpuid,
    /// VMX as offered to the guest, with `nestedhvm=1`.
    nested: Option<nested::NestedSupport>,
    ram_bytes: u64,
    msr_policy: MsrPolicy,
    vcpus: Vec<VcpuState>,
    platform: LegacyPlatform,
    tsc_khz: u64,
    /// Console bytes up to this offset have been handed to the shim.
    console_forwarded: u64,
    /// The platform deadline last given to the shim (`Action::SetTimer`).
    announced_deadline: Option<u64>,
    /// #GPs injected for MSR accesses, of which the first few are logged:
    /// a guest must not be able to flood the shim's console.
    msr_faults: u64,
    exits: ExitCounters,
}

impl GuestMonitor {
    pub fn new(setup: &GuestSetup, host_cpuid: impl Fn(u32, u32) -> [u32; 4]) -> Self {
        let cpuid = GuestCpuid::new(host_cpuid, &CpuidConfig::for_guest(setup.config, setup.tsc_khz, setup.native));
        let msr_policy = MsrPolicy::new(setup.unknown_msr, &cpuid, None);
        let nested = setup.nested.as_ref().filter(|_| setup.config.nested_hvm).map(nested::NestedSupport::new);
        let vcpus = (0..setup.config.vcpus.max(1))
            .map(|index| VcpuState {
                msrs: MsrState::new(index),
                tsc_offset: 0,
                xcr0: 1,
                // The BSP runs from the start; the APs wait for INIT and SIPI.
                activity: if index == 0 { Activity::Running } else { Activity::WaitingForSipi },
                kicked: false,
                window_armed: false,
                nested: nested.as_ref().map(nested::NestedSupport::vcpu),
            })
            .collect();
        let platform = LegacyPlatform::new(&PlatformConfig {
            vcpus: setup.config.vcpus.max(1),
            tsc_khz: u64::from(setup.tsc_khz.max(1)),
            apic_timer_khz: u64::from(cpuid.apic_timer_khz()),
            ..PlatformConfig::new(setup.ram_bytes, setup.wall_clock_unix_secs)
        });
        Self {
            cpuid,
            nested,
            ram_bytes: setup.ram_bytes,
            msr_policy,
            vcpus,
            platform,
            tsc_khz: u64::from(setup.tsc_khz.max(1)),
            console_forwarded: 0,
            announced_deadline: None,
            msr_faults: 0,
            exits: ExitCounters { by_reason: [0; 80] },
        }
    }

    /// Loads the guest's kernel: a Linux bzImage (with `modules[0]` as its
    /// initrd) or a multiboot kernel (with all modules), and puts the ACPI
    /// tables that describe its platform into the BIOS area.
    pub fn load(
        &mut self,
        memory: &mut impl GuestMemory,
        kernel: &[u8],
        kernel_name: &str,
        cmdline: &str,
        modules: &[Module<'_>],
    ) -> Result<LoadedKernel, LoadError> {
        let loaded = if kernel.get(0x202..0x206) == Some(b"HdrS") {
            loader::load_linux(memory, kernel, kernel_name, cmdline, modules.first().map(|module| module.bytes))
        } else {
            loader::load_multiboot(memory, kernel, kernel_name, cmdline, modules)
        }?;
        // The loaders accept only guests with the first MiB, which holds
        // the BIOS area: the tables always fit.
        loader::acpi::write_acpi_tables(memory, self.vcpus.len() as u32).map_err(|_| LoadError {
            kernel: kernel_name.into(),
            problem: loader::LoadProblem::GuestRamTooSmall { ram_bytes: memory.size() },
        })?;
        Ok(loaded)
    }

    pub fn platform(&self) -> &LegacyPlatform {
        &self.platform
    }

    pub fn exits(&self) -> &ExitCounters {
        &self.exits
    }

    /// #GPs injected for MSR accesses the policy refused.
    pub fn msr_faults(&self) -> u64 {
        self.msr_faults
    }

    /// The guest's time in nanoseconds, from its TSC. Whole milliseconds
    /// and the remainder apart: no overflow for centuries, and no 128-bit
    /// division (a software routine) on every exit.
    fn now_ns(&self, tsc: u64) -> u64 {
        let khz = self.tsc_khz;
        (tsc / khz) * 1_000_000 + (tsc % khz) * 1_000_000 / khz
    }

    /// Answers one VM exit, without access to guest memory: an access to
    /// an emulated MMIO device then stops the guest, since its instruction
    /// cannot be read. See [`GuestMonitor::handle_exit_with_memory`].
    pub fn handle_exit(&mut self, exit: &ExitEvent) -> Response {
        self.handle_exit_in(exit, None)
    }

    /// Answers one VM exit, reading guest memory where an exit needs it
    /// (the instruction behind an MMIO access to the APICs).
    pub fn handle_exit_with_memory(&mut self, exit: &ExitEvent, memory: &mut dyn GuestMemory) -> Response {
        self.handle_exit_in(exit, Some(memory))
    }

    fn handle_exit_in(&mut self, exit: &ExitEvent, mut memory: Option<&mut dyn GuestMemory>) -> Response {
        // Most answers are a few register writes and a skip: one allocation.
        let mut response = Response { actions: Vec::with_capacity(8) };
        let Some(vcpu) = self.vcpus.get(exit.vcpu as usize).map(|_| exit.vcpu as usize) else {
            return stop(StopReason::MonitorError, format!("exit from unknown vCPU {}", exit.vcpu));
        };
        let field = ExitReasonField(exit.exit_reason);
        let now = self.now_ns(exit.guest.tsc);
        self.platform.advance(now);
        self.vcpus[vcpu].kicked = false;
        if self.platform.local_apic_mut(vcpu).is_some_and(LocalApic::take_init) {
            // INIT is taken at the instruction boundary: the exiting
            // instruction never completes, and the vCPU waits for a SIPI.
            self.vcpus[vcpu].activity = Activity::WaitingForSipi;
            self.vcpus[vcpu].window_armed = false;
            response.actions.push(Action::InterruptWindow { enable: false });
            response.actions.push(Action::Halt { wake_at_ns: None });
            self.kick_others(vcpu, &mut response);
            return response;
        }
        let reason = match field.reason() {
            Ok(reason) => reason,
            Err(_) => {
                return stop(StopReason::GuestError, format!("unknown exit reason {:#x}", exit.exit_reason));
            }
        };
        if let Some(slot) = self.exits.by_reason.get_mut(reason as usize) {
            *slot += 1;
        }
        if field.is_entry_failure() {
            return stop(
                StopReason::GuestError,
                format!("VM entry failed ({}), qualification {:#x}", reason.name(), exit.qualification),
            );
        }
        if let Some(full) = exit.full.filter(|full| full.from_l2) {
            return match self.l2_exit(vcpu, exit, &full, now, memory, &mut response) {
                // L1's interrupts reach it through exits (see `l2_exit`).
                Ok(()) => self.finish_response(vcpu, now, response, None),
                Err(detail) => stop(StopReason::GuestError, detail),
            };
        }
        // An exit in the middle of delivering an event (e.g. an EPT
        // violation on the IDT) must not lose that event.
        let reinjected = self.reinject_interrupted_event(exit, &mut response);

        let handled = match reason {
            ExitReason::Cpuid => self.cpuid(vcpu, exit, &mut response),
            ExitReason::Rdmsr => self.rdmsr(vcpu, exit, now, &mut response),
            ExitReason::Wrmsr => self.wrmsr(vcpu, exit, now, &mut response),
            ExitReason::IoInstruction => self.io(exit, now, &mut response),
            ExitReason::ControlRegisterAccess => self.control_register(exit, &mut response),
            ExitReason::Hlt if exit.guest.rflags & RFLAGS_IF == 0 => {
                self.vcpus[vcpu].activity = Activity::HaltedInterruptsOff;
                if self
                    .vcpus
                    .iter()
                    .all(|state| matches!(state.activity, Activity::HaltedInterruptsOff | Activity::WaitingForSipi))
                {
                    // Only an NMI or INIT could wake a vCPU halted with
                    // interrupts off, and no vCPU is left to send one:
                    // this is how a guest without ACPI powers off (Linux's
                    // "System halted").
                    return stop(
                        StopReason::PowerOff,
                        format!("halted with interrupts disabled at RIP {:#x}", exit.guest.rip),
                    );
                }
                response.actions.push(Action::SkipInstruction);
                Ok(())
            }
            ExitReason::Hlt => {
                response.actions.push(Action::SkipInstruction);
                self.vcpus[vcpu].activity = Activity::Halted;
                Ok(())
            }
            ExitReason::Xsetbv => self.xsetbv(vcpu, exit, &mut response),
            ExitReason::InterruptWindow => {
                response.actions.push(Action::InterruptWindow { enable: false });
                self.vcpus[vcpu].window_armed = false;
                Ok(())
            }
            ExitReason::ExternalInterrupt | ExitReason::PreemptionTimerExpired => Ok(()),
            ExitReason::TripleFault => {
                return stop(StopReason::TripleFault, format!("triple fault at RIP {:#x}", exit.guest.rip));
            }
            ExitReason::EptViolation | ExitReason::EptMisconfiguration
                if self.platform.decodes_mmio(vcpu, exit.guest_physical_address) =>
            {
                self.mmio(vcpu, exit, exit.guest_physical_address, now, memory.as_deref(), &mut response)
            }
            ExitReason::ApicAccess => {
                // Qualification bits 11:0: the offset in the APIC-access page.
                let gpa = crate::devices::local_apic::XAPIC_BASE + (exit.qualification & 0xfff);
                self.mmio(vcpu, exit, gpa, now, memory.as_deref(), &mut response)
            }
            ExitReason::EptViolation | ExitReason::EptMisconfiguration => {
                let access = ept_access(exit.qualification);
                return stop(
                    StopReason::GuestError,
                    format!(
                        "{access} of guest-physical address {:#x}, where the guest has no RAM and no device (RIP {:#x})",
                        exit.guest_physical_address, exit.guest.rip
                    ),
                );
            }
            reason if reason.is_vmx_instruction() => {
                self.vmx_instruction(vcpu, reason, exit, memory.take(), &mut response)
            }
            other => Err(format!(
                "VM exit '{}' (reason {}) is not handled yet (RIP {:#x}, qualification {:#x})",
                other.name(),
                other as u16,
                exit.guest.rip,
                exit.qualification
            )),
        };
        if let Err(detail) = handled {
            return stop(StopReason::GuestError, detail);
        }
        let deliver = !reinjected && !injects(&response);
        self.finish_response(vcpu, now, response, deliver.then_some((&exit.guest, reason)))
    }

    /// What every answer ends with: the console, the platform's verdicts
    /// (debug exit, power off, reset), an interrupt for the guest if
    /// `deliver` says it can be given one now, and what the vCPU does
    /// next.
    fn finish_response(
        &mut self,
        vcpu: usize,
        now: u64,
        mut response: Response,
        deliver: Option<(&GuestSnapshot, ExitReason)>,
    ) -> Response {
        self.forward_console(&mut response);
        if let Some(status) = self.platform.exit_status() {
            response.actions.push(Action::Stop { reason: StopReason::DebugExit { status }, detail: String::new() });
            return response;
        }
        if self.platform.powered_off() {
            response.actions.push(Action::Stop { reason: StopReason::PowerOff, detail: "ACPI S5".into() });
            return response;
        }
        if let Some(how) = self.platform.reset_requested() {
            response.actions.push(Action::Stop { reason: StopReason::Reboot, detail: how.into() });
            return response;
        }
        if let Some((guest, reason)) = deliver {
            self.deliver_interrupt(vcpu, guest, reason, &mut response);
        }
        match self.vcpus[vcpu].activity {
            Activity::Halted => {
                response.actions.push(Action::Halt { wake_at_ns: self.platform.next_event_ns(now) });
            }
            Activity::HaltedInterruptsOff | Activity::WaitingForSipi => {
                response.actions.push(Action::Halt { wake_at_ns: None });
            }
            Activity::Running => self.announce_deadline(now, &mut response),
        }
        self.kick_others(vcpu, &mut response);
        response
    }

    /// Asks the shim to give an event to each other vCPU that has
    /// something new to take since it was last told: an IPI, an INIT or
    /// SIPI, or an interrupt a device routed to it while this vCPU's
    /// event advanced the platform.
    fn kick_others(&mut self, current: usize, response: &mut Response) {
        for other in (0..self.vcpus.len()).filter(|&other| other != current) {
            let state = &self.vcpus[other];
            if state.kicked || state.window_armed {
                continue;
            }
            let Some(apic) = self.platform.local_apic(other) else { continue };
            let news = apic.init_pending()
                || match state.activity {
                    Activity::WaitingForSipi => apic.sipi_pending(),
                    Activity::HaltedInterruptsOff => apic.nmi_pending(),
                    Activity::Halted | Activity::Running => {
                        apic.nmi_pending() || self.platform.pending_interrupt_vector(other).is_some()
                    }
                };
            if news {
                self.vcpus[other].kicked = true;
                response.actions.push(Action::Kick { vcpu: other as u32 });
            }
        }
    }

    /// Tells the shim when the platform's next timer event is due, so that
    /// a running guest gets an exit then and its interrupt is delivered on
    /// time instead of at the end of its time slice. Sent only when it
    /// changes: most exits leave it alone.
    fn announce_deadline(&mut self, now: u64, response: &mut Response) {
        let deadline = self.platform.next_event_ns(now);
        if deadline != self.announced_deadline {
            self.announced_deadline = deadline;
            response.actions.push(Action::SetTimer { at_ns: deadline });
        }
    }

    /// The host pressed the power button (`Event::PowerButton`): the SCI
    /// goes up if the guest listens, and `vcpu` is answered as for a timer
    /// (a halted one takes the interrupt now, a running one at its next
    /// exit; others are kicked).
    pub fn handle_power_button(&mut self, vcpu: u32, now_ns: u64) -> Response {
        if self.vcpus.get(vcpu as usize).is_none() {
            return stop(StopReason::MonitorError, format!("power button for unknown vCPU {vcpu}"));
        }
        self.platform.press_power_button(now_ns);
        let mut response = self.handle_timer(vcpu, now_ns);
        let listening = self.platform.acpi_pm().sci_level();
        let note = if listening { "the guest is told (SCI)" } else { "the guest has not enabled it" };
        response.actions.insert(0, log(LOG_INFO, format!("power button pressed: {note}")));
        response
    }

    /// A deadline the vCPU waited for has passed, or another vCPU kicked
    /// it: it is halted, or waits for a SIPI.
    pub fn handle_timer(&mut self, vcpu: u32, now_ns: u64) -> Response {
        let mut response = Response::default();
        if self.vcpus.get(vcpu as usize).is_none() {
            return stop(StopReason::MonitorError, format!("timer for unknown vCPU {vcpu}"));
        }
        let index = vcpu as usize;
        self.vcpus[index].kicked = false;
        self.platform.advance(now_ns);
        self.forward_console(&mut response);
        if self.platform.local_apic_mut(index).is_some_and(LocalApic::take_init) {
            self.vcpus[index].activity = Activity::WaitingForSipi;
        }
        let activity = self.vcpus[index].activity;
        let woken = match activity {
            Activity::WaitingForSipi => match self.platform.local_apic_mut(index).and_then(LocalApic::take_sipi) {
                Some(vector) => {
                    let signature = self.cpuid.query(1, 0, vcpu, DynamicState::default())[0];
                    let at = u64::from(vector) << 12;
                    response.actions.push(log(LOG_INFO, format!("vCPU {vcpu}: started by a SIPI at {at:#x}")));
                    response.actions.extend(ap_startup::sipi_start(vector, signature));
                    self.vcpus[index].xcr0 = 1;
                    true
                }
                None => false,
            },
            // A halted vCPU executed HLT and no instruction since: an NMI
            // wakes it either way, an interrupt only if IF was set.
            Activity::Halted | Activity::HaltedInterruptsOff if self.platform.take_nmi(index) => {
                response.actions.push(Action::InjectEvent { vector: NMI, kind: InjectionKind::Nmi, error_code: None });
                true
            }
            Activity::Halted if self.platform.pending_interrupt_vector(index).is_some() => {
                let vector = self.platform.acknowledge_interrupt(index);
                response.actions.push(Action::InjectEvent {
                    vector,
                    kind: InjectionKind::ExternalInterrupt,
                    error_code: None,
                });
                true
            }
            Activity::Halted | Activity::HaltedInterruptsOff => false,
            // The shim gives a running vCPU an exit instead.
            Activity::Running => true,
        };
        if woken {
            self.vcpus[index].activity = Activity::Running;
            self.announce_deadline(now_ns, &mut response);
        } else {
            let wake_at_ns = if activity == Activity::Halted { self.platform.next_event_ns(now_ns) } else { None };
            response.actions.push(Action::Halt { wake_at_ns });
        }
        self.kick_others(index, &mut response);
        response
    }

    fn reinject_interrupted_event(&mut self, exit: &ExitEvent, response: &mut Response) -> bool {
        let info = exit.idt_vectoring_info;
        if info & VECTORING_VALID == 0 {
            return false;
        }
        let kind = match (info >> 8) & 7 {
            0 => InjectionKind::ExternalInterrupt,
            2 => InjectionKind::Nmi,
            3 => InjectionKind::HardwareException,
            4 => InjectionKind::SoftwareInterrupt,
            5 => InjectionKind::PrivilegedSoftwareException,
            _ => InjectionKind::SoftwareException,
        };
        let error_code = (info & VECTORING_ERROR_CODE_VALID != 0).then_some(exit.idt_vectoring_error_code);
        response.actions.push(Action::InjectEvent { vector: info as u8, kind, error_code });
        true
    }

    fn deliver_interrupt(&mut self, vcpu: usize, guest: &GuestSnapshot, reason: ExitReason, response: &mut Response) {
        // After HLT, STI's one-instruction shadow is over once the shim
        // skips the instruction; otherwise it blocks like on hardware.
        let shadow = guest.interruptibility & BLOCKED_BY_STI_OR_MOV_SS != 0 && reason != ExitReason::Hlt;
        // An NMI goes first, unless one is still being handled; then it
        // waits for a later exit (the ABI has no NMI-window request yet).
        if !shadow && guest.interruptibility & BLOCKED_BY_NMI == 0 && self.platform.take_nmi(vcpu) {
            self.vcpus[vcpu].activity = Activity::Running;
            response.actions.push(Action::InjectEvent { vector: NMI, kind: InjectionKind::Nmi, error_code: None });
            return;
        }
        if self.platform.pending_interrupt_vector(vcpu).is_none() {
            return;
        }
        if guest.rflags & RFLAGS_IF != 0 && !shadow {
            let vector = self.platform.acknowledge_interrupt(vcpu);
            self.vcpus[vcpu].activity = Activity::Running;
            response.actions.push(Action::InjectEvent {
                vector,
                kind: InjectionKind::ExternalInterrupt,
                error_code: None,
            });
        } else {
            self.vcpus[vcpu].window_armed = true;
            response.actions.push(Action::InterruptWindow { enable: true });
        }
    }

    fn forward_console(&mut self, response: &mut Response) {
        let console = self.platform.console();
        if self.console_forwarded >= console.end_offset() {
            // The common case, on every exit: nothing new to forward.
            return;
        }
        let mut buffer = [0u8; MAX_TEXT];
        while self.console_forwarded < console.end_offset() {
            let read = console.read_from(self.console_forwarded, &mut buffer);
            if read.missed > 0 {
                response.actions.push(log(LOG_WARN, format!("console: {} bytes were lost", read.missed)));
            }
            response.actions.push(Action::ConsoleOutput { bytes: buffer[..read.len].to_vec() });
            self.console_forwarded = read.next_offset();
            if read.len == 0 {
                break;
            }
        }
    }

    fn cpuid(&mut self, vcpu: usize, exit: &ExitEvent, response: &mut Response) -> Result<(), String> {
        let guest = &exit.guest;
        let state = &self.vcpus[vcpu];
        let dynamic = DynamicState::from_registers(guest.cr4, state.xcr0, state.msrs.apic_base());
        let [eax, ebx, ecx, edx] =
            self.cpuid.query(guest.gprs[RAX as usize] as u32, guest.gprs[RCX as usize] as u32, vcpu as u32, dynamic);
        for (index, value) in [(RAX, eax), (RBX, ebx), (RCX, ecx), (RDX, edx)] {
            response.actions.push(Action::SetGpr { index, value: u64::from(value) });
        }
        response.actions.push(Action::SkipInstruction);
        Ok(())
    }

    fn rdmsr(&mut self, vcpu: usize, exit: &ExitEvent, now: u64, response: &mut Response) -> Result<(), String> {
        let msr = exit.guest.gprs[RCX as usize] as u32;
        if let Some(result) = self.apic_msr(vcpu, msr, None, now) {
            match result {
                Ok(value) => {
                    response.actions.push(Action::SetGpr { index: RAX, value: value & 0xffff_ffff });
                    response.actions.push(Action::SetGpr { index: RDX, value: value >> 32 });
                    response.actions.push(Action::SkipInstruction);
                }
                Err(why) => self.inject_gp(response, Some(format!("RDMSR {msr:#x}: {why}"))),
            }
            return Ok(());
        }
        let state = &mut self.vcpus[vcpu];
        let vmx_msrs = self.nested.as_ref().map(|nested| nested.msr_table.as_slice());
        let context = msr_context(&self.msr_policy, state.tsc_offset, exit.guest.tsc, vmx_msrs);
        let outcome = state.msrs.rdmsr(msr, &context);
        let value = match outcome {
            MsrOutcome::Read(value) => value,
            MsrOutcome::ReadVmcsField(GuestMsrField::Efer) => exit.guest.efer,
            MsrOutcome::ReadVmcsField(field) => {
                // The shim passes these MSRs through its MSR bitmap: the
                // guest reads them without an exit.
                return Err(format!("RDMSR {msr:#x} ({field:?}) exited, but the shim should pass it through"));
            }
            MsrOutcome::InjectGp { reason } => {
                self.inject_gp(response, Some(format!("RDMSR {msr:#x}: {reason}")));
                return Ok(());
            }
            other => return Err(format!("RDMSR {msr:#x}: unexpected policy outcome {other:?}")),
        };
        response.actions.push(Action::SetGpr { index: RAX, value: value & 0xffff_ffff });
        response.actions.push(Action::SetGpr { index: RDX, value: value >> 32 });
        response.actions.push(Action::SkipInstruction);
        Ok(())
    }

    fn wrmsr(&mut self, vcpu: usize, exit: &ExitEvent, now: u64, response: &mut Response) -> Result<(), String> {
        let gprs = &exit.guest.gprs;
        let msr = gprs[RCX as usize] as u32;
        let value = (gprs[RDX as usize] << 32) | (gprs[RAX as usize] & 0xffff_ffff);
        if let Some(result) = self.apic_msr(vcpu, msr, Some(value), now) {
            match result {
                Ok(_) => response.actions.push(Action::SkipInstruction),
                Err(why) => self.inject_gp(response, Some(format!("WRMSR {msr:#x} = {value:#x}: {why}"))),
            }
            return Ok(());
        }
        let state = &mut self.vcpus[vcpu];
        let vmx_msrs = self.nested.as_ref().map(|nested| nested.msr_table.as_slice());
        let context = msr_context(&self.msr_policy, state.tsc_offset, exit.guest.tsc, vmx_msrs);
        match state.msrs.wrmsr(msr, value, &context) {
            MsrOutcome::Written if msr == IA32_APIC_BASE => {
                // The policy refuses x2APIC mode (EXTD) for now: only EN
                // moves, and the APIC follows it.
                let base = self.vcpus[vcpu].msrs.apic_base();
                let mode = match (base & APIC_BASE_EN != 0, base & APIC_BASE_EXTD != 0) {
                    (false, _) => ApicMode::Disabled,
                    (true, false) => ApicMode::XApic,
                    (true, true) => ApicMode::X2Apic,
                };
                self.platform.set_apic_mode(vcpu, mode);
            }
            MsrOutcome::Written => {}
            MsrOutcome::WriteVmcsField { field: GuestMsrField::Efer, value } => {
                response.actions.push(Action::WriteField { encoding: Guest64::Ia32Efer.encoding(), value });
            }
            MsrOutcome::WriteVmcsField { field, value } => {
                response.actions.push(Action::WriteField { encoding: field.encoding(), value });
            }
            MsrOutcome::SetTscOffset { offset } => {
                self.vcpus[vcpu].tsc_offset = offset;
                response.actions.push(Action::WriteField { encoding: Control64::TscOffset.encoding(), value: offset });
            }
            MsrOutcome::InjectGp { reason } => {
                self.inject_gp(response, Some(format!("WRMSR {msr:#x} = {value:#x}: {reason}")));
                return Ok(());
            }
            other => return Err(format!("WRMSR {msr:#x}: the shim cannot apply {other:?} yet")),
        }
        response.actions.push(Action::SkipInstruction);
        Ok(())
    }

    /// XSETBV (SDM vol. 2C): #UD unless CR4.OSXSAVE; #GP(0) outside ring
    /// 0, for an XCR other than 0, or for a value the guest's CPUID does
    /// not allow.
    fn xsetbv(&mut self, vcpu: usize, exit: &ExitEvent, response: &mut Response) -> Result<(), String> {
        let guest = &exit.guest;
        if guest.cr4 & CR4_OSXSAVE == 0 {
            response.actions.push(Action::InjectEvent {
                vector: UD,
                kind: InjectionKind::HardwareException,
                error_code: None,
            });
            return Ok(());
        }
        let cpl = (guest.cs_access_rights >> 5) & 3;
        let register = guest.gprs[RCX as usize] as u32;
        let value = (guest.gprs[RDX as usize] << 32) | (guest.gprs[RAX as usize] & 0xffff_ffff);
        if let Some(why) = match (cpl, register) {
            (1..=3, _) => Some(format!("XSETBV at CPL {cpl}")),
            (_, 1..) => Some(format!("XSETBV of XCR{register}")),
            _ => invalid_xcr0(value, self.cpuid.supported_xcr0()).map(|why| format!("XSETBV {value:#x}: {why}")),
        } {
            self.inject_gp(response, Some(why));
            return Ok(());
        }
        self.vcpus[vcpu].xcr0 = value;
        response.actions.push(Action::SetXcr0 { value });
        response.actions.push(Action::SkipInstruction);
        Ok(())
    }

    /// The MSRs the local APIC answers itself: IA32_TSC_DEADLINE and the
    /// x2APIC registers, when the guest's CPUID shows them (otherwise the
    /// policy refuses them). `None` leaves the MSR to the policy; `value`
    /// is the WRMSR's.
    fn apic_msr(&mut self, vcpu: usize, msr: u32, value: Option<u64>, now: u64) -> Option<Result<u64, String>> {
        if msr == IA32_TSC_DEADLINE && self.cpuid.has(Feature::TscDeadline) {
            return Some(Ok(match value {
                Some(value) => {
                    self.platform.set_tsc_deadline(vcpu, value, now);
                    0
                }
                None => self.platform.tsc_deadline(vcpu),
            }));
        }
        if !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) || !self.cpuid.has(Feature::X2apic) {
            return None;
        }
        let result = match value {
            Some(value) => self.platform.apic_msr_write(vcpu, msr, value, now).map(|()| 0),
            None => self.platform.apic_msr_read(vcpu, msr, now),
        };
        Some(result.map_err(|fault| format!("x2APIC: {fault:?}")))
    }

    /// Emulates the guest's access to device memory at `gpa`: reads the
    /// instruction at RIP through the guest's page tables, decodes it,
    /// performs the access on the platform and moves RIP past it.
    fn mmio(
        &mut self,
        vcpu: usize,
        exit: &ExitEvent,
        gpa: u64,
        now: u64,
        memory: Option<&dyn GuestMemory>,
        response: &mut Response,
    ) -> Result<(), String> {
        let guest = &exit.guest;
        let memory = memory.ok_or_else(|| {
            format!("access to device memory at {gpa:#x} (RIP {:#x}), but the shim gave no guest memory", guest.rip)
        })?;
        let instruction = fetch_and_decode(guest, memory)?;
        let writes =
            matches!(instruction.operation, MmioOperation::StoreRegister(_) | MmioOperation::StoreImmediate(_));
        let reason = ExitReasonField(exit.exit_reason).reason();
        if reason == Ok(ExitReason::EptViolation) && (exit.qualification & EPT_WRITE != 0) != writes {
            return Err(format!(
                "the instruction at RIP {:#x} does not match the {} of {gpa:#x} the CPU reported",
                guest.rip,
                ept_access(exit.qualification)
            ));
        }
        // Device registers here are at most 32 bits wide: a wider access
        // reaches the register at its address, the rest reads as zero.
        let size = instruction.size.min(4);
        match instruction.operation {
            MmioOperation::Load { register, width } => {
                let value = self.platform.mmio_read(vcpu, gpa, size, now).unwrap_or(u32::MAX);
                let index = mmio_instruction::register_index(register);
                let old = guest.gprs[usize::from(index)];
                let merged = mmio_instruction::merge_load(old, register, width, u64::from(value));
                response.actions.push(Action::SetGpr { index, value: merged });
            }
            MmioOperation::StoreRegister(register) => {
                let value = mmio_instruction::register_value(&guest.gprs, register);
                self.platform.mmio_write(vcpu, gpa, size, value as u32 & size_mask(size), now);
            }
            MmioOperation::StoreImmediate(value) => {
                self.platform.mmio_write(vcpu, gpa, size, value as u32 & size_mask(size), now);
            }
        }
        // The exit's instruction length is not defined for EPT violations
        // (SDM 28.2.5): RIP moves by the decoded length.
        let rip = guest.rip.wrapping_add(u64::from(instruction.length));
        response.actions.push(Action::WriteField { encoding: GuestNatural::Rip.encoding(), value: rip });
        Ok(())
    }

    fn inject_gp(&mut self, response: &mut Response, why: Option<String>) {
        self.msr_faults += 1;
        match (why, self.msr_faults) {
            (Some(why), 1..=LOGGED_MSR_FAULTS) => response.actions.push(log(LOG_WARN, format!("#GP: {why}"))),
            (Some(_), count) if count == LOGGED_MSR_FAULTS + 1 => {
                response.actions.push(log(LOG_WARN, "further #GPs for MSR accesses are counted, not logged".into()))
            }
            _ => {}
        }
        response.actions.push(Action::InjectEvent {
            vector: GP,
            kind: InjectionKind::HardwareException,
            error_code: Some(0),
        });
    }

    fn io(&mut self, exit: &ExitEvent, now: u64, response: &mut Response) -> Result<(), String> {
        let io = IoInstruction::decode(exit.qualification)
            .ok_or_else(|| format!("undecodable I/O exit qualification {:#x}", exit.qualification))?;
        if io.string || io.rep {
            return Err(format!("string I/O (INS/OUTS) to port {:#x} is not emulated yet", io.port));
        }
        let rax = exit.guest.gprs[RAX as usize];
        let mask = match io.size {
            1 => 0xff,
            2 => 0xffff,
            _ => 0xffff_ffff,
        };
        match io.direction {
            IoDirection::Out => self.platform.io_write(io.port, io.size, (rax & mask) as u32, now),
            IoDirection::In => {
                let value = u64::from(self.platform.io_read(io.port, io.size, now)) & mask;
                // 8- and 16-bit INs keep the rest of RAX; a 32-bit IN clears
                // its upper half, like any 32-bit register write.
                let merged = if io.size == 4 { value } else { (rax & !mask) | value };
                response.actions.push(Action::SetGpr { index: RAX, value: merged });
            }
        }
        response.actions.push(Action::SkipInstruction);
        Ok(())
    }

    fn control_register(&mut self, exit: &ExitEvent, response: &mut Response) -> Result<(), String> {
        let CrAccess::MovToCr { cr, source } = CrAccess::decode(exit.qualification) else {
            return Err(format!("control-register exit {:#x} is not handled yet", exit.qualification));
        };
        let value = exit.guest.gprs[source as usize];
        if !self.check_cr_write(exit.vcpu as usize, cr, value, response) {
            return Ok(());
        }
        match cr {
            0 => {
                // Paging turned on with EFER.LME set enters IA-32e mode
                // (SDM 10.8.5): the CPU does that itself only for writes
                // that do not exit, so this one must.
                let efer = exit.guest.efer;
                if value & CR0_PG != 0 && exit.guest.cr0 & CR0_PG == 0 && efer & EFER_LME != 0 {
                    response
                        .actions
                        .push(Action::WriteField { encoding: Guest64::Ia32Efer.encoding(), value: efer | EFER_LMA });
                } else if value & CR0_PG == 0 && efer & EFER_LMA != 0 {
                    response
                        .actions
                        .push(Action::WriteField { encoding: Guest64::Ia32Efer.encoding(), value: efer & !EFER_LMA });
                }
                response.actions.push(Action::WriteField { encoding: ControlNatural::Cr0ReadShadow.encoding(), value });
                response
                    .actions
                    .push(Action::WriteField { encoding: GuestNatural::Cr0.encoding(), value: value | CR0_FORCED });
            }
            4 => {
                response.actions.push(Action::WriteField { encoding: ControlNatural::Cr4ReadShadow.encoding(), value });
                response
                    .actions
                    .push(Action::WriteField { encoding: GuestNatural::Cr4.encoding(), value: value | CR4_FORCED });
            }
            other => return Err(format!("MOV to CR{other} exited, which the shim never asks for")),
        }
        response.actions.push(Action::SkipInstruction);
        Ok(())
    }
}

/// The guest's TSC is the host's plus the offset the monitor last set.
fn msr_context<'a>(
    policy: &'a MsrPolicy,
    tsc_offset: u64,
    guest_tsc: u64,
    vmx_capabilities: Option<&'a [(u32, u64)]>,
) -> MsrContext<'a> {
    MsrContext { policy, host_tsc: guest_tsc.wrapping_sub(tsc_offset), tsc_offset, vmx_capabilities }
}

fn injects(response: &Response) -> bool {
    response.actions.iter().any(|action| matches!(action, Action::InjectEvent { .. }))
}

fn stop(reason: StopReason, detail: String) -> Response {
    Response { actions: alloc::vec![Action::Stop { reason, detail }] }
}

fn log(level: u8, mut text: String) -> Action {
    monitor_abi::fit_text(&mut text);
    Action::Log { level, text }
}

/// Why XCR0 may not take `value` given what the guest's CPUID offers
/// (SDM vol. 1, 13.3), or `None` if it may.
fn invalid_xcr0(value: u64, supported: u64) -> Option<&'static str> {
    const X87: u64 = 1;
    const SSE: u64 = 1 << 1;
    const AVX: u64 = 1 << 2;
    const AVX512: u64 = 0b111 << 5;
    if value & !supported != 0 {
        Some("it enables components the guest's CPUID does not offer")
    } else if value & X87 == 0 {
        Some("x87 state must stay enabled")
    } else if value & AVX != 0 && value & SSE == 0 {
        Some("AVX needs SSE")
    } else if value & AVX512 != 0 && (value & AVX512 != AVX512 || value & AVX == 0) {
        Some("AVX-512 needs all three of its components and AVX")
    } else {
        None
    }
}

fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

/// Reads the instruction at the guest's RIP and decodes it as an MMIO
/// move. The code segment's base is taken as flat (0) in protected and
/// long mode, as every OS sets it, and as selector * 16 in real mode.
fn fetch_and_decode(guest: &GuestSnapshot, memory: &dyn GuestMemory) -> Result<MmioInstruction, String> {
    let long = guest.efer & EFER_LMA != 0 && guest.cs_access_rights & CS_LONG != 0;
    let (mode, linear) = if guest.cr0 & CR0_PE == 0 {
        (CpuMode::Bits16, (u64::from(guest.cs_selector) << 4) + (guest.rip & 0xffff))
    } else if long {
        (CpuMode::Bits64, guest.rip)
    } else if guest.cs_access_rights & CS_DEFAULT_32 != 0 {
        (CpuMode::Bits32, guest.rip & 0xffff_ffff)
    } else {
        (CpuMode::Bits16, guest.rip & 0xffff)
    };
    let paging = PagingState { cr0: guest.cr0, cr3: guest.cr3, cr4: guest.cr4, efer: guest.efer };
    let mut bytes = [0u8; MAX_INSTRUCTION_LENGTH];
    let mut fetched = 0;
    // An instruction may straddle two pages: fetch page by page, and stop
    // at the first that cannot be read (the decoder says if that was too
    // early).
    while fetched < bytes.len() {
        let address = linear.wrapping_add(fetched as u64);
        let Ok(gpa) = guest_paging::translate(memory, &paging, address) else { break };
        let in_page = (0x1000 - (address & 0xfff)) as usize;
        let chunk = in_page.min(bytes.len() - fetched);
        if !guest_paging::read_physical(memory, gpa, &mut bytes[fetched..fetched + chunk]) {
            break;
        }
        fetched += chunk;
    }
    if fetched == 0 {
        let why = guest_paging::translate(memory, &paging, linear)
            .map_or_else(|error| format!("{error}"), |gpa| format!("{gpa:#x} is not guest RAM"));
        return Err(format!("cannot read the instruction at RIP {:#x}: {why}", guest.rip));
    }
    mmio_instruction::decode(&bytes[..fetched], mode).map_err(|error| {
        format!("MMIO access by the instruction {:02x?} at RIP {:#x}: {error}", &bytes[..fetched.min(8)], guest.rip)
    })
}

/// What an EPT-violation qualification says the guest tried (SDM 28.2.1).
fn ept_access(qualification: u64) -> &'static str {
    match qualification & 0b111 {
        q if q & 0b100 != 0 => "instruction fetch",
        q if q & 0b010 != 0 => "write",
        _ => "read",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest_memory::VecMemory;
    use crate::policy::test_hosts::skylake_x;
    use alloc::vec;
    use monitor_abi::{decode_response, encode_response, RSP};
    use vmx::exit::ExitReasonField;

    const TSC_KHZ: u32 = 50_000;

    fn config(extra: &str) -> GuestConfig {
        let text = format!("name = 'lab'\nmemory = 64\nkernel = 'k'\n{extra}");
        let parsed = matryoshka_config::parse("lab.cfg", &text);
        assert!(parsed.is_clean(), "{:?}", parsed.errors);
        parsed.config.guests.into_iter().next().unwrap()
    }

    fn monitor_for(config: &GuestConfig) -> GuestMonitor {
        let setup = GuestSetup {
            config,
            ram_bytes: 64 << 20,
            tsc_khz: TSC_KHZ,
            native: NativeSupport::ALL,
            wall_clock_unix_secs: 1_700_000_000,
            unknown_msr: UnknownMsrAction::InjectGp,
            nested: Some(NestedSetup {
                host: crate::nested::test_support::skylake(),
                physical_address_width: crate::nested::test_support::WIDTH,
            }),
        };
        GuestMonitor::new(&setup, skylake_x)
    }

    /// An exit with IF set, in 32-bit protected mode, at guest time `ms`.
    fn exit(reason: ExitReason, qualification: u64, ms: u64) -> ExitEvent {
        let mut event = ExitEvent {
            exit_reason: ExitReasonField::from_reason(reason).0,
            qualification,
            instruction_length: 1,
            ..ExitEvent::default()
        };
        event.guest.rflags = 0x202;
        event.guest.rip = 0x10_0000;
        event.guest.tsc = ms * u64::from(TSC_KHZ);
        event
    }

    fn with_gprs(mut event: ExitEvent, values: &[(u8, u64)]) -> ExitEvent {
        for &(index, value) in values {
            event.guest.gprs[index as usize] = value;
        }
        event
    }

    /// An OUT or IN exit qualification (SDM table 28-5).
    fn io(port: u16, size: u8, input: bool) -> u64 {
        IoInstruction {
            size,
            direction: if input { IoDirection::In } else { IoDirection::Out },
            string: false,
            rep: false,
            immediate_port: false,
            port,
        }
        .encode()
    }

    fn out(monitor: &mut GuestMonitor, port: u16, value: u8, ms: u64) -> Response {
        monitor.handle_exit(&with_gprs(exit(ExitReason::IoInstruction, io(port, 1, false), ms), &[(RAX, value.into())]))
    }

    fn gpr(response: &Response, index: u8) -> Option<u64> {
        response.actions.iter().find_map(|action| match action {
            Action::SetGpr { index: i, value } if *i == index => Some(*value),
            _ => None,
        })
    }

    fn stop_detail(response: &Response) -> (StopReason, String) {
        match response.actions.last() {
            Some(Action::Stop { reason, detail }) => (*reason, detail.clone()),
            other => panic!("expected a stop, got {other:?} in {response:?}"),
        }
    }

    /// Every response must also survive the ABI.
    fn through_abi(response: Response) -> Response {
        let bytes = encode_response(1, &response).expect("responses fit the message page");
        decode_response(&bytes).unwrap().1
    }

    #[test]
    fn cpuid_follows_the_policy_and_nestedhvm() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let response = through_abi(monitor.handle_exit(&with_gprs(exit(ExitReason::Cpuid, 0, 0), &[(RAX, 1)])));
        let ecx = gpr(&response, RCX).unwrap();
        assert_eq!(ecx & (1 << 5), 0, "VMX hidden without nestedhvm");
        assert_ne!(ecx & (1 << 31), 0, "hypervisor bit set");
        assert_eq!(response.actions.last(), Some(&Action::SkipInstruction));
        let nested = config("nestedhvm = 1");
        let mut monitor = monitor_for(&nested);
        let response = monitor.handle_exit(&with_gprs(exit(ExitReason::Cpuid, 0, 0), &[(RAX, 1)]));
        assert_ne!(gpr(&response, RCX).unwrap() & (1 << 5), 0, "VMX shown with nestedhvm");
        let response = monitor.handle_exit(&with_gprs(exit(ExitReason::Cpuid, 0, 0), &[(RAX, 0x4000_0000)]));
        let signature: Vec<u8> =
            [RBX, RCX, RDX].iter().flat_map(|&r| (gpr(&response, r).unwrap() as u32).to_le_bytes()).collect();
        assert_eq!(signature, b"MatryoshkaVM");
        assert_eq!(monitor.exits().count(ExitReason::Cpuid), 2);
    }

    #[test]
    fn msrs_follow_the_policy() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let apic = monitor.handle_exit(&with_gprs(exit(ExitReason::Rdmsr, 0, 0), &[(RCX, 0x1b)]));
        assert_eq!(gpr(&apic, RAX), Some(0xfee0_0900), "APIC base, enabled, BSP");
        assert_eq!(gpr(&apic, RDX), Some(0));
        let unknown = monitor.handle_exit(&with_gprs(exit(ExitReason::Rdmsr, 0, 0), &[(RCX, 0x1234_5678)]));
        assert!(unknown.actions.contains(&Action::InjectEvent {
            vector: GP,
            kind: InjectionKind::HardwareException,
            error_code: Some(0)
        }));
        assert!(!unknown.actions.contains(&Action::SkipInstruction), "a faulting RDMSR does not complete");
        let efer = monitor.handle_exit(&with_gprs(exit(ExitReason::Wrmsr, 0, 0), &[(RCX, 0xc000_0080), (RAX, 0x900)]));
        assert_eq!(efer.actions[0], Action::WriteField { encoding: Guest64::Ia32Efer.encoding(), value: 0x900 });
        let reserved =
            monitor.handle_exit(&with_gprs(exit(ExitReason::Wrmsr, 0, 0), &[(RCX, 0xc000_0080), (RAX, 1 << 20)]));
        assert!(reserved.actions.iter().any(|action| matches!(action, Action::InjectEvent { vector: GP, .. })));
        // A flood of bad MSR accesses is counted, but only logged at first.
        let logged = (0..50)
            .map(|_| monitor.handle_exit(&with_gprs(exit(ExitReason::Rdmsr, 0, 0), &[(RCX, 0x1234_5678)])))
            .filter(|response| response.actions.iter().any(|action| matches!(action, Action::Log { .. })))
            .count();
        assert_eq!(monitor.msr_faults(), 52);
        assert_eq!(logged as u64, LOGGED_MSR_FAULTS + 1 - 2, "8 reasons (2 above) and one 'counted' note");
    }

    #[test]
    fn serial_output_reaches_the_console_and_ports_answer() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let response = out(&mut monitor, 0x3f8, b'A', 0);
        assert_eq!(response.actions, vec![Action::SkipInstruction, Action::ConsoleOutput { bytes: b"A".to_vec() }]);
        // IN AL from the line status register keeps the rest of RAX.
        let lsr = with_gprs(exit(ExitReason::IoInstruction, io(0x3fd, 1, true), 0), &[(RAX, 0x1234_5600)]);
        assert_eq!(gpr(&monitor.handle_exit(&lsr), RAX), Some(0x1234_5660));
        // A 32-bit IN from nothing reads all ones and clears RAX's top half.
        let nothing = with_gprs(exit(ExitReason::IoInstruction, io(0x230, 4, true), 0), &[(RAX, u64::MAX)]);
        assert_eq!(gpr(&monitor.handle_exit(&nothing), RAX), Some(0xffff_ffff));
        let string = exit(ExitReason::IoInstruction, io(0x3f8, 1, false) | (1 << 4), 0);
        assert!(stop_detail(&monitor.handle_exit(&string)).1.contains("string I/O"));
    }

    #[test]
    fn the_debug_exit_port_stops_the_guest_with_its_status() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let response = through_abi(out(&mut monitor, 0xf4, 0x2a, 0));
        assert_eq!(stop_detail(&response).0, StopReason::DebugExit { status: 0x55 });
    }

    #[test]
    fn guest_faults_stop_with_what_happened() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let triple = monitor.handle_exit(&exit(ExitReason::TripleFault, 0, 0));
        assert_eq!(stop_detail(&triple), (StopReason::TripleFault, "triple fault at RIP 0x100000".into()));
        let mut wild = exit(ExitReason::EptViolation, 0b010, 0);
        wild.guest_physical_address = 0xdead_0000;
        let (reason, detail) = stop_detail(&monitor.handle_exit(&wild));
        assert_eq!(reason, StopReason::GuestError);
        assert!(detail.contains("write of guest-physical address 0xdead0000"), "{detail}");
        let wbinvd = stop_detail(&monitor.handle_exit(&exit(ExitReason::Getsec, 0, 0))).1;
        assert!(wbinvd.contains("not handled yet"), "{wbinvd}");
        let failed = ExitEvent {
            exit_reason: ExitReasonField::entry_failure(ExitReason::EntryFailureInvalidGuestState).0,
            ..exit(ExitReason::Hlt, 0, 0)
        };
        assert!(stop_detail(&monitor.handle_exit(&failed)).1.contains("VM entry failed"));
        let vmx = monitor.handle_exit(&exit(ExitReason::Vmxon, 0, 0));
        assert_eq!(
            vmx.actions[0],
            Action::InjectEvent { vector: UD, kind: InjectionKind::HardwareException, error_code: None }
        );
    }

    #[test]
    fn hlt_waits_for_interrupts_and_with_interrupts_off_is_a_power_off() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut sleeping = exit(ExitReason::Hlt, 0, 0);
        sleeping.guest.rflags = 0x2;
        assert_eq!(
            stop_detail(&monitor.handle_exit(&sleeping)),
            (StopReason::PowerOff, "halted with interrupts disabled at RIP 0x100000".into())
        );
        let response = monitor.handle_exit(&exit(ExitReason::Hlt, 0, 0));
        assert_eq!(response.actions, vec![Action::SkipInstruction, Action::Halt { wake_at_ns: None }]);
    }

    /// Programs the PIC (vectors 0x20/0x28, only IRQ0 unmasked) and the PIT
    /// (channel 0, mode 2, 100 Hz) through port exits, as a guest would.
    fn start_timer(monitor: &mut GuestMonitor) {
        for (port, value) in [
            (0x20, 0x11),
            (0x21, 0x20),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x28),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xfe),
            (0xa1, 0xff),
            (0x43, 0x34),
            (0x40, (11_932u16 & 0xff) as u8),
            (0x40, (11_932u16 >> 8) as u8),
        ] {
            out(monitor, port, value, 0);
        }
        // Loading the count raises OUT once, so a first tick was injected
        // during the set-up; the guest's handler would acknowledge it.
        assert_eq!(monitor.platform.pic().master().isr, 1);
        out(monitor, 0x20, 0x20, 0);
    }

    #[test]
    fn timer_interrupts_are_injected_when_the_guest_can_take_them() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        start_timer(&mut monitor);
        // 15 ms later, interrupts off: ask for an interrupt window.
        let mut busy = exit(ExitReason::Cpuid, 0, 15);
        busy.guest.rflags = 0x2;
        assert!(monitor.handle_exit(&busy).actions.contains(&Action::InterruptWindow { enable: true }));
        // The window opens: IRQ0 arrives as vector 0x20.
        let window = monitor.handle_exit(&exit(ExitReason::InterruptWindow, 0, 15));
        assert!(window.actions.contains(&Action::InterruptWindow { enable: false }));
        assert!(window.actions.contains(&Action::InjectEvent {
            vector: 0x20,
            kind: InjectionKind::ExternalInterrupt,
            error_code: None
        }));
        // EOI, then HLT: the vCPU sleeps until the next tick, which the
        // timer event then delivers.
        out(&mut monitor, 0x20, 0x20, 15);
        let hlt = monitor.handle_exit(&exit(ExitReason::Hlt, 0, 16));
        let Some(Action::Halt { wake_at_ns: Some(wake) }) = hlt.actions.last() else { panic!("{hlt:?}") };
        assert!((16_000_000..=30_000_000).contains(wake), "next tick at {wake} ns");
        let woken = monitor.handle_timer(0, *wake);
        assert_eq!(
            woken.actions[0],
            Action::InjectEvent { vector: 0x20, kind: InjectionKind::ExternalInterrupt, error_code: None }
        );
        assert!(
            woken.actions[1..].iter().all(|action| matches!(action, Action::SetTimer { .. })),
            "woken, the vCPU runs: {woken:?}"
        );
    }

    #[test]
    fn an_event_interrupted_by_an_exit_is_delivered_again() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut event = exit(ExitReason::IoInstruction, io(0x80, 1, false), 0);
        event.idt_vectoring_info = VECTORING_VALID | (3 << 8) | VECTORING_ERROR_CODE_VALID | 14;
        event.idt_vectoring_error_code = 2;
        let response = monitor.handle_exit(&event);
        assert_eq!(
            response.actions[0],
            Action::InjectEvent { vector: 14, kind: InjectionKind::HardwareException, error_code: Some(2) }
        );
    }

    #[test]
    fn control_register_writes_keep_the_bits_vmx_needs() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        // mov cr0, rbx (qualification: CR0, MOV to, register 3) turning on
        // paging with EFER.LME set enters IA-32e mode.
        let mut event = with_gprs(exit(ExitReason::ControlRegisterAccess, 0x300, 0), &[(RBX, 0x8000_0011)]);
        event.guest.cr0 = 0x11;
        event.guest.efer = EFER_LME;
        let response = monitor.handle_exit(&event);
        assert_eq!(
            response.actions,
            vec![
                Action::WriteField { encoding: Guest64::Ia32Efer.encoding(), value: EFER_LME | EFER_LMA },
                Action::WriteField { encoding: ControlNatural::Cr0ReadShadow.encoding(), value: 0x8000_0011 },
                Action::WriteField { encoding: GuestNatural::Cr0.encoding(), value: 0x8000_0031 },
                Action::SkipInstruction,
            ]
        );
        let rsp_source = with_gprs(exit(ExitReason::ControlRegisterAccess, 0x404, 0), &[(RSP, 0x20)]);
        let response = monitor.handle_exit(&rsp_source);
        assert!(response
            .actions
            .contains(&Action::WriteField { encoding: GuestNatural::Cr4.encoding(), value: 0x2020 }));
    }

    #[test]
    fn xsetbv_follows_the_architecture() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let xsetbv = |monitor: &mut GuestMonitor, cr4: u64, rcx: u64, value: u64| {
            let mut event = with_gprs(
                exit(ExitReason::Xsetbv, 0, 0),
                &[(RCX, rcx), (RAX, value & 0xffff_ffff), (RDX, value >> 32)],
            );
            event.guest.cr4 = cr4;
            monitor.handle_exit(&event)
        };
        let gp = Action::InjectEvent { vector: GP, kind: InjectionKind::HardwareException, error_code: Some(0) };
        let ud = Action::InjectEvent { vector: UD, kind: InjectionKind::HardwareException, error_code: None };
        assert_eq!(xsetbv(&mut monitor, 0, 0, 0b111).actions, vec![ud], "#UD without CR4.OSXSAVE");
        assert!(xsetbv(&mut monitor, CR4_OSXSAVE, 1, 0b111).actions.contains(&gp), "XCR1");
        assert!(xsetbv(&mut monitor, CR4_OSXSAVE, 0, 0b110).actions.contains(&gp), "no x87");
        assert!(xsetbv(&mut monitor, CR4_OSXSAVE, 0, 0b101).actions.contains(&gp), "AVX without SSE");
        assert!(xsetbv(&mut monitor, CR4_OSXSAVE, 0, 1 << 40).actions.contains(&gp), "unsupported");
        assert_eq!(
            xsetbv(&mut monitor, CR4_OSXSAVE, 0, 0b111).actions,
            vec![Action::SetXcr0 { value: 0b111 }, Action::SkipInstruction]
        );
        // CPUID.0DH.0:EBX now sizes the AVX state the guest enabled.
        let mut cpuid = with_gprs(exit(ExitReason::Cpuid, 0, 0), &[(RAX, 0xd)]);
        cpuid.guest.cr4 = CR4_OSXSAVE;
        assert_eq!(gpr(&monitor.handle_exit(&cpuid), RBX), Some(576 + 256));
    }

    #[test]
    fn the_next_timer_event_is_announced_once_per_change() {
        let plain = config("");
        let deadlines = |response: &Response| -> Vec<Option<u64>> {
            response
                .actions
                .iter()
                .filter_map(|action| match action {
                    Action::SetTimer { at_ns } => Some(*at_ns),
                    _ => None,
                })
                .collect()
        };
        // Channel 0, mode 2, a count of 11932 (0x2e9c): the first period ends
        // at 11932 / 1.193182 MHz = 10.000151 ms, announced on the exit that
        // armed it, and the next one 10.000151 ms later.
        let period_ns = |periods: u64| (periods * 11_932 * 1_000_000_000).div_ceil(1_193_182);
        let mut fresh = monitor_for(&plain);
        let first = out(&mut fresh, 0x43, 0x34, 0);
        assert_eq!(deadlines(&first), Vec::<Option<u64>>::new(), "a control word alone arms nothing");
        out(&mut fresh, 0x40, 0x9c, 0);
        let armed = out(&mut fresh, 0x40, 0x2e, 0);
        assert_eq!(deadlines(&armed), vec![Some(period_ns(1))], "{armed:?}");
        let quiet = fresh.handle_exit(&exit(ExitReason::Cpuid, 0, 1));
        assert!(deadlines(&quiet).is_empty(), "unchanged deadlines are not repeated");
        let later = fresh.handle_exit(&exit(ExitReason::Cpuid, 0, 12));
        assert_eq!(deadlines(&later), vec![Some(period_ns(2))]);
    }

    /// An EPT violation at `gpa` by the instruction `code` at RIP 0x10_0000
    /// in flat 32-bit protected mode (no paging), with the code in memory.
    fn mmio_exit(gpa: u64, write: bool, code: &[u8], memory: &mut VecMemory) -> ExitEvent {
        memory.write(0x10_0000, code).unwrap();
        let mut event = exit(ExitReason::EptViolation, if write { 0b010 } else { 0b001 }, 0);
        event.guest_physical_address = gpa;
        event.guest.cr0 = 0x11;
        event.guest.cs_access_rights = 0xc09b;
        event
    }

    fn rip_after(response: &Response) -> Option<u64> {
        response.actions.iter().find_map(|action| match action {
            Action::WriteField { encoding, value } if *encoding == GuestNatural::Rip.encoding() => Some(*value),
            _ => None,
        })
    }

    #[test]
    fn apic_mmio_is_decoded_emulated_and_skipped() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(2 << 20);
        // mov eax, [ebx]: the APIC version register.
        let read = mmio_exit(0xfee0_0030, false, &[0x8b, 0x03], &mut memory);
        let read = with_gprs(read, &[(RAX, 0xdead_beef_0000_0000), (RBX, 0xfee0_0030)]);
        let response = monitor.handle_exit_with_memory(&read, &mut memory);
        assert_eq!(gpr(&response, RAX), Some(0x5_0014), "a 32-bit load clears bits 63:32");
        assert_eq!(rip_after(&response), Some(0x10_0002));
        assert!(!response.actions.contains(&Action::SkipInstruction), "the exit's length is not defined");
        // mov dword [eax+0x80], 0x20: TPR.
        let write = mmio_exit(0xfee0_0080, true, &[0xc7, 0x80, 0x80, 0, 0, 0, 0x20, 0, 0, 0], &mut memory);
        let response = monitor.handle_exit_with_memory(&write, &mut memory);
        assert_eq!(rip_after(&response), Some(0x10_000a));
        assert_eq!(monitor.platform().local_apic(0).unwrap().ppr(), 0x20);
        // The IOAPIC: mov [ecx], edx selects the version, mov eax, [ecx+0x10] reads it.
        let select = with_gprs(mmio_exit(0xfec0_0000, true, &[0x89, 0x11], &mut memory), &[(RDX, 1)]);
        monitor.handle_exit_with_memory(&select, &mut memory);
        let version = mmio_exit(0xfec0_0010, false, &[0x8b, 0x41, 0x10], &mut memory);
        assert_eq!(gpr(&monitor.handle_exit_with_memory(&version, &mut memory), RAX), Some(0x0017_0011));
    }

    #[test]
    fn mmio_that_cannot_be_emulated_stops_the_guest_with_the_reason() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(2 << 20);
        let event = mmio_exit(0xfee0_0030, false, &[0x8b, 0x03], &mut memory);
        assert!(stop_detail(&monitor.handle_exit(&event)).1.contains("gave no guest memory"));
        // add eax, [ebx] is not a move.
        let add = mmio_exit(0xfee0_0030, false, &[0x03, 0x03], &mut memory);
        let (reason, detail) = stop_detail(&monitor.handle_exit_with_memory(&add, &mut memory));
        assert_eq!(reason, StopReason::GuestError);
        assert!(detail.contains("opcode 0x03"), "{detail}");
        // A load where the CPU reported a write.
        let mismatch = mmio_exit(0xfee0_0030, true, &[0x8b, 0x03], &mut memory);
        assert!(stop_detail(&monitor.handle_exit_with_memory(&mismatch, &mut memory)).1.contains("does not match"));
        // Outside every device it is still a wild access.
        let wild = mmio_exit(0xfed0_0000, false, &[0x8b, 0x03], &mut memory);
        assert!(stop_detail(&monitor.handle_exit_with_memory(&wild, &mut memory)).1.contains("no RAM and no device"));
    }

    /// Long mode with paging: the instruction is found through the guest's
    /// 4-level tables, and may straddle a page boundary.
    #[test]
    fn the_instruction_is_read_through_the_guest_page_tables() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(4 << 20);
        let rip: u64 = 0xffff_ffff_8100_0ffe;
        // PML4 at 0x1000, PDPT 0x2000, PD 0x3000 with one 2-MiB page of
        // code at physical 0x0, covering RIP's page and the next.
        memory.write_u64(0x1000 + ((rip >> 39) & 0x1ff) * 8, 0x2003).unwrap();
        memory.write_u64(0x2000 + ((rip >> 30) & 0x1ff) * 8, 0x3003).unwrap();
        memory.write_u64(0x3000 + ((rip >> 21) & 0x1ff) * 8, 0x0020_0083).unwrap();
        // mov eax, [rip+disp32] split across the page boundary.
        memory.write(0x20_0ffe, &[0x8b, 0x05, 0x10, 0, 0, 0]).unwrap();
        let mut event = exit(ExitReason::EptViolation, 0b001, 0);
        event.guest_physical_address = 0xfee0_0020;
        event.guest.rip = rip;
        event.guest.cr0 = 0x8000_0011;
        event.guest.cr3 = 0x1000;
        event.guest.cr4 = 0x20;
        event.guest.efer = EFER_LME | EFER_LMA;
        event.guest.cs_access_rights = 0xa09b;
        let response = monitor.handle_exit_with_memory(&event, &mut memory);
        assert_eq!(gpr(&response, RAX), Some(0), "APIC ID 0");
        assert_eq!(rip_after(&response), Some(rip + 6));
    }

    #[test]
    fn local_apic_timer_interrupts_are_injected() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(2 << 20);
        let store = |monitor: &mut GuestMonitor, memory: &mut VecMemory, offset: u64, value: u64| {
            let event = with_gprs(mmio_exit(0xfee0_0000 + offset, true, &[0x89, 0x18], memory), &[(RBX, value)]);
            monitor.handle_exit_with_memory(&event, memory)
        };
        store(&mut monitor, &mut memory, 0x3e0, 0xb); // divide by 1
        store(&mut monitor, &mut memory, 0x320, 0xec); // one-shot, vector 0xec
        let armed = store(&mut monitor, &mut memory, 0x380, 5_000_000); // 5 ms at 1 GHz
        assert!(armed.actions.contains(&Action::SetTimer { at_ns: Some(5_000_000) }), "{armed:?}");
        let hlt = monitor.handle_exit(&exit(ExitReason::Hlt, 0, 1));
        assert_eq!(hlt.actions.last(), Some(&Action::Halt { wake_at_ns: Some(5_000_000) }));
        let woken = monitor.handle_timer(0, 5_000_000);
        assert_eq!(
            woken.actions[0],
            Action::InjectEvent { vector: 0xec, kind: InjectionKind::ExternalInterrupt, error_code: None }
        );
        assert!(!woken.actions.iter().any(|action| matches!(action, Action::Halt { .. })), "{woken:?}");
    }

    #[test]
    fn the_power_button_wakes_a_halted_guest_that_listens_and_not_one_that_does_not() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(2 << 20);
        let store = |monitor: &mut GuestMonitor, memory: &mut VecMemory, address: u64, value: u64| {
            let event = with_gprs(mmio_exit(address, true, &[0x89, 0x18], memory), &[(RBX, value)]);
            monitor.handle_exit_with_memory(&event, memory)
        };
        // Not listening: the press is logged, the halted vCPU stays halted.
        let hlt = monitor.handle_exit(&exit(ExitReason::Hlt, 0, 1));
        assert!(matches!(hlt.actions.last(), Some(Action::Halt { .. })));
        let ignored = monitor.handle_power_button(0, 1_000);
        assert!(!injects(&ignored), "{ignored:?}");
        assert!(matches!(ignored.actions.last(), Some(Action::Halt { .. })), "{ignored:?}");
        // Linux: LINT0 masked, IOAPIC pin 9 level to vector 0x39, PWRBTN_EN.
        store(&mut monitor, &mut memory, 0xfee0_0350, 0x1_0700);
        store(&mut monitor, &mut memory, 0xfec0_0000, 0x22);
        store(&mut monitor, &mut memory, 0xfec0_0010, 0x8039);
        // The press before PWRBTN_EN is still pending: enabling raises the SCI.
        let enabled = out(&mut monitor, 0x603, 0x01, 1); // PM1_EN.PWRBTN_EN (high byte)
        assert!(injects(&enabled), "{enabled:?}");
        // Cleared and EOI'd; the next press wakes the halted vCPU with the SCI.
        out(&mut monitor, 0x601, 0x01, 1); // PM1_STS.PWRBTN_STS: write 1 to clear
        store(&mut monitor, &mut memory, 0xfee0_00b0, 0);
        let hlt = monitor.handle_exit(&exit(ExitReason::Hlt, 0, 1));
        assert!(matches!(hlt.actions.last(), Some(Action::Halt { .. })), "{hlt:?}");
        let woken = monitor.handle_power_button(0, 2_000);
        assert!(woken.actions.contains(&Action::InjectEvent {
            vector: 0x39,
            kind: InjectionKind::ExternalInterrupt,
            error_code: None
        }));
        assert!(!woken.actions.iter().any(|action| matches!(action, Action::Halt { .. })), "{woken:?}");
        assert!(matches!(monitor.handle_power_button(7, 0).actions.last(), Some(Action::Stop { .. })));
    }

    #[test]
    fn nmi_ipis_are_injected_unless_an_nmi_is_being_handled() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(2 << 20);
        // ICR: NMI, self included (shorthand "all including self").
        let send = with_gprs(mmio_exit(0xfee0_0300, true, &[0x89, 0x18], &mut memory), &[(RBX, 0x0008_0400)]);
        let mut blocked = send;
        blocked.guest.interruptibility = BLOCKED_BY_NMI;
        let response = monitor.handle_exit_with_memory(&blocked, &mut memory);
        assert!(!injects(&response), "blocked by NMI: it waits");
        let response = monitor.handle_exit(&exit(ExitReason::Cpuid, 0, 0));
        assert!(response.actions.contains(&Action::InjectEvent {
            vector: 2,
            kind: InjectionKind::Nmi,
            error_code: None
        }));
    }

    /// The BSP writes the xAPIC ICR: destination `apic_id`, low word `low`.
    fn send_ipi(monitor: &mut GuestMonitor, memory: &mut VecMemory, apic_id: u32, low: u32) -> Response {
        let high = with_gprs(mmio_exit(0xfee0_0310, true, &[0x89, 0x18], memory), &[(RBX, u64::from(apic_id) << 24)]);
        monitor.handle_exit_with_memory(&high, memory);
        let send = with_gprs(mmio_exit(0xfee0_0300, true, &[0x89, 0x18], memory), &[(RBX, u64::from(low))]);
        monitor.handle_exit_with_memory(&send, memory)
    }

    /// INIT and SIPI (vector 8) from the BSP start AP 1.
    fn start_ap(monitor: &mut GuestMonitor, memory: &mut VecMemory) {
        send_ipi(monitor, memory, 1, 0x0000_c500);
        send_ipi(monitor, memory, 1, 0x0000_0608);
        monitor.handle_timer(1, 0);
    }

    fn on_vcpu(mut event: ExitEvent, vcpu: u32) -> ExitEvent {
        event.vcpu = vcpu;
        event
    }

    #[test]
    fn init_and_sipi_start_an_ap_in_real_mode_at_the_vector() {
        let two = config("vcpus = 2");
        let mut monitor = monitor_for(&two);
        let mut memory = VecMemory::new(2 << 20);
        // Nothing wakes a waiting AP but INIT and SIPI.
        let idle = monitor.handle_timer(1, 0);
        assert_eq!(idle.actions, vec![Action::Halt { wake_at_ns: None }]);

        let init = send_ipi(&mut monitor, &mut memory, 1, 0x0000_c500);
        assert!(init.actions.contains(&Action::Kick { vcpu: 1 }), "{init:?}");
        // INIT level de-assert: no news for the AP, so no second kick.
        let deassert = send_ipi(&mut monitor, &mut memory, 1, 0x0000_8500);
        assert!(!deassert.actions.iter().any(|action| matches!(action, Action::Kick { .. })), "{deassert:?}");
        assert_eq!(monitor.handle_timer(1, 0).actions, vec![Action::Halt { wake_at_ns: None }], "INIT: it waits");

        let sipi = send_ipi(&mut monitor, &mut memory, 1, 0x0000_069a);
        assert!(sipi.actions.contains(&Action::Kick { vcpu: 1 }));
        let started = monitor.handle_timer(1, 0);
        assert!(started
            .actions
            .contains(&Action::WriteField { encoding: GuestNatural::CsBase.encoding(), value: 0x9a000 }));
        assert!(!started.actions.iter().any(|action| matches!(action, Action::Halt { .. })), "it runs");
        // A second SIPI (Linux sends two) finds it running: ignored.
        let again = send_ipi(&mut monitor, &mut memory, 1, 0x0000_069a);
        assert!(!again.actions.iter().any(|action| matches!(action, Action::Kick { .. })), "{again:?}");
        // Its exits are its own: CPUID reports APIC ID 1.
        let cpuid = monitor.handle_exit(&with_gprs(on_vcpu(exit(ExitReason::Cpuid, 0, 1), 1), &[(RAX, 1)]));
        assert_eq!(gpr(&cpuid, RBX).map(|ebx| ebx >> 24), Some(1), "{cpuid:?}");
    }

    #[test]
    fn fixed_ipis_wake_a_halted_ap_and_reach_a_running_one_once() {
        let two = config("vcpus = 2");
        let mut monitor = monitor_for(&two);
        let mut memory = VecMemory::new(2 << 20);
        start_ap(&mut monitor, &mut memory);
        // The AP enables its APIC (SVR) and halts with interrupts on.
        let enable = on_vcpu(with_gprs(mmio_exit(0xfee0_00f0, true, &[0x89, 0x18], &mut memory), &[(RBX, 0x1ff)]), 1);
        monitor.handle_exit_with_memory(&enable, &mut memory);
        let hlt = monitor.handle_exit(&on_vcpu(exit(ExitReason::Hlt, 0, 1), 1));
        assert!(matches!(hlt.actions.last(), Some(Action::Halt { .. })), "{hlt:?}");

        let ipi = send_ipi(&mut monitor, &mut memory, 1, 0x0000_0040);
        assert!(ipi.actions.contains(&Action::Kick { vcpu: 1 }), "{ipi:?}");
        let woken = monitor.handle_timer(1, 2_000_000);
        assert_eq!(
            woken.actions[0],
            Action::InjectEvent { vector: 0x40, kind: InjectionKind::ExternalInterrupt, error_code: None }
        );

        // Running with interrupts off, the AP gets one kick, then an
        // interrupt window: more news needs no more kicks until it is open.
        let ipi = send_ipi(&mut monitor, &mut memory, 1, 0x0000_0051);
        assert!(ipi.actions.contains(&Action::Kick { vcpu: 1 }));
        let mut busy = on_vcpu(exit(ExitReason::PreemptionTimerExpired, 0, 3), 1);
        busy.guest.rflags = 0x2;
        assert!(monitor.handle_exit(&busy).actions.contains(&Action::InterruptWindow { enable: true }));
        let ipi = send_ipi(&mut monitor, &mut memory, 1, 0x0000_0062);
        assert!(!ipi.actions.iter().any(|action| matches!(action, Action::Kick { .. })), "{ipi:?}");
    }

    #[test]
    fn the_guest_powers_off_only_when_every_vcpu_halts_with_interrupts_off() {
        let two = config("vcpus = 2");
        let mut monitor = monitor_for(&two);
        let mut memory = VecMemory::new(2 << 20);
        start_ap(&mut monitor, &mut memory);
        let mut ap_off = on_vcpu(exit(ExitReason::Hlt, 0, 1), 1);
        ap_off.guest.rflags = 0x2;
        let parked = monitor.handle_exit(&ap_off);
        assert_eq!(parked.actions.last(), Some(&Action::Halt { wake_at_ns: None }), "{parked:?}");
        let mut bsp_off = exit(ExitReason::Hlt, 0, 2);
        bsp_off.guest.rflags = 0x2;
        let response = monitor.handle_exit(&bsp_off);
        assert_eq!(stop_detail(&response).0, StopReason::PowerOff);
    }

    #[test]
    fn init_to_a_running_ap_sends_it_back_to_wait_for_a_sipi() {
        let two = config("vcpus = 2");
        let mut monitor = monitor_for(&two);
        let mut memory = VecMemory::new(2 << 20);
        start_ap(&mut monitor, &mut memory);
        let init = send_ipi(&mut monitor, &mut memory, 1, 0x0000_c500);
        assert!(init.actions.contains(&Action::Kick { vcpu: 1 }));
        // The kicked AP exits before its first instruction; the exit is
        // dropped, and it waits.
        let response = monitor.handle_exit(&on_vcpu(exit(ExitReason::PreemptionTimerExpired, 0, 1), 1));
        assert_eq!(response.actions.last(), Some(&Action::Halt { wake_at_ns: None }), "{response:?}");
        assert!(!response.actions.iter().any(|action| matches!(action, Action::InjectEvent { .. })));
    }

    #[test]
    fn loading_a_kernel_writes_the_acpi_tables() {
        let plain = config("vcpus = 2");
        let mut monitor = monitor_for(&plain);
        let mut memory = VecMemory::new(64 << 20);
        let image = crate::loader::test_images::aout_image(0x10_0000, 0x100, 0, 0, 0);
        monitor.load(&mut memory, &image, "k", "", &[]).unwrap();
        assert_eq!(&memory.as_slice()[0xf_0000..0xf_0008], b"RSD PTR ");
        // The MADT (the XSDT's second entry) lists two local APICs.
        let xsdt = u64::from_le_bytes(memory.as_slice()[0xf_0018..0xf_0020].try_into().unwrap()) as usize;
        let madt = u64::from_le_bytes(memory.as_slice()[xsdt + 44..xsdt + 52].try_into().unwrap()) as usize;
        let madt_len = u32::from_le_bytes(memory.as_slice()[madt + 4..madt + 8].try_into().unwrap()) as usize;
        let entries = &memory.as_slice()[madt + 44..madt + madt_len];
        let mut apics = 0;
        let mut offset = 0;
        while offset < entries.len() {
            apics += usize::from(entries[offset] == 0);
            offset += usize::from(entries[offset + 1]);
        }
        assert_eq!(apics, 2);
    }

    #[test]
    fn acpi_s5_powers_the_guest_off() {
        let plain = config("");
        let mut monitor = monitor_for(&plain);
        let out16 = |monitor: &mut GuestMonitor, value: u64| {
            monitor.handle_exit(&with_gprs(exit(ExitReason::IoInstruction, io(0x604, 2, false), 0), &[(RAX, value)]))
        };
        assert!(!out16(&mut monitor, 5 << 10).actions.iter().any(|action| matches!(action, Action::Stop { .. })));
        let response = out16(&mut monitor, (5 << 10) | (1 << 13));
        assert_eq!(stop_detail(&response), (StopReason::PowerOff, "ACPI S5".into()));
    }
}
