//! Exits of L2: whether L1 asked for them (then they are reflected: vmcs12
//! gets the exit information and L2's state, L1 gets vmcs12's host state),
//! or they are L0's own business.
//!
//! The decision reads vmcs12 as snapshotted at the entry (L1 cannot run,
//! and so cannot change it, while L2 runs on this vCPU) and L1's I/O and
//! MSR bitmaps in L1's memory. The rules are SDM 26.1-26.2 ("instructions
//! that cause VM exits conditionally") from L1's point of view.

use alloc::boxed::Box;
use alloc::vec::Vec;

use vmx::controls::{EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls};
use vmx::exit::{CrAccess, ExitReason, ExitReasonField, InterruptionInfo, InterruptionType, IoInstruction};
use vmx::vmcs::{
    Control32, Control64, ControlNatural, Encoding, FieldType, Guest32, Guest64, GuestNatural, Host16, Host32, Host64,
    HostNatural, ReadOnly32, ReadOnly64, ReadOnlyNatural,
};

use crate::guest_memory::GuestMemory;

use super::entry_checks::{read_msr_load_list, Controls12};
use super::instructions::NestedVmx;
use super::state::{CpuState, DescriptorTable, Segment, CR0_PG, CR4_PAE, CR4_PCIDE, EFER_LMA, EFER_LME, RFLAGS_FIXED1};
use super::vmcs12::{self, Vmcs12};

/// An exit of L2, as vmcs02's exit-information fields report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2Exit {
    /// The full exit-reason field.
    pub reason: u32,
    pub qualification: u64,
    pub guest_linear_address: u64,
    pub guest_physical_address: u64,
    pub instruction_length: u32,
    pub instruction_info: u32,
    pub interruption_info: u32,
    pub interruption_error_code: u32,
    pub idt_vectoring_info: u32,
    pub idt_vectoring_error_code: u32,
}

/// An exit of L2 that L1 did not ask for, for L0 to handle while L2 stays
/// current; after handling it the shim resumes L2 on vmcs02.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L0Exit {
    /// A physical interrupt, NMI, INIT or SIPI: the machine's, not L1's.
    Host,
    /// An exception L0 intercepts (its exception bitmap): handle it, or
    /// re-inject it into L2.
    Exception { info: InterruptionInfo, error_code: u32 },
    /// An I/O instruction L1 lets L2 execute: emulate it against L1's
    /// platform, as if L1 had executed it.
    Io(IoInstruction),
    /// RDMSR/WRMSR of an MSR L1 lets L2 access: emulate it with L1's MSR
    /// state.
    Msr { write: bool },
    /// HLT without L1's HLT exiting: L2 waits for an interrupt.
    Hlt,
    /// MOV to/from CR8 that L1 does not intercept: L1's TPR.
    Cr8(CrAccess),
    /// A control-register access to bits only L0 owns.
    ControlRegister(CrAccess),
    /// An EPT violation: give it to the shadow-EPT builder
    /// ([`ept02`](super::ept02)), which installs a translation, reflects
    /// an EPT12 fault to L1, or finds L1's own (EPT01) fault.
    EptViolation { gpa: u64, qualification: u64 },
    /// An EPT misconfiguration of EPT02 itself (EPT12's are found by the
    /// builder): an L0 bug, or a stale EPT02 to drop.
    EptMisconfiguration { gpa: u64 },
    /// An interrupt or NMI window L0 opened to inject into L2 (or to
    /// synthesize an exit to L1).
    Window(ExitReason),
    /// The VMX-preemption timer without L1's: L0's time slice ended.
    PreemptionTimer,
    /// An exit L1 could not have asked for and L0 does not expect (e.g.
    /// vmcs02 entry failure): the shim stops the guest with this reason.
    Unexpected(u32),
}

/// What the shim does about an exit of L2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L2ExitOutcome {
    /// Handle in L0 and resume L2.
    L0(L0Exit),
    /// Switch to vmcs01 and run L1 with this state: the exit was reflected.
    ReflectToL1(Box<L1Resume>),
    /// VMX abort while exiting to L1: L1 shuts down.
    Abort { indicator: u32 },
}

