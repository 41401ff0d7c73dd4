//! Instructions run with an expected fault in mind.
//!
//! A probe stores the address of a recovery label (right after its
//! instruction, in the same asm block) in [`RECOVERY_RIP`] before it runs
//! the instruction. If the instruction faults, the trap handler sees the
//! armed address, records the fault and resumes there instead of reporting
//! an unexpected exception ([`recover`]). Either way the probe disarms and
//! returns what happened. The compiler sees one asm block that runs to its
//! end, so no Rust state is ever skipped.

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::SeqCst};

use bare_metal::exceptions::mnemonic as exception_name;

/// Where to resume after a fault; 0 when no probe is running.
static RECOVERY_RIP: AtomicU64 = AtomicU64::new(0);
/// The last recovered fault: vector + 1 (0: none), error code and CR2.
static FAULT_VECTOR: AtomicU64 = AtomicU64::new(0);
static FAULT_ERROR_CODE: AtomicU64 = AtomicU64::new(0);
static FAULT_CR2: AtomicU64 = AtomicU64::new(0);

/// An exception a probe caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error_code: u64,
    /// CR2 at the fault (only meaningful for #PF).
    pub cr2: u64,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (vector {}, error code {:#x}", exception_name(self.vector), self.vector, self.error_code)?;
        if self.vector == 14 {
            write!(f, ", CR2 {:#x}", self.cr2)?;
        }
        write!(f, ")")
    }
}

/// The #GP(0) that an unknown MSR, or a bad value for a known one, raises.
pub fn is_gp0<T>(result: &Result<T, Fault>) -> bool {
    const GENERAL_PROTECTION: u8 = 13;
    matches!(result, Err(Fault { vector: GENERAL_PROTECTION, error_code: 0, .. }))
}

/// Shows a probe's result: the value read, or the fault.
pub struct Outcome<'a, T>(pub &'a Result<T, Fault>);

impl fmt::Display for Outcome<'_, u64> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(value) => write!(f, "no fault (value {value:#x})"),
            Err(fault) => write!(f, "{fault}"),
        }
    }
}

impl fmt::Display for Outcome<'_, ()> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(()) => write!(f, "no fault"),
            Err(fault) => write!(f, "{fault}"),
        }
    }
}

/// Called by the trap handler for an exception: if a probe is armed,
/// records the fault, disarms, and returns where to resume.
pub fn recover(vector: u8, error_code: u64, cr2: u64) -> Option<u64> {
    let rip = RECOVERY_RIP.swap(0, SeqCst);
    if rip == 0 {
        return None;
    }
    FAULT_ERROR_CODE.store(error_code, SeqCst);
    FAULT_CR2.store(cr2, SeqCst);
    FAULT_VECTOR.store(u64::from(vector) + 1, SeqCst);
    Some(rip)
}

fn arm() {
    FAULT_VECTOR.store(0, SeqCst);
}

/// Disarms (the probe ran to its end without a fault, or the handler
/// already disarmed) and reports the fault, if any.
fn outcome() -> Result<(), Fault> {
    RECOVERY_RIP.store(0, SeqCst);
    match FAULT_VECTOR.swap(0, SeqCst) {
        0 => Ok(()),
        vector => Err(Fault {
            vector: (vector - 1) as u8,
            error_code: FAULT_ERROR_CODE.load(SeqCst),
            cr2: FAULT_CR2.load(SeqCst),
        }),
    }
}

/// RDMSR, catching the #GP of an MSR that does not exist.
pub fn rdmsr(msr: u32) -> Result<u64, Fault> {
    let (low, high): (u32, u32);
    arm();
    // Safe because reading an MSR changes no memory, and a fault resumes
    // at the label inside this block.
    unsafe {
        asm!(
            "lea {rip}, [rip + 2f]",
            "mov [{slot}], {rip}",
            "xor eax, eax",
            "xor edx, edx",
            "rdmsr",
            "2:",
            rip = out(reg) _,
            slot = in(reg) RECOVERY_RIP.as_ptr(),
            in("ecx") msr,
            out("eax") low,
            out("edx") high,
            options(nostack),
        )
    };
    outcome().map(|()| u64::from(high) << 32 | u64::from(low))
}

/// WRMSR, catching the #GP of an MSR that does not exist or a value it refuses.
///
/// # Safety
/// The MSR, if it exists, must not be one whose new value breaks the
/// kernel (EFER, FS/GS base, the APIC base...).
pub unsafe fn wrmsr(msr: u32, value: u64) -> Result<(), Fault> {
    arm();
    // Safe because the caller vouches for the MSR, and a fault resumes at
    // the label inside this block.
    unsafe {
        asm!(
            "lea {rip}, [rip + 2f]",
            "mov [{slot}], {rip}",
            "wrmsr",
            "2:",
            rip = out(reg) _,
            slot = in(reg) RECOVERY_RIP.as_ptr(),
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nostack),
        )
    };
    outcome()
}

/// An instruction the probe kind names, expected to fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// UD2: #UD.
    InvalidOpcode,
    /// INT3: #BP (a trap: reported after the instruction).
    Breakpoint,
    /// DIV by zero: #DE.
    DivideByZero,
    /// A read of `address`: #GP if non-canonical, #PF if unmapped.
    Read(u64),
}

/// Runs `trigger` and reports the fault it raised, if any.
///
/// # Safety
/// For [`Trigger::Read`], the address must not be a device register whose
/// read has side effects the kernel relies on.
pub unsafe fn run(trigger: Trigger) -> Result<(), Fault> {
    arm();
    // Safe because each instruction only raises an exception (or, for
    // the read, loads a value that is discarded), and a fault resumes at
    // the label inside its block.
    unsafe {
        match trigger {
            Trigger::InvalidOpcode => asm!(
                "lea {rip}, [rip + 2f]", "mov [{slot}], {rip}", "ud2", "2:",
                rip = out(reg) _, slot = in(reg) RECOVERY_RIP.as_ptr(), options(nostack),
            ),
            Trigger::Breakpoint => asm!(
                "lea {rip}, [rip + 2f]", "mov [{slot}], {rip}", "int3", "2:",
                rip = out(reg) _, slot = in(reg) RECOVERY_RIP.as_ptr(), options(nostack),
            ),
            Trigger::DivideByZero => asm!(
                "lea {rip}, [rip + 2f]", "mov [{slot}], {rip}", "xor edx, edx", "mov eax, 1", "div ecx", "2:",
                rip = out(reg) _, slot = in(reg) RECOVERY_RIP.as_ptr(), in("ecx") 0u32,
                out("eax") _, out("edx") _, options(nostack),
            ),
            Trigger::Read(address) => asm!(
                "lea {rip}, [rip + 2f]", "mov [{slot}], {rip}", "mov {rip}, [{address}]", "2:",
                rip = out(reg) _, slot = in(reg) RECOVERY_RIP.as_ptr(), address = in(reg) address,
                options(nostack),
            ),
        }
    }
    outcome()
}

/// RDMSR with no recovery armed: if the MSR does not exist, the #GP is an
/// unexpected exception and ends the run.
pub fn rdmsr_unguarded(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // Safe because reading an MSR changes no memory; a fault goes to the
    // trap handler, which reports it and stops.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack)) };
    u64::from(high) << 32 | u64::from(low)
}

/// UD2 with no recovery armed: the #UD is an unexpected exception (or,
/// with an empty IDT, a triple fault).
pub fn ud2_unguarded() {
    // Safe because UD2 only raises #UD; whatever handles it never returns
    // here unless the platform ignores the instruction.
    unsafe { asm!("ud2", options(nomem, nostack)) };
}
