//! VMX bring-up on the current CPU: check what the CPU offers, report it,
//! and enter VMX root operation.

use log::info;
use vmx::capabilities::{check_cpuid, MissingFeature, VmxCapabilities};
use vmx::msr::{FeatureControl, IA32_FEATURE_CONTROL};

use crate::arch::cpu::{cpuid, read_cr0, read_cr4, read_msr, write_cr0, write_cr4, write_msr};
use crate::arch::vmx_instructions::{vmxon, VmxInstructionError};
use crate::kernel::memory;
use crate::kernel::percpu;

const CR4_VMXE: u64 = 1 << 13;

static CAPABILITIES: spin::Once<VmxCapabilities> = spin::Once::new();

/// The boot CPU's VMX capabilities, once VMX is enabled.
pub fn capabilities() -> Option<&'static VmxCapabilities> {
    CAPABILITIES.get()
}

#[derive(Debug)]
pub enum VmxError {
    Missing(MissingFeature),
    NoFrameForVmxonRegion,
    Vmxon(VmxInstructionError),
}

impl core::fmt::Display for VmxError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing(feature) => write!(f, "{feature}"),
            Self::NoFrameForVmxonRegion => write!(f, "no free memory for the VMXON region"),
            Self::Vmxon(error) => write!(f, "VMXON failed ({error:?}) although the CPU reports VMX"),
        }
    }
}

impl From<MissingFeature> for VmxError {
    fn from(feature: MissingFeature) -> Self {
        Self::Missing(feature)
    }
}

/// Checks the CPU, logs its VMX capabilities and executes VMXON.
pub fn enable() -> Result<&'static VmxCapabilities, VmxError> {
    check_cpuid(cpuid(1, 0).ecx)?;
    let feature_control = FeatureControl(read_msr(IA32_FEATURE_CONTROL));
    match feature_control.enabling_value() {
        // Firmware left it unlocked: enable VMX outside SMX and lock it, as
        // firmware with VT-x enabled would have done.
        // Safe because the MSR exists (CPUID reports VMX) and the value
        // only sets the enable and lock bits.
        Some(value) => unsafe { write_msr(IA32_FEATURE_CONTROL, value) },
        None => feature_control.check()?,
    }

    let capabilities = VmxCapabilities::read(read_msr);
    for line in capabilities.report() {
        info!("{line}");
    }
    capabilities.check_requirements()?;
    // Before any VMCS takes the host's CR4: guests may use XSAVE only if
    // the host has it on.
    if crate::kernel::xsave::enable() {
        info!("xsave: enabled for guests");
    }

    // Safe because the VMX fixed bits only force bits VMX needs (e.g.
    // CR0.NE, CR4.VMXE) that leave paging and protection as they are.
    unsafe {
        write_cr4(capabilities.adjust_cr4(read_cr4() | CR4_VMXE));
        write_cr0(capabilities.adjust_cr0(read_cr0()));
    }
    let region = memory::with_frames(|frames| frames.alloc_frame()).ok_or(VmxError::NoFrameForVmxonRegion)?;
    memory::zero_frame(region);
    memory::write_u32(region, capabilities.basic.revision_id());
    // Safe because CR4.VMXE and the fixed bits are set above, and the region
    // is a fresh, zeroed, 4 KiB-aligned frame that holds the revision id and
    // belongs to this CPU's VMX operation for good.
    unsafe { vmxon(region.as_u64()) }.map_err(VmxError::Vmxon)?;
    let cpu = percpu::current();
    cpu.vmxon_region.call_once(|| region);
    info!("cpu {}: in VMX root operation (VMXON region at {:#x})", cpu.index, region.as_u64());
    Ok(CAPABILITIES.call_once(|| capabilities))
}
