//! The boot-time capability report: one log line per topic, listing what
//! the CPU offers and, in parentheses, the named features it lacks.
//!
//! The report of a CPU that lacks a required feature is what a user attaches
//! to a bug report, so every named bit appears, either as available or as
//! missing, and nothing is left out for being uninteresting.

use core::fmt;

use super::{EptVpidCapabilities, VmxCapabilities, VmxMisc};
use crate::controls::{
    AllowedControls, EntryControls, ExitControls, PinBasedControls, PrimaryControls, SecondaryControls,
};

/// One line of the capability report, without a trailing newline.
#[derive(Clone, Copy, Debug)]
pub struct ReportLine<'a> {
    capabilities: &'a VmxCapabilities,
    topic: Topic,
}

/// What a report line is about, in report order.
#[derive(Clone, Copy, Debug)]
enum Topic {
    Vmcs,
    PinBased,
    Primary,
    Secondary,
    Exit,
    Entry,
    Ept,
    Vpid,
    VmFunctions,
    Misc,
    FixedBits,
    Verdict,
}

const TOPICS: [Topic; 12] = [
    Topic::Vmcs,
    Topic::PinBased,
    Topic::Primary,
    Topic::Secondary,
    Topic::Exit,
    Topic::Entry,
    Topic::Ept,
    Topic::Vpid,
    Topic::VmFunctions,
    Topic::Misc,
    Topic::FixedBits,
    Topic::Verdict,
];

/// EPT features in report order; the INVEPT types are written inside
/// `invept(...)` and are therefore listed apart.
const EPT_FEATURES: [(u64, &str); 9] = [
    (EptVpidCapabilities::PAGE_WALK_4, "4-level"),
    (EptVpidCapabilities::PAGE_WALK_5, "5-level"),
    (EptVpidCapabilities::UNCACHEABLE, "uncacheable"),
    (EptVpidCapabilities::WRITE_BACK, "write-back"),
    (EptVpidCapabilities::PAGES_2M, "2M"),
    (EptVpidCapabilities::PAGES_1G, "1G"),
    (EptVpidCapabilities::ACCESSED_DIRTY, "accessed-dirty"),
    (EptVpidCapabilities::ADVANCED_VIOLATION_INFO, "advanced-violation-info"),
    (EptVpidCapabilities::SUPERVISOR_SHADOW_STACK, "supervisor-shadow-stack"),
];

/// INVEPT types: mask, name inside `invept(...)`, name when missing.
const INVEPT_TYPES: [(u64, &str, &str); 2] = [
    (EptVpidCapabilities::INVEPT_SINGLE_CONTEXT, "single-context", "invept-single-context"),
    (EptVpidCapabilities::INVEPT_ALL_CONTEXT, "all-context", "invept-all-context"),
];

/// INVVPID types: mask, name inside `invvpid(...)`, name when missing.
const INVVPID_TYPES: [(u64, &str, &str); 4] = [
    (EptVpidCapabilities::INVVPID_INDIVIDUAL_ADDRESS, "individual-address", "invvpid-individual-address"),
    (EptVpidCapabilities::INVVPID_SINGLE_CONTEXT, "single-context", "invvpid-single-context"),
    (EptVpidCapabilities::INVVPID_ALL_CONTEXT, "all-context", "invvpid-all-context"),
    (
        EptVpidCapabilities::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS,
        "single-context-retaining-globals",
        "invvpid-single-context-retaining-globals",
    ),
];

const MISC_FEATURES: [(u64, &str); 6] = [
    (VmxMisc::STORES_EFER_LMA, "stores-efer-lma"),
    (VmxMisc::INTEL_PT_IN_VMX, "intel-pt"),
    (VmxMisc::RDMSR_SMBASE_IN_SMM, "rdmsr-smbase"),
    (VmxMisc::SMM_MONITOR_CTL_BIT2, "vmxoff-unblocks-smis"),
    (VmxMisc::VMWRITE_ANY_FIELD, "vmwrite-any-field"),
    (VmxMisc::ZERO_LENGTH_INJECTION, "zero-length-injection"),
];

/// VM function 0, the only one the SDM defines.
const VM_FUNCTIONS: [(u64, &str); 1] = [(1 << 0, "eptp-switching")];

