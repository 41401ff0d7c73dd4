//! What Matryoshka needs from the CPU, and the message it prints when the
//! CPU falls short.

use core::fmt;

use super::{MemoryType, VmxCapabilities};
use crate::controls::{EntryControls, ExitControls, PinBasedControls, SecondaryControls};

/// What every refusal to start ends with, so a user learns the whole
/// requirement from whichever check fails first.
const WHAT_MATRYOSHKA_NEEDS: &str = "Matryoshka needs Intel VT-x with EPT and unrestricted guest";

/// CPUID.1:ECX.VMX, bit 5.
const CPUID_1_ECX_VMX: u32 = 1 << 5;

/// A VMX feature that Matryoshka cannot run without.
///
/// `Display` gives the complete message for the boot log, e.g. "this CPU
/// lacks EPT: Matryoshka needs Intel VT-x with EPT and unrestricted guest".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MissingFeature {
    /// CPUID.1:ECX.VMX is 0.
    Vmx,
    /// `IA32_FEATURE_CONTROL` is locked with VMXON outside SMX disabled.
    VmxDisabledByFirmware,
    /// `IA32_VMX_BASIC` bit 55: no `IA32_VMX_TRUE_*_CTLS` MSRs.
    TrueControls,
    /// The VMCS cannot be accessed with the write-back memory type.
    WriteBackVmcs,
    /// No secondary processor-based VM-execution controls.
    SecondaryControls,
    /// No "enable EPT" control.
    Ept,
    /// EPT cannot walk 4 levels.
    EptFourLevelWalk,
    /// EPT paging structures cannot be write-back.
    EptWriteBack,
    /// No INVEPT instruction.
    Invept,
    /// No single-context INVEPT.
    InveptSingleContext,
    /// No all-context INVEPT.
    InveptAllContext,
    /// No "unrestricted guest" control.
    UnrestrictedGuest,
    /// No "enable VPID" control.
    Vpid,
    /// No INVVPID instruction.
    Invvpid,
    /// No single-context INVVPID.
    InvvpidSingleContext,
    /// No all-context INVVPID.
    InvvpidAllContext,
    /// No "activate VMX-preemption timer" control.
    PreemptionTimer,
    /// No "host address-space size" VM-exit control.
    ExitHostAddressSpaceSize,
    /// No "load IA32_EFER" VM-exit control.
    ExitLoadEfer,
    /// No "save IA32_EFER" VM-exit control.
    ExitSaveEfer,
    /// No "IA-32e mode guest" VM-entry control.
    EntryIa32eModeGuest,
    /// No "load IA32_EFER" VM-entry control.
    EntryLoadEfer,
}

impl MissingFeature {
    /// The missing feature alone, e.g. "EPT" or "single-context INVEPT".
    pub const fn feature(self) -> &'static str {
        match self {
            Self::Vmx => "VMX (CPUID.1:ECX.VMX[bit 5] = 0)",
            Self::VmxDisabledByFirmware => "VMXON outside SMX (disabled by the firmware)",
            Self::TrueControls => "the IA32_VMX_TRUE_*_CTLS MSRs (IA32_VMX_BASIC bit 55)",
            Self::WriteBackVmcs => "write-back VMCS memory",
            Self::SecondaryControls => "the secondary processor-based VM-execution controls",
            Self::Ept => "EPT",
            Self::EptFourLevelWalk => "4-level EPT page walks",
            Self::EptWriteBack => "write-back EPT paging structures",
            Self::Invept => "INVEPT",
            Self::InveptSingleContext => "single-context INVEPT",
            Self::InveptAllContext => "all-context INVEPT",
            Self::UnrestrictedGuest => "unrestricted guest",
            Self::Vpid => "VPID",
            Self::Invvpid => "INVVPID",
            Self::InvvpidSingleContext => "single-context INVVPID",
            Self::InvvpidAllContext => "all-context INVVPID",
            Self::PreemptionTimer => "the VMX-preemption timer",
            Self::ExitHostAddressSpaceSize => "the \"host address-space size\" VM-exit control",
            Self::ExitLoadEfer => "the \"load IA32_EFER\" VM-exit control",
            Self::ExitSaveEfer => "the \"save IA32_EFER\" VM-exit control",
            Self::EntryIa32eModeGuest => "the \"IA-32e mode guest\" VM-entry control",
            Self::EntryLoadEfer => "the \"load IA32_EFER\" VM-entry control",
        }
    }
}

impl fmt::Display for MissingFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Not a CPU limitation: the user can fix it, so say how.
            Self::VmxDisabledByFirmware => f.write_str(
                "VMX is disabled by the firmware (IA32_FEATURE_CONTROL locked with \
                 VMXON outside SMX off): enable VT-x in the firmware setup",
            ),
            other => write!(f, "this CPU lacks {}: {WHAT_MATRYOSHKA_NEEDS}", other.feature()),
        }
    }
}

