//! What a CPU's VMX implementation offers, decoded from the `IA32_VMX_*`
//! capability MSRs (SDM appendix A), checked against what Matryoshka needs,
//! and printed as a boot-time report.
//!
//! [`VmxCapabilities::read`] takes the MSR reader as a closure, so the shim
//! passes `rdmsr` and host tests pass recorded values.

mod report;
mod requirements;

pub use report::ReportLine;
pub use requirements::{check_cpuid, MissingFeature};

pub use crate::msr::FeatureControl;

use crate::controls::{AllowedControls, PrimaryControls, SecondaryControls};
use crate::msr;

/// Declares one `const` mask and one `const fn` test per capability bit.
macro_rules! capability_bits {
    ($type:ident { $( $(#[$doc:meta])* $mask:ident, $test:ident = $bit:literal; )* }) => {
        impl $type {
            $(
                $(#[$doc])*
                pub const $mask: u64 = 1 << $bit;
            )*
            $(
                $(#[$doc])*
                pub const fn $test(self) -> bool {
                    self.0 & Self::$mask != 0
                }
            )*
        }
    };
}

/// A memory type as the capability MSRs and EPT encode it (SDM 12.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// UC, encoding 0.
    Uncacheable,
    /// WC, encoding 1.
    WriteCombining,
    /// WT, encoding 4.
    WriteThrough,
    /// WP, encoding 5.
    WriteProtected,
    /// WB, encoding 6.
    WriteBack,
    /// Any other encoding, reserved.
    Reserved(u8),
}

impl MemoryType {
    /// Decodes a memory-type number.
    pub const fn from_encoding(encoding: u8) -> Self {
        match encoding {
            0 => Self::Uncacheable,
            1 => Self::WriteCombining,
            4 => Self::WriteThrough,
            5 => Self::WriteProtected,
            6 => Self::WriteBack,
            other => Self::Reserved(other),
        }
    }

    /// The memory-type number.
    pub const fn encoding(self) -> u8 {
        match self {
            Self::Uncacheable => 0,
            Self::WriteCombining => 1,
            Self::WriteThrough => 4,
            Self::WriteProtected => 5,
            Self::WriteBack => 6,
            Self::Reserved(other) => other,
        }
    }

    /// The name used in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Uncacheable => "uncacheable",
            Self::WriteCombining => "write-combining",
            Self::WriteThrough => "write-through",
            Self::WriteProtected => "write-protected",
            Self::WriteBack => "write-back",
            Self::Reserved(_) => "reserved memory type",
        }
    }
}

/// `IA32_VMX_BASIC` (SDM A.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmxBasic(pub u64);

impl VmxBasic {
    /// The VMCS revision identifier (bits 30:0) that VMXON and VMPTRLD
    /// regions must start with.
    pub const fn revision_id(self) -> u32 {
        (self.0 & 0x7fff_ffff) as u32
    }

    /// Bytes to allocate for a VMXON or VMCS region (bits 44:32), at most 4096.
    pub const fn region_size(self) -> u32 {
        ((self.0 >> 32) & 0x1fff) as u32
    }

    /// The memory type the CPU uses to access the VMCS and the structures it
    /// points to (bits 53:50).
    pub const fn vmcs_memory_type(self) -> MemoryType {
        MemoryType::from_encoding(((self.0 >> 50) & 0xf) as u8)
    }
}

capability_bits!(VmxBasic {
    /// Bit 48: VMXON, VMCS and the structures they point to must lie below
    /// 4 GiB (only on CPUs without Intel 64).
    PHYSICAL_ADDRESS_WIDTH_32, physical_address_width_32 = 48;
    /// Bit 49: the dual-monitor treatment of SMIs and SMM is supported.
    DUAL_MONITOR_SMM, dual_monitor_smm = 49;
    /// Bit 54: VM exits caused by INS and OUTS report instruction information.
    INS_OUTS_INFO, ins_outs_info = 54;
    /// Bit 55: the `IA32_VMX_TRUE_*_CTLS` MSRs exist, so default1 controls
    /// may be cleared.
    TRUE_CONTROLS, true_controls = 55;
    /// Bit 56: VM entry may deliver any hardware exception with or without
    /// an error code, whatever its vector.
    EXCEPTION_DELIVERY_WITHOUT_ERROR_CODE, exception_delivery_without_error_code = 56;
});

/// Which activity states other than active a VM entry may load (SDM A.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ActivityStates {
    /// The guest may be entered halted.
    pub hlt: bool,
    /// The guest may be entered in the shutdown state.
    pub shutdown: bool,
    /// The guest may be entered waiting for a startup IPI.
    pub wait_for_sipi: bool,
}

/// `IA32_VMX_MISC` (SDM A.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmxMisc(pub u64);

impl VmxMisc {
    /// The VMX-preemption timer counts down by 1 every 2^rate TSC cycles
    /// (bits 4:0).
    pub const fn preemption_timer_rate(self) -> u8 {
        (self.0 & 0x1f) as u8
    }

    /// The activity states a VM entry may load (bits 8:6).
    pub const fn activity_states(self) -> ActivityStates {
        ActivityStates {
            hlt: self.0 & (1 << 6) != 0,
            shutdown: self.0 & (1 << 7) != 0,
            wait_for_sipi: self.0 & (1 << 8) != 0,
        }
    }

    /// How many CR3-target values the CPU supports (bits 24:16).
    pub const fn cr3_target_count(self) -> u16 {
        ((self.0 >> 16) & 0x1ff) as u16
    }

    /// The recommended maximum number of entries in each MSR-load or
    /// MSR-store list: 512 × (bits 27:25 + 1).
    pub const fn max_msr_list_entries(self) -> u32 {
        512 * (((self.0 >> 25) & 0x7) as u32 + 1)
    }

    /// The MSEG revision identifier for the dual-monitor treatment
    /// (bits 63:32).
    pub const fn mseg_revision(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

capability_bits!(VmxMisc {
    /// Bit 5: VM exits store EFER.LMA into the "IA-32e mode guest" entry control.
    STORES_EFER_LMA, stores_efer_lma = 5;
    /// Bit 14: Intel PT may be used in VMX operation.
    INTEL_PT_IN_VMX, intel_pt_in_vmx = 14;
    /// Bit 15: RDMSR may read IA32_SMBASE in SMM.
    RDMSR_SMBASE_IN_SMM, rdmsr_smbase_in_smm = 15;
    /// Bit 28: bit 2 of IA32_SMM_MONITOR_CTL may be set, so VMXOFF can
    /// unblock SMIs.
    SMM_MONITOR_CTL_BIT2, smm_monitor_ctl_bit2 = 28;
    /// Bit 29: VMWRITE may write any supported field, including the
    /// read-only VM-exit information fields.
    VMWRITE_ANY_FIELD, vmwrite_any_field = 29;
    /// Bit 30: VM entry may inject software interrupts and exceptions with
    /// an instruction length of 0.
    ZERO_LENGTH_INJECTION, zero_length_injection = 30;
});

/// `IA32_VMX_VMCS_ENUM` (SDM A.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmcsEnum(pub u64);

impl VmcsEnum {
    /// The highest index (bits 9:1 of an encoding) of any field the CPU
    /// supports.
    pub const fn highest_index(self) -> u16 {
        ((self.0 >> 1) & 0x1ff) as u16
    }
}

/// `IA32_VMX_EPT_VPID_CAP` (SDM A.10).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EptVpidCapabilities(pub u64);

capability_bits!(EptVpidCapabilities {
    /// Bit 0: EPT entries may be execute-only.
    EXECUTE_ONLY, execute_only = 0;
    /// Bit 6: 4-level EPT page walks.
    PAGE_WALK_4, page_walk_4 = 6;
    /// Bit 7: 5-level EPT page walks.
    PAGE_WALK_5, page_walk_5 = 7;
    /// Bit 8: EPT paging structures may be uncacheable.
    UNCACHEABLE, uncacheable = 8;
    /// Bit 14: EPT paging structures may be write-back.
    WRITE_BACK, write_back = 14;
    /// Bit 16: EPT PDEs may map 2 MiB pages.
    PAGES_2M, pages_2m = 16;
    /// Bit 17: EPT PDPTEs may map 1 GiB pages.
    PAGES_1G, pages_1g = 17;
    /// Bit 20: INVEPT is supported.
    INVEPT, invept = 20;
    /// Bit 21: EPT accessed and dirty flags.
    ACCESSED_DIRTY, accessed_dirty = 21;
    /// Bit 22: EPT violations report advanced information about the
    /// guest-linear access.
    ADVANCED_VIOLATION_INFO, advanced_violation_info = 22;
    /// Bit 23: supervisor shadow-stack control in EPT entries.
    SUPERVISOR_SHADOW_STACK, supervisor_shadow_stack = 23;
    /// Bit 25: single-context INVEPT (type 1).
    INVEPT_SINGLE_CONTEXT, invept_single_context = 25;
    /// Bit 26: all-context INVEPT (type 2).
    INVEPT_ALL_CONTEXT, invept_all_context = 26;
    /// Bit 32: INVVPID is supported.
    INVVPID, invvpid = 32;
    /// Bit 40: individual-address INVVPID (type 0).
    INVVPID_INDIVIDUAL_ADDRESS, invvpid_individual_address = 40;
    /// Bit 41: single-context INVVPID (type 1).
    INVVPID_SINGLE_CONTEXT, invvpid_single_context = 41;
    /// Bit 42: all-context INVVPID (type 2).
    INVVPID_ALL_CONTEXT, invvpid_all_context = 42;
    /// Bit 43: single-context INVVPID that keeps global translations (type 3).
    INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS, invvpid_single_context_retaining_globals = 43;
});

/// The bits a control register must and may have in VMX operation
/// (SDM A.7, A.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FixedBits {
    /// Bits that must be 1 (`IA32_VMX_CRn_FIXED0`).
    pub fixed0: u64,
    /// Bits that may be 1 (`IA32_VMX_CRn_FIXED1`); the others must be 0.
    pub fixed1: u64,
}

impl FixedBits {
    /// `value` with the must-be-one bits set and the must-be-zero bits clear.
    pub const fn adjust(self, value: u64) -> u64 {
        (value | self.fixed0) & self.fixed1
    }

    /// Whether `value` already satisfies both constraints.
    pub const fn is_valid(self, value: u64) -> bool {
        value & self.fixed0 == self.fixed0 && value & !self.fixed1 == 0
    }
}

/// CR0.PE, which an unrestricted guest may clear despite CR0_FIXED0.
const CR0_PE: u64 = 1 << 0;
/// CR0.PG, which an unrestricted guest may clear despite CR0_FIXED0.
const CR0_PG: u64 = 1 << 31;

/// Everything the `IA32_VMX_*` MSRs say about a CPU's VMX implementation.
///
/// Groups whose MSR does not exist on this CPU read as empty: the secondary
/// controls without "activate secondary controls", the EPT/VPID
/// capabilities without EPT or VPID, the VM functions without "enable VM
/// functions".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VmxCapabilities {
    /// `IA32_VMX_BASIC`.
    pub basic: VmxBasic,
    /// Pin-based controls, from the TRUE MSR when the CPU has one.
    pub pin_based: AllowedControls,
    /// Primary processor-based controls, from the TRUE MSR when the CPU has one.
    pub primary: AllowedControls,
    /// Secondary processor-based controls.
    pub secondary: AllowedControls,
    /// Primary VM-exit controls, from the TRUE MSR when the CPU has one.
    pub exit: AllowedControls,
    /// VM-entry controls, from the TRUE MSR when the CPU has one.
    pub entry: AllowedControls,
    /// `IA32_VMX_MISC`.
    pub misc: VmxMisc,
    /// `IA32_VMX_CR0_FIXED0` and `IA32_VMX_CR0_FIXED1`.
    pub cr0_fixed: FixedBits,
    /// `IA32_VMX_CR4_FIXED0` and `IA32_VMX_CR4_FIXED1`.
    pub cr4_fixed: FixedBits,
    /// `IA32_VMX_VMCS_ENUM`.
    pub vmcs_enum: VmcsEnum,
    /// `IA32_VMX_EPT_VPID_CAP`.
    pub ept_vpid: EptVpidCapabilities,
    /// `IA32_VMX_VMFUNC`: bit n set means VM function n may be enabled.
    pub vmfunc: u64,
}

impl VmxCapabilities {
    /// Reads every capability MSR that exists on this CPU.
    ///
    /// An MSR that does not exist raises #GP when read, so the optional ones
    /// are only read when the MSRs read before say they exist (SDM A.3.3,
    /// A.10, A.11). Call this only after CPUID reported VMX
    /// ([`check_cpuid`]): without VMX even `IA32_VMX_BASIC` does not exist.
    pub fn read(mut read_msr: impl FnMut(u32) -> u64) -> Self {
        let basic = VmxBasic(read_msr(msr::IA32_VMX_BASIC));
        let [pin_msr, primary_msr, exit_msr, entry_msr] = if basic.true_controls() {
            [
                msr::IA32_VMX_TRUE_PINBASED_CTLS,
                msr::IA32_VMX_TRUE_PROCBASED_CTLS,
                msr::IA32_VMX_TRUE_EXIT_CTLS,
                msr::IA32_VMX_TRUE_ENTRY_CTLS,
            ]
        } else {
            [
                msr::IA32_VMX_PINBASED_CTLS,
                msr::IA32_VMX_PROCBASED_CTLS,
                msr::IA32_VMX_EXIT_CTLS,
                msr::IA32_VMX_ENTRY_CTLS,
            ]
        };
        let pin_based = AllowedControls::from_msr(read_msr(pin_msr));
        let primary = AllowedControls::from_msr(read_msr(primary_msr));
        let exit = AllowedControls::from_msr(read_msr(exit_msr));
        let entry = AllowedControls::from_msr(read_msr(entry_msr));
        let misc = VmxMisc(read_msr(msr::IA32_VMX_MISC));
        let cr0_fixed =
            FixedBits { fixed0: read_msr(msr::IA32_VMX_CR0_FIXED0), fixed1: read_msr(msr::IA32_VMX_CR0_FIXED1) };
        let cr4_fixed =
            FixedBits { fixed0: read_msr(msr::IA32_VMX_CR4_FIXED0), fixed1: read_msr(msr::IA32_VMX_CR4_FIXED1) };
        let vmcs_enum = VmcsEnum(read_msr(msr::IA32_VMX_VMCS_ENUM));

        let secondary = if primary.supports(PrimaryControls::SECONDARY_CONTROLS.bits()) {
            AllowedControls::from_msr(read_msr(msr::IA32_VMX_PROCBASED_CTLS2))
        } else {
            AllowedControls::NONE
        };
        let ept_or_vpid = SecondaryControls::EPT.union(SecondaryControls::VPID).bits();
        let ept_vpid = if secondary.allowed1 & ept_or_vpid != 0 {
            EptVpidCapabilities(read_msr(msr::IA32_VMX_EPT_VPID_CAP))
        } else {
            EptVpidCapabilities(0)
        };
        let vmfunc = if secondary.supports(SecondaryControls::ENABLE_VMFUNC.bits()) {
            read_msr(msr::IA32_VMX_VMFUNC)
        } else {
            0
        };

        Self {
            basic,
            pin_based,
            primary,
            secondary,
            exit,
            entry,
            misc,
            cr0_fixed,
            cr4_fixed,
            vmcs_enum,
            ept_vpid,
            vmfunc,
        }
    }

    /// Whether the CPU has the secondary processor-based controls.
    pub const fn has_secondary_controls(&self) -> bool {
        self.primary.supports(PrimaryControls::SECONDARY_CONTROLS.bits())
    }

    /// Whether guest hypervisors' VMREAD and VMWRITE can be served from a
    /// shadow VMCS instead of exiting. Optional: without it every VMREAD
    /// and VMWRITE of a guest hypervisor exits and is emulated.
    pub const fn has_vmcs_shadowing(&self) -> bool {
        self.has_secondary_controls() && self.secondary.supports(SecondaryControls::VMCS_SHADOWING.bits())
    }

    /// `cr0` with the bits VMX operation forces set and cleared.
    pub const fn adjust_cr0(&self, cr0: u64) -> u64 {
        self.cr0_fixed.adjust(cr0)
    }

    /// `cr4` with the bits VMX operation forces set and cleared, CR4.VMXE
    /// among them.
    pub const fn adjust_cr4(&self, cr4: u64) -> u64 {
        self.cr4_fixed.adjust(cr4)
    }

    /// Guest `cr0` for a guest run with "unrestricted guest": like
    /// [`adjust_cr0`](Self::adjust_cr0), except that CR0.PE and CR0.PG may
    /// stay 0 so the guest can run in real mode or without paging
    /// (SDM 26.3.1.1).
    pub const fn adjust_unrestricted_guest_cr0(&self, cr0: u64) -> u64 {
        let fixed = FixedBits { fixed0: self.cr0_fixed.fixed0 & !(CR0_PE | CR0_PG), fixed1: self.cr0_fixed.fixed1 };
        fixed.adjust(cr0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    /// MSR values recorded on a Skylake-class CPU with every feature
    /// Matryoshka needs, VMCS shadowing included.
    pub(crate) fn skylake_msrs() -> BTreeMap<u32, u64> {
        BTreeMap::from([
            // Revision 4, 4096-byte region, write-back, INS/OUTS info, true controls.
            (0x480, 0x00da_0400_0000_0004),
            (0x481, 0x0000_007f_0000_0016),
            (0x482, 0xfff9_fffe_0401_e172),
            (0x483, 0x01ff_ffff_0003_6dff),
            (0x484, 0x0003_ffff_0000_11ff),
            (0x485, 0x0000_0000_7004_c1e7),
            (0x486, 0x0000_0000_8000_0021),
            (0x487, 0x0000_0000_ffff_ffff),
            (0x488, 0x0000_0000_0000_2000),
            (0x489, 0x0000_0000_0037_27ff),
            (0x48a, 0x0000_0000_0000_002e),
            (0x48b, 0x005f_f7ff_0000_0000),
            (0x48c, 0x0000_0f01_0673_4141),
            (0x48d, 0x0000_007f_0000_0016),
            (0x48e, 0xfff9_fffe_0400_6172),
            (0x48f, 0x01ff_ffff_0003_6dfb),
            (0x490, 0x0003_ffff_0000_11fb),
            (0x491, 0x0000_0000_0000_0001),
        ])
    }

    /// Reads from `msrs`, failing the test on an MSR the CPU would not have.
    fn reader(msrs: &BTreeMap<u32, u64>) -> impl FnMut(u32) -> u64 + '_ {
        |index| *msrs.get(&index).unwrap_or_else(|| panic!("read of absent MSR {index:#x} would #GP"))
    }

    #[test]
    fn basic_decodes_sdm_a1_fields() {
        let basic = VmxBasic(0x00da_0400_0000_0004);
        assert_eq!(basic.revision_id(), 4);
        assert_eq!(basic.region_size(), 1024);
        assert_eq!(basic.vmcs_memory_type(), MemoryType::WriteBack);
        assert!(basic.ins_outs_info());
        assert!(basic.true_controls());
        assert!(!basic.physical_address_width_32());
        assert!(basic.dual_monitor_smm());
        assert!(!basic.exception_delivery_without_error_code());

        // Bit 31 is always 0 and is not part of the revision id.
        let edges = VmxBasic(0x0103_1000_ffff_ffff);
        assert_eq!(edges.revision_id(), 0x7fff_ffff);
        assert_eq!(edges.region_size(), 0x1000);
        assert!(edges.physical_address_width_32());
        assert!(edges.dual_monitor_smm());
        assert_eq!(edges.vmcs_memory_type(), MemoryType::Uncacheable);
        assert!(edges.exception_delivery_without_error_code());
    }

    #[test]
    fn memory_types_round_trip() {
        for encoding in 0..16u8 {
            assert_eq!(MemoryType::from_encoding(encoding).encoding(), encoding);
        }
        assert_eq!(MemoryType::from_encoding(2), MemoryType::Reserved(2));
        assert_eq!(MemoryType::WriteBack.name(), "write-back");
    }

    #[test]
    fn misc_decodes_sdm_a6_fields() {
        let misc = VmxMisc(0x0000_0000_7004_c1e7);
        assert_eq!(misc.preemption_timer_rate(), 7);
        assert!(misc.stores_efer_lma());
        assert_eq!(misc.activity_states(), ActivityStates { hlt: true, shutdown: true, wait_for_sipi: true });
        assert!(misc.intel_pt_in_vmx());
        assert!(misc.rdmsr_smbase_in_smm());
        assert_eq!(misc.cr3_target_count(), 4);
        assert_eq!(misc.max_msr_list_entries(), 512);
        assert!(misc.smm_monitor_ctl_bit2());
        assert!(misc.vmwrite_any_field());
        assert!(misc.zero_length_injection());
        assert_eq!(misc.mseg_revision(), 0);

        let edges = VmxMisc(0x1234_5678_0f1f_0000);
        assert_eq!(edges.preemption_timer_rate(), 0);
        assert_eq!(edges.cr3_target_count(), 0x11f);
        assert_eq!(edges.max_msr_list_entries(), 512 * 8);
        assert_eq!(edges.mseg_revision(), 0x1234_5678);
        assert_eq!(edges.activity_states(), ActivityStates::default());
    }

    #[test]
    fn vmcs_enum_takes_bits_9_to_1() {
        assert_eq!(VmcsEnum(0x2e).highest_index(), 0x17);
        assert_eq!(VmcsEnum(0xffff_ffff_ffff_fc01).highest_index(), 0);
        assert_eq!(VmcsEnum(0x3fe).highest_index(), 0x1ff);
    }

    #[test]
    fn ept_vpid_caps_decode_sdm_a10_bits() {
        let caps = EptVpidCapabilities(0x0000_0f01_0673_4141);
        assert!(caps.execute_only());
        assert!(caps.page_walk_4());
        assert!(!caps.page_walk_5());
        assert!(caps.uncacheable());
        assert!(caps.write_back());
        assert!(caps.pages_2m());
        assert!(caps.pages_1g());
        assert!(caps.invept());
        assert!(caps.accessed_dirty());
        assert!(caps.advanced_violation_info());
        assert!(!caps.supervisor_shadow_stack());
        assert!(caps.invept_single_context());
        assert!(caps.invept_all_context());
        assert!(caps.invvpid());
        assert!(caps.invvpid_individual_address());
        assert!(caps.invvpid_single_context());
        assert!(caps.invvpid_all_context());
        assert!(caps.invvpid_single_context_retaining_globals());

        let bits: Vec<u64> = [
            EptVpidCapabilities::PAGE_WALK_5,
            EptVpidCapabilities::SUPERVISOR_SHADOW_STACK,
            EptVpidCapabilities::INVVPID,
            EptVpidCapabilities::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS,
        ]
        .into();
        assert_eq!(bits, [1 << 7, 1 << 23, 1 << 32, 1 << 43]);
    }

    #[test]
    fn read_uses_true_msrs_when_basic_bit_55_is_set() {
        let msrs = skylake_msrs();
        let capabilities = VmxCapabilities::read(reader(&msrs));
        // The TRUE MSRs let CR3-load/store exiting (bits 15, 16) be 0.
        assert_eq!(capabilities.primary.allowed0, 0x0400_6172);
        assert_eq!(capabilities.exit.allowed0, 0x0003_6dfb);
        assert_eq!(capabilities.entry.allowed0, 0x0000_11fb);
        assert_eq!(capabilities.secondary.allowed1, 0x005f_f7ff);
        assert_eq!(capabilities.ept_vpid.0, 0x0000_0f01_0673_4141);
        assert_eq!(capabilities.vmfunc, 1);
        assert_eq!(capabilities.vmcs_enum.highest_index(), 0x17);
        assert!(capabilities.has_vmcs_shadowing());
    }

    #[test]
    fn read_uses_plain_msrs_without_true_controls() {
        let mut msrs = skylake_msrs();
        msrs.insert(0x480, 0x00da_0400_0000_0004 & !VmxBasic::TRUE_CONTROLS);
        for true_msr in 0x48d..=0x490 {
            msrs.remove(&true_msr);
        }
        let capabilities = VmxCapabilities::read(reader(&msrs));
        assert_eq!(capabilities.primary.allowed0, 0x0401_e172);
        assert_eq!(capabilities.exit.allowed0, 0x0003_6dff);
    }

    #[test]
    fn read_skips_msrs_the_cpu_does_not_have() {
        // No secondary controls: neither CTLS2, EPT_VPID_CAP nor VMFUNC exist.
        let mut msrs = skylake_msrs();
        msrs.insert(0x48e, 0x7ff9_fffe_0400_6172);
        for absent in [0x48b, 0x48c, 0x491] {
            msrs.remove(&absent);
        }
        let capabilities = VmxCapabilities::read(reader(&msrs));
        assert!(!capabilities.has_secondary_controls());
        assert!(!capabilities.has_vmcs_shadowing());
        assert_eq!(capabilities.secondary, AllowedControls::NONE);
        assert_eq!(capabilities.ept_vpid.0, 0);
        assert_eq!(capabilities.vmfunc, 0);

        // Secondary controls without EPT, VPID or VM functions.
        let mut msrs = skylake_msrs();
        msrs.insert(0x48b, 0x0000_0001_0000_0000);
        for absent in [0x48c, 0x491] {
            msrs.remove(&absent);
        }
        let capabilities = VmxCapabilities::read(reader(&msrs));
        assert_eq!(capabilities.secondary.allowed1, 1);
        assert_eq!(capabilities.ept_vpid.0, 0);

        // VPID alone is enough for EPT_VPID_CAP to exist.
        msrs.insert(0x48b, 0x0000_0020_0000_0000);
        msrs.insert(0x48c, 0x0000_0f01_0000_0000);
        let capabilities = VmxCapabilities::read(reader(&msrs));
        assert!(capabilities.ept_vpid.invvpid());
    }

    #[test]
    fn fixed_bits_force_cr0_and_cr4() {
        let capabilities = VmxCapabilities::read(reader(&skylake_msrs()));
        // CR0_FIXED0 = PE | NE | PG; CR4_FIXED0 = VMXE.
        assert_eq!(capabilities.adjust_cr0(0), 0x8000_0021);
        assert_eq!(capabilities.adjust_cr0(0x0000_0000_0005_0033), 0x8005_0033);
        assert_eq!(capabilities.adjust_cr0(1 << 40), 0x8000_0021);
        assert_eq!(capabilities.adjust_cr4(0x20), 0x2020);
        // CR4 bits outside FIXED1 (here LA57, bit 12, and bit 22) are cleared.
        assert_eq!(capabilities.adjust_cr4((1 << 12) | (1 << 22) | 0x20), 0x2020);
        assert!(capabilities.cr4_fixed.is_valid(0x2020));
        assert!(!capabilities.cr4_fixed.is_valid(0x20));
        assert!(!capabilities.cr4_fixed.is_valid(0x2020 | (1 << 22)));
    }

    #[test]
    fn unrestricted_guest_may_clear_pe_and_pg_but_not_ne() {
        let capabilities = VmxCapabilities::read(reader(&skylake_msrs()));
        assert_eq!(capabilities.adjust_unrestricted_guest_cr0(0), 0x20);
        assert_eq!(capabilities.adjust_unrestricted_guest_cr0(0x8000_0001), 0x8000_0021);
    }
}