/// L1's state after an exit from L2 (or a failed entry): the vmcs01
/// guest-state writes, and the MSRs of vmcs12's VM-exit MSR-load list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Resume {
    /// L1's new state; CR0 and CR4 as L1 sees them (the shim applies its
    /// own forced bits and read shadows as for any L1 CR write).
    pub l1: CpuState,
    /// MSRs to load into L1's MSR state, in list order.
    pub msr_loads: Vec<(u32, u64)>,
    /// L1 ran L2 without VPID: its TLB context must be flushed.
    pub flush_vpid02: bool,
}

/// VMX-abort indicators (SDM 28.7).
pub const ABORT_SAVING_GUEST_MSRS: u32 = 1;
pub const ABORT_HOST_PDPTES: u32 = 2;
pub const ABORT_LOADING_HOST_MSRS: u32 = 4;

/// Whether vmcs12's controls ask for this exit of L2 (SDM 26.1-26.2).
/// `l2` supplies the registers of MOV to CR; `memory` L1's bitmaps.
pub fn l1_wants_exit(vmcs12: &Vmcs12, exit: &L2Exit, l2: &CpuState, memory: &impl GuestMemory) -> bool {
    let controls = Controls12::of(vmcs12);
    let primary = controls.primary;
    let Ok(reason) = ExitReasonField(exit.reason).reason() else {
        return false;
    };
    match reason {
        ExitReason::ExceptionOrNmi => {
            let info = InterruptionInfo(exit.interruption_info);
            match info.interruption_type() {
                InterruptionType::Nmi => controls.pin.contains(PinBasedControls::NMI_EXITING),
                _ => exception_wanted(vmcs12, info.vector(), exit.interruption_error_code),
            }
        }
        // Physical interrupts, NMIs, INIT and SIPI belong to the machine;
        // L1's virtual interrupts reach it through L0's injection logic.
        ExitReason::ExternalInterrupt | ExitReason::InitSignal | ExitReason::StartupIpi => false,
        ExitReason::TripleFault
        | ExitReason::TaskSwitch
        | ExitReason::Cpuid
        | ExitReason::Getsec
        | ExitReason::Invd
        | ExitReason::Xsetbv => true,
        // L3 is out of scope: L2's VMX instructions are L1's to emulate.
        reason if reason.is_vmx_instruction() => true,
        ExitReason::InterruptWindow => primary.contains(PrimaryControls::INTERRUPT_WINDOW_EXITING),
        ExitReason::NmiWindow => primary.contains(PrimaryControls::NMI_WINDOW_EXITING),
        ExitReason::Hlt => primary.contains(PrimaryControls::HLT_EXITING),
        ExitReason::Invlpg => primary.contains(PrimaryControls::INVLPG_EXITING),
        ExitReason::Rdpmc => primary.contains(PrimaryControls::RDPMC_EXITING),
        ExitReason::Rdtsc | ExitReason::Rdtscp => primary.contains(PrimaryControls::RDTSC_EXITING),
        ExitReason::ControlRegisterAccess => cr_access_wanted(vmcs12, &controls, exit.qualification, l2),
        ExitReason::MovDr => primary.contains(PrimaryControls::MOV_DR_EXITING),
        ExitReason::IoInstruction => io_wanted(vmcs12, &controls, exit.qualification, memory),
        ExitReason::Rdmsr | ExitReason::Wrmsr => {
            msr_wanted(vmcs12, &controls, reason == ExitReason::Wrmsr, l2.gpr(1) as u32, memory)
        }
        ExitReason::Mwait => primary.contains(PrimaryControls::MWAIT_EXITING),
        ExitReason::MonitorTrapFlag => primary.contains(PrimaryControls::MONITOR_TRAP_FLAG),
        ExitReason::Monitor => primary.contains(PrimaryControls::MONITOR_EXITING),
        ExitReason::Pause => primary.contains(PrimaryControls::PAUSE_EXITING),
        ExitReason::GdtrOrIdtrAccess | ExitReason::LdtrOrTrAccess => {
            controls.secondary.contains(SecondaryControls::DESCRIPTOR_TABLE_EXITING)
        }
        // L0 runs L2 on the same timer for its own time slices: the exit
        // is L1's only once L1's value has run out (the shim reports L1's
        // remaining value as L2's timer field).
        ExitReason::PreemptionTimerExpired => {
            controls.pin.contains(PinBasedControls::PREEMPTION_TIMER) && l2.preemption_timer == 0
        }
        ExitReason::WbinvdOrWbnoinvd => controls.secondary.contains(SecondaryControls::WBINVD_EXITING),
        ExitReason::Rdrand => controls.secondary.contains(SecondaryControls::RDRAND_EXITING),
        ExitReason::Rdseed => controls.secondary.contains(SecondaryControls::RDSEED_EXITING),
        // INVPCID exits with "INVLPG exiting" when "enable INVPCID" is set.
        ExitReason::Invpcid => {
            controls.secondary.contains(SecondaryControls::INVPCID) && primary.contains(PrimaryControls::INVLPG_EXITING)
        }
        // EPT exits are decided by the shadow-EPT builder, everything else
        // was not offered to L1 and so cannot be its.
        _ => false,
    }
}