/// Checks CPUID.1:ECX for VMX, before any `IA32_VMX_*` MSR is read (they
/// raise #GP on a CPU without VMX).
pub const fn check_cpuid(ecx_leaf1: u32) -> Result<(), MissingFeature> {
    if ecx_leaf1 & CPUID_1_ECX_VMX != 0 {
        Ok(())
    } else {
        Err(MissingFeature::Vmx)
    }
}

impl VmxCapabilities {
    /// Every required feature with whether this CPU has it, in the order a
    /// user should read about them: the prerequisites of a feature come
    /// before the feature.
    fn requirements(&self) -> [(MissingFeature, bool); 20] {
        let ept = self.ept_vpid;
        let secondary = |bits: SecondaryControls| self.has_secondary_controls() && self.secondary.supports(bits.bits());
        let exit = |bits: ExitControls| self.exit.supports(bits.bits());
        let entry = |bits: EntryControls| self.entry.supports(bits.bits());
        [
            (MissingFeature::TrueControls, self.basic.true_controls()),
            (MissingFeature::WriteBackVmcs, matches!(self.basic.vmcs_memory_type(), MemoryType::WriteBack)),
            (MissingFeature::SecondaryControls, self.has_secondary_controls()),
            (MissingFeature::Ept, secondary(SecondaryControls::EPT)),
            (MissingFeature::EptFourLevelWalk, ept.page_walk_4()),
            (MissingFeature::EptWriteBack, ept.write_back()),
            (MissingFeature::Invept, ept.invept()),
            (MissingFeature::InveptSingleContext, ept.invept_single_context()),
            (MissingFeature::InveptAllContext, ept.invept_all_context()),
            (MissingFeature::UnrestrictedGuest, secondary(SecondaryControls::UNRESTRICTED_GUEST)),
            (MissingFeature::Vpid, secondary(SecondaryControls::VPID)),
            (MissingFeature::Invvpid, ept.invvpid()),
            (MissingFeature::InvvpidSingleContext, ept.invvpid_single_context()),
            (MissingFeature::InvvpidAllContext, ept.invvpid_all_context()),
            (MissingFeature::PreemptionTimer, self.pin_based.supports(PinBasedControls::PREEMPTION_TIMER.bits())),
            (MissingFeature::ExitHostAddressSpaceSize, exit(ExitControls::HOST_ADDRESS_SPACE_SIZE)),
            (MissingFeature::ExitLoadEfer, exit(ExitControls::LOAD_EFER)),
            (MissingFeature::ExitSaveEfer, exit(ExitControls::SAVE_EFER)),
            (MissingFeature::EntryIa32eModeGuest, entry(EntryControls::IA32E_MODE_GUEST)),
            (MissingFeature::EntryLoadEfer, entry(EntryControls::LOAD_EFER)),
        ]
    }

    /// Every required feature this CPU lacks, prerequisites first.
    pub fn missing_requirements(&self) -> impl Iterator<Item = MissingFeature> {
        self.requirements().into_iter().filter(|(_, present)| !present).map(|(feature, _)| feature)
    }

