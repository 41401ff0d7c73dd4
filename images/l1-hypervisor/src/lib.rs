//! Host-testable logic of the L1 test hypervisor: everything that needs no
//! privileged instruction lives here and is unit-tested with
//! `cargo test -p l1-hypervisor`. The kernel (`src/main.rs`, built with
//! `--features image`) runs VMX and hands its decisions to these modules.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod cmdline;
pub mod ept;
pub mod layout;
pub mod protocol;
