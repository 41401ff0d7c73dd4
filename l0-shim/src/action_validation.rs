//! The shim's check of every action a monitor asks for.
//!
//! A monitor is untrusted: it parses guest-controlled state, so a guest may
//! have taken it over. Whatever it asks, it may only change its own guest's
//! state. It may never write host state (that would hand it the shim on the
//! next VM exit), never change the controls that keep the guest contained
//! (EPT pointer, exiting controls, MSR/I/O bitmaps, VPID), and never ask for
//! an event injection that would fail VM entry.

use core::fmt;

use monitor_abi::{Action, InjectionKind};

use crate::memory::PageSize;
use vmx::controls::{EntryControls, PinBasedControls, PrimaryControls, SecondaryControls};
use vmx::vmcs::{Control32, Control64, ControlNatural, Encoding, Guest64};

/// Control fields a monitor may write: event injection on the next entry,
/// what the guest reads from CR0/CR4, and its TSC offset. Everything else
/// in the control area stays the shim's.
const MONITOR_WRITABLE_CONTROLS: [u32; 6] = [
    Control32::EntryInterruptionInfo.encoding(),
    Control32::EntryExceptionErrorCode.encoding(),
    Control32::EntryInstructionLength.encoding(),
    ControlNatural::Cr0ReadShadow.encoding(),
    ControlNatural::Cr4ReadShadow.encoding(),
    Control64::TscOffset.encoding(),
];

/// Which VMCS a monitor's field writes reach: vmcs01 (L1 runs) or the
/// vCPU's vmcs02 (after `Action::EnterL2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    L1,
    L2,
}

/// Controls a monitor also writes on vmcs02, where it builds L2's
/// execution environment from L1's vmcs12. Their bits are constrained by
/// [`constrain_vmcs02_control`]; addresses (bitmaps, APIC pages, EPTP),
/// the VPID and the exit controls stay the shim's.
const VMCS02_WRITABLE_CONTROLS: [u32; 13] = [
    Control32::PinBasedControls.encoding(),
    Control32::PrimaryProcessorBasedControls.encoding(),
    Control32::SecondaryProcessorBasedControls.encoding(),
    Control32::EntryControls.encoding(),
    Control32::ExceptionBitmap.encoding(),
    Control32::PageFaultErrorCodeMask.encoding(),
    Control32::PageFaultErrorCodeMatch.encoding(),
    ControlNatural::Cr0GuestHostMask.encoding(),
    ControlNatural::Cr4GuestHostMask.encoding(),
    Control32::Cr3TargetCount.encoding(),
    ControlNatural::Cr3TargetValue0.encoding(),
    ControlNatural::Cr3TargetValue1.encoding(),
    ControlNatural::Cr3TargetValue2.encoding(),
];
const CR3_TARGET_3: u32 = ControlNatural::Cr3TargetValue3.encoding();

