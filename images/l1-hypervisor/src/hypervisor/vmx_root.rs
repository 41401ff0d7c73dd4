//! Entering VMX operation, as SDM 24.7-24.8 and 25.11.3 describe it, each
//! step checked: the two bring-up checks, `vmx-enable` and `vmcs-load`.

use l1_hypervisor::layout::{VMCS_REGION, VMXON_REGION};
use vmx::capabilities::{check_cpuid, VmxCapabilities};
use vmx::msr::{FeatureControl, IA32_FEATURE_CONTROL};
use vmx_instructions::{vmclear, vmptrld, vmptrst, vmxon};

use super::report::{Failed, Report};
use crate::arch::memory::{write_u32, zero_page};
use crate::arch::{read_msr, write_cr0_cr4, write_msr, CR4_VMXE};
use multiboot_kernel::arch::cpu::{cpuid, read_cr0, read_cr4};

/// `vmx-enable`: CPUID reports VMX; IA32_FEATURE_CONTROL is locked with
/// VMXON allowed outside SMX (set so here if the firmware left it
/// unlocked); the capability MSRs offer what every check needs (the
/// preemption-timer check asks for the timer itself); CR0 and CR4
/// satisfy the fixed-bit MSRs with CR4.VMXE set; VMXON succeeds.
pub fn enable(report: &mut Report) -> Result<VmxCapabilities, Failed> {
    if let Err(missing) = check_cpuid(cpuid(1, 0).ecx) {
        fail!(report, "{missing}");
    }
    let before = FeatureControl(read_msr(IA32_FEATURE_CONTROL));
    if let Some(value) = before.enabling_value() {
        // Safe because the MSR exists (CPUID reports VMX) and the value
        // only adds the lock and VMXON-outside-SMX bits.
        unsafe { write_msr(IA32_FEATURE_CONTROL, value) };
        note!(report, "IA32_FEATURE_CONTROL was unlocked ({:#x}): set and locked", before.0);
    }
    let feature_control = FeatureControl(read_msr(IA32_FEATURE_CONTROL));
    if !feature_control.locked() || !feature_control.vmxon_outside_smx() {
        fail!(report, "IA32_FEATURE_CONTROL {:#x}: expected locked with VMXON outside SMX", feature_control.0);
    }

    let capabilities = VmxCapabilities::read(read_msr);
    note!(
        report,
        "VMCS revision {:#x}, region {} bytes, {} controls",
        capabilities.basic.revision_id(),
        capabilities.basic.region_size(),
        if capabilities.basic.true_controls() { "true" } else { "default" }
    );
    let ept = capabilities.ept_vpid;
    let needed = [
        ("EPT", capabilities.secondary.supports(vmx::controls::SecondaryControls::EPT.bits())),
        ("VPID", capabilities.secondary.supports(vmx::controls::SecondaryControls::VPID.bits())),
        ("4-level EPT", ept.page_walk_4()),
        ("INVEPT", ept.invept() && ept.invept_single_context()),
        ("write-back or uncacheable EPT tables", ept.write_back() || ept.uncacheable()),
    ];
    for (feature, present) in needed {
        if !present {
            fail!(report, "this CPU lacks {feature}, which the checks need");
        }
    }

    let cr4 = capabilities.adjust_cr4(read_cr4() | CR4_VMXE);
    let cr0 = capabilities.adjust_cr0(read_cr0());
    // Safe because the fixed bits only force what VMX needs (CR0.NE, PE,
    // PG, CR4.VMXE), which leaves paging, protection and SSE as they are.
    unsafe { write_cr0_cr4(cr0, cr4) };
    if !capabilities.cr0_fixed.is_valid(read_cr0()) || !capabilities.cr4_fixed.is_valid(read_cr4()) {
        fail!(report, "CR0 {:#x} / CR4 {:#x} do not satisfy the VMX fixed bits", read_cr0(), read_cr4());
    }

    zero_page(VMXON_REGION);
    write_u32(VMXON_REGION, capabilities.basic.revision_id());
    // Safe because CR4.VMXE and the fixed bits are set, and the region is a
    // zeroed, 4 KiB-aligned page of the work region holding the revision
    // id, used for nothing else while in VMX operation.
    if let Err(error) = unsafe { vmxon(VMXON_REGION) } {
        fail!(report, "VMXON failed ({error:?})");
    }
    note!(report, "in VMX root operation (VMXON region {VMXON_REGION:#x})");
    Ok(capabilities)
}

/// `vmcs-load`: VMCLEAR initialises the VMCS region, VMPTRLD makes it
/// current, and VMPTRST reports it.
pub fn load_vmcs(report: &mut Report, capabilities: &VmxCapabilities) -> Result<(), Failed> {
    zero_page(VMCS_REGION);
    // Bit 31 clear: an ordinary VMCS, not a shadow VMCS.
    write_u32(VMCS_REGION, capabilities.basic.revision_id());
    // Safe because the region is a page of the work region, owned by this
    // VMCS, with the revision id.
    if let Err(error) = unsafe { vmclear(VMCS_REGION) } {
        fail!(report, "VMCLEAR of the VMCS region failed ({error:?})");
    }
    // Safe as above; only this CPU exists.
    if let Err(error) = unsafe { vmptrld(VMCS_REGION) } {
        fail!(report, "VMPTRLD of the VMCS region failed ({error:?})");
    }
    expect_eq!(report, "VMPTRST after VMPTRLD", VMCS_REGION, vmptrst());
    Ok(())
}

/// VMCLEAR and VMPTRLD again: the VMCS keeps its contents but its launch
/// state is clear, so the next entry must be VMLAUNCH.
pub fn reset_launch_state(report: &mut Report) -> Result<(), Failed> {
    // Safe because the region is the current VMCS's own.
    let result = unsafe { vmclear(VMCS_REGION).and_then(|()| vmptrld(VMCS_REGION)) };
    if let Err(error) = result {
        fail!(report, "VMCLEAR and VMPTRLD of the VMCS region failed ({error:?})");
    }
    Ok(())
}
