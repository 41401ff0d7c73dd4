//! Processor state the kernel reads, and the interrupt flag.

use core::arch::asm;

/// The four registers CPUID returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // Safe because CPUID only reports processor information. RBX belongs
    // to LLVM, so it is swapped out around the instruction.
    unsafe {
        asm!(
            "mov {saved:r}, rbx",
            "cpuid",
            "xchg {saved:r}, rbx",
            saved = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        )
    };
    Cpuid { eax, ebx, ecx, edx }
}

pub fn rdtsc() -> u64 {
    let (low, high): (u32, u32);
    // Safe because RDTSC only reads the time-stamp counter (CR4.TSD is clear).
    unsafe { asm!("rdtsc", out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    u64::from(high) << 32 | u64::from(low)
}

pub fn read_cr0() -> u64 {
    let value;
    // Safe because reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

pub fn read_cr2() -> u64 {
    let value;
    // Safe because reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

pub fn read_cr4() -> u64 {
    let value;
    // Safe because reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

pub fn enable_interrupts() {
    // Safe because every vector the PIC can deliver has a gate (see
    // descriptors.rs) whose handler saves all state it touches.
    unsafe { asm!("sti", options(nomem, nostack)) };
}

pub fn disable_interrupts() {
    // Safe because masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Enables interrupts and waits for one: STI holds interrupts off for one
/// more instruction, so none can slip in between and leave HLT waiting.
pub fn wait_for_interrupt() {
    // Safe as `enable_interrupts`; HLT only waits.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) };
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // Safe because stopping with interrupts off touches no memory.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
