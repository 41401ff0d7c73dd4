//! The interruption-information format shared by the VM-entry
//! interruption-information, VM-exit interruption-information and
//! IDT-vectoring information fields (SDM 25.8.3, 25.9.2, 25.9.3).

/// What kind of event an interruption-information field describes
/// (bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InterruptionType {
    /// 0: external interrupt.
    ExternalInterrupt,
    /// 1: reserved.
    Reserved,
    /// 2: non-maskable interrupt.
    Nmi,
    /// 3: hardware exception, e.g. #PF or #GP.
    HardwareException,
    /// 4: software interrupt (INT n).
    SoftwareInterrupt,
    /// 5: privileged software exception (INT1).
    PrivilegedSoftwareException,
    /// 6: software exception (INT3, INTO).
    SoftwareException,
    /// 7: other event (MTF injection, FRED events).
    OtherEvent,
}

impl InterruptionType {
    /// Decodes the three-bit type number.
    pub const fn from_bits(bits: u32) -> Self {
        match bits & 0b111 {
            0 => Self::ExternalInterrupt,
            1 => Self::Reserved,
            2 => Self::Nmi,
            3 => Self::HardwareException,
            4 => Self::SoftwareInterrupt,
            5 => Self::PrivilegedSoftwareException,
            6 => Self::SoftwareException,
            _ => Self::OtherEvent,
        }
    }

    /// The three-bit type number.
    pub const fn bits(self) -> u32 {
        self as u32
    }

    /// Whether injecting this type needs the VM-entry instruction length,
    /// because delivery pushes the address of the next instruction.
    pub const fn needs_instruction_length(self) -> bool {
        matches!(self, Self::SoftwareInterrupt | Self::PrivilegedSoftwareException | Self::SoftwareException)
    }
}

/// An interruption-information field.
///
/// | bits | meaning                                                    |
/// |------|------------------------------------------------------------|
/// | 7:0  | vector                                                     |
/// | 10:8 | [`InterruptionType`]                                       |
/// | 11   | an error code is delivered / was pushed                    |
/// | 12   | NMI unblocking due to IRET (exit information only)         |
/// | 31   | valid                                                      |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InterruptionInfo(pub u32);

impl InterruptionInfo {
    /// Bit 11.
    pub const ERROR_CODE_VALID: u32 = 1 << 11;
    /// Bit 12.
    pub const NMI_UNBLOCKING_DUE_TO_IRET: u32 = 1 << 12;
    /// Bit 31.
    pub const VALID: u32 = 1 << 31;

    /// A valid field describing `vector` of `kind`, to inject on VM entry.
    pub const fn new(vector: u8, kind: InterruptionType, deliver_error_code: bool) -> Self {
        let error_code = if deliver_error_code { Self::ERROR_CODE_VALID } else { 0 };
        Self(Self::VALID | error_code | kind.bits() << 8 | vector as u32)
    }

    /// The vector, bits 7:0.
    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// The event type, bits 10:8.
    pub const fn interruption_type(self) -> InterruptionType {
        InterruptionType::from_bits(self.0 >> 8)
    }

    /// Whether an error code accompanies the event (bit 11).
    pub const fn error_code_valid(self) -> bool {
        self.0 & Self::ERROR_CODE_VALID != 0
    }

    /// Whether the exit happened in an IRET that unblocked NMIs (bit 12).
    pub const fn nmi_unblocking_due_to_iret(self) -> bool {
        self.0 & Self::NMI_UNBLOCKING_DUE_TO_IRET != 0
    }

    /// Whether the field describes an event at all (bit 31).
    pub const fn is_valid(self) -> bool {
        self.0 & Self::VALID != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_page_fault_with_error_code() {
        // #PF (vector 14), hardware exception, error code, valid.
        let info = InterruptionInfo(0x8000_0b0e);
        assert!(info.is_valid());
        assert_eq!(info.vector(), 14);
        assert_eq!(info.interruption_type(), InterruptionType::HardwareException);
        assert!(info.error_code_valid());
        assert!(!info.nmi_unblocking_due_to_iret());
        assert_eq!(InterruptionInfo::new(14, InterruptionType::HardwareException, true), info);
    }

    #[test]
    fn decodes_an_nmi_after_iret_and_an_external_interrupt() {
        let nmi = InterruptionInfo(0x8000_1202);
        assert_eq!(nmi.interruption_type(), InterruptionType::Nmi);
        assert_eq!(nmi.vector(), 2);
        assert!(nmi.nmi_unblocking_due_to_iret());

        let timer = InterruptionInfo(0x8000_0020);
        assert_eq!(timer.interruption_type(), InterruptionType::ExternalInterrupt);
        assert_eq!(timer.vector(), 0x20);
        assert!(!InterruptionInfo(0x20).is_valid());
    }

    #[test]
    fn types_round_trip_and_software_events_need_a_length() {
        for bits in 0..8 {
            assert_eq!(InterruptionType::from_bits(bits).bits(), bits);
        }
        assert!(InterruptionType::SoftwareException.needs_instruction_length());
        assert!(InterruptionType::SoftwareInterrupt.needs_instruction_length());
        assert!(InterruptionType::PrivilegedSoftwareException.needs_instruction_length());
        assert!(!InterruptionType::HardwareException.needs_instruction_length());
        // INT3: vector 3, software exception, no error code.
        assert_eq!(InterruptionInfo::new(3, InterruptionType::SoftwareException, false).0, 0x8000_0603);
    }
}
