//! The VMX that a guest hypervisor (L1) is shown: its `IA32_VMX_*`
//! capability MSRs (SDM appendix A).
//!
//! Every value is the host's capability intersected with what this module
//! emulates, so L1 never sees a control, an EPT feature or an INVEPT type
//! that the monitor would have to refuse later. A control appears in the
//! `allowed1` half only when both the CPU can run vmcs02 with it and the
//! monitor implements its nested semantics (exit reflection, vmcs02 merge,
//! entry checks).
//!
//! | MSR | what L1 sees |
//! |---|---|
//! | `IA32_VMX_BASIC` | revision [`VMCS12_REVISION`], 4 KiB regions, write-back, INS/OUTS information, true controls; no dual-monitor SMM, no 32-bit address limit, no exception delivery without error code |
//! | pin-based | external-interrupt and NMI exiting, virtual NMIs, preemption timer (no posted interrupts) |
//! | primary | every exiting control, I/O and MSR bitmaps, TSC offsetting, MTF, secondary controls; no TPR shadow, no tertiary controls |
//! | secondary | EPT, VPID, unrestricted guest, descriptor-table, WBINVD, RDRAND, RDSEED exiting, RDTSCP, INVPCID; no APIC virtualization, VMCS shadowing, PML, VM functions |
//! | exit | save/load EFER and PAT, save debug controls and preemption timer, host address-space size, acknowledge interrupt on exit |
//! | entry | IA-32e mode guest, load EFER, PAT and debug controls |
//! | misc | the host's preemption-timer rate, EFER.LMA stored on exit, HLT activity state (if the host has it), 4 CR3 targets, 512 MSR-list entries, VMWRITE to any field |
//! | CR0/CR4 fixed | the host's |
//! | VMCS enum | the highest index among the fields [`vmcs12`](super::vmcs12) supports |
//! | EPT/VPID | 4-level walks, UC and WB, 2 MiB and 1 GiB pages, A/D flags, INVEPT single and all context, every INVVPID type; execute-only if the host has it |
//! | VMFUNC | not offered: VMFUNC in L1 or L2 raises #UD |

use vmx::capabilities::{EptVpidCapabilities, FixedBits, VmcsEnum, VmxBasic, VmxCapabilities, VmxMisc};
use vmx::controls::{
    AllowedControls, EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls,
};
use vmx::msr;

use super::vmcs12;

/// The VMCS revision identifier of vmcs12 regions. It differs from every
/// real CPU's so that a VMCS that L1 prepared for hardware is refused by
/// VMPTRLD rather than misread; bit 31 is clear (not a shadow VMCS).
pub const VMCS12_REVISION: u32 = 0x4d4b_3132;

/// Bytes of a VMXON or VMCS region L1 must provide (`IA32_VMX_BASIC`
/// bits 44:32).
pub const REGION_SIZE: u64 = 4096;

/// The write-back memory type, the only one L1's VMCS regions use.
const MEMORY_TYPE_WB: u64 = 6;

/// Pin-based controls whose nested semantics are implemented.
const PIN_OFFERED: u32 = PinBasedControls::EXTERNAL_INTERRUPT_EXITING.bits()
    | PinBasedControls::NMI_EXITING.bits()
    | PinBasedControls::VIRTUAL_NMIS.bits()
    | PinBasedControls::PREEMPTION_TIMER.bits();

