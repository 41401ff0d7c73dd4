//! The VM-execution, VM-exit and VM-entry controls (SDM 25.6.1, 25.6.2,
//! 25.7.1, 25.8.1), and the capability MSRs that say which of them a CPU
//! allows (SDM appendix A.3–A.5).
//!
//! Each control group is a newtype over the 32-bit VMCS field with one
//! associated constant per bit. Each group's `NAMES` table pairs every
//! named bit's mask with a short kebab-case name, used by the capability
//! report and by logs.

use core::fmt;
use core::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign};

/// Declares a control group: the newtype, one constant per bit, and the name
/// table, all from one list so names and bits cannot drift apart.
macro_rules! control_group {
    (
        $(#[$group_doc:meta])*
        pub struct $group:ident;
        default1 = $default1:expr;
        $(
            $(#[$bit_doc:meta])*
            $bit_name:ident = $bit:literal, $short:literal;
        )*
    ) => {
        $(#[$group_doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $group(pub u32);

        impl $group {
            $(
                $(#[$bit_doc])*
                pub const $bit_name: Self = Self(1 << $bit);
            )*

            /// Every named bit's mask with its short name, in bit order.
            pub const NAMES: &'static [(u32, &'static str)] = &[$((1 << $bit, $short)),*];

            /// The "default1" bits (SDM A.2): reserved bits that must be 1
            /// when the CPU lacks the `IA32_VMX_TRUE_*` MSRs. The true MSRs
            /// tell which of them may be 0.
            pub const DEFAULT1: Self = Self($default1);

            /// No control set.
            pub const fn empty() -> Self {
                Self(0)
            }

            /// The raw field value.
            pub const fn bits(self) -> u32 {
                self.0
            }

            /// Whether every bit of `other` is set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// `self` with the bits of `other` added.
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// `self` with the bits of `other` removed.
            pub const fn without(self, other: Self) -> Self {
                Self(self.0 & !other.0)
            }

            /// The short name of a single-bit mask, if the bit is named.
            pub fn name_of(mask: u32) -> Option<&'static str> {
                Self::NAMES
                    .iter()
                    .find(|(named, _)| *named == mask)
                    .map(|(_, name)| *name)
            }

            /// The short names of the named bits that are set, in bit order.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::NAMES
                    .iter()
                    .filter(move |(mask, _)| self.0 & mask != 0)
                    .map(|(_, name)| *name)
            }
        }

        impl BitOr for $group {
            type Output = Self;
            fn bitor(self, other: Self) -> Self {
                self.union(other)
            }
        }

        impl BitOrAssign for $group {
            fn bitor_assign(&mut self, other: Self) {
                *self = self.union(other);
            }
        }

        impl BitAnd for $group {
            type Output = Self;
            fn bitand(self, other: Self) -> Self {
                Self(self.0 & other.0)
            }
        }

        impl BitAndAssign for $group {
            fn bitand_assign(&mut self, other: Self) {
                self.0 &= other.0;
            }
        }

        impl From<$group> for u32 {
            fn from(controls: $group) -> u32 {
                controls.0
            }
        }

        impl fmt::Debug for $group {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_names(f, stringify!($group), self.0, Self::NAMES)
            }
        }
    };
}

/// Formats `Group(name | name | 0xunnamed)`.
fn write_names(f: &mut fmt::Formatter<'_>, group: &str, bits: u32, names: &[(u32, &str)]) -> fmt::Result {
    write!(f, "{group}(")?;
    let mut unnamed = bits;
    let mut first = true;
    for (mask, name) in names {
        if bits & mask != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
            unnamed &= !mask;
            first = false;
        }
    }
    if unnamed != 0 {
        if !first {
            f.write_str(" | ")?;
        }
        write!(f, "{unnamed:#x}")?;
    }
    f.write_str(")")
}

