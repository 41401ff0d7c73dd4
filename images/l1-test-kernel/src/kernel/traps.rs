//! Exception and interrupt handling, entered from the stubs in traps.s.
//!
//! An exception is either expected (a probe armed a recovery address,
//! see arch/probe.rs) or the end of the run: it is reported with vector,
//! error code and registers, and the kernel exits with `Crashed`.
//! Interrupts come from the PIC, each counted per IRQ and acknowledged, or
//! are the `smp` check's IPIs.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

use bare_metal::exceptions::mnemonic as exception_name;

use super::checks;
use super::devices::pic;
use super::exit::{exit, ExitCode};
use crate::arch::{cpu, probe};
use multiboot_kernel::arch::TrapFrame;

const PAGE_FAULT: u8 = 14;
const EXCEPTION_COUNT: u8 = 32;
/// Vectors that are never a probe's doing: the handler cannot resume
/// after them (double fault, machine check) or they are asynchronous (NMI).
const NEVER_EXPECTED: [u8; 3] = [2, 8, 18];
/// The 8259A's spurious-interrupt lines.
const SPURIOUS_IRQS: [u8; 2] = [7, 15];

static IRQ_COUNTS: [AtomicU32; 16] = [const { AtomicU32::new(0) }; 16];
static SPURIOUS: AtomicU32 = AtomicU32::new(0);

/// How many times `irq` was delivered since the last [`reset_irq_counts`].
pub fn irq_count(irq: u8) -> u32 {
    IRQ_COUNTS[usize::from(irq)].load(Relaxed)
}

/// Spurious IRQ 7/15 deliveries.
pub fn spurious_count() -> u32 {
    SPURIOUS.load(Relaxed)
}

pub fn reset_irq_counts() {
    IRQ_COUNTS.iter().for_each(|count| count.store(0, Relaxed));
    SPURIOUS.store(0, Relaxed);
}

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    if vector < EXCEPTION_COUNT {
        let cr2 = if vector == PAGE_FAULT { cpu::read_cr2() } else { 0 };
        if !NEVER_EXPECTED.contains(&vector) {
            if let Some(resume) = probe::recover(vector, frame.error_code, cr2) {
                frame.rip = resume;
                return;
            }
        }
        unexpected_exception(frame, cr2);
    }
    if vector == checks::smp::IPI_VECTOR {
        checks::smp::ipi_received();
        return;
    }
    let irq = vector - pic::MASTER_VECTOR_BASE;
    // A spurious IRQ 7/15 (the line dropped before the PIC could say
    // which) is not in service and must not be acknowledged, except for
    // the cascade at the master when the slave's was spurious.
    if SPURIOUS_IRQS.contains(&irq) && pic::in_service() & (1 << irq) == 0 {
        SPURIOUS.fetch_add(1, Relaxed);
        if irq >= 8 {
            pic::end_of_interrupt(0);
        }
        return;
    }
    IRQ_COUNTS[usize::from(irq)].fetch_add(1, Relaxed);
    pic::end_of_interrupt(irq);
}

fn unexpected_exception(frame: &TrapFrame, cr2: u64) -> ! {
    let vector = frame.vector as u8;
    say!(
        "FATAL: unexpected exception {} (vector {vector}) error code {:#x} at RIP {:#x}",
        exception_name(vector),
        frame.error_code,
        frame.rip
    );
    if vector == PAGE_FAULT {
        say!("FATAL: CR2 {cr2:#x}");
    }
    say!("FATAL: RSP {:#x} RFLAGS {:#x} CS {:#x}", frame.rsp, frame.rflags, frame.cs);
    say!("FATAL: RAX {:#x} RBX {:#x} RCX {:#x} RDX {:#x}", frame.rax, frame.rbx, frame.rcx, frame.rdx);
    say!("FATAL: RSI {:#x} RDI {:#x} RBP {:#x}", frame.rsi, frame.rdi, frame.rbp);
    exit(ExitCode::Crashed)
}
