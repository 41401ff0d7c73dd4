//! Model-specific registers that VMX reads, saves or loads.
//!
//! The `IA32_VMX_*` capability MSRs are described in SDM appendix A; the
//! others are the MSRs that have VMCS fields of their own or that the
//! VM-entry and VM-exit controls load and save (SDM 25.4, 25.5).

use crate::capabilities::MissingFeature;

/// Enables VMXON and locks the configuration until reset (SDM 24.7).
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;

/// VMCS revision, region size and memory type, true-controls support (A.1).
pub const IA32_VMX_BASIC: u32 = 0x480;
/// Allowed settings of the pin-based VM-execution controls (A.3.1).
pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
/// Allowed settings of the primary processor-based controls (A.3.2).
pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
/// Allowed settings of the primary VM-exit controls (A.4.1).
pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
/// Allowed settings of the VM-entry controls (A.5).
pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
/// Preemption-timer rate, activity states, CR3-target and MSR-list limits (A.6).
pub const IA32_VMX_MISC: u32 = 0x485;
/// CR0 bits that must be 1 in VMX operation (A.7).
pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
/// CR0 bits that may be 1 in VMX operation (A.7).
pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
/// CR4 bits that must be 1 in VMX operation (A.8).
pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
/// CR4 bits that may be 1 in VMX operation (A.8).
pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
/// Highest VMCS field index the CPU implements (A.9).
pub const IA32_VMX_VMCS_ENUM: u32 = 0x48a;
/// Allowed settings of the secondary processor-based controls (A.3.3).
pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
/// EPT and VPID capabilities: walk lengths, memory types, INVEPT/INVVPID (A.10).
pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
/// Pin-based controls, default1 bits included (A.3.1).
pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
/// Primary processor-based controls, default1 bits included (A.3.2).
pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
/// VM-exit controls, default1 bits included (A.4.1).
pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
/// VM-entry controls, default1 bits included (A.5).
pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
/// VM functions the CPU allows (A.11).
pub const IA32_VMX_VMFUNC: u32 = 0x491;
/// Allowed 1-settings of the tertiary processor-based controls (A.3.4).
pub const IA32_VMX_PROCBASED_CTLS3: u32 = 0x492;
/// Allowed 1-settings of the secondary VM-exit controls (A.4.2).
pub const IA32_VMX_EXIT_CTLS2: u32 = 0x493;

/// Extended feature enables: long mode, NX, SYSCALL.
pub const IA32_EFER: u32 = 0xc000_0080;
/// Page-attribute table.
pub const IA32_PAT: u32 = 0x277;
/// Debug control: LBR, BTF and friends.
pub const IA32_DEBUGCTL: u32 = 0x1d9;
/// SYSENTER target code segment.
pub const IA32_SYSENTER_CS: u32 = 0x174;
/// SYSENTER target stack pointer.
pub const IA32_SYSENTER_ESP: u32 = 0x175;
/// SYSENTER target instruction pointer.
pub const IA32_SYSENTER_EIP: u32 = 0x176;
/// FS segment base in 64-bit mode.
pub const IA32_FS_BASE: u32 = 0xc000_0100;
/// GS segment base in 64-bit mode.
pub const IA32_GS_BASE: u32 = 0xc000_0101;
/// The GS base that SWAPGS exchanges with `IA32_GS_BASE`.
pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// Enables the performance counters globally.
pub const IA32_PERF_GLOBAL_CTRL: u32 = 0x38f;
/// MPX bounds configuration for supervisor mode.
pub const IA32_BNDCFGS: u32 = 0xd90;

/// The decoded `IA32_FEATURE_CONTROL` MSR (SDM 24.7).
///
/// Firmware usually sets and locks it. Once the lock bit is set, the MSR
/// cannot change until reset, so a locked MSR with VMXON disabled outside
/// SMX means VT-x is off in the firmware setup and nothing software does
/// can turn it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureControl(pub u64);

impl FeatureControl {
    /// Bit 0: writes to the MSR fault until reset.
    pub const LOCK: u64 = 1 << 0;
    /// Bit 1: VMXON is allowed inside SMX operation (after `GETSEC[SENTER]`).
    pub const VMXON_INSIDE_SMX: u64 = 1 << 1;
    /// Bit 2: VMXON is allowed outside SMX operation, the normal case.
    pub const VMXON_OUTSIDE_SMX: u64 = 1 << 2;