/// The exception bitmap, with #PF filtered by error-code mask and match
/// (SDM 26.2: with bit 14 set, #PF exits iff (PFEC & mask) == match; with
/// it clear, iff they differ).
fn exception_wanted(vmcs12: &Vmcs12, vector: u8, error_code: u32) -> bool {
    let bitmap = vmcs12.get(Control32::ExceptionBitmap) as u32;
    let in_bitmap = vector < 32 && bitmap & (1 << vector) != 0;
    if vector != 14 {
        return in_bitmap;
    }
    let mask = vmcs12.get(Control32::PageFaultErrorCodeMask) as u32;
    let matches = error_code & mask == vmcs12.get(Control32::PageFaultErrorCodeMatch) as u32;
    in_bitmap == matches
}

/// MOV CR, CLTS and LMSW against vmcs12's masks, shadows and CR3 targets
/// (SDM 26.1.3).
fn cr_access_wanted(vmcs12: &Vmcs12, controls: &Controls12, qualification: u64, l2: &CpuState) -> bool {
    let primary = controls.primary;
    let cr0_mask = vmcs12.get(ControlNatural::Cr0GuestHostMask);
    let cr0_shadow = vmcs12.get(ControlNatural::Cr0ReadShadow);
    match CrAccess::decode(qualification) {
        CrAccess::MovToCr { cr: 0, source } => (l2.gpr(source.number()) ^ cr0_shadow) & cr0_mask != 0,
        CrAccess::MovToCr { cr: 4, source } => {
            let mask = vmcs12.get(ControlNatural::Cr4GuestHostMask);
            (l2.gpr(source.number()) ^ vmcs12.get(ControlNatural::Cr4ReadShadow)) & mask != 0
        }
        CrAccess::MovToCr { cr: 3, source } => {
            if !primary.contains(PrimaryControls::CR3_LOAD_EXITING) {
                return false;
            }
            let value = l2.gpr(source.number());
            let count = vmcs12.get(Control32::Cr3TargetCount).min(4);
            let targets = [
                ControlNatural::Cr3TargetValue0,
                ControlNatural::Cr3TargetValue1,
                ControlNatural::Cr3TargetValue2,
                ControlNatural::Cr3TargetValue3,
            ];
            !targets.iter().take(count as usize).any(|&target| vmcs12.get(target) == value)
        }
        CrAccess::MovToCr { cr: 8, .. } => primary.contains(PrimaryControls::CR8_LOAD_EXITING),
        CrAccess::MovToCr { .. } => true,
        CrAccess::MovFromCr { cr: 3, .. } => primary.contains(PrimaryControls::CR3_STORE_EXITING),
        CrAccess::MovFromCr { cr: 8, .. } => primary.contains(PrimaryControls::CR8_STORE_EXITING),
        CrAccess::MovFromCr { .. } => false,
        // CLTS exits if L1 owns TS and its shadow has TS set.
        CrAccess::Clts => cr0_mask & cr0_shadow & (1 << 3) != 0,
        // LMSW exits if it would set an owned PE whose shadow is 0, or
        // change an owned bit of MP, EM, TS from its shadow.
        CrAccess::Lmsw { source_data, .. } => {
            let source = u64::from(source_data);
            let sets_pe = cr0_mask & 1 != 0 && cr0_shadow & 1 == 0 && source & 1 != 0;
            sets_pe || (source ^ cr0_shadow) & cr0_mask & 0b1110 != 0
        }
    }
}