/// Per vmcs02 execution control: the bits a monitor may set, and those
/// the shim sets whatever the monitor says. Physical interrupts and NMIs
/// always exit and the preemption timer always runs (the machine and its
/// time are the shim's); I/O always exits (the shim hands the CPU no I/O
/// bitmap of L1's); EPT and VPID are always on. Left out: every control
/// that makes the CPU use an address (I/O, MSR bitmaps, TPR shadow, APIC
/// access, posted interrupts, VMCS shadowing, VM functions, PML, #VE,
/// XSS and ENCLS bitmaps) and the dual-monitor treatment.
pub fn vmcs02_control_bits(encoding: u32) -> Option<(u32, u32)> {
    let pin_allowed = PinBasedControls::EXTERNAL_INTERRUPT_EXITING
        | PinBasedControls::NMI_EXITING
        | PinBasedControls::VIRTUAL_NMIS
        | PinBasedControls::PREEMPTION_TIMER;
    let pin_forced = PinBasedControls::EXTERNAL_INTERRUPT_EXITING
        | PinBasedControls::NMI_EXITING
        | PinBasedControls::PREEMPTION_TIMER;
    let primary_allowed = PrimaryControls::INTERRUPT_WINDOW_EXITING
        | PrimaryControls::TSC_OFFSETTING
        | PrimaryControls::HLT_EXITING
        | PrimaryControls::INVLPG_EXITING
        | PrimaryControls::MWAIT_EXITING
        | PrimaryControls::RDPMC_EXITING
        | PrimaryControls::RDTSC_EXITING
        | PrimaryControls::CR3_LOAD_EXITING
        | PrimaryControls::CR3_STORE_EXITING
        | PrimaryControls::CR8_LOAD_EXITING
        | PrimaryControls::CR8_STORE_EXITING
        | PrimaryControls::NMI_WINDOW_EXITING
        | PrimaryControls::UNCONDITIONAL_IO_EXITING
        | PrimaryControls::MOV_DR_EXITING
        | PrimaryControls::MONITOR_TRAP_FLAG
        | PrimaryControls::MONITOR_EXITING
        | PrimaryControls::PAUSE_EXITING
        | PrimaryControls::SECONDARY_CONTROLS;
    let primary_forced = PrimaryControls::UNCONDITIONAL_IO_EXITING | PrimaryControls::SECONDARY_CONTROLS;
    let secondary_allowed = SecondaryControls::EPT
        | SecondaryControls::DESCRIPTOR_TABLE_EXITING
        | SecondaryControls::RDTSCP
        | SecondaryControls::VPID
        | SecondaryControls::WBINVD_EXITING
        | SecondaryControls::UNRESTRICTED_GUEST
        | SecondaryControls::PAUSE_LOOP_EXITING
        | SecondaryControls::RDRAND_EXITING
        | SecondaryControls::INVPCID
        | SecondaryControls::RDSEED_EXITING;
    let secondary_forced = SecondaryControls::EPT | SecondaryControls::VPID;
    let entry_allowed = EntryControls::LOAD_DEBUG_CONTROLS
        | EntryControls::IA32E_MODE_GUEST
        | EntryControls::LOAD_PAT
        | EntryControls::LOAD_EFER;
    let entry_forced = EntryControls::LOAD_DEBUG_CONTROLS | EntryControls::LOAD_PAT | EntryControls::LOAD_EFER;
    // The "default1" bits (SDM A.2-A.5): reserved bits that a VMCS may
    // (and without the TRUE capability MSRs must) have set.
    Some(match encoding {
        e if e == Control32::PinBasedControls.encoding() => (pin_allowed.bits() | 0x16, pin_forced.bits()),
        e if e == Control32::PrimaryProcessorBasedControls.encoding() => {
            (primary_allowed.bits() | 0x0401_e172, primary_forced.bits())
        }
        e if e == Control32::SecondaryProcessorBasedControls.encoding() => {
            (secondary_allowed.bits(), secondary_forced.bits())
        }
        e if e == Control32::EntryControls.encoding() => (entry_allowed.bits() | 0x11ff, entry_forced.bits()),
        _ => return None,
    })
}

/// The value the shim writes for a monitor's write of a vmcs02 control:
/// the forced bits added, CR0/CR4 guest/host masks widened by `owned`
/// (the bits VMX needs, which L2 must not change). A bit outside what a
/// monitor may set is a rejection.
pub fn constrain_vmcs02_control(encoding: u32, value: u64, owned_cr0: u64, owned_cr4: u64) -> Result<u64, Rejection> {
    if let Some((allowed, forced)) = vmcs02_control_bits(encoding) {
        let bits = value as u32;
        if value >> 32 != 0 || bits & !allowed != 0 {
            return Err(Rejection::ForbiddenBits { encoding, bits: (value & !u64::from(allowed)) });
        }
        return Ok(u64::from(bits | forced));
    }
    Ok(match encoding {
        e if e == ControlNatural::Cr0GuestHostMask.encoding() => value | owned_cr0,
        e if e == ControlNatural::Cr4GuestHostMask.encoding() => value | owned_cr4,
        _ => value,
    })
}

/// Why the shim refused an EPT02 mapping (`Action::MapL2`): the monitor
/// asked for something that is not its guest's to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRefusal {
    BadSize(u8),
    Misaligned {
        l2_gpa: u64,
        l1_gpa: u64,
    },
    OutsideRam {
        l1_gpa: u64,
        bytes: u64,
    },
    BadPermissions(u8),
    /// No frame left for even a fresh EPT02.
    OutOfMemory,
}

impl fmt::Display for MapRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSize(log2) => write!(f, "EPT02 page size 2^{log2} (only 4 KiB, 2 MiB and 1 GiB exist)"),
            Self::Misaligned { l2_gpa, l1_gpa } => {
                write!(f, "EPT02 block at L2 {l2_gpa:#x} for L1 {l1_gpa:#x} is not aligned to its size")
            }
            Self::OutsideRam { l1_gpa, bytes } => {
                write!(f, "EPT02 block of {bytes:#x} bytes at L1 {l1_gpa:#x} lies outside the guest's RAM")
            }
            Self::BadPermissions(bits) => write!(f, "EPT02 permissions {bits:#x} (write without read, or none)"),
            Self::OutOfMemory => write!(f, "no memory left for EPT02 tables"),
        }
    }
}

