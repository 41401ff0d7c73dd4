//! Intel VMX hardware vocabulary for Matryoshka.
//!
//! This crate names what the Intel SDM (volume 3C, chapters 24–33 and
//! appendices A, B and C) defines, and decodes what the hardware reports. It
//! holds no policy and touches no hardware: there is no inline assembly and
//! no `unsafe`, so the same definitions serve the bare-metal shim, the
//! per-guest monitor that emulates VMX for guest hypervisors, and tests that
//! run on the host.
//!
//! - [`msr`] numbers the model-specific registers VMX reads and loads, and
//!   decodes `IA32_FEATURE_CONTROL`.
//! - [`controls`] names every bit of the pin-based, processor-based, VM-exit
//!   and VM-entry controls, with short names for reports, and decodes a
//!   capability MSR into [`AllowedControls`](controls::AllowedControls).
//! - [`capabilities`] reads
//!   [`VmxCapabilities`](capabilities::VmxCapabilities) once at boot from
//!   the `IA32_VMX_*` MSRs, checks them against what Matryoshka requires and
//!   prints them as a capability report.
//! - [`vmcs`] lists every VMCS field encoding of appendix B, grouped as the
//!   appendix groups them, with width and access carried in the type so a
//!   read-only field cannot be written through the typed API.
//! - [`exit`] decodes exit reasons (appendix C), the exit-reason field, exit
//!   qualifications and VM-instruction error numbers.
//!
//! Reading the capabilities only needs a way to read an MSR, so host tests
//! feed recorded values:
//!
//! ```
//! use vmx::capabilities::VmxCapabilities;
//!
//! // A CPU whose every capability MSR reads as zero offers nothing.
//! let capabilities = VmxCapabilities::read(|_msr| 0);
//! let missing = capabilities.check_requirements().unwrap_err();
//! assert!(missing.to_string().starts_with("this CPU lacks"));
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod capabilities;
pub mod controls;
pub mod exit;
pub mod msr;
pub mod vmcs;
