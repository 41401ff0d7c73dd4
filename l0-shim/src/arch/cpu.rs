//! Small safe wrappers around single privileged CPU operations.

use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, _rdtsc, CpuidResult};

/// The four registers CPUID returns for a leaf and subleaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    __cpuid_count(leaf, subleaf)
}

/// The time-stamp counter. Under Bochs with `clock: sync=none` it counts
/// retired instructions, which makes it an exact cost measure.
pub fn rdtsc() -> u64 {
    // Safe because RDTSC only reads a counter; CR4.TSD is never set.
    unsafe { _rdtsc() }
}

pub fn read_msr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // Safe because the shim runs in ring 0 and only reads MSRs that the
    // caller established exist (architectural or enumerated by CPUID).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    (u64::from(high) << 32) | u64::from(low)
}

/// # Safety
/// Writing an MSR can change paging, segmentation or VMX state: the caller
/// must know that `value` is valid for `msr` and that the change is intended.
pub unsafe fn write_msr(msr: u32, value: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    };
}

pub fn read_cr0() -> u64 {
    let value: u64;
    // Safe because reading CR0 has no side effects in ring 0.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// The new CR0 must keep paging and protection on and be valid for the CPU.
pub unsafe fn write_cr0(value: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) };
}

pub fn read_cr2() -> u64 {
    let value: u64;
    // Safe because reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

pub fn read_cr3() -> u64 {
    let value: u64;
    // Safe because reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// `root` must be the physical address of a complete PML4 that maps the
/// running code, its stack and every object the kernel still uses.
pub unsafe fn write_cr3(root: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) };
}

pub fn read_cr4() -> u64 {
    let value: u64;
    // Safe because reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// The new CR4 must be valid for the CPU and keep PAE and the SSE bits on.
pub unsafe fn write_cr4(value: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) };
}

/// The frame pointer of the caller's frame, for backtraces.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // Safe because it only copies RBP.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    rbp
}

/// Stops this CPU until the next interrupt, or for good when interrupts are
/// disabled.
pub fn halt() {
    // Safe because HLT only waits.
    unsafe { asm!("hlt", options(nomem, nostack, preserves_flags)) };
}

/// What protects the shim from ring 3, as `harden_for_ring3` set it up.
pub struct Ring3Protections {
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
}

impl core::fmt::Display for Ring3Protections {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let on = |enabled: bool| if enabled { "on" } else { "not available" };
        write!(f, "SMEP {}, SMAP {}, UMIP {}; SYSCALL off", on(self.smep), on(self.smap), on(self.umip))
    }
}

/// Sets up what the monitors in ring 3 must not get around: the shim never
/// executes (SMEP) or touches (SMAP) user pages, ring 3 cannot read the
/// descriptor-table registers (UMIP), and SYSCALL is off (guests own
/// LSTAR, so a SYSCALL from a monitor would enter ring 0 at a guest's
/// address). FSGSBASE stays off, so ring 3 cannot set GS base directly.
pub fn harden_for_ring3() -> Ring3Protections {
    const CR4_UMIP: u64 = 1 << 11;
    const CR4_FSGSBASE: u64 = 1 << 16;
    const CR4_SMEP: u64 = 1 << 20;
    const CR4_SMAP: u64 = 1 << 21;
    const EFER: u32 = 0xc000_0080;
    const EFER_SCE: u64 = 1;
    let leaf7 = cpuid(7, 0);
    let protections = Ring3Protections {
        smep: leaf7.ebx & (1 << 7) != 0,
        smap: leaf7.ebx & (1 << 20) != 0,
        umip: leaf7.ecx & (1 << 2) != 0,
    };
    let mut cr4 = read_cr4() & !CR4_FSGSBASE;
    for (available, bit) in [(protections.smep, CR4_SMEP), (protections.smap, CR4_SMAP), (protections.umip, CR4_UMIP)] {
        if available {
            cr4 |= bit;
        }
    }
    // Safe because the shim's own code and data are supervisor pages, it
    // reaches the monitors' memory only through the (supervisor) direct
    // map, and it uses none of the instructions UMIP restricts in ring 0.
    unsafe {
        write_cr4(cr4);
        write_msr(EFER, read_msr(EFER) & !EFER_SCE);
    }
    protections
}