control_group! {
    /// Pin-based VM-execution controls: how asynchronous events are handled
    /// (SDM 25.6.1, table 25-5; VMCS field `Control32::PinBasedControls`).
    pub struct PinBasedControls;
    default1 = 0x0000_0016;
    /// External interrupts cause VM exits instead of going through the guest IDT.
    EXTERNAL_INTERRUPT_EXITING = 0, "external-interrupt-exiting";
    /// NMIs cause VM exits.
    NMI_EXITING = 3, "nmi-exiting";
    /// NMIs are never blocked and virtual-NMI blocking is tracked instead.
    VIRTUAL_NMIS = 5, "virtual-nmis";
    /// The VMX-preemption timer counts down in VMX non-root operation and
    /// causes a VM exit at zero.
    PREEMPTION_TIMER = 6, "preemption-timer";
    /// Interrupts with the posted-interrupt notification vector are posted
    /// into the virtual-APIC page instead of exiting.
    POSTED_INTERRUPTS = 7, "posted-interrupts";
}

control_group! {
    /// Primary processor-based VM-execution controls: which instructions
    /// and events exit (SDM 25.6.2, table 25-6; VMCS field
    /// `Control32::PrimaryProcessorBasedControls`).
    pub struct PrimaryControls;
    default1 = 0x0401_e172;
    /// Exit at the start of any instruction once RFLAGS.IF = 1 and nothing
    /// blocks interrupts.
    INTERRUPT_WINDOW_EXITING = 2, "interrupt-window-exiting";
    /// RDTSC, RDTSCP and RDMSR of IA32_TIME_STAMP_COUNTER add the TSC offset.
    TSC_OFFSETTING = 3, "tsc-offsetting";
    /// HLT exits.
    HLT_EXITING = 7, "hlt-exiting";
    /// INVLPG exits.
    INVLPG_EXITING = 9, "invlpg-exiting";
    /// MWAIT exits.
    MWAIT_EXITING = 10, "mwait-exiting";
    /// RDPMC exits.
    RDPMC_EXITING = 11, "rdpmc-exiting";
    /// RDTSC and RDTSCP exit.
    RDTSC_EXITING = 12, "rdtsc-exiting";
    /// MOV to CR3 exits unless the value is one of the CR3-target values.
    CR3_LOAD_EXITING = 15, "cr3-load-exiting";
    /// MOV from CR3 exits.
    CR3_STORE_EXITING = 16, "cr3-store-exiting";
    /// The tertiary processor-based controls are used.
    TERTIARY_CONTROLS = 17, "tertiary-controls";
    /// MOV to CR8 exits.
    CR8_LOAD_EXITING = 19, "cr8-load-exiting";
    /// MOV from CR8 exits.
    CR8_STORE_EXITING = 20, "cr8-store-exiting";
    /// TPR virtualization through the virtual-APIC page.
    TPR_SHADOW = 21, "tpr-shadow";
    /// Exit at the start of any instruction once nothing blocks virtual NMIs.
    NMI_WINDOW_EXITING = 22, "nmi-window-exiting";
    /// MOV DR exits.
    MOV_DR_EXITING = 23, "mov-dr-exiting";
    /// Every I/O instruction exits (ignored when I/O bitmaps are used).
    UNCONDITIONAL_IO_EXITING = 24, "unconditional-io-exiting";
    /// The I/O bitmaps choose which ports exit.
    IO_BITMAPS = 25, "io-bitmaps";
    /// Monitor trap flag: exit after each guest instruction.
    MONITOR_TRAP_FLAG = 27, "monitor-trap-flag";
    /// The MSR bitmaps choose which RDMSR/WRMSR exit.
    MSR_BITMAPS = 28, "msr-bitmaps";
    /// MONITOR exits.
    MONITOR_EXITING = 29, "monitor-exiting";
    /// PAUSE exits.
    PAUSE_EXITING = 30, "pause-exiting";
    /// The secondary processor-based controls are used.
    SECONDARY_CONTROLS = 31, "secondary-controls";
}