/// Unconditional I/O exiting, or L1's I/O bitmaps (SDM 26.1.3): any byte
/// of the access whose bit is set exits, and so does an access that wraps
/// past port 0xffff.
fn io_wanted(vmcs12: &Vmcs12, controls: &Controls12, qualification: u64, memory: &impl GuestMemory) -> bool {
    if !controls.primary.contains(PrimaryControls::IO_BITMAPS) {
        return controls.primary.contains(PrimaryControls::UNCONDITIONAL_IO_EXITING);
    }
    let Some(io) = IoInstruction::decode(qualification) else {
        return true;
    };
    let first = u32::from(io.port);
    let last = first + u32::from(io.size) - 1;
    if last > 0xffff {
        return true;
    }
    (first..=last).any(|port| {
        let bitmap = if port < 0x8000 { Control64::IoBitmapA } else { Control64::IoBitmapB };
        let bit = port & 0x7fff;
        let byte = vmcs12.get(bitmap) + u64::from(bit / 8);
        // An unreadable bitmap reads as all ones: the access exits.
        let mut value = [0xff];
        let _ = memory.read(byte, &mut value);
        value[0] & (1 << (bit % 8)) != 0
    })
}

/// L1's MSR bitmaps (SDM 25.6.9): read-low at 0, read-high at 1024,
/// write-low at 2048, write-high at 3072; MSRs outside 0-1FFFH and
/// C0000000H-C0001FFFH always exit.
fn msr_wanted(vmcs12: &Vmcs12, controls: &Controls12, write: bool, msr: u32, memory: &impl GuestMemory) -> bool {
    if !controls.primary.contains(PrimaryControls::MSR_BITMAPS) {
        return true;
    }
    let (base, bit) = match msr {
        0..=0x1fff => (0, msr),
        0xc000_0000..=0xc000_1fff => (1024, msr - 0xc000_0000),
        _ => return true,
    };
    let offset = base + if write { 2048 } else { 0 } + u64::from(bit / 8);
    let mut value = [0xff];
    let _ = memory.read(vmcs12.get(Control64::MsrBitmaps) + offset, &mut value);
    value[0] & (1 << (bit % 8)) != 0
}

/// What L0 does with an exit L1 did not ask for.
pub fn l0_exit(exit: &L2Exit) -> L0Exit {
    let Ok(reason) = ExitReasonField(exit.reason).reason() else {
        return L0Exit::Unexpected(exit.reason);
    };
    if ExitReasonField(exit.reason).is_entry_failure() {
        return L0Exit::Unexpected(exit.reason);
    }
    match reason {
        ExitReason::ExternalInterrupt | ExitReason::InitSignal | ExitReason::StartupIpi => L0Exit::Host,
        ExitReason::ExceptionOrNmi => {
            let info = InterruptionInfo(exit.interruption_info);
            if info.interruption_type() == InterruptionType::Nmi {
                L0Exit::Host
            } else {
                L0Exit::Exception { info, error_code: exit.interruption_error_code }
            }
        }
        ExitReason::IoInstruction => match IoInstruction::decode(exit.qualification) {
            Some(io) => L0Exit::Io(io),
            None => L0Exit::Unexpected(exit.reason),
        },
        ExitReason::Rdmsr => L0Exit::Msr { write: false },
        ExitReason::Wrmsr => L0Exit::Msr { write: true },
        ExitReason::Hlt => L0Exit::Hlt,
        ExitReason::ControlRegisterAccess => match CrAccess::decode(exit.qualification) {
            access @ (CrAccess::MovToCr { cr: 8, .. } | CrAccess::MovFromCr { cr: 8, .. }) => L0Exit::Cr8(access),
            access => L0Exit::ControlRegister(access),
        },
        ExitReason::EptViolation => {
            L0Exit::EptViolation { gpa: exit.guest_physical_address, qualification: exit.qualification }
        }
        ExitReason::EptMisconfiguration => L0Exit::EptMisconfiguration { gpa: exit.guest_physical_address },
        ExitReason::InterruptWindow | ExitReason::NmiWindow => L0Exit::Window(reason),
        ExitReason::PreemptionTimerExpired => L0Exit::PreemptionTimer,
        _ => L0Exit::Unexpected(exit.reason),
    }
}