    /// Checks that the CPU offers everything Matryoshka needs, reporting the
    /// first missing feature. VMCS shadowing is optional and not checked.
    pub fn check_requirements(&self) -> Result<(), MissingFeature> {
        match self.missing_requirements().next() {
            Some(missing) => Err(missing),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::skylake_msrs;
    use super::*;
    use crate::capabilities::{EptVpidCapabilities, VmxBasic};
    use std::string::ToString;
    use std::vec::Vec;

    fn skylake() -> VmxCapabilities {
        let msrs = skylake_msrs();
        VmxCapabilities::read(|index| msrs[&index])
    }

    #[test]
    fn cpuid_checks_ecx_bit_5() {
        assert_eq!(check_cpuid(1 << 5), Ok(()));
        assert_eq!(check_cpuid(!(1 << 5)), Err(MissingFeature::Vmx));
        assert_eq!(
            check_cpuid(0).unwrap_err().to_string(),
            "this CPU lacks VMX (CPUID.1:ECX.VMX[bit 5] = 0): Matryoshka needs \
             Intel VT-x with EPT and unrestricted guest"
        );
    }

    #[test]
    fn a_complete_cpu_meets_every_requirement() {
        let capabilities = skylake();
        assert_eq!(capabilities.check_requirements(), Ok(()));
        assert_eq!(capabilities.missing_requirements().count(), 0);
    }

    #[test]
    fn vmcs_shadowing_is_not_required() {
        let mut capabilities = skylake();
        capabilities.secondary.allowed1 &= !SecondaryControls::VMCS_SHADOWING.bits();
        assert!(!capabilities.has_vmcs_shadowing());
        assert_eq!(capabilities.check_requirements(), Ok(()));
    }

    #[test]
    fn missing_ept_is_named_in_the_message() {
        let mut capabilities = skylake();
        capabilities.secondary.allowed1 &= !SecondaryControls::EPT.bits();
        let missing = capabilities.check_requirements().unwrap_err();
        assert_eq!(missing, MissingFeature::Ept);
        assert_eq!(
            missing.to_string(),
            "this CPU lacks EPT: Matryoshka needs Intel VT-x with EPT and unrestricted guest"
        );
    }

    /// Clears one capability bit of a complete CPU.
    type RemoveCapability = fn(&mut VmxCapabilities);

    #[test]
    fn each_capability_bit_maps_to_its_missing_feature() {
        // Losing the secondary controls loses more: see the next test.
        let cases: [(RemoveCapability, MissingFeature); 19] = [
            (|c| c.basic.0 &= !VmxBasic::TRUE_CONTROLS, MissingFeature::TrueControls),
            (|c| c.basic.0 &= !(0xf << 50), MissingFeature::WriteBackVmcs),
            (|c| c.secondary.allowed1 &= !(1 << 1), MissingFeature::Ept),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::PAGE_WALK_4, MissingFeature::EptFourLevelWalk),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::WRITE_BACK, MissingFeature::EptWriteBack),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::INVEPT, MissingFeature::Invept),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::INVEPT_SINGLE_CONTEXT, MissingFeature::InveptSingleContext),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::INVEPT_ALL_CONTEXT, MissingFeature::InveptAllContext),
            (|c| c.secondary.allowed1 &= !(1 << 7), MissingFeature::UnrestrictedGuest),
            (|c| c.secondary.allowed1 &= !(1 << 5), MissingFeature::Vpid),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::INVVPID, MissingFeature::Invvpid),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::INVVPID_SINGLE_CONTEXT, MissingFeature::InvvpidSingleContext),
            (|c| c.ept_vpid.0 &= !EptVpidCapabilities::INVVPID_ALL_CONTEXT, MissingFeature::InvvpidAllContext),
            (|c| c.pin_based.allowed1 &= !(1 << 6), MissingFeature::PreemptionTimer),
            (|c| c.exit.allowed1 &= !(1 << 9), MissingFeature::ExitHostAddressSpaceSize),
            (|c| c.exit.allowed1 &= !(1 << 21), MissingFeature::ExitLoadEfer),
            (|c| c.exit.allowed1 &= !(1 << 20), MissingFeature::ExitSaveEfer),
            (|c| c.entry.allowed1 &= !(1 << 9), MissingFeature::EntryIa32eModeGuest),
            (|c| c.entry.allowed1 &= !(1 << 15), MissingFeature::EntryLoadEfer),
        ];
        for (remove, expected) in cases {
            let mut capabilities = skylake();
            remove(&mut capabilities);
            let missing: Vec<MissingFeature> = capabilities.missing_requirements().collect();
            assert_eq!(missing, [expected]);
            assert_eq!(capabilities.check_requirements(), Err(expected));
        }
    }

    #[test]
    fn without_secondary_controls_everything_behind_them_is_missing() {
        let mut capabilities = skylake();
        capabilities.primary.allowed1 &= !(1 << 31);
        // The secondary MSR would not have been read; a stale value must not count.
        let missing: Vec<MissingFeature> = capabilities.missing_requirements().collect();
        assert_eq!(
            missing,
            [
                MissingFeature::SecondaryControls,
                MissingFeature::Ept,
                MissingFeature::UnrestrictedGuest,
                MissingFeature::Vpid,
            ]
        );
    }

    #[test]
    fn an_empty_cpu_reports_the_first_prerequisite() {
        let capabilities = VmxCapabilities::read(|_| 0);
        assert_eq!(capabilities.check_requirements(), Err(MissingFeature::TrueControls));
        assert_eq!(capabilities.missing_requirements().count(), 20);
    }

    #[test]
    fn every_message_names_its_feature_and_the_requirement() {
        let all = [
            MissingFeature::Vmx,
            MissingFeature::TrueControls,
            MissingFeature::WriteBackVmcs,
            MissingFeature::SecondaryControls,
            MissingFeature::Ept,
            MissingFeature::EptFourLevelWalk,
            MissingFeature::EptWriteBack,
            MissingFeature::Invept,
            MissingFeature::InveptSingleContext,
            MissingFeature::InveptAllContext,
            MissingFeature::UnrestrictedGuest,
            MissingFeature::Vpid,
            MissingFeature::Invvpid,
            MissingFeature::InvvpidSingleContext,
            MissingFeature::InvvpidAllContext,
            MissingFeature::PreemptionTimer,
            MissingFeature::ExitHostAddressSpaceSize,
            MissingFeature::ExitLoadEfer,
            MissingFeature::ExitSaveEfer,
            MissingFeature::EntryIa32eModeGuest,
            MissingFeature::EntryLoadEfer,
        ];
        for feature in all {
            let message = feature.to_string();
            assert!(message.starts_with("this CPU lacks "), "{message}");
            assert!(message.contains(feature.feature()), "{message}");
            assert!(message.ends_with(WHAT_MATRYOSHKA_NEEDS), "{message}");
        }
        assert!(MissingFeature::VmxDisabledByFirmware.to_string().ends_with("enable VT-x in the firmware setup"));
    }
}