control_group! {
    /// Secondary processor-based VM-execution controls, used when
    /// [`PrimaryControls::SECONDARY_CONTROLS`] is set (SDM 25.6.2,
    /// table 25-7; VMCS field `Control32::SecondaryProcessorBasedControls`).
    pub struct SecondaryControls;
    default1 = 0;
    /// Accesses to the APIC-access page are virtualized.
    VIRTUALIZE_APIC_ACCESSES = 0, "virtualize-apic-accesses";
    /// Extended page tables translate guest-physical addresses.
    EPT = 1, "ept";
    /// LGDT, LIDT, LLDT, LTR, SGDT, SIDT, SLDT and STR exit.
    DESCRIPTOR_TABLE_EXITING = 2, "descriptor-table-exiting";
    /// RDTSCP does not raise #UD.
    RDTSCP = 3, "rdtscp";
    /// x2APIC MSR accesses are virtualized.
    VIRTUALIZE_X2APIC_MODE = 4, "virtualize-x2apic-mode";
    /// Linear-address translations are cached per virtual-processor id.
    VPID = 5, "vpid";
    /// WBINVD and WBNOINVD exit.
    WBINVD_EXITING = 6, "wbinvd-exiting";
    /// The guest may run with paging off or in real mode (needs EPT).
    UNRESTRICTED_GUEST = 7, "unrestricted-guest";
    /// Reads of APIC registers are satisfied from the virtual-APIC page.
    APIC_REGISTER_VIRTUALIZATION = 8, "apic-register-virtualization";
    /// Pending virtual interrupts are evaluated and delivered by the CPU.
    VIRTUAL_INTERRUPT_DELIVERY = 9, "virtual-interrupt-delivery";
    /// A PAUSE loop at CPL 0 longer than PLE_Window exits.
    PAUSE_LOOP_EXITING = 10, "pause-loop-exiting";
    /// RDRAND exits.
    RDRAND_EXITING = 11, "rdrand-exiting";
    /// INVPCID does not raise #UD.
    INVPCID = 12, "invpcid";
    /// VMFUNC does not raise #UD.
    ENABLE_VMFUNC = 13, "enable-vmfunc";
    /// VMREAD and VMWRITE in the guest access a shadow VMCS.
    VMCS_SHADOWING = 14, "vmcs-shadowing";
    /// ENCLS leaves selected by the ENCLS-exiting bitmap exit.
    ENCLS_EXITING = 15, "encls-exiting";
    /// RDSEED exits.
    RDSEED_EXITING = 16, "rdseed-exiting";
    /// Page-modification logging of guest-physical writes.
    PML = 17, "pml";
    /// Some EPT violations raise #VE in the guest instead of exiting.
    EPT_VIOLATION_VE = 18, "ept-violation-ve";
    /// Intel PT hides that the guest runs in VMX non-root operation.
    CONCEAL_VMX_FROM_PT = 19, "conceal-vmx-from-pt";
    /// XSAVES and XRSTORS do not raise #UD.
    XSAVES = 20, "xsaves";
    /// ENQCMD and ENQCMDS translate PASIDs.
    PASID_TRANSLATION = 21, "pasid-translation";
    /// EPT execute permission is split into supervisor and user mode.
    MODE_BASED_EXECUTE = 22, "mode-based-execute";
    /// EPT write permission can be given per 128-byte sub-page.
    SUB_PAGE_WRITE_PERMISSIONS = 23, "sub-page-write-permissions";
    /// Intel PT output addresses are guest-physical and go through EPT.
    PT_USES_GUEST_PHYSICAL = 24, "pt-uses-guest-physical";
    /// RDTSC, RDTSCP and RDMSR of the TSC apply the TSC multiplier.
    TSC_SCALING = 25, "tsc-scaling";
    /// TPAUSE, UMONITOR and UMWAIT do not raise #UD.
    USER_WAIT_AND_PAUSE = 26, "user-wait-and-pause";
    /// PCONFIG does not raise #UD.
    PCONFIG = 27, "pconfig";
    /// ENCLV leaves selected by the ENCLV-exiting bitmap exit.
    ENCLV_EXITING = 28, "enclv-exiting";
    /// A bus lock in the guest causes a VM exit.
    BUS_LOCK_DETECTION = 30, "bus-lock-detection";
    /// Exit when an instruction runs for longer than the timeout.
    INSTRUCTION_TIMEOUT = 31, "instruction-timeout";
}

