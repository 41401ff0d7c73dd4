//! vmcs02: the VMCS that really runs L2, merged on every L2 entry from
//! vmcs12 (what L1 asked for) and L0's own needs (what the shim must keep
//! for itself while L2 runs).
//!
//! The merge follows one rule: an event exits to L0 if either L1 or L0
//! wants it, and [`reflection`](super::reflection) later sends it to L1 only
//! if L1 wanted it. Concretely:
//!
//! - pin-based, primary and secondary controls are vmcs12's ORed with
//!   L0's; the I/O and MSR bitmaps of L1 are never handed to the CPU:
//!   vmcs02 exits on every I/O instruction and every RDMSR/WRMSR, and L0
//!   reads L1's bitmaps in L1's memory to decide;
//! - the exception bitmap is the union; when L0 needs #PF, every #PF exits
//!   (mask = match = 0), otherwise L1's error-code mask and match apply;
//! - the CR0/CR4 guest/host masks are the union, and the read shadows show
//!   L1's shadow for L1's bits and L2's real value for bits only L0 owns,
//!   so L2 reads what it would read under L1 alone;
//! - the TSC offset is L0's plus L1's (when L1 enables TSC offsetting);
//! - the exit controls save everything vmcs12 may need (EFER, PAT, debug
//!   controls), the entry controls always load them, with the values a
//!   real entry would give L2 when vmcs12 does not load them (SDM 27.3.2);
//! - VPID02 is L0's; the EPTP is either the root of the shadow EPT02 (L1
//!   uses EPT) or EPT01 itself (L2's physical addresses are L1's).

use alloc::vec::Vec;

use vmx::controls::{EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls};
use vmx::vmcs::{Control16, Control32, Control64, ControlNatural};

use super::entry_checks::Controls12;
use super::state::{CpuState, CR0_PG, EFER_LMA, EFER_LME};
use super::vmcs12::Vmcs12;

/// What L0 needs in every VMCS that runs this tenant's code, given by the
/// shim's configuration of vmcs01.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L0Settings {
    /// Pin-based controls L0 needs (external-interrupt and NMI exiting: the
    /// machine's interrupts belong to L0).
    pub pin: PinBasedControls,
    /// Primary controls L0 needs (HLT exiting so a halted vCPU yields, CR8
    /// exiting while there is no TPR shadow, ...). I/O and MSR exiting are
    /// added by the merge itself.
    pub primary: PrimaryControls,
    /// Secondary controls L0 needs besides EPT, which is always set.
    pub secondary: SecondaryControls,
    /// L0's exit controls: those about its own host state (host
    /// address-space size, load EFER/PAT, acknowledge interrupt on exit).
    pub exit: ExitControls,
    /// L0's entry controls, if any besides what the merge sets.
    pub entry: EntryControls,
    /// Exceptions L0 must see (e.g. #MC).
    pub exception_bitmap: u32,
    /// CR0/CR4 bits L0 owns while L2 runs.
    pub cr0_mask: u64,
    pub cr4_mask: u64,
    /// vmcs01's TSC offset: L1's TSC is the host's plus this.
    pub tsc_offset: u64,
    /// The VPID L2 runs with; every L2 VPID of this vCPU maps to it.
    pub vpid02: u16,
}

impl L0Settings {
    /// What the shim needs of any guest today: physical interrupts and NMIs
    /// exit, HLT exits so the scheduler can run others, CR8 accesses exit
    /// (there is no TPR shadow), a 64-bit host loading EFER and PAT.
    pub fn typical(tsc_offset: u64, vpid02: u16) -> Self {
        Self {
            pin: PinBasedControls::EXTERNAL_INTERRUPT_EXITING | PinBasedControls::NMI_EXITING,
            primary: PrimaryControls::HLT_EXITING
                | PrimaryControls::CR8_LOAD_EXITING
                | PrimaryControls::CR8_STORE_EXITING
                | PrimaryControls::SECONDARY_CONTROLS,
            secondary: SecondaryControls::VPID,
            exit: ExitControls::HOST_ADDRESS_SPACE_SIZE | ExitControls::LOAD_EFER | ExitControls::LOAD_PAT,
            entry: EntryControls::empty(),
            exception_bitmap: 1 << 18,
            cr0_mask: 0,
            cr4_mask: 0,
            tsc_offset,
            vpid02,
        }
    }
}

/// Where L2's guest-physical addresses go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedPaging {
    /// L1 enabled EPT: vmcs02's EPTP is the root of the shadow EPT02 built
    /// from this EPT12 pointer (see [`ept02`](super::ept02)).
    ShadowEpt { eptp12: u64 },
    /// L1 did not: L2's guest-physical addresses are L1's, and vmcs02 uses
    /// EPT01's pointer.
    Ept01,
}

