//! Nested VMX at run time: L1's VMX instructions and L2's exits, answered
//! with the shim's actions. The semantics live in [`crate::nested`]; this
//! is where they meet the ABI:
//!
//! - a VMX instruction exit carries L1's whole guest state
//!   ([`FullState`]), from which the operands are decoded;
//! - a VM entry that passes its checks becomes `EnterL2` followed by the
//!   vmcs02 field writes, minus the fields the shim keeps for itself (exit
//!   controls, VPID, EPTP, MSR-list counts, the link pointer);
//! - an exit of L2 (its `FullState` says so) is reflected to L1 (`ExitL2`
//!   and L1's state from vmcs12's host area), or handled here: EPT02 fills
//!   (`MapL2` with L1 guest-physical addresses; the shim alone knows host
//!   ones), I/O and MSRs that L1 lets L2 reach, L0's own interrupts and
//!   time slices.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use monitor_abi::{Action, ExitEvent, FullState, InjectionKind, Response};
use vmx::capabilities::VmxCapabilities;
use vmx::controls::PinBasedControls;
use vmx::exit::{ExitReason, ExitReasonField};
use vmx::vmcs::{Control16, Control32, Control64, ControlNatural, Guest32, Guest64, GuestNatural};

use super::{GuestMonitor, CR0_FORCED, CR4_FORCED, GP};
use crate::guest_memory::GuestMemory;
use crate::nested::ept02::{Ept01, Ept01Mapping, Ept02, Ept02Outcome, EPT_RWX};
use crate::nested::instructions::{EntryEnvironment, InstructionExit, VmxInstruction};
use crate::nested::{
    CpuState, Exception, Invalidation, L0Exit, L0Settings, L1Resume, L1VmxCapabilities, L2Exit, L2ExitOutcome,
    NestedVmx, PhysicalView, VmxOutcome,
};

/// What a monitor needs to offer VMX to its guest: the host's VMX (the
/// shim passes the capability MSRs) and its physical-address width.
#[derive(Clone, Copy, Debug)]
pub struct NestedSetup {
    pub host: VmxCapabilities,
    pub physical_address_width: u8,
}

/// The guest's VMX offer, shared by its vCPUs.
pub(super) struct NestedSupport {
    pub caps: L1VmxCapabilities,
    /// The capability MSRs L1 reads (the MSR policy's table).
    pub msr_table: alloc::vec::Vec<(u32, u64)>,
    host: VmxCapabilities,
    physical_address_width: u8,
}

impl NestedSupport {
    pub fn new(setup: &NestedSetup) -> Self {
        let caps = L1VmxCapabilities::from_host(&setup.host, setup.physical_address_width);
        let (table, count) = caps.msr_table();
        Self {
            caps,
            msr_table: table[..count].to_vec(),
            host: setup.host,
            physical_address_width: setup.physical_address_width,
        }
    }

    pub fn vcpu(&self) -> Box<NestedVcpu> {
        Box::new(NestedVcpu {
            vmx: NestedVmx::new(self.caps),
            // Only the resolver is used: the shim holds EPT02's tables.
            ept02: Ept02::new(self.host.ept_vpid, self.caps.ept_vpid, self.physical_address_width, 0),
            eptp12: None,
            on_ept02: false,
        })
    }
}

/// One vCPU's emulated VMX.
pub(super) struct NestedVcpu {
    pub vmx: NestedVmx,
    ept02: Ept02,
    /// The EPT12 pointer the shim's EPT02 is built from.
    eptp12: Option<u64>,
    /// L2 runs on EPT02 (L1 enabled EPT), not on EPT01.
    on_ept02: bool,
}

/// L1's RAM as the shim's EPT01 maps it: guest-physical 0 up, in 2 MiB
/// blocks where whole. Targets are L1 guest-physical addresses; the shim
/// turns them into host ones.
struct L1Ram {
    bytes: u64,
}

impl Ept01 for L1Ram {
    fn translate(&self, l1_gpa: u64) -> Option<Ept01Mapping> {
        (l1_gpa < self.bytes).then_some(Ept01Mapping {
            hpa: l1_gpa,
            size_log2: if (l1_gpa | 0x1f_ffff) < self.bytes { 21 } else { 12 },
            permissions: EPT_RWX,
            memory_type: 6 << 3,
        })
    }
}

/// vmcs02 fields the shim sets itself and refuses from a monitor.
const SHIM_OWNED_VMCS02_FIELDS: [u32; 7] = [
    Control32::ExitControls.encoding(),
    Control16::VirtualProcessorId.encoding(),
    Control64::EptPointer.encoding(),
    Control32::ExitMsrStoreCount.encoding(),
    Control32::ExitMsrLoadCount.encoding(),
    Control32::EntryMsrLoadCount.encoding(),
    Guest64::VmcsLinkPointer.encoding(),
];