control_group! {
    /// Primary VM-exit controls: what a VM exit saves and loads (SDM 25.7.1,
    /// table 25-13; VMCS field `Control32::ExitControls`).
    pub struct ExitControls;
    default1 = 0x0003_6dff;
    /// DR7 and IA32_DEBUGCTL are saved into the guest-state area.
    SAVE_DEBUG_CONTROLS = 2, "save-debug-controls";
    /// The host runs in 64-bit mode after the exit (sets EFER.LMA/LME, CS.L).
    HOST_ADDRESS_SPACE_SIZE = 9, "host-address-space-size";
    /// IA32_PERF_GLOBAL_CTRL is loaded from the host-state area.
    LOAD_PERF_GLOBAL_CTRL = 12, "load-perf-global-ctrl";
    /// An exit caused by an external interrupt acknowledges it and stores
    /// its vector in the exit interruption information.
    ACKNOWLEDGE_INTERRUPT_ON_EXIT = 15, "acknowledge-interrupt-on-exit";
    /// IA32_PAT is saved into the guest-state area.
    SAVE_PAT = 18, "save-pat";
    /// IA32_PAT is loaded from the host-state area.
    LOAD_PAT = 19, "load-pat";
    /// IA32_EFER is saved into the guest-state area.
    SAVE_EFER = 20, "save-efer";
    /// IA32_EFER is loaded from the host-state area.
    LOAD_EFER = 21, "load-efer";
    /// The VMX-preemption timer value is saved.
    SAVE_PREEMPTION_TIMER = 22, "save-preemption-timer";
    /// IA32_BNDCFGS is cleared.
    CLEAR_BNDCFGS = 23, "clear-bndcfgs";
    /// Intel PT hides the VM exit.
    CONCEAL_VMX_FROM_PT = 24, "conceal-vmx-from-pt";
    /// IA32_RTIT_CTL is cleared.
    CLEAR_RTIT_CTL = 25, "clear-rtit-ctl";
    /// IA32_LBR_CTL is cleared.
    CLEAR_LBR_CTL = 26, "clear-lbr-ctl";
    /// UINV is cleared.
    CLEAR_UINV = 27, "clear-uinv";
    /// CET state is loaded from the host-state area.
    LOAD_CET_STATE = 28, "load-cet-state";
    /// IA32_PKRS is loaded from the host-state area.
    LOAD_PKRS = 29, "load-pkrs";
    /// IA32_PERF_GLOBAL_CTRL is saved into the guest-state area.
    SAVE_PERF_GLOBAL_CTRL = 30, "save-perf-global-ctrl";
    /// The secondary VM-exit controls are used.
    SECONDARY_EXIT_CONTROLS = 31, "secondary-exit-controls";
}

control_group! {
    /// VM-entry controls: what a VM entry loads (SDM 25.8.1, table 25-15;
    /// VMCS field `Control32::EntryControls`).
    pub struct EntryControls;
    default1 = 0x0000_11ff;
    /// DR7 and IA32_DEBUGCTL are loaded from the guest-state area.
    LOAD_DEBUG_CONTROLS = 2, "load-debug-controls";
    /// The guest runs in IA-32e mode (EFER.LMA = 1 after entry).
    IA32E_MODE_GUEST = 9, "ia32e-mode-guest";
    /// The entry goes into SMM (dual-monitor treatment only).
    ENTRY_TO_SMM = 10, "entry-to-smm";
    /// The dual-monitor treatment of SMIs ends after the entry.
    DEACTIVATE_DUAL_MONITOR = 11, "deactivate-dual-monitor";
    /// IA32_PERF_GLOBAL_CTRL is loaded from the guest-state area.
    LOAD_PERF_GLOBAL_CTRL = 13, "load-perf-global-ctrl";
    /// IA32_PAT is loaded from the guest-state area.
    LOAD_PAT = 14, "load-pat";
    /// IA32_EFER is loaded from the guest-state area.
    LOAD_EFER = 15, "load-efer";
    /// IA32_BNDCFGS is loaded from the guest-state area.
    LOAD_BNDCFGS = 16, "load-bndcfgs";
    /// Intel PT hides the VM entry.
    CONCEAL_VMX_FROM_PT = 17, "conceal-vmx-from-pt";
    /// IA32_RTIT_CTL is loaded from the guest-state area.
    LOAD_RTIT_CTL = 18, "load-rtit-ctl";
    /// UINV is loaded from the guest-state area.
    LOAD_UINV = 19, "load-uinv";
    /// CET state is loaded from the guest-state area.
    LOAD_CET_STATE = 20, "load-cet-state";
    /// IA32_LBR_CTL is loaded from the guest-state area.
    LOAD_LBR_CTL = 21, "load-lbr-ctl";
    /// IA32_PKRS is loaded from the guest-state area.
    LOAD_PKRS = 22, "load-pkrs";
    /// FRED state is loaded from the guest-state area.
    LOAD_FRED = 23, "load-fred";
}

