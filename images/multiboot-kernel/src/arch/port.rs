//! Raw port I/O. Each function is one IN or OUT instruction.
//!
//! # Safety (all functions)
//! A port access reaches a device directly. The caller must know what is
//! at `port` and that the access cannot reset or stop the machine behind
//! the kernel's back or make a device write into memory the kernel uses.
//! (This kernel programs no DMA-capable device, so on its platform any
//! other port access is harmless to memory safety.)

use core::arch::asm;

/// # Safety
/// See the module documentation.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // Safe because the caller vouches for the port (see above).
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// See the module documentation.
pub unsafe fn inw(port: u16) -> u16 {
    let value: u16;
    // Safe because the caller vouches for the port (see above).
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// See the module documentation.
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // Safe because the caller vouches for the port (see above).
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags)) };
    value
}

/// # Safety
/// See the module documentation.
pub unsafe fn outb(port: u16, value: u8) {
    // Safe because the caller vouches for the port (see above).
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// # Safety
/// See the module documentation.
pub unsafe fn outw(port: u16, value: u16) {
    // Safe because the caller vouches for the port (see above).
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) };
}

/// # Safety
/// See the module documentation.
pub unsafe fn outl(port: u16, value: u32) {
    // Safe because the caller vouches for the port (see above).
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) };
}
