//! What the CPU reports when it leaves the guest or refuses a VMX
//! instruction: exit reasons (SDM appendix C), the exit-reason field and
//! the event-information fields (SDM 25.9), exit qualifications (SDM 28.2.1)
//! and VM-instruction error numbers (SDM 31.4).
//!
//! Each raw field is decoded once into a small type that exit handlers
//! take, so no handler re-derives bit positions.

mod event;
mod instruction_error;
mod qualification;
mod reason;

pub use event::{InterruptionInfo, InterruptionType};
pub use instruction_error::{UnknownInstructionError, VmInstructionError};
pub use qualification::{CrAccess, EptViolation, GeneralRegister, IoDirection, IoInstruction};
pub use reason::{ExitReason, ExitReasonField, UnknownExitReason};
