//! What happens when the CPU traps into the shim.
//!
//! A fault in the shim itself is a bug: it is reported with everything
//! needed to find it (vector, error code, registers, CR2, a frame-pointer
//! backtrace whose addresses `addr2line -e l0-shim.elf` resolves) and the
//! machine stops. Guests never reach these handlers: their exceptions arrive
//! as VM exits.

use core::fmt::Write;

use crate::arch::cpu::{read_cr2, read_cr3};
use crate::arch::local_apic;
use crate::kernel::backtrace;
use crate::kernel::console;
use crate::kernel::memory;
use crate::kernel::shutdown::{power_off, Outcome};

/// The registers as traps.s saves them, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    // Pushed by the CPU.
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const PAGE_FAULT: u64 = 14;

const SPURIOUS_VECTOR: u64 = 0xff;

#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    if frame.cs & 3 == 3 {
        // A monitor came back: by `int 0x80`, a fault or its budget timer.
        crate::kernel::monitor::trap_from_ring3(frame);
    }
    if frame.vector < 32 {
        report_exception(frame);
        power_off(Outcome::Failure);
    }
    match frame.vector {
        // A budget timer that expired just as its monitor returned: it
        // has nothing left to stop.
        vector if vector == u64::from(local_apic::BUDGET_VECTOR) => {
            local_apic::end_of_interrupt();
            return;
        }
        SPURIOUS_VECTOR => return,
        _ => {}
    }
    // No device interrupts are enabled yet: an external interrupt here
    // means a device or another CPU is misconfigured. Note it and go on.
    log::warn!("unexpected interrupt vector {} at RIP {:#x}", frame.vector, frame.rip);
}

fn report_exception(frame: &TrapFrame) {
    let vector = frame.vector as u8;
    let (mnemonic, name) = (bare_metal::exceptions::mnemonic(vector), bare_metal::exceptions::name(vector));
    let mut report = ReportWriter;
    let _ = writeln!(
        report,
        "\nFATAL: shim exception {mnemonic} ({name}), vector {}, error code {:#x}{}",
        frame.vector,
        frame.error_code,
        if frame.vector == PAGE_FAULT { page_fault_cause(frame.error_code) } else { "" },
    );
    let _ = writeln!(report, "  RIP {:#018x}  CS {:#06x}  RFLAGS {:#010x}", frame.rip, frame.cs, frame.rflags);
    let _ = writeln!(report, "  RSP {:#018x}  SS {:#06x}", frame.rsp, frame.ss);
    let cr2 = read_cr2();
    let _ = writeln!(report, "  CR2 {cr2:#018x}  CR3 {:#018x}", read_cr3());
    if frame.vector == PAGE_FAULT && memory::is_stack_guard_page(cr2) {
        let _ = writeln!(report, "  CR2 is in the guard page below a stack: stack overflow");
    }
    let registers = [
        ("RAX", frame.rax),
        ("RBX", frame.rbx),
        ("RCX", frame.rcx),
        ("RDX", frame.rdx),
        ("RSI", frame.rsi),
        ("RDI", frame.rdi),
        ("RBP", frame.rbp),
        ("R8", frame.r8),
        ("R9", frame.r9),
        ("R10", frame.r10),
        ("R11", frame.r11),
        ("R12", frame.r12),
        ("R13", frame.r13),
        ("R14", frame.r14),
        ("R15", frame.r15),
    ];
    for row in registers.chunks(3) {
        let _ = write!(report, " ");
        for (name, value) in row {
            let _ = write!(report, " {name:>3} {value:#018x}");
        }
        let _ = writeln!(report);
    }
    backtrace::write(&mut report, Some(frame.rip), frame.rbp);
}

fn page_fault_cause(error_code: u64) -> &'static str {
    const PRESENT: u64 = 1 << 0;
    const WRITE: u64 = 1 << 1;
    const FETCH: u64 = 1 << 4;
    match (error_code & PRESENT != 0, error_code & WRITE != 0, error_code & FETCH != 0) {
        (false, _, true) => " (instruction fetch from an unmapped page)",
        (true, _, true) => " (instruction fetch from a no-execute page)",
        (false, true, _) => " (write to an unmapped page)",
        (false, false, _) => " (read from an unmapped page)",
        (true, true, _) => " (write to a read-only page)",
        (true, false, _) => " (protection violation on read)",
    }
}

/// Writes a report to the console even if the fault hit while it was locked.
pub struct ReportWriter;

impl Write for ReportWriter {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        console::print_emergency(format_args!("{text}"));
        Ok(())
    }
}