/// Everything the shim must write into vmcs02 before entering L2 (besides
/// its host-state area, which is L0's and the same as vmcs01's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vmcs02 {
    pub pin: PinBasedControls,
    pub primary: PrimaryControls,
    pub secondary: SecondaryControls,
    pub exit: ExitControls,
    pub entry: EntryControls,
    pub exception_bitmap: u32,
    pub page_fault_mask: u32,
    pub page_fault_match: u32,
    pub cr0_mask: u64,
    pub cr4_mask: u64,
    pub cr0_shadow: u64,
    pub cr4_shadow: u64,
    pub cr3_target_count: u32,
    pub cr3_targets: [u64; 4],
    pub tsc_offset: u64,
    pub vpid: u16,
    pub entry_interruption_info: u32,
    pub entry_exception_error_code: u32,
    pub entry_instruction_length: u32,
    /// L2's state at entry.
    pub guest: CpuState,
    pub paging: NestedPaging,
    /// MSRs L2 runs with, from vmcs12's VM-entry MSR-load list, in order:
    /// the monitor keeps them as L2's MSR state (vmcs02 itself has no
    /// MSR-load list).
    pub msr_loads: Vec<(u32, u64)>,
    /// L2's TLB context is new: the shim must flush VPID02 before entry.
    pub flush_vpid02: bool,
}

/// Builds vmcs02 from a checked vmcs12 snapshot, L2's checked guest state,
/// L1's state at the VMLAUNCH/VMRESUME and L0's needs.
pub fn build(vmcs12: &Vmcs12, l2: &CpuState, l1: &CpuState, l0: &L0Settings, msr_loads: Vec<(u32, u64)>) -> Vmcs02 {
    let controls = Controls12::of(vmcs12);
    let ept = controls.secondary.contains(SecondaryControls::EPT);

    let pin = controls.pin | l0.pin;
    let mut primary = controls.primary | l0.primary | PrimaryControls::SECONDARY_CONTROLS;
    primary = primary.without(PrimaryControls::IO_BITMAPS | PrimaryControls::MSR_BITMAPS);
    primary |= PrimaryControls::UNCONDITIONAL_IO_EXITING;
    let tsc_offset = if controls.primary.contains(PrimaryControls::TSC_OFFSETTING) {
        l0.tsc_offset.wrapping_add(vmcs12.get(Control64::TscOffset))
    } else {
        l0.tsc_offset
    };
    if tsc_offset != 0 {
        primary |= PrimaryControls::TSC_OFFSETTING;
    }
    let secondary = controls.secondary | l0.secondary | SecondaryControls::EPT;

    let exit = l0.exit
        | ExitControls::SAVE_EFER
        | ExitControls::SAVE_PAT
        | ExitControls::SAVE_DEBUG_CONTROLS
        | (controls.exit & ExitControls::SAVE_PREEMPTION_TIMER);
    let entry = l0.entry
        | EntryControls::LOAD_EFER
        | EntryControls::LOAD_PAT
        | EntryControls::LOAD_DEBUG_CONTROLS
        | (controls.entry & EntryControls::IA32E_MODE_GUEST);

    // What the CPU loads for L2 when vmcs12 leaves a register alone
    // (SDM 27.3.2.1): EFER keeps L1's bits but LMA (and LME with paging)
    // follow "IA-32e mode guest"; PAT, DR7 and DEBUGCTL stay L1's.
    let mut guest = *l2;
    let ia32e = controls.entry.contains(EntryControls::IA32E_MODE_GUEST);
    if !controls.entry.contains(EntryControls::LOAD_EFER) {
        let mut efer = l1.efer & !EFER_LMA;
        if ia32e {
            efer |= EFER_LMA;
        }
        if guest.cr0 & CR0_PG != 0 {
            efer = if ia32e { efer | EFER_LME } else { efer & !EFER_LME };
        }
        guest.efer = efer;
    }
    if !controls.entry.contains(EntryControls::LOAD_PAT) {
        guest.pat = l1.pat;
    }
    if !controls.entry.contains(EntryControls::LOAD_DEBUG_CONTROLS) {
        guest.dr7 = l1.dr7;
        guest.debugctl = l1.debugctl;
    }
    if !controls.pin.contains(PinBasedControls::PREEMPTION_TIMER) {
        guest.preemption_timer = 0;
    }

    let (exception_bitmap12, mask12, match12) = (
        vmcs12.get(Control32::ExceptionBitmap) as u32,
        vmcs12.get(Control32::PageFaultErrorCodeMask) as u32,
        vmcs12.get(Control32::PageFaultErrorCodeMatch) as u32,
    );
    let (page_fault_mask, page_fault_match) =
        if l0.exception_bitmap & (1 << 14) != 0 { (0, 0) } else { (mask12, match12) };

    let cr0_mask12 = vmcs12.get(ControlNatural::Cr0GuestHostMask);
    let cr4_mask12 = vmcs12.get(ControlNatural::Cr4GuestHostMask);
    let cr0_shadow = (vmcs12.get(ControlNatural::Cr0ReadShadow) & cr0_mask12) | (guest.cr0 & l0.cr0_mask & !cr0_mask12);
    let cr4_shadow = (vmcs12.get(ControlNatural::Cr4ReadShadow) & cr4_mask12) | (guest.cr4 & l0.cr4_mask & !cr4_mask12);

    let cr3_targets = [
        vmcs12.get(ControlNatural::Cr3TargetValue0),
        vmcs12.get(ControlNatural::Cr3TargetValue1),
        vmcs12.get(ControlNatural::Cr3TargetValue2),
        vmcs12.get(ControlNatural::Cr3TargetValue3),
    ];

    Vmcs02 {
        pin,
        primary,
        secondary,
        exit,
        entry,
        exception_bitmap: exception_bitmap12 | l0.exception_bitmap,
        page_fault_mask,
        page_fault_match,
        cr0_mask: cr0_mask12 | l0.cr0_mask,
        cr4_mask: cr4_mask12 | l0.cr4_mask,
        cr0_shadow,
        cr4_shadow,
        cr3_target_count: vmcs12.get(Control32::Cr3TargetCount) as u32,
        cr3_targets,
        tsc_offset,
        vpid: l0.vpid02,
        entry_interruption_info: vmcs12.get(Control32::EntryInterruptionInfo) as u32,
        entry_exception_error_code: vmcs12.get(Control32::EntryExceptionErrorCode) as u32,
        entry_instruction_length: vmcs12.get(Control32::EntryInstructionLength) as u32,
        guest,
        paging: if ept {
            NestedPaging::ShadowEpt { eptp12: vmcs12.get(Control64::EptPointer) }
        } else {
            NestedPaging::Ept01
        },
        msr_loads,
        flush_vpid02: false,
    }
}

