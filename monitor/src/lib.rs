//! The per-guest monitor's logic.
//!
//! Everything that parses or emulates guest-controlled state lives here, so
//! that a bug stays inside one tenant. It is a plain state machine over
//! traits (guest memory, VMCS access, the shim's services), which makes it
//! testable on the host with fakes; the same code runs in the deprivileged
//! monitor image.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod ap_startup;
pub mod devices;
pub mod guest_memory;
pub mod guest_monitor;
pub mod guest_paging;
pub mod loader;
pub mod mmio_instruction;
pub mod nested;
pub mod policy;
