//! Shared by Matryoshka's bare-metal programs: the L0 shim, the L1 test
//! kernel, and the monitor image to come.
#![no_std]
#![cfg_attr(not(feature = "runtime"), forbid(unsafe_code))]

pub mod exceptions;
#[cfg(feature = "runtime")]
pub mod runtime;

include!("../link_args.rs");