impl VmxCapabilities {
    /// The capability report, one [`ReportLine`] per log line:
    ///
    /// ```text
    /// VMCS revision 0x00000004, region 1024 bytes, write-back, true controls, ins-outs-info, highest field index 23
    /// pin-based: external-interrupt-exiting nmi-exiting virtual-nmis preemption-timer (missing: posted-interrupts)
    /// primary: interrupt-window-exiting tsc-offsetting ... (missing: tertiary-controls)
    /// secondary: virtualize-apic-accesses ept ... (missing: ...)
    /// exit: ...
    /// entry: ...
    /// ept: 4-level uncacheable write-back 2M 1G accessed-dirty advanced-violation-info invept(single-context, all-context) execute-only (missing: 5-level supervisor-shadow-stack)
    /// vpid: invvpid(individual-address, single-context, all-context, single-context-retaining-globals)
    /// vmfunc: eptp-switching
    /// misc: preemption timer ticks every 2^7 TSC cycles, 4 CR3 targets, MSR lists of up to 512, stores-efer-lma ..., activity states: hlt shutdown wait-for-sipi
    /// fixed: cr0 must be 1 0x80000021, may be 1 0xffffffff; cr4 must be 1 0x2000, may be 1 0x3727ff
    /// requirements: met; optional vmcs-shadowing: available
    /// ```
    pub fn report(&self) -> impl Iterator<Item = ReportLine<'_>> {
        TOPICS.into_iter().map(move |topic| ReportLine { capabilities: self, topic })
    }
}

impl fmt::Display for ReportLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let capabilities = self.capabilities;
        match self.topic {
            Topic::Vmcs => write_vmcs(f, capabilities),
            Topic::PinBased => {
                f.write_str("pin-based:")?;
                write_controls(f, capabilities.pin_based, PinBasedControls::NAMES)
            }
            Topic::Primary => {
                f.write_str("primary:")?;
                write_controls(f, capabilities.primary, PrimaryControls::NAMES)
            }
            Topic::Secondary => {
                f.write_str("secondary:")?;
                if capabilities.has_secondary_controls() {
                    write_controls(f, capabilities.secondary, SecondaryControls::NAMES)
                } else {
                    f.write_str(" unavailable")
                }
            }
            Topic::Exit => {
                f.write_str("exit:")?;
                write_controls(f, capabilities.exit, ExitControls::NAMES)
            }
            Topic::Entry => {
                f.write_str("entry:")?;
                write_controls(f, capabilities.entry, EntryControls::NAMES)
            }
            Topic::Ept => write_ept(f, capabilities),
            Topic::Vpid => write_vpid(f, capabilities),
            Topic::VmFunctions => {
                f.write_str("vmfunc:")?;
                if capabilities.has_secondary_controls()
                    && capabilities.secondary.supports(SecondaryControls::ENABLE_VMFUNC.bits())
                {
                    write_present(f, entries(capabilities.vmfunc, &VM_FUNCTIONS))?;
                    write_missing(f, entries(capabilities.vmfunc, &VM_FUNCTIONS))
                } else {
                    f.write_str(" unavailable")
                }
            }
            Topic::Misc => write_misc(f, capabilities.misc),
            Topic::FixedBits => write!(
                f,
                "fixed: cr0 must be 1 {:#x}, may be 1 {:#x}; cr4 must be 1 {:#x}, may be 1 {:#x}",
                capabilities.cr0_fixed.fixed0,
                capabilities.cr0_fixed.fixed1,
                capabilities.cr4_fixed.fixed0,
                capabilities.cr4_fixed.fixed1,
            ),
            Topic::Verdict => write_verdict(f, capabilities),
        }
    }
}

fn write_vmcs(f: &mut fmt::Formatter<'_>, capabilities: &VmxCapabilities) -> fmt::Result {
    let basic = capabilities.basic;
    write!(
        f,
        "VMCS revision {:#010x}, region {} bytes, {}",
        basic.revision_id(),
        basic.region_size(),
        basic.vmcs_memory_type().name(),
    )?;
    let flags = [
        (basic.true_controls(), "true controls"),
        (basic.ins_outs_info(), "ins-outs-info"),
        (basic.exception_delivery_without_error_code(), "exceptions-without-error-code"),
        (basic.dual_monitor_smm(), "dual-monitor-smm"),
        (basic.physical_address_width_32(), "32-bit physical addresses"),
    ];
    for (_, name) in flags.iter().filter(|(present, _)| *present) {
        write!(f, ", {name}")?;
    }
    write!(f, ", highest field index {}", capabilities.vmcs_enum.highest_index())
}

/// Writes ` name name ... (missing: name ...)` for a control group.
fn write_controls(f: &mut fmt::Formatter<'_>, allowed: AllowedControls, names: &[(u32, &str)]) -> fmt::Result {
    let entries = names.iter().map(|(mask, name)| (allowed.allowed1 & mask != 0, *name));
    write_present(f, entries.clone())?;
    write_missing(f, entries)
}

