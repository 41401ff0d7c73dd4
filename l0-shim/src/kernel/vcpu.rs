//! A virtual CPU: its VMCS (controls, host state, guest state), its
//! general registers and FPU state, and the entry into the guest.
//!
//! The controls are the shim's, not the guest's: every exit the monitor
//! needs to see is on (I/O, MSRs, CPUID, HLT, CR0/CR4 bits the shim must
//! own, external interrupts, NMIs), and nothing that would let a guest
//! reach host state is.

use l0_shim::memory::PhysRange;
use vmx::capabilities::VmxCapabilities;
use vmx::controls::{EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls};
use vmx::vmcs::{
    Control16, Control32, Control64, ControlNatural, Guest16, Guest32, Guest64, GuestNatural, Host16, Host32, Host64,
    HostNatural,
};
use x86_64::instructions::tables::{sgdt, sidt};

use crate::arch::cpu::{fxrstor, fxsave, read_cr0, read_cr3, read_cr4, read_msr, write_msr, FxState};
use crate::arch::vmx_instructions::{
    enter_guest, exit_landing_address, invvpid, GuestRegisters, InvvpidKind, VmxInstructionError,
};
use l0_shim::action_validation::MapRefusal;

use crate::kernel::ept02::Ept02;
use crate::kernel::msr_bitmap::{self, SWITCHED_MSRS};
use crate::kernel::vmcs::{self, Vmcs};
use crate::kernel::xsave::GuestXstate;
use crate::kernel::{percpu, vmx_root};

const IA32_EFER: u32 = 0xc000_0080;
const IA32_PAT: u32 = 0x277;
const IA32_GS_BASE: u32 = 0xc000_0101;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR4_VMXE: u64 = 1 << 13;
/// CR0 bits the shim owns: NE must stay 1 in VMX operation; the guest
/// reads and writes its own value through the read shadow.
pub const CR0_OWNED_BITS: u64 = CR0_NE;
/// CR4 bits the shim owns: VMXE must stay 1 in VMX operation; the guest
/// sees 0 unless (later) it runs VMX itself through the monitor.
pub const CR4_OWNED_BITS: u64 = CR4_VMXE;

/// Access rights of a present, flat, 32-bit ring-0 segment (SDM 25.4.1).
const ACCESS_CODE32: u32 = 0xc09b;
const ACCESS_DATA32: u32 = 0xc093;
/// A busy 32-bit TSS, which VM entry requires of TR.
const ACCESS_TSS_BUSY: u32 = 0x8b;
const ACCESS_UNUSABLE: u32 = 1 << 16;
const PAT_POWER_ON: u64 = 0x0007_0406_0007_0406;
const DR7_RESET: u64 = 0x400;
const RFLAGS_RESERVED_ONE: u64 = 1 << 1;

/// How a guest starts: flat 32-bit protected mode with paging off, as both
/// multiboot and the Linux 32-bit boot protocol hand over.
#[derive(Debug, Clone)]
pub struct FlatProtectedStart {
    pub rip: u64,
    pub registers: GuestRegisters,
    pub code_selector: u16,
    pub data_selector: u16,
    /// The guest's GDT, if the loader wrote one (Linux needs one).
    pub gdtr: Option<(u64, u16)>,
}

#[derive(Debug)]
pub enum VcpuError {
    NoMemoryForVmcs,
    /// The CPU cannot set a control the shim needs.
    UnsupportedControls {
        group: &'static str,
        bits: u32,
    },
    Instruction {
        what: &'static str,
        error: VmxInstructionError,
        vm_instruction_error: Option<u32>,
    },
}

impl core::fmt::Display for VcpuError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoMemoryForVmcs => write!(f, "no free memory for a VMCS"),
            Self::UnsupportedControls { group, bits } => {
                write!(f, "the CPU cannot set the {group} controls {bits:#x} the shim needs")
            }
            Self::Instruction { what, error, vm_instruction_error: Some(number) } => {
                let description = vmx::exit::VmInstructionError::try_from(*number)
                    .map(|error| error.description())
                    .unwrap_or("unknown error");
                write!(f, "{what} failed ({error:?}): VM-instruction error {number}: {description}")
            }
            Self::Instruction { what, error, vm_instruction_error: None } => write!(f, "{what} failed ({error:?})"),
        }
    }
}

