//! Symbols that a hosted toolchain would get from libc and libgcc. A
//! binary pulls them in with `extern crate bare_metal;`: nothing else names
//! them, and an unnamed crate is not linked.
//!
//! The precompiled compiler_builtins for linux-gnu leaves the memory
//! functions to libc, and the precompiled core/alloc still reference the
//! unwinder even with panic=abort. The string instructions are used because
//! Rust loops here could be turned back into calls to these very functions.

use core::arch::asm;

/// # Safety
/// The C contract: `n` bytes readable at `src`, writable at `dest`, no overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Safe because the caller upholds the C contract of memcpy.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags))
    };
    dest
}

/// # Safety
/// The C contract: `n` bytes readable at `src` and writable at `dest`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // Safe because a forward copy is correct when dest is below src or
        // the ranges do not overlap.
        return unsafe { memcpy(dest, src, n) };
    }
    if n > 0 {
        // Safe because the caller upholds the C contract; copying backwards
        // from the last byte is correct when dest overlaps above src.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack))
        };
    }
    dest
}

/// # Safety
/// The C contract: `n` bytes writable at `dest`.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // Safe because the caller upholds the C contract of memset.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") value as u8,
             options(nostack, preserves_flags))
    };
    dest
}

/// # Safety
/// The C contract: `n` bytes readable at both pointers.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // Safe because the caller guarantees n readable bytes; volatile
        // reads keep the compiler from turning this loop into a memcmp call.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // Safe because the caller upholds the same contract as memcmp's.
    unsafe { memcmp(a, b, n) }
}

/// Never called with panic=abort; only the precompiled core refers to it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Never called with panic=abort; only the precompiled core refers to it.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    loop {
        // Safe because stopping this CPU for good cannot break memory
        // safety; nothing calls this under panic=abort.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