/// `(present, name)` for each named bit of a 64-bit capability.
fn entries<'n>(bits: u64, names: &'n [(u64, &'n str)]) -> impl Iterator<Item = (bool, &'n str)> + Clone + 'n {
    names.iter().map(move |(mask, name)| (bits & mask != 0, *name))
}

/// Writes ` name` for each present entry.
fn write_present<'n>(f: &mut fmt::Formatter<'_>, entries: impl Iterator<Item = (bool, &'n str)>) -> fmt::Result {
    for (_, name) in entries.filter(|(present, _)| *present) {
        write!(f, " {name}")?;
    }
    Ok(())
}

/// Writes ` (missing: name ...)` for the absent entries, or nothing when
/// none is absent.
fn write_missing<'n>(f: &mut fmt::Formatter<'_>, entries: impl Iterator<Item = (bool, &'n str)>) -> fmt::Result {
    let mut missing = entries.filter(|(present, _)| !present).peekable();
    if missing.peek().is_none() {
        return Ok(());
    }
    f.write_str(" (missing:")?;
    for (_, name) in missing {
        write!(f, " {name}")?;
    }
    f.write_str(")")
}

/// Writes ` instruction(type, type)` listing the supported types.
fn write_instruction_types(
    f: &mut fmt::Formatter<'_>,
    instruction: &str,
    bits: u64,
    types: &[(u64, &str, &str)],
) -> fmt::Result {
    write!(f, " {instruction}(")?;
    let supported = types.iter().filter(|(mask, _, _)| bits & mask != 0);
    for (index, (_, name, _)) in supported.enumerate() {
        if index > 0 {
            f.write_str(", ")?;
        }
        f.write_str(name)?;
    }
    f.write_str(")")
}

