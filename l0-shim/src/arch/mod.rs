//! Hardware access: the only part of the kernel that touches ports, control
//! registers, MSRs, descriptor tables and VMX instructions directly. Each
//! `unsafe` block here says why it is sound; everything above is safe Rust.

pub mod cpu;
pub mod descriptors;
pub mod runtime;
pub mod serial;
pub mod vmx_instructions;

core::arch::global_asm!(include_str!("boot.s"));
core::arch::global_asm!(include_str!("traps.s"));