/// Checks an EPT02 leaf a monitor asks for, for a guest with `ram_bytes`
/// of RAM from guest-physical 0, on a CPU that does (`execute_only`) or
/// does not allow execute-only EPT pages: the page size and the EPT R/W/X
/// bits to map it with. The block must lie wholly in the guest's RAM, so
/// L2 can only ever reach what L1 itself owns.
pub fn check_l2_mapping(
    execute_only: bool,
    ram_bytes: u64,
    l2_gpa: u64,
    l1_gpa: u64,
    size_log2: u8,
    permissions: u8,
) -> Result<(PageSize, u64), MapRefusal> {
    let size = match size_log2 {
        12 => PageSize::Size4K,
        21 => PageSize::Size2M,
        30 => PageSize::Size1G,
        other => return Err(MapRefusal::BadSize(other)),
    };
    let bytes = size.bytes();
    if !l2_gpa.is_multiple_of(bytes) || !l1_gpa.is_multiple_of(bytes) || l2_gpa >= 1 << 48 {
        return Err(MapRefusal::Misaligned { l2_gpa, l1_gpa });
    }
    if l1_gpa.checked_add(bytes).is_none_or(|end| end > ram_bytes) {
        return Err(MapRefusal::OutsideRam { l1_gpa, bytes });
    }
    // Write without read is a misconfiguration (SDM 30.3.3.1), and so is
    // execute-only where the CPU lacks it.
    let rwx = permissions & 7;
    if permissions & !7 != 0 || rwx == 0 || rwx & 3 == 2 || (rwx == 4 && !execute_only) {
        return Err(MapRefusal::BadPermissions(permissions));
    }
    Ok((size, u64::from(rwx)))
}

/// Guest-state fields that are really links to other structures the shim
/// owns: a monitor setting them could point the CPU at foreign memory.
const SHIM_OWNED_GUEST_FIELDS: [u32; 1] = [Guest64::VmcsLinkPointer.encoding()];

/// Exceptions that push an error code (SDM vol. 3A, table 6-1); VM entry
/// requires the deliver-error-code bit exactly for these (SDM 26.2.1.3).
const EXCEPTIONS_WITH_ERROR_CODE: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];
const NMI_VECTOR: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    HostStateField(u32),
    ReadOnlyField(u32),
    ForbiddenControl(u32),
    ShimOwnedField(u32),
    UnknownField(u32),
    /// Bits of a vmcs02 control no monitor may set.
    ForbiddenBits {
        encoding: u32,
        bits: u64,
    },
    /// An action that needs L2 (or L1) while the vCPU runs the other.
    WrongLevel(&'static str),
    BadInjection {
        vector: u8,
        kind: InjectionKind,
        error_code: Option<u32>,
        why: &'static str,
    },
}

fn field_name(encoding: u32) -> &'static str {
    Encoding(encoding).field().map(|field| field.name).unwrap_or("unknown field")
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HostStateField(encoding) => write!(
                f,
                "write to host-state field {} ({encoding:#06x}): monitors may never write host state",
                field_name(*encoding)
            ),
            Self::ReadOnlyField(encoding) => {
                write!(f, "write to read-only field {} ({encoding:#06x})", field_name(*encoding))
            }
            Self::ForbiddenControl(encoding) => write!(
                f,
                "write to control field {} ({encoding:#06x}): only event injection, CR0/CR4 read shadows and the TSC offset are the monitor's",
                field_name(*encoding)
            ),
            Self::ShimOwnedField(encoding) => {
                write!(f, "write to {} ({encoding:#06x}), which the shim owns", field_name(*encoding))
            }
            Self::UnknownField(encoding) => write!(f, "write to unknown VMCS field encoding {encoding:#x}"),
            Self::ForbiddenBits { encoding, bits } => write!(
                f,
                "write of {} ({encoding:#06x}) with bits {bits:#x} set, which vmcs02 never gets",
                field_name(*encoding)
            ),
            Self::WrongLevel(what) => write!(f, "{what}"),
            Self::BadInjection { vector, kind, error_code, why } => {
                write!(f, "injection of vector {vector} as {kind:?} with error code {error_code:?}: {why}")
            }
        }
    }
}