/// The VPIDs of L2: the guest's own with this bit set (guests get small
/// VPIDs), so L2's translations never serve L1 and one INVVPID reaches
/// all of L2's.
const VPID02_BIT: u16 = 0x8000;

/// What a vCPU needs to run L2: vmcs02 and the shadow EPT.
struct NestedCpu {
    vmcs02: Vmcs,
    launched: bool,
    ept02: Ept02,
    /// L1's VMX-preemption timer for L2, in timer units, while L1 uses it:
    /// the shim runs L2 on the same timer for its own time slices.
    l1_timer: Option<u64>,
}

pub struct Vcpu {
    vmcs: Vmcs,
    vpid: u16,
    /// EPT01's pointer, and the guest's RAM it maps from guest-physical 0.
    eptp01: u64,
    ram: PhysRange,
    nested: Option<alloc::boxed::Box<NestedCpu>>,
    /// The vCPU runs L2 (vmcs02 is its VMCS).
    in_l2: bool,
    /// Its guest was offered VMX (`nestedhvm = 1`): only then may its
    /// monitor run L2.
    pub nested_allowed: bool,
    pub registers: GuestRegisters,
    fx: FxState,
    /// Where the shim's own x87/SSE state waits while the guest runs (kept
    /// here so that no 512-byte area is set up on every entry).
    host_fx: FxState,
    /// The guest's values of `msr_bitmap::SWITCHED_MSRS`, while another
    /// vCPU has the CPU.
    switched_msrs: [u64; SWITCHED_MSRS.len()],
    /// XCR0 and the components beyond SSE (AVX, ...).
    pub xstate: GuestXstate,
    launched: bool,
}

impl Drop for Vcpu {
    fn drop(&mut self) {
        // The VPID may be given to another vCPU: drop its cached
        // translations (the VMCS clears itself when dropped).
        if let Err(error) = invvpid(InvvpidKind::SingleContext, self.vpid, 0) {
            log::error!("INVVPID for a departing vCPU failed: {error:?}");
        }
    }
}

impl Vcpu {
    /// A vCPU whose guest starts at `start`, translating guest-physical
    /// addresses through `eptp` and tagging its TLB entries with `vpid`.
    pub fn new(
        capabilities: &VmxCapabilities,
        eptp: u64,
        ram: PhysRange,
        vpid: u16,
        start: &FlatProtectedStart,
    ) -> Result<Self, VcpuError> {
        let vmcs = Vmcs::new(capabilities.basic.revision_id()).ok_or(VcpuError::NoMemoryForVmcs)?;
        vmcs.make_current().map_err(|error| instruction_failed("VMPTRLD", error))?;
        write_controls(capabilities)?;
        write_host_state();
        write_flat_protected_guest_state(capabilities, start);
        vmcs::write(Control64::EptPointer, eptp);
        vmcs::write(Control16::VirtualProcessorId, vpid);
        Ok(Self {
            vmcs,
            vpid,
            eptp01: eptp,
            ram,
            nested: None,
            in_l2: false,
            nested_allowed: false,
            registers: start.registers,
            fx: FxState::reset(),
            host_fx: FxState::reset(),
            switched_msrs: [0; SWITCHED_MSRS.len()],
            xstate: GuestXstate::new(),
            launched: false,
        })
    }

    /// Keeps the guest's values of the MSRs it accesses directly, before
    /// another vCPU gets the CPU.
    pub fn save_switched_msrs(&mut self) {
        for (value, msr) in self.switched_msrs.iter_mut().zip(SWITCHED_MSRS) {
            *value = read_msr(msr);
        }
    }

    /// Puts this vCPU's values of the MSRs guests access directly into the
    /// CPU, before it runs after another vCPU (or after the shim itself).
    pub fn load_switched_msrs(&self) {
        for (value, msr) in self.switched_msrs.iter().zip(SWITCHED_MSRS) {
            // Safe because the shim does not use these MSRs itself (no
            // SYSCALL, no SWAPGS, no RDTSCP), and the guest's values came
            // from the guest's own direct writes, which the CPU checked.
            unsafe { write_msr(msr, *value) };
        }
    }