fn field(encoding: u32, value: u64) -> Action {
    Action::WriteField { encoding, value }
}

/// `state` with its general registers from the exit (the full state has
/// RSP only).
fn with_gprs(mut state: CpuState, exit: &ExitEvent) -> CpuState {
    state.gprs = exit.guest.gprs;
    state
}

fn full_state(full: &FullState) -> CpuState {
    // The state is read in the order the ABI lists the fields: look at
    // the next one first, so that this is not a search per field (it runs
    // on every nested exit).
    let next = core::cell::Cell::new(0);
    CpuState::from_guest_fields(|encoding| {
        let index = next.get();
        if monitor_abi::FULL_STATE_FIELDS.get(index) == Some(&encoding) {
            next.set(index + 1);
            full.fields[index]
        } else {
            full.field(encoding)
        }
    })
}

fn exception(response: &mut Response, exception: Exception) {
    response.actions.push(Action::InjectEvent {
        vector: exception.vector,
        kind: InjectionKind::HardwareException,
        error_code: exception.error_code,
    });
}

impl GuestMonitor {
    /// L0's needs in every vmcs02 of `vcpu`, as the monitor describes them
    /// (the shim enforces its own on top): physical interrupts and NMIs
    /// exit, HLT exits; the CR0/CR4 bits VMX needs stay the shim's. The
    /// preemption timer is left out: the shim always runs L2 on it, and
    /// vmcs02 then shows whether L1 asked for it.
    fn l0_settings(&self, vcpu: usize) -> L0Settings {
        let mut settings = L0Settings::typical(self.vcpus[vcpu].tsc_offset, 0);
        settings.cr0_mask = CR0_FORCED;
        settings.cr4_mask = CR4_FORCED;
        settings.pin = PinBasedControls::EXTERNAL_INTERRUPT_EXITING | PinBasedControls::NMI_EXITING;
        settings
    }

    /// A VMX instruction of L1 (or VMFUNC, which is not offered).
    pub(super) fn vmx_instruction(
        &mut self,
        vcpu: usize,
        reason: ExitReason,
        exit: &ExitEvent,
        memory: Option<&mut dyn GuestMemory>,
        response: &mut Response,
    ) -> Result<(), String> {
        let instruction = VmxInstruction::from_exit_reason(reason);
        let (Some(instruction), Some(_)) = (instruction, self.vcpus[vcpu].nested.as_ref()) else {
            exception(response, Exception::UD);
            return Ok(());
        };
        let Some(full) = exit.full.as_ref() else {
            return Err(format!("the shim sent no guest state with a {} exit", reason.name()));
        };
        let Some(memory) = memory else {
            return Err(format!("a {} exit without access to guest memory", reason.name()));
        };
        // L1's view: CR0 and CR4 through their read shadows.
        let mut l1 = with_gprs(full_state(full), exit);
        l1.cr0 = exit.guest.cr0;
        l1.cr4 = exit.guest.cr4;
        let l0 = self.l0_settings(vcpu);
        // VM-entry MSR-load lists are not emulated yet: an entry with one
        // fails as the SDM says a refused MSR load does (reason 34).
        let environment = EntryEnvironment { l0: &l0, wrmsr_ok: &|_, _| false };
        let nested = self.vcpus[vcpu].nested.as_mut().expect("checked above");
        let mut view = PhysicalView::new(memory);
        let details = InstructionExit { qualification: exit.qualification, instruction_info: exit.instruction_info };
        match nested.vmx.execute(instruction, &details, &l1, &mut view, &environment) {
            VmxOutcome::Retire { rflags, gpr, invalidation } => {
                response.actions.push(field(GuestNatural::Rflags.encoding(), rflags));
                if let Some((index, value)) = gpr {
                    response.actions.push(Action::SetGpr { index, value });
                }
                response.actions.push(Action::SkipInstruction);
                match invalidation {
                    Some(Invalidation::Ept { eptp12 }) if eptp12.is_none() || eptp12 == nested.eptp12 => {
                        response.actions.push(Action::FlushEpt02);
                    }
                    Some(Invalidation::Ept { .. }) | None => {}
                    Some(Invalidation::Vpid { .. }) => response.actions.push(Action::FlushVpid02),
                }
            }
            VmxOutcome::Fault(fault) => exception(response, fault),
            VmxOutcome::EnterL2(entry) => {
                let vmcs02 = &entry.vmcs02;
                let eptp12 = match vmcs02.paging {
                    crate::nested::vmcs02::NestedPaging::ShadowEpt { eptp12 } => Some(eptp12),
                    crate::nested::vmcs02::NestedPaging::Ept01 => None,
                };
                if eptp12.is_some() && eptp12 != nested.eptp12 {
                    // Another EPT12: the old EPT02 shadows the wrong tables.
                    response.actions.push(Action::FlushEpt02);
                    nested.eptp12 = eptp12;
                }
                nested.on_ept02 = eptp12.is_some();
                response.actions.push(Action::EnterL2 { ept02: nested.on_ept02 });
                if vmcs02.flush_vpid02 {
                    response.actions.push(Action::FlushVpid02);
                }
                let l1_timer = vmcs02.pin.contains(PinBasedControls::PREEMPTION_TIMER);
                for (encoding, value) in vmcs02.field_writes(0) {
                    let timer = encoding == Guest32::PreemptionTimerValue.encoding();
                    if SHIM_OWNED_VMCS02_FIELDS.contains(&encoding) || (timer && !l1_timer) {
                        continue;
                    }
                    response.actions.push(field(encoding, value));
                }
            }
            VmxOutcome::ExitToL1(resume) => resume_l1(&resume, false, response),
            VmxOutcome::Abort { indicator } => return Err(vmx_abort(indicator)),
            // VMCALL outside VMX operation: no hypercalls are offered.
            VmxOutcome::NotNested => exception(response, Exception::UD),
        }
        Ok(())
    }

