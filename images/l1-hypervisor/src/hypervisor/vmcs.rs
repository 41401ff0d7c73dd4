//! The current VMCS with typed fields (a read-only exit-information field
//! has no `write`, so that mistake does not compile), and a VM exit
//! decoded once into [`Exit`].

use core::fmt;

use vmx::exit::{ExitReason, ExitReasonField, InterruptionInfo, VmInstructionError};
use vmx::vmcs::{GuestNatural, ReadOnly32, ReadOnly64, ReadOnlyNatural, VmcsWritable};
use vmx_instructions::write_field;

/// Reads a field of the current VMCS. A failure means the hypervisor asked
/// for a field this CPU lacks, or has no current VMCS: a hypervisor bug.
pub use vmx_instructions::read_field as read;

/// Writes a field of the current VMCS; only the hypervisor's own VMCS code
/// calls this, with values it computed from the capability MSRs.
pub fn write<F: VmcsWritable>(field: F, value: F::Value) {
    // Safe because the values keep L1 intact: the host state is L1's own
    // (built in guest.rs) and the rest only shapes what L2 does.
    unsafe { write_field(field, value) }
}

/// The VM-instruction error after a VMfailValid, with the SDM's words.
pub struct InstructionError(pub u32);

impl InstructionError {
    pub fn current() -> Self {
        Self(read(ReadOnly32::VmInstructionError))
    }
}

impl fmt::Display for InstructionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match VmInstructionError::from_number(self.0) {
            Some(error) => write!(f, "{error}"),
            None => write!(f, "unknown VM-instruction error {}", self.0),
        }
    }
}

/// What the processor reported about a VM exit.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub reason: ExitReasonField,
    pub qualification: u64,
    pub instruction_length: u32,
    pub interruption: InterruptionInfo,
    pub interruption_error_code: u32,
    pub guest_physical: u64,
    pub guest_linear: u64,
    pub rip: u64,
}

impl Exit {
    pub fn read() -> Self {
        Self {
            reason: ExitReasonField(read(ReadOnly32::ExitReason)),
            qualification: read(ReadOnlyNatural::ExitQualification),
            instruction_length: read(ReadOnly32::ExitInstructionLength),
            interruption: InterruptionInfo(read(ReadOnly32::ExitInterruptionInfo)),
            interruption_error_code: read(ReadOnly32::ExitInterruptionErrorCode),
            guest_physical: read(ReadOnly64::GuestPhysicalAddress),
            guest_linear: read(ReadOnlyNatural::GuestLinearAddress),
            rip: read(GuestNatural::Rip),
        }
    }

    /// The basic exit reason, if it is a successful exit of a known kind.
    pub fn is(&self, reason: ExitReason) -> bool {
        !self.reason.is_entry_failure() && self.reason.reason() == Ok(reason)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason.reason() {
            Ok(reason) => write!(f, "exit reason {} ({reason})", reason.number())?,
            Err(unknown) => write!(f, "{unknown}")?,
        }
        if self.reason.is_entry_failure() {
            write!(f, " [VM-entry failure]")?;
        }
        write!(f, ", qualification {:#x}, RIP {:#x}", self.qualification, self.rip)?;
        if self.interruption.is_valid() {
            write!(f, ", interruption information {:#x}", self.interruption.0)?;
            if self.interruption.error_code_valid() {
                write!(f, ", error code {:#x}", self.interruption_error_code)?;
            }
        }
        Ok(())
    }
}