/// Opens the interrupt window for one instruction, so that an interrupt
/// already pending is taken now (its handler must only acknowledge it).
pub fn let_pending_interrupts_in() {
    // Safe because the shim's handlers for the interrupts it enables (the
    // budget timer, spurious) only acknowledge them, and IF is clear again
    // after the NOP.
    unsafe { asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

pub fn disable_interrupts() {
    // Safe because masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// # Safety
/// Port I/O reaches devices directly: the caller must own the device.
pub unsafe fn outb(port: u16, value: u8) {
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// # Safety
/// See [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) };
}

/// # Safety
/// See [`outb`]; reading some device registers has side effects.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// See [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) };
}

/// # Safety
/// See [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // Safe because the caller upholds this function's contract.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// A random number from the CPU's generator, if it has one (CPUID.1:ECX bit 30) and it
/// delivers within a few tries (RDRAND may fail transiently under load).
pub fn rdrand() -> Option<u64> {
    const RDRAND: u32 = 1 << 30;
    if cpuid(1, 0).ecx & RDRAND == 0 {
        return None;
    }
    for _ in 0..10 {
        let (value, ok): (u64, u8);
        // Safe because CPUID says the instruction exists; it only writes the registers named.
        unsafe { asm!("rdrand {}", "setc {}", out(reg) value, out(reg_byte) ok, options(nomem, nostack)) };
        if ok != 0 {
            return Some(value);
        }
    }
    None
}

/// Bochs's "magic breakpoint": `xchg bx, bx` is a no-op on real hardware;
/// Bochs with `magic_break: enabled=1` stops in its debugger there, which the
/// harness answers with `quit` for a clean exit.
pub fn bochs_magic_break() {
    // Safe because the instruction exchanges a register with itself.
    unsafe { asm!("xchg bx, bx", options(nomem, nostack, preserves_flags)) };
}

/// An FXSAVE area: x87, MMX and SSE state.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FxState(pub [u8; 512]);

impl FxState {
    /// The state after FNINIT with SSE exceptions masked (FCW 0x37f,
    /// MXCSR 0x1f80): what a CPU comes out of reset with.
    pub fn reset() -> Self {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        Self(area)
    }
}

pub fn fxsave(state: &mut FxState) {
    // Safe because the area is 512 bytes, 16-byte aligned and writable.
    unsafe { asm!("fxsave64 [{}]", in(reg) state.0.as_mut_ptr(), options(nostack, preserves_flags)) };
}

/// Loads a state that came from [`fxsave`] or [`FxState::reset`].
pub fn fxrstor(state: &FxState) {
    // Safe because the area is aligned and holds a state FXSAVE wrote or
    // the reset state, so no reserved MXCSR bit is set (which would #GP).
    unsafe { asm!("fxrstor64 [{}]", in(reg) state.0.as_ptr(), options(nostack, preserves_flags)) };
}

/// # Safety
/// CR4.OSXSAVE must be set and `value` a valid XCR0 for this CPU (bit 0
/// set, only supported components, AVX only with SSE, ...), or XSETBV
/// raises #GP in the shim.
pub unsafe fn xsetbv0(value: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack, preserves_flags))
    };
}

/// # Safety
/// `area` must be 64-byte aligned, as large as CPUID.0DH:ECX says, and
/// XSAVE enabled (CR4.OSXSAVE).
pub unsafe fn xsave(area: *mut u8, components: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("xsave64 [{}]", in(reg) area, in("eax") components as u32, in("edx") (components >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// # Safety
/// As [`xsave`], and the area must hold a valid XSAVE image (one XSAVE
/// wrote, or all zeroes: the initial state).
pub unsafe fn xrstor(area: *const u8, components: u64) {
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("xrstor64 [{}]", in(reg) area, in("eax") components as u32, in("edx") (components >> 32) as u32, options(nostack, preserves_flags))
    };
}
