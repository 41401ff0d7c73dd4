//! The checks a VM entry makes on vmcs12 before anything of L2 runs
//! (SDM 27.2-27.4), in the order and with the outcome of the CPU:
//!
//! - controls (27.2.1) and host state (27.2.2-27.2.4) fail the VMLAUNCH or
//!   VMRESUME itself with VMfailValid, error 7 or 8;
//! - guest state (27.3.1) fails the entry as a VM exit to L1 with reason
//!   33 and bit 31 set; loading the entry's MSR list (27.4) with reason 34
//!   and the 1-based index of the failing entry as qualification.
//!
//! Each failed rule is named by a `&'static str` that quotes the SDM, for
//! the monitor's log and for the tests.

use alloc::vec::Vec;

use vmx::controls::{EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls};
use vmx::exit::{InterruptionInfo, InterruptionType};
use vmx::vmcs::{Control16, Control32, Control64, Guest64, GuestNatural, Host16, Host64, HostNatural};

use crate::guest_memory::GuestMemory;

use super::capabilities::{L1VmxCapabilities, VMCS12_REVISION};
use super::state::{
    is_canonical, CpuState, Segment, ACTIVITY_ACTIVE, ACTIVITY_HLT, ACTIVITY_SHUTDOWN, ACTIVITY_WAIT_FOR_SIPI,
    BLOCKING_BY_MOV_SS, BLOCKING_BY_NMI, BLOCKING_BY_SMI, BLOCKING_BY_STI, CR0_PE, CR0_PG, CR4_PAE, CR4_PCIDE,
    EFER_LMA, EFER_LME, RFLAGS_IF, RFLAGS_TF,
};
use super::vmcs12::Vmcs12;

/// A failed check: which SDM rule.
pub type CheckFailure = &'static str;

/// Exit qualifications of a VM-entry failure due to invalid guest state
/// (SDM 27.8, table 28-? "exit qualification for VM-entry failure").
pub const QUALIFICATION_DEFAULT: u64 = 0;
pub const QUALIFICATION_PDPTE: u64 = 2;
pub const QUALIFICATION_NMI_BLOCKING: u64 = 3;
pub const QUALIFICATION_LINK_POINTER: u64 = 4;

/// A guest-state check failure: the qualification L1 sees, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestStateFailure {
    pub qualification: u64,
    pub rule: CheckFailure,
}

/// The control groups as vmcs12 holds them, secondary zeroed when the
/// primary controls do not activate it (SDM 25.6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controls12 {
    pub pin: PinBasedControls,
    pub primary: PrimaryControls,
    pub secondary: SecondaryControls,
    pub exit: ExitControls,
    pub entry: EntryControls,
}

impl Controls12 {
    pub fn of(vmcs12: &Vmcs12) -> Self {
        let primary = PrimaryControls(vmcs12.get(Control32::PrimaryProcessorBasedControls) as u32);
        let secondary = if primary.contains(PrimaryControls::SECONDARY_CONTROLS) {
            SecondaryControls(vmcs12.get(Control32::SecondaryProcessorBasedControls) as u32)
        } else {
            SecondaryControls::empty()
        };
        Self {
            pin: PinBasedControls(vmcs12.get(Control32::PinBasedControls) as u32),
            primary,
            secondary,
            exit: ExitControls(vmcs12.get(Control32::ExitControls) as u32),
            entry: EntryControls(vmcs12.get(Control32::EntryControls) as u32),
        }
    }
}

fn require(condition: bool, rule: CheckFailure) -> Result<(), CheckFailure> {
    if condition {
        Ok(())
    } else {
        Err(rule)
    }
}

/// Whether a physical address is 4 KiB aligned and within L1's width.
fn page_address_ok(caps: &L1VmxCapabilities, address: u64) -> bool {
    address & 0xfff == 0 && !caps.beyond_physical_width(address)
}

/// An MSR list (16 bytes per entry) must be 16-byte aligned and end within
/// the physical-address width (SDM 27.2.1.2).
fn msr_list_ok(caps: &L1VmxCapabilities, address: u64, count: u32) -> bool {
    count == 0
        || (address & 0xf == 0
            && address.checked_add(u64::from(count) * 16 - 1).is_some_and(|last| !caps.beyond_physical_width(last)))
}