impl Vmcs02 {
    /// The vmcs02 field writes, controls first, then guest state; `eptp02`
    /// is the EPTP the shim chose (the EPT02 root, or EPT01's pointer for
    /// [`NestedPaging::Ept01`]). The shim validates each write as it does
    /// a monitor's vmcs01 writes, plus the EPTP and VPID being its own.
    pub fn field_writes(&self, eptp02: u64) -> Vec<(u32, u64)> {
        let mut writes = Vec::with_capacity(96);
        let mut control = |field: u32, value: u64| writes.push((field, value));
        control(Control32::PinBasedControls.encoding(), u64::from(self.pin.bits()));
        control(Control32::PrimaryProcessorBasedControls.encoding(), u64::from(self.primary.bits()));
        control(Control32::SecondaryProcessorBasedControls.encoding(), u64::from(self.secondary.bits()));
        control(Control32::ExitControls.encoding(), u64::from(self.exit.bits()));
        control(Control32::EntryControls.encoding(), u64::from(self.entry.bits()));
        control(Control32::ExceptionBitmap.encoding(), u64::from(self.exception_bitmap));
        control(Control32::PageFaultErrorCodeMask.encoding(), u64::from(self.page_fault_mask));
        control(Control32::PageFaultErrorCodeMatch.encoding(), u64::from(self.page_fault_match));
        control(ControlNatural::Cr0GuestHostMask.encoding(), self.cr0_mask);
        control(ControlNatural::Cr4GuestHostMask.encoding(), self.cr4_mask);
        control(ControlNatural::Cr0ReadShadow.encoding(), self.cr0_shadow);
        control(ControlNatural::Cr4ReadShadow.encoding(), self.cr4_shadow);
        control(Control32::Cr3TargetCount.encoding(), u64::from(self.cr3_target_count));
        let targets = [
            ControlNatural::Cr3TargetValue0,
            ControlNatural::Cr3TargetValue1,
            ControlNatural::Cr3TargetValue2,
            ControlNatural::Cr3TargetValue3,
        ];
        for (field, value) in targets.iter().zip(self.cr3_targets) {
            control(field.encoding(), value);
        }
        control(Control64::TscOffset.encoding(), self.tsc_offset);
        control(Control16::VirtualProcessorId.encoding(), u64::from(self.vpid));
        control(Control64::EptPointer.encoding(), eptp02);
        control(Control32::EntryInterruptionInfo.encoding(), u64::from(self.entry_interruption_info));
        control(Control32::EntryExceptionErrorCode.encoding(), u64::from(self.entry_exception_error_code));
        control(Control32::EntryInstructionLength.encoding(), u64::from(self.entry_instruction_length));
        control(Control32::ExitMsrStoreCount.encoding(), 0);
        control(Control32::ExitMsrLoadCount.encoding(), 0);
        control(Control32::EntryMsrLoadCount.encoding(), 0);
        control(vmx::vmcs::Guest64::VmcsLinkPointer.encoding(), u64::MAX);
        writes.extend(self.guest.guest_fields());
        writes
    }
}
