//! The only code that touches the processor directly. Booting (with the
//! APs' trampoline), the descriptor tables, trap stubs, port I/O and control
//! registers come from the `multiboot-kernel` crate, shared with the L1 test
//! hypervisor; this kernel adds the instruction probes that survive an
//! expected fault, and the local APIC and trampoline page of the `smp`
//! check. Everything above this module is safe Rust (device drivers wrap
//! port I/O with the reason each access is harmless).

pub use multiboot_kernel::arch::{cpu, descriptors, port};
pub mod probe;
pub mod smp;