/// Whether an EPTP is one a VM entry accepts (SDM 27.2.1.1): a supported
/// memory type, a 4-level walk, A/D only if offered, reserved bits 11:7 and
/// those beyond the physical-address width clear. INVEPT uses the same
/// test for its single-context descriptor (SDM 31.3, INVEPT).
pub fn eptp_valid(caps: &L1VmxCapabilities, eptp: u64) -> bool {
    let memory_type_ok = match eptp & 7 {
        0 => caps.ept_vpid.uncacheable(),
        6 => caps.ept_vpid.write_back(),
        _ => false,
    };
    let walk_ok = (eptp >> 3) & 7 == 3 && caps.ept_vpid.page_walk_4();
    let ad_ok = eptp & (1 << 6) == 0 || caps.ept_vpid.accessed_dirty();
    memory_type_ok && walk_ok && ad_ok && eptp & 0xf80 == 0 && !caps.beyond_physical_width(eptp)
}

/// SDM 27.2.1: the VM-execution, VM-exit and VM-entry controls. A failure
/// is VM-instruction error 7.
pub fn check_controls(caps: &L1VmxCapabilities, vmcs12: &Vmcs12) -> Result<(), CheckFailure> {
    let controls = Controls12::of(vmcs12);
    // 27.2.1.1 VM-execution control fields.
    require(caps.pin_based.is_valid(controls.pin.bits()), "pin-based controls: reserved bits (A.3.1)")?;
    require(caps.primary.is_valid(controls.primary.bits()), "primary controls: reserved bits (A.3.2)")?;
    if controls.primary.contains(PrimaryControls::SECONDARY_CONTROLS) {
        require(caps.secondary.is_valid(controls.secondary.bits()), "secondary controls: reserved bits (A.3.3)")?;
    }
    require(
        vmcs12.get(Control32::Cr3TargetCount) <= u64::from(caps.misc.cr3_target_count()),
        "CR3-target count greater than IA32_VMX_MISC[24:16]",
    )?;
    if controls.primary.contains(PrimaryControls::IO_BITMAPS) {
        require(
            page_address_ok(caps, vmcs12.get(Control64::IoBitmapA))
                && page_address_ok(caps, vmcs12.get(Control64::IoBitmapB)),
            "I/O bitmap addresses not 4 KiB aligned or beyond the physical-address width",
        )?;
    }
    if controls.primary.contains(PrimaryControls::MSR_BITMAPS) {
        require(
            page_address_ok(caps, vmcs12.get(Control64::MsrBitmaps)),
            "MSR bitmap address not 4 KiB aligned or beyond the physical-address width",
        )?;
    }
    if !controls.pin.contains(PinBasedControls::NMI_EXITING) {
        require(!controls.pin.contains(PinBasedControls::VIRTUAL_NMIS), "virtual NMIs without NMI exiting")?;
    }
    if !controls.pin.contains(PinBasedControls::VIRTUAL_NMIS) {
        require(
            !controls.primary.contains(PrimaryControls::NMI_WINDOW_EXITING),
            "NMI-window exiting without virtual NMIs",
        )?;
    }
    if controls.secondary.contains(SecondaryControls::VPID) {
        require(vmcs12.get(Control16::VirtualProcessorId) != 0, "enable VPID with VPID 0")?;
    }
    if controls.secondary.contains(SecondaryControls::EPT) {
        require(eptp_valid(caps, vmcs12.get(Control64::EptPointer)), "invalid EPT pointer")?;
    }
    if controls.secondary.contains(SecondaryControls::UNRESTRICTED_GUEST) {
        require(controls.secondary.contains(SecondaryControls::EPT), "unrestricted guest without EPT")?;
    }

    // 27.2.1.2 VM-exit control fields.
    require(caps.exit.is_valid(controls.exit.bits()), "exit controls: reserved bits (A.4)")?;
    if !controls.pin.contains(PinBasedControls::PREEMPTION_TIMER) {
        require(
            !controls.exit.contains(ExitControls::SAVE_PREEMPTION_TIMER),
            "save VMX-preemption timer without activating it",
        )?;
    }
    require(
        msr_list_ok(caps, vmcs12.get(Control64::ExitMsrStoreAddress), vmcs12.get(Control32::ExitMsrStoreCount) as u32),
        "VM-exit MSR-store address",
    )?;
    require(
        msr_list_ok(caps, vmcs12.get(Control64::ExitMsrLoadAddress), vmcs12.get(Control32::ExitMsrLoadCount) as u32),
        "VM-exit MSR-load address",
    )?;

    // 27.2.1.3 VM-entry control fields.
    require(caps.entry.is_valid(controls.entry.bits()), "entry controls: reserved bits (A.5)")?;
    check_event_injection(caps, vmcs12, &controls)?;
    require(
        msr_list_ok(caps, vmcs12.get(Control64::EntryMsrLoadAddress), vmcs12.get(Control32::EntryMsrLoadCount) as u32),
        "VM-entry MSR-load address",
    )
}