/// `(present, long name)` for each INVEPT or INVVPID type.
fn type_entries<'n>(
    bits: u64,
    types: &'n [(u64, &'n str, &'n str)],
) -> impl Iterator<Item = (bool, &'n str)> + Clone + 'n {
    types.iter().map(move |(mask, _, long_name)| (bits & mask != 0, *long_name))
}

fn write_ept(f: &mut fmt::Formatter<'_>, capabilities: &VmxCapabilities) -> fmt::Result {
    f.write_str("ept:")?;
    if !capabilities.has_secondary_controls() || !capabilities.secondary.supports(SecondaryControls::EPT.bits()) {
        return f.write_str(" unavailable");
    }
    let caps = capabilities.ept_vpid;
    write_present(f, entries(caps.0, &EPT_FEATURES))?;
    if caps.invept() {
        write_instruction_types(f, "invept", caps.0, &INVEPT_TYPES)?;
    }
    if caps.execute_only() {
        f.write_str(" execute-only")?;
    }
    let all = entries(caps.0, &EPT_FEATURES)
        .chain([(caps.invept(), "invept")])
        .chain(type_entries(caps.0, &INVEPT_TYPES))
        .chain([(caps.execute_only(), "execute-only")]);
    write_missing(f, all)
}

fn write_vpid(f: &mut fmt::Formatter<'_>, capabilities: &VmxCapabilities) -> fmt::Result {
    f.write_str("vpid:")?;
    if !capabilities.has_secondary_controls() || !capabilities.secondary.supports(SecondaryControls::VPID.bits()) {
        return f.write_str(" unavailable");
    }
    let caps = capabilities.ept_vpid;
    if caps.invvpid() {
        write_instruction_types(f, "invvpid", caps.0, &INVVPID_TYPES)?;
    }
    let all = [(caps.invvpid(), "invvpid")].into_iter().chain(type_entries(caps.0, &INVVPID_TYPES));
    write_missing(f, all)
}

fn write_misc(f: &mut fmt::Formatter<'_>, misc: VmxMisc) -> fmt::Result {
    write!(
        f,
        "misc: preemption timer ticks every 2^{} TSC cycles, {} CR3 targets, MSR lists of up to {}",
        misc.preemption_timer_rate(),
        misc.cr3_target_count(),
        misc.max_msr_list_entries(),
    )?;
    for (_, name) in entries(misc.0, &MISC_FEATURES).filter(|(present, _)| *present) {
        write!(f, ", {name}")?;
    }
    f.write_str(", activity states:")?;
    let states = misc.activity_states();
    let named = [(states.hlt, "hlt"), (states.shutdown, "shutdown"), (states.wait_for_sipi, "wait-for-sipi")];
    if named.iter().all(|(present, _)| !present) {
        f.write_str(" active only")?;
    }
    for (_, name) in named.iter().filter(|(present, _)| *present) {
        write!(f, " {name}")?;
    }
    write_missing(f, entries(misc.0, &MISC_FEATURES))
}

fn write_verdict(f: &mut fmt::Formatter<'_>, capabilities: &VmxCapabilities) -> fmt::Result {
    f.write_str("requirements:")?;
    let mut missing = capabilities.missing_requirements().peekable();
    if missing.peek().is_none() {
        f.write_str(" met")?;
    } else {
        f.write_str(" missing")?;
        let mut first = true;
        for feature in missing {
            f.write_str(if first { " " } else { ", " })?;
            f.write_str(feature.feature())?;
            first = false;
        }
    }
    let shadowing =
        if capabilities.has_vmcs_shadowing() { "available" } else { "unavailable, guest VMREAD/VMWRITE will exit" };
    write!(f, "; optional vmcs-shadowing: {shadowing}")
}

#[cfg(test)]
mod tests {
    use super::super::tests::skylake_msrs;
    use super::*;
    use std::string::{String, ToString};
    use std::vec::Vec;

    fn report_of(capabilities: &VmxCapabilities) -> Vec<String> {
        capabilities.report().map(|line| line.to_string()).collect()
    }

    fn skylake() -> VmxCapabilities {
        let msrs = skylake_msrs();
        VmxCapabilities::read(|index| msrs[&index])
    }

    #[test]
    fn report_of_a_complete_cpu() {
        let lines = report_of(&skylake());
        let expected = [
            "VMCS revision 0x00000004, region 1024 bytes, write-back, true controls, \
             ins-outs-info, dual-monitor-smm, highest field index 23",
            "pin-based: external-interrupt-exiting nmi-exiting virtual-nmis preemption-timer \
             (missing: posted-interrupts)",
            "primary: interrupt-window-exiting tsc-offsetting hlt-exiting invlpg-exiting \
             mwait-exiting rdpmc-exiting rdtsc-exiting cr3-load-exiting cr3-store-exiting \
             cr8-load-exiting cr8-store-exiting tpr-shadow nmi-window-exiting mov-dr-exiting \
             unconditional-io-exiting io-bitmaps monitor-trap-flag msr-bitmaps monitor-exiting \
             pause-exiting secondary-controls (missing: tertiary-controls)",
            "secondary: virtualize-apic-accesses ept descriptor-table-exiting rdtscp \
             virtualize-x2apic-mode vpid wbinvd-exiting unrestricted-guest \
             apic-register-virtualization virtual-interrupt-delivery pause-loop-exiting \
             invpcid enable-vmfunc vmcs-shadowing encls-exiting rdseed-exiting pml \
             ept-violation-ve conceal-vmx-from-pt xsaves mode-based-execute \
             (missing: rdrand-exiting pasid-translation sub-page-write-permissions \
             pt-uses-guest-physical tsc-scaling user-wait-and-pause pconfig enclv-exiting \
             bus-lock-detection instruction-timeout)",
            "exit: save-debug-controls host-address-space-size load-perf-global-ctrl \
             acknowledge-interrupt-on-exit save-pat load-pat save-efer load-efer \
             save-preemption-timer clear-bndcfgs conceal-vmx-from-pt (missing: clear-rtit-ctl \
             clear-lbr-ctl clear-uinv load-cet-state load-pkrs save-perf-global-ctrl \
             secondary-exit-controls)",
            "entry: load-debug-controls ia32e-mode-guest entry-to-smm deactivate-dual-monitor \
             load-perf-global-ctrl load-pat load-efer load-bndcfgs conceal-vmx-from-pt \
             (missing: load-rtit-ctl load-uinv load-cet-state load-lbr-ctl load-pkrs load-fred)",
            "ept: 4-level uncacheable write-back 2M 1G accessed-dirty advanced-violation-info \
             invept(single-context, all-context) execute-only \
             (missing: 5-level supervisor-shadow-stack)",
            "vpid: invvpid(individual-address, single-context, all-context, \
             single-context-retaining-globals)",
            "vmfunc: eptp-switching",
            "misc: preemption timer ticks every 2^7 TSC cycles, 4 CR3 targets, MSR lists of up \
             to 512, stores-efer-lma, intel-pt, rdmsr-smbase, vmxoff-unblocks-smis, \
             vmwrite-any-field, zero-length-injection, activity states: hlt shutdown \
             wait-for-sipi",
            "fixed: cr0 must be 1 0x80000021, may be 1 0xffffffff; cr4 must be 1 0x2000, \
             may be 1 0x3727ff",
            "requirements: met; optional vmcs-shadowing: available",
        ];
        assert_eq!(lines, expected);
        for line in &lines {
            assert!(!line.ends_with('\n'));
        }
    }

    #[test]
    fn report_of_an_old_cpu_names_what_it_lacks() {
        // Nehalem-like: EPT and VPID without INVVPID types, no unrestricted
        // guest, no shadowing, no VM functions, activity state HLT only.
        let mut capabilities = skylake();
        capabilities.secondary.allowed1 = 0x0000_002b;
        capabilities.ept_vpid = EptVpidCapabilities(0x0000_0001_0410_4141);
        capabilities.misc = VmxMisc(0x0000_0000_0004_0045);
        let lines = report_of(&capabilities);
        assert_eq!(
            lines[6],
            "ept: 4-level uncacheable write-back invept(all-context) execute-only \
             (missing: 5-level 2M 1G accessed-dirty advanced-violation-info \
             supervisor-shadow-stack invept-single-context)"
        );
        assert_eq!(
            lines[7],
            "vpid: invvpid() (missing: invvpid-individual-address invvpid-single-context \
             invvpid-all-context invvpid-single-context-retaining-globals)"
        );
        assert_eq!(lines[8], "vmfunc: unavailable");
        assert_eq!(
            lines[9],
            "misc: preemption timer ticks every 2^5 TSC cycles, 4 CR3 targets, MSR lists of \
             up to 512, activity states: hlt (missing: stores-efer-lma intel-pt rdmsr-smbase \
             vmxoff-unblocks-smis vmwrite-any-field zero-length-injection)"
        );
        assert_eq!(
            lines[11],
            "requirements: missing single-context INVEPT, unrestricted guest, \
             single-context INVVPID, all-context INVVPID; optional vmcs-shadowing: \
             unavailable, guest VMREAD/VMWRITE will exit"
        );
    }

    #[test]
    fn report_of_a_cpu_without_secondary_controls() {
        let capabilities = VmxCapabilities::read(|msr| match msr {
            0x480 => 0x0018_1000_0000_0001,
            0x485 => 0x0000_0000_0000_0000,
            _ => 0,
        });
        let lines = report_of(&capabilities);
        assert_eq!(lines[0], "VMCS revision 0x00000001, region 4096 bytes, write-back, highest field index 0");
        assert_eq!(lines[3], "secondary: unavailable");
        assert_eq!(lines[6], "ept: unavailable");
        assert_eq!(lines[7], "vpid: unavailable");
        assert_eq!(lines[8], "vmfunc: unavailable");
        assert!(lines[9].ends_with(
            "activity states: active only (missing: stores-efer-lma \
             intel-pt rdmsr-smbase vmxoff-unblocks-smis vmwrite-any-field zero-length-injection)"
        ));
        assert!(lines[11].starts_with(
            "requirements: missing the IA32_VMX_TRUE_*_CTLS MSRs (IA32_VMX_BASIC bit 55), \
             the secondary processor-based VM-execution controls, EPT,"
        ));
    }

    #[test]
    fn invvpid_without_types_and_ept_without_invept() {
        let mut capabilities = skylake();
        capabilities.ept_vpid = EptVpidCapabilities(
            EptVpidCapabilities::PAGE_WALK_4
                | EptVpidCapabilities::WRITE_BACK
                | EptVpidCapabilities::PAGES_2M
                | EptVpidCapabilities::PAGES_1G
                | EptVpidCapabilities::ACCESSED_DIRTY
                | EptVpidCapabilities::ADVANCED_VIOLATION_INFO
                | EptVpidCapabilities::SUPERVISOR_SHADOW_STACK
                | EptVpidCapabilities::PAGE_WALK_5
                | EptVpidCapabilities::UNCACHEABLE
                | EptVpidCapabilities::INVVPID_ALL_CONTEXT,
        );
        let lines = report_of(&capabilities);
        assert_eq!(
            lines[6],
            "ept: 4-level 5-level uncacheable write-back 2M 1G accessed-dirty \
             advanced-violation-info supervisor-shadow-stack (missing: invept \
             invept-single-context invept-all-context execute-only)"
        );
        assert_eq!(
            lines[7],
            "vpid: (missing: invvpid invvpid-individual-address invvpid-single-context \
             invvpid-single-context-retaining-globals)"
        );
    }
}
