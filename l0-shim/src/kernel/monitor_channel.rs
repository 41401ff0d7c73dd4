//! The shim's side of the monitor ABI: what a monitor is told about a VM
//! exit, and how its answer is checked and applied to the vCPU.
//!
//! The snapshot is read from the VMCS and the saved registers; the response
//! is applied action by action, each first checked by
//! `l0_shim::action_validation`. A rejected action ends the guest with the
//! rejection as its reason: a monitor that asks for something it may not
//! have is compromised or broken, and either way its guest cannot go on.

use alloc::string::String;
use alloc::vec::Vec;

use l0_shim::action_validation::{self, Level, Rejection};
use monitor_abi::{
    Action, ExitEvent, FullState, GuestSnapshot, InjectionKind, Response, StopReason, FULL_STATE_FIELDS,
    FULL_STATE_TIMER_INDEX, GPR_COUNT, RSP,
};
use vmx::controls::{EntryControls, PrimaryControls};
use vmx::exit::{ExitReason, ExitReasonField};
use vmx::vmcs::ReadOnlyNatural;
use vmx::vmcs::{
    Control32, Control64, ControlNatural, Guest16, Guest32, Guest64, GuestNatural, ReadOnly32, ReadOnly64,
};

use crate::arch::cpu::rdtsc;
use crate::arch::vmx_instructions::{vmread, GuestRegisters};
use crate::kernel::vcpu::{Vcpu, CR0_OWNED_BITS, CR4_OWNED_BITS};
use crate::kernel::{vmcs, vmx_root, xsave};

/// Blocking by STI and by MOV SS (interruptibility-state bits 0 and 1):
/// skipping an instruction ends both, as executing it would have.
const BLOCKING_BY_STI_OR_MOV_SS: u32 = 0b11;
const INTERRUPTION_VALID: u32 = 1 << 31;
const INTERRUPTION_DELIVER_ERROR_CODE: u32 = 1 << 11;

/// The general registers in the ABI's (x86 encoding) order.
pub fn gprs_in_abi_order(registers: &GuestRegisters, rsp: u64) -> [u64; GPR_COUNT] {
    let r = registers;
    [r.rax, r.rcx, r.rdx, r.rbx, rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]
}

/// The register that ABI index `index` names; RSP (4) lives in the VMCS.
fn gpr_mut(registers: &mut GuestRegisters, index: u8) -> Option<&mut u64> {
    let r = registers;
    Some(match index {
        0 => &mut r.rax,
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        15 => &mut r.r15,
        _ => return None,
    })
}

/// A control register as the guest sees it: the bits the shim owns come
/// from the read shadow.
fn guest_visible(real: u64, mask: u64, shadow: u64) -> u64 {
    (real & !mask) | (shadow & mask)
}

/// Whether the monitor needs the whole guest state for this exit: every
/// exit of L2, and L1's VMX instructions (operands, modes).
fn needs_full_state(from_l2: bool, exit_reason: u32) -> bool {
    from_l2 || ExitReasonField(exit_reason).reason().is_ok_and(ExitReason::is_vmx_instruction)
}

/// The current VMCS's guest-state area. For L2 under L1's preemption
/// timer, the timer field is what is left of L1's value (the hardware
/// field also counts the shim's time slice).
fn full_state(from_l2: bool, l1_timer: Option<u64>) -> FullState {
    let mut full = FullState { from_l2, ..FullState::default() };
    for (value, encoding) in full.fields.iter_mut().zip(FULL_STATE_FIELDS) {
        // A field this CPU lacks (none of these on a CPU with EPT) reads 0.
        *value = vmread(encoding).unwrap_or(0);
    }
    if let Some(left) = l1_timer {
        full.fields[FULL_STATE_TIMER_INDEX] = left;
    }
    full
}

/// The current VMCS's exit, as the monitor is told about it.
pub fn snapshot_exit(index: u32, vcpu: &Vcpu) -> ExitEvent {
    let mut exit = snapshot_basic_exit(index, &vcpu.registers);
    if needs_full_state(vcpu.in_l2(), exit.exit_reason) {
        exit.full = Some(full_state(vcpu.in_l2(), vcpu.l1_timer().filter(|_| vcpu.in_l2())));
    }
    exit
}