/// The allowed settings of one control group, decoded from its capability
/// MSR (SDM A.3–A.5).
///
/// The low 32 bits of the MSR are the allowed 0-settings: a bit set there
/// must be 1 in the control field. The high 32 bits are the allowed
/// 1-settings: a bit clear there must be 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowedControls {
    /// Bits that must be 1 (the MSR's bits 31:0).
    pub allowed0: u32,
    /// Bits that may be 1 (the MSR's bits 63:32).
    pub allowed1: u32,
}

impl AllowedControls {
    /// A group in which nothing may be set, e.g. the secondary controls of
    /// a CPU without them.
    pub const NONE: Self = Self { allowed0: 0, allowed1: 0 };

    /// Decodes a capability MSR value.
    pub const fn from_msr(value: u64) -> Self {
        Self { allowed0: value as u32, allowed1: (value >> 32) as u32 }
    }

    /// Encodes back into the MSR layout, e.g. to show a guest hypervisor
    /// the controls its emulated VMX offers.
    pub const fn to_msr(self) -> u64 {
        ((self.allowed1 as u64) << 32) | self.allowed0 as u64
    }

    /// Whether every bit of `bits` may be 1.
    pub const fn supports(self, bits: u32) -> bool {
        bits & !self.allowed1 == 0
    }

    /// Whether `value` is a valid setting of the whole field: every
    /// must-be-one bit set and no bit that must be 0.
    pub const fn is_valid(self, value: u32) -> bool {
        value & self.allowed0 == self.allowed0 && self.supports(value)
    }