/// The VM-entry interruption-information field and its companions
/// (SDM 27.2.1.3).
fn check_event_injection(caps: &L1VmxCapabilities, vmcs12: &Vmcs12, controls: &Controls12) -> Result<(), CheckFailure> {
    let info = InterruptionInfo(vmcs12.get(Control32::EntryInterruptionInfo) as u32);
    if !info.is_valid() {
        return Ok(());
    }
    let kind = info.interruption_type();
    require(kind != InterruptionType::Reserved, "injection type 1 is reserved")?;
    require(
        kind != InterruptionType::OtherEvent || caps.primary.supports(PrimaryControls::MONITOR_TRAP_FLAG.bits()),
        "injection type 7 without monitor trap flag support",
    )?;
    let vector_ok = match kind {
        InterruptionType::Nmi => info.vector() == 2,
        InterruptionType::HardwareException => info.vector() <= 31,
        InterruptionType::OtherEvent => info.vector() == 0,
        _ => true,
    };
    require(vector_ok, "injection vector does not fit its type")?;
    let unrestricted = controls.secondary.contains(SecondaryControls::UNRESTRICTED_GUEST);
    let protected = vmcs12.get(GuestNatural::Cr0) & CR0_PE != 0;
    let error_code_expected = (!unrestricted || protected)
        && kind == InterruptionType::HardwareException
        && matches!(info.vector(), 8 | 10 | 11 | 12 | 13 | 14 | 17);
    require(
        info.error_code_valid() == error_code_expected,
        "deliver-error-code must be 1 exactly for exceptions with an error code in protected mode",
    )?;
    require(info.0 & 0x7fff_f000 == 0, "injection: reserved bits 30:12")?;
    if info.error_code_valid() {
        require(
            vmcs12.get(Control32::EntryExceptionErrorCode) & 0xffff_0000 == 0,
            "injected error code: bits 31:16 must be 0",
        )?;
    }
    if kind.needs_instruction_length() {
        let length = vmcs12.get(Control32::EntryInstructionLength);
        require(
            (1..=15).contains(&length) || (length == 0 && caps.misc.zero_length_injection()),
            "software event injection with an instruction length outside 1..15",
        )?;
    }
    Ok(())
}

/// IA32_PAT: every byte must be a valid memory type, 0, 1, 4, 5, 6 or 7
/// (SDM 27.2.2, 27.3.1.1).
pub fn pat_valid(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|&entry| matches!(entry, 0 | 1 | 4 | 5 | 6 | 7))
}

/// EFER bits a guest may set: SCE, LME, LMA, NXE.
const EFER_DEFINED: u64 = 0xd01;