/// Loads L1's state from vmcs12's host-state area as a VM exit does (SDM
/// 28.5, 28.6), starting from `l1` (L1 at the entry) for what the exit
/// leaves alone. On a VMX abort, writes the indicator into the region and
/// returns it.
pub fn load_host_state(
    vmcs12: &Vmcs12,
    l1: &CpuState,
    memory: &mut impl GuestMemory,
    region: u64,
) -> Result<L1Resume, u32> {
    let controls = Controls12::of(vmcs12);
    let host_64 = controls.exit.contains(ExitControls::HOST_ADDRESS_SPACE_SIZE);
    let mut state = *l1;

    // 28.5.1: CR0's ET (bit 4), bits 15:6, 17, 28:19, NW, CD and 63:32
    // keep L1's values.
    const CR0_KEPT: u64 = !0xffff_ffff | 1 << 4 | 0xffc0 | 1 << 17 | 0x1ff8_0000 | 3 << 29;
    state.cr0 = (vmcs12.get(HostNatural::Cr0) & !CR0_KEPT) | (l1.cr0 & CR0_KEPT);
    state.cr3 = vmcs12.get(HostNatural::Cr3);
    let mut cr4 = vmcs12.get(HostNatural::Cr4);
    if host_64 {
        cr4 |= CR4_PAE;
    } else {
        cr4 &= !CR4_PCIDE;
    }
    state.cr4 = cr4;
    state.dr7 = 0x400;
    state.debugctl = 0;
    let natural = |value: u64| if host_64 { value } else { value & 0xffff_ffff };
    state.sysenter_cs = vmcs12.get(Host32::Ia32SysenterCs) as u32;
    state.sysenter_esp = natural(vmcs12.get(HostNatural::Ia32SysenterEsp));
    state.sysenter_eip = natural(vmcs12.get(HostNatural::Ia32SysenterEip));
    state.efer = if controls.exit.contains(ExitControls::LOAD_EFER) {
        vmcs12.get(Host64::Ia32Efer)
    } else if host_64 {
        l1.efer | EFER_LMA | EFER_LME
    } else {
        l1.efer & !(EFER_LMA | EFER_LME)
    };
    if controls.exit.contains(ExitControls::LOAD_PAT) {
        state.pat = vmcs12.get(Host64::Ia32Pat);
    }

    // 28.5.2: segments and descriptor tables.
    let cs_rights = 0x809b | if host_64 { 1 << 13 } else { 1 << 14 };
    state.segments[1] = Segment {
        selector: vmcs12.get(Host16::CsSelector) as u16,
        base: 0,
        limit: 0xffff_ffff,
        access_rights: cs_rights,
    };
    let data = |selector: u16, base: u64| Segment {
        selector,
        base,
        limit: 0xffff_ffff,
        access_rights: if selector == 0 { Segment::UNUSABLE | 0xc093 } else { 0xc093 },
    };
    state.segments[0] = data(vmcs12.get(Host16::EsSelector) as u16, 0);
    state.segments[2] = data(vmcs12.get(Host16::SsSelector) as u16, 0);
    state.segments[3] = data(vmcs12.get(Host16::DsSelector) as u16, 0);
    state.segments[4] = data(vmcs12.get(Host16::FsSelector) as u16, vmcs12.get(HostNatural::FsBase));
    state.segments[5] = data(vmcs12.get(Host16::GsSelector) as u16, vmcs12.get(HostNatural::GsBase));
    state.tr = Segment {
        selector: vmcs12.get(Host16::TrSelector) as u16,
        base: vmcs12.get(HostNatural::TrBase),
        limit: 0x67,
        access_rights: 0x8b,
    };
    state.ldtr = Segment { selector: 0, base: 0, limit: 0, access_rights: Segment::UNUSABLE };
    state.gdtr = DescriptorTable { base: vmcs12.get(HostNatural::GdtrBase), limit: 0xffff };
    state.idtr = DescriptorTable { base: vmcs12.get(HostNatural::IdtrBase), limit: 0xffff };

    // 28.5.3: RIP, RSP, RFLAGS; 28.5.5: no blocking, active.
    state.rip = natural(vmcs12.get(HostNatural::Rip));
    state.rsp = natural(vmcs12.get(HostNatural::Rsp));
    state.rflags = RFLAGS_FIXED1;
    state.interruptibility = 0;
    state.activity_state = 0;
    state.pending_debug_exceptions = 0;
    state.preemption_timer = 0;

    // 28.5.4: a PAE host outside IA-32e mode loads its PDPTEs from CR3.
    if !host_64 && state.cr4 & CR4_PAE != 0 && state.cr0 & CR0_PG != 0 {
        for (index, pdpte) in state.pdptes.iter_mut().enumerate() {
            *pdpte = memory.read_u64((state.cr3 & 0xffff_ffe0) + index as u64 * 8).unwrap_or(u64::MAX);
        }
        if state.pdptes.iter().any(|&pdpte| pdpte & 1 != 0 && pdpte & 0x1e6 != 0) {
            return Err(abort(memory, region, ABORT_HOST_PDPTES));
        }
    }

    // 28.6: the VM-exit MSR-load list.
    let msr_loads = read_msr_load_list(
        memory,
        vmcs12.get(Control64::ExitMsrLoadAddress),
        vmcs12.get(Control32::ExitMsrLoadCount) as u32,
        |_, _| true,
    )
    .map_err(|_| abort(memory, region, ABORT_LOADING_HOST_MSRS))?;

    let flush_vpid02 = !controls.secondary.contains(SecondaryControls::VPID);
    Ok(L1Resume { l1: state, msr_loads, flush_vpid02 })
}