    /// Makes this vCPU's VMCS current: its fields are what `vmcs::read`
    /// and `vmcs::write` reach until another vCPU runs on this CPU.
    pub fn make_current(&self) -> Result<(), VcpuError> {
        let vmcs = match &self.nested {
            Some(nested) if self.in_l2 => &nested.vmcs02,
            _ => &self.vmcs,
        };
        vmcs.make_current().map_err(|error| instruction_failed("VMPTRLD", error))
    }

    /// Whether the vCPU runs L2.
    pub fn in_l2(&self) -> bool {
        self.in_l2
    }

    /// Switches the vCPU to L2 on its vmcs02 (made on first use), with
    /// EPT02 (`ept02`) or EPT01 as L2's EPT. Field writes that follow go
    /// to vmcs02; L1's preemption timer is off until a write sets it.
    pub fn enter_l2(&mut self, capabilities: &VmxCapabilities, ept02: bool) -> Result<(), VcpuError> {
        if self.nested.is_none() {
            let vmcs02 = Vmcs::new(capabilities.basic.revision_id()).ok_or(VcpuError::NoMemoryForVmcs)?;
            vmcs02.make_current().map_err(|error| instruction_failed("VMPTRLD", error))?;
            write_controls(capabilities)?;
            write_vmcs02_controls(capabilities)?;
            write_host_state();
            vmcs::write(Guest64::VmcsLinkPointer, u64::MAX);
            vmcs::write(Control16::VirtualProcessorId, self.vpid | VPID02_BIT);
            let ept02 = Ept02::new().ok_or(VcpuError::NoMemoryForVmcs)?;
            self.nested = Some(alloc::boxed::Box::new(NestedCpu { vmcs02, launched: false, ept02, l1_timer: None }));
        }
        self.in_l2 = true;
        self.make_current()?;
        let nested = self.nested.as_mut().expect("made above");
        nested.l1_timer = None;
        vmcs::write(Control64::EptPointer, if ept02 { nested.ept02.eptp() } else { self.eptp01 });
        Ok(())
    }

    /// Back to L1 on vmcs01.
    pub fn exit_l2(&mut self) -> Result<(), VcpuError> {
        self.in_l2 = false;
        self.make_current()
    }

    /// L1's preemption-timer value for L2 (a monitor's write of the
    /// field on vmcs02).
    pub fn set_l1_timer(&mut self, value: u64) {
        if let Some(nested) = self.nested.as_mut() {
            nested.l1_timer = Some(value);
        }
    }

    /// What is left of L1's timer for L2, if L1 uses it.
    pub fn l1_timer(&self) -> Option<u64> {
        self.nested.as_ref().and_then(|nested| nested.l1_timer)
    }

    /// Maps an EPT02 leaf (see `Ept02::map`).
    pub fn map_l2(&mut self, l2_gpa: u64, l1_gpa: u64, size_log2: u8, permissions: u8) -> Result<(), MapRefusal> {
        let Some(nested) = self.nested.as_mut() else {
            return Err(MapRefusal::OutOfMemory);
        };
        nested.ept02.map(self.ram, l2_gpa, l1_gpa, size_log2, permissions)
    }

    /// Drops EPT02 (L1's INVEPT).
    pub fn flush_ept02(&mut self) {
        if let Some(nested) = self.nested.as_mut() {
            nested.ept02.clear();
        }
    }

    /// Flushes L2's TLB tag (L1's INVVPID).
    pub fn flush_vpid02(&self) {
        if let Err(error) = invvpid(InvvpidKind::SingleContext, self.vpid | VPID02_BIT, 0) {
            log::error!("INVVPID of VPID02 failed: {error:?}");
        }
    }

    /// EPT02 table pages in use.
    pub fn ept02_pages(&self) -> usize {
        self.nested.as_ref().map_or(0, |nested| nested.ept02.pages())
    }