/// SDM 27.2.2-27.2.4: host control registers, MSRs, segments, descriptor
/// tables and address-space size. A failure is VM-instruction error 8.
/// `l1_in_ia32e_mode` is EFER.LMA of L1 at the VMLAUNCH/VMRESUME.
pub fn check_host_state(caps: &L1VmxCapabilities, vmcs12: &Vmcs12, l1_in_ia32e_mode: bool) -> Result<(), CheckFailure> {
    let controls = Controls12::of(vmcs12);
    let host_64 = controls.exit.contains(ExitControls::HOST_ADDRESS_SPACE_SIZE);
    let cr4 = vmcs12.get(HostNatural::Cr4);
    require(caps.cr0_fixed.is_valid(vmcs12.get(HostNatural::Cr0)), "host CR0 against the fixed bits")?;
    require(caps.cr4_fixed.is_valid(cr4), "host CR4 against the fixed bits")?;
    require(!caps.beyond_physical_width(vmcs12.get(HostNatural::Cr3)), "host CR3 beyond the physical-address width")?;
    require(
        is_canonical(vmcs12.get(HostNatural::Ia32SysenterEsp))
            && is_canonical(vmcs12.get(HostNatural::Ia32SysenterEip)),
        "host IA32_SYSENTER_ESP/EIP not canonical",
    )?;
    if controls.exit.contains(ExitControls::LOAD_PAT) {
        require(pat_valid(vmcs12.get(Host64::Ia32Pat)), "host IA32_PAT has an invalid memory type")?;
    }
    if controls.exit.contains(ExitControls::LOAD_EFER) {
        let efer = vmcs12.get(Host64::Ia32Efer);
        require(efer & !EFER_DEFINED == 0, "host IA32_EFER reserved bits")?;
        require(
            (efer & EFER_LMA != 0) == host_64 && (efer & EFER_LME != 0) == host_64,
            "host IA32_EFER.LMA/LME differ from host address-space size",
        )?;
    }

    // 27.2.3 segment and descriptor-table registers.
    let selectors = [
        Host16::EsSelector,
        Host16::CsSelector,
        Host16::SsSelector,
        Host16::DsSelector,
        Host16::FsSelector,
        Host16::GsSelector,
        Host16::TrSelector,
    ];
    require(selectors.iter().all(|&s| vmcs12.get(s) & 7 == 0), "host selector with RPL or TI set")?;
    require(vmcs12.get(Host16::CsSelector) != 0, "host CS selector is null")?;
    require(vmcs12.get(Host16::TrSelector) != 0, "host TR selector is null")?;
    require(host_64 || vmcs12.get(Host16::SsSelector) != 0, "host SS selector is null outside 64-bit mode")?;
    let bases =
        [HostNatural::FsBase, HostNatural::GsBase, HostNatural::GdtrBase, HostNatural::IdtrBase, HostNatural::TrBase];
    require(bases.iter().all(|&b| is_canonical(vmcs12.get(b))), "host base address not canonical")?;

    // 27.2.4 address-space size.
    let guest_64 = controls.entry.contains(EntryControls::IA32E_MODE_GUEST);
    let rip = vmcs12.get(HostNatural::Rip);
    if !l1_in_ia32e_mode {
        require(!guest_64 && !host_64, "IA-32e mode guest or host outside IA-32e mode")?;
    } else {
        require(host_64, "host address-space size 0 in IA-32e mode")?;
    }
    if !host_64 {
        require(!guest_64, "IA-32e mode guest with a 32-bit host")?;
        require(cr4 & CR4_PCIDE == 0, "host CR4.PCIDE with a 32-bit host")?;
        require(rip >> 32 == 0, "host RIP above 4 GiB with a 32-bit host")?;
    } else {
        require(cr4 & CR4_PAE != 0, "host CR4.PAE clear with a 64-bit host")?;
        require(is_canonical(rip), "host RIP not canonical")?;
    }
    Ok(())
}

/// IA32_DEBUGCTL bits that are reserved: 5:2 and 63:16 (bits 15:6 and 1:0
/// are defined on the CPUs L1 is shown).
const DEBUGCTL_RESERVED: u64 = !0xffff | 0x3c;

/// G must be 0 when limit bits 11:0 are not all 1, and 1 when any of bits
/// 31:20 is 1 (SDM 27.3.1.2).
fn granularity_consistent(segment: &Segment) -> bool {
    let g = segment.granularity();
    (segment.limit & 0xfff == 0xfff || !g) && (segment.limit >> 20 == 0 || g)
}

