//! VM-instruction error numbers (SDM 31.4, table 31-1): why a VMX
//! instruction failed with "VMfailValid".

use core::fmt;

macro_rules! instruction_errors {
    ($( $(#[$doc:meta])* $variant:ident = $number:literal, $description:literal; )*) => {
        /// The value of the VM-instruction error field after a VMX
        /// instruction failed with a current VMCS. Numbers 14, 21 and 27
        /// are reserved and have no variant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum VmInstructionError {
            $(
                $(#[$doc])*
                $variant = $number,
            )*
        }

        impl VmInstructionError {
            /// Every error, in number order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The error with this number, if table 31-1 defines one.
            pub const fn from_number(number: u32) -> Option<Self> {
                match number {
                    $($number => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// The SDM's description of the error.
            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $description,)*
                }
            }
        }
    };
}

instruction_errors! {
    /// 1.
    VmcallInVmxRoot = 1, "VMCALL executed in VMX root operation";
    /// 2.
    VmclearInvalidAddress = 2, "VMCLEAR with invalid physical address";
    /// 3.
    VmclearVmxonPointer = 3, "VMCLEAR with VMXON pointer";
    /// 4.
    VmlaunchNonClearVmcs = 4, "VMLAUNCH with non-clear VMCS";
    /// 5.
    VmresumeNonLaunchedVmcs = 5, "VMRESUME with non-launched VMCS";
    /// 6.
    VmresumeAfterVmxoff = 6,
        "VMRESUME after VMXOFF (VMXOFF and VMXON between VMLAUNCH and VMRESUME)";
    /// 7: a VM-execution, VM-exit or VM-entry control is invalid.
    EntryInvalidControlFields = 7, "VM entry with invalid control field(s)";
    /// 8.
    EntryInvalidHostStateFields = 8, "VM entry with invalid host-state field(s)";
    /// 9.
    VmptrldInvalidAddress = 9, "VMPTRLD with invalid physical address";
    /// 10.
    VmptrldVmxonPointer = 10, "VMPTRLD with VMXON pointer";
    /// 11.
    VmptrldWrongRevision = 11, "VMPTRLD with incorrect VMCS revision identifier";
    /// 12.
    UnsupportedVmcsComponent = 12, "VMREAD/VMWRITE from/to unsupported VMCS component";
    /// 13.
    VmwriteReadOnlyComponent = 13, "VMWRITE to read-only VMCS component";
    /// 15.
    VmxonInVmxRoot = 15, "VMXON executed in VMX root operation";
    /// 16.
    EntryInvalidExecutiveVmcsPointer = 16, "VM entry with invalid executive-VMCS pointer";
    /// 17.
    EntryNonLaunchedExecutiveVmcs = 17, "VM entry with non-launched executive VMCS";
    /// 18.
    EntryExecutiveVmcsPointerNotVmxonPointer = 18,
        "VM entry with executive-VMCS pointer not VMXON pointer (when attempting to \
         deactivate the dual-monitor treatment of SMIs and SMM)";
    /// 19.
    VmcallNonClearVmcs = 19,
        "VMCALL with non-clear VMCS (when attempting to activate the dual-monitor \
         treatment of SMIs and SMM)";
    /// 20.
    VmcallInvalidExitControls = 20, "VMCALL with invalid VM-exit control fields";
    /// 22.
    VmcallWrongMsegRevision = 22,
        "VMCALL with incorrect MSEG revision identifier (when attempting to activate the \
         dual-monitor treatment of SMIs and SMM)";
    /// 23.
    VmxoffUnderDualMonitor = 23, "VMXOFF under dual-monitor treatment of SMIs and SMM";
    /// 24.
    VmcallInvalidSmmMonitorFeatures = 24,
        "VMCALL with invalid SMM-monitor features (when attempting to activate the \
         dual-monitor treatment of SMIs and SMM)";
    /// 25.
    EntryInvalidExecutiveExecutionControls = 25,
        "VM entry with invalid VM-execution control fields in executive VMCS (when \
         attempting to return from SMM)";
    /// 26: the guest had blocking by MOV SS and the entry would inject an event.
    EntryEventsBlockedByMovSs = 26, "VM entry with events blocked by MOV SS";
    /// 28.
    InvalidInveptInvvpidOperand = 28, "Invalid operand to INVEPT/INVVPID";
}

impl VmInstructionError {
    /// The error number.
    pub const fn number(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for VmInstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VM-instruction error {}: {}", self.number(), self.description())
    }
}

/// A VM-instruction error number that table 31-1 does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownInstructionError(pub u32);

impl fmt::Display for UnknownInstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown VM-instruction error {}", self.0)
    }
}

impl TryFrom<u32> for VmInstructionError {
    type Error = UnknownInstructionError;

    fn try_from(number: u32) -> Result<Self, Self::Error> {
        Self::from_number(number).ok_or(UnknownInstructionError(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn numbers_1_to_28_except_reserved_ones_are_defined() {
        let reserved = [14u32, 21, 27];
        for number in 1..=28u32 {
            let decoded = VmInstructionError::try_from(number);
            if reserved.contains(&number) {
                assert_eq!(decoded, Err(UnknownInstructionError(number)));
            } else {
                assert_eq!(decoded.unwrap().number(), number);
            }
        }
        assert!(VmInstructionError::try_from(0).is_err());
        assert!(VmInstructionError::try_from(29).is_err());
        assert_eq!(VmInstructionError::ALL.len(), 25);
    }

    #[test]
    fn descriptions_follow_table_31_1() {
        use VmInstructionError::*;
        assert_eq!(EntryInvalidControlFields.description(), "VM entry with invalid control field(s)");
        assert_eq!(VmptrldWrongRevision.number(), 11);
        assert_eq!(VmwriteReadOnlyComponent.number(), 13);
        assert_eq!(EntryEventsBlockedByMovSs.number(), 26);
        assert_eq!(
            InvalidInveptInvvpidOperand.to_string(),
            "VM-instruction error 28: Invalid operand to INVEPT/INVVPID"
        );
        assert_eq!(UnknownInstructionError(14).to_string(), "unknown VM-instruction error 14");
        for error in VmInstructionError::ALL {
            assert!(!error.description().contains("  "), "{error:?}");
        }
    }
}