    /// An exit of L2: reflected to L1, or handled for L1 while L2 stays.
    pub(super) fn l2_exit(
        &mut self,
        vcpu: usize,
        exit: &ExitEvent,
        full: &FullState,
        now: u64,
        memory: Option<&mut dyn GuestMemory>,
        response: &mut Response,
    ) -> Result<(), String> {
        let Some(memory) = memory else {
            return Err("an exit of L2 without access to guest memory".into());
        };
        let ram_bytes = self.ram_bytes;
        let Some(nested) = self.vcpus[vcpu].nested.as_mut().filter(|nested| nested.vmx.in_l2()) else {
            return Err("the shim reported an exit of L2, which the monitor never entered".into());
        };
        let l2 = with_gprs(full_state(full), exit);
        let l2_exit = L2Exit {
            reason: exit.exit_reason,
            qualification: exit.qualification,
            guest_linear_address: exit.guest_linear_address,
            guest_physical_address: exit.guest_physical_address,
            instruction_length: exit.instruction_length,
            instruction_info: exit.instruction_info,
            interruption_info: exit.interruption_info,
            interruption_error_code: exit.interruption_error_code,
            idt_vectoring_info: exit.idt_vectoring_info,
            idt_vectoring_error_code: exit.idt_vectoring_error_code,
        };
        let read_msr = |msr: u32| match msr {
            0xc000_0080 => Some(l2.efer),
            0x277 => Some(l2.pat),
            _ => None,
        };
        let mut view = PhysicalView::new(memory);
        let outcome = nested.vmx.l2_exit(&l2_exit, &l2, &mut view, read_msr);
        let handled_in_l0 = match outcome {
            L2ExitOutcome::ReflectToL1(resume) => {
                resume_l1(&resume, true, response);
                return Ok(());
            }
            L2ExitOutcome::Abort { indicator } => return Err(vmx_abort(indicator)),
            L2ExitOutcome::L0(l0_exit) => l0_exit,
        };
        let reflect_as =
            |reason: ExitReason, qualification: u64| L2Exit { reason: reason as u32, qualification, ..l2_exit };
        let synthesized = match handled_in_l0 {
            L0Exit::EptViolation { gpa, qualification } => {
                // L2 on EPT01 (L1 without EPT): its addresses are L1's, and
                // a violation is at an address where L1 has nothing.
                let Some(eptp12) = nested.eptp12.filter(|_| nested.on_ept02) else {
                    return Err(format!("EPT violation of L2 at {gpa:#x} without EPT12"));
                };
                match nested.ept02.resolve(eptp12, gpa, qualification, &mut view, &L1Ram { bytes: ram_bytes }) {
                    Ok(mapping) => {
                        response.actions.push(Action::MapL2 {
                            l2_gpa: mapping.l2_gpa,
                            l1_gpa: mapping.target,
                            size_log2: mapping.size_log2 as u8,
                            permissions: mapping.permissions as u8,
                        });
                        None
                    }
                    Err(Ept02Outcome::ReflectViolation { qualification }) => {
                        Some(reflect_as(ExitReason::EptViolation, qualification))
                    }
                    Err(Ept02Outcome::ReflectMisconfiguration) => Some(reflect_as(ExitReason::EptMisconfiguration, 0)),
                    Err(Ept02Outcome::L1Fault { l1_gpa }) => {
                        return Err(format!(
                            "L2 reached L1 guest-physical {l1_gpa:#x} (L2 {gpa:#x}), which is not L1's RAM: \
                             L1 devices mapped into L2 are not emulated"
                        ))
                    }
                    Err(other) => return Err(format!("EPT02 fill failed: {other:?}")),
                }
            }
            L0Exit::EptMisconfiguration { .. } => {
                // EPT02 holds only what the shim wrote: start it afresh.
                response.actions.push(Action::FlushEpt02);
                None
            }
            L0Exit::Host | L0Exit::PreemptionTimer | L0Exit::Window(_) => None,
            L0Exit::Hlt => {
                // L1 lets L2 halt: it waits only as long as L0 would run
                // something else; an interrupt for L1 ends it below.
                response.actions.push(Action::SkipInstruction);
                None
            }
            L0Exit::Io(_) => {
                self.io(exit, now, response)?;
                None
            }
            L0Exit::Msr { write } => {
                if write {
                    self.wrmsr(vcpu, exit, now, response)?;
                } else {
                    self.rdmsr(vcpu, exit, now, response)?;
                }
                None
            }
            L0Exit::Exception { .. } => {
                // Exceptions L0 intercepts only to watch (#MC): back to L2.
                self.reinject_interrupted_event(exit, response);
                None
            }
            other => {
                return Err(format!(
                    "exit {:?} of L2 is not handled yet (reason {})",
                    other,
                    ExitReasonField(exit.exit_reason).basic()
                ))
            }
        };
        let nested = self.vcpus[vcpu].nested.as_mut().expect("checked above");
        let synthesized = synthesized.or_else(|| {
            // An interrupt for L1, which asked to see them as exits.
            let controls = nested.vmx.l2_controls()?;
            if !controls.pin.contains(PinBasedControls::EXTERNAL_INTERRUPT_EXITING) {
                return None;
            }
            self.platform.pending_interrupt_vector(vcpu)?;
            let acknowledge = controls.exit.contains(vmx::controls::ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT);
            let info = if acknowledge { 0x8000_0000 | u32::from(self.platform.acknowledge_interrupt(vcpu)) } else { 0 };
            Some(L2Exit { interruption_info: info, ..reflect_as(ExitReason::ExternalInterrupt, 0) })
        });
        match synthesized {
            Some(reflected) => {
                let reflected = L2Exit {
                    instruction_length: 0,
                    instruction_info: 0,
                    idt_vectoring_info: exit.idt_vectoring_info,
                    ..reflected
                };
                match nested.vmx.reflect(&reflected, &l2, &mut view, read_msr) {
                    L2ExitOutcome::ReflectToL1(resume) => resume_l1(&resume, true, response),
                    L2ExitOutcome::Abort { indicator } => return Err(vmx_abort(indicator)),
                    L2ExitOutcome::L0(other) => return Err(format!("reflecting to L1 failed: {other:?}")),
                }
            }
            None => {
                self.reinject_interrupted_event(exit, response);
            }
        }
        Ok(())
    }