/// SDM 27.3.1: the guest-state area. A failure is a VM exit with reason 33.
/// On success, returns the PDPTEs L2 starts with when it uses PAE paging
/// (from vmcs12 with EPT, from memory at CR3 without, SDM 27.3.1.6).
pub fn check_guest_state(
    caps: &L1VmxCapabilities,
    vmcs12: &Vmcs12,
    memory: &impl GuestMemory,
) -> Result<CpuState, GuestStateFailure> {
    let fail = |rule| GuestStateFailure { qualification: QUALIFICATION_DEFAULT, rule };
    let controls = Controls12::of(vmcs12);
    let guest = CpuState::from_guest_fields(|encoding| vmcs12.get_raw(vmx::vmcs::Encoding(encoding)));
    let unrestricted = controls.secondary.contains(SecondaryControls::UNRESTRICTED_GUEST);
    let ia32e = controls.entry.contains(EntryControls::IA32E_MODE_GUEST);

    // 27.3.1.1 control registers, debug registers and MSRs.
    let mut cr0_fixed = caps.cr0_fixed;
    if unrestricted {
        cr0_fixed.fixed0 &= !(CR0_PE | CR0_PG);
    }
    require(cr0_fixed.is_valid(guest.cr0), "guest CR0 against the fixed bits").map_err(fail)?;
    require(guest.cr0 & CR0_PG == 0 || guest.cr0 & CR0_PE != 0, "guest CR0.PG without CR0.PE").map_err(fail)?;
    require(caps.cr4_fixed.is_valid(guest.cr4), "guest CR4 against the fixed bits").map_err(fail)?;
    if ia32e {
        require(guest.cr0 & CR0_PG != 0 && guest.cr4 & CR4_PAE != 0, "IA-32e mode guest without CR0.PG and CR4.PAE")
            .map_err(fail)?;
    } else {
        require(guest.cr4 & CR4_PCIDE == 0, "guest CR4.PCIDE outside IA-32e mode").map_err(fail)?;
    }
    require(!caps.beyond_physical_width(guest.cr3), "guest CR3 beyond the physical-address width").map_err(fail)?;
    if controls.entry.contains(EntryControls::LOAD_DEBUG_CONTROLS) {
        require(guest.debugctl & DEBUGCTL_RESERVED == 0, "guest IA32_DEBUGCTL reserved bits").map_err(fail)?;
        require(guest.dr7 >> 32 == 0, "guest DR7 bits 63:32").map_err(fail)?;
    }
    require(
        is_canonical(guest.sysenter_esp) && is_canonical(guest.sysenter_eip),
        "guest IA32_SYSENTER_ESP/EIP not canonical",
    )
    .map_err(fail)?;
    if controls.entry.contains(EntryControls::LOAD_PAT) {
        require(pat_valid(guest.pat), "guest IA32_PAT has an invalid memory type").map_err(fail)?;
    }
    if controls.entry.contains(EntryControls::LOAD_EFER) {
        require(guest.efer & !EFER_DEFINED == 0, "guest IA32_EFER reserved bits").map_err(fail)?;
        require((guest.efer & EFER_LMA != 0) == ia32e, "guest IA32_EFER.LMA differs from IA-32e mode guest")
            .map_err(fail)?;
        require(
            guest.cr0 & CR0_PG == 0 || (guest.efer & EFER_LMA != 0) == (guest.efer & EFER_LME != 0),
            "guest IA32_EFER.LMA differs from LME with paging on",
        )
        .map_err(fail)?;
    }

    check_guest_segments(&guest, unrestricted, ia32e).map_err(fail)?;

    // 27.3.1.3 descriptor-table registers.
    require(is_canonical(guest.gdtr.base) && is_canonical(guest.idtr.base), "guest GDTR/IDTR base not canonical")
        .map_err(fail)?;
    require(guest.gdtr.limit >> 16 == 0 && guest.idtr.limit >> 16 == 0, "guest GDTR/IDTR limit above 0xffff")
        .map_err(fail)?;

    // 27.3.1.4 RIP and RFLAGS.
    if ia32e && guest.cs().long() {
        require(is_canonical(guest.rip), "guest RIP not canonical").map_err(fail)?;
    } else {
        require(guest.rip >> 32 == 0, "guest RIP above 4 GiB outside 64-bit mode").map_err(fail)?;
    }
    let rflags_reserved = !0x3f_ffffu64 | 1 << 15 | 1 << 5 | 1 << 3;
    require(guest.rflags & rflags_reserved == 0 && guest.rflags & 2 != 0, "guest RFLAGS reserved bits")
        .map_err(fail)?;
    if ia32e || guest.cr0 & CR0_PE == 0 {
        require(!guest.virtual_8086(), "guest RFLAGS.VM in IA-32e mode or real mode").map_err(fail)?;
    }
    let injection = InterruptionInfo(vmcs12.get(Control32::EntryInterruptionInfo) as u32);
    let injecting = injection.is_valid();
    if injecting && injection.interruption_type() == InterruptionType::ExternalInterrupt {
        require(guest.rflags & RFLAGS_IF != 0, "injecting an external interrupt with RFLAGS.IF = 0").map_err(fail)?;
    }

    // 27.3.1.5 non-register state.
    let activity = guest.activity_state;
    let activity_supported = match activity {
        ACTIVITY_ACTIVE => true,
        ACTIVITY_HLT => caps.misc.activity_states().hlt,
        ACTIVITY_SHUTDOWN => caps.misc.activity_states().shutdown,
        ACTIVITY_WAIT_FOR_SIPI => caps.misc.activity_states().wait_for_sipi,
        _ => false,
    };
    require(activity_supported, "guest activity state not supported").map_err(fail)?;
    if activity == ACTIVITY_HLT {
        require(guest.ss().dpl() == 0, "guest HLT activity with SS.DPL != 0").map_err(fail)?;
    }
    let interruptibility = guest.interruptibility;
    if interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0 {
        require(activity == ACTIVITY_ACTIVE, "guest blocking by STI or MOV SS while not active").map_err(fail)?;
    }
    if injecting {
        let kind = injection.interruption_type();
        let allowed = match activity {
            ACTIVITY_HLT => match kind {
                InterruptionType::ExternalInterrupt | InterruptionType::Nmi => true,
                InterruptionType::HardwareException => matches!(injection.vector(), 1 | 18),
                InterruptionType::OtherEvent => injection.vector() == 0,
                _ => false,
            },
            ACTIVITY_SHUTDOWN => {
                kind == InterruptionType::Nmi
                    || (kind == InterruptionType::HardwareException && injection.vector() == 18)
            }
            ACTIVITY_WAIT_FOR_SIPI => false,
            _ => true,
        };
        require(allowed, "event injection not allowed in the guest activity state").map_err(fail)?;
    }
    require(interruptibility & !0x1f == 0, "guest interruptibility reserved bits").map_err(fail)?;
    require(interruptibility & 0x10 == 0, "guest interruptibility: enclave interruption without SGX").map_err(fail)?;
    require(
        interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS),
        "guest blocking by both STI and MOV SS",
    )
    .map_err(fail)?;
    if guest.rflags & RFLAGS_IF == 0 {
        require(interruptibility & BLOCKING_BY_STI == 0, "guest blocking by STI with RFLAGS.IF = 0").map_err(fail)?;
    }
    if injecting && matches!(injection.interruption_type(), InterruptionType::ExternalInterrupt | InterruptionType::Nmi)
    {
        require(
            interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) == 0,
            "injecting an interrupt or NMI with blocking by STI or MOV SS",
        )
        .map_err(fail)?;
    }
    require(interruptibility & BLOCKING_BY_SMI == 0, "guest blocking by SMI outside SMM").map_err(fail)?;
    if injecting
        && injection.interruption_type() == InterruptionType::Nmi
        && controls.pin.contains(PinBasedControls::VIRTUAL_NMIS)
    {
        require(interruptibility & BLOCKING_BY_NMI == 0, "injecting a virtual NMI with blocking by NMI")
            .map_err(fail)?;
    }
    let pending = guest.pending_debug_exceptions;
    require(pending & !0x1_500f == 0, "guest pending debug exceptions reserved bits").map_err(fail)?;
    if interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0 || activity == ACTIVITY_HLT {
        let single_step = guest.rflags & RFLAGS_TF != 0 && guest.debugctl & 2 == 0;
        require((pending & (1 << 14) != 0) == single_step, "guest pending BS differs from RFLAGS.TF and BTF")
            .map_err(fail)?;
    }

    // VMCS link pointer: without VMCS shadowing offered, it must be all
    // ones or point at a VMCS with our revision and bit 31 clear.
    let link = vmcs12.get(Guest64::VmcsLinkPointer);
    if link != u64::MAX {
        let link_fail = |rule| GuestStateFailure { qualification: QUALIFICATION_LINK_POINTER, rule };
        require(page_address_ok(caps, link), "VMCS link pointer not aligned or too wide").map_err(link_fail)?;
        let revision = memory.read_u32(link).unwrap_or(u32::MAX);
        require(revision == VMCS12_REVISION, "VMCS link pointer: wrong revision").map_err(link_fail)?;
    }

    // 27.3.1.6 PDPTEs, for PAE paging outside IA-32e mode.
    let mut guest = guest;
    if guest.cr0 & CR0_PG != 0 && guest.cr4 & CR4_PAE != 0 && !ia32e {
        if !controls.secondary.contains(SecondaryControls::EPT) {
            for (index, pdpte) in guest.pdptes.iter_mut().enumerate() {
                *pdpte = memory.read_u64((guest.cr3 & 0xffff_ffe0) + index as u64 * 8).unwrap_or(u64::MAX);
            }
        }
        let reserved = 0x1e6 | !0u64 << caps.physical_address_width;
        require(guest.pdptes.iter().all(|&pdpte| pdpte & 1 == 0 || pdpte & reserved == 0), "guest PDPTE reserved bits")
            .map_err(|rule| GuestStateFailure { qualification: QUALIFICATION_PDPTE, rule })?;
    }
    Ok(guest)
}

