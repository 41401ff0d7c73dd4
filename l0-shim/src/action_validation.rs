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
    BadInjection { vector: u8, kind: InjectionKind, error_code: Option<u32>, why: &'static str },
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
            Self::BadInjection { vector, kind, error_code, why } => {
                write!(f, "injection of vector {vector} as {kind:?} with error code {error_code:?}: {why}")
            }
        }
    }
}

/// Checks one action. `Ok` means the shim may apply it as it is.
pub fn check(action: &Action) -> Result<(), Rejection> {
    match action {
        Action::WriteField { encoding, .. } => check_field_write(*encoding),
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

fn check_field_write(encoding: u32) -> Result<(), Rejection> {
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
        if MONITOR_WRITABLE_CONTROLS.contains(&full) {
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
        check(&Action::WriteField { encoding, value: 0 })
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
        let inject = |vector, kind, error_code| check(&Action::InjectEvent { vector, kind, error_code });
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
        assert_eq!(check(&Action::SkipInstruction), Ok(()));
        assert_eq!(check(&Action::SetGpr { index: 0, value: 1 }), Ok(()));
        assert_eq!(check(&Action::Halt { wake_at_ns: None }), Ok(()));
    }
}