    /// Runs the guest until its next VM exit, or until `slice_ticks` TSC
    /// ticks have passed (a preemption-timer exit; with 0 the vCPU exits
    /// before its first instruction). Its VMCS stays current, so the exit
    /// can be read and handled through `vmcs::read`/`write`.
    pub fn run(&mut self, slice_ticks: u64) -> Result<(), VcpuError> {
        self.make_current()?;
        let rate = vmx_root::capabilities().map_or(0, |caps| caps.misc.preemption_timer_rate());
        // A short slice must not round down to an immediate exit.
        let slice = if slice_ticks == 0 { 0 } else { (slice_ticks >> rate).clamp(1, u64::from(u32::MAX)) };
        // L2 under L1's timer exits when either runs out.
        let l1_timer = if self.in_l2 { self.l1_timer() } else { None };
        let value = l1_timer.map_or(slice, |l1| l1.min(slice));
        vmcs::write(Guest32::PreemptionTimerValue, value as u32);
        // The shim itself uses SSE (the precompiled core library does), so
        // the guest's x87/SSE state is swapped in and out around the entry.
        fxsave(&mut self.host_fx);
        self.xstate.load();
        fxrstor(&self.fx);
        // Safe because this vCPU's VMCS is current with the host state
        // written in `new` (whose RIP is the exit landing) and the guest's
        // FPU state was just loaded.
        let launched = match &self.nested {
            Some(nested) if self.in_l2 => nested.launched,
            _ => self.launched,
        };
        let result = unsafe { enter_guest(&mut self.registers, launched) };
        fxsave(&mut self.fx);
        self.xstate.save();
        fxrstor(&self.host_fx);
        let what = if launched { "VMRESUME" } else { "VMLAUNCH" };
        result.map_err(|error| instruction_failed(what, error))?;
        match self.nested.as_mut() {
            Some(nested) if self.in_l2 => {
                nested.launched = true;
                if let Some(l1) = nested.l1_timer.as_mut() {
                    // vmcs02 saves the timer at every exit.
                    let left = u64::from(vmcs::read(Guest32::PreemptionTimerValue));
                    *l1 -= value.saturating_sub(left).min(*l1);
                }
            }
            _ => self.launched = true,
        }
        Ok(())
    }
}

fn instruction_failed(what: &'static str, error: VmxInstructionError) -> VcpuError {
    let vm_instruction_error = (error == VmxInstructionError::FailValid).then(vmcs::instruction_error);
    VcpuError::Instruction { what, error, vm_instruction_error }
}

fn adjusted(group: &'static str, allowed: vmx::controls::AllowedControls, wanted: u32) -> Result<u32, VcpuError> {
    allowed.adjust(wanted).map_err(|bits| VcpuError::UnsupportedControls { group, bits })
}

fn write_controls(capabilities: &VmxCapabilities) -> Result<(), VcpuError> {
    // The preemption timer bounds each turn of a guest, so that one that
    // never exits cannot keep the CPU from the others.
    let pin = PinBasedControls::EXTERNAL_INTERRUPT_EXITING
        | PinBasedControls::NMI_EXITING
        | PinBasedControls::VIRTUAL_NMIS
        | PinBasedControls::PREEMPTION_TIMER;
    // Every port access exits (the monitor emulates all devices); MSRs exit
    // except those the VMCS switches itself (see msr_bitmap).
    let primary = PrimaryControls::HLT_EXITING
        | PrimaryControls::UNCONDITIONAL_IO_EXITING
        | PrimaryControls::TSC_OFFSETTING
        | PrimaryControls::MSR_BITMAPS
        | PrimaryControls::SECONDARY_CONTROLS;
    let secondary = SecondaryControls::EPT
        | SecondaryControls::VPID
        | SecondaryControls::UNRESTRICTED_GUEST
        | SecondaryControls::RDTSCP
        | SecondaryControls::INVPCID;
    let exit = ExitControls::SAVE_DEBUG_CONTROLS
        | ExitControls::HOST_ADDRESS_SPACE_SIZE
        | ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT
        | ExitControls::SAVE_PAT
        | ExitControls::LOAD_PAT
        | ExitControls::SAVE_EFER
        | ExitControls::LOAD_EFER;
    let entry = EntryControls::LOAD_DEBUG_CONTROLS | EntryControls::LOAD_PAT | EntryControls::LOAD_EFER;

    vmcs::write(Control32::PinBasedControls, adjusted("pin-based", capabilities.pin_based, pin.bits())?);
    vmcs::write(Control32::PrimaryProcessorBasedControls, adjusted("primary", capabilities.primary, primary.bits())?);
    vmcs::write(
        Control32::SecondaryProcessorBasedControls,
        adjusted("secondary", capabilities.secondary, secondary.bits())?,
    );
    vmcs::write(Control32::ExitControls, adjusted("VM-exit", capabilities.exit, exit.bits())?);
    vmcs::write(Control32::EntryControls, adjusted("VM-entry", capabilities.entry, entry.bits())?);
    vmcs::write(Control64::MsrBitmaps, msr_bitmap::address().as_u64());
    vmcs::write(Control64::TscOffset, 0);
    vmcs::write(Control32::ExceptionBitmap, 0);
    vmcs::write(Control32::Cr3TargetCount, 0);
    vmcs::write(ControlNatural::Cr0GuestHostMask, CR0_OWNED_BITS);
    vmcs::write(ControlNatural::Cr4GuestHostMask, CR4_OWNED_BITS);
    Ok(())
}