/// SDM 27.3.1.2: selectors, bases, limits and access rights.
fn check_guest_segments(guest: &CpuState, unrestricted: bool, ia32e: bool) -> Result<(), CheckFailure> {
    let [es, cs, ss, ds, fs, gs] = guest.segments;
    let (tr, ldtr) = (guest.tr, guest.ldtr);
    require(tr.selector & 4 == 0, "guest TR selector TI flag")?;
    require(ldtr.unusable() || ldtr.selector & 4 == 0, "guest LDTR selector TI flag")?;

    if guest.virtual_8086() {
        for segment in guest.segments {
            require(segment.base == u64::from(segment.selector) << 4, "virtual-8086 segment base != selector << 4")?;
            require(segment.limit == 0xffff, "virtual-8086 segment limit != 0xffff")?;
            require(segment.access_rights == 0xf3, "virtual-8086 segment access rights != 0xf3")?;
        }
    } else {
        if !unrestricted {
            require(ss.selector & 3 == cs.selector & 3, "guest SS.RPL != CS.RPL")?;
        }
        // Bases (64-bit processor).
        require(is_canonical(tr.base) && is_canonical(fs.base) && is_canonical(gs.base), "guest TR/FS/GS base")?;
        require(ldtr.unusable() || is_canonical(ldtr.base), "guest LDTR base not canonical")?;
        require(cs.base >> 32 == 0, "guest CS base above 4 GiB")?;
        for segment in [ss, ds, es] {
            require(segment.unusable() || segment.base >> 32 == 0, "guest SS/DS/ES base above 4 GiB")?;
        }

        // CS.
        let cs_type = cs.segment_type();
        require(
            matches!(cs_type, 9 | 11 | 13 | 15) || (unrestricted && cs_type == 3),
            "guest CS type not accessed code (or 3 for an unrestricted guest)",
        )?;
        require(cs.code_or_data(), "guest CS is a system segment")?;
        match cs_type {
            3 => require(cs.dpl() == 0, "guest CS type 3 with DPL != 0")?,
            9 | 11 => require(cs.dpl() == ss.dpl(), "guest non-conforming CS.DPL != SS.DPL")?,
            _ => require(cs.dpl() <= ss.dpl(), "guest conforming CS.DPL > SS.DPL")?,
        }
        require(cs.present(), "guest CS not present")?;
        require(cs.access_rights & 0xfffe_0f00 == 0, "guest CS access-rights reserved bits")?;
        if ia32e && cs.long() {
            require(!cs.default_big(), "guest CS with both L and D/B")?;
        }
        require(granularity_consistent(&cs), "guest CS granularity inconsistent with its limit")?;

        // SS.
        if !ss.unusable() {
            require(matches!(ss.segment_type(), 3 | 7), "guest SS type not read/write data")?;
            require(ss.code_or_data(), "guest SS is a system segment")?;
            require(ss.present(), "guest SS not present")?;
            require(ss.access_rights & 0xfffe_0f00 == 0, "guest SS access-rights reserved bits")?;
            require(granularity_consistent(&ss), "guest SS granularity inconsistent with its limit")?;
        }
        if !unrestricted {
            require(ss.dpl() == (ss.selector & 3) as u8, "guest SS.DPL != SS.RPL")?;
        }
        if cs_type == 3 || guest.cr0 & CR0_PE == 0 {
            require(ss.dpl() == 0, "guest SS.DPL != 0 in real mode or with CS type 3")?;
        }

        // DS, ES, FS, GS.
        for segment in [ds, es, fs, gs] {
            if segment.unusable() {
                continue;
            }
            let segment_type = segment.segment_type();
            require(segment_type & 1 != 0, "guest data segment not accessed")?;
            require(segment_type & 8 == 0 || segment_type & 2 != 0, "guest data segment is execute-only code")?;
            require(segment.code_or_data(), "guest data segment is a system segment")?;
            if !unrestricted && segment_type <= 11 {
                require(segment.dpl() >= (segment.selector & 3) as u8, "guest data segment DPL < RPL")?;
            }
            require(segment.present(), "guest data segment not present")?;
            require(segment.access_rights & 0xfffe_0f00 == 0, "guest data segment access-rights reserved bits")?;
            require(granularity_consistent(&segment), "guest data segment granularity inconsistent")?;
        }
    }

    // TR and LDTR, in every mode.
    let tr_type_ok = match tr.segment_type() {
        11 => true,
        3 => !ia32e,
        _ => false,
    };
    require(tr_type_ok, "guest TR type not a busy TSS")?;
    require(!tr.code_or_data(), "guest TR is not a system segment")?;
    require(tr.present(), "guest TR not present")?;
    require(tr.access_rights & 0xfffe_0f00 == 0, "guest TR access-rights reserved bits")?;
    require(granularity_consistent(&tr), "guest TR granularity inconsistent with its limit")?;
    require(!tr.unusable(), "guest TR unusable")?;
    if !ldtr.unusable() {
        require(ldtr.segment_type() == 2, "guest LDTR type not LDT")?;
        require(!ldtr.code_or_data(), "guest LDTR is not a system segment")?;
        require(ldtr.present(), "guest LDTR not present")?;
        require(ldtr.access_rights & 0xfffe_0f00 == 0, "guest LDTR access-rights reserved bits")?;
        require(granularity_consistent(&ldtr), "guest LDTR granularity inconsistent with its limit")?;
    }
    Ok(())
}