/// Writes a VMX-abort indicator into the region (SDM 28.7).
fn abort(memory: &mut impl GuestMemory, region: u64, indicator: u32) -> u32 {
    let _ = memory.write_u32(region + vmcs12::ABORT_OFFSET, indicator);
    indicator
}

impl NestedVmx {
    /// Handles an exit of L2: reflects it to L1 if vmcs12 asks for it,
    /// otherwise tells L0 what it is. `l2` is L2's state read from vmcs02
    /// at the exit (GPRs included); `read_msr` gives L2's value of an MSR
    /// for vmcs12's VM-exit MSR-store list (`None`: the store fails).
    pub fn l2_exit(
        &mut self,
        exit: &L2Exit,
        l2: &CpuState,
        memory: &mut impl GuestMemory,
        read_msr: impl Fn(u32) -> Option<u64>,
    ) -> L2ExitOutcome {
        let Some(context) = self.l2.as_ref() else {
            return L2ExitOutcome::L0(L0Exit::Unexpected(exit.reason));
        };
        if ExitReasonField(exit.reason).is_entry_failure() {
            return L2ExitOutcome::L0(L0Exit::Unexpected(exit.reason));
        }
        if l1_wants_exit(&context.vmcs12, exit, l2, memory) {
            self.reflect(exit, l2, memory, read_msr)
        } else {
            L2ExitOutcome::L0(l0_exit(exit))
        }
    }

