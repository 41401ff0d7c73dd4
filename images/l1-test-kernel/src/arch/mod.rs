//! The only code that touches the processor directly: the boot trampoline,
//! the trap stubs, port I/O, MSRs, control registers, descriptor tables and
//! the instruction probes that survive an expected fault, the local APIC
//! and the AP trampoline (the C runtime
//! symbols come from the shared `bare-metal` crate). Everything above
//! this module is safe Rust (device drivers wrap port I/O with the reason
//! each access is harmless).

pub mod cpu;
pub mod descriptors;
pub mod port;
pub mod probe;
pub mod smp;

core::arch::global_asm!(include_str!("boot.s"));
core::arch::global_asm!(include_str!("traps.s"));