/// Primary controls whose nested semantics are implemented.
const PRIMARY_OFFERED: u32 = PrimaryControls::INTERRUPT_WINDOW_EXITING.bits()
    | PrimaryControls::TSC_OFFSETTING.bits()
    | PrimaryControls::HLT_EXITING.bits()
    | PrimaryControls::INVLPG_EXITING.bits()
    | PrimaryControls::MWAIT_EXITING.bits()
    | PrimaryControls::RDPMC_EXITING.bits()
    | PrimaryControls::RDTSC_EXITING.bits()
    | PrimaryControls::CR3_LOAD_EXITING.bits()
    | PrimaryControls::CR3_STORE_EXITING.bits()
    | PrimaryControls::CR8_LOAD_EXITING.bits()
    | PrimaryControls::CR8_STORE_EXITING.bits()
    | PrimaryControls::NMI_WINDOW_EXITING.bits()
    | PrimaryControls::MOV_DR_EXITING.bits()
    | PrimaryControls::UNCONDITIONAL_IO_EXITING.bits()
    | PrimaryControls::IO_BITMAPS.bits()
    | PrimaryControls::MONITOR_TRAP_FLAG.bits()
    | PrimaryControls::MSR_BITMAPS.bits()
    | PrimaryControls::MONITOR_EXITING.bits()
    | PrimaryControls::PAUSE_EXITING.bits()
    | PrimaryControls::SECONDARY_CONTROLS.bits();

/// Secondary controls whose nested semantics are implemented.
const SECONDARY_OFFERED: u32 = SecondaryControls::EPT.bits()
    | SecondaryControls::DESCRIPTOR_TABLE_EXITING.bits()
    | SecondaryControls::RDTSCP.bits()
    | SecondaryControls::VPID.bits()
    | SecondaryControls::WBINVD_EXITING.bits()
    | SecondaryControls::UNRESTRICTED_GUEST.bits()
    | SecondaryControls::RDRAND_EXITING.bits()
    | SecondaryControls::INVPCID.bits()
    | SecondaryControls::RDSEED_EXITING.bits();

/// Exit controls whose nested semantics are implemented.
const EXIT_OFFERED: u32 = ExitControls::SAVE_DEBUG_CONTROLS.bits()
    | ExitControls::HOST_ADDRESS_SPACE_SIZE.bits()
    | ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT.bits()
    | ExitControls::SAVE_PAT.bits()
    | ExitControls::LOAD_PAT.bits()
    | ExitControls::SAVE_EFER.bits()
    | ExitControls::LOAD_EFER.bits()
    | ExitControls::SAVE_PREEMPTION_TIMER.bits();

/// Entry controls whose nested semantics are implemented.
const ENTRY_OFFERED: u32 = EntryControls::LOAD_DEBUG_CONTROLS.bits()
    | EntryControls::IA32E_MODE_GUEST.bits()
    | EntryControls::LOAD_PAT.bits()
    | EntryControls::LOAD_EFER.bits();

/// CR3-target values the vmcs12 layout stores.
pub const CR3_TARGETS: u16 = 4;

/// EPT and VPID features emulated whatever the host's EPT offers: the
/// shadow EPT is built by software, so large pages are split to what the
/// host maps and A/D flags are set by the walker.
const EPT_VPID_EMULATED: u64 = EptVpidCapabilities::PAGE_WALK_4
    | EptVpidCapabilities::UNCACHEABLE
    | EptVpidCapabilities::WRITE_BACK
    | EptVpidCapabilities::PAGES_2M
    | EptVpidCapabilities::PAGES_1G
    | EptVpidCapabilities::INVEPT
    | EptVpidCapabilities::ACCESSED_DIRTY
    | EptVpidCapabilities::INVEPT_SINGLE_CONTEXT
    | EptVpidCapabilities::INVEPT_ALL_CONTEXT;

/// VPID features: every INVVPID type, emulated by flushing the one VPID
/// that L2 runs with.
const VPID_EMULATED: u64 = EptVpidCapabilities::INVVPID
    | EptVpidCapabilities::INVVPID_INDIVIDUAL_ADDRESS
    | EptVpidCapabilities::INVVPID_SINGLE_CONTEXT
    | EptVpidCapabilities::INVVPID_ALL_CONTEXT
    | EptVpidCapabilities::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS;

/// What L1's VMX offers, as the capability MSRs encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1VmxCapabilities {
    pub basic: VmxBasic,
    /// True pin-based controls.
    pub pin_based: AllowedControls,
    /// True primary processor-based controls.
    pub primary: AllowedControls,
    pub secondary: AllowedControls,
    /// True exit controls.
    pub exit: AllowedControls,
    /// True entry controls.
    pub entry: AllowedControls,
    pub misc: VmxMisc,
    pub cr0_fixed: FixedBits,
    pub cr4_fixed: FixedBits,
    pub vmcs_enum: VmcsEnum,
    pub ept_vpid: EptVpidCapabilities,
    /// L1's MAXPHYADDR (CPUID 0x80000008 EAX[7:0]): VMX structure addresses
    /// with bits at or above it set are invalid.
    pub physical_address_width: u8,
}

