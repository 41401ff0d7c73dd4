//! Nested VMX: the VMX that a guest hypervisor (L1) sees, emulated, so
//! that it can run guests of its own (L2).
//!
//! # How it fits together
//!
//! L1 runs in VMX non-root operation on the shim's vmcs01. Its VMX
//! instructions exit, and [`NestedVmx::execute`] emulates them with the SDM's
//! semantics (chapter 31 pseudocode), on a vmcs12 kept in L1's memory in the
//! layout documented in [`vmcs12`]. A successful VMLAUNCH or VMRESUME
//! checks vmcs12 as the CPU does (SDM 27.2-27.4, [`entry_checks`]) and
//! answers with a [`vmcs02::Vmcs02`]: the L2 guest state and the controls,
//! merged from vmcs12 and what L0 needs, as plain VMCS field writes. The
//! shim applies them to a vmcs02 of its own and runs L2 on it.
//!
//! Each exit of L2 goes to [`NestedVmx::l2_exit`], which decides
//! ([`reflection`]) whether L1 asked for it (its controls, bitmaps, masks,
//! exception bitmap) and then reflects it: the exit information and L2's
//! state are written into vmcs12 and L1's state is loaded from vmcs12's
//! host-state area (SDM 28.5). Exits L1 did not ask for stay with L0. EPT
//! violations of L2 go through the shadow-EPT builder ([`ept02`]), which
//! composes L1's EPT12 with L0's EPT01 into an EPT02 that the CPU walks.
//!
//! Everything is data in, data out, over L1's guest-physical memory (a
//! [`GuestMemory`](crate::guest_memory::GuestMemory) addressed by
//! guest-physical address: wrap L1's RAM in a [`PhysicalView`]), so it is
//! tested on the host; guest input never panics and never allocates
//! without bound.
//!
//! # What L1 is offered
//!
//! See [`capabilities`]: the host's VMX intersected with what is
//! emulated here. Not offered, and so never seen by L1: VMCS shadowing,
//! APIC virtualization (TPR shadow, APIC-access page, posted interrupts,
//! virtual-interrupt delivery), PML, VM functions (VMFUNC raises #UD),
//! EPT-violation #VE, mode-based execute, sub-page permissions, XSAVES
//! exiting, pause-loop exiting, the dual-monitor treatment of SMM, 5-level
//! EPT, Intel PT, CET and PKS state, IA32_PERF_GLOBAL_CTRL and BNDCFGS
//! loading, zero-length software-event injection, exception delivery
//! without error codes.
//!
//! # Simplifications (architecturally allowed)
//!
//! - The VMCS "cache" is L1's memory itself: VMREAD and VMWRITE access the
//!   region directly, VMCLEAR only resets the launch state.
//! - L2's I/O and MSR accesses always exit to L0 (vmcs02 uses unconditional
//!   I/O exiting and no MSR bitmaps); L0 consults L1's bitmaps and either
//!   reflects or emulates the access against L1's own platform.
//! - All L2 VPIDs share one VPID02; every INVVPID flushes it (more than the
//!   SDM requires, never less).
//! - EPT02 is built lazily, one translation per EPT violation, and is
//!   dropped whole by INVEPT (TLBs may cache EPT12 translations until
//!   INVEPT, SDM 29.4.3.1, so a stale EPT02 entry is a cached one).

pub mod capabilities;
pub mod entry_checks;
pub mod ept02;
pub mod instructions;
pub mod operands;
pub mod physical;
pub mod reflection;
pub mod shadowing;
pub mod state;
pub mod vmcs02;
pub mod vmcs12;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod test_support;

pub use capabilities::L1VmxCapabilities;
pub use instructions::{Invalidation, NestedEntry, NestedVmx, VmxOutcome};
pub use physical::PhysicalView;
pub use reflection::{L0Exit, L1Resume, L2Exit, L2ExitOutcome};
pub use state::CpuState;
pub use vmcs02::{L0Settings, Vmcs02};

/// An exception to raise in a guest, with CR2 for a page fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// The faulting linear address, for #PF: CR2 must hold it when the
    /// exception is delivered.
    pub cr2: Option<u64>,
}

impl Exception {
    /// #UD.
    pub const UD: Self = Self { vector: 6, error_code: None, cr2: None };
    /// #GP(0).
    pub const GP0: Self = Self::with_error_code(13, 0);

    pub const fn with_error_code(vector: u8, error_code: u32) -> Self {
        Self { vector, error_code: Some(error_code), cr2: None }
    }
}
