//! The hypervisor proper: console, the run, VMX bring-up, the VMCS and L2's
//! world, and the checks.

#[macro_use]
pub mod console;
#[macro_use]
pub mod report;
pub mod checks;
pub mod exit;
pub mod guest;
pub mod start;
pub mod traps;
pub mod vmcs;
pub mod vmx_root;