/// Offers the intersection of the host's allowed settings with `offered`.
/// Bits the host forces to 1 stay allowed, so a value that is valid for L1
/// also passes the host's own must-be-one check.
fn offer(host: AllowedControls, offered: u32) -> AllowedControls {
    let allowed1 = (host.allowed1 & offered) | host.allowed0;
    AllowedControls { allowed0: host.allowed0, allowed1 }
}

impl L1VmxCapabilities {
    /// L1's capabilities on a host with `host`'s VMX, for a guest whose
    /// MAXPHYADDR is `physical_address_width`.
    pub fn from_host(host: &VmxCapabilities, physical_address_width: u8) -> Self {
        let basic = VmxBasic(
            u64::from(VMCS12_REVISION)
                | REGION_SIZE << 32
                | MEMORY_TYPE_WB << 50
                | VmxBasic::INS_OUTS_INFO
                | VmxBasic::TRUE_CONTROLS,
        );
        let secondary = if host.has_secondary_controls() {
            AllowedControls { allowed0: 0, allowed1: host.secondary.allowed1 & SECONDARY_OFFERED }
        } else {
            AllowedControls::NONE
        };
        let mut primary = offer(host.primary, PRIMARY_OFFERED);
        if secondary.allowed1 == 0 {
            primary.allowed1 &= !PrimaryControls::SECONDARY_CONTROLS.bits();
        }

        let host_misc = host.misc;
        let hlt = if host_misc.activity_states().hlt { 1 << 6 } else { 0 };
        let cr3_targets = u64::from(host_misc.cr3_target_count().min(CR3_TARGETS));
        let misc = VmxMisc(
            u64::from(host_misc.preemption_timer_rate())
                | VmxMisc::STORES_EFER_LMA
                | hlt
                | cr3_targets << 16
                | VmxMisc::VMWRITE_ANY_FIELD,
        );

        let mut ept_vpid = 0;
        if secondary.supports(SecondaryControls::EPT.bits()) {
            ept_vpid |= EPT_VPID_EMULATED | (host.ept_vpid.0 & EptVpidCapabilities::EXECUTE_ONLY);
        }
        if secondary.supports(SecondaryControls::VPID.bits()) {
            ept_vpid |= VPID_EMULATED;
        }

        Self {
            basic,
            pin_based: offer(host.pin_based, PIN_OFFERED),
            primary,
            secondary,
            exit: offer(host.exit, EXIT_OFFERED),
            entry: offer(host.entry, ENTRY_OFFERED),
            misc,
            cr0_fixed: host.cr0_fixed,
            cr4_fixed: host.cr4_fixed,
            vmcs_enum: VmcsEnum(u64::from(vmcs12::highest_supported_index()) << 1),
            ept_vpid: EptVpidCapabilities(ept_vpid),
            physical_address_width: physical_address_width.clamp(32, 52),
        }
    }

    /// Whether `address` has a bit set at or above L1's MAXPHYADDR.
    pub const fn beyond_physical_width(&self, address: u64) -> bool {
        address >> self.physical_address_width != 0
    }

    /// Whether L1 may enable `controls` of the secondary group.
    pub const fn offers_secondary(&self, controls: SecondaryControls) -> bool {
        self.secondary.supports(controls.bits())
    }

