//! The current VMCS, with typed field access, and a VMCS region's life.
//!
//! Field types come from the `vmx` crate: a read-only exit-information
//! field has no `write`, so that mistake does not compile.

use core::sync::atomic::{AtomicU64, Ordering};

use l0_shim::memory::{PhysAddr, PhysRange};
use vmx::vmcs::VmcsWritable;

use crate::arch::vmx_instructions::{vmclear, vmptrld, vmwrite, write_field, VmxInstructionError};
use crate::kernel::memory;

/// The VMCS current on this CPU (only the boot CPU runs guests for now;
/// with more CPUs this moves into the per-CPU data).
static CURRENT: AtomicU64 = AtomicU64::new(0);

/// A VMCS region owned by one vCPU.
pub struct Vmcs {
    region: PhysAddr,
}

impl Vmcs {
    pub fn new(revision_id: u32) -> Option<Self> {
        let region = memory::with_frames(|frames| frames.alloc_frame())?;
        memory::zero_frame(region);
        memory::write_u32(region, revision_id);
        // Safe because the region is a fresh frame with the revision id,
        // owned by this Vmcs.
        unsafe { vmclear(region.as_u64()) }.ok()?;
        Some(Self { region })
    }

    /// Makes this VMCS the current one on this CPU (VMPTRLD is costly on
    /// real hardware: it is skipped when the VMCS already is current).
    pub fn make_current(&self) -> Result<(), VmxInstructionError> {
        let region = self.region.as_u64();
        if CURRENT.load(Ordering::Relaxed) == region {
            return Ok(());
        }
        // Safe because the region is this Vmcs's own, initialised in `new`,
        // and vCPUs do not migrate between CPUs (only one CPU runs).
        unsafe { vmptrld(region) }?;
        CURRENT.store(region, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Vmcs {
    fn drop(&mut self) {
        // VMCLEAR also makes it not current.
        let _ = CURRENT.compare_exchange(self.region.as_u64(), 0, Ordering::Relaxed, Ordering::Relaxed);
        // VMCLEAR writes back whatever the CPU caches of this VMCS; only
        // then may its frame be reused.
        // Safe because the region is this Vmcs's own.
        match unsafe { vmclear(self.region.as_u64()) } {
            Ok(()) => memory::with_frames(|frames| {
                let _ = frames.free(PhysRange::frame(self.region));
            }),
            Err(error) => log::error!("VMCLEAR of a departing VMCS failed ({error:?}): keeping its frame out of use"),
        }
    }
}

/// Reads a field of the current VMCS. A failure means the shim asked for a
/// field the CPU does not have, or has no current VMCS: a shim bug.
pub use crate::arch::vmx_instructions::read_field as read;

/// Writes a field of the current VMCS. Only the shim's own VMCS code calls
/// this: requests from monitors are validated first.
pub fn write<F: VmcsWritable>(field: F, value: F::Value) {
    // Safe because the shim's VMCS code is the only caller, and host-state
    // and control values come from the shim itself.
    unsafe { write_field(field, value) }
}

/// The VM-instruction error of the current VMCS, after a VMfailValid.
pub fn instruction_error() -> u32 {
    read(vmx::vmcs::ReadOnly32::VmInstructionError)
}

/// Writes a field given by its raw encoding. Only for encodings that
/// `l0_shim::action_validation` accepted. It can still fail (a field this
/// CPU does not have): the caller turns that into a guest stop, never a
/// shim panic, because a monitor chose the field.
pub fn write_checked_encoding(encoding: u32, value: u64) -> Result<(), VmxInstructionError> {
    // Safe because the caller passes only encodings the validation allowed
    // (guest state or the monitor's own controls), never host state.
    unsafe { vmwrite(encoding, value) }
}