    /// Reflects `exit` to L1 (SDM 28.2-28.6), whatever vmcs12's controls
    /// say: for exits L0 synthesizes, such as an EPT12 violation found by
    /// the shadow-EPT builder or an interrupt for L1 with
    /// external-interrupt exiting.
    pub fn reflect(
        &mut self,
        exit: &L2Exit,
        l2: &CpuState,
        memory: &mut impl GuestMemory,
        read_msr: impl Fn(u32) -> Option<u64>,
    ) -> L2ExitOutcome {
        let Some(context) = self.leave_l2() else {
            return L2ExitOutcome::L0(L0Exit::Unexpected(exit.reason));
        };
        self.metrics.reflected_exits += 1;
        let region = context.region;
        let mut vmcs12 = context.vmcs12;
        let controls = Controls12::of(&vmcs12);

        // 28.2: exit information.
        vmcs12.set(ReadOnly32::ExitReason, u64::from(exit.reason));
        vmcs12.set(ReadOnlyNatural::ExitQualification, exit.qualification);
        vmcs12.set(ReadOnlyNatural::GuestLinearAddress, exit.guest_linear_address);
        vmcs12.set(ReadOnly64::GuestPhysicalAddress, exit.guest_physical_address);
        vmcs12.set(ReadOnly32::ExitInstructionLength, u64::from(exit.instruction_length));
        vmcs12.set(ReadOnly32::ExitInstructionInfo, u64::from(exit.instruction_info));
        vmcs12.set(ReadOnly32::ExitInterruptionInfo, u64::from(exit.interruption_info));
        vmcs12.set(ReadOnly32::ExitInterruptionErrorCode, u64::from(exit.interruption_error_code));
        vmcs12.set(ReadOnly32::IdtVectoringInfo, u64::from(exit.idt_vectoring_info));
        vmcs12.set(ReadOnly32::IdtVectoringErrorCode, u64::from(exit.idt_vectoring_error_code));

        // 28.3: L2's state. EFER, PAT and the debug controls only when
        // vmcs12 asks for them; the rest always.
        let kept = vmcs12.clone();
        for (encoding, value) in l2.guest_fields() {
            vmcs12.set_raw(Encoding(encoding), value);
        }
        if !controls.exit.contains(ExitControls::SAVE_EFER) {
            vmcs12.set(Guest64::Ia32Efer, kept.get(Guest64::Ia32Efer));
        }
        if !controls.exit.contains(ExitControls::SAVE_PAT) {
            vmcs12.set(Guest64::Ia32Pat, kept.get(Guest64::Ia32Pat));
        }
        if !controls.exit.contains(ExitControls::SAVE_DEBUG_CONTROLS) {
            vmcs12.set(GuestNatural::Dr7, kept.get(GuestNatural::Dr7));
            vmcs12.set(Guest64::Ia32Debugctl, kept.get(Guest64::Ia32Debugctl));
        }
        if !controls.exit.contains(ExitControls::SAVE_PREEMPTION_TIMER) {
            vmcs12.set(Guest32::PreemptionTimerValue, kept.get(Guest32::PreemptionTimerValue));
        }
        // IA32_VMX_MISC bit 5: the exit stores EFER.LMA into "IA-32e mode
        // guest"; every exit clears the valid bit of the entry's event.
        let mut entry = controls.entry.without(EntryControls::IA32E_MODE_GUEST);
        if l2.efer & EFER_LMA != 0 {
            entry |= EntryControls::IA32E_MODE_GUEST;
        }
        vmcs12.set(Control32::EntryControls, u64::from(entry.bits()));
        let injection = vmcs12.get(Control32::EntryInterruptionInfo) & !u64::from(InterruptionInfo::VALID);
        vmcs12.set(Control32::EntryInterruptionInfo, injection);

        // The region was in RAM at VMPTRLD; RAM does not shrink.
        let _ = vmcs12.store(memory, region, &[FieldType::ReadOnlyData, FieldType::GuestState]);
        let _ = vmcs12::write_field(memory, region, Encoding(Control32::EntryControls as u32), u64::from(entry.bits()));
        let _ = vmcs12::write_field(memory, region, Encoding(Control32::EntryInterruptionInfo as u32), injection);

        // 28.4: the VM-exit MSR-store list.
        if let Err(indicator) = store_guest_msrs(&vmcs12, memory, &read_msr) {
            self.metrics.aborts += 1;
            return L2ExitOutcome::Abort { indicator: abort(memory, region, indicator) };
        }

        match load_host_state(&vmcs12, &context.l1, memory, region) {
            Ok(resume) => L2ExitOutcome::ReflectToL1(Box::new(resume)),
            Err(indicator) => {
                self.metrics.aborts += 1;
                L2ExitOutcome::Abort { indicator }
            }
        }
    }
}

/// Writes L2's MSRs into vmcs12's VM-exit MSR-store list (SDM 28.4).
fn store_guest_msrs(
    vmcs12: &Vmcs12,
    memory: &mut impl GuestMemory,
    read_msr: &impl Fn(u32) -> Option<u64>,
) -> Result<(), u32> {
    let address = vmcs12.get(Control64::ExitMsrStoreAddress);
    let count = vmcs12.get(Control32::ExitMsrStoreCount) as u32;
    if count > 512 {
        return Err(ABORT_SAVING_GUEST_MSRS);
    }
    for entry in 0..u64::from(count) {
        let at = address + entry * 16;
        let header = memory.read_u64(at).map_err(|_| ABORT_SAVING_GUEST_MSRS)?;
        let index = header as u32;
        // SDM 28.4: bits 63:32 reserved, and no x2APIC or SMBASE MSR.
        if header >> 32 != 0 || index >> 8 == 0x8 || index == 0x9e {
            return Err(ABORT_SAVING_GUEST_MSRS);
        }
        let value = read_msr(index).ok_or(ABORT_SAVING_GUEST_MSRS)?;
        memory.write_u64(at + 8, value).map_err(|_| ABORT_SAVING_GUEST_MSRS)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
