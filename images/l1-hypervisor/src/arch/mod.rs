//! The hypervisor's own privileged operations, beside the shared ones
//! (multiboot-kernel: boot, traps, ports; vmx-instructions: VMX). Each
//! `unsafe` block says why it is sound; everything above is safe Rust.

pub mod memory;

use core::arch::asm;

use l1_hypervisor::{layout, protocol};
use multiboot_kernel::arch::port::outb;
use vmx_instructions::{flags_to_result, VmxInstructionError};

core::arch::global_asm!(
    include_str!("l2_payload.s"),
    mailbox = const layout::L2_MAILBOX,
    ept_hole = const layout::L2_EPT_HOLE,
    read_only = const layout::L2_READ_ONLY,
    remapped = const layout::L2_REMAPPED,
    event_count = const protocol::mailbox::EVENT_COUNT,
    event_vector = const protocol::mailbox::EVENT_VECTOR,
    event_error_code = const protocol::mailbox::EVENT_ERROR_CODE,
    event_rip = const protocol::mailbox::EVENT_RIP,
    stop_spinning = const protocol::mailbox::STOP_SPINNING,
    done = const protocol::command::DONE,
    fail = const protocol::command::FAIL,
    report_registers = const protocol::command::REPORT_REGISTERS,
    inject_gp = const protocol::command::INJECT_GP,
    inject_interrupt = const protocol::command::INJECT_INTERRUPT,
    remap = const protocol::command::REMAP,
    cr4_vmxe = const CR4_VMXE,
    cr0_pg_pe = const CR0_PG | CR0_PE,
    pattern = const protocol::REGISTER_PATTERN,
    cr2_index = const protocol::CR2_INDEX,
    cpuid_leaf = const protocol::CPUID_LEAF,
    cpuid_subleaf = const protocol::CPUID_SUBLEAF,
    cpuid_eax = const protocol::CPUID_ANSWER[0],
    cpuid_ebx = const protocol::CPUID_ANSWER[1],
    cpuid_ecx = const protocol::CPUID_ANSWER[2],
    cpuid_edx = const protocol::CPUID_ANSWER[3],
    cpuid_loop_count = const protocol::CPUID_LOOP_COUNT,
    out_byte_port = const protocol::OUT_BYTE_PORT,
    out_byte_value = const protocol::OUT_BYTE_VALUE,
    in_word_port = const protocol::IN_WORD_PORT,
    in_word_answer = const protocol::IN_WORD_ANSWER,
    out_dword_port = const protocol::OUT_DWORD_PORT,
    out_dword_value = const protocol::OUT_DWORD_VALUE,
    in_dword_port = const protocol::IN_DWORD_PORT,
    in_dword_answer = const protocol::IN_DWORD_ANSWER,
    gp_error_code = const protocol::GP_ERROR_CODE,
    interrupt_vector = const protocol::INTERRUPT_VECTOR,
    hole_offset = const protocol::HOLE_OFFSET,
    fill_pattern = const protocol::FILL_PATTERN,
    read_only_offset = const protocol::READ_ONLY_OFFSET,
    write_pattern = const protocol::WRITE_PATTERN,
    remap_pattern_a = const protocol::REMAP_PATTERN_A,
    remap_pattern_b = const protocol::REMAP_PATTERN_B,
);

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_MP: u64 = 1 << 1;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_WP: u64 = 1 << 16;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_OSFXSR: u64 = 1 << 9;
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
pub const CR4_VMXE: u64 = 1 << 13;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

/// Addresses of the payload's routines and sites (l2_payload.s), which L1
/// starts L2 at and compares exit RIPs with.
pub mod l2 {
    macro_rules! symbols {
        ($($function:ident => $symbol:ident;)*) => {
            extern "C" {
                $(static $symbol: u8;)*
                static l2_event_stubs: [u64; l1_hypervisor::protocol::LAST_VECTOR as usize + 1];
                static __l2_payload_start: u8;
                static __l2_payload_end: u8;
            }
            $(pub fn $function() -> u64 {
                core::ptr::addr_of!($symbol) as u64
            })*
        };
    }

