//! Instruction exits: VMCALL with every register, CPUID, I/O and HLT.

use l1_hypervisor::protocol::{self, command, CPUID_ANSWER, REGISTER_PATTERN};
use multiboot_kernel::arch::cpu::rdtsc;
use vmx::exit::{ExitReason, IoDirection, IoInstruction};
use vmx::vmcs::Guest32;
use vmx_instructions::GuestRegisters;

use crate::arch::l2;
use crate::hypervisor::guest::Vm;
use crate::hypervisor::report::{Outcome, Report};
use crate::hypervisor::vmcs;

/// The general registers as `protocol::REGISTER_PATTERN` numbers them.
fn numbered(registers: &mut GuestRegisters) -> [(u64, &'static str, &mut u64); 14] {
    let r = registers;
    [
        (1, "RBX", &mut r.rbx),
        (2, "RCX", &mut r.rcx),
        (3, "RDX", &mut r.rdx),
        (4, "RSI", &mut r.rsi),
        (5, "RDI", &mut r.rdi),
        (6, "RBP", &mut r.rbp),
        (8, "R8", &mut r.r8),
        (9, "R9", &mut r.r9),
        (10, "R10", &mut r.r10),
        (11, "R11", &mut r.r11),
        (12, "R12", &mut r.r12),
        (13, "R13", &mut r.r13),
        (14, "R14", &mut r.r14),
        (15, "R15", &mut r.r15),
    ]
}

/// `registers`: at L2's VMCALL every general register and CR2 hold L2's
/// pattern (the VMCALL exit is 3 bytes long); L1 answers with their
/// complements, and L2 finds them, with CR2 kept, after VMRESUME.
pub fn registers(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::registers());
    let exit = vm.run_expecting(report, ExitReason::Vmcall)?;
    expect_eq!(report, "L2's VMCALL command", command::REPORT_REGISTERS, vm.registers.rax);
    expect_eq!(report, "VMCALL instruction length", 3u32, exit.instruction_length);
    expect_eq!(report, "CR2", REGISTER_PATTERN + protocol::CR2_INDEX, vm.registers.cr2);
    for (number, name, value) in numbered(&mut vm.registers) {
        expect_eq!(report, name, REGISTER_PATTERN + number, *value);
        *value = !*value;
    }
    vm.skip(&exit);
    vm.run_to_done(report)?;
    Ok(())
}

/// `cpuid`: CPUID exits (reason 10) with the leaf in EAX and the subleaf in
/// ECX, 2 bytes long; L2 receives L1's answer zero-extended into RAX-RDX.
pub fn cpuid(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::cpuid());
    let exit = vm.run_expecting(report, ExitReason::Cpuid)?;
    expect_eq!(report, "CPUID instruction length", 2u32, exit.instruction_length);
    expect_eq!(report, "CPUID leaf in EAX", protocol::CPUID_LEAF, vm.registers.rax as u32);
    expect_eq!(report, "CPUID subleaf in ECX", protocol::CPUID_SUBLEAF, vm.registers.rcx as u32);
    let r = &mut vm.registers;
    [r.rax, r.rbx, r.rcx, r.rdx] = CPUID_ANSWER.map(u64::from);
    vm.skip(&exit);
    vm.run_to_done(report)?;
    Ok(())
}

/// `cpuid-loop`: L2 runs `CPUID_LOOP_COUNT` CPUIDs, each exiting to L1,
/// which answers and resumes; L2 checks every answer. Reports the round
/// trip in L1's TSC ticks (under an emulated L0 on Bochs, instructions
/// retired at every level): the cost of a nested exit handled by L1.
pub fn cpuid_loop(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::cpuid_loop());
    let started = rdtsc();
    for _ in 0..protocol::CPUID_LOOP_COUNT {
        let exit = vm.run_expecting(report, ExitReason::Cpuid)?;
        let r = &mut vm.registers;
        [r.rax, r.rbx, r.rcx, r.rdx] = CPUID_ANSWER.map(u64::from);
        vm.skip(&exit);
    }
    let ticks = rdtsc().wrapping_sub(started);
    vm.run_to_done(report)?;
    let count = u64::from(protocol::CPUID_LOOP_COUNT);
    note!(report, "{count} L2 CPUID round trips, {} TSC ticks each", ticks / count);
    Ok(())
}

/// One I/O exit: reason 30, the qualification exactly as table 28-5 encodes
/// `expected`, and the instruction length.
fn io_exit(vm: &mut Vm, report: &mut Report, expected: IoInstruction, length: u32) -> Outcome {
    let exit = vm.run_expecting(report, ExitReason::IoInstruction)?;
    let what = match expected.direction {
        IoDirection::In => "IN",
        IoDirection::Out => "OUT",
    };
    note!(report, "{what} port {:#x}: qualification {:#x}", expected.port, exit.qualification);
    expect_eq!(report, "I/O exit qualification", expected.encode(), exit.qualification);
    expect_eq!(report, "I/O instruction length", length, exit.instruction_length);
    vm.skip(&exit);
    Ok(())
}

fn port(size: u8, direction: IoDirection, immediate_port: bool, port: u16) -> IoInstruction {
    IoInstruction { size, direction, string: false, rep: false, immediate_port, port }
}

/// `io`: with unconditional I/O exiting, OUT imm8,AL; IN AX,DX; OUT DX,EAX
/// and IN EAX,imm8 each exit with their size, direction, operand form and
/// port; L1 sees the values written, and L2 the values L1 supplies (IN AX
/// keeps RAX's upper bits, IN EAX clears them).
pub fn io(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::io());
    io_exit(vm, report, port(1, IoDirection::Out, true, protocol::OUT_BYTE_PORT), 2)?;
    expect_eq!(report, "OUT byte value", protocol::OUT_BYTE_VALUE, vm.registers.rax as u8);
    // 66 ED: the operand-size prefix counts.
    io_exit(vm, report, port(2, IoDirection::In, false, protocol::IN_WORD_PORT), 2)?;
    vm.registers.rax = vm.registers.rax & !0xffff | u64::from(protocol::IN_WORD_ANSWER);
    io_exit(vm, report, port(4, IoDirection::Out, false, protocol::OUT_DWORD_PORT), 1)?;
    expect_eq!(report, "OUT dword value", protocol::OUT_DWORD_VALUE, vm.registers.rax as u32);
    io_exit(vm, report, port(4, IoDirection::In, true, protocol::IN_DWORD_PORT), 2)?;
    vm.registers.rax = u64::from(protocol::IN_DWORD_ANSWER);
    vm.run_to_done(report)?;
    Ok(())
}

/// `hlt`: HLT exits (reason 12) at the HLT, 1 byte long, with the guest
/// still in the active state; L2 goes on after it.
pub fn hlt(vm: &mut Vm, report: &mut Report) -> Outcome {
    vm.start(l2::hlt());
    let exit = vm.run_expecting(report, ExitReason::Hlt)?;
    expect_eq!(report, "RIP of the HLT exit", l2::hlt(), exit.rip);
    expect_eq!(report, "HLT instruction length", 1u32, exit.instruction_length);
    expect_eq!(report, "guest activity state", 0u32, vmcs::read(Guest32::ActivityState));
    vm.skip(&exit);
    vm.run_to_done(report)?;
    Ok(())
}