/// vmcs02 differs from vmcs01 in what keeps L2 contained and what L0
/// needs to emulate L1's view: every MSR access exits (L1's MSR bitmap is
/// consulted by the monitor, vmcs01's would let L2 reach L1's MSRs), and
/// the preemption timer is saved at each exit (L1's timer is emulated on
/// top of the shim's time slices).
fn write_vmcs02_controls(capabilities: &VmxCapabilities) -> Result<(), VcpuError> {
    let primary = vmcs::read(Control32::PrimaryProcessorBasedControls) & !PrimaryControls::MSR_BITMAPS.bits();
    vmcs::write(Control32::PrimaryProcessorBasedControls, adjusted("primary", capabilities.primary, primary)?);
    let exit = vmcs::read(Control32::ExitControls) | ExitControls::SAVE_PREEMPTION_TIMER.bits();
    vmcs::write(Control32::ExitControls, adjusted("VM-exit", capabilities.exit, exit)?);
    Ok(())
}

/// What the CPU loads on every VM exit: the shim's own state on this CPU.
fn write_host_state() {
    let cpu = percpu::current();
    let selectors = cpu.gdt.selectors;
    vmcs::write(Host16::CsSelector, selectors.kernel_code.0);
    vmcs::write(Host16::SsSelector, selectors.kernel_data.0);
    vmcs::write(Host16::DsSelector, selectors.kernel_data.0);
    vmcs::write(Host16::EsSelector, selectors.kernel_data.0);
    vmcs::write(Host16::FsSelector, 0);
    vmcs::write(Host16::GsSelector, 0);
    vmcs::write(Host16::TrSelector, selectors.tss.0);
    vmcs::write(HostNatural::Cr0, read_cr0());
    vmcs::write(HostNatural::Cr3, read_cr3());
    vmcs::write(HostNatural::Cr4, read_cr4());
    vmcs::write(HostNatural::FsBase, 0);
    vmcs::write(HostNatural::GsBase, read_msr(IA32_GS_BASE));
    vmcs::write(HostNatural::TrBase, cpu.tss_address());
    vmcs::write(HostNatural::GdtrBase, sgdt().base.as_u64());
    vmcs::write(HostNatural::IdtrBase, sidt().base.as_u64());
    vmcs::write(Host32::Ia32SysenterCs, 0);
    vmcs::write(HostNatural::Ia32SysenterEsp, 0);
    vmcs::write(HostNatural::Ia32SysenterEip, 0);
    vmcs::write(Host64::Ia32Pat, read_msr(IA32_PAT));
    vmcs::write(Host64::Ia32Efer, read_msr(IA32_EFER));
    vmcs::write(HostNatural::Rip, exit_landing_address());
}