    /// The control field for `wanted`: the wanted bits plus the bits the CPU
    /// forces to 1. Fails with the wanted bits the CPU cannot set.
    pub const fn adjust(self, wanted: u32) -> Result<u32, u32> {
        let unsupported = wanted & !self.allowed1;
        if unsupported != 0 {
            Err(unsupported)
        } else {
            Ok(wanted | self.allowed0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::vec::Vec;

    /// Every group's `NAMES` table is in bit order with one bit per entry
    /// and no name used twice.
    fn assert_well_formed(names: &[(u32, &str)]) {
        let mut previous = 0u32;
        for (mask, name) in names {
            assert_eq!(mask.count_ones(), 1, "{name} must name exactly one bit");
            assert!(*mask > previous, "{name} is out of bit order");
            previous = *mask;
            assert!(!name.is_empty() && !name.contains(' '), "{name:?}");
        }
        let mut sorted: Vec<&str> = names.iter().map(|(_, name)| *name).collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate name");
    }

    #[test]
    fn name_tables_are_well_formed() {
        assert_well_formed(PinBasedControls::NAMES);
        assert_well_formed(PrimaryControls::NAMES);
        assert_well_formed(SecondaryControls::NAMES);
        assert_well_formed(ExitControls::NAMES);
        assert_well_formed(EntryControls::NAMES);
    }

    #[test]
    fn pin_based_bits_match_table_25_5() {
        assert_eq!(PinBasedControls::EXTERNAL_INTERRUPT_EXITING.bits(), 0x01);
        assert_eq!(PinBasedControls::NMI_EXITING.bits(), 0x08);
        assert_eq!(PinBasedControls::VIRTUAL_NMIS.bits(), 0x20);
        assert_eq!(PinBasedControls::PREEMPTION_TIMER.bits(), 0x40);
        assert_eq!(PinBasedControls::POSTED_INTERRUPTS.bits(), 0x80);
        assert_eq!(PinBasedControls::NAMES.len(), 5);
    }

    #[test]
    fn primary_bits_match_table_25_6() {
        assert_eq!(PrimaryControls::INTERRUPT_WINDOW_EXITING.bits(), 1 << 2);
        assert_eq!(PrimaryControls::HLT_EXITING.bits(), 1 << 7);
        assert_eq!(PrimaryControls::CR3_LOAD_EXITING.bits(), 1 << 15);
        assert_eq!(PrimaryControls::TERTIARY_CONTROLS.bits(), 1 << 17);
        assert_eq!(PrimaryControls::TPR_SHADOW.bits(), 1 << 21);
        assert_eq!(PrimaryControls::NMI_WINDOW_EXITING.bits(), 1 << 22);
        assert_eq!(PrimaryControls::IO_BITMAPS.bits(), 1 << 25);
        assert_eq!(PrimaryControls::MONITOR_TRAP_FLAG.bits(), 1 << 27);
        assert_eq!(PrimaryControls::MSR_BITMAPS.bits(), 1 << 28);
        assert_eq!(PrimaryControls::SECONDARY_CONTROLS.bits(), 0x8000_0000);
        assert_eq!(PrimaryControls::NAMES.len(), 22);
    }

    #[test]
    fn secondary_bits_match_table_25_7() {
        assert_eq!(SecondaryControls::EPT.bits(), 1 << 1);
        assert_eq!(SecondaryControls::VPID.bits(), 1 << 5);
        assert_eq!(SecondaryControls::UNRESTRICTED_GUEST.bits(), 1 << 7);
        assert_eq!(SecondaryControls::ENABLE_VMFUNC.bits(), 1 << 13);
        assert_eq!(SecondaryControls::VMCS_SHADOWING.bits(), 1 << 14);
        assert_eq!(SecondaryControls::PML.bits(), 1 << 17);
        assert_eq!(SecondaryControls::EPT_VIOLATION_VE.bits(), 1 << 18);
        assert_eq!(SecondaryControls::XSAVES.bits(), 1 << 20);
        assert_eq!(SecondaryControls::MODE_BASED_EXECUTE.bits(), 1 << 22);
        assert_eq!(SecondaryControls::TSC_SCALING.bits(), 1 << 25);
        // Bit 29 is the only reserved bit of the secondary controls.
        let named: u32 = SecondaryControls::NAMES.iter().map(|(m, _)| m).sum();
        assert_eq!(named, !(1 << 29));
    }

    #[test]
    fn exit_and_entry_bits_match_tables_25_13_and_25_15() {
        assert_eq!(ExitControls::HOST_ADDRESS_SPACE_SIZE.bits(), 0x0000_0200);
        assert_eq!(ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT.bits(), 0x8000);
        assert_eq!(ExitControls::SAVE_EFER.bits(), 0x0010_0000);
        assert_eq!(ExitControls::LOAD_EFER.bits(), 0x0020_0000);
        assert_eq!(ExitControls::SAVE_PREEMPTION_TIMER.bits(), 0x0040_0000);
        assert_eq!(EntryControls::IA32E_MODE_GUEST.bits(), 0x0000_0200);
        assert_eq!(EntryControls::LOAD_PAT.bits(), 0x0000_4000);
        assert_eq!(EntryControls::LOAD_EFER.bits(), 0x0000_8000);
    }

    #[test]
    fn default1_bits_are_the_reserved_bits_of_appendix_a2() {
        // Pin-based 1, 2, 4; primary 1, 4-6, 8, 13-16, 26; exit 0-8, 10, 11,
        // 13, 14, 16, 17; entry 0-8, 12.
        let bits = |list: &[u32]| list.iter().fold(0u32, |acc, bit| acc | 1 << bit);
        assert_eq!(PinBasedControls::DEFAULT1.bits(), bits(&[1, 2, 4]));
        assert_eq!(PrimaryControls::DEFAULT1.bits(), bits(&[1, 4, 5, 6, 8, 13, 14, 15, 16, 26]));
        assert_eq!(ExitControls::DEFAULT1.bits(), bits(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 16, 17]));
        assert_eq!(EntryControls::DEFAULT1.bits(), bits(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 12]));
    }

    #[test]
    fn names_and_debug_list_the_set_bits() {
        let controls = PinBasedControls::NMI_EXITING | PinBasedControls::VIRTUAL_NMIS;
        let names: Vec<&str> = controls.names().collect();
        assert_eq!(names, ["nmi-exiting", "virtual-nmis"]);
        assert_eq!(
            format!("{:?}", controls | PinBasedControls(0x16)),
            "PinBasedControls(nmi-exiting | virtual-nmis | 0x16)"
        );
        assert_eq!(format!("{:?}", PinBasedControls::empty()), "PinBasedControls()");
        assert_eq!(SecondaryControls::name_of(1 << 1), Some("ept"));
        assert_eq!(SecondaryControls::name_of(1 << 29), None);
    }

    #[test]
    fn set_operations() {
        let both = EntryControls::LOAD_EFER | EntryControls::IA32E_MODE_GUEST;
        assert!(both.contains(EntryControls::LOAD_EFER));
        assert!(!EntryControls::LOAD_EFER.contains(both));
        assert_eq!(both.without(EntryControls::LOAD_EFER), EntryControls::IA32E_MODE_GUEST);
        assert_eq!(both & EntryControls::LOAD_EFER, EntryControls::LOAD_EFER);
        let mut grown = EntryControls::empty();
        grown |= EntryControls::LOAD_PAT;
        grown &= both.union(EntryControls::LOAD_PAT);
        assert_eq!(u32::from(grown), EntryControls::LOAD_PAT.bits());
    }

    #[test]
    fn allowed_controls_split_the_msr_in_halves() {
        // A typical IA32_VMX_TRUE_PINBASED_CTLS: must-be-one 0x16, may-be-one 0xff.
        let allowed = AllowedControls::from_msr(0x0000_00ff_0000_0016);
        assert_eq!(allowed.allowed0, 0x16);
        assert_eq!(allowed.allowed1, 0xff);
        assert_eq!(allowed.to_msr(), 0x0000_00ff_0000_0016);
    }

    #[test]
    fn adjust_forces_must_be_one_bits_and_reports_unsupported_ones() {
        let allowed = AllowedControls::from_msr(0x0000_007f_0000_0016);
        let wanted = PinBasedControls::EXTERNAL_INTERRUPT_EXITING | PinBasedControls::NMI_EXITING;
        assert_eq!(allowed.adjust(wanted.bits()), Ok(0x16 | 0x09));
        assert_eq!(
            allowed.adjust((wanted | PinBasedControls::POSTED_INTERRUPTS).bits()),
            Err(PinBasedControls::POSTED_INTERRUPTS.bits())
        );
        assert!(allowed.supports(PinBasedControls::PREEMPTION_TIMER.bits()));
        assert!(!allowed.supports(PinBasedControls::POSTED_INTERRUPTS.bits()));
        assert!(AllowedControls::NONE.supports(0));
        assert!(!AllowedControls::NONE.supports(1));
    }

    #[test]
    fn is_valid_needs_must_be_one_bits_and_no_forbidden_ones() {
        let allowed = AllowedControls::from_msr(0x0000_007f_0000_0016);
        assert!(allowed.is_valid(0x16));
        assert!(!allowed.is_valid(0x06));
        assert!(!allowed.is_valid(0x96));
    }

    proptest! {
        #[test]
        fn adjust_yields_valid_settings_or_exactly_the_unsupported_bits(
            must in any::<u32>(), may in any::<u32>(), wanted in any::<u32>()
        ) {
            // Real MSRs never demand a bit they do not allow.
            let allowed = AllowedControls { allowed0: must & may, allowed1: may };
            match allowed.adjust(wanted) {
                Ok(value) => {
                    prop_assert!(allowed.is_valid(value));
                    prop_assert_eq!(value & wanted, wanted);
                }
                Err(unsupported) => {
                    prop_assert_eq!(unsupported, wanted & !may);
                    prop_assert_ne!(unsupported, 0);
                }
            }
        }

        #[test]
        fn msr_round_trips(value in any::<u64>()) {
            prop_assert_eq!(AllowedControls::from_msr(value).to_msr(), value);
        }
    }
}
