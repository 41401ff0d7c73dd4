//! The VMX instructions, each in one small wrapper. The `vmx` crate holds
//! the vocabulary (encodings, capabilities); this module only executes.

use core::arch::asm;

/// Why a VMX instruction failed (SDM vol. 3C, 31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxInstructionError {
    /// CF=1: no current VMCS, or the operand itself was invalid.
    FailInvalid,
    /// ZF=1: the error number is in the VM-instruction error field.
    FailValid,
}

fn flags_to_result(rflags: u64) -> Result<(), VmxInstructionError> {
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