/// MSRs a VM-entry or VM-exit MSR-load list must not name (SDM 27.4,
/// 28.6): FS and GS base, the x2APIC range, IA32_SMM_MONITOR_CTL, and
/// IA32_SMBASE outside SMM.
fn msr_loadable(index: u32) -> bool {
    !matches!(index, 0xc000_0100 | 0xc000_0101 | 0x9b | 0x9e) && index >> 8 != 0x8
}

/// Reads and checks an MSR-load list (SDM 27.4): every entry's reserved
/// bits 63:32 of its first quadword must be 0 and its MSR loadable, and
/// `wrmsr_ok` (the monitor's MSR policy: would WRMSR of this value fault?)
/// must accept the value. A failure gives the 1-based index of the entry,
/// the qualification of exit reason 34.
pub fn read_msr_load_list(
    memory: &impl GuestMemory,
    address: u64,
    count: u32,
    wrmsr_ok: impl Fn(u32, u64) -> bool,
) -> Result<Vec<(u32, u64)>, u32> {
    // 512 entries is the recommended maximum L1 is shown; beyond it the
    // SDM allows undefined behaviour, and failing is the bounded choice.
    let limit = 512;
    let mut loads = Vec::with_capacity(count.min(limit) as usize);
    for entry in 0..count {
        let number = entry + 1;
        if entry >= limit {
            return Err(number);
        }
        let at = address + u64::from(entry) * 16;
        let header = memory.read_u64(at).map_err(|_| number)?;
        let value = memory.read_u64(at + 8).map_err(|_| number)?;
        let index = header as u32;
        if header >> 32 != 0 || !msr_loadable(index) || !wrmsr_ok(index, value) {
            return Err(number);
        }
        loads.push((index, value));
    }
    Ok(loads)
}

#[cfg(test)]
mod tests;