    /// Whether L1 may write `value` to CR`cr` (VMX operation pins CR4.VMXE
    /// and the fixed bits; without VMX offered, CR4.VMXE is reserved).
    pub(super) fn check_cr_write(&self, vcpu: usize, cr: u8, value: u64, response: &mut Response) -> bool {
        let fault = match self.vcpus[vcpu].nested.as_ref() {
            Some(nested) => nested.vmx.check_cr_write(cr, value).is_err(),
            None => cr == 4 && value & CR4_FORCED != 0,
        };
        if fault {
            exception(response, Exception::with_error_code(GP, 0));
        }
        !fault
    }
}

/// L1 resumes with the state an exit to it (or a late entry failure)
/// produced: vmcs01's guest state, CR0/CR4 with the bits the shim owns.
fn resume_l1(resume: &L1Resume, leave_l2: bool, response: &mut Response) {
    if leave_l2 {
        response.actions.push(Action::ExitL2);
    }
    for (encoding, value) in resume.l1.guest_fields() {
        if encoding == Guest32::PreemptionTimerValue.encoding() || encoding == Guest64::VmcsLinkPointer.encoding() {
            continue;
        }
        if encoding == GuestNatural::Cr0.encoding() {
            response.actions.push(field(ControlNatural::Cr0ReadShadow.encoding(), value));
            response.actions.push(field(encoding, value | CR0_FORCED));
        } else if encoding == GuestNatural::Cr4.encoding() {
            response.actions.push(field(ControlNatural::Cr4ReadShadow.encoding(), value));
            response.actions.push(field(encoding, value | CR4_FORCED));
        } else {
            response.actions.push(field(encoding, value));
        }
    }
    if resume.flush_vpid02 {
        response.actions.push(Action::FlushVpid02);
    }
    if !resume.msr_loads.is_empty() {
        response.actions.push(super::log(
            monitor_abi::LOG_WARN,
            format!("VM-exit MSR-load list of {} entries ignored (not emulated yet)", resume.msr_loads.len()),
        ));
    }
}

fn vmx_abort(indicator: u32) -> String {
    format!("VMX abort (indicator {indicator}): L1 left a state L2 could not exit to")
}
