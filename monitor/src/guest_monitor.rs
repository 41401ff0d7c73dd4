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
    Action, ExitEvent, GuestSnapshot, InjectionKind, Response, StopReason, LOG_WARN, MAX_TEXT, RAX, RBX, RCX, RDX,
};
use vmx::exit::{CrAccess, ExitReason, ExitReasonField, IoDirection, IoInstruction};
use vmx::vmcs::{Control64, ControlNatural, Guest64, GuestNatural};

use crate::devices::platform::{LegacyPlatform, PlatformConfig};
use crate::guest_memory::GuestMemory;
use crate::loader::{self, LoadError, LoadedKernel, Module};
use crate::policy::cpuid::{CpuidConfig, DynamicState, GuestCpuid, NativeSupport};
use crate::policy::msr::{GuestMsrField, MsrContext, MsrOutcome, MsrPolicy, MsrState, UnknownMsrAction};

const RFLAGS_IF: u64 = 1 << 9;
/// Interruptibility: blocking by STI or MOV SS delays interrupts by one
/// instruction.
const BLOCKED_BY_STI_OR_MOV_SS: u32 = 0b11;
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

/// Per-vCPU state the monitor keeps between exits.
struct VcpuState {
    msrs: MsrState,
    tsc_offset: u64,
    xcr0: u64,
    /// The vCPU executed HLT with interrupts enabled and waits for one.
    halted: bool,
}