fn snapshot_basic_exit(vcpu: u32, registers: &GuestRegisters) -> ExitEvent {
    let guest = GuestSnapshot {
        gprs: gprs_in_abi_order(registers, vmcs::read(GuestNatural::Rsp)),
        rip: vmcs::read(GuestNatural::Rip),
        rflags: vmcs::read(GuestNatural::Rflags),
        cr0: guest_visible(
            vmcs::read(GuestNatural::Cr0),
            vmcs::read(ControlNatural::Cr0GuestHostMask),
            vmcs::read(ControlNatural::Cr0ReadShadow),
        ),
        cr3: vmcs::read(GuestNatural::Cr3),
        cr4: guest_visible(
            vmcs::read(GuestNatural::Cr4),
            vmcs::read(ControlNatural::Cr4GuestHostMask),
            vmcs::read(ControlNatural::Cr4ReadShadow),
        ),
        efer: vmcs::read(Guest64::Ia32Efer),
        tsc: rdtsc().wrapping_add(vmcs::read(Control64::TscOffset)),
        cs_selector: vmcs::read(Guest16::CsSelector),
        cs_access_rights: vmcs::read(Guest32::CsAccessRights),
        interruptibility: vmcs::read(Guest32::InterruptibilityState),
        activity_state: vmcs::read(Guest32::ActivityState),
    };
    ExitEvent {
        vcpu,
        exit_reason: vmcs::read(ReadOnly32::ExitReason),
        qualification: vmcs::read(ReadOnlyNatural::ExitQualification),
        guest_linear_address: vmcs::read(ReadOnlyNatural::GuestLinearAddress),
        guest_physical_address: vmcs::read(ReadOnly64::GuestPhysicalAddress),
        instruction_length: vmcs::read(ReadOnly32::ExitInstructionLength),
        instruction_info: vmcs::read(ReadOnly32::ExitInstructionInfo),
        interruption_info: vmcs::read(ReadOnly32::ExitInterruptionInfo),
        interruption_error_code: vmcs::read(ReadOnly32::ExitInterruptionErrorCode),
        idt_vectoring_info: vmcs::read(ReadOnly32::IdtVectoringInfo),
        idt_vectoring_error_code: vmcs::read(ReadOnly32::IdtVectoringErrorCode),
        guest,
        full: None,
    }
}

/// What the vCPU does after a response has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Run,
    /// Wait for an interrupt, or until the deadline.
    Halt {
        wake_at_ns: Option<u64>,
    },
    Stop {
        reason: StopReason,
        detail: String,
    },
}

/// Output of a response that the caller routes: console bytes to the
/// guest's console mirror, log lines to the shim's log.
#[derive(Debug, Default)]
pub struct Output {
    pub console: Vec<u8>,
    pub logs: Vec<(u8, String)>,
    pub timer_ns: Option<Option<u64>>,
    /// A new XCR0 for the vCPU (already checked against the CPU).
    pub xcr0: Option<u64>,
    /// Other vCPUs of the guest the monitor asked to give an event to
    /// (not yet checked against the guest's vCPU count).
    pub kicks: Vec<u32>,
}

/// Checks and applies `response` to `vcpu`, whose VMCS is current (and
/// stays current: `EnterL2` and `ExitL2` switch between its vmcs01 and
/// vmcs02).
pub fn apply(response: Response, vcpu: &mut Vcpu, output: &mut Output) -> Next {
    let mut next = Next::Run;
    for action in response.actions {
        let level = if vcpu.in_l2() { Level::L2 } else { Level::L1 };
        if let Err(rejection) = action_validation::check(&action, level) {
            return refused(rejection);
        }
        match action {
            Action::SetGpr { index, value } if index == RSP => vmcs::write(GuestNatural::Rsp, value),
            Action::SetGpr { index, value } => match gpr_mut(&mut vcpu.registers, index) {
                Some(register) => *register = value,
                None => return monitor_error("register index out of range"),
            },
            Action::WriteField { encoding, value } => {
                if let Err(why) = write_field(vcpu, level, encoding, value) {
                    return why;
                }
            }
            Action::InjectEvent { vector, kind, error_code } => inject(vector, kind, error_code),
            Action::SkipInstruction => skip_instruction(),
            Action::Halt { wake_at_ns } => next = Next::Halt { wake_at_ns },
            Action::SetTimer { at_ns } => output.timer_ns = Some(at_ns),
            Action::InterruptWindow { enable } => set_interrupt_window_exiting(enable),
            Action::ConsoleOutput { bytes } => output.console.extend_from_slice(&bytes),
            Action::Log { level, text } => output.logs.push((level, text)),
            Action::Stop { reason, detail } => return Next::Stop { reason, detail },
            Action::SetXcr0 { value } => match xsave::invalid_xcr0(value) {
                Some(why) => return monitor_error(&alloc::format!("the shim refused XCR0 {value:#x}: {why}")),
                None => output.xcr0 = Some(value),
            },
            Action::Kick { vcpu } => output.kicks.push(vcpu),
            Action::EnterL2 { .. } if !vcpu.nested_allowed => {
                return monitor_error("EnterL2 for a guest without nestedhvm = 1");
            }
            Action::EnterL2 { ept02 } => {
                let Some(capabilities) = vmx_root::capabilities() else {
                    return monitor_error("EnterL2 without VMX");
                };
                if let Err(error) = vcpu.enter_l2(capabilities, ept02) {
                    return monitor_error(&alloc::format!("entering L2: {error}"));
                }
            }
            Action::ExitL2 => {
                if let Err(error) = vcpu.exit_l2() {
                    return monitor_error(&alloc::format!("leaving L2: {error}"));
                }
            }
            Action::MapL2 { l2_gpa, l1_gpa, size_log2, permissions } => {
                if let Err(refusal) = vcpu.map_l2(l2_gpa, l1_gpa, size_log2, permissions) {
                    return monitor_error(&alloc::format!("the shim refused the monitor's {refusal}"));
                }
            }
            Action::FlushEpt02 => vcpu.flush_ept02(),
            Action::FlushVpid02 => vcpu.flush_vpid02(),
        }
    }
    next
}