/// Checks one action, for a vCPU running at `level`. `Ok` means the shim
/// may apply it (vmcs02 controls after [`constrain_vmcs02_control`]).
pub fn check(action: &Action, level: Level) -> Result<(), Rejection> {
    match action {
        Action::WriteField { encoding, .. } => check_field_write(*encoding, level),
        Action::EnterL2 { .. } if level == Level::L2 => Err(Rejection::WrongLevel("EnterL2 while L2 runs")),
        Action::ExitL2 if level == Level::L1 => Err(Rejection::WrongLevel("ExitL2 while L1 runs")),
        // EPT02 and VPID02 are this vCPU's own; what a mapping may reach
        // is checked where the guest's RAM is known (`Ept02::map`).
        Action::EnterL2 { .. } | Action::ExitL2 | Action::MapL2 { .. } | Action::FlushEpt02 | Action::FlushVpid02 => {
            Ok(())
        }
        Action::InjectEvent { vector, kind, error_code } => check_injection(*vector, *kind, *error_code),
        // The ABI decoder already bounds register indices and text; the
        // remaining actions only affect this guest's scheduling and output.
        Action::SetGpr { .. }
        | Action::SkipInstruction
        | Action::Halt { .. }
        | Action::SetTimer { .. }
        | Action::InterruptWindow { .. }
        | Action::ConsoleOutput { .. }
        | Action::Log { .. }
        | Action::Stop { .. } => Ok(()),
        // Which vCPUs the guest has is checked by the kernel, which knows.
        Action::Kick { .. } => Ok(()),
        // Which XCR0 values this CPU accepts is checked where it is known:
        // by the kernel before it loads the value.
        Action::SetXcr0 { .. } => Ok(()),
    }
}

fn check_field_write(encoding: u32, level: Level) -> Result<(), Rejection> {
    let field = Encoding(encoding);
    // Known fields only: an encoding the CPU might define later could be
    // anything, including a pointer.
    if !field.is_well_formed() || field.field().is_none() {
        return Err(Rejection::UnknownField(encoding));
    }
    let full = field.full().0;
    if field.is_host_state() {
        Err(Rejection::HostStateField(encoding))
    } else if field.is_read_only() {
        Err(Rejection::ReadOnlyField(encoding))
    } else if field.is_control() {
        let nested = level == Level::L2 && (VMCS02_WRITABLE_CONTROLS.contains(&full) || full == CR3_TARGET_3);
        if MONITOR_WRITABLE_CONTROLS.contains(&full) || nested {
            Ok(())
        } else {
            Err(Rejection::ForbiddenControl(encoding))
        }
    } else if SHIM_OWNED_GUEST_FIELDS.contains(&full) {
        Err(Rejection::ShimOwnedField(encoding))
    } else {
        Ok(())
    }
}

