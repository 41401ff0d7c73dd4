//! The only code that touches the processor directly: the boot trampoline,
//! the trap stubs, port I/O, control registers and descriptor tables (the
//! C runtime symbols come from the shared `bare-metal` crate). Everything
//! above this module is safe Rust (device drivers wrap port I/O with the
//! reason each access is harmless).

pub mod cpu;
pub mod descriptors;
pub mod port;

core::arch::global_asm!(include_str!("boot.s"));
core::arch::global_asm!(include_str!("traps.s"));

/// What the trap stubs in traps.s pushed, lowest address first; the
/// kernel's `trap_dispatch` gets it and may change `rip` to resume elsewhere.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}
