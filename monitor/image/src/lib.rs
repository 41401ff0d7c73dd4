//! The monitor image's logic, apart from the few lines that touch its
//! address space (`main.rs`): what each message from the shim is answered
//! with, the guest's start state, and the log lines that travel with the
//! answers. All of it runs on the host in tests.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
extern crate alloc;

pub mod log_queue;
pub mod session;
