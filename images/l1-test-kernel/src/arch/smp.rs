//! What starting and talking to other processors touches directly: the
//! local APIC's registers (xAPIC, memory-mapped at its reset base) and the
//! AP trampoline's page.

use core::sync::atomic::{fence, Ordering::SeqCst};

/// The xAPIC's reset base address (IA32_APIC_BASE, never moved here).
const XAPIC_BASE: u64 = 0xfee0_0000;
/// The page below 1 MiB a SIPI starts the APs at: below the kernel (1 MiB)
/// and above the real-mode IVT and BIOS data area.
pub const TRAMPOLINE_PAGE: u64 = 0x8000;
const PAGE_SIZE: u64 = 4096;

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static mut ap_stack_top: u64;
}

/// Reads local APIC register `offset` of this processor.
pub fn apic_read(offset: u32) -> u32 {
    let value: u32;
    // A plain MOV, as Linux's readl: a volatile read may still be fused
    // into another instruction (TEST with a memory operand), which a
    // hypervisor's MMIO emulation need not decode.
    // Safe because the identity map covers the APIC page, which holds no
    // Rust object, and reading a register has no side effect the kernel
    // relies on (none of the registers read here clears on read).
    unsafe {
        core::arch::asm!(
            "mov {value:e}, [{address}]",
            address = in(reg) XAPIC_BASE + u64::from(offset),
            value = out(reg) value,
            options(nostack, preserves_flags, readonly),
        )
    };
    value
}

/// Writes local APIC register `offset` of this processor.
pub fn apic_write(offset: u32, value: u32) {
    // Safe because the identity map covers the APIC page, which holds no
    // Rust object: a write reaches the APIC, not the kernel's memory.
    unsafe { ((XAPIC_BASE + u64::from(offset)) as *mut u32).write_volatile(value) }
}

/// Copies the AP start code to [`TRAMPOLINE_PAGE`] and returns the SIPI
/// vector that starts an AP there. The caller has checked that the page
/// is RAM nothing else uses.
pub fn install_trampoline() -> u8 {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let length = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
    assert!(length as u64 <= PAGE_SIZE, "the AP trampoline outgrew its page");
    // Safe because the page lies below the kernel image (1 MiB), holds no
    // Rust object, and the caller checked that it is free RAM.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_PAGE as *mut u8, length) };
    fence(SeqCst);
    (TRAMPOLINE_PAGE / PAGE_SIZE) as u8
}

/// The stack the next AP to start will run `ap_main` on.
pub fn set_ap_stack(top: u64) {
    // Safe because only the BSP writes the slot, before it sends the SIPI
    // that makes an AP read it, and the fence orders the two.
    unsafe { core::ptr::addr_of_mut!(ap_stack_top).write_volatile(top) };
    fence(SeqCst);
}