/// One checked field write: on vmcs02 the controls get the shim's bits
/// and must suit the CPU; L1's preemption timer for L2 is kept by the
/// shim, which runs L2 on the same timer.
fn write_field(vcpu: &mut Vcpu, level: Level, encoding: u32, value: u64) -> Result<(), Next> {
    let mut value = value;
    if level == Level::L2 {
        if encoding == vmx::vmcs::Guest32::PreemptionTimerValue.encoding() {
            vcpu.set_l1_timer(value & u64::from(u32::MAX));
            return Ok(());
        }
        value = action_validation::constrain_vmcs02_control(encoding, value, CR0_OWNED_BITS, CR4_OWNED_BITS)
            .map_err(refused)?;
        if let (Some(capabilities), Some(_)) =
            (vmx_root::capabilities(), action_validation::vmcs02_control_bits(encoding))
        {
            let allowed = match encoding {
                e if e == Control32::PinBasedControls.encoding() => capabilities.pin_based,
                e if e == Control32::PrimaryProcessorBasedControls.encoding() => capabilities.primary,
                e if e == Control32::SecondaryProcessorBasedControls.encoding() => capabilities.secondary,
                _ => capabilities.entry,
            };
            value = u64::from(allowed.adjust(value as u32).map_err(|bits| {
                monitor_error(&alloc::format!("this CPU cannot set bits {bits:#x} of vmcs02 field {encoding:#x}"))
            })?);
        }
    }
    // Checked above: a guest-state field or a control the monitor may
    // write at this level.
    if let Err(error) = vmcs::write_checked_encoding(encoding, value) {
        return Err(monitor_error(&alloc::format!("this CPU refused a write of field {encoding:#x}: {error:?}")));
    }
    if encoding == Guest64::Ia32Efer.encoding() {
        sync_ia32e_mode(value);
    }
    Ok(())
}

fn refused(rejection: Rejection) -> Next {
    Next::Stop {
        reason: StopReason::MonitorError,
        detail: alloc::format!("the shim refused the monitor's {rejection}"),
    }
}

fn monitor_error(detail: &str) -> Next {
    Next::Stop { reason: StopReason::MonitorError, detail: detail.into() }
}

fn inject(vector: u8, kind: InjectionKind, error_code: Option<u32>) {
    let mut info = INTERRUPTION_VALID | (u32::from(kind as u8) << 8) | u32::from(vector);
    if let Some(code) = error_code {
        info |= INTERRUPTION_DELIVER_ERROR_CODE;
        vmcs::write(Control32::EntryExceptionErrorCode, code);
    }
    if matches!(
        kind,
        InjectionKind::SoftwareInterrupt
            | InjectionKind::SoftwareException
            | InjectionKind::PrivilegedSoftwareException
    ) {
        // Software events resume after the instruction that raised them.
        vmcs::write(Control32::EntryInstructionLength, vmcs::read(ReadOnly32::ExitInstructionLength));
    }
    vmcs::write(Control32::EntryInterruptionInfo, info);
}

fn skip_instruction() {
    let length = u64::from(vmcs::read(ReadOnly32::ExitInstructionLength));
    vmcs::write(GuestNatural::Rip, vmcs::read(GuestNatural::Rip).wrapping_add(length));
    let interruptibility = vmcs::read(Guest32::InterruptibilityState);
    if interruptibility & BLOCKING_BY_STI_OR_MOV_SS != 0 {
        vmcs::write(Guest32::InterruptibilityState, interruptibility & !BLOCKING_BY_STI_OR_MOV_SS);
    }
}

/// VM entry requires the "IA-32e mode guest" control to match EFER.LMA
/// (SDM 26.3.1.1). The control is the shim's, so the shim follows the
/// monitor's EFER: the CPU itself only switches modes for CR0 writes that
/// do not exit.
fn sync_ia32e_mode(efer: u64) {
    const EFER_LMA: u64 = 1 << 10;
    let controls = vmcs::read(Control32::EntryControls);
    let bit = EntryControls::IA32E_MODE_GUEST.bits();
    let wanted = if efer & EFER_LMA != 0 { controls | bit } else { controls & !bit };
    if wanted != controls {
        vmcs::write(Control32::EntryControls, wanted);
    }
}

fn set_interrupt_window_exiting(enable: bool) {
    let field = Control32::PrimaryProcessorBasedControls;
    let controls = vmcs::read(field);
    let bit = PrimaryControls::INTERRUPT_WINDOW_EXITING.bits();
    vmcs::write(field, if enable { controls | bit } else { controls & !bit });
}