    symbols! {
        launch => l2_launch;
        registers => l2_registers;
        cpuid => l2_cpuid;
        io => l2_io;
        hlt => l2_hlt;
        exceptions => l2_exceptions;
        ud2_site => l2_ud2_site;
        int3_site => l2_int3_site;
        injection => l2_injection;
        ept_violation => l2_ept_violation;
        hole_read_site => l2_hole_read_site;
        read_only_write_site => l2_read_only_write_site;
        timer => l2_timer;
        timer_spin => l2_timer_spin;
        timer_spin_end => l2_timer_spin_end;
        invept => l2_invept;
        cpuid_loop => l2_cpuid_loop;
    }

    /// The payload's pages: `[start, end)`, page-aligned by linker.ld.
    pub fn payload_pages() -> (u64, u64) {
        (core::ptr::addr_of!(__l2_payload_start) as u64, core::ptr::addr_of!(__l2_payload_end) as u64)
    }

    /// The event stub for each vector, for L2's IDT.
    pub fn event_stubs() -> [u64; l1_hypervisor::protocol::LAST_VECTOR as usize + 1] {
        // Safe because the table is read-only data assembled in l2_payload.s.
        unsafe { l2_event_stubs }
    }
}

pub fn read_msr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // Safe because reading an MSR changes nothing; the caller names only
    // MSRs that CPUID says exist (a missing one would be an unexpected #GP,
    // reported and fatal, not undefined behaviour).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags)) };
    u64::from(high) << 32 | u64::from(low)
}

/// # Safety
/// The MSR and value must not break the kernel (EFER, FS/GS base...).
pub unsafe fn write_msr(msr: u32, value: u64) {
    // Safe because the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    };
}

pub fn read_cr3() -> u64 {
    let value;
    // Safe because reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Sets the bits VMX operation needs in CR0 and CR4 (the fixed-bit MSRs
/// say which): CR4.VMXE among them; CR0.NE, PE and PG are on already.
///
/// # Safety
/// `cr0` and `cr4` must differ from the current values only in bits that
/// leave paging, protection and SSE as they are.
pub unsafe fn write_cr0_cr4(cr0: u64, cr4: u64) {
    // Safe because the caller vouches for the values.
    unsafe { asm!("mov cr4, {cr4}", "mov cr0, {cr0}", cr0 = in(reg) cr0, cr4 = in(reg) cr4, options(nostack)) };
}

/// VMCALL in VMX root operation: without the dual-monitor treatment of
/// SMM it can only fail (SDM 31.3, VMCALL).
pub fn vmcall_in_root() -> Result<(), VmxInstructionError> {
    let rflags: u64;
    // Safe because in VMX root operation, with no SMM monitor ever
    // activated, VMCALL only sets RFLAGS and the VM-instruction error.
    unsafe { asm!("vmcall", "pushfq", "pop {rflags}", rflags = lateout(reg) rflags) };
    flags_to_result(rflags)
}

/// INVEPT with a type number of the caller's choosing, to see the
/// processor refuse types it does not support.
pub fn invept_type(kind: u64, eptp: u64) -> Result<(), VmxInstructionError> {
    let descriptor: [u64; 2] = [eptp, 0];
    let rflags: u64;
    // Safe because INVEPT only drops cached translations (or fails); the
    // descriptor is a valid 16-byte memory operand.
    unsafe {
        asm!("invept {kind}, [{descriptor}]", "pushfq", "pop {rflags}",
             kind = in(reg) kind, descriptor = in(reg) &descriptor, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags)
}

/// Stops Bochs with status 0: its magic breakpoint (`xchg bx, bx`, a no-op
/// elsewhere), with `quit` queued in its debugger.
pub fn bochs_magic_break() {
    // Safe because XCHG of a register with itself changes nothing.
    unsafe { asm!("xchg bx, bx", options(nomem, nostack, preserves_flags)) };
}

/// Stops Bochs with status 1: "Shutdown" to its shutdown port.
pub fn bochs_shutdown() {
    for byte in *b"Shutdown" {
        // Safe because port 0x8900 is Bochs's shutdown port, which only
        // `exit=bochs` (Bochs named on the command line) reaches.
        unsafe { outb(0x8900, byte) };
    }
}
