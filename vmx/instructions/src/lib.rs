//! The VMX instructions, each in one small wrapper. The `vmx` crate holds
//! the vocabulary (encodings, capabilities); this crate only executes.
//!
//! Shared by the L0 shim and the L1 test hypervisor (images/l1-hypervisor),
//! so that both enter and leave guests through the same audited code.
#![no_std]

use core::arch::asm;

use vmx::vmcs::{FieldValue, VmcsReadable, VmcsWritable};

core::arch::global_asm!(include_str!("vmx_run.s"));

/// Why a VMX instruction failed (SDM vol. 3C, 31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxInstructionError {
    /// CF=1: no current VMCS, or the operand itself was invalid.
    FailInvalid,
    /// ZF=1: the error number is in the VM-instruction error field.
    FailValid,
}

/// The outcome a VMX instruction left in RFLAGS (SDM 31.2): VMsucceed,
/// VMfailInvalid (CF) or VMfailValid (ZF).
pub fn flags_to_result(rflags: u64) -> Result<(), VmxInstructionError> {
    const CARRY: u64 = 1 << 0;
    const ZERO: u64 = 1 << 6;
    if rflags & CARRY != 0 {
        Err(VmxInstructionError::FailInvalid)
    } else if rflags & ZERO != 0 {
        Err(VmxInstructionError::FailValid)
    } else {
        Ok(())
    }
}

/// Enters VMX root operation.
///
/// # Safety
/// CR4.VMXE must be set, CR0/CR4 must satisfy the VMX fixed bits, and
/// `vmxon_region` must be the physical address of a 4 KiB-aligned page that
/// holds the VMCS revision id and is never used for anything else while the
/// CPU stays in VMX operation.
pub unsafe fn vmxon(vmxon_region: u64) -> Result<(), VmxInstructionError> {
    let rflags: u64;
    // Safe because the caller upholds this function's contract; VMXON reads
    // its 64-bit operand from memory, which `region` provides.
    unsafe {
        asm!(
            "vmxon [{region}]",
            "pushfq",
            "pop {rflags}",
            region = in(reg) &vmxon_region,
            rflags = lateout(reg) rflags,
        )
    };
    flags_to_result(rflags)
}

/// Makes the VMCS at `region` inactive and not current, flushing its cached
/// state to memory and setting its launch state to clear.
///
/// # Safety
/// `region` must be the physical address of a VMCS region owned by the
/// caller (4 KiB aligned, revision id written).
pub unsafe fn vmclear(region: u64) -> Result<(), VmxInstructionError> {
    let rflags: u64;
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("vmclear [{region}]", "pushfq", "pop {rflags}", region = in(reg) &region, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags)
}

/// Makes the VMCS at `region` current and active on this CPU.
///
/// # Safety
/// As [`vmclear`]; and the VMCS must not be current on another CPU.
pub unsafe fn vmptrld(region: u64) -> Result<(), VmxInstructionError> {
    let rflags: u64;
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("vmptrld [{region}]", "pushfq", "pop {rflags}", region = in(reg) &region, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags)
}

/// The physical address of the current VMCS (VMPTRST), all ones when
/// there is none.
pub fn vmptrst() -> u64 {
    let mut pointer: u64 = 0;
    // Safe because VMPTRST only stores the current-VMCS pointer into the
    // 8-byte local it is given.
    unsafe { asm!("vmptrst [{pointer}]", pointer = in(reg) &mut pointer, options(nostack)) };
    pointer
}

