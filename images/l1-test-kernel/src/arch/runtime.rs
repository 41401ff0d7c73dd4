//! The C memory functions and unwinder symbols a hosted toolchain would
//! take from libc and libgcc.
//!
//! The precompiled compiler_builtins for linux-gnu expects libc to provide
//! memcpy and friends, and the precompiled core still names the unwinder
//! even under panic=abort. The bodies are string instructions: a Rust loop
//! here could be recognised by LLVM and compiled back into a call to the
//! very function it implements.

use core::arch::asm;

/// # Safety
/// `len` bytes readable at `src` and writable at `dst`, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    // Safe because the caller keeps memcpy's contract; DF is clear (the
    // ABI requires it and the trap stubs clear it).
    unsafe {
        asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") len => _,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// `len` bytes readable at `src` and writable at `dst`; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, len: usize) -> *mut u8 {
    let forward_is_safe = (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + len;
    if forward_is_safe {
        // Safe because copying upwards never reads a byte already overwritten here.
        return unsafe { memcpy(dst, src, len) };
    }
    // Safe because the caller keeps memmove's contract, and copying
    // downwards from the last byte (DF set, then cleared again) never
    // reads a byte already overwritten when dst lies above src.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rdi") dst.add(len - 1) => _, inout("rsi") src.add(len - 1) => _, inout("rcx") len => _,
             options(nostack))
    };
    dst
}

/// # Safety
/// `len` bytes writable at `dst`.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, byte: i32, len: usize) -> *mut u8 {
    // Safe because the caller keeps memset's contract.
    unsafe {
        asm!("rep stosb", inout("rdi") dst => _, inout("rcx") len => _, in("al") byte as u8,
             options(nostack, preserves_flags))
    };
    dst
}

/// # Safety
/// `len` bytes readable at `a` and at `b`.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
    if len == 0 {
        return 0;
    }
    let (a_end, b_end): (*const u8, *const u8);
    let differ: u8;
    // Safe because the caller keeps memcmp's contract. REPE CMPSB stops
    // one past the first differing pair, with ZF clear, or after `len`
    // equal bytes with ZF set.
    unsafe {
        asm!("repe cmpsb", "setne {differ}",
             differ = out(reg_byte) differ,
             inout("rsi") a => a_end, inout("rdi") b => b_end, inout("rcx") len => _,
             options(readonly, nostack))
    };
    if differ == 0 {
        return 0;
    }
    // Safe because both pointers stopped one past a byte inside the ranges.
    let (x, y) = unsafe { (*a_end.sub(1), *b_end.sub(1)) };
    i32::from(x) - i32::from(y)
}

/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, len: usize) -> i32 {
    // Safe because bcmp's contract is memcmp's.
    unsafe { memcmp(a, b, len) }
}

/// Never called with panic=abort; the precompiled core only names it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}

/// Never called with panic=abort; the precompiled core only names it.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    super::cpu::halt_forever()
}