fn write_flat_protected_guest_state(capabilities: &VmxCapabilities, start: &FlatProtectedStart) {
    // The guest believes CR0 = PE|ET and CR4 = 0; the real registers also
    // carry the bits VMX operation needs (see CR0_OWNED_BITS/CR4_OWNED_BITS).
    // NE reads as 1, as firmware leaves it: guests that keep what they read
    // then never write the bit the shim owns, and their CR0 writes do not exit.
    let guest_cr0 = CR0_PE | CR0_ET | CR0_NE;
    vmcs::write(GuestNatural::Cr0, capabilities.adjust_unrestricted_guest_cr0(guest_cr0));
    vmcs::write(ControlNatural::Cr0ReadShadow, guest_cr0);
    vmcs::write(GuestNatural::Cr3, 0);
    vmcs::write(GuestNatural::Cr4, capabilities.adjust_cr4(0));
    vmcs::write(ControlNatural::Cr4ReadShadow, 0);

    let code = (Guest16::CsSelector, Guest32::CsLimit, Guest32::CsAccessRights, GuestNatural::CsBase);
    vmcs::write(code.0, start.code_selector);
    vmcs::write(code.1, u32::MAX);
    vmcs::write(code.2, ACCESS_CODE32);
    vmcs::write(code.3, 0);
    for (selector, limit, access, base) in [
        (Guest16::DsSelector, Guest32::DsLimit, Guest32::DsAccessRights, GuestNatural::DsBase),
        (Guest16::EsSelector, Guest32::EsLimit, Guest32::EsAccessRights, GuestNatural::EsBase),
        (Guest16::FsSelector, Guest32::FsLimit, Guest32::FsAccessRights, GuestNatural::FsBase),
        (Guest16::GsSelector, Guest32::GsLimit, Guest32::GsAccessRights, GuestNatural::GsBase),
        (Guest16::SsSelector, Guest32::SsLimit, Guest32::SsAccessRights, GuestNatural::SsBase),
    ] {
        vmcs::write(selector, start.data_selector);
        vmcs::write(limit, u32::MAX);
        vmcs::write(access, ACCESS_DATA32);
        vmcs::write(base, 0);
    }
    vmcs::write(Guest16::TrSelector, 0);
    vmcs::write(Guest32::TrLimit, 0xffff);
    vmcs::write(Guest32::TrAccessRights, ACCESS_TSS_BUSY);
    vmcs::write(GuestNatural::TrBase, 0);
    vmcs::write(Guest16::LdtrSelector, 0);
    vmcs::write(Guest32::LdtrLimit, 0);
    vmcs::write(Guest32::LdtrAccessRights, ACCESS_UNUSABLE);
    vmcs::write(GuestNatural::LdtrBase, 0);
    let (gdt_base, gdt_limit) = start.gdtr.unwrap_or((0, 0xffff));
    vmcs::write(GuestNatural::GdtrBase, gdt_base);
    vmcs::write(Guest32::GdtrLimit, u32::from(gdt_limit));
    vmcs::write(GuestNatural::IdtrBase, 0);
    vmcs::write(Guest32::IdtrLimit, 0xffff);

    vmcs::write(GuestNatural::Rip, start.rip);
    vmcs::write(GuestNatural::Rsp, 0);
    vmcs::write(GuestNatural::Rflags, RFLAGS_RESERVED_ONE);
    vmcs::write(GuestNatural::Dr7, DR7_RESET);
    vmcs::write(GuestNatural::PendingDebugExceptions, 0);
    vmcs::write(Guest64::Ia32Efer, 0);
    vmcs::write(Guest64::Ia32Pat, PAT_POWER_ON);
    vmcs::write(Guest64::Ia32Debugctl, 0);
    vmcs::write(Guest64::VmcsLinkPointer, u64::MAX);
    vmcs::write(Guest32::Ia32SysenterCs, 0);
    vmcs::write(GuestNatural::Ia32SysenterEsp, 0);
    vmcs::write(GuestNatural::Ia32SysenterEip, 0);
    vmcs::write(Guest32::InterruptibilityState, 0);
    vmcs::write(Guest32::ActivityState, 0);
    vmcs::write(Control32::EntryInterruptionInfo, 0);
}
