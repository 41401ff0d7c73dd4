//! Host-testable logic of the L0 shim: everything that needs no privileged
//! instruction lives here and is unit-tested with `cargo test -p l0-shim`.
#![cfg_attr(not(test), no_std)]
// The library is pure logic; only its tests need unsafe, to hand
// hand-built loader structures to the multiboot2 parser.
#![cfg_attr(not(test), forbid(unsafe_code))]
extern crate alloc;

pub mod action_validation;
pub mod boot_config;
pub mod boot_info;
pub mod boot_options;
pub mod guest_request;
pub mod layout;
pub mod memory;
pub mod monitor_image;
pub mod monitor_space;
pub mod net;
pub mod text;