/// Reads a field of the current VMCS.
pub fn vmread(encoding: u32) -> Result<u64, VmxInstructionError> {
    let (value, rflags): (u64, u64);
    // Safe because VMREAD only reads the current VMCS (it fails cleanly
    // without one or for an unsupported field) and writes a register.
    unsafe {
        asm!("vmread {value}, {encoding}", "pushfq", "pop {rflags}",
             encoding = in(reg) u64::from(encoding), value = lateout(reg) value, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags).map(|()| value)
}

/// Writes a field of the current VMCS.
///
/// # Safety
/// Host-state and control fields decide what the CPU does on the next VM
/// entry and exit: the caller must write values that keep itself intact
/// (in the shim only its own VMCS code writes them; requests from monitors
/// are validated before they get here).
pub unsafe fn vmwrite(encoding: u32, value: u64) -> Result<(), VmxInstructionError> {
    let rflags: u64;
    // Safe because the caller upholds this function's contract.
    unsafe {
        asm!("vmwrite {encoding}, {value}", "pushfq", "pop {rflags}",
             encoding = in(reg) u64::from(encoding), value = in(reg) value, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags)
}

/// Reads a field of the current VMCS with its type from the `vmx` crate.
/// A failure means the caller asked for a field this CPU lacks, or has no
/// current VMCS: a bug in the caller, so it panics naming the field.
pub fn read_field<F: VmcsReadable>(field: F) -> F::Value {
    match vmread(field.encoding()) {
        Ok(value) => F::Value::from_u64(value),
        Err(error) => panic!("VMREAD of {} failed: {error:?}", field.name()),
    }
}

/// Writes a field of the current VMCS; a read-only field does not
/// compile. A failure (a field this CPU lacks, no current VMCS) is a bug in
/// the caller: it panics naming the field and the value.
///
/// # Safety
/// As [`vmwrite`].
pub unsafe fn write_field<F: VmcsWritable>(field: F, value: F::Value) {
    // Safe because the caller upholds vmwrite's contract.
    if let Err(error) = unsafe { vmwrite(field.encoding(), value.to_u64()) } {
        panic!("VMWRITE of {} = {:#x} failed: {error:?}", field.name(), value.to_u64());
    }
}

/// INVEPT types (SDM vol. 3C, 30.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum InveptKind {
    SingleContext = 1,
    AllContexts = 2,
}

/// Invalidates cached EPT translations.
pub fn invept(kind: InveptKind, eptp: u64) -> Result<(), VmxInstructionError> {
    let descriptor: [u64; 2] = [eptp, 0];
    let rflags: u64;
    // Safe because INVEPT only drops cached translations; the descriptor
    // is a valid 16-byte memory operand.
    unsafe {
        asm!("invept {kind}, [{descriptor}]", "pushfq", "pop {rflags}",
             kind = in(reg) kind as u64, descriptor = in(reg) &descriptor, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags)
}

/// INVVPID types (SDM vol. 3C, 30.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum InvvpidKind {
    IndividualAddress = 0,
    SingleContext = 1,
    AllContexts = 2,
}

/// Invalidates cached linear translations tagged with `vpid`.
pub fn invvpid(kind: InvvpidKind, vpid: u16, address: u64) -> Result<(), VmxInstructionError> {
    let descriptor: [u64; 2] = [u64::from(vpid), address];
    let rflags: u64;
    // Safe because INVVPID only drops cached translations; the descriptor
    // is a valid 16-byte memory operand.
    unsafe {
        asm!("invvpid {kind}, [{descriptor}]", "pushfq", "pop {rflags}",
             kind = in(reg) kind as u64, descriptor = in(reg) &descriptor, rflags = lateout(reg) rflags)
    };
    flags_to_result(rflags)
}

/// The guest's general registers, which the VMCS does not hold (RSP and
/// RIP are VMCS fields), plus CR2, which VM exits leave untouched.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuestRegisters {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub cr2: u64,
}

extern "C" {
    /// vmx_run.s: enters the guest with `registers`; returns 0 after a VM
    /// exit (registers saved back), or RFLAGS when the entry failed.
    fn vmx_run(registers: *mut GuestRegisters, launched: u64) -> u64;
    static vmx_exit_landing: u8;
}

/// Where VM exits land (the VMCS host RIP).
pub fn exit_landing_address() -> u64 {
    core::ptr::addr_of!(vmx_exit_landing) as u64
}

/// Runs the current VMCS's guest until its next VM exit.
///
/// # Safety
/// The current VMCS must hold a complete, checked host state whose RIP is
/// [`exit_landing_address`] (RSP is written here), and this CPU's FPU/SSE
/// state must already be the guest's (the caller switches it).
pub unsafe fn enter_guest(registers: &mut GuestRegisters, launched: bool) -> Result<(), VmxInstructionError> {
    // Safe because the caller upholds this function's contract, and the
    // stub saves and restores every callee-saved register.
    let rflags = unsafe { vmx_run(registers, u64::from(launched)) };
    if rflags == 0 {
        Ok(())
    } else {
        flags_to_result(rflags)
    }
}