    /// The value L1 reads from a capability MSR, or `None` for an MSR that
    /// does not exist for it (RDMSR raises #GP).
    pub fn msr(&self, index: u32) -> Option<u64> {
        let legacy = |allowed: AllowedControls, default1: u32| {
            // The non-true MSRs report the default1 bits as must-be-one
            // (SDM A.2).
            AllowedControls { allowed0: allowed.allowed0 | default1, allowed1: allowed.allowed1 | default1 }.to_msr()
        };
        Some(match index {
            msr::IA32_VMX_BASIC => self.basic.0,
            msr::IA32_VMX_PINBASED_CTLS => legacy(self.pin_based, PinBasedControls::DEFAULT1.bits()),
            msr::IA32_VMX_PROCBASED_CTLS => legacy(self.primary, PrimaryControls::DEFAULT1.bits()),
            msr::IA32_VMX_EXIT_CTLS => legacy(self.exit, ExitControls::DEFAULT1.bits()),
            msr::IA32_VMX_ENTRY_CTLS => legacy(self.entry, EntryControls::DEFAULT1.bits()),
            msr::IA32_VMX_MISC => self.misc.0,
            msr::IA32_VMX_CR0_FIXED0 => self.cr0_fixed.fixed0,
            msr::IA32_VMX_CR0_FIXED1 => self.cr0_fixed.fixed1,
            msr::IA32_VMX_CR4_FIXED0 => self.cr4_fixed.fixed0,
            msr::IA32_VMX_CR4_FIXED1 => self.cr4_fixed.fixed1,
            msr::IA32_VMX_VMCS_ENUM => self.vmcs_enum.0,
            msr::IA32_VMX_PROCBASED_CTLS2 if self.primary.supports(PrimaryControls::SECONDARY_CONTROLS.bits()) => {
                self.secondary.to_msr()
            }
            msr::IA32_VMX_EPT_VPID_CAP if self.ept_vpid.0 != 0 => self.ept_vpid.0,
            msr::IA32_VMX_TRUE_PINBASED_CTLS => self.pin_based.to_msr(),
            msr::IA32_VMX_TRUE_PROCBASED_CTLS => self.primary.to_msr(),
            msr::IA32_VMX_TRUE_EXIT_CTLS => self.exit.to_msr(),
            msr::IA32_VMX_TRUE_ENTRY_CTLS => self.entry.to_msr(),
            _ => return None,
        })
    }