fn check_injection(vector: u8, kind: InjectionKind, error_code: Option<u32>) -> Result<(), Rejection> {
    let reject = |why| Err(Rejection::BadInjection { vector, kind, error_code, why });
    let pushes_error_code = EXCEPTIONS_WITH_ERROR_CODE.contains(&vector);
    match kind {
        InjectionKind::Nmi if vector != NMI_VECTOR => reject("an NMI has vector 2"),
        InjectionKind::HardwareException if vector > 31 => reject("hardware exceptions have vectors 0 to 31"),
        InjectionKind::HardwareException if vector == NMI_VECTOR => reject("vector 2 is injected as an NMI"),
        InjectionKind::HardwareException if pushes_error_code != error_code.is_some() => {
            reject("an error code goes with exactly #DF, #TS, #NP, #SS, #GP, #PF, #AC and #CP")
        }
        InjectionKind::HardwareException => Ok(()),
        _ if error_code.is_some() => reject("only hardware exceptions deliver an error code"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use vmx::vmcs::{GuestNatural, Host64, HostNatural, ReadOnly32};

    fn write(encoding: u32) -> Result<(), Rejection> {
        check(&Action::WriteField { encoding, value: 0 }, Level::L1)
    }

    #[test]
    fn guest_state_and_the_monitors_controls_may_be_written() {
        for encoding in [
            GuestNatural::Rip.encoding(),
            GuestNatural::Cr0.encoding(),
            Guest64::Ia32Efer.encoding(),
            Guest64::Ia32Efer.encoding() | 1, // its high half
            Control32::EntryInterruptionInfo.encoding(),
            ControlNatural::Cr4ReadShadow.encoding(),
            Control64::TscOffset.encoding(),
        ] {
            assert_eq!(write(encoding), Ok(()), "{encoding:#x}");
        }
    }

    #[test]
    fn host_state_is_never_writable() {
        for encoding in [HostNatural::Rip.encoding(), HostNatural::Cr3.encoding(), Host64::Ia32Efer.encoding() | 1] {
            let rejection = write(encoding).unwrap_err();
            assert_eq!(rejection, Rejection::HostStateField(encoding));
            assert!(rejection.to_string().contains("monitors may never write host state"), "{rejection}");
        }
        assert!(write(HostNatural::Rip.encoding()).unwrap_err().to_string().contains("Host RIP"));
    }

    #[test]
    fn containment_controls_read_only_fields_and_links_are_refused() {
        for encoding in [
            Control64::EptPointer.encoding(),
            Control64::MsrBitmaps.encoding(),
            Control64::IoBitmapA.encoding(),
            Control32::PrimaryProcessorBasedControls.encoding(),
            Control32::SecondaryProcessorBasedControls.encoding(),
            Control32::PinBasedControls.encoding(),
            ControlNatural::Cr0GuestHostMask.encoding(),
            vmx::vmcs::Control16::VirtualProcessorId.encoding(),
        ] {
            assert_eq!(write(encoding), Err(Rejection::ForbiddenControl(encoding)), "{encoding:#x}");
        }
        assert_eq!(
            write(ReadOnly32::ExitReason.encoding()),
            Err(Rejection::ReadOnlyField(ReadOnly32::ExitReason.encoding()))
        );
        let link = Guest64::VmcsLinkPointer.encoding();
        assert_eq!(write(link), Err(Rejection::ShimOwnedField(link)));
        assert_eq!(write(link | 1), Err(Rejection::ShimOwnedField(link | 1)));
        for encoding in [0x0000_8000, 0x6bfe, 0xffff_ffff, 0x0000_7c00] {
            assert_eq!(write(encoding), Err(Rejection::UnknownField(encoding)), "{encoding:#x}");
        }
    }

    #[test]
    fn injections_are_checked_as_vm_entry_would() {
        let inject = |vector, kind, error_code| check(&Action::InjectEvent { vector, kind, error_code }, Level::L1);
        use InjectionKind::*;
        assert_eq!(inject(14, HardwareException, Some(2)), Ok(()));
        assert_eq!(inject(6, HardwareException, None), Ok(()));
        assert_eq!(inject(2, Nmi, None), Ok(()));
        assert_eq!(inject(32, ExternalInterrupt, None), Ok(()));
        assert_eq!(inject(0x80, SoftwareInterrupt, None), Ok(()));
        for (vector, kind, error_code, why) in [
            (3, Nmi, None, "vector 2"),
            (32, HardwareException, None, "0 to 31"),
            (2, HardwareException, None, "as an NMI"),
            (14, HardwareException, None, "error code goes with"),
            (6, HardwareException, Some(0), "error code goes with"),
            (32, ExternalInterrupt, Some(1), "only hardware exceptions"),
        ] {
            let rejection = inject(vector, kind, error_code).unwrap_err();
            assert!(rejection.to_string().contains(why), "{vector} {kind:?}: {rejection}");
        }
    }

    #[test]
    fn other_actions_pass() {
        assert_eq!(check(&Action::SkipInstruction, Level::L1), Ok(()));
        assert_eq!(check(&Action::SetGpr { index: 0, value: 1 }, Level::L1), Ok(()));
        assert_eq!(check(&Action::Halt { wake_at_ns: None }, Level::L2), Ok(()));
    }

    #[test]
    fn ept02_mappings_reach_only_the_guests_own_ram() {
        const RAM: u64 = 32 << 20;
        assert_eq!(check_l2_mapping(false, RAM, 0x20_0000, 0x60_0000, 21, 7), Ok((PageSize::Size2M, 7)));
        assert_eq!(check_l2_mapping(false, RAM, 0x1000, 0x1f_f000, 12, 1), Ok((PageSize::Size4K, 1)));
        let last_page = RAM - 0x1000;
        assert!(check_l2_mapping(false, RAM, 0, last_page, 12, 3).is_ok());
        for (l1_gpa, size_log2) in [(RAM, 12), (RAM + (2 << 20), 21), (!0xfff, 12), (0, 30)] {
            let refusal = check_l2_mapping(false, RAM, 0, l1_gpa & !((1 << size_log2) - 1), size_log2, 7).unwrap_err();
            assert!(matches!(refusal, MapRefusal::OutsideRam { .. }), "{l1_gpa:#x}/{size_log2}: {refusal:?}");
            assert!(refusal.to_string().contains("outside the guest's RAM"));
        }
        assert_eq!(
            check_l2_mapping(false, RAM, 0x1000, 0x20_0000, 21, 7),
            Err(MapRefusal::Misaligned { l2_gpa: 0x1000, l1_gpa: 0x20_0000 })
        );
        assert_eq!(
            check_l2_mapping(false, RAM, 0, 0x1800, 12, 7),
            Err(MapRefusal::Misaligned { l2_gpa: 0, l1_gpa: 0x1800 })
        );
        assert_eq!(check_l2_mapping(false, RAM, 0, 0, 13, 7), Err(MapRefusal::BadSize(13)));
        for permissions in [0, 2, 4, 6, 8 | 7, 0xff] {
            assert_eq!(
                check_l2_mapping(false, RAM, 0, 0, 12, permissions),
                Err(MapRefusal::BadPermissions(permissions))
            );
        }
        assert_eq!(check_l2_mapping(true, RAM, 0, 0, 12, 4), Ok((PageSize::Size4K, 4)));
        assert!(check_l2_mapping(true, RAM, 0, 0, 12, 6).is_err());
    }

    #[test]
    fn vmcs02_takes_more_controls_but_never_addresses_vpid_or_exit_controls() {
        let at_l2 = |encoding| check(&Action::WriteField { encoding, value: 0 }, Level::L2);
        for encoding in [
            Control32::PinBasedControls.encoding(),
            Control32::PrimaryProcessorBasedControls.encoding(),
            Control32::ExceptionBitmap.encoding(),
            ControlNatural::Cr0GuestHostMask.encoding(),
            ControlNatural::Cr3TargetValue3.encoding(),
        ] {
            assert_eq!(at_l2(encoding), Ok(()), "{encoding:#x}");
            assert_eq!(write(encoding), Err(Rejection::ForbiddenControl(encoding)), "{encoding:#x} on vmcs01");
        }
        for encoding in [
            Control64::EptPointer.encoding(),
            Control64::MsrBitmaps.encoding(),
            Control64::IoBitmapA.encoding(),
            Control32::ExitControls.encoding(),
            vmx::vmcs::Control16::VirtualProcessorId.encoding(),
            Control64::VirtualApicAddress.encoding(),
        ] {
            assert_eq!(at_l2(encoding), Err(Rejection::ForbiddenControl(encoding)), "{encoding:#x}");
        }
        assert!(matches!(at_l2(HostNatural::Rip.encoding()), Err(Rejection::HostStateField(_))));
        assert_eq!(check(&Action::ExitL2, Level::L1), Err(Rejection::WrongLevel("ExitL2 while L1 runs")));
        assert!(check(&Action::EnterL2 { ept02: true }, Level::L2).is_err());
    }

    #[test]
    fn vmcs02_controls_get_the_shims_bits_and_lose_none_silently() {
        let pin = Control32::PinBasedControls.encoding();
        let forced = constrain_vmcs02_control(pin, 0, 0, 0).unwrap();
        assert_eq!(
            forced,
            u64::from(
                (PinBasedControls::EXTERNAL_INTERRUPT_EXITING
                    | PinBasedControls::NMI_EXITING
                    | PinBasedControls::PREEMPTION_TIMER)
                    .bits()
            )
        );
        let posted = u64::from(PinBasedControls::POSTED_INTERRUPTS.bits());
        assert_eq!(
            constrain_vmcs02_control(pin, posted, 0, 0),
            Err(Rejection::ForbiddenBits { encoding: pin, bits: posted })
        );
        let primary = Control32::PrimaryProcessorBasedControls.encoding();
        let io_bitmaps = u64::from(PrimaryControls::IO_BITMAPS.bits());
        let rejection = constrain_vmcs02_control(primary, io_bitmaps, 0, 0).unwrap_err();
        assert!(rejection.to_string().contains("never gets"), "{rejection}");
        let secondary = Control32::SecondaryProcessorBasedControls.encoding();
        let shadowing = u64::from(SecondaryControls::VMCS_SHADOWING.bits());
        assert!(constrain_vmcs02_control(secondary, shadowing, 0, 0).is_err());
        let mask = ControlNatural::Cr4GuestHostMask.encoding();
        assert_eq!(constrain_vmcs02_control(mask, 0x20, 0x20, 0x2000), Ok(0x2020));
        assert_eq!(constrain_vmcs02_control(Control32::ExceptionBitmap.encoding(), 0x4000, 0, 0), Ok(0x4000));
    }
}