    /// Whether the MSR is locked until reset.
    pub const fn locked(self) -> bool {
        self.0 & Self::LOCK != 0
    }

    /// Whether VMXON may execute inside SMX operation.
    pub const fn vmxon_inside_smx(self) -> bool {
        self.0 & Self::VMXON_INSIDE_SMX != 0
    }

    /// Whether VMXON may execute outside SMX operation.
    pub const fn vmxon_outside_smx(self) -> bool {
        self.0 & Self::VMXON_OUTSIDE_SMX != 0
    }

    /// The value to write so that VMXON works outside SMX, or `None` when the
    /// MSR is locked and must be left alone (a write would fault).
    ///
    /// The value also sets the lock bit: VMXON raises #GP while the lock bit
    /// is clear, whatever the enable bits say.
    pub const fn enabling_value(self) -> Option<u64> {
        if self.locked() {
            None
        } else {
            Some(self.0 | Self::LOCK | Self::VMXON_OUTSIDE_SMX)
        }
    }

    /// Checks that VMXON can be made to work outside SMX: either the MSR
    /// already allows it, or it is still unlocked and
    /// [`enabling_value`](Self::enabling_value) can be written.
    pub const fn check(self) -> Result<(), MissingFeature> {
        if self.locked() && !self.vmxon_outside_smx() {
            Err(MissingFeature::VmxDisabledByFirmware)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn capability_msrs_are_consecutive_from_0x480() {
        let in_sdm_order = [
            IA32_VMX_BASIC,
            IA32_VMX_PINBASED_CTLS,
            IA32_VMX_PROCBASED_CTLS,
            IA32_VMX_EXIT_CTLS,
            IA32_VMX_ENTRY_CTLS,
            IA32_VMX_MISC,
            IA32_VMX_CR0_FIXED0,
            IA32_VMX_CR0_FIXED1,
            IA32_VMX_CR4_FIXED0,
            IA32_VMX_CR4_FIXED1,
            IA32_VMX_VMCS_ENUM,
            IA32_VMX_PROCBASED_CTLS2,
            IA32_VMX_EPT_VPID_CAP,
            IA32_VMX_TRUE_PINBASED_CTLS,
            IA32_VMX_TRUE_PROCBASED_CTLS,
            IA32_VMX_TRUE_EXIT_CTLS,
            IA32_VMX_TRUE_ENTRY_CTLS,
            IA32_VMX_VMFUNC,
            IA32_VMX_PROCBASED_CTLS3,
            IA32_VMX_EXIT_CTLS2,
        ];
        for (offset, msr) in in_sdm_order.into_iter().enumerate() {
            assert_eq!(msr, 0x480 + offset as u32);
        }
        assert_eq!(IA32_VMX_VMFUNC, 0x491);
    }

    #[test]
    fn feature_control_decodes_its_three_bits() {
        let locked_outside = FeatureControl(0b101);
        assert!(locked_outside.locked());
        assert!(!locked_outside.vmxon_inside_smx());
        assert!(locked_outside.vmxon_outside_smx());

        let inside_only = FeatureControl(0b010);
        assert!(!inside_only.locked());
        assert!(inside_only.vmxon_inside_smx());
        assert!(!inside_only.vmxon_outside_smx());
    }

    #[test]
    fn locked_with_vmxon_outside_smx_off_is_disabled_by_firmware() {
        // Lock set, only the inside-SMX enable: typical "VT-x disabled" setup.
        let error = FeatureControl(0b011).check().unwrap_err();
        assert_eq!(error, MissingFeature::VmxDisabledByFirmware);
        assert_eq!(
            error.to_string(),
            "VMX is disabled by the firmware (IA32_FEATURE_CONTROL locked with \
             VMXON outside SMX off): enable VT-x in the firmware setup"
        );
        assert_eq!(FeatureControl(0b001).enabling_value(), None);
    }

    #[test]
    fn locked_and_enabled_passes_without_a_write() {
        let msr = FeatureControl(0b101);
        assert_eq!(msr.check(), Ok(()));
        assert_eq!(msr.enabling_value(), None);
    }

    #[test]
    fn unlocked_msr_is_enabled_and_locked_by_software() {
        // Other bits (here SGX enable, bit 18) survive the write.
        let msr = FeatureControl(1 << 18);
        assert_eq!(msr.check(), Ok(()));
        assert_eq!(msr.enabling_value(), Some((1 << 18) | 0b101));
    }
}