    /// Every capability MSR L1 may read, as (MSR, value): the table the MSR
    /// policy takes (`MsrContext::vmx_capabilities`).
    pub fn msr_table(&self) -> ([(u32, u64); 17], usize) {
        let mut table = [(0, 0); 17];
        let mut count = 0;
        for index in msr::IA32_VMX_BASIC..=msr::IA32_VMX_TRUE_ENTRY_CTLS {
            if let Some(value) = self.msr(index) {
                table[count] = (index, value);
                count += 1;
            }
        }
        (table, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nested::test_support::skylake;

    #[test]
    fn basic_names_our_revision_a_page_and_write_back() {
        let caps = L1VmxCapabilities::from_host(&skylake(), 39);
        let basic = VmxBasic(caps.msr(0x480).unwrap());
        assert_eq!(basic.revision_id(), VMCS12_REVISION);
        assert_eq!(VMCS12_REVISION >> 31, 0);
        assert_eq!(basic.region_size(), 4096);
        assert_eq!(basic.vmcs_memory_type().encoding(), 6);
        assert!(basic.true_controls() && basic.ins_outs_info());
        assert!(!basic.dual_monitor_smm() && !basic.physical_address_width_32());
        assert!(!basic.exception_delivery_without_error_code());
    }

    #[test]
    fn controls_offer_only_what_is_emulated() {
        let caps = L1VmxCapabilities::from_host(&skylake(), 39);
        // Posted interrupts (bit 7) exist on the host but are not offered.
        assert_eq!(caps.msr(0x48d), Some(0x0000_007f_0000_0016));
        let primary = AllowedControls::from_msr(caps.msr(0x48e).unwrap());
        assert!(!primary.supports(PrimaryControls::TPR_SHADOW.bits()));
        assert!(!primary.supports(PrimaryControls::TERTIARY_CONTROLS.bits()));
        assert!(primary.supports(PrimaryControls::IO_BITMAPS.bits() | PrimaryControls::MSR_BITMAPS.bits()));
        // CR3-load/store exiting may be 0 in the true MSR (A.3.2).
        assert_eq!(primary.allowed0 & (3 << 15), 0);
        let secondary = AllowedControls::from_msr(caps.msr(0x48b).unwrap());
        assert!(secondary.supports(SecondaryControls::EPT.bits() | SecondaryControls::UNRESTRICTED_GUEST.bits()));
        assert!(!secondary.supports(SecondaryControls::VMCS_SHADOWING.bits()));
        assert!(!secondary.supports(SecondaryControls::ENABLE_VMFUNC.bits()));
        assert!(!secondary.supports(SecondaryControls::PML.bits()));
        assert!(!secondary.supports(SecondaryControls::VIRTUALIZE_APIC_ACCESSES.bits()));
        let entry = AllowedControls::from_msr(caps.msr(0x490).unwrap());
        assert!(!entry.supports(EntryControls::LOAD_PERF_GLOBAL_CTRL.bits()));
        assert!(entry.supports(EntryControls::LOAD_EFER.bits()));
        // VMFUNC's MSR does not exist for L1.
        assert_eq!(caps.msr(0x491), None);
        assert_eq!(caps.msr(0x492), None);
    }

    #[test]
    fn legacy_msrs_report_default1_bits_as_must_be_one() {
        let caps = L1VmxCapabilities::from_host(&skylake(), 39);
        let legacy = AllowedControls::from_msr(caps.msr(0x482).unwrap());
        // SDM A.2: bits 1, 4-6, 8, 13-16, 26 of the primary controls.
        assert_eq!(legacy.allowed0, 0x0401_e172);
        assert_eq!(AllowedControls::from_msr(caps.msr(0x483).unwrap()).allowed0, 0x0003_6dff);
        assert_eq!(AllowedControls::from_msr(caps.msr(0x484).unwrap()).allowed0, 0x0000_11ff);
    }

    #[test]
    fn misc_ept_and_enum_follow_appendix_a() {
        let caps = L1VmxCapabilities::from_host(&skylake(), 39);
        let misc = VmxMisc(caps.msr(0x485).unwrap());
        assert_eq!(misc.preemption_timer_rate(), 7);
        assert!(misc.stores_efer_lma() && misc.vmwrite_any_field());
        assert!(misc.activity_states().hlt && !misc.activity_states().shutdown);
        assert_eq!(misc.cr3_target_count(), 4);
        assert_eq!(misc.max_msr_list_entries(), 512);
        assert!(!misc.zero_length_injection());

        let ept = EptVpidCapabilities(caps.msr(0x48c).unwrap());
        assert!(ept.page_walk_4() && !ept.page_walk_5());
        assert!(ept.write_back() && ept.pages_2m() && ept.pages_1g() && ept.accessed_dirty());
        assert!(ept.invept() && ept.invept_single_context() && ept.invept_all_context());
        assert!(ept.invvpid() && ept.invvpid_individual_address() && ept.invvpid_all_context());
        assert!(ept.execute_only());
        assert!(!ept.advanced_violation_info());

        // The highest supported index is the preemption-timer value's, 0x17.
        assert_eq!(VmcsEnum(caps.msr(0x48a).unwrap()).highest_index(), 0x17);
        assert_eq!(caps.msr(0x486), Some(0x8000_0021));
        assert_eq!(caps.msr(0x488), Some(0x2000));
        assert_eq!(caps.msr_table().1, 17);
    }

    #[test]
    fn a_host_without_secondary_controls_offers_no_ept() {
        let mut host = skylake();
        host.primary.allowed1 &= !PrimaryControls::SECONDARY_CONTROLS.bits();
        host.secondary = AllowedControls::NONE;
        let caps = L1VmxCapabilities::from_host(&host, 36);
        assert_eq!(caps.msr(0x48b), None);
        assert_eq!(caps.msr(0x48c), None);
        assert!(!caps.primary.supports(PrimaryControls::SECONDARY_CONTROLS.bits()));
        assert!(caps.beyond_physical_width(1 << 36));
        assert!(!caps.beyond_physical_width((1 << 36) - 1));
    }
}