pub struct GuestMonitor {
    cpuid: GuestCpuid,
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
        let vcpus = (0..setup.config.vcpus.max(1))
            .map(|index| VcpuState { msrs: MsrState::new(index), tsc_offset: 0, xcr0: 1, halted: false })
            .collect();
        Self {
            cpuid,
            msr_policy,
            vcpus,
            platform: LegacyPlatform::new(&PlatformConfig::new(setup.ram_bytes, setup.wall_clock_unix_secs)),
            tsc_khz: u64::from(setup.tsc_khz.max(1)),
            console_forwarded: 0,
            announced_deadline: None,
            msr_faults: 0,
            exits: ExitCounters { by_reason: [0; 80] },
        }
    }

    /// Loads the guest's kernel: a Linux bzImage (with `modules[0]` as its
    /// initrd) or a multiboot kernel (with all modules).
    pub fn load(
        &mut self,
        memory: &mut impl GuestMemory,
        kernel: &[u8],
        kernel_name: &str,
        cmdline: &str,
        modules: &[Module<'_>],
    ) -> Result<LoadedKernel, LoadError> {
        if kernel.get(0x202..0x206) == Some(b"HdrS") {
            loader::load_linux(memory, kernel, kernel_name, cmdline, modules.first().map(|module| module.bytes))
        } else {
            loader::load_multiboot(memory, kernel, kernel_name, cmdline, modules)
        }
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

    /// Answers one VM exit.
    pub fn handle_exit(&mut self, exit: &ExitEvent) -> Response {
        // Most answers are a few register writes and a skip: one allocation.
        let mut response = Response { actions: Vec::with_capacity(8) };
        let Some(vcpu) = self.vcpus.get(exit.vcpu as usize).map(|_| exit.vcpu as usize) else {
            return stop(StopReason::MonitorError, format!("exit from unknown vCPU {}", exit.vcpu));
        };
        let field = ExitReasonField(exit.exit_reason);
        let now = self.now_ns(exit.guest.tsc);
        self.platform.advance(now);
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
        // An exit in the middle of delivering an event (e.g. an EPT
        // violation on the IDT) must not lose that event.
        let reinjected = self.reinject_interrupted_event(exit, &mut response);

        let handled = match reason {
            ExitReason::Cpuid => self.cpuid(vcpu, exit, &mut response),
            ExitReason::Rdmsr => self.rdmsr(vcpu, exit, &mut response),
            ExitReason::Wrmsr => self.wrmsr(vcpu, exit, &mut response),
            ExitReason::IoInstruction => self.io(exit, now, &mut response),
            ExitReason::ControlRegisterAccess => self.control_register(exit, &mut response),
            ExitReason::Hlt if exit.guest.rflags & RFLAGS_IF == 0 => {
                // Nothing the monitor delivers (no NMI, no INIT) can wake a
                // vCPU halted with interrupts off: this is how a guest
                // without ACPI powers off (Linux's "System halted").
                return stop(
                    StopReason::PowerOff,
                    format!("halted with interrupts disabled at RIP {:#x}", exit.guest.rip),
                );
            }
            ExitReason::Hlt => {
                response.actions.push(Action::SkipInstruction);
                self.vcpus[vcpu].halted = true;
                Ok(())
            }
            ExitReason::Xsetbv => self.xsetbv(vcpu, exit, &mut response),
            ExitReason::InterruptWindow => {
                response.actions.push(Action::InterruptWindow { enable: false });
                Ok(())
            }
            ExitReason::ExternalInterrupt | ExitReason::PreemptionTimerExpired => Ok(()),
            ExitReason::TripleFault => {
                return stop(StopReason::TripleFault, format!("triple fault at RIP {:#x}", exit.guest.rip));
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
            ExitReason::Vmcall
            | ExitReason::Vmclear
            | ExitReason::Vmlaunch
            | ExitReason::Vmptrld
            | ExitReason::Vmptrst
            | ExitReason::Vmread
            | ExitReason::Vmresume
            | ExitReason::Vmwrite
            | ExitReason::Vmxoff
            | ExitReason::Vmxon
            | ExitReason::Invept
            | ExitReason::Invvpid
            | ExitReason::Vmfunc => {
                // VMX is not offered to this guest (nested VMX comes later).
                response.actions.push(Action::InjectEvent {
                    vector: UD,
                    kind: InjectionKind::HardwareException,
                    error_code: None,
                });
                Ok(())
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
        self.forward_console(&mut response);
        if let Some(status) = self.platform.exit_status() {
            response.actions.push(Action::Stop { reason: StopReason::DebugExit { status }, detail: String::new() });
            return response;
        }
        if !reinjected && !injects(&response) {
            self.deliver_interrupt(vcpu, &exit.guest, reason, &mut response);
        }
        if self.vcpus[vcpu].halted {
            response.actions.push(Action::Halt { wake_at_ns: self.platform.next_event_ns(now) });
        } else {
            self.announce_deadline(now, &mut response);
        }
        response
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

    /// A deadline the vCPU waited for has passed (it is halted).
    pub fn handle_timer(&mut self, vcpu: u32, now_ns: u64) -> Response {
        let mut response = Response::default();
        let Some(state) = self.vcpus.get(vcpu as usize) else {
            return stop(StopReason::MonitorError, format!("timer for unknown vCPU {vcpu}"));
        };
        let halted = state.halted;
        self.platform.advance(now_ns);
        self.forward_console(&mut response);
        if halted {
            // A halted vCPU executed HLT with IF=1 and no instruction since:
            // any pending interrupt can be taken.
            if self.platform.pending_interrupt_vector().is_some() {
                let vector = self.platform.acknowledge_interrupt();
                self.vcpus[vcpu as usize].halted = false;
                response.actions.push(Action::InjectEvent {
                    vector,
                    kind: InjectionKind::ExternalInterrupt,
                    error_code: None,
                });
            } else {
                response.actions.push(Action::Halt { wake_at_ns: self.platform.next_event_ns(now_ns) });
            }
        } else {
            self.announce_deadline(now_ns, &mut response);
        }
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
        if self.platform.pending_interrupt_vector().is_none() {
            return;
        }
        // After HLT, STI's one-instruction shadow is over once the shim
        // skips the instruction; otherwise it blocks like on hardware.
        let shadow = guest.interruptibility & BLOCKED_BY_STI_OR_MOV_SS != 0 && reason != ExitReason::Hlt;
        if guest.rflags & RFLAGS_IF != 0 && !shadow {
            let vector = self.platform.acknowledge_interrupt();
            self.vcpus[vcpu].halted = false;
            response.actions.push(Action::InjectEvent {
                vector,
                kind: InjectionKind::ExternalInterrupt,
                error_code: None,
            });
        } else {
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

    fn rdmsr(&mut self, vcpu: usize, exit: &ExitEvent, response: &mut Response) -> Result<(), String> {
        let msr = exit.guest.gprs[RCX as usize] as u32;
        let state = &mut self.vcpus[vcpu];
        let context = msr_context(&self.msr_policy, state.tsc_offset, exit.guest.tsc);
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

    fn wrmsr(&mut self, vcpu: usize, exit: &ExitEvent, response: &mut Response) -> Result<(), String> {
        let gprs = &exit.guest.gprs;
        let msr = gprs[RCX as usize] as u32;
        let value = (gprs[RDX as usize] << 32) | (gprs[RAX as usize] & 0xffff_ffff);
        let state = &mut self.vcpus[vcpu];
        let context = msr_context(&self.msr_policy, state.tsc_offset, exit.guest.tsc);
        match state.msrs.wrmsr(msr, value, &context) {
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
fn msr_context(policy: &MsrPolicy, tsc_offset: u64, guest_tsc: u64) -> MsrContext<'_> {
    MsrContext { policy, host_tsc: guest_tsc.wrapping_sub(tsc_offset), tsc_offset, vmx_capabilities: None }
}

fn injects(response: &Response) -> bool {
    response.actions.iter().any(|action| matches!(action, Action::InjectEvent { .. }))
}

fn stop(reason: StopReason, detail: String) -> Response {
    Response { actions: alloc::vec![Action::Stop { reason, detail }] }
}

fn log(level: u8, mut text: String) -> Action {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
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
            woken.actions,
            vec![Action::InjectEvent { vector: 0x20, kind: InjectionKind::ExternalInterrupt, error_code: None }]
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
}
